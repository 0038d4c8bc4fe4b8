/// @file
/// mlvae/dist/likelihood.hpp — observation models p(x | decoder output), as policies the models
/// take as a template argument. Each gives the per-column log-likelihood, its gradient with respect
/// to the decoder output, and the mean image used for pictures. docs/elbo.md, "Likelihoods".
///   Bernoulli (logits ℓ):        log p = Σ x ℓ − softplus(ℓ),       d/dℓ = x − sigmoid(ℓ)
///   Gaussian, fixed variance σ²: log p = −½ Σ ((x−μ)²/σ² + log 2πσ²), d/dμ = (x − μ)/σ²
///   Gaussian, learned variance:  output rows [μ; log σ²],  d/dlog σ² = ½((x−μ)²/σ² − 1)
/// The element-wise formulas (the *_terms functions) are written once, for the CPU's Array
/// expressions and a device's Tensor expressions (device/ops.hpp's TensorLikelihood); only the
/// reductions are written per device.
#pragma once

#include "mlvae/core/elementwise.hpp"
#include "mlvae/core/error.hpp"
#include "mlvae/core/threads.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/dist/gaussian.hpp"

#include <cmath>
#include <string>
#include <type_traits>

namespace mlvae {

namespace detail {
template <typename T, typename X, typename O>
void check_likelihood_shapes(const char* name, Index data_rows, const Eigen::MatrixBase<X>& x,
                             const Eigen::MatrixBase<O>& out, Index out_rows_expected) {
  require<ShapeError>(x.rows() == data_rows || data_rows < 0, name, ": x has ", x.rows(), " rows");
  require<ShapeError>(out.rows() == out_rows_expected && out.cols() == x.cols(), name, ": expected decoder output ",
                      out_rows_expected, "x", x.cols(), " for data ", x.rows(), "x", x.cols(), ", found ", out.rows(),
                      "x", out.cols());
}
}  // namespace detail

/// Bernoulli likelihood with logits: for data in [0, 1] (binary or grey levels).
template <typename T>
struct BernoulliLikelihood {
  /// The floating-point type of data and decoder outputs.
  using Scalar = T;
  /// Name recorded in checkpoints and descriptions.
  static constexpr const char* name = "Bernoulli";
  /// Rows of decoder output needed for `data_rows` observed features.
  static Index output_rows(Index data_rows) { return data_rows; }
  /// "Bernoulli", as recorded in checkpoints.
  std::string describe() const { return name; }
  /// Checks that every value of `x` lies in [0, 1] (what a Bernoulli likelihood can model).
  /// @throws ArgumentError naming `what`, the first value outside and where it is.
  template <typename X>
  static void check_data(const Eigen::MatrixBase<X>& x, const std::string& what) {
    if (x.size() == 0 || (x.minCoeff() >= T(0) && x.maxCoeff() <= T(1))) return;
    for (Index j = 0; j < x.cols(); ++j)
      for (Index i = 0; i < x.rows(); ++i)
        require<ArgumentError>(x(i, j) >= T(0) && x(i, j) <= T(1), "the Bernoulli likelihood models values in [0, 1]",
                               " but the ", what, " holds ", x(i, j), " (observation ", j, ", feature ", i,
                               "); use a Gaussian likelihood or rescale the data");
  }

  /// The summands of log p, x ℓ − max(ℓ, 0) − log1p(e^{−|ℓ|}) (the stable form), element-wise.
  template <typename X, typename L>
  static auto log_p_terms(const X& x, const L& l) {
    return x * l - ew::max(l, T(0)) - (-l.abs()).exp().log1p();
  }
  /// weight · d log p / dℓ = weight (x − sigmoid(ℓ)), element-wise.
  template <typename X, typename L>
  static auto gradient_terms(const X& x, const L& l, T weight) { return weight * (x - ew::sigmoid(l)); }
  /// E[x] = sigmoid(ℓ), element-wise.
  template <typename L>
  static auto mean_terms(const L& l) { return ew::sigmoid(l); }

