#!/usr/bin/env bash
# Reproduces the dSprites disentanglement table of docs/results.md: every model of
# examples/disentangle.cpp for seeds 1 2 3 on the same small budget, then the mean ± sd table.
#   bash scripts/run_disentanglement.sh            # builds `disentangle` (release preset) first
# Environment: STEPS (4000), SEEDS ("1 2 3"), JOBS (parallel runs, 2), OUT (out/disentangle_results),
# MODELS (subset of the configurations below), EXTRA (more options for every run), BIN (the
# executable; SKIP_BUILD=1 uses it as it is).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-4000}
SEEDS=${SEEDS:-"1 2 3"}
JOBS=${JOBS:-2}
OUT=${OUT:-out/disentangle_results}
EXTRA=${EXTRA:-}
BIN=${BIN:-build/release/bin/disentangle}
if [ ! -x "$BIN" ] || [ -z "${SKIP_BUILD:-}" ]; then
  cmake --preset release >/dev/null
  cmake --build build/release --target disentangle -j2
fi

# The budget: the beta-TCVAE paper's MLP narrowed to 256 hidden units, 10 latent dimensions, batch 64,
# Adam 1e-3, one thread per run; metrics on 1000 beta-VAE points / 1000 FactorVAE votes (half as
# many again for evaluation) and 10 000 + 5 000 samples for MIG, DCI and SAP.
COMMON="--arch mlp --hidden 256 --latent 10 --style 5 --content 5 --batch 64 --steps $STEPS --threads 1 \
--bvae-points 1000 --fvae-votes 1000 --sample-points 10000 --log-every 1000 --traversals 1"
declare -A CONFIG=(
  [vae]="--model vae"
  [beta-vae]="--model beta-vae --beta 4"
  [beta-tcvae]="--model beta-tcvae --beta 6 --estimator mss"
  [hfvae]="--model hfvae --alpha 1 --beta 6 --gamma 3 --delta 1 --blocks 2,2,2,2,2 --estimator mss"
  [mlvae-shape]="--model mlvae --grouping shape --group-size 8"
  [mlvae-paired-k1]="--model mlvae --grouping paired --k 1"
)
MODELS=${MODELS:-"vae beta-vae beta-tcvae hfvae mlvae-shape mlvae-paired-k1"}

jobs_file=$(mktemp)
for seed in $SEEDS; do  # seed-major: every configuration gets its first seeds early
  for name in $MODELS; do
    dir="$OUT/$name/seed$seed"
    mkdir -p "$dir"
    echo "nice -n 5 $BIN ${CONFIG[$name]} $COMMON $EXTRA --seed $seed --out $dir > $dir/log.txt 2>&1 && echo done $name $seed" >> "$jobs_file"
  done
done
xargs -P "$JOBS" -I{} bash -c {} < "$jobs_file"
rm -f "$jobs_file"
python3 scripts/summarize_disentanglement.py "$OUT"
