#!/usr/bin/env bash
# CI: memory-safety gate of issue 11. Builds the CPU extension with AddressSanitizer + UBSan
# (PYENGINE_SANITIZE=ON) into its own build dir, assembles a copy of the package around it, and
# runs the kernel-family tests and the bounded fuzz suite against it. Any sanitizer report aborts
# the process (no recovery), which fails the tests and so this step.
# Run after `pip install ".[test]"` (as .ci/run does); 152 s from a clean build dir on 2 cores
# (README.md, "Hostile input").
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${SANITIZE_BUILD_DIR:-build-sanitize}
# pip's isolated build env had these for `pip install .`; this second build needs them here.
python -m pip install -q "pybind11>=2.12" cmake ninja
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPYENGINE_CUDA=OFF -DPYENGINE_SANITIZE=ON \
  -Dpybind11_DIR="$(python -c 'import pybind11; print(pybind11.get_cmake_dir())')" >/dev/null
cmake --build "$BUILD" --target _cpu _cuda_index
rm -rf "$BUILD/site" && mkdir -p "$BUILD/site"
cp -r pyengine "$BUILD/site/pyengine"
find "$BUILD/site/pyengine" -name '*.so' -delete
cp "$BUILD"/_cpu*.so "$BUILD"/_cuda_index*.so "$BUILD/site/pyengine/"
# libasan must be loaded first; libstdc++ with it, or C++ exceptions thrown by the kernels
# (pybind11 turns them into Python exceptions) are not caught under the sanitizer.
LIBASAN=$(g++ -print-file-name=libasan.so)
LIBSTDCXX=$(g++ -print-file-name=libstdc++.so)
export LD_PRELOAD="$LIBASAN $LIBSTDCXX"
# Python itself leaks by design; a hostile size must fail as MemoryError, not take the machine.
export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:max_allocation_size_mb=3072
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
SITE="$PWD/$BUILD/site"
export PYTHONPATH="$SITE" PYENGINE_FUZZ_TIMEOUT=120
# `pytest`, not `python -m pytest`: the latter puts the source tree (no sanitized .so) first.
(cd / && python -c "import pyengine; assert pyengine.__file__.startswith('$SITE'), pyengine.__file__")
pytest -q -p no:cacheprovider \
  tests/test_hostile.py tests/test_fuzz.py tests/test_conv.py tests/test_pool.py \
  tests/test_reduce.py tests/test_resample.py tests/test_norm.py tests/test_elementwise.py \
  tests/test_gemm.py tests/test_optim.py tests/test_errors.py
