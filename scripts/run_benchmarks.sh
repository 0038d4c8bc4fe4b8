#!/usr/bin/env bash
# scripts/run_benchmarks.sh — mlvae against the strongest PyTorch on this CPU, in one command
# (docs/performance.md).
#
#   scripts/run_benchmarks.sh                    # threads 2 and 1, archs mlp and conv28, every configuration
#   THREADS=2 ARCHS=mlp ROUNDS=3 scripts/run_benchmarks.sh
#
# 1. PyTorch configurations a competent user would try (CONFIGS, each at every thread count):
#      debian-passive  Debian's python3-torch (/usr/bin/python3, PyTorch 1.13 on the system
#                      OpenBLAS) with OMP_WAIT_POLICY=PASSIVE (otherwise its libgomp workers
#                      busy-wait against OpenBLAS's threads) and OPENBLAS_NUM_THREADS = threads;
#      pip-eager       a current PyTorch 2.x wheel (bundled MKL + oneDNN) in a virtual environment
#                      (TORCH_VENV, default ~/.cache/mlvae-torch-venv; created with
#                      `/usr/bin/python3 -m venv` + `pip install torch` when missing), Adam(fused=True);
#      pip-compile     the same under torch.compile (inductor C++/OpenMP kernels), Adam(fused=True);
#      pip-bf16        the same eager model under torch.autocast(bfloat16): the reference for
#                      mlvae's optional bfloat16 products (build "bf16" below), never for float32.
#    Each configuration's kernels (torch.__config__.show(), BLAS, OpenBLAS core type, oneDNN, CPU
#    capability, threads, OMP_WAIT_POLICY) are printed before it is measured.
# 2. The GEMM underneath: bench_gemm measures Eigen (mlvae::Gemm), OpenBLAS, BLIS and oneDNN,
#    single-threaded inside mlvae's column split, at 1024³ and at every product of each step
#    (listed by `bench_mlvae_step --gemm-shapes`), plus a register-only FMA loop. The "sgemm
#    peak" is the best 1024³ rate of these; the FMA peak is the ceiling.
# 3. mlvae's step (bench_mlvae_step) and every PyTorch configuration, interleaved for ROUNDS
#    rounds so all see the same machine; the median round of each is reported. Before the rounds,
#    the default build chooses its GEMM kernel for every product of each step (measured on the
#    quiet machine, into a cache of this run: MLVAE_GEMM_CACHE in the work folder), and the
#    choice is printed.
# 4. Prints, per arch: the HEADLINE ratio mlvae (at the largest thread count) / the FASTEST
#    float32 PyTorch configuration of this run (any configuration, any thread count; mlvae's bf16
#    row against the fastest of any precision), then the table of
#    every configuration, and the step's fraction of the sgemm and FMA peaks; then appends this
#    machine's row to the per-CPU table of docs/performance.md (PER_CPU_TABLE; PER_CPU_TABLE=none:
#    no row), after the rows of earlier runs and other machines, which it never changes.
# 5. Times a clean build of one example (train_mlvae).
#
# 6. GPU section (GPU=auto, the default: when a CUDA GPU is visible; GPU=only skips the CPU part;
#    GPU=off skips this): the benchmark part of scripts/run_gpu.sh (GPU_SECTIONS=bench): builds the
#    CUDA targets (build/cuda, CUDA_ARCHITECTURES, default the GPU's; or MLVAE_GPU_BIN's prebuilt
#    ones), times the mlvae step (batch resident and from the host) and PyTorch eager + fused Adam,
#    torch.compile and the whole step in one CUDA graph (PYTHON_CUDA: an interpreter with a CUDA
#    build of PyTorch, default the venv's python when present, else /usr/bin/python3), MLP and
#    conv28 at 16, 64, 256 and 1024 groups of 16, and prints images/s, mlvae over the fastest
#    PyTorch configuration, and the step's GEMM GFLOP/s against the cuBLAS sgemm rate of the run.
#
# mlvae itself is measured in its default build (BUILD_DIR: each product's kernel chosen at run
# time among Eigen's GEBP, OpenBLAS and BLIS, nn/gemm_select.hpp), in the same build held to
# Eigen (MLVAE_GEMM_KERNEL=eigen: what the choice gains), with --precision bf16 where the CPU has
# AMX and, when OpenBLAS's headers are installed (libopenblas-dev), with
# -DMLVAE_GEMM_BACKEND=OpenBLAS (OPENBLAS_BUILD_DIR).
#
# Environment: THREADS ("2 1"), ARCHS ("mlp conv28"), CONFIGS ("debian-passive pip-eager pip-compile pip-bf16"),
# MLVAE_BUILDS ("default eigen-only openblas bf16"), OPENBLAS_BUILD_DIR (build/release-openblas),
# ROUNDS (3), STEPS (50; conv28: CONV_STEPS, 8), REPS (5), WARMUP (10; conv28 and torch.compile: more),
# BUILD_DIR (build/release), TORCH_VENV, SKIP_INSTALL=1, SKIP_COMPILE_TIME=1, SKIP_GEMM=1,
# QUIET_WAIT (seconds to wait for an idle CPU before each measurement, 20),
# GPU (auto|only|off), CUDA_ARCHITECTURES, PYTHON_CUDA.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
THREADS=${THREADS:-"2 1"}
ARCHS=${ARCHS:-"mlp conv28"}
CONFIGS=${CONFIGS:-"debian-passive pip-eager pip-compile pip-bf16"}
ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-50}
CONV_STEPS=${CONV_STEPS:-8}
REPS=${REPS:-5}
WARMUP=${WARMUP:-10}
BUILD_DIR=${BUILD_DIR:-build/release}
OPENBLAS_BUILD_DIR=${OPENBLAS_BUILD_DIR:-build/release-openblas}
MLVAE_BUILDS=${MLVAE_BUILDS:-"default eigen-only openblas bf16"}
PER_CPU_TABLE=${PER_CPU_TABLE:-docs/performance.md}
DEBIAN_PYTHON=/usr/bin/python3
TORCH_VENV=${TORCH_VENV:-$HOME/.cache/mlvae-torch-venv}
QUIET_WAIT=${QUIET_WAIT:-20}
BIN=$BUILD_DIR/bin
LOG=$(mktemp -t mlvae_bench.XXXXXX)
WORK=$(mktemp -d -t mlvae_bench_work.XXXXXX)
MAX_T=$(printf '%s\n' $THREADS | sort -n | tail -1)

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
# The CPU comparison's packages; GPU=only needs none of them (and a GPU machine may reach no registry).
if [[ ${GPU:-auto} != only ]]; then
  if [[ $CONFIGS == *debian* ]] && ! "$DEBIAN_PYTHON" -c 'import torch' 2>/dev/null; then
    say "installing python3-torch (Debian's CPU PyTorch)"
    apt_install python3-torch || true
  fi
  blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || true)
  if [[ $CONFIGS == *debian* && ( -z $blas || $blas == */blas/libblas.so.3* ) ]]; then
    say "libblas.so.3 is the reference BLAS ($blas): installing OpenBLAS so Debian's PyTorch gets a fast sgemm"
    apt_install libopenblas0-pthread || true
  fi
  # The GEMM backends bench_gemm compares (dlopen'ed; a missing one is skipped).
  if [[ ${SKIP_GEMM:-0} != 1 ]] && ! ldconfig -p | grep -q 'libblis.so.4\b\|libdnnl.so.2\b'; then
    apt_install libopenblas0-pthread libblis4-openmp libdnnl2 || true
  fi
  if [[ $CONFIGS == *pip* && ! -x $TORCH_VENV/bin/python && ${SKIP_INSTALL:-0} != 1 ]]; then
    say "creating $TORCH_VENV with a current PyTorch 2.x CPU wheel (one-time download)"
    "$DEBIAN_PYTHON" -m venv "$TORCH_VENV"
    # The CPU-only wheel index first; where it is not reachable, PyPI's wheel (same CPU kernels).
    timeout 900 "$TORCH_VENV/bin/pip" install -q torch numpy --index-url https://download.pytorch.org/whl/cpu ||
      timeout 1800 "$TORCH_VENV/bin/pip" install -q torch numpy || say "pip install torch failed"
  fi
