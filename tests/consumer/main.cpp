// Consumer smoke test: include installed mlvae headers, do something trivial.
#include <mlvae/core/random.hpp>
#include <mlvae/core/types.hpp>

int main() {
  mlvae::Matrix<double> m(2, 3);
  m.setZero();
  mlvae::ensure_shape(m, 4, 5);
  mlvae::Rng rng(42);
  const double u = rng.uniform();
  return (m.rows() == 4 && m.cols() == 5 && u >= 0.0 && u < 1.0) ? 0 : 1;
}
