#!/usr/bin/env bash
# scripts/run_gpu.sh — the one GPU check (issue 22): everything GPU-specific of mlvae in one run.
#
#   1. finds a GPU (without one: prints "no GPU visible: <why>" and exits 0);
#   2. builds the CUDA targets for the visible GPU (sm_90 on Hopper) with cmake, or takes prebuilt
#      binaries from MLVAE_GPU_BIN (a folder holding bench_cuda_step, mlvae_gpu_tests and
#      train_mlvae, e.g. gpu_bundle/ from scripts/gpu_bundle.sh, for a GPU machine without
#      cmake, Eigen or cereal); libraries missing there are looked up (libcublas.so.13: ldconfig,
#      /usr/local/cuda*, the Python packages' nvidia/ folders) and added to LD_LIBRARY_PATH;
#   3. runs the gpu-labelled tests (ctest -L gpu in a build tree, else mlvae_gpu_tests itself);
#   4. the GPU benchmark: mlvae's step (bench_cuda_step: batch resident on the GPU with the
#      host-free step replayed as one CUDA graph, batch resident with the synchronising step, batch
#      uploaded from the host every step) and PyTorch's three best configurations
#      (benchmarks/pytorch_mlvae.py --device cuda: eager with fused Adam, torch.compile, the whole
#      step in one CUDA graph), MLP and conv28, at 16, 64, 256 and 1024 groups of 16, float32 with
#      TF32 off on both sides, median of 3 repetitions;
#   5. train_mlvae --device cuda for one epoch (MLP and conv28, 16 groups of 16) on Fashion-MNIST
#      (MLVAE_FASHION_MNIST_DIR, <MLVAE_GPU_BIN>/fashion-mnist or the Debian path; else random
#      images of the same shape), to set the trainer's rate against the step benchmark's;
#   6. runs compute-sanitizer (memcheck, then racecheck) on mlvae_gpu_tests --quick;
#   7. prints a markdown summary LAST: the checks, images/s of every configuration, mlvae over the
#      fastest PyTorch configuration at each batch, the step's GEMM rate against cuBLAS sgemm's.
# About 5 minutes on an H200 once built (PyTorch's compiles take most of it: the compile modes run
# at GPU_COMPILE_GROUPS only). A time budget (GPU_BUDGET_S, 540 s) bounds the whole: a part that
# would start with too little of it left is skipped and named in the summary, which always prints.
# Exit status: 0 when every check passed (or no GPU is visible), 1 otherwise.
#
# Environment (all optional):
#   MLVAE_GPU_BIN      prebuilt binaries (skips the build)       GPU_BUILD_DIR  build tree (build/gpu)
#   CUDA_ARCHITECTURES for the build (default: the GPU's compute capability, e.g. 90)
#   PYTHON_CUDA        Python with a CUDA PyTorch (python3)      GPU_LOG_DIR    where the log goes (build/run_gpu)
#   GPU_SECTIONS       some of "tests sanitizer bench train" (all)
#   GPU_ARCHS ("mlp conv28")  GPU_GROUPS ("16 64 256 1024")  GPU_GROUP_SIZE (16)  GPU_COMPILE_GROUPS ("16 256")
#   GPU_STEPS (20)  GPU_REPS (3)  GPU_WARMUP (5)  GPU_TRAIN_ARCHS ("mlp conv28")  SANITIZER_TIMEOUT (150 s each)
#   GPU_MLVAE_CONFIGS ("m_graph m_resident m_host"; m_async too: the host-free step without the graph)
#   GPU_BUDGET_S (540: seconds for everything after the build)
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Folders given relative to where the script was started.
[[ -n ${MLVAE_GPU_BIN:-} && -d $MLVAE_GPU_BIN ]] && MLVAE_GPU_BIN=$(cd "$MLVAE_GPU_BIN" && pwd)
[[ -n ${GPU_LOG_DIR:-} ]] && mkdir -p "$GPU_LOG_DIR" 2>/dev/null && GPU_LOG_DIR=$(cd "$GPU_LOG_DIR" && pwd)
cd "$ROOT" || exit 1
SECTIONS=${GPU_SECTIONS:-tests sanitizer bench train}
ARCHS=${GPU_ARCHS:-mlp conv28}
BATCHES=${GPU_GROUPS:-16 64 256 1024}
K=${GPU_GROUP_SIZE:-16}
COMPILE_GROUPS=${GPU_COMPILE_GROUPS:-16 256}
STEPS=${GPU_STEPS:-20}
REPS=${GPU_REPS:-3}
WARMUP=${GPU_WARMUP:-5}
TRAIN_ARCHS=${GPU_TRAIN_ARCHS:-mlp conv28}
SAN_TIMEOUT=${SANITIZER_TIMEOUT:-150}
PY=${PYTHON_CUDA:-python3}
LOG_DIR=${GPU_LOG_DIR:-$ROOT/build/run_gpu}  # the logs only (run_gpu.log, memcheck.log, racecheck.log)
WORK=${TMPDIR:-/tmp}/mlvae_run_gpu              # train_mlvae's outputs, random data when no Fashion-MNIST
START=$SECONDS

