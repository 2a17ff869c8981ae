#!/usr/bin/env bash
# CI step: compile the CUDA extension with nvcc (PYENGINE_CUDA=ON, so a build without a GPU still
# compiles it) and check that it links and loads. The README install skips CUDA on machines without
# a GPU, so this is where CI sees a CUDA compile error. One architecture (PYENGINE_CI_CUDA_ARCH,
# default 80) keeps it to about half the two-architecture build; skipped when nvcc is absent.
# Run from the repository root inside the venv that .ci/run made.
set -euo pipefail
if ! command -v nvcc >/dev/null; then
  echo "cuda_build: nvcc not found, CUDA extension not compiled"
  exit 0
fi
BUILD=build-ci-cuda
pip install -q "pybind11>=2.12"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPYENGINE_CUDA=ON \
  -DPYENGINE_CUDA_ARCHS="${PYENGINE_CI_CUDA_ARCH:-80}" \
  -Dpybind11_DIR="$(python -c 'import pybind11; print(pybind11.get_cmake_dir())')" >/dev/null
cmake --build "$BUILD" --target _cuda
# loading resolves every symbol; without a GPU the module still imports and reports no device
(cd "$BUILD" && python -c "import _cuda; print('cuda_build: _cuda links and loads:', _cuda.__file__)")