  /// log p(x | logits) per column: the column sums of log_p_terms.
  template <typename X, typename O, typename Out>
  void log_likelihood(const Eigen::MatrixBase<X>& x, const Eigen::MatrixBase<O>& logits, Out& out) const {
    detail::check_likelihood_shapes<T>(name, -1, x, logits, x.rows());
    ensure_shape(out, 1, x.cols());
    parallel_columns(x.cols(), x.rows(), [&](Index begin, Index end) {
      const Index n = end - begin;
      out.middleCols(begin, n) =
          log_p_terms(x.middleCols(begin, n).array(), logits.middleCols(begin, n).array()).colwise().sum();
    });
  }
  /// Writes weight · d log p / d logits = weight (x − sigmoid(ℓ)).
  template <typename X, typename O>
  void gradient(const Eigen::MatrixBase<X>& x, const Eigen::MatrixBase<O>& logits, T weight, Matrix<T>& grad) const {
    ensure_shape(grad, logits.rows(), logits.cols());
    parallel_columns(x.cols(), x.rows(), [&](Index begin, Index end) {
      const Index n = end - begin;
      grad.middleCols(begin, n).array() =
          gradient_terms(x.middleCols(begin, n).array(), logits.middleCols(begin, n).array(), weight);
    });
  }
  /// log_likelihood() and gradient() in one pass (what a training step needs): per column, e = exp(−|ℓ|) is
  /// computed once (into `grad` as scratch, while the column is in cache) and gives both
  /// log p = x ℓ − max(ℓ, 0) − log1p(e) and sigmoid(ℓ) = 1/(1+e) (ℓ ≥ 0) or e/(1+e) (ℓ < 0).
  /// Writes `out` (1 x batch) and `grad` = weight (x − sigmoid(ℓ)); tests/test_fused_kernels.cpp.
  template <typename X, typename O, typename Out>
  void log_likelihood_and_gradient(const Eigen::MatrixBase<X>& x, const Eigen::MatrixBase<O>& logits, T weight,
                                   Out& out, Matrix<T>& grad) const {
    detail::check_likelihood_shapes<T>(name, -1, x, logits, x.rows());
    ensure_shape(out, 1, x.cols());
    ensure_shape(grad, logits.rows(), logits.cols());
    parallel_columns(x.cols(), x.rows(), [&](Index begin, Index end) {
      for (Index j = begin; j < end; ++j) {
        const auto l = logits.col(j).array();
        const auto xj = x.col(j).array();
        auto g = grad.col(j).array();
        g = (-l.abs()).exp();  // e, scratch
        out(j) = (xj * l - l.max(T(0)) - g.log1p()).sum();
        g = weight * (xj - (l >= T(0)).select(T(1) / (T(1) + g), g / (T(1) + g)));
      }
    });
  }
  /// E[x] = sigmoid(ℓ).
  template <typename O>
  void mean(const Eigen::MatrixBase<O>& logits, Matrix<T>& out) const {
    ensure_shape(out, logits.rows(), logits.cols());
    out.array() = mean_terms(logits.array());
  }
};

/// Gaussian likelihood with a fixed, shared variance σ².
template <typename T>
struct GaussianLikelihood {
  /// Name recorded in checkpoints and descriptions.
  static constexpr const char* name = "Gaussian";
  /// The fixed observation variance σ² (> 0).
  T variance = T(1);

  /// Unit variance, σ² = 1.
  GaussianLikelihood() = default;
  /// Variance σ² = `var`; throws ArgumentError unless it is positive and finite.
  explicit GaussianLikelihood(T var) : variance(var) {
    require<ArgumentError>(std::isfinite(static_cast<double>(var)) && var > T(0),
                           "GaussianLikelihood: variance must be positive and finite, found ", var);
  }
  /// Rows of decoder output (the mean μ) for `data_rows` observed features: the same number.
  static Index output_rows(Index data_rows) { return data_rows; }
  /// "Gaussian(variance=σ²)", as recorded in checkpoints.
  std::string describe() const { return detail::concat(name, "(variance=", variance, ")"); }
  /// Any finite data can be modelled. @throws ArgumentError naming `what` on NaN or infinity.
  template <typename X>
  static void check_data(const Eigen::MatrixBase<X>& x, const std::string& what) {
    require<ArgumentError>(x.allFinite(), "the ", what, " holds NaN or infinite values");
  }