fi

# A configuration: python, environment and arguments.
config_python() { case $1 in debian-*) echo "$DEBIAN_PYTHON" ;; pip-*) echo "$TORCH_VENV/bin/python" ;; esac; }
config_env() {  # name threads
  case $1 in
    debian-passive) echo "OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=$2" ;;
    *) echo "" ;;
  esac
}
config_args() {
  case $1 in
    pip-eager) echo "--fused-adam" ;;
    pip-compile) echo "--compile --fused-adam" ;;
    pip-bf16) echo "--fused-adam --bf16" ;;  # autocast to bfloat16: the reference for mlvae's bf16 build
    *) echo "" ;;
  esac
}
run_config() {  # name threads arch steps warmup [extra args]
  local name=$1 t=$2 arch=$3 steps=$4 warmup=$5
  shift 5
  # shellcheck disable=SC2046
  env $(config_env "$name" "$t") "$(config_python "$name")" benchmarks/pytorch_mlvae.py --arch "$arch" --threads "$t" \
    --steps "$steps" --reps "$REPS" --warmup "$warmup" $(config_args "$name") "$@"
}
available=""
for cfg in $CONFIGS; do
  py=$(config_python "$cfg")
  if [[ -x $py ]] && "$py" -c 'import torch' 2>/dev/null; then available+=" $cfg"; else say "$cfg: no PyTorch at $py, skipped"; fi
