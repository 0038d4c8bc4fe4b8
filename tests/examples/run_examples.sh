#!/usr/bin/env bash
# End-to-end tests of the example programs on tiny inputs (made by make_tiny_data.py), one case per
# CTest test: run_examples.sh BIN_DIR WORK_DIR CASE. Each case runs train_mlvae / evaluate_mlvae for
# 1-2 epochs of a tiny model and checks exit status, messages and output files.
set -u
BIN=$1
WORK=$2
CASE=$3
DATA=$WORK/data
OUT=$WORK/out/$CASE
rm -rf "$OUT"
mkdir -p "$OUT"
TRAIN=("$BIN/train_mlvae" --epochs 1 --hidden 16 --style 2 --content 2 --group-size 4 --groups-per-batch 4
       --threads 1 --python none)
EVAL=("$BIN/evaluate_mlvae" --epochs 1 --hidden 16 --style 2 --content 2 --group-size 4 --groups-per-batch 4
      --threads 1 --python none --k 4 --ll-images 30 --quiet)

fail() { echo "FAILED ($CASE): $*"; exit 1; }
expect_file() { for f in "$@"; do [[ -s $f ]] || fail "missing output $f"; done; }
# expect_error "message part" command...: the command must exit non-zero and print the message.
expect_error() {
  local want=$1
  shift
  local log=$OUT/error.log
  if "$@" >"$log" 2>&1; then cat "$log"; fail "expected an error containing '$want', the command succeeded"; fi
  grep -qF -- "$want" "$log" || { cat "$log"; fail "expected an error containing '$want'"; }
  echo "ok: error '$want'"
}
run() { "$@" || fail "command failed: $*"; }

case $CASE in
idx)  # a 300-image IDX set in Fashion-MNIST's layout; and a test split of 5 images
  run "${TRAIN[@]}" --data "$DATA/idx" --out "$OUT/train"
  expect_file "$OUT/train/swap_grid.png" "$OUT/train/reconstructions.png" "$OUT/train/train_log.csv" \
    "$OUT/train/checkpoint.bin"
  run "${TRAIN[@]}" --data "$DATA/tinytest" --out "$OUT/tinytest"
  expect_file "$OUT/tinytest/swap_grid.png"
  run "${EVAL[@]}" --data "$DATA/tinytest" --out "$OUT/tinytest_eval"
  expect_file "$OUT/tinytest_eval/results.csv" "$OUT/tinytest_eval/swap_grid_test_rows-style_cols-content.png"
  # A single IDX file with its keys in an IDX label file, split 80/20.
  run "${TRAIN[@]}" --data "$DATA/idx/train-images-idx3-ubyte" --groups "$DATA/idx/train-labels-idx1-ubyte" \
    --out "$OUT/idx_file"
  expect_file "$OUT/idx_file/swap_grid.png"
  run "${EVAL[@]}" --data "$DATA/idx" --held-out-classes 8,9 --out "$OUT/eval"
  expect_file "$OUT/eval/results.csv" "$OUT/eval/swap_grid_test_rows-style_cols-content.png" \
    "$OUT/eval/swap_grid_unseen_rows-style_cols-content.png" "$OUT/eval/generate_test_col0-real_rest-prior-style.png"
  grep -q "^accuracy,mlvae,unseen,content,2,16,knn," "$OUT/eval/results.csv" || fail "no unseen accuracy in results.csv"
  ;;
npy)  # .npy: float32 Fortran-order table with keys from a CSV file; uint8 images with keys from a .npy
  run "${TRAIN[@]}" --data "$DATA/blobs.npy" --groups "$DATA/groups.csv" --standardize \
    --likelihood gaussian-learned --layers 2 --out "$OUT/train"
  expect_file "$OUT/train/train_log.csv" "$OUT/train/checkpoint.bin"
  [[ ! -e $OUT/train/swap_grid.png ]] || fail "a grid was written for data that are not images"
  run "${EVAL[@]}" --data "$DATA/blobs.npy" --groups "$DATA/groups.csv" --likelihood gaussian --out "$OUT/eval"
  expect_file "$OUT/eval/results.csv" "$OUT/eval/feature_r2.csv"
  run "${TRAIN[@]}" --data "$DATA/images.npy" --groups "$DATA/image_groups.npy" --out "$OUT/images"
  expect_file "$OUT/images/swap_grid.png" "$OUT/images/reconstructions.png"
  run "${EVAL[@]}" --data "$DATA/images.npy" --groups "$DATA/image_groups.npy" --out "$OUT/images_eval"
  expect_file "$OUT/images_eval/swap_grid_test_rows-style_cols-content.png"
  # Keys as NumPy users save them (int64 by default, and strings) when /usr/bin/python3 has NumPy.
  if /usr/bin/python3 -c "import numpy" 2>/dev/null; then
    /usr/bin/python3 -c "import numpy as np, sys; k = np.load(sys.argv[1]); np.save(sys.argv[2], k.astype(np.int64)); \
np.save(sys.argv[3], np.array(['g%d' % v for v in k]))" "$DATA/image_groups.npy" "$OUT/groups_i8.npy" "$OUT/groups_U.npy"
    run "${TRAIN[@]}" --data "$DATA/images.npy" --groups "$OUT/groups_i8.npy" --quiet --out "$OUT/images_i8"
    run "${TRAIN[@]}" --data "$DATA/images.npy" --groups "$OUT/groups_U.npy" --quiet --out "$OUT/images_U"
    expect_file "$OUT/images_i8/train_log.csv" "$OUT/images_U/train_log.csv"
  fi
  ;;