  /// The summands of Σ (x − μ)², element-wise.
  template <typename X, typename M>
  static auto squared_error_terms(const X& x, const M& mu) { return (x - mu).square(); }
  /// log p per column, −½ (s/σ² + D log 2πσ²), from the column sums s of squared_error_terms
  /// over D = `rows` features (element-wise on s).
  template <typename S>
  auto log_p_from_squared_error(const S& sums, Index rows) const {
    constexpr T log_two_pi = T(1.8378770664093454835606594728112);
    return T(-0.5) * (sums / variance + T(rows) * (log_two_pi + std::log(variance)));
  }
  /// weight · d log p / dμ = weight (x − μ) / σ², element-wise.
  template <typename X, typename M>
  auto gradient_terms(const X& x, const M& mu, T weight) const { return (weight / variance) * (x - mu); }

  /// log p(x | μ) per column, −½ Σ ((x − μ)²/σ² + log 2πσ²), into `out` (1 x batch).
  /// Throws ShapeError unless μ has the shape of x.
  template <typename X, typename O, typename Out>
  void log_likelihood(const Eigen::MatrixBase<X>& x, const Eigen::MatrixBase<O>& mu, Out& out) const {
    detail::check_likelihood_shapes<T>(name, -1, x, mu, x.rows());
    ensure_shape(out, 1, x.cols());
    out = log_p_from_squared_error(squared_error_terms(x.array(), mu.array()).colwise().sum(), x.rows());
  }
  /// Writes weight · d log p / dμ = weight (x − μ) / σ² into `grad`.
  template <typename X, typename O>
  void gradient(const Eigen::MatrixBase<X>& x, const Eigen::MatrixBase<O>& mu, T weight, Matrix<T>& grad) const {
    ensure_shape(grad, mu.rows(), mu.cols());
    grad.array() = gradient_terms(x.array(), mu.array(), weight);
  }
  /// E[x] = μ (the decoder output itself).
  template <typename O>
  void mean(const Eigen::MatrixBase<O>& mu, Matrix<T>& out) const { out = mu; }
};

/// Gaussian likelihood whose per-pixel log-variance the decoder outputs: rows [μ; log σ²].
template <typename T>
struct GaussianLearnedVarianceLikelihood {
  /// Name recorded in checkpoints and descriptions.
  static constexpr const char* name = "GaussianLearnedVariance";
  /// Rows of decoder output for `data_rows` observed features: 2·data_rows ([μ; log σ²]).
  static Index output_rows(Index data_rows) { return 2 * data_rows; }
  /// "GaussianLearnedVariance", as recorded in checkpoints.
  std::string describe() const { return name; }
  /// Any finite data can be modelled. @throws ArgumentError naming `what` on NaN or infinity.
  template <typename X>
  static void check_data(const Eigen::MatrixBase<X>& x, const std::string& what) {
    require<ArgumentError>(x.allFinite(), "the ", what, " holds NaN or infinite values");
  }

  /// The summands of log p, −½ ((x − μ)²/σ² + log σ² + log 2π), element-wise: the Gaussian
  /// log-density of dist/gaussian.hpp.
  template <typename X, typename M, typename L>
  static auto log_p_terms(const X& x, const M& mu, const L& logvar) {
    return gaussian::log_density(x, mu, logvar);
  }
  /// weight · d log p / dμ = weight (x − μ)/σ², element-wise.
  template <typename X, typename M, typename L>
  static auto mean_gradient_terms(const X& x, const M& mu, const L& logvar, T weight) {
    return weight * (x - mu) * (-logvar).exp();
  }
  /// weight · d log p / d log σ² = weight ½ ((x − μ)²/σ² − 1), element-wise.
  template <typename X, typename M, typename L>
  static auto logvar_gradient_terms(const X& x, const M& mu, const L& logvar, T weight) {
    return weight * T(0.5) * ((x - mu).square() * (-logvar).exp() - T(1));
  }

