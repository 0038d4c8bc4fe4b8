/// @file
/// mlvae/dist/gaussian.hpp — diagonal Gaussians parameterised by mean and log-variance:
/// reparameterised sampling z = μ + exp(½ log σ²) ⊙ ε, and the closed-form
/// KL(N(μ, diag σ²) ‖ N(0, I)) = ½ Σ_d (μ² + σ² − 1 − log σ²), each with its backward pass.
/// docs/elbo.md, sections "Reparameterisation" and "KL to the prior".
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/types.hpp"

namespace mlvae {

/// Per-column KL(N(mean, diag exp(logvar)) ‖ N(0, I)), summed over rows: `kl(j)` for column j.
template <typename T, typename M, typename L>
void kl_to_standard_normal(const Eigen::MatrixBase<M>& mean, const Eigen::MatrixBase<L>& logvar, RowVector<T>& kl) {
  require<ShapeError>(mean.rows() == logvar.rows() && mean.cols() == logvar.cols(),
                      "kl_to_standard_normal: mean is ", mean.rows(), "x", mean.cols(), " but logvar is ",
                      logvar.rows(), "x", logvar.cols());
  ensure_shape(kl, 1, mean.cols());
  kl = (T(0.5) * (mean.array().square() + logvar.array().exp() - T(1) - logvar.array())).colwise().sum();
}

/// Backward of `weight(j) · kl(j)` summed over columns: ADDS weight·μ to `dmean` and
/// weight·½(σ² − 1) to `dlogvar` (weight is a scalar applied to every column).
template <typename T, typename M, typename L, typename DM, typename DL>
void kl_to_standard_normal_backward(const Eigen::MatrixBase<M>& mean, const Eigen::MatrixBase<L>& logvar, T weight,
                                    Eigen::MatrixBase<DM>& dmean, Eigen::MatrixBase<DL>& dlogvar) {
  dmean.array() += weight * mean.array();
  dlogvar.array() += weight * T(0.5) * (logvar.array().exp() - T(1));
}

/// z = mean + exp(½ logvar) ⊙ eps (the reparameterisation trick). All arguments dims x batch.
template <typename M, typename L, typename E, typename Z>
void reparameterize(const Eigen::MatrixBase<M>& mean, const Eigen::MatrixBase<L>& logvar,
                    const Eigen::MatrixBase<E>& eps, Eigen::MatrixBase<Z>& z) {
  using T = typename M::Scalar;
  z.array() = mean.array() + (T(0.5) * logvar.array()).exp() * eps.array();
}

/// Backward of `reparameterize`: given dz, ADDS dz to dmean and dz ⊙ eps ⊙ ½ exp(½ logvar) to dlogvar.
template <typename L, typename E, typename DZ, typename DM, typename DL>
void reparameterize_backward(const Eigen::MatrixBase<L>& logvar, const Eigen::MatrixBase<E>& eps,
                             const Eigen::MatrixBase<DZ>& dz, Eigen::MatrixBase<DM>& dmean,
                             Eigen::MatrixBase<DL>& dlogvar) {
  using T = typename L::Scalar;
  dmean += dz;
  dlogvar.array() += dz.array() * eps.array() * T(0.5) * (T(0.5) * logvar.array()).exp();
}

/// log N(x; mean, diag exp(logvar)) per column, summed over rows.
template <typename T, typename X, typename M, typename L>
void log_normal_density(const Eigen::MatrixBase<X>& x, const Eigen::MatrixBase<M>& mean,
                        const Eigen::MatrixBase<L>& logvar, RowVector<T>& out) {
  constexpr T log_two_pi = T(1.8378770664093454835606594728112);
  ensure_shape(out, 1, x.cols());
  out = (T(-0.5) * ((x - mean).array().square() * (-logvar.array()).exp() + logvar.array() + log_two_pi))
            .colwise()
            .sum();
}

/// log N(x; 0, I) per column, summed over rows.
template <typename T, typename X>
void log_standard_normal_density(const Eigen::MatrixBase<X>& x, RowVector<T>& out) {
  constexpr T log_two_pi = T(1.8378770664093454835606594728112);
  ensure_shape(out, 1, x.cols());
  out = (T(-0.5) * (x.array().square() + log_two_pi)).colwise().sum();
}

}  // namespace mlvae