BUDGET=${GPU_BUDGET_S:-540}
has() { [[ " $SECTIONS " == *" $1 "* ]]; }
left() { echo $((BUDGET - (SECONDS - START))); }  # seconds of the budget that are left
# over_budget WHAT: true (and says so) when less than `need` seconds of the budget are left
over_budget() {
  local need=${2:-20}
  (($(left) >= need)) && return 1
  echo "skipped: $1 (time budget GPU_BUDGET_S=${BUDGET}s nearly spent)"
  SKIPPED_FOR_TIME+=("$1")
  return 0
}
SKIPPED_FOR_TIME=()
say() { printf '\n== %s (%ds)\n' "$*" "$((SECONDS - START))"; }
# field NAME: the value of NAME=... in the line on stdin
field() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" | head -1; }

# ---- 1. a GPU? ----------------------------------------------------------------------------------
no_gpu_reason() {
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi -L 2>/dev/null | grep -q '^GPU ' && return 0
    echo "nvidia-smi -L lists no GPU ($(nvidia-smi -L 2>&1 | head -1))"
    return 1
  fi
  if compgen -G '/proc/driver/nvidia/gpus/*' >/dev/null; then return 0; fi
  if compgen -G '/dev/nvidia[0-9]*' >/dev/null; then return 0; fi
  echo "no nvidia-smi, no /proc/driver/nvidia/gpus and no /dev/nvidia<N> on this machine"
  return 1
}
if ! reason=$(no_gpu_reason); then
  echo "no GPU visible: $reason; scripts/run_gpu.sh needs an NVIDIA GPU (nothing run)"
  exit 0
fi
mkdir -p "$LOG_DIR"
LOG=$LOG_DIR/run_gpu.log
: >"$LOG"
exec > >(tee -a "$LOG") 2>&1
echo "# scripts/run_gpu.sh on $(hostname), $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap,clocks.sm,clocks.max.sm --format=csv,noheader 2>/dev/null |
  sed 's/^/# GPU: /'