done

# ---- 2. build ---------------------------------------------------------------
if [[ ${GPU:-auto} != only ]]; then
  say "building the release benchmarks"
  cmake --preset release -DMLVAE_BUILD_BENCHMARKS=ON >/dev/null
  cmake --build "$BUILD_DIR" --target bench_gemm bench_mlvae_step -j2 >/dev/null
  builds=""
  for b in $MLVAE_BUILDS; do
    case $b in
      default | eigen-only) builds+=" $b" ;;
      bf16)  # the Eigen build with --precision bf16 (AMX), where the CPU and the build have it
        if "$BIN/bench_mlvae_step" --arch mlp --threads 1 --steps 1 --reps 1 --warmup 1 --precision bf16 >/dev/null 2>&1; then
          builds+=" bf16"
        else
          say "bf16: bench_mlvae_step --precision bf16 does not run here (no AMX-BF16?): skipped"
        fi ;;
      openblas)
        [[ -f /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h ]] || apt_install libopenblas-dev || true
        if cmake -S . -B "$OPENBLAS_BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DMLVAE_BUILD_BENCHMARKS=ON \
             -DMLVAE_BUILD_TESTS=OFF -DMLVAE_BUILD_EXAMPLES=OFF -DMLVAE_GEMM_BACKEND=OpenBLAS >/dev/null &&
           cmake --build "$OPENBLAS_BUILD_DIR" --target bench_mlvae_step -j2 >/dev/null; then
          builds+=" openblas"
        else
          say "the OpenBLAS-backend build failed: measuring the Eigen build only"
        fi ;;
    esac
  done
step_bin() { case $1 in default | eigen-only | bf16) echo "$BIN/bench_mlvae_step" ;; openblas) echo "$OPENBLAS_BUILD_DIR/bin/bench_mlvae_step" ;; esac; }
# The environment of a build's runs: the choice of this run's cache, or Eigen alone.
step_env() { if [[ $1 == eigen-only ]]; then echo "MLVAE_GEMM_KERNEL=eigen"; else echo "MLVAE_GEMM_CACHE=$WORK/gemm_kernels.txt"; fi; }
step_args() { [[ $1 == bf16 ]] && echo "--precision bf16" || true; }
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
# Waits (up to QUIET_WAIT s) until the CPUs are at least 90% idle: other work distorts every number.
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
if [[ -x $TORCH_VENV/bin/python ]]; then PYTHON_CUDA=${PYTHON_CUDA:-$TORCH_VENV/bin/python}; else PYTHON_CUDA=${PYTHON_CUDA:-$DEBIAN_PYTHON}; fi
gpu_section() {
  [[ $GPU == off ]] && return 0
  # auto: only where a GPU is visible; scripts/run_gpu.sh itself says "no GPU visible: ..." otherwise.
  if [[ $GPU == auto ]] && ! nvidia-smi -L >/dev/null 2>&1; then say "GPU section skipped: no GPU visible (nvidia-smi -L)"; return 0; fi
  if [[ -z ${MLVAE_GPU_BIN:-} && ! -x $NVCC ]]; then say "GPU section skipped: no nvcc ($NVCC) and no MLVAE_GPU_BIN"; return 0; fi
  # The benchmark part of the one GPU check: mlvae (batch resident and from the host) against
  # PyTorch eager + fused Adam, torch.compile and the whole step in one CUDA graph, MLP and conv28,
  # 16..1024 groups of 16, TF32 off; its table (ratio against the fastest PyTorch) comes last.
  say "GPU section: scripts/run_gpu.sh (bench only; build/cuda, CUDA architectures ${CUDA_ARCHITECTURES:-of the GPU})"
  GPU_SECTIONS=bench GPU_BUILD_DIR=build/cuda PYTHON_CUDA="$PYTHON_CUDA" GPU_LOG_DIR="$ROOT/build/run_gpu" \
    "$ROOT/scripts/run_gpu.sh" 2>&1 | tee -a "$LOG"
}
if [[ $GPU == only ]]; then
  : >"$LOG"
  gpu_section
  say "log: $LOG"
  exit 0
