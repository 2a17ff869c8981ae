"""Child Python processes for tests: they import the same pyengine as the test process (installed
package or in-place build) and start outside the source tree, which would otherwise shadow it."""

import os
import subprocess
import sys

import pyengine as pe


def run_python(
    args: list[str], env: dict[str, str] | None = None, drop: tuple[str, ...] = (), **kwargs
) -> subprocess.CompletedProcess:
    """``args`` in a child Python with this process's environment, less ``drop``, plus ``env``."""
    root = os.path.dirname(os.path.dirname(pe.__file__))
    kept = {k: v for k, v in os.environ.items() if k not in drop}
    full_env = {**kept, **(env or {}), "PYTHONPATH": root}
    return subprocess.run([sys.executable, *args], env=full_env, cwd="/", **kwargs)
