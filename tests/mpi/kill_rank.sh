#!/usr/bin/env bash
# tests/mpi/kill_rank.sh MPIRUN WORKER DIR [mpirun flags...] — the dead-rank test (CTest
# mpi_dead_rank_np3): starts a 3-rank training job, waits until every rank is training, kills
# rank 2 from outside with SIGKILL, and checks that the whole job ends (non-zero status) and says
# which rank died. Open MPI's mpirun notices the dead process and kills the survivors, which sit in
# MPI_Allreduce; the collective watchdog (60 s here) is the fallback if it did not. CTest's
# TIMEOUT only guards against a hang; nothing here asserts on time.
set -u
mpirun=$1 worker=$2 dir=$3
shift 3
rm -rf "$dir" && mkdir -p "$dir"
"$mpirun" -np 3 "$@" "$worker" dead-rank "$dir" >"$dir/out.txt" 2>&1 &
job=$!
for _ in $(seq 1 600); do
  [[ -f "$dir/rank0.pid" && -f "$dir/rank1.pid" && -f "$dir/rank2.pid" ]] && break
  kill -0 "$job" 2>/dev/null || break
  sleep 0.1
done
if [[ ! -f "$dir/rank2.pid" ]]; then
  echo "FAILED: the job did not start training"; cat "$dir/out.txt"; kill -9 "$job" 2>/dev/null; exit 1
fi
victim=$(cat "$dir/rank2.pid")
start=$(date +%s%N)
kill -9 "$victim"
echo "killed rank 2 (pid $victim) with SIGKILL"
wait "$job"
status=$?
end=$(date +%s%N)
cat "$dir/out.txt"
echo "mpirun exited with status $status, $(( (end - start) / 1000000 )) ms after the kill"
if [[ $status -eq 0 ]]; then echo "FAILED: the job ended with status 0"; exit 1; fi
if grep -q "training finished" "$dir/out.txt"; then echo "FAILED: a survivor finished training"; exit 1; fi
if ! grep -Eq "process rank 2 with PID [0-9]+ on node [^ ]+ exited on signal 9|rank 2 .*(died|signal 9)|did not complete within" "$dir/out.txt"; then
  echo "FAILED: no message saying that rank 2 died"; exit 1
fi
# The survivors are killed by mpirun's daemon as the job is torn down; allow them 30 s to vanish
# (a zombie awaiting its reaper counts as ended).
alive() { [[ -e /proc/$1 ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
for r in 0 1; do
  pid=$(cat "$dir/rank$r.pid")
  for _ in $(seq 1 300); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then echo "FAILED: rank $r (pid $pid) is still running"; kill -9 "$pid"; exit 1; fi
done
echo "PASSED: the job ended when rank 2 was killed"
