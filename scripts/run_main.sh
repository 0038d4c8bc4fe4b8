#!/usr/bin/env bash
# Builds mlvae (release preset) and trains an ML-VAE briefly on Fashion-MNIST; writes to out/quickstart/.
# Extra arguments are passed to train_mlvae. Installs the Debian packages first when run as root
# (set MLVAE_SKIP_APT=1 to skip).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source scripts/install_deps.sh
install_packages
cmake --preset release
cmake --build --preset release --target train_mlvae
./build/release/bin/train_mlvae --epochs 3 --out out/quickstart "$@"