fi

declare -A BEST PEAK PEAK_BACKEND FMA MLVAE GFLOPS MLVAE_CPU TORCH TORCH_CPU KERNELS GEMM_STEP
{
  echo "# mlvae benchmarks $(date -u +%FT%TZ) on $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
  echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg); g++ $(g++ -dumpfullversion), libblas.so.3 -> $(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || echo none)"
} | tee "$LOG"

# ---- kernels of every configuration ---------------------------------------
for cfg in $available; do
  for t in $THREADS; do
    # shellcheck disable=SC2046
    out=$(env $(config_env "$cfg" "$t") "$(config_python "$cfg")" benchmarks/pytorch_mlvae.py --threads "$t" --show-config 2>&1)
    echo "$out" >>"$LOG"
    KERNELS[$cfg,$t]=$(echo "$out" | grep '^# torch' | sed 's/^# //')
    echo "config $cfg threads $t: ${KERNELS[$cfg,$t]}" | tee -a "$LOG"
  done
done

# ---- the GEMM underneath ----------------------------------------------------
for arch in $ARCHS; do "$BIN/bench_mlvae_step" --arch "$arch" --threads 1 --gemm-shapes | grep '^GEMM' >"$WORK/$arch.shapes" || true; done
if [[ ${SKIP_GEMM:-0} != 1 ]]; then
  for arch in $ARCHS; do
    [[ -s $WORK/$arch.shapes ]] || continue
    wait_quiet
    # shellcheck disable=SC2086
    "$BIN/bench_gemm" --threads $THREADS --reps 3 --shapes "$WORK/$arch.shapes" --step-name "$arch" |
      tee -a "$LOG" | grep -E '^# |gemm_peak|gemm_step|fma_peak|square' || true
  done
  for t in $THREADS; do
    FMA[$t]=$(grep "^RESULT fma_peak threads=$t " "$LOG" | sed 's/.*gflops=//' | sort -g | tail -1)
    best=0
    for l in $(grep "^RESULT gemm_peak threads=$t " "$LOG" | sed 's/.* gflops=\([^ ]*\) backend=\([^ ]*\).*/\1:\2/'); do
      if awk -v a="${l%%:*}" -v b="$best" 'BEGIN { exit !(a > b) }'; then best=${l%%:*}; PEAK_BACKEND[$t]=${l##*:}; fi
    done
    PEAK[$t]=$best
    for arch in $ARCHS; do
      GEMM_STEP[$arch,$t]=$(grep "^RESULT gemm_step $arch best threads=$t " "$LOG" | field gflops || true)
    done
  done
else
  for t in $THREADS; do PEAK[$t]=$("$BIN/bench_gemm" --threads "$t" --peak-only --backends eigen | grep '^RESULT gemm_peak' | field gflops); PEAK_BACKEND[$t]=eigen; FMA[$t]=0; done
fi

# ---- 3. interleaved rounds --------------------------------------------------
# median of a space-separated list of numbers ("" when empty)
median() { printf '%s\n' $1 | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
declare -A ALL ALL_CPU FLOP_PER_IMAGE CHOICE
# The default build's kernel choice, measured once on the quiet machine at the largest thread
# count (a shape's choice then holds for every thread count) and kept in this run's cache.
if [[ " $builds " == *" default "* ]]; then
  # The selector measures nothing while the 1-minute load average is above the core count + 0.5
  # (earlier builds decay slowly): wait for it, up to 3 minutes.
  for _ in $(seq 36); do
    awk -v l="$(cut -d' ' -f1 /proc/loadavg)" -v n="$(nproc)" 'BEGIN { exit !(l > n) }' || break
    sleep 5
  done
  for arch in $ARCHS; do
    wait_quiet
    # shellcheck disable=SC2046
    env $(step_env default) "$(step_bin default)" --arch "$arch" --threads "$MAX_T" --steps 1 --reps 1 --warmup 1 \
      --peak-gflops "${PEAK[$MAX_T]}" >"$WORK/$arch.choice" 2>&1 || true
    CHOICE[$arch]=$(grep '^# .*multiply-adds' "$WORK/$arch.choice" | sed 's/^# //' || true)
    {
      echo "GEMM kernels of the default build, $arch (one per product of the step; chosen now, on this machine):"
      echo "${CHOICE[$arch]:-  (none reported; see $WORK/$arch.choice)}" | sed 's/^/  /'
    } | tee -a "$LOG"
  done
fi
for round in $(seq 1 "$ROUNDS"); do
  for arch in $ARCHS; do
    steps=$STEPS warmup=$WARMUP
    [[ $arch == conv28 ]] && { steps=$CONV_STEPS; warmup=2; }
    for t in $THREADS; do
      for b in $builds; do
        wait_quiet
        # shellcheck disable=SC2046
        line=$(env $(step_env "$b") "$(step_bin "$b")" --arch "$arch" --threads "$t" --steps "$steps" --reps "$REPS" \
                 --warmup "$warmup" --peak-gflops "${PEAK[$t]}" $(step_args "$b") | grep '^RESULT')
        echo "round $round: $b $line" | tee -a "$LOG"
        ips=$(echo "$line" | field images_per_s)
        ALL[$arch,$b,$t]+=" $ips"
        ALL_CPU[$arch,$b,$t]+=" $(echo "$line" | field images_per_cpu_s)"
        FLOP_PER_IMAGE[$arch,$b]=$(awk -v g="$(echo "$line" | field gflops)" -v i="$ips" 'BEGIN { print (i > 0 ? g / i : 0) }')
      done
      for cfg in $available; do
        wait_quiet
        w=$warmup
        [[ $cfg == *compile* ]] && w=$((warmup + 3))  # the compile happens in the warm-up
        line=$(run_config "$cfg" "$t" "$arch" "$steps" "$w" 2>>"$LOG" | grep '^RESULT' || true)
        [[ -z $line ]] && { say "$cfg $arch $t threads failed (see $LOG)"; continue; }
        echo "round $round: $cfg $line" | tee -a "$LOG"
        ALL[$arch,$cfg,$t]+=" $(echo "$line" | field images_per_s)"
        ALL_CPU[$arch,$cfg,$t]+=" $(echo "$line" | field images_per_cpu_s)"
      done
    done
  done
done
# The median round of each (what the tables report).
for arch in $ARCHS; do
  for t in $THREADS; do
    for b in $builds; do
      MLVAE[$arch,$b,$t]=$(median "${ALL[$arch,$b,$t]:-}")
      MLVAE_CPU[$arch,$b,$t]=$(median "${ALL_CPU[$arch,$b,$t]:-}")
      GFLOPS[$arch,$b,$t]=$(awk -v i="${MLVAE[$arch,$b,$t]:-0}" -v f="${FLOP_PER_IMAGE[$arch,$b]:-0}" 'BEGIN { print i * f }')
    done
    for cfg in $available; do
      TORCH[$arch,$cfg,$t]=$(median "${ALL[$arch,$cfg,$t]:-}")
      TORCH_CPU[$arch,$cfg,$t]=$(median "${ALL_CPU[$arch,$cfg,$t]:-}")
    done
  done
done

# ---- 4. tables --------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2fx", a / b }'; }
{
  echo
  for arch in $ARCHS; do
    # float32 against the fastest float32 PyTorch; mlvae's bf16 products against the fastest
    # PyTorch of either precision (its bf16 autocast included).
    best="" best_cfg="" best_any="" best_any_cfg=""
    for cfg in $available; do
      for t in $THREADS; do
        v=${TORCH[$arch,$cfg,$t]:-}
        [[ -z $v ]] && continue
        [[ $cfg != *bf16* && $(maxnum "$best" "$v") == "$v" ]] && { best=$v; best_cfg="$cfg, $t thread(s)"; }
        [[ $(maxnum "$best_any" "$v") == "$v" ]] && { best_any=$v; best_any_cfg="$cfg, $t thread(s)"; }
      done
    done
    BEST[$arch]=$best
    for b in $builds; do
      m=${MLVAE[$arch,$b,$MAX_T]:-}
      ref=$best ref_cfg="float32: $best_cfg"
      [[ $b == bf16 ]] && { ref=$best_any; ref_cfg="any precision: $best_any_cfg"; }
      printf '**%s: mlvae (%s build) at %s threads %.0f images/s; fastest PyTorch (%s) %s images/s: %s**\n' "$arch" \
        "$b" "$MAX_T" "$m" "${ref_cfg}" "$(awk -v b="$ref" 'BEGIN { printf (b == "" ? "-" : "%.0f"), b }')" \
        "$(ratio "$m" "$ref")"
    done
  done
  echo
  echo "| arch | who | threads | images/s | img/CPU-s | mlvae (default) at $MAX_T threads / this | mlvae (default) at the same threads / this | kernels |"
  echo "|---|---|---:|---:|---:|---:|---:|---|"
  for arch in $ARCHS; do
    for b in $builds; do
      for t in $THREADS; do
        kern="each product's kernel chosen at run time (Eigen GEBP, OpenBLAS or BLIS; list above), via mlvae::Gemm"
        [[ $b == eigen-only ]] && kern="Eigen GEBP via mlvae::Gemm (MLVAE_GEMM_KERNEL=eigen; C split over threads: rows when tall, else columns)"
        [[ $b == openblas ]] && kern="OpenBLAS cblas_sgemm, single-threaded per fixed block of C (-DMLVAE_GEMM_BACKEND=OpenBLAS)"
        [[ $b == bf16 ]] && kern="bfloat16 inputs, float32 accumulation on AMX tiles (--precision bf16; parameters and Adam in float32)"
        printf '| %s | mlvae (%s) | %s | %.0f | %.0f | %s | %s | %s |\n' "$arch" "$b" "$t" "${MLVAE[$arch,$b,$t]:-0}" \
          "${MLVAE_CPU[$arch,$b,$t]:-0}" "$(ratio "${MLVAE[$arch,default,$MAX_T]:-}" "${MLVAE[$arch,$b,$t]:-}")" \
          "$(ratio "${MLVAE[$arch,default,$t]:-}" "${MLVAE[$arch,$b,$t]:-}")" "$kern"
      done
    done
    for cfg in $available; do
      for t in $THREADS; do
        v=${TORCH[$arch,$cfg,$t]:-}
        printf '| %s | PyTorch %s | %s | %s | %s | %s | %s | %s |\n' "$arch" "$cfg" "$t" \
          "$(awk -v v="$v" 'BEGIN { printf (v == "" ? "failed" : "%.0f"), v }')" \
          "$(awk -v v="${TORCH_CPU[$arch,$cfg,$t]:-}" 'BEGIN { printf (v == "" ? "-" : "%.0f"), v }')" \
          "$(ratio "${MLVAE[$arch,default,$MAX_T]:-}" "$v")" "$(ratio "${MLVAE[$arch,default,$t]:-}" "$v")" "${KERNELS[$cfg,$t]:-?}"
      done
    done
  done
  echo
  echo "| arch | mlvae build | threads | step GFLOP/s | step products alone, best backend each | sgemm peak (1024³, best backend) | FMA peak | step / sgemm peak | step / FMA peak |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
  for arch in $ARCHS; do
    for b in $builds; do
      for t in $THREADS; do
        awk -v a="$arch" -v b="$b" -v t="$t" -v g="${GFLOPS[$arch,$b,$t]:-0}" -v s="${GEMM_STEP[$arch,$t]:-}" \
            -v k="${PEAK[$t]:-0}" -v kb="${PEAK_BACKEND[$t]:-}" -v f="${FMA[$t]:-0}" 'BEGIN {
          printf "| %s | %s | %d | %.1f | %s | %.1f (%s) | %.1f | %.0f%% | %s |\n", a, b, t, g, (s == "" ? "-" : s), k, kb, f,
            (k > 0 ? 100 * g / k : 0), (f > 0 ? sprintf("%.0f%%", 100 * g / f) : "-") }'
      done
    done
  done
  echo
  if [[ ${SKIP_GEMM:-0} != 1 ]]; then
    echo "GEMM backends, single-threaded inside mlvae's column split (GFLOP/s; step = all products of one step back to back):"
    echo
    echo "| threads | product | $(printf '%s | ' eigen openblas blis onednn)"
    echo "|---:|---|---:|---:|---:|---:|"
    for t in $THREADS; do
      row="| $t | 1024³ |"
      for be in eigen openblas blis onednn; do
        row+=" $(grep "^RESULT gemm $be square .* threads=$t " "$LOG" | sed 's/.*gflops=//' | sort -g | tail -1) |"
      done
      echo "$row"
      for arch in $ARCHS; do
        row="| $t | $arch step |"
        for be in eigen openblas blis onednn; do
          row+=" $(grep "^RESULT gemm_step $arch $be threads=$t " "$LOG" | field gflops) |"
        done
        echo "$row"
      done
    done
    echo
  fi
  echo "(median of $ROUNDS interleaved rounds; each = median of $REPS x $STEPS steps (conv28: $CONV_STEPS) after warm-up;"
  echo " batch 256 = 16 groups x 16, float32 (bf16 rows: products in bfloat16); step GFLOP/s = analytic GEMM FLOPs / wall time)"
} | tee -a "$LOG"

# ---- 4b. this machine's row of the per-CPU table ------------------------------
# One row per run, appended before the table's end marker; rows of other runs and machines are
# never changed. Ratio = mlvae's default build / the fastest float32 PyTorch configuration at the
# same thread count (median rounds); FMA share = the step's GEMM FLOP rate / the FMA peak.
per_cpu_row() {
  local cpu fam model isa="" f row arch t best cfg v kern
  cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//; s/ *$//')
  fam=$(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | tr -d ' ')
  model=$(grep -m1 '^model[[:space:]]*:' /proc/cpuinfo | cut -d: -f2 | tr -d ' ')
  for f in avx2 fma avx512f avx512_bf16 amx_bf16; do grep -qw "$f" /proc/cpuinfo && isa+="${isa:+, }$f"; done
  row="| $(date -u +%F) | $cpu (family $fam, model $model) | $isa | $(nproc) | $(git rev-parse --short HEAD 2>/dev/null || echo -) |"
  for arch in mlp conv28; do
    for t in 2 1; do
      best="" cfg=""
      for c in $available; do
        [[ $c == *bf16* ]] && continue
        v=${TORCH[$arch,$c,$t]:-}
        [[ -n $v && $(maxnum "$best" "$v") == "$v" ]] && { best=$v; cfg=$c; }
      done
      if [[ -n ${MLVAE[$arch,default,$t]:-} && -n $best ]]; then
        row+=" $(ratio "${MLVAE[$arch,default,$t]}" "$best") ($(printf '%.0f' "${MLVAE[$arch,default,$t]}") / $(printf '%.0f' "$best") $cfg) |"
      else
        row+=" – |"
      fi
    done
  done
  for arch in mlp conv28; do
    row+=" $(awk -v g="${GFLOPS[$arch,default,$MAX_T]:-0}" -v f="${FMA[$MAX_T]:-0}" 'BEGIN { if (f > 0 && g > 0) printf "%.0f%%", 100 * g / f; else printf "–" }') |"
  done
  kern=""
  for arch in mlp conv28; do
    [[ -z ${CHOICE[$arch]:-} ]] && continue
    kern+="${kern:+; }$arch: $(echo "${CHOICE[$arch]}" | sed -n 's/.* threads\{0,1\}: \([a-z]*\) (.*/\1/p' | sort | uniq -c |
      awk '{ printf "%s%s %d", (NR > 1 ? ", " : ""), $2, $1 }')"
  done
  row+=" ${kern:-–} |"
  echo "$row"
}
if [[ " $builds " == *" default "* && $THREADS == *1* && $THREADS == *2* ]]; then
  row=$(per_cpu_row)
  echo "per-CPU row: $row" | tee -a "$LOG"
  marker='<!-- per-cpu rows end: scripts/run_benchmarks.sh inserts its row above this line -->'
  if [[ $PER_CPU_TABLE != none && -f $PER_CPU_TABLE ]] && grep -qF "$marker" "$PER_CPU_TABLE"; then
    awk -v row="$row" -v m="$marker" '$0 == m { print row } { print }' "$PER_CPU_TABLE" >"$WORK/table" &&
      cat "$WORK/table" >"$PER_CPU_TABLE"
    say "appended this machine's row to $PER_CPU_TABLE (per-CPU table)"
  elif [[ $PER_CPU_TABLE != none ]]; then
    say "no per-CPU table marker in $PER_CPU_TABLE: row printed above, not written"
  fi
else
  say "per-CPU row needs the default build at 1 and 2 threads (THREADS=\"2 1\"): not written"
fi

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
echo "# load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$LOG"
rm -rf "$WORK"
say "log: $LOG"
