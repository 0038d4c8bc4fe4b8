#!/usr/bin/env bash
# scripts/run_benchmarks.sh — mlvae vs PyTorch on the CPU, in one command (docs/performance.md).
#
#   scripts/run_benchmarks.sh                # threads 2 and 1, archs mlp (+ conv28 when built)
#   THREADS="2" ROUNDS=5 scripts/run_benchmarks.sh
#
# 1. installs Debian's python3-torch if /usr/bin/python3 cannot import torch, and an optimised
#    BLAS (OpenBLAS) if libblas.so.3 is still the reference BLAS — PyTorch's Debian build
#    calls the system BLAS for every Linear layer, so the comparison is otherwise unfair to it;
# 2. builds the release preset's bench_gemm and bench_mlvae_step;
# 3. measures the sgemm peak (bench_gemm), then the mlvae step and the PyTorch step, interleaved
#    for ROUNDS rounds so both see the same machine load, keeping the best round of each;
# 4. prints a table: images/s of both, ratio mlvae/pytorch, GEMM GFLOP/s of the mlvae step and
#    its fraction of the measured sgemm peak;
# 5. times a clean build of one example target (train_mlvae if it exists, else bench_mlvae_step).
#
# 6. GPU section (GPU=auto, the default: when nvcc is present and a CUDA GPU is visible; GPU=only
#    skips the CPU part; GPU=off skips this): builds benchmarks/bench_cuda_step.cu (build/cuda,
#    CUDA_ARCHITECTURES, default native when nvidia-smi sees a GPU), then for 16x16, 64x16 and 256x16 groups x size times the
#    mlvae CUDA step and the PyTorch CUDA step (PYTHON_CUDA: an interpreter with a CUDA build of
#    PyTorch, default $PYTHON) and prints images/s, the ratio, and the step's GEMM GFLOP/s as a
#    fraction of the cuBLAS sgemm rate measured in the same run.
#
# Environment: THREADS (default "2 1"), ARCHS (default "mlp conv28"), ROUNDS (3), STEPS (50; conv28:
# CONV_STEPS, 8), REPS (5), WARMUP (10; conv28: 2), BUILD_DIR (build/release), PYTHON (/usr/bin/python3), SKIP_INSTALL=1,
# SKIP_COMPILE_TIME=1, QUIET_WAIT (seconds to wait for an idle CPU before each measurement, 60).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
THREADS=${THREADS:-"2 1"}
ARCHS=${ARCHS:-"mlp conv28"}
ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-50}
CONV_STEPS=${CONV_STEPS:-8}
REPS=${REPS:-5}
WARMUP=${WARMUP:-10}
BUILD_DIR=${BUILD_DIR:-build/release}
PYTHON=${PYTHON:-/usr/bin/python3}
QUIET_WAIT=${QUIET_WAIT:-20}
BIN=$BUILD_DIR/bin
LOG=$(mktemp -t mlvae_bench.XXXXXX)

say() { printf '== %s\n' "$*" >&2; }

# ---- 1. dependencies --------------------------------------------------------
apt_updated=0
apt_install() {
  if [[ ${SKIP_INSTALL:-0} == 1 ]]; then say "SKIP_INSTALL=1: not installing $*"; return 1; fi
  local sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  if [[ $apt_updated == 0 ]]; then $sudo apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
  say "installing python3-torch (Debian's CPU PyTorch)"
  apt_install python3-torch || true
fi
have_torch=1
"$PYTHON" -c 'import torch' 2>/dev/null || { have_torch=0; say "PyTorch unavailable: only mlvae is measured"; }
blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || true)
if [[ $have_torch == 1 && ( -z $blas || $blas == */blas/libblas.so.3* ) ]]; then
  say "libblas.so.3 is the reference BLAS ($blas): installing OpenBLAS so PyTorch gets a fast sgemm"
  apt_install libopenblas0-pthread || true
  blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || true)
fi

# ---- 2. build ---------------------------------------------------------------
if [[ ${GPU:-auto} != only ]]; then
  say "building the release benchmarks"
  cmake --preset release -DMLVAE_BUILD_BENCHMARKS=ON >/dev/null
  cmake --build "$BUILD_DIR" --target bench_gemm bench_mlvae_step -j2 >/dev/null
fi

# ---- helpers ----------------------------------------------------------------
# Fraction (percent) of CPU time idle over 0.5 s.
idle_percent() {
  local a b
  read -r -a a < <(grep '^cpu ' /proc/stat)
  sleep 0.5
  read -r -a b < <(grep '^cpu ' /proc/stat)
  local total=0 i
  for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
  echo $(( total > 0 ? 100 * (b[4] - a[4]) / total : 100 ))
}
# Waits (up to QUIET_WAIT s, default 20) until the CPUs are at least 90% idle: other work on the machine
# distorts every number here.
wait_quiet() {
  local waited=0 idle
  while :; do
    idle=$(idle_percent)
    (( idle >= 90 )) && return 0
    (( waited >= QUIET_WAIT )) && { say "machine still busy (${idle}% idle), measuring anyway"; return 0; }
    sleep 2; waited=$((waited + 3))
  done
}
# field KEY < RESULT line
field() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" | head -1; }
# best (max) of two numbers, either possibly empty
maxnum() { awk -v a="${1:-}" -v b="${2:-}" 'BEGIN { if (a == "") print b; else if (b == "" || a + 0 >= b + 0) print a; else print b }'; }