# ---- 2. binaries -------------------------------------------------------------------------------
find_cublas_dir() {  # a folder holding libcublas.so.13 (and libcublasLt.so.13), or nothing
  local p d sp
  p=$(ldconfig -p 2>/dev/null | awk '/libcublas\.so\.13 /{print $NF; exit}')
  [[ -n $p ]] && { dirname "$p"; return; }
  for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-13*/lib64 \
           /usr/local/cuda-13*/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu; do
    [[ -e $d/libcublas.so.13 ]] && { echo "$d"; return; }
  done
  sp=$("$PY" -c 'import site, sys; print(" ".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null)
  for d in $sp; do
    [[ -d $d/nvidia ]] || continue
    p=$(find "$d/nvidia" -name 'libcublas.so.13*' 2>/dev/null | head -1)
    [[ -n $p ]] && { dirname "$p"; return; }
  done
  p=$(find / -xdev \( -path /proc -o -path /sys \) -prune -o -name 'libcublas.so.13*' -print 2>/dev/null | head -1)
  [[ -n $p ]] && dirname "$p"
}

BUILD=""
if [[ -n ${MLVAE_GPU_BIN:-} ]]; then
  BIN=$(cd "$MLVAE_GPU_BIN" && pwd) || { echo "MLVAE_GPU_BIN=$MLVAE_GPU_BIN is not a folder"; exit 1; }
  say "prebuilt binaries in $BIN"
  export LD_LIBRARY_PATH="$BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  BENCH=$BIN/bench_cuda_step TESTS=$BIN/mlvae_gpu_tests TRAIN=$BIN/train_mlvae
else
  BUILD=${GPU_BUILD_DIR:-build/gpu}
  arch=${CUDA_ARCHITECTURES:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '. ')}
  arch=${arch:-native}
  nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
  say "building the CUDA targets in $BUILD (CUDA architectures $arch, $nvcc)"
  if ! command -v cmake >/dev/null || [[ ! -x $nvcc ]]; then
    echo "cannot build here: cmake or nvcc missing; build elsewhere (scripts/gpu_bundle.sh) and set MLVAE_GPU_BIN"
    exit 1
  fi
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DMLVAE_ENABLE_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc" \
    -DCMAKE_CUDA_ARCHITECTURES="$arch" -DMLVAE_ENABLE_MPI=OFF -DMLVAE_BUILD_TESTS=ON -DMLVAE_BUILD_EXAMPLES=ON \
    -DMLVAE_BUILD_BENCHMARKS=ON -DMLVAE_BUILD_STATIC_CHECKS=OFF >"$LOG_DIR/configure.log" 2>&1 ||
    { tail -20 "$LOG_DIR/configure.log"; echo "configure failed (Eigen, zlib, libpng, cereal needed)"; exit 1; }
  cmake --build "$BUILD" --target bench_cuda_step mlvae_gpu_tests train_mlvae -j"$(nproc)" >"$LOG_DIR/build.log" 2>&1 ||
    { tail -30 "$LOG_DIR/build.log"; echo "build failed"; exit 1; }
  BENCH=$BUILD/bin/bench_cuda_step TESTS=$BUILD/mlvae_gpu_tests TRAIN=$BUILD/bin/train_mlvae
fi
for b in "$BENCH" "$TESTS" "$TRAIN"; do
  [[ -x $b ]] || { echo "missing binary: $b"; exit 1; }
done
if ldd "$BENCH" "$TESTS" "$TRAIN" 2>/dev/null | grep -q 'not found'; then
  cublas_dir=$(find_cublas_dir)
  if [[ -n $cublas_dir ]]; then
    echo "libcublas.so.13 found in $cublas_dir: added to LD_LIBRARY_PATH"
    export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$cublas_dir"
  fi
fi
if ldd "$BENCH" "$TESTS" "$TRAIN" 2>/dev/null | grep 'not found' | sort -u | grep .; then
  echo "the binaries above need libraries this machine lacks (LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-})"
  exit 1
fi
echo "libraries: $(ldd "$BENCH" "$TRAIN" | awk '/=>/ && /cublas|cudart|gomp|png|libz/{print $1" -> "$3}' | sort -u -k1,1 |
  tr '\n' ' ')"

START=$SECONDS  # the time budget counts from here: the build above is not in it
declare -A CHECK
FAILED=0
check() {  # check NAME STATUS-TEXT OK?(0/1)
  CHECK[$1]=$2
  [[ $3 == 0 ]] || FAILED=1
}

# ---- 3. gpu-labelled tests ----------------------------------------------------------------------
if has tests; then
  say "gpu-labelled tests"
  if [[ -n $BUILD ]] && command -v ctest >/dev/null; then
    ctest --test-dir "$BUILD" -L gpu --output-on-failure --timeout 300
    rc=$?
  else
    "$TESTS"
    rc=$?
  fi
  case $rc in
    0) check tests "passed" 0 ;;
    77) check tests "SKIPPED (exit 77): the test found no usable GPU although one is visible" 1 ;;
    *) check tests "FAILED (exit $rc)" 1 ;;
  esac
fi

