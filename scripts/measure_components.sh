#!/usr/bin/env bash
# Measures what each mlvae component costs a consumer (README.md, "Use it in your project"):
# the compile time of a minimal program per component (CPU seconds, user + sys, lowest of 3 runs
# of g++ -std=c++17 -O2) and the size of examples/encode. Needs g++, GNU time (/usr/bin/time),
# python3 (to extract the README's program), and Eigen, zlib, libpng and cereal's headers.
#   bash scripts/measure_components.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
flags=(-std=c++17 -O2 -I"$root/include" -I/usr/include/eigen3)

cat > core_train.cpp <<'CPP'
#include <mlvae/model/architectures.hpp>
#include <mlvae/train/trainer.hpp>
#include <cstdio>
int main() {
  auto model = mlvae::make_mlp_mlvae<float>();
  mlvae::Rng rng(1);
  model.initialize(rng);
  mlvae::Matrix<float> x = mlvae::Matrix<float>::Random(784, 512).cwiseAbs();
  std::vector<int> keys(512);
  for (int i = 0; i < 512; ++i) keys[static_cast<std::size_t>(i)] = i % 10;
  mlvae::Trainer<decltype(model)> trainer(model, x, keys);
  std::printf("%f\n", trainer.run_epoch().loss);
}
CPP
cat > io_minimal.cpp <<'CPP'
#include <mlvae/data/idx.hpp>
#include <mlvae/io/checkpoint.hpp>
#include <mlvae/model/architectures.hpp>
int main() {
  auto model = mlvae::make_mlp_mlvae<float>();
  mlvae::Rng rng(1);
  model.initialize(rng);
  const auto data = mlvae::load_fashion_mnist<float>("test", mlvae::fashion_mnist_default_dir(), 16);
  mlvae::save_model("model.bin", model);
  return static_cast<int>(data.images.cols() > 0 ? 0 : 1);
}
CPP
python3 "$root/scripts/check_docs.py" extract --root "$root" --out snippets >/dev/null

measure() {  # label, compiler arguments...
  local label=$1 best=""
  shift
  for _ in 1 2 3; do
    /usr/bin/time -o time.txt -f "%U %S" g++ "$@" -o a.out
    best=$(awk -v b="$best" '{t = $1 + $2; if (b == "" || t < b) b = t; printf "%.1f", b}' time.txt)
  done
  printf '%-60s %s s\n' "$label" "$best"
}
measure "core: tests/consumer/main.cpp (core headers, no model)" "${flags[@]}" "$root/tests/consumer/main.cpp"
measure "core: examples/encode/encode.cpp (load a model file, encode)" "${flags[@]}" "$root/examples/encode/encode.cpp"
measure "core: train the paper's MLP one epoch (no OpenMP)" "${flags[@]}" core_train.cpp
measure "core: train the paper's MLP one epoch (-fopenmp)" "${flags[@]}" -fopenmp core_train.cpp
measure "io: load IDX images, save a cereal checkpoint" "${flags[@]}" -fopenmp io_minimal.cpp -lz -lpng
measure "mlvae: README 'Use the API' via mlvae/mlvae.hpp" "${flags[@]}" -fopenmp snippets/README_1.cpp -lz -lpng

g++ "${flags[@]}" -O3 -DNDEBUG "$root/examples/encode/encode.cpp" -o encode
strip -o encode.stripped encode
echo "examples/encode (-O3 -DNDEBUG, CMake Release): $(stat -c %s encode) bytes, $(stat -c %s encode.stripped) stripped"
uptime
