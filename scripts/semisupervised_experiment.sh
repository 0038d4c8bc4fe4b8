#!/usr/bin/env bash
# Reproduces the semi-supervised experiment of docs/results.md ("Semi-supervised VAE (Siddharth et al.
# 2017) and M2 on Fashion-MNIST"): test error of q(y|x) vs the number of labels for the Siddharth
# objective and M2 on the same parts and budget, 3 seeds each, with the pixel softmax-regression floor
# on the same labels, then a table of mean ± sd (scripts/summarize_semisupervised.py).
#
#   bash scripts/semisupervised_experiment.sh [OUT_DIR]     (default out/semisupervised)
#
# Environment: JOBS (parallel runs, default 2), EPOCHS (5), UNLABELLED (20000), SEEDS ("1 2 3"),
# LABELS ("100 600 1000 3000"), ALPHA (10), EXTRA (more train_semisupervised options),
# CONTROL_LABELS ("100"): label counts for the control run with (almost) no unlabelled data — the same
# steps, labelled batches and alpha, but an unlabelled pool of one batch (96 images) — in OUT/control.
# Every run uses 1 thread and `nice -n 5`. Build first: cmake --preset release &&
# cmake --build build/release --target train_semisupervised
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/semisupervised}
JOBS=${JOBS:-2}
EPOCHS=${EPOCHS:-5}
UNLABELLED=${UNLABELLED:-20000}
SEEDS=${SEEDS:-"1 2 3"}
LABELS=${LABELS:-"100 600 1000 3000"}
ALPHA=${ALPHA:-10}
EXTRA=${EXTRA:-}
BIN=build/release/bin/train_semisupervised
[ -x "$BIN" ] || { echo "build $BIN first (cmake --build build/release --target train_semisupervised)" >&2; exit 1; }
mkdir -p "$OUT"

# One line per run: model, estimator, labels, seed.
runs=()
for labels in $LABELS; do
  for seed in $SEEDS; do
    runs+=("siddharth relaxed $labels $seed" "m2 enumerate $labels $seed")
  done
done

printf '%s\n' "${runs[@]}" | xargs -P "$JOBS" -L 1 bash -c '
  model=$0; est=$1; labels=$2; seed=$3
  dir='"$OUT"'/${model}_${labels}_seed${seed}
  if [ -f "$dir/done" ]; then exit 0; fi
  mkdir -p "$dir"
  OMP_NUM_THREADS=1 nice -n 5 '"$BIN"' --model $model --unlabelled $est --alpha '"$ALPHA"' --labels $labels \
    --seed $seed --epochs '"$EPOCHS"' --unlabelled-limit '"$UNLABELLED"' --threads 1 --quiet '"$EXTRA"' \
    --out "$dir" > "$dir/log.txt" 2>&1 && touch "$dir/done"
  tail -n 2 "$dir/log.txt" | head -n 1
'
/usr/bin/python3 scripts/summarize_semisupervised.py "$OUT"

# Control: what the same network reaches from the labels (nearly) alone, at the same number of steps.
CONTROL_LABELS=${CONTROL_LABELS:-"100"}
steps=$(( EPOCHS * ((UNLABELLED + 95) / 96) ))
controls=()
for labels in $CONTROL_LABELS; do
  per_epoch=$(( (labels + 31) / 32 ))
  epochs=$(( (steps + per_epoch - 1) / per_epoch ))
  for seed in $SEEDS; do controls+=("$labels $seed $epochs"); done
done
mkdir -p "$OUT/control"
printf '%s\n' "${controls[@]}" | xargs -P "$JOBS" -L 1 bash -c '
  labels=$0; seed=$1; epochs=$2
  dir='"$OUT"'/control/siddharth_${labels}_seed${seed}
  if [ -f "$dir/done" ]; then exit 0; fi
  mkdir -p "$dir"
  OMP_NUM_THREADS=1 nice -n 5 '"$BIN"' --model siddharth --unlabelled relaxed --alpha '"$ALPHA"' --labels $labels \
    --seed $seed --epochs $epochs --unlabelled-limit 96 --threads 1 --quiet '"$EXTRA"' \
    --out "$dir" > "$dir/log.txt" 2>&1 && touch "$dir/done"
  tail -n 2 "$dir/log.txt" | head -n 1
'
echo "control (unlabelled pool of 96 images, same steps):"
/usr/bin/python3 scripts/summarize_semisupervised.py "$OUT/control"
