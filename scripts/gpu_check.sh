#!/usr/bin/env bash
# For the minutes of a lent GPU: build the real CUDA extension with nvcc (one architecture, to
# build fast), run the whole test suite on the GPU, then benchmarks/bench_cuda.py, in one go.
# Usage: scripts/gpu_check.sh [arch, default 90]; prints everything to stdout. Budget: build
# ~4 min, tests ~3 min, benchmark ~2 min. Not yet run on a GPU (none was lent so far).
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi -L || true
PYENGINE_CUDA=ON BUILD_DIR=build-gpu scripts/build_inplace.sh -DPYENGINE_CUDA_ARCHS="${1:-90}"
python -c "import pyengine.cuda as c; assert c.is_available(), c.unavailable_reason()"
timeout 300 python -m pytest -q -p no:cacheprovider || echo "tests failed: see above"
PYTHONPATH=. timeout 240 python benchmarks/bench_cuda.py --repeats 10 --n 4096
