/// @file
/// mlvae/nn/gradient_check.hpp — the one finite-difference gradient checker used on every layer,
/// distribution term and complete loss (tests/test_gradients.cpp). Central differences in double:
///   ∂f/∂θ_k ≈ (f(θ + h e_k) − f(θ − h e_k)) / 2h,
/// accepted when |analytic − numeric| ≤ atol + rtol · max(|analytic|, |numeric|) for every k.
#pragma once

#include "mlvae/core/random.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/nn/layer.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <type_traits>

namespace mlvae {

/// Settings of a central-difference gradient check.
struct GradientCheckOptions {
  double step = 1e-6;   ///< h
  /// Relative tolerance (scaled by max(|analytic|, |numeric|)).
  double rtol = 1e-5;
  /// Absolute tolerance.
  double atol = 1e-8;
};

/// Outcome of a gradient check, with its worst entry.
struct GradientCheckResult {
  /// Whether every entry was within tolerance (worst_excess ≤ 1 and finite).
  bool passed = true;
  /// Number of entries compared.
  Index checked = 0;
  /// Index of the entry with the largest error/tolerance ratio (−1 when none was checked).
  Index worst_index = -1;
  /// Analytic derivative at worst_index.
  double worst_analytic = 0, worst_numeric = 0;
  /// @var worst_numeric
  /// Central-difference derivative (f(x + h) − f(x − h)) / 2h at worst_index.
  double worst_excess = 0;  ///< max over k of |a − n| / (atol + rtol · max(|a|, |n|)); ≤ 1 passes

  /// One-line summary: pass/FAIL, entries checked, worst index, both derivatives and the ratio.
  std::string report() const {
    std::ostringstream out;
    out << (passed ? "passed" : "FAILED") << ": " << checked << " entries, worst at index " << worst_index
        << " analytic " << worst_analytic << " numeric " << worst_numeric << " (error/tolerance " << worst_excess << ")";
    return out.str();
  }
};

/// Checks `analytic` = ∇f at `x` entry by entry. `f` reads `x` (which is perturbed in place and
/// restored) and returns the scalar loss as double.
template <typename F>
GradientCheckResult check_gradient(F&& f, Eigen::Ref<Vector<double>> x, const Vector<double>& analytic,
                                   GradientCheckOptions options = {}) {
  GradientCheckResult result;
  for (Index k = 0; k < x.size(); ++k) {
    const double saved = x(k);
    x(k) = saved + options.step;
    const double up = f();
    x(k) = saved - options.step;
    const double down = f();
    x(k) = saved;
    const double numeric = (up - down) / (2 * options.step);
    const double a = analytic(k);
    const double excess =
        std::abs(a - numeric) / (options.atol + options.rtol * std::max(std::abs(a), std::abs(numeric)));
    ++result.checked;
    if (!(excess <= result.worst_excess) || result.worst_index < 0) {
      if (!(excess <= result.worst_excess)) result.worst_excess = excess;
      result.worst_index = k;
      result.worst_analytic = a;
      result.worst_numeric = numeric;
    }
  }
  result.passed = result.worst_excess <= 1.0 && std::isfinite(result.worst_excess);
  return result;
}

/// Results of checking one layer: gradients with respect to its parameters and to its input.
struct LayerGradientCheck {
  /// Check of dLoss/dparameters (the gradients the layer accumulates).
  GradientCheckResult parameters, input;
  /// @var input
  /// Check of dLoss/dinput (the layer's returned input gradient).

  /// Whether both checks passed.
  bool passed() const { return parameters.passed && input.passed; }
};

/// Checks a double-precision layer's backward pass on a random batch: the loss is Σ R ⊙ forward(x)
/// for a fixed random R, so backward(R) must return ∂/∂x and accumulate ∂/∂θ. `input` may be
/// given (e.g. to keep activations away from kinks); otherwise it is drawn N(0, 1).
template <typename Layer>
LayerGradientCheck check_layer_gradients(Layer& layer, Index batch, Rng& rng, GradientCheckOptions options = {},
                                         const Matrix<double>* input = nullptr) {
  static_assert(std::is_same_v<typename Layer::Scalar, double>, "gradient checks run in double precision");
  ParameterStore<double> store;
  bind_layers(store, layer);
  layer.initialize(rng);
  // Perturb parameters away from special values (zero biases) so every path carries gradient.
  for (Index k = 0; k < store.size(); ++k) store.values(k) += 0.1 * rng.normal();

  Matrix<double> x(layer.input_size(), batch);
  if (input) x = *input;
  else rng.fill_normal(x);
  Matrix<double> weights(layer.output_size(), batch);
  rng.fill_normal(weights);

  auto loss = [&]() { return (layer.forward(x).array() * weights.array()).sum(); };
  store.zero_gradients();
  layer.forward(x);
  const Matrix<double> dx = layer.backward(weights, true);
  const Vector<double> dtheta = store.gradients;

  LayerGradientCheck out;
  out.parameters = check_gradient(loss, store.values, dtheta, options);
  Vector<double> dx_flat = Eigen::Map<const Vector<double>>(dx.data(), dx.size());
  Eigen::Map<Vector<double>> x_flat(x.data(), x.size());
  out.input = check_gradient(loss, x_flat, dx_flat, options);
  return out;
}

}  // namespace mlvae
