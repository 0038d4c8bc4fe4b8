// Adam: bias-corrected steps against values computed by hand, gradient clipping, decoupled weight
// decay, option validation and the divergence guard.
#include <doctest/doctest.h>

#include "mlvae/optim/adam.hpp"

#include <cmath>

using namespace mlvae;

TEST_CASE("adam: two bias-corrected steps match hand-computed values") {
  AdamOptions o;
  o.learning_rate = 0.1;
  Adam<double> adam(2, o);
  Vector<double> theta(2), g(2);
  theta << 1.0, -2.0;

  // Step 1, g = (0.5, 0.02): m = 0.1 g, v = 0.001 g², m̂ = g, v̂ = g², so θ moves by lr · sign(g).
  g << 0.5, 0.02;
  adam.step(theta, g);
  const double eps = 1e-8;
  const double theta0 = 1.0 - 0.1 * 0.5 / (0.5 + eps), theta1 = -2.0 - 0.1 * 0.02 / (0.02 + eps);
  CHECK(theta(0) == doctest::Approx(theta0).epsilon(1e-14));
  CHECK(theta(1) == doctest::Approx(theta1).epsilon(1e-14));
  CHECK(theta(0) == doctest::Approx(0.9).epsilon(1e-7));

  // Step 2, g = (-1, 0.02): worked out by hand for the first coordinate.
  g << -1.0, 0.02;
  adam.step(theta, g);
  const double m = 0.9 * 0.05 + 0.1 * -1.0;          // −0.055
  const double v = 0.999 * 0.00025 + 0.001 * 1.0;    // 0.00124975
  const double m_hat = m / (1 - 0.81);
  const double v_hat = v / (1 - 0.998001);
  CHECK(theta(0) == doctest::Approx(theta0 - 0.1 * m_hat / (std::sqrt(v_hat) + eps)).epsilon(1e-13));
  CHECK(theta(0) == doctest::Approx(0.93661).epsilon(1e-5));
  // A constant gradient keeps the step at lr after bias correction.
  CHECK(theta(1) == doctest::Approx(theta1 - 0.1 * 0.02 / (0.02 + eps)).epsilon(1e-13));
  CHECK(adam.step_count() == 2);
}

TEST_CASE("adam: clipping scales the gradient to the global norm") {
  AdamOptions o;
  o.learning_rate = 0.1;
  o.clip_norm = 1.0;
  Adam<double> clipped(2, o);
  Adam<double> plain(2, AdamOptions{0.1});
  Vector<double> a = Vector<double>::Zero(2), b = Vector<double>::Zero(2), g(2);
  g << 30.0, 40.0;  // norm 50
  CHECK(clipped.step(a, g) == doctest::Approx(50.0));
  Vector<double> g_scaled = g / 50.0;
  plain.step(b, g_scaled);
  CHECK((a - b).norm() < 1e-15);
  // After clipping the first moment holds the scaled gradient.
  CHECK(clipped.first_moment()(0) == doctest::Approx(0.1 * 0.6));
}

TEST_CASE("adam: decoupled weight decay shrinks parameters by lr·λ·θ") {
  AdamOptions o;
  o.learning_rate = 0.01;
  o.weight_decay = 0.5;
  Adam<double> adam(1, o);
  Vector<double> theta(1), g(1);
  theta << 2.0;
  g << 0.0;  // no gradient: only the decay acts (m̂ = 0)
  adam.step(theta, g);
  CHECK(theta(0) == doctest::Approx(2.0 - 0.01 * 0.5 * 2.0));
}

TEST_CASE("adam: bad options and non-finite gradients are rejected") {
  CHECK_THROWS_AS(Adam<float>(3, AdamOptions{-1.0}), ArgumentError);
  AdamOptions bad_beta;
  bad_beta.beta1 = 1.0;
  CHECK_THROWS_AS(Adam<float>(3, bad_beta), ArgumentError);
  Adam<float> adam(3);
  Vector<float> theta = Vector<float>::Ones(3), g = Vector<float>::Ones(3);
  Vector<float> wrong(2);
  CHECK_THROWS_AS(adam.step(theta, wrong), ShapeError);
  g(1) = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_AS(adam.step(theta, g), DivergenceError);
  CHECK(theta == Vector<float>::Ones(3));  // untouched
  CHECK(adam.step_count() == 0);
}
