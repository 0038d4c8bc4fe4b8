// Must NOT compile: with MLVAE_FLOAT_ONLY defined, a double model is refused at compile time
// (test mode_float_only_rejects_double expects the static_assert's message).
#include <mlvae/model/architectures.hpp>

int main() {
  auto model = mlvae::make_mlp_mlvae<double>(4, 3, 1, 1);
  return static_cast<int>(model.parameters().size());
}
