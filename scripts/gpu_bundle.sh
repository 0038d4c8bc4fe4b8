#!/usr/bin/env bash
# scripts/gpu_bundle.sh [BUILD_DIR] [DEST] — packs the CUDA binaries of a build tree for a GPU
# machine that has a driver, cuBLAS and PyTorch but no cmake, Eigen or cereal (issue 22): copies
# bench_cuda_step, mlvae_gpu_tests and train_mlvae from BUILD_DIR (default build/cuda90) into DEST
# (default gpu_bundle/, ignored by git), with the non-system libraries they load that such a
# machine may lack (libpng16, libz, libgomp, and CUDA's runtime libcudart.so.13: taken from this
# machine) and, when present here, Fashion-MNIST (for train_mlvae's throughput run).
# libcublas.so.13 and libcublasLt.so.13 are NOT copied (about 800 MB): scripts/run_gpu.sh finds
# the GPU machine's own (its CUDA toolkit's, or PyTorch's nvidia packages').
#
# Build the tree first, for the GPU's architecture and without -march=native (the GPU machine's CPU
# may differ) and without MPI (an MPI build would need Open MPI's libraries there too):
#   cmake -S . -B build/cuda90 -DCMAKE_BUILD_TYPE=Release -DMLVAE_ENABLE_CUDA=ON \
#     -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc -DCMAKE_CUDA_ARCHITECTURES=90 -DMLVAE_NATIVE=OFF \
#     -DMLVAE_ENABLE_MPI=OFF -DMLVAE_BUILD_TESTS=ON -DMLVAE_BUILD_EXAMPLES=ON -DMLVAE_BUILD_BENCHMARKS=ON \
#     -DMLVAE_BUILD_STATIC_CHECKS=OFF
#   cmake --build build/cuda90 --target bench_cuda_step mlvae_gpu_tests train_mlvae -j2
#   scripts/gpu_bundle.sh
# then, on the GPU machine, in the repository root:   MLVAE_GPU_BIN=gpu_bundle scripts/run_gpu.sh
# (GPU_BUNDLE_DATA=0 leaves Fashion-MNIST out.)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=${1:-build/cuda90}
DEST=${2:-gpu_bundle}
BINARIES=("$BUILD/bin/bench_cuda_step" "$BUILD/mlvae_gpu_tests" "$BUILD/bin/train_mlvae")

for b in "${BINARIES[@]}"; do
  [[ -x $b ]] || { echo "gpu_bundle.sh: $b is missing: build it first (see the head of this script)" >&2; exit 1; }
done
if grep -qs 'MLVAE_NATIVE:BOOL=ON' "$BUILD/CMakeCache.txt"; then
  echo "gpu_bundle.sh: warning: $BUILD was configured with MLVAE_NATIVE=ON (-march=native): the binaries may not run" \
       "on another CPU" >&2
fi
if grep -qs 'MLVAE_ENABLE_MPI:BOOL=ON' "$BUILD/CMakeCache.txt"; then
  echo "gpu_bundle.sh: warning: $BUILD has MPI on: train_mlvae will need Open MPI's libraries on the GPU machine" >&2
fi

rm -rf "$DEST"
mkdir -p "$DEST"
cp "${BINARIES[@]}" "$DEST/"
# The libraries to carry: every library of these patterns that the binaries load, resolved here.
for lib in libpng16.so.16 libz.so.1 libgomp.so.1 libcudart.so.13; do
  path=$(ldd "${BINARIES[@]}" | awk -v l="$lib" '$1 == l && $3 ~ /^\// { print $3; exit }')
  if [[ -z $path ]]; then
    echo "gpu_bundle.sh: note: no binary loads $lib" >&2
    continue
  fi
  cp -L "$path" "$DEST/$lib"
done
if [[ ${GPU_BUNDLE_DATA:-1} != 0 ]]; then
  fm=${MLVAE_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
  if [[ -e $fm/train-images-idx3-ubyte.gz || -e $fm/train-images-idx3-ubyte ]]; then
    mkdir -p "$DEST/fashion-mnist"
    cp -L "$fm"/*-ubyte* "$DEST/fashion-mnist/"
  fi
fi
git rev-parse --short HEAD >"$DEST/COMMIT" 2>/dev/null || true  # the checkout's commit when bundled

echo "gpu_bundle.sh: $DEST/ ($(du -sh "$DEST" | cut -f1)):"
ls -l "$DEST"
echo
echo "what the binaries load from outside $DEST/ (with LD_LIBRARY_PATH=$DEST; the C and C++ runtimes aside):"
LD_LIBRARY_PATH="$ROOT/$DEST" ldd "$DEST"/bench_cuda_step "$DEST"/mlvae_gpu_tests "$DEST"/train_mlvae |
  awk '/=>/ && $3 !~ /\/'"$DEST"'\// { print $1 }' | sort -u |
  grep -v -E '^(libc|libm|libdl|librt|libpthread|libgcc_s|libstdc\+\+|ld-linux)[.-]' | sed 's/^/  /' || true
echo "(expected: libcublas.so.13 and libcublasLt.so.13, which scripts/run_gpu.sh looks up on the GPU machine)"
