#!/usr/bin/env bash
# tests/mpi/train_mlvae_mpi.sh MPIRUN BIN_DIR DATA_DIR WORK_DIR [mpirun flags...] — train_mlvae under
# mpirun (CTest mpi_train_mlvae) on the tiny 300-image IDX set of tests/examples/make_tiny_data.py:
#   1. one process, --deterministic-shards 4, two epochs: the reference checkpoint;
#   2. 2 ranks, same flags, stopped after 30 steps (mid-epoch 2): progress from rank 0 only, with
#      the rank count; rank 0 writes the checkpoint;
#   3. that checkpoint resumed on 3 ranks and on one process: both final checkpoints equal the
#      reference byte for byte;
#   4. 2 ranks with MPI_Allreduce, two epochs: the test ELBO within 0.1 % of the one-process run's.
set -u
mpirun=$1 bin=$2 data=$3 work=$4
shift 4
flags=("$@")
out=$work/out
rm -rf "$out" && mkdir -p "$out"
train=("$bin/train_mlvae" --data "$data/idx" --epochs 2 --hidden 16 --style 2 --content 2 --group-size 4
       --groups-per-batch 4 --threads 1 --python none --quiet)
fail() { echo "FAILED: $*"; exit 1; }
run() { "$@" || fail "command failed: $*"; }

run "${train[@]}" --deterministic-shards 4 --out "$out/whole" > "$out/whole.log"
run "$mpirun" -np 2 "${flags[@]}" "${train[@]}" --deterministic-shards 4 --stop-after-steps 30 --out "$out/part" \
  > "$out/part.log" 2>&1
cat "$out/part.log"
grep -q "x 2 MPI ranks" "$out/part.log" || fail "the rank count is not reported"
[[ $(grep -c "^train_mlvae:" "$out/part.log") == 1 ]] || fail "progress printed by more than one rank"
[[ $(grep -c "stopped after 30 step(s)" "$out/part.log") == 1 ]] || fail "no (or repeated) stop message"
run "$mpirun" -np 3 "${flags[@]}" "${train[@]}" --deterministic-shards 4 --resume "$out/part/checkpoint.bin" \
  --out "$out/resumed3" > "$out/resumed3.log" 2>&1
run "${train[@]}" --deterministic-shards 4 --resume "$out/part/checkpoint.bin" --out "$out/resumed1" > "$out/resumed1.log"
cmp "$out/whole/checkpoint.bin" "$out/resumed3/checkpoint.bin" || fail "2 ranks then 3 ranks differ from one process"
cmp "$out/whole/checkpoint.bin" "$out/resumed1/checkpoint.bin" || fail "2 ranks then one process differ from one process"
echo "ok: 1 process, 2 ranks -> 3 ranks and 2 ranks -> 1 process give byte-identical checkpoints"

run "${train[@]}" --out "$out/plain" > "$out/plain.log"
run "$mpirun" -np 2 "${flags[@]}" "${train[@]}" --out "$out/allreduce" > "$out/allreduce.log" 2>&1
tail -1 "$out/plain/train_log.csv" | cut -d, -f9 > "$out/plain.elbo"
tail -1 "$out/allreduce/train_log.csv" | cut -d, -f9 > "$out/allreduce.elbo"
a=$(cat "$out/plain.elbo") b=$(cat "$out/allreduce.elbo")
awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; if (d < 0) d = -d; s = a < 0 ? -a : a; exit !(d <= 1e-3 * s) }' \
  || fail "test ELBO with MPI_Allreduce on 2 ranks ($b) is not within 0.1 % of one process ($a)"
echo "ok: MPI_Allreduce on 2 ranks: test ELBO/group $b, one process $a"
echo "PASSED"