  /// log p(x | μ, σ²) per column, −½ Σ ((x − μ)²/σ² + log σ² + log 2π), into `out` (1 x batch).
  /// Throws ShapeError unless the decoder output is 2·rows(x) x cols(x).
  template <typename X, typename O, typename Out>
  void log_likelihood(const Eigen::MatrixBase<X>& x, const Eigen::MatrixBase<O>& out_rows, Out& out) const {
    detail::check_likelihood_shapes<T>(name, -1, x, out_rows, 2 * x.rows());
    const Index d = x.rows();
    ensure_shape(out, 1, x.cols());
    out = log_p_terms(x.array(), out_rows.topRows(d).array(), out_rows.bottomRows(d).array()).colwise().sum();
  }
  /// Writes weight · d log p / d[μ; log σ²] = weight [(x − μ)/σ²; ½((x − μ)²/σ² − 1)] into `grad` (2·D x batch).
  template <typename X, typename O>
  void gradient(const Eigen::MatrixBase<X>& x, const Eigen::MatrixBase<O>& out_rows, T weight, Matrix<T>& grad) const {
    const Index d = x.rows();
    ensure_shape(grad, 2 * d, x.cols());
    const auto mu = out_rows.topRows(d).array();
    const auto logvar = out_rows.bottomRows(d).array();
    grad.topRows(d).array() = mean_gradient_terms(x.array(), mu, logvar, weight);
    grad.bottomRows(d).array() = logvar_gradient_terms(x.array(), mu, logvar, weight);
  }
  /// E[x] = μ, the top half of the decoder output.
  template <typename O>
  void mean(const Eigen::MatrixBase<O>& out_rows, Matrix<T>& out) const { out = out_rows.topRows(out_rows.rows() / 2); }
};

struct HostContext;  // nn/gemm.hpp

namespace detail {
template <typename L, typename = void>
struct has_fused_log_likelihood : std::false_type {};
template <typename L>
struct has_fused_log_likelihood<
    L, std::void_t<decltype(std::declval<const L&>().log_likelihood_and_gradient(
           std::declval<const Matrix<typename L::Scalar>&>(), std::declval<const Matrix<typename L::Scalar>&>(),
           typename L::Scalar(), std::declval<RowVector<typename L::Scalar>&>(),
           std::declval<Matrix<typename L::Scalar>&>()))>> : std::true_type {};
}  // namespace detail

/// The per-column log-likelihood and weight · its gradient with respect to the decoder output, through the
/// likelihood's fused log_likelihood_and_gradient() when it has one, else its two separate passes.
template <typename Likelihood, typename X, typename O, typename T, typename Out>
void log_likelihood_and_gradient(const Likelihood& likelihood, const Eigen::MatrixBase<X>& x,
                                 const Eigen::MatrixBase<O>& out, T weight, Out& log_likelihood, Matrix<T>& grad) {
  if constexpr (detail::has_fused_log_likelihood<Likelihood>::value) {
    likelihood.log_likelihood_and_gradient(x, out, weight, log_likelihood, grad);
  } else {
    likelihood.log_likelihood(x, out, log_likelihood);
    likelihood.gradient(x, out, weight, grad);
  }
}

/// The per-column log-likelihood of a model's step into `log_likelihood` (N values) and, with `grad`,
/// weight · its gradient with respect to the decoder output in the same pass: the host's form of an
/// operation every device supplies (device/ops.hpp has the devices').
template <typename Likelihood, typename T>
void likelihood_columns(HostContext&, const Likelihood& likelihood, const Matrix<T>& x, const Matrix<T>& out, T weight,
                        T* log_likelihood, Matrix<T>* grad) {
  Eigen::Map<RowVector<T>> columns(log_likelihood, x.cols());
  if (grad != nullptr)
    log_likelihood_and_gradient(likelihood, x, out, weight, columns, *grad);
  else
    likelihood.log_likelihood(x, out, columns);
}

}  // namespace mlvae