# ---- 4. benchmark -------------------------------------------------------------------------------
# R[arch,groups,config] = images/s; mlvae configs (MLVAE_CONFIGS): m_graph (batch resident, the
# host-free step replayed as one CUDA graph), m_async (resident, host-free step, no graph),
# m_resident (resident, forward_backward + Adam with one synchronisation per step), m_host (the
# batch copied into pinned memory and uploaded every step, as DeviceEngine does past its resident limit); PyTorch configs:
# eager compile graph. GF[arch,groups,config] = mlvae's step GEMM GFLOP/s; SG = cuBLAS sgemm's.
MLVAE_CONFIGS=${GPU_MLVAE_CONFIGS:-m_graph m_resident m_host}
declare -A R GF
SG=""
if has bench; then
  CHECK[bench]="every configuration ran"
  comma_batches=$(echo $BATCHES | tr ' ' ',')
  comma_compile=$(echo $COMPILE_GROUPS | tr ' ' ',')
  for arch in $ARCHS; do
    for g in $BATCHES; do
      for cfg in $MLVAE_CONFIGS; do
        flags=(--arch "$arch" --groups "$g" --group-size "$K" --steps "$STEPS" --reps "$REPS" --warmup "$WARMUP")
        case $cfg in
          m_graph) flags+=(--resident --step graph) ;;
          m_async) flags+=(--resident --step async) ;;
          m_resident) flags+=(--resident) ;;
          m_host) ;;
          *) echo "unknown mlvae configuration $cfg"; continue ;;
        esac
        [[ -n $SG ]] && flags+=(--no-sgemm)  # cuBLAS's rate once per run is enough
        over_budget "mlvae $arch $g $cfg" 60 && continue
        say "mlvae $arch, $g groups of $K: bench_cuda_step ${flags[*]}"
        out=$(timeout "$(left)" "$BENCH" "${flags[@]}" 2>&1)
        echo "$out"
        line=$(grep '^RESULT mlvae_cuda' <<<"$out" | grep -v ' failed: ' | head -1)
        R[$arch,$g,$cfg]=$(field images_per_s <<<"$line")
        GF[$arch,$g,$cfg]=$(field gflops <<<"$line")
        [[ -z $SG ]] && SG=$(field sgemm_gflops <<<"$line")
        if [[ -z ${R[$arch,$g,$cfg]} ]] || grep -q ' failed: ' <<<"$out"; then
          [[ $FAILED == 0 || ${CHECK[bench]} != FAILED* ]] &&
            CHECK[bench]="FAILED: $(grep -m1 -o 'RESULT mlvae_cuda.*' <<<"$out" | cut -c1-240)"
          FAILED=1
        fi
      done
    done
    over_budget "PyTorch $arch" 60 && continue
    say "PyTorch $arch: eager (fused Adam), torch.compile (at $COMPILE_GROUPS groups), whole step in one CUDA graph"
    out=$(PYTHONUNBUFFERED=1 timeout "$(($(left) - 30))" "$PY" benchmarks/pytorch_mlvae.py --device cuda --arch "$arch" --groups "$comma_batches" \
            --group-size "$K" --steps "$STEPS" --reps "$REPS" --warmup "$WARMUP" --modes eager,compile,graph \
            --compile-groups "$comma_compile" 2>&1)
    echo "$out" | grep -v '^\s*$' | tail -40
    [[ -z ${TORCH_VERSIONS:-} ]] && TORCH_VERSIONS=$(grep '^# torch' <<<"$out" | head -1)
    for g in $BATCHES; do
      for mode in eager compile graph; do
        line=$(grep "^RESULT pytorch ${arch}_$mode groups=$g " <<<"$out" | head -1)
        R[$arch,$g,$mode]=$(field images_per_s <<<"$line")
      done
    done
  done
fi

# ---- 5. train_mlvae -----------------------------------------------------------------------------
declare -A T  # T[arch] = img/s of the epoch
if has train; then
  data=${MLVAE_FASHION_MNIST_DIR:-}
  [[ -z $data && -n ${MLVAE_GPU_BIN:-} && -d $MLVAE_GPU_BIN/fashion-mnist ]] && data=$MLVAE_GPU_BIN/fashion-mnist
  [[ -z $data && -d /usr/share/datasets/fashion-mnist ]] && data=/usr/share/datasets/fashion-mnist
  DATA_NOTE="Fashion-MNIST ($data)"
  if [[ -z $data ]]; then
    data=$WORK/random-idx
    DATA_NOTE="random 28x28 images in Fashion-MNIST's layout (no Fashion-MNIST on this machine)"
    mkdir -p "$data"
    "$PY" - "$data" <<'EOF' || echo "could not write random IDX files"
