"""Where the read-only DnCNN data lives (images, pretrained weights, goldens), if anywhere.

The project root's ``shared/data`` or ``../shared/data`` (see that folder's README.md), or the
``PYENGINE_SHARED_DATA`` environment variable. Tests that need it skip when it is absent.
"""

import os
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[1]
_CANDIDATES = [
    os.environ.get("PYENGINE_SHARED_DATA", ""),
    _ROOT / "shared" / "data",
    _ROOT.parent / "shared" / "data",
    _ROOT.parent.parent / "shared" / "data",
]
DATA = next((Path(p) for p in _CANDIDATES if p and (Path(p) / "README.md").is_file()), None)


def shared(*parts: str) -> Path:
    """Path inside the shared data folder; skips the calling test when it is missing."""
    if DATA is None or not DATA.joinpath(*parts).exists():
        pytest.skip(f"shared data {'/'.join(parts)} not available")
    return DATA.joinpath(*parts)
