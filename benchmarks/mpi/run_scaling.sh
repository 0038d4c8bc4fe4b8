#!/usr/bin/env bash
# benchmarks/mpi/run_scaling.sh — 1 rank x 2 threads against 2 ranks x 1 thread on this machine,
# ROUNDS interleaved rounds per architecture (ARCHS), printing bench_data_parallel's RESULT lines.
# Builds the benchmark (release preset, MLVAE_ENABLE_MPI=ON). docs/performance.md has the numbers.
#   ROUNDS=3 ARCHS="mlp conv28" benchmarks/mpi/run_scaling.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
cmake --preset release >/dev/null
cmake --build build/release --target mlvae_bench_data_parallel -j2 >/dev/null
bench=build/release/bin/mlvae_bench_data_parallel
flags=(--allow-run-as-root --oversubscribe)
for round in $(seq 1 "${ROUNDS:-3}"); do
  for arch in ${ARCHS:-mlp conv28}; do
    if [[ $arch == mlp ]]; then steps=(--steps 40 --reps 3); else steps=(--steps 6 --reps 2 --warmup 2); fi
    echo "# round $round, $(uptime | sed 's/.*load/load/')"
    mpirun "${flags[@]}" -np 1 --bind-to none "$bench" --arch "$arch" --threads 2 "${steps[@]}" | grep RESULT
    mpirun "${flags[@]}" -np 2 --bind-to core "$bench" --arch "$arch" --threads 1 "${steps[@]}" | grep RESULT
    mpirun "${flags[@]}" -np 1 --bind-to none "$bench" --arch "$arch" --threads 1 "${steps[@]}" | grep RESULT
  done
done
