#!/usr/bin/env bash
# Builds mlvae (release preset) and runs the whole test suite: configure, build (2 jobs), ctest;
# then the same tests built with ASan + UBSan (preset asan; MLVAE_SKIP_ASAN=1 skips it).
# Installs the Debian packages first when run as root (set MLVAE_SKIP_APT=1 to skip).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source scripts/install_deps.sh
install_packages
cmake --workflow --preset release

# AddressSanitizer + UndefinedBehaviorSanitizer build of the tests (preset `asan`, Debug);
# MLVAE_SKIP_ASAN=1 skips it.
if [[ "${MLVAE_SKIP_ASAN:-0}" != 1 ]]; then
  cmake --workflow --preset asan
fi
