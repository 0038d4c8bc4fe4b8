/// @file
/// mlvae/dist/gaussian.hpp — diagonal Gaussians parameterised by mean and log-variance:
/// reparameterised sampling z = μ + exp(½ log σ²) ⊙ ε, and the closed-form
/// KL(N(μ, diag σ²) ‖ N(0, I)) = ½ Σ_d (μ² + σ² − 1 − log σ²), each with its backward pass.
/// docs/elbo.md, sections "Reparameterisation" and "KL to the prior". The element-wise formulas
/// (gaussian_terms) are written once, for the CPU's Array expressions and a device's Tensor
/// expressions (device/ops.hpp); the functions here reduce them on the CPU.
#pragma once

#include "mlvae/core/elementwise.hpp"
#include "mlvae/core/error.hpp"
#include "mlvae/core/types.hpp"

namespace mlvae {

/// The diagonal Gaussian's element-wise formulas, on Array or Tensor expressions.
namespace gaussian_terms {
/// The summands of KL(N(μ, σ²) ‖ N(0, 1)): ½ (μ² + σ² − 1 − log σ²).
template <typename M, typename L>
auto kl_to_standard_normal(const M& mean, const L& logvar) {
  using T = ew::scalar_t<M>;
  return T(0.5) * (mean.square() + logvar.exp() - T(1) - logvar);
}
/// weight · d KL / d log σ² = weight ½ (σ² − 1) (d KL / dμ is μ).
template <typename L, typename T>
auto kl_logvar_gradient(const L& logvar, T weight) {
  return weight * T(0.5) * (logvar.exp() - T(1));
}
/// The reparameterised sample z = μ + e^{½ log σ²} ε.
template <typename M, typename L, typename E>
auto sample(const M& mean, const L& logvar, const E& eps) {
  using T = ew::scalar_t<M>;
  return mean + (T(0.5) * logvar).exp() * eps;
}
/// dz · dz/d log σ² = dz ε ½ e^{½ log σ²} (dz/dμ is 1).
template <typename L, typename E, typename DZ>
auto sample_logvar_gradient(const L& logvar, const E& eps, const DZ& dz) {
  using T = ew::scalar_t<L>;
  return dz * eps * T(0.5) * (T(0.5) * logvar).exp();
}
/// The summands of log N(x; μ, σ²): −½ ((x − μ)²/σ² + log σ² + log 2π).
template <typename X, typename M, typename L>
auto log_density(const X& x, const M& mean, const L& logvar) {
  using T = ew::scalar_t<X>;
  constexpr T log_two_pi = T(1.8378770664093454835606594728112);
  return T(-0.5) * ((x - mean).square() * (-logvar).exp() + logvar + log_two_pi);
}
}  // namespace gaussian_terms

/// Per-column KL(N(mean, diag exp(logvar)) ‖ N(0, I)), summed over rows: `kl(j)` for column j.
template <typename T, typename M, typename L>
void kl_to_standard_normal(const Eigen::MatrixBase<M>& mean, const Eigen::MatrixBase<L>& logvar, RowVector<T>& kl) {
  require<ShapeError>(mean.rows() == logvar.rows() && mean.cols() == logvar.cols(),
                      "kl_to_standard_normal: mean is ", mean.rows(), "x", mean.cols(), " but logvar is ",
                      logvar.rows(), "x", logvar.cols());
  ensure_shape(kl, 1, mean.cols());
  kl = gaussian_terms::kl_to_standard_normal(mean.array(), logvar.array()).colwise().sum();
}

/// Backward of `weight(j) · kl(j)` summed over columns: ADDS weight·μ to `dmean` and
/// weight·½(σ² − 1) to `dlogvar` (weight is a scalar applied to every column).
template <typename T, typename M, typename L, typename DM, typename DL>
void kl_to_standard_normal_backward(const Eigen::MatrixBase<M>& mean, const Eigen::MatrixBase<L>& logvar, T weight,
                                    Eigen::MatrixBase<DM>& dmean, Eigen::MatrixBase<DL>& dlogvar) {
  dmean.array() += weight * mean.array();
  dlogvar.array() += gaussian_terms::kl_logvar_gradient(logvar.array(), weight);
}

/// z = mean + exp(½ logvar) ⊙ eps (the reparameterisation trick). All arguments dims x batch.
template <typename M, typename L, typename E, typename Z>
void reparameterize(const Eigen::MatrixBase<M>& mean, const Eigen::MatrixBase<L>& logvar,
                    const Eigen::MatrixBase<E>& eps, Eigen::MatrixBase<Z>& z) {
  z.array() = gaussian_terms::sample(mean.array(), logvar.array(), eps.array());
}

/// Backward of `reparameterize`: given dz, ADDS dz to dmean and dz ⊙ eps ⊙ ½ exp(½ logvar) to dlogvar.
template <typename L, typename E, typename DZ, typename DM, typename DL>
void reparameterize_backward(const Eigen::MatrixBase<L>& logvar, const Eigen::MatrixBase<E>& eps,
                             const Eigen::MatrixBase<DZ>& dz, Eigen::MatrixBase<DM>& dmean,
                             Eigen::MatrixBase<DL>& dlogvar) {
  dmean += dz;
  dlogvar.array() += gaussian_terms::sample_logvar_gradient(logvar.array(), eps.array(), dz.array());
}

/// log N(x; mean, diag exp(logvar)) per column, summed over rows.
template <typename T, typename X, typename M, typename L>
void log_normal_density(const Eigen::MatrixBase<X>& x, const Eigen::MatrixBase<M>& mean,
                        const Eigen::MatrixBase<L>& logvar, RowVector<T>& out) {
  ensure_shape(out, 1, x.cols());
  out = gaussian_terms::log_density(x.array(), mean.array(), logvar.array()).colwise().sum();
}

/// log N(x; 0, I) per column, summed over rows.
template <typename T, typename X>
void log_standard_normal_density(const Eigen::MatrixBase<X>& x, RowVector<T>& out) {
  constexpr T log_two_pi = T(1.8378770664093454835606594728112);
  ensure_shape(out, 1, x.cols());
  out = (T(-0.5) * (x.array().square() + log_two_pi)).colwise().sum();
}

}  // namespace mlvae