import os, struct, sys, numpy as np
d, rng = sys.argv[1], np.random.default_rng(0)
for prefix, n in (("train", 60000), ("t10k", 10000)):
    with open(os.path.join(d, f"{prefix}-images-idx3-ubyte"), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28)); f.write(rng.integers(0, 256, (n, 784), dtype=np.uint8).tobytes())
    with open(os.path.join(d, f"{prefix}-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">II", 0x801, n)); f.write(rng.integers(0, 10, n, dtype=np.uint8).tobytes())
EOF
  fi
  for arch in $TRAIN_ARCHS; do
    if over_budget "train_mlvae $arch" 60; then check "train_$arch" "skipped: time budget spent" 0; continue; fi
    say "train_mlvae --device cuda --arch $arch, 1 epoch, 16 groups of $K ($DATA_NOTE)"
    out=$(timeout "$(left)" "$TRAIN" --device cuda --arch "$arch" --data "$data" --epochs 1 --groups-per-batch 16 --group-size "$K" \
            --quiet --python none --out "$WORK/train_$arch" 2>&1)
    rc=$?
    echo "$out" | tail -6
    T[$arch]=$(sed -n 's/.* \([0-9][0-9]*\) img\/s .*/\1/p' <<<"$out" | tail -1)
    if [[ $rc != 0 || -z ${T[$arch]} ]]; then check "train_$arch" "FAILED (exit $rc)" 1; else check "train_$arch" "ran" 0; fi
  done
fi

# ---- 6. compute-sanitizer (last of the runs: it gets the time that is left) ------------------------
if has sanitizer; then
  san=$(command -v compute-sanitizer || true)
  if [[ -z $san ]]; then
    for d in /usr/local/cuda/bin /usr/local/cuda*/bin /usr/local/cuda*/compute-sanitizer /opt/nvidia/*/compute-sanitizer \
             /opt/nvidia/nsight-compute/*/compute-sanitizer; do
      [[ -x $d/compute-sanitizer ]] && { san=$d/compute-sanitizer; break; }
    done
  fi
  [[ -z $san ]] && san=$(find / -xdev \( -path /proc -o -path /sys \) -prune -o -type f -name compute-sanitizer -perm -u+x \
                           -print 2>/dev/null | head -1)
  if [[ -z $san ]]; then
    echo "compute-sanitizer not found (PATH, /usr/local/cuda*/bin, /opt/nvidia): memcheck and racecheck skipped"
    check memcheck "skipped: no compute-sanitizer" 0
    check racecheck "skipped: no compute-sanitizer" 0
  else
    for tool in memcheck racecheck; do
      if over_budget "compute-sanitizer --tool $tool" 40; then check "$tool" "skipped: time budget spent" 1; continue; fi
      limit=$(($(left) - 15 < SAN_TIMEOUT ? $(left) - 15 : SAN_TIMEOUT))
      say "compute-sanitizer --tool $tool ($san) on mlvae_gpu_tests --quick (at most ${limit}s)"
      timeout "$limit" "$san" --tool "$tool" --error-exitcode 99 --print-limit 20 "$TESTS" --quick \
        >"$LOG_DIR/$tool.log" 2>&1
      rc=$?
      grep -E '^(=========|FAIL|passed|FAILED|SKIPPED)' "$LOG_DIR/$tool.log" | tail -15
      summary=$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$LOG_DIR/$tool.log" | tail -1 | sed 's/^========= //')
      case $rc in
        0) check "$tool" "clean (${summary:-no summary line})" 0 ;;
        124) check "$tool" "TIMED OUT after ${limit}s" 1 ;;
        99) check "$tool" "ERRORS: ${summary:-see $tool.log}" 1 ;;
        *) check "$tool" "FAILED (exit $rc; ${summary:-see $tool.log})" 1 ;;
      esac
    done
  fi
fi

