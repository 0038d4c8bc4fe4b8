#!/usr/bin/env bash
# The MLP probe on the codes (docs/results.md, issue 23), from scratch: the paper's MLP ML-VAE and the
# VAE baseline trained 200 epochs on the 42 000 Fashion-MNIST training images of classes 0-6 (7, 8, 9
# held out), 5 seeds, with --save-codes; then scripts/code_probes.py fits the logistic regression and
# the one-hidden-layer MLP probe on the codes, and scripts/code_probe_table.py prints the table
# against the pixel probes (docs/data/budget/pixel_baselines.csv, scripts/pixel_baselines.py).
#
#   scripts/code_probe_study.sh [BIN_DIR] [OUT_DIR]   (about 7 min of training per seed on 2 cores,
#                                                      then about 1 min of probes per seed)
#
# The likelihood estimates are skipped (--ll-images 1): scripts/budget_study.sh has them.
# With a CUDA build, add --device cuda below: both models' steps then run on the GPU.
set -euo pipefail
BIN=${1:-build/release/bin}
OUT=${2:-out/code_probes}
SEEDS=${SEEDS:-1,2,3,4,5}
mkdir -p "$OUT" docs/data/budget
"$BIN/evaluate_mlvae" --held-out-classes 7,8,9 --epochs 200 --k 1 --ll-images 1 --seeds "$SEEDS" \
  --threads 2 --quiet --no-grids --python none --save-codes --out "$OUT" | tee "$OUT/run.log"
/usr/bin/python3 "$(dirname "$0")/code_probes.py" "$OUT" --seeds "$SEEDS" > "$OUT/code_probes.csv"
cp "$OUT/code_probes.csv" docs/data/budget/
mkdir -p docs/data/budget/code_probes_runs
cp "$OUT"/results_seed*.csv docs/data/budget/code_probes_runs/
(cd "$(dirname "$0")" && /usr/bin/python3 code_probe_table.py ../docs/data/budget/code_probes.csv \
  ../docs/data/budget/pixel_baselines.csv)
