#!/usr/bin/env bash
# CI: every CUDA kernel runs, on the CPU emulator of the CUDA device (cuda/emulator/). Builds the
# emulated _cuda extension in build-emu/ (never the installed one), puts it next to the sources
# and runs every CUDA test on it: the `device` fixture's cuda cases, tests/test_cuda.py (models,
# optimisers, GEMM/TF32, RNG) and tests/test_cuda_emulator.py. Runs in .ci/run's venv.
# Measured on the shared 2-core machine: clean build of the three extensions 3 min 17 s, tests
# 23-86 s depending on load (536 tests), so about 4-5 minutes in all.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
pip install cmake ninja "pybind11>=2.12" >/dev/null
BUILD_DIR=build-emu scripts/build_inplace.sh -DPYENGINE_CUDA_EMULATOR=ON
python -c "import pyengine.cuda as c; assert c.is_available(), c.unavailable_reason()"
python -m pytest -q -p no:cacheprovider -k cuda tests
echo "emulated CUDA suite: $((SECONDS - start)) s"
