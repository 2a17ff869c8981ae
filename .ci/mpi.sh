#!/usr/bin/env bash
# CI, distributed: install the `mpi` extra's packages (mpi4py and the MPICH wheel, as pinned in
# pyproject.toml) into the CI venv without rebuilding pyengine, then run the tests that launch
# `mpiexec -n 2` (tests/test_distributed.py). 62 s on the 2-core machine at load ~20 (49 s of tests).
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
mapfile -t reqs < <(python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["mpi"]))')
pip install "${reqs[@]}"
# the tests skip without MPI; here it must be there
(cd / && mpiexec -n 2 python -c "from mpi4py import MPI; assert MPI.COMM_WORLD.Get_size() == 2")
pytest -q tests/test_distributed.py -rs
