#!/usr/bin/env bash
# The style-leakage study of docs/results.md (issue 16): every point is one evaluate_mlvae command with
# --seeds (mean ± sd over the seeds in out/study/<point>/results.csv). Two points run at a time, each
# with one thread and nice -n 5 (the machine is shared). Then scripts/plot_study.py draws the trade-off
# figure and prints the markdown table.
#
#   scripts/study_style_leakage.sh [BIN_DIR] [OUT_DIR] [POINT...]   (default: every point)
set -euo pipefail
BIN=${1:-build/release/bin}
OUT=${2:-out/study}
shift $(( $# > 2 ? 2 : $# )) || true
SEEDS=${SEEDS:-1,2,3}
# The budget of every point: the first 20 000 Fashion-MNIST training images (about 14 000 of the trained
# classes 0-6), classes 7, 8, 9 held out, 10 epochs, IS log-likelihood with K = 20 on 500 test images.
BASE=(--train-limit 20000 --held-out-classes 7,8,9 --epochs 10 --k 20 --ll-images 500 --accumulate 1,16
      --baseline none --no-grids --threads 1 --quiet --python none --seeds "$SEEDS")
declare -A POINTS=(
  [mlvae]=""
  [beta_s2]="--beta-style 2"
  [beta_s4]="--beta-style 4"
  [beta_s8]="--beta-style 8"
  [beta_s16]="--beta-style 16"
  [beta_s32]="--beta-style 32"
  [style2_content18]="--style 2 --content 18"
  [style18_content2]="--style 18 --content 2"
  [group2]="--train-group-size 2"
  [group4]="--train-group-size 4"
  [group8]="--train-group-size 8"
  [group_variable]="--min-group-size 2"
  [epochs3]="--epochs 3"
  [epochs20]="--epochs 20"
  [per_observation]="--content-sample observation"
  [conv28]="--arch conv28 --epochs 2"
  [gvae]="--model gvae"
  [ada_mlvae]="--model ada-mlvae"
  [ada_gvae]="--model ada-gvae"
  [cycle]="--cycle 10"
  [preset_disentangled]="--preset disentangled"  # = --style 2 --content 18 --beta-style 16 --train-group-size 8
  [cand_s2c18_b16]="--style 2 --content 18 --beta-style 16"
  [cand_s2c18_b32]="--style 2 --content 18 --beta-style 32"
)
ORDER=(mlvae beta_s2 beta_s4 beta_s8 beta_s16 gvae cycle beta_s32 paper_eval preset_disentangled cand_s2c18_b16 cand_s2c18_b32
       ada_mlvae ada_gvae conv28 group2 group8 group_variable per_observation epochs3 style2_content18 group4
       style18_content2 epochs20)
(( $# > 0 )) && ORDER=("$@")
mkdir -p "$OUT"
run_point() {
  local name=$1
  [[ -f "$OUT/$name/results.csv" || -f "$OUT/$name.log" ]] && return 0  # done, or started by another instance
  local start=$SECONDS
  local args=("${BASE[@]}")
  # paper_eval: the evaluation of the top of docs/results.md (ML-VAE and VAE, every k, K = 50 on 1000
  # images, grids and figures) at the same training budget; its results.csv is not a study point.
  [[ $name == paper_eval ]] && args=(--train-limit 20000 --held-out-classes 7,8,9 --epochs 10 --k 50
                                     --ll-images 1000 --threads 1 --quiet --seeds "$SEEDS")
  # shellcheck disable=SC2086
  nice -n 5 "$BIN/evaluate_mlvae" "${args[@]}" ${POINTS[$name]:-} --out "$OUT/$name" > "$OUT/$name.log" 2>&1 \
    || { echo "point $name failed, see $OUT/$name.log"; return 0; }
  echo "$name: $(( SECONDS - start )) s wall ($SEEDS)" | tee -a "$OUT/wall.txt"
}
for name in "${ORDER[@]}"; do
  # At most two evaluate_mlvae runs of this study at once (counting those of an earlier instance).
  while (( $(pgrep -fc "evaluate_mlvae .*--out $OUT/" || true) >= 2 )); do sleep 5; done
  run_point "$name" &
  sleep 2
done
wait
/usr/bin/python3 "$(dirname "$0")/plot_study.py" "$OUT" || true