csv)  # CSV with a header, a text group column and a label column
  run "${TRAIN[@]}" --data "$DATA/table.csv" --group-column site --label-column kind --standardize --out "$OUT/train"
  expect_file "$OUT/train/train_log.csv"
  expect_error "line 2, column 'kind': expected a finite number, found 'y'" \
    "${EVAL[@]}" --data "$DATA/table.csv" --group-column site --out "$OUT/x"
  run "${EVAL[@]}" --data "$DATA/table.csv" --group-column site --label-column kind --standardize --out "$OUT/eval"
  expect_file "$OUT/eval/results.csv" "$OUT/eval/feature_r2.csv"
  grep -q "^feature_r2,mlvae,test,content,1,1,a," "$OUT/eval/results.csv" || fail "no feature R2 in results.csv"
  run "${EVAL[@]}" --data "$DATA/table.csv" --group-column site --held-out-classes east --standardize \
    --label-column kind --out "$OUT/eval_labels"
  expect_error "no column 'place'" "${TRAIN[@]}" --data "$DATA/table.csv" --group-column place --out "$OUT/x"
  ;;
bad_data)  # data a likelihood or the evaluation cannot use: clear errors naming file and split
  expect_error "the Bernoulli likelihood models values in [0, 1] but the training split of '$DATA/bad_range.csv' holds 3" \
    "${TRAIN[@]}" --data "$DATA/bad_range.csv" --group-column key --likelihood bernoulli --test-fraction 0.1 \
    --seed 5 --out "$OUT/x"
  expect_error "holds 1 distinct group key(s)" "${TRAIN[@]}" --data "$DATA/one_class.csv" --group-column key \
    --out "$OUT/x"
  expect_error "training split (train-images-idx3-ubyte) of '$DATA/empty' holds 0 observations" \
    "${TRAIN[@]}" --data "$DATA/empty" --out "$OUT/x"
  expect_error "holds one class only" "${EVAL[@]}" --data "$DATA/one_label.csv" --group-column key \
    --label-column kind --out "$OUT/x"
  expect_error "--image-shape 5x5: 25 pixels" "${TRAIN[@]}" --data "$DATA/blobs.npy" --groups "$DATA/groups.csv" \
    --image-shape 5x5 --out "$OUT/x"
  # --device: a GPU that cannot be used (no CUDA build, or no device) is one clear error, not a crash
  expect_error "no CUDA device found" "${TRAIN[@]}" --data "$DATA/idx" --device cuda --out "$OUT/x"
  expect_error "no CUDA device found" "${EVAL[@]}" --data "$DATA/idx" --device cuda:1 --out "$OUT/x"
  expect_error "--device: expected cpu, cuda or cuda:N, found 'gpu'" "${TRAIN[@]}" --data "$DATA/idx" --device gpu \
    --out "$OUT/x"
  ;;
resume)  # resume conflicts are errors or reported; a resumed run equals an uninterrupted one
  R=("${TRAIN[@]}" --data "$DATA/idx" --quiet)
  run "${R[@]}" --epochs 2 --out "$OUT/whole"
  run "${R[@]}" --epochs 2 --stop-after-steps 30 --out "$OUT/part" > "$OUT/part.log"
  grep -q "stopped after 30 step(s)" "$OUT/part.log" || fail "no stop message"
  expect_error "--group-size 8 differs from the checkpoint's 4" \
    "${R[@]}" --epochs 2 --group-size 8 --resume "$OUT/part/checkpoint.bin" --out "$OUT/part"
  expect_error "--seed 9 differs from the checkpoint's 1" \
    "${R[@]}" --epochs 2 --seed 9 --resume "$OUT/part/checkpoint.bin" --out "$OUT/part"
  expect_error "--epochs 1 is below the 2 epoch(s) the checkpoint" \
    "${R[@]}" --epochs 1 --resume "$OUT/part/checkpoint.bin" --out "$OUT/part"
  # Resume mid-epoch 2 with another thread count into a new --out: the log gets its header, the
  # partial epoch is marked, and the final checkpoint equals the uninterrupted run's byte for byte.
  run "${R[@]}" --epochs 2 --threads 2 --resume "$OUT/part/checkpoint.bin" --out "$OUT/resumed" > "$OUT/resumed.log"
  grep -q "is new: it starts at epoch 2" "$OUT/resumed.log" || fail "new log not reported"
  grep -q "resumed mid-epoch" "$OUT/resumed.log" || fail "partial epoch not marked"
  head -1 "$OUT/resumed/train_log.csv" | grep -q "^epoch,first_step," || fail "no header in the new log"
  grep -q "^2,11,20," "$OUT/resumed/train_log.csv" || { cat "$OUT/resumed/train_log.csv"; fail "partial epoch not logged"; }
  cmp "$OUT/whole/checkpoint.bin" "$OUT/resumed/checkpoint.bin" || fail "resumed run differs from the whole run"
  # A single file split with --seed 4: resuming without --seed splits it the same way.
  C=(--data "$DATA/table.csv" --group-column site --label-column kind --standardize --quiet --epochs 2)
  run "${TRAIN[@]}" "${C[@]}" --seed 4 --out "$OUT/csv_whole"
  run "${TRAIN[@]}" "${C[@]}" --seed 4 --stop-after-steps 10 --out "$OUT/csv_part" > /dev/null
  run "${TRAIN[@]}" "${C[@]}" --resume "$OUT/csv_part/checkpoint.bin" --out "$OUT/csv_part" > /dev/null
  cmp "$OUT/csv_whole/checkpoint.bin" "$OUT/csv_part/checkpoint.bin" || fail "resumed CSV run differs"
  # Nothing left to train: said, and the outputs are written from the stored model.
  run "${R[@]}" --epochs 2 --resume "$OUT/whole/checkpoint.bin" --out "$OUT/whole" > "$OUT/again.log"
  grep -q "nothing to train" "$OUT/again.log" || fail "nothing-to-train not reported"
  ;;
