#!/usr/bin/env bash
# Builds mlvae (release preset) and runs the whole test suite: configure, build (2 jobs), ctest;
# then the OpenBLAS-backend build of the threading/gradient/allocation tests; then, when nvcc is present, every CUDA translation unit (build/cuda) and the GPU tests; then the
# same tests built with ASan + UBSan (preset asan; MLVAE_SKIP_ASAN=1 skips it).
# Installs the Debian packages first when run as root (set MLVAE_SKIP_APT=1 to skip).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source scripts/install_deps.sh
install_packages

# The test programs choose GEMM kernels by measurement like any mlvae program; keep what they
# measure (on a machine the suite itself keeps busy) out of the user's cache in ~/.cache/mlvae.
export MLVAE_GEMM_CACHE="${MLVAE_GEMM_CACHE-$PWD/build/test-gemm-kernels.txt}"
cmake --workflow --preset release

# The optional OpenBLAS GEMM backend (-DMLVAE_GEMM_BACKEND=OpenBLAS, docs/performance.md): the
# threading, gradient, conv, training and zero-allocation tests built on it (preset `openblas`);
# MLVAE_SKIP_OPENBLAS=1 skips it.
if [[ "${MLVAE_SKIP_OPENBLAS:-0}" != 1 ]]; then
  cmake --workflow --preset openblas
fi

# CUDA: when nvcc is present (/usr/local/cuda on our machines), compile every CUDA translation unit
# (target mlvae_cuda_all, warnings are errors) and run the GPU tests (CTest label gpu), which say
# in one line that they were skipped, and why, when no GPU is visible. MLVAE_SKIP_CUDA=1 skips it.
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
if [[ "${MLVAE_SKIP_CUDA:-0}" != 1 && -x "$NVCC" ]]; then
  cmake -S . -B build/cuda -DCMAKE_BUILD_TYPE=Release -DMLVAE_ENABLE_CUDA=ON -DCMAKE_CUDA_COMPILER="$NVCC" \
    -DMLVAE_BUILD_TESTS=ON -DMLVAE_BUILD_EXAMPLES=ON -DMLVAE_BUILD_BENCHMARKS=ON -DMLVAE_BUILD_STATIC_CHECKS=OFF
  cmake --build build/cuda --target mlvae_cuda_all -j2
  ctest --test-dir build/cuda -L gpu --verbose
fi

# AddressSanitizer + UndefinedBehaviorSanitizer build of the tests (preset `asan`, Debug);
# MLVAE_SKIP_ASAN=1 skips it.
if [[ "${MLVAE_SKIP_ASAN:-0}" != 1 ]]; then
  cmake --workflow --preset asan
fi
