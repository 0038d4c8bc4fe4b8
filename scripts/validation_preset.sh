#!/usr/bin/env bash
# Issue 23: the --preset disentangled against the paper's setting on a VALIDATION split carved from the
# Fashion-MNIST training images (80 % fit / 20 % validation, --test-fraction 0.2 of the 60 000; the
# official test images are not read), 200 epochs, seeds 1-5, both settings at once (one thread each).
# Then scripts/validation_table.py prints the comparison with paired 95 % intervals.
#
#   scripts/validation_preset.sh [BIN_DIR] [OUT_DIR]        (about 30 min on 2 cores)
set -euo pipefail
BIN=${1:-build/release/bin}
OUT=${2:-out/validation}
SEEDS=${SEEDS:-1,2,3,4,5}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
mkdir -p "$OUT"
COMMON=(--data "$DATA/train-images-idx3-ubyte.gz" --groups "$DATA/train-labels-idx1-ubyte.gz" --test-fraction 0.2
        --held-out-classes 7,8,9 --epochs 200 --k 20 --ll-images 500 --accumulate 1,16 --baseline none --no-grids
        --python none --quiet --threads 1 --seeds "$SEEDS")
"$BIN/evaluate_mlvae" "${COMMON[@]}" --out "$OUT/paper" > "$OUT/paper.log" 2>&1 &
"$BIN/evaluate_mlvae" "${COMMON[@]}" --preset disentangled --out "$OUT/preset" > "$OUT/preset.log" 2>&1 &
wait
/usr/bin/python3 "$(dirname "$0")/validation_table.py" "$OUT/paper" "$OUT/preset"
