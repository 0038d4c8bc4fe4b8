// Consumer smoke test: include installed mlvae headers, do something trivial. Linked with
// mlvae::core it uses core headers only; with mlvae::io or mlvae::mlvae it also reads a gzip file
// through zlib (data/idx.hpp), so a missing zlib link would fail to build.
#include <mlvae/core/random.hpp>
#include <mlvae/core/types.hpp>
#include <mlvae/model/model_file.hpp>
#ifdef MLVAE_CONSUMER_IO
#include <mlvae/data/idx.hpp>
#endif

int main() {
  mlvae::Matrix<double> m(2, 3);
  m.setZero();
  mlvae::ensure_shape(m, 4, 5);
  mlvae::Rng rng(42);
  const double u = rng.uniform();
#ifdef MLVAE_CONSUMER_IO
  try {
    mlvae::read_idx("/nonexistent/mlvae-consumer.idx.gz");
    return 1;
  } catch (const mlvae::IoError&) {
  }
#endif
  return (m.rows() == 4 && m.cols() == 5 && u >= 0.0 && u < 1.0) ? 0 : 1;
}
