// Bilinear image resizing: identity at the same size, constants stay constant, known values of a
// 2x upscale with aligned pixel centres, and shape errors.
#include <doctest/doctest.h>

#include "mlvae/data/resize.hpp"

using namespace mlvae;

TEST_CASE("resize: identity at the same size and constants stay constant") {
  Rng rng(1);
  Matrix<double> images(12, 3);
  rng.fill_normal(images);
  CHECK((resize_images(images, 3, 4, 3, 4) - images).cwiseAbs().maxCoeff() < 1e-15);
  const Matrix<double> grey = Matrix<double>::Constant(28 * 28, 2, 0.25);
  const Matrix<double> big = resize_images(grey, 28, 28, 64, 64);
  CHECK(big.rows() == 64 * 64);
  CHECK(big.cols() == 2);
  CHECK((big.array() - 0.25).abs().maxCoeff() < 1e-15);
}

TEST_CASE("resize: a 2x upscale interpolates between aligned pixel centres") {
  Matrix<double> image(2, 1);  // one row of two pixels: 0 and 1
  image << 0.0, 1.0;
  const Matrix<double> up = resize_images(image, 1, 2, 1, 4);
  // Output centres at 0.25, 0.75, 1.25, 1.75 source pixels -> positions -0.25, 0.25, 0.75, 1.25,
  // clamped to [0, 1].
  CHECK(up(0, 0) == doctest::Approx(0.0));
  CHECK(up(1, 0) == doctest::Approx(0.25));
  CHECK(up(2, 0) == doctest::Approx(0.75));
  CHECK(up(3, 0) == doctest::Approx(1.0));
}

TEST_CASE("resize: wrong pixel counts and sizes are shape errors") {
  Matrix<float> images(10, 2);
  CHECK_THROWS_AS(resize_images(images, 3, 4, 8, 8), ShapeError);
  CHECK_THROWS_AS(resize_images(images, 2, 5, 0, 8), ShapeError);
}
