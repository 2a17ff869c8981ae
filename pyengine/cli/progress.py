"""Progress bars for long runs (tqdm; quiet when stderr is not a terminal unless forced)."""

from __future__ import annotations

import os
import sys
from typing import Any

from tqdm import tqdm


def progress(total: int, desc: str, unit: str = "it", **kwargs: Any) -> tqdm:
    disable = os.environ.get("PYENGINE_PROGRESS", "auto")
    off = disable == "0" or (disable == "auto" and not sys.stderr.isatty())
    return tqdm(
        total=total, desc=desc, unit=unit, disable=off, dynamic_ncols=True, leave=True, **kwargs
    )