# ---- 6. GPU section (defined here, run at the end, or alone with GPU=only) ---
GPU=${GPU:-auto}
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
PYTHON_CUDA=${PYTHON_CUDA:-$PYTHON}
gpu_section() {
  [[ $GPU == off ]] && return 0
  if [[ ! -x $NVCC ]]; then say "GPU section skipped: no nvcc ($NVCC)"; return 0; fi
  # `native` needs a visible GPU at configure time; without one build for sm_80 and let the probe say why.
  local arch=${CUDA_ARCHITECTURES:-}
  [[ -z $arch ]] && { if nvidia-smi -L >/dev/null 2>&1; then arch=native; else arch=80; fi; }
  say "building the CUDA benchmark (build/cuda, CUDA architectures $arch)"
  cmake -S . -B build/cuda -DCMAKE_BUILD_TYPE=Release -DMLVAE_ENABLE_CUDA=ON -DCMAKE_CUDA_COMPILER="$NVCC" \
    -DCMAKE_CUDA_ARCHITECTURES="$arch" -DMLVAE_BUILD_BENCHMARKS=ON \
    -DMLVAE_BUILD_STATIC_CHECKS=OFF >/dev/null
  cmake --build build/cuda --target bench_cuda_step -j2 >/dev/null
  local probe
  probe=$(build/cuda/bin/bench_cuda_step --steps 1 --reps 1 --warmup 1 || true)
  if [[ $probe == *unavailable* ]]; then say "GPU section skipped: ${probe#RESULT mlvae_cuda unavailable: }"; return 0; fi
  local rows=() shape g k line torch_line m p
  for shape in "16 16" "64 16" "256 16"; do
    read -r g k <<<"$shape"
    line=$(build/cuda/bin/bench_cuda_step --groups "$g" --group-size "$k" --steps "$STEPS" --reps "$REPS" \
             --warmup "$WARMUP" | tee -a "$LOG" | grep '^RESULT')
    echo "$line" | tee -a "$LOG"
    torch_line=$("$PYTHON_CUDA" benchmarks/pytorch_mlvae.py --device cuda --groups "$g" --group-size "$k" \
                   --steps "$STEPS" --reps "$REPS" --warmup "$WARMUP" 2>&1 | grep '^RESULT' || true)
    echo "$torch_line" | tee -a "$LOG"
    m=$(echo "$line" | field images_per_s)
    p=$(echo "$torch_line" | field images_per_s)
    rows+=("$(awk -v g="$g" -v k="$k" -v m="$m" -v p="$p" -v f="$(echo "$line" | field gflops)" \
      -v s="$(echo "$line" | field sgemm_gflops)" 'BEGIN {
      printf "| %dx%d | %.0f | %s | %s | %.0f | %.0f | %.1f%% |", g, k, m, (p == "" ? "n/a" : sprintf("%.0f", p)),
        (p == "" ? "-" : sprintf("%.2fx", m / p)), f, s, 100 * f / s }')")
  done
  {
    echo
    echo "| groups x size | mlvae CUDA images/s | PyTorch CUDA images/s | mlvae / PyTorch | step GEMM GFLOP/s | cuBLAS sgemm GFLOP/s | step / sgemm |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "(MLP 784-500, float32, TF32 off; median of $REPS x $STEPS steps after $WARMUP warm-up; an mlvae step"
    echo " includes the pinned upload of the batch and the loss readback; PyTorch keeps its batch on the GPU)"
  } | tee -a "$LOG"
}
if [[ $GPU == only ]]; then
  : >"$LOG"
  gpu_section
  say "log: $LOG"
  exit 0
fi

declare -A PEAK MLVAE TORCH GFLOPS MLVAE_CPU TORCH_CPU
echo "# mlvae benchmarks $(date -u +%FT%TZ) on $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" | tee "$LOG"
[[ $have_torch == 1 ]] && echo "# PyTorch $("$PYTHON" -c 'import torch; print(torch.__version__)'), libblas.so.3 -> $blas" | tee -a "$LOG"

# ---- 3. measurements --------------------------------------------------------
# The sgemm peak: measured at the start of every round, the best kept (load only lowers it).
measure_peak() {
  local t line
  for t in $THREADS; do
    wait_quiet
    line=$("$BIN/bench_gemm" --threads "$t" --peak-only --reps 7 | grep '^RESULT gemm_peak')
    echo "$line" | tee -a "$LOG"
    PEAK[$t]=$(maxnum "${PEAK[$t]:-}" "$(echo "$line" | field gflops)")
  done
}
for round in $(seq 1 "$ROUNDS"); do
  measure_peak
  for arch in $ARCHS; do
    steps=$STEPS warmup=$WARMUP
    [[ $arch == conv28 ]] && { steps=$CONV_STEPS; warmup=2; }
    for t in $THREADS; do
      wait_quiet
      line=$("$BIN/bench_mlvae_step" --arch "$arch" --threads "$t" --steps "$steps" --reps "$REPS" \
               --warmup "$warmup" --peak-gflops "${PEAK[$t]}" | grep '^RESULT')
      # (its peak_fraction uses the best peak so far; the table recomputes it with the final one)
      echo "round $round: $line" | tee -a "$LOG"
      if [[ $line != *unavailable* ]]; then
        ips=$(echo "$line" | field images_per_s)
        if [[ $(maxnum "${MLVAE[$arch,$t]:-}" "$ips") == "$ips" ]]; then
          MLVAE[$arch,$t]=$ips
          GFLOPS[$arch,$t]=$(echo "$line" | field gflops)
        fi
        MLVAE_CPU[$arch,$t]=$(maxnum "${MLVAE_CPU[$arch,$t]:-}" "$(echo "$line" | field images_per_cpu_s)")
      fi
      if [[ $have_torch == 1 && ( $arch == mlp || $line != *unavailable* ) ]]; then
        wait_quiet
        line=$("$PYTHON" benchmarks/pytorch_mlvae.py --arch "$arch" --threads "$t" --steps "$steps" \
                 --reps "$REPS" --warmup "$warmup" | grep '^RESULT')
        echo "round $round: $line" | tee -a "$LOG"
        TORCH[$arch,$t]=$(maxnum "${TORCH[$arch,$t]:-}" "$(echo "$line" | field images_per_s)")
        TORCH_CPU[$arch,$t]=$(maxnum "${TORCH_CPU[$arch,$t]:-}" "$(echo "$line" | field images_per_cpu_s)")
      fi
    done
  done
done

# ---- 4. table ---------------------------------------------------------------
# images/s: wall clock (the comparison); images per CPU-second: process CPU time, all threads
# (robust to other load on a shared machine; at 1 thread the cleanest number).
{
  echo
  echo "| arch | threads | mlvae images/s | PyTorch images/s | mlvae / PyTorch | mlvae img/CPU-s | PyTorch img/CPU-s | CPU-time ratio | mlvae step GFLOP/s | sgemm peak GFLOP/s | step / peak |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for arch in $ARCHS; do
    for t in $THREADS; do
      m=${MLVAE[$arch,$t]:-}
      [[ -z $m ]] && { echo "| $arch | $t | n/a (not built) | ${TORCH[$arch,$t]:--} | - | - | ${TORCH_CPU[$arch,$t]:--} | - | - | ${PEAK[$t]} | - |"; continue; }
      awk -v a="$arch" -v t="$t" -v m="$m" -v p="${TORCH[$arch,$t]:-}" -v mc="${MLVAE_CPU[$arch,$t]:-}" \
          -v pc="${TORCH_CPU[$arch,$t]:-}" -v g="${GFLOPS[$arch,$t]}" -v k="${PEAK[$t]}" 'BEGIN {
        printf "| %s | %d | %.0f | %s | %s | %.0f | %s | %s | %.1f | %.1f | %.0f%% |\n", a, t, m,
          (p == "" ? "-" : sprintf("%.0f", p)), (p == "" ? "-" : sprintf("%.2fx", m / p)), mc,
          (pc == "" ? "-" : sprintf("%.0f", pc)), (pc == "" ? "-" : sprintf("%.2fx", mc / pc)), g, k, 100 * g / k }'
    done
  done
  echo
  echo "(best of $ROUNDS interleaved rounds; each round = median of $REPS x $STEPS steps (conv28: $CONV_STEPS) after warm-up;"
  echo " batch 256 = 16 groups x 16, float32; step GFLOP/s = analytic GEMM FLOPs / wall time)"
} | tee -a "$LOG"

# ---- 5. compile time --------------------------------------------------------
if [[ ${SKIP_COMPILE_TIME:-0} != 1 ]]; then
  target=bench_mlvae_step; dir=benchmarks
  if [[ -f examples/train_mlvae.cpp ]]; then target=train_mlvae; dir=examples; fi
  obj="$BUILD_DIR/$dir/CMakeFiles/$target.dir/$target.cpp.o"
  cmake --build "$BUILD_DIR" --target "$target" -j2 >/dev/null  # dependencies up to date first
  rm -f "$obj" "$BIN/$target"
  wait_quiet
  start=$(date +%s.%N)
  cmake --build "$BUILD_DIR" --target "$target" -j2 >/dev/null
  end=$(date +%s.%N)
  awk -v s="$start" -v e="$end" -v t="$target" 'BEGIN { printf "compile time (clean build of %s, release, -march=native): %.1f s\n", t, e - s }' | tee -a "$LOG"
fi
gpu_section
say "log: $LOG"
