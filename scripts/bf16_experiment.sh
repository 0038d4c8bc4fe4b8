#!/usr/bin/env bash
# scripts/bf16_experiment.sh — the ELBO of the MLP ML-VAE on Fashion-MNIST after EPOCHS epochs with
# float32 products and with bfloat16 products (--precision bf16: operands rounded to bfloat16,
# float32 sums, Intel AMX; include/mlvae/nn/gemm_bf16.hpp), for each seed; docs/performance.md,
# "Reduced precision (bfloat16, optional)".
#
#   scripts/bf16_experiment.sh                     # EPOCHS=30 SEEDS="1 2 3" THREADS=2
#   EPOCHS=3 SEEDS=1 scripts/bf16_experiment.sh
#
# Needs a CPU with AMX-BF16 (Sapphire Rapids or later; train_mlvae says what is missing otherwise).
# Writes OUT (default out/bf16_experiment)/<precision>_seed<seed>/train_log.csv and prints one
# row per run: the last epoch's train ELBO (mean over that epoch's minibatches) and test ELBO,
# per group of 16 and per image, and the training rate.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

EPOCHS=${EPOCHS:-30}
SEEDS=${SEEDS:-"1 2 3"}
THREADS=${THREADS:-2}
BUILD_DIR=${BUILD_DIR:-build/release}
OUT=${OUT:-out/bf16_experiment}
GROUP_SIZE=16
mkdir -p "$OUT"

if [[ ! -x "$BUILD_DIR/bin/train_mlvae" || "${REBUILD:-1}" == 1 ]]; then
  [[ -f "$BUILD_DIR/CMakeCache.txt" ]] || cmake --preset release
  cmake --build "$BUILD_DIR" -j2 --target train_mlvae
fi

echo "bf16 experiment: $EPOCHS epochs, seeds $SEEDS, $THREADS threads; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
printf '%-8s %4s %6s %14s %14s %14s %14s %9s %8s\n' precision seed epochs train_elbo/grp train_elbo/img \
  test_elbo/grp test_elbo/img images/s seconds
for seed in $SEEDS; do
  for precision in float32 bf16; do
    dir="$OUT/${precision}_seed${seed}"
    start=$(date +%s.%N)
    "$BUILD_DIR/bin/train_mlvae" --epochs "$EPOCHS" --seed "$seed" --threads "$THREADS" --precision "$precision" \
      --group-size "$GROUP_SIZE" --quiet --out "$dir" > "$dir.stdout" 2>&1 ||
      { echo "train_mlvae failed, see $dir.stdout"; tail -5 "$dir.stdout"; exit 1; }
    end=$(date +%s.%N)
    # Last line of the log: epoch,...,train_elbo_per_group(5),...,test_elbo_per_group(9),test_elbo_per_image(10),...,images_per_s(14)
    tail -n 1 "$dir/train_log.csv" | awk -F, -v p="$precision" -v s="$seed" -v g="$GROUP_SIZE" \
      -v secs="$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" \
      '{ printf "%-8s %4s %6s %14.3f %14.4f %14.3f %14.4f %9.0f %8.1f\n", p, s, $1, $5, $5 / g, $9, $10, $14, secs }'
  done
done
