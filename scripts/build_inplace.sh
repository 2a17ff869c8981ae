#!/usr/bin/env bash
# Developer build: compile the extensions into build-dev/ and copy them next to the Python sources,
# so `python -m pytest` from the repository root tests the working tree without reinstalling.
# Usage: scripts/build_inplace.sh [extra cmake -D options]   (PYENGINE_CUDA=ON|OFF|AUTO, default OFF)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD_DIR:-build-dev}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DPYENGINE_CUDA="${PYENGINE_CUDA:-OFF}" \
  -Dpybind11_DIR="$(python -c 'import pybind11; print(pybind11.get_cmake_dir())')" "$@" >/dev/null
cmake --build "$BUILD"
cp "$BUILD"/_cpu*.so "$BUILD"/_cuda_index*.so pyengine/
if ls "$BUILD"/_cuda*.so >/dev/null 2>&1; then cp "$BUILD"/_cuda*.so pyengine/; fi