# ---- 7. summary (last) --------------------------------------------------------------------------
fmt() { if [[ -n ${1:-} ]]; then awk -v x="$1" 'BEGIN { printf "%.0f", x }'; else printf '–'; fi; }
pct() { awk -v a="${1:-}" -v b="${2:-}" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) printf "–"; else printf "%.1f %%", 100 * a / b }'; }
ratio() { awk -v a="${1:-}" -v b="${2:-}" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) printf "–"; else printf "%.2f×", a / b }'; }
echo
echo "## GPU check ($((SECONDS - START)) s; log $LOG)"
echo
[[ -n ${TORCH_VERSIONS:-} ]] && echo "PyTorch: ${TORCH_VERSIONS#\# }" && echo
for c in tests bench train_mlp train_conv28 memcheck racecheck; do
  [[ -n ${CHECK[$c]:-} ]] && echo "- $c: ${CHECK[$c]}"
done
((${#SKIPPED_FOR_TIME[@]})) && echo "- skipped for time (GPU_BUDGET_S=${BUDGET}s): $(printf '%s; ' "${SKIPPED_FOR_TIME[@]}")"
if has bench; then
  declare -A LABEL=([m_graph]="mlvae CUDA graph" [m_async]="mlvae async" [m_resident]="mlvae resident, sync"
                    [m_host]="mlvae batch from host")
  header="| arch | groups × $K |"
  rule="|---|---:|"
  for cfg in $MLVAE_CONFIGS; do header+=" ${LABEL[$cfg]:-$cfg} |"; rule+="---:|"; done
  echo
  echo "$header PyTorch eager (fused Adam) | PyTorch compile | PyTorch CUDA graph | best mlvae / fastest PyTorch | best mlvae GEMM GFLOP/s (of sgemm ${SG:-?}) |"
  echo "$rule---:|---:|---:|---:|---:|"
  for arch in $ARCHS; do
    for g in $BATCHES; do
      best="" mbest="" mcfg=""
      for mode in eager compile graph; do
        v=${R[$arch,$g,$mode]:-}
        if [[ -n $v ]] && { [[ -z $best ]] || awk -v a="$v" -v b="$best" 'BEGIN { exit !(a + 0 > b + 0) }'; }; then best=$v; fi
      done
      row="| $arch | $g |"
      for cfg in $MLVAE_CONFIGS; do
        v=${R[$arch,$g,$cfg]:-}
        row+=" $(fmt "$v") |"
        if [[ -n $v ]] && { [[ -z $mbest ]] || awk -v a="$v" -v b="$mbest" 'BEGIN { exit !(a + 0 > b + 0) }'; }; then
          mbest=$v mcfg=$cfg
        fi
      done
      row+=" $(fmt "${R[$arch,$g,eager]:-}") | $(fmt "${R[$arch,$g,compile]:-}") | $(fmt "${R[$arch,$g,graph]:-}") |"
      row+=" $(ratio "$mbest" "$best") | $(fmt "${GF[$arch,$g,$mcfg]:-}") ($(pct "${GF[$arch,$g,$mcfg]:-}" "$SG")) |"
      echo "$row"
    done
  done
  echo
  echo "images/s, float32, TF32 off on both sides; median of $REPS × $STEPS steps after $WARMUP warm-up steps. mlvae:"
  echo "\"CUDA graph\": batch resident on the GPU (as PyTorch's), the host-free step captured once and replayed;"
  echo "\"resident, sync\": forward_backward + Adam with the loss read back every step; \"batch from host\": copied"
  echo "into pinned memory and uploaded every step (DeviceEngine past its 4 GiB resident limit). PyTorch compile ran at"
  echo "$COMPILE_GROUPS groups only (– elsewhere)."
fi
if has train && [[ -n ${!T[*]} ]]; then
  echo
  echo "| train_mlvae --device cuda, 1 epoch, 16 × $K | images/s | step benchmark, batch from host | trainer / step |"
  echo "|---|---:|---:|---:|"
  for arch in $TRAIN_ARCHS; do
    echo "| $arch | $(fmt "${T[$arch]:-}") | $(fmt "${R[$arch,16,m_host]:-}") | $(ratio "${T[$arch]:-}" "${R[$arch,16,m_host]:-}") |"
  done
fi
exit $FAILED
