#!/usr/bin/env bash
# Builds mlvae (release preset) and trains an ML-VAE briefly on Fashion-MNIST; writes to out/quickstart/.
# Extra arguments are passed to train_mlvae. Installs the Debian packages first when run as root
# (set MLVAE_SKIP_APT=1 to skip).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Debian packages mlvae needs (build, tests, examples, clang/OpenMP, data set).
PACKAGES=(
  cmake g++ make
  libeigen3-dev doctest-dev libcereal-dev zlib1g-dev libpng-dev libcli11-dev
  libomp-dev
  dataset-fashion-mnist
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

install_packages
cmake --preset release
cmake --build --preset release --target train_mlvae
./build/release/bin/train_mlvae --epochs 3 --out out/quickstart "$@"
