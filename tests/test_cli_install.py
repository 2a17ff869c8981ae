"""README's test command installs requirements-test.txt without rebuilding the package; it must
list exactly the `test` extra of pyproject.toml, so that both ways of installing agree."""

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")
ROOT = Path(__file__).resolve().parent.parent


def test_requirements_file_matches_test_extra():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extra = sorted(meta["project"]["optional-dependencies"]["test"])
    lines = (ROOT / "requirements-test.txt").read_text().splitlines()
    listed = sorted(ln.strip() for ln in lines if ln.strip() and not ln.startswith("#"))
    assert listed == extra


def test_readme_test_command_does_not_reinstall_the_package():
    readme = (ROOT / "README.md").read_text()
    assert "pip install -r requirements-test.txt && pytest -q" in readme
    assert '".[test]"' not in readme
