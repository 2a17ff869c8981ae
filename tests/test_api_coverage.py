"""docs/api_coverage.md is generated from what pyengine has (tests/api_coverage.py): it must be
current, every missing name needs a reason, and every listed name must be PyTorch's."""

import importlib

import api_coverage
import pytest


def test_table_is_current():
    assert api_coverage.DOC.read_text() == api_coverage.render(), (
        "docs/api_coverage.md is stale: regenerate it with `python tests/api_coverage.py`"
    )


def test_every_missing_name_has_a_reason():
    missing = [n for _, n, ok in api_coverage.status() if not ok]
    assert [n for n in missing if not api_coverage.REASONS.get(n)] == []


def test_listed_names_are_pytorchs():
    pytest.importorskip("torch")
    for _, torch_path, _, names in api_coverage.SECTIONS:
        obj = api_coverage._lookup(torch_path)
        assert [n for n in names if not hasattr(obj, n)] == [], torch_path


def test_lookup_finds_what_exists():
    # A name that exists must read as covered, and a made-up one as missing.
    nn = importlib.import_module("pyengine.nn")
    assert hasattr(nn, "LayerNorm")
    api_coverage.SECTIONS.append(("probe", "torch.nn", "pyengine.nn", ["LayerNorm", "NoSuchLayer"]))
    try:
        got = {n: ok for s, n, ok in api_coverage.status() if s == "probe"}
    finally:
        api_coverage.SECTIONS.pop()
    assert got == {"LayerNorm": True, "NoSuchLayer": False}
