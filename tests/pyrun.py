"""Child Python processes for tests: they import the same pyengine as the test process (installed
package or in-place build) and start outside the source tree, which would otherwise shadow it."""

import os
import subprocess
import sys

import pyengine as pe


def run_python(
    args: list[str], env: dict[str, str] | None = None, **kwargs
) -> subprocess.CompletedProcess:
    root = os.path.dirname(os.path.dirname(pe.__file__))
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": root}
    return subprocess.run([sys.executable, *args], env=full_env, cwd="/", **kwargs)