plots)  # matplotlib figures when /usr/bin/python3 has matplotlib
  if ! /usr/bin/python3 -c "import matplotlib" 2>/dev/null; then echo "SKIP: no matplotlib"; exit 0; fi
  run "${TRAIN[@]}" --data "$DATA/idx" --epochs 2 --quiet --python /usr/bin/python3 --out "$OUT/train"
  expect_file "$OUT/train/training_curves.png"
  run "${EVAL[@]}" --data "$DATA/table.csv" --group-column site --label-column kind --standardize --python /usr/bin/python3 \
    --out "$OUT/eval"
  expect_file "$OUT/eval/accuracy_vs_group_size.png" "$OUT/eval/training_curves.png" "$OUT/eval/feature_r2.png"
  ;;
seeds_models)  # --seeds aggregates mean and sd; the group models and options of issue 16 run end to end
  run "${EVAL[@]}" --data "$DATA/idx" --seeds 1,2 --baseline none --no-grids --accumulate 1,4 --out "$OUT/seeds"
  expect_file "$OUT/seeds/results.csv" "$OUT/seeds/results_seed1.csv" "$OUT/seeds/results_seed2.csv"
  head -1 "$OUT/seeds/results.csv" | grep -q "value,sd,n$" || fail "results.csv has no sd,n columns"
  grep -q "^accuracy,mlvae,test,style,1_and_2,1,logreg,[^,]*,[^,]*,2$" "$OUT/seeds/results.csv" \
    || fail "no style accuracy over 2 seeds in results.csv"
  for model in gvae ada-mlvae ada-gvae; do
    run "${EVAL[@]}" --data "$DATA/idx" --model $model --baseline none --no-grids --accumulate 1,4 --out "$OUT/$model"
  done
  run "${EVAL[@]}" --data "$DATA/idx" --cycle 1 --beta-style 4 --content-sample observation --min-group-size 2 \
    --baseline none --no-grids --accumulate 1 --out "$OUT/options"
  run "${EVAL[@]}" --data "$DATA/idx" --preset disentangled --baseline none --no-grids --accumulate 1 --out "$OUT/preset"
  expect_error "--min-group-size 5 exceeds" "${EVAL[@]}" --data "$DATA/idx" --min-group-size 5 --out "$OUT/x"
  expect_error "--seeds: expected comma-separated" "${EVAL[@]}" --data "$DATA/idx" --seeds 1,x --out "$OUT/x"
  ;;
semisupervised)  # train_semisupervised reports the validation error only when --validation holds images out
  SS=("$BIN/train_semisupervised" --data "$DATA/idx" --labels 20 --epochs 1 --hidden 16 --latent 2
      --labelled-per-batch 10 --unlabelled-per-batch 20 --threads 1 --quiet)
  run "${SS[@]}" --out "$OUT/plain" > "$OUT/plain.log"
  grep -q "test error" "$OUT/plain.log" || { cat "$OUT/plain.log"; fail "no test error printed"; }
  if grep -q "validation error\|-100" "$OUT/plain.log"; then cat "$OUT/plain.log"; fail "a validation error was printed without --validation"; fi
  run "${SS[@]}" --validation 30 --out "$OUT/validation" > "$OUT/validation.log"
  grep -q "validation error" "$OUT/validation.log" || { cat "$OUT/validation.log"; fail "no validation error printed"; }
  # The device step has no semi-supervised model: refused by name, never trained on the CPU instead.
  expect_error "the device layer has no SemiSupervisedVAE" "${SS[@]}" --device cuda --out "$OUT/x"
  ;;
*) fail "unknown case" ;;
esac
echo "ok: $CASE"
