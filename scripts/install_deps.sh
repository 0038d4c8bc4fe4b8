#!/usr/bin/env bash
# scripts/install_deps.sh — sourced by run_main.sh and run_tests.sh: installs the Debian packages
# mlvae needs when run as root with apt-get (one `apt-get update`, then one `apt-get install -y`
# of whatever is missing); MLVAE_SKIP_APT=1 skips it.

# Debian packages mlvae needs (build, tests, examples, clang/OpenMP, data set; matplotlib draws the
# examples' figures, scikit-learn ships the wine table of the README's own-data example).
PACKAGES=(
  cmake g++ make python3
  libeigen3-dev doctest-dev libcereal-dev zlib1g-dev libpng-dev libcli11-dev
  libomp-dev
  libopenmpi-dev openmpi-bin
  dataset-fashion-mnist
  python3-matplotlib python3-sklearn
  # GEMM kernels: OpenBLAS and BLIS are loaded at run time (dlopen) and chosen per product by
  # measurement (include/mlvae/nn/gemm_select.hpp; the tests check them when present); oneDNN only
  # for bench_gemm's comparison; OpenBLAS also the optional -DMLVAE_GEMM_BACKEND=OpenBLAS; perf for
  # the profiles of docs/performance.md
  libopenblas-dev libblis-dev libdnnl-dev linux-perf
)

install_packages() {
  if [[ "${MLVAE_SKIP_APT:-0}" == 1 ]]; then return 0; fi
  if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then return 0; fi
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then return 0; fi
  echo "==> apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
}

