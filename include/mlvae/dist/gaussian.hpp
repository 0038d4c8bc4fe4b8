/// @file
/// mlvae/dist/gaussian.hpp — diagonal Gaussians parameterised by mean and log-variance:
/// reparameterised sampling z = μ + exp(½ log σ²) ⊙ ε, and the closed-form
/// KL(N(μ, diag σ²) ‖ N(0, I)) = ½ Σ_d (μ² + σ² − 1 − log σ²), each with its backward pass.
/// docs/elbo.md, sections "Reparameterisation" and "KL to the prior". The formulas of one element
/// (namespace gaussian) are written once for the host and every device: kernels (GaussianSample,
/// GaussianKl, GaussianSampleGradient, evaluated by a context's generate_at) and the host helpers.
#pragma once

#include "mlvae/core/elementwise.hpp"
#include "mlvae/core/error.hpp"
#include "mlvae/core/types.hpp"

namespace mlvae {

/// Read-only view of a column-major matrix in any device's memory (a pointer and its leading
/// dimension), usable in kernels written once for every device.
template <typename T>
struct ColumnsView {
  const T* data = nullptr;  ///< element (0, 0)
  Index ld = 0;             ///< distance between columns
  /// Element (r, c).
  EIGEN_DEVICE_FUNC T operator()(Index r, Index c) const { return data[r + c * ld]; }
};

/// The diagonal Gaussian's formulas of one element, written once for the host and every device:
/// the kernels below (evaluated by a context's generate_at), the content path's kernels
/// (model/content_path.hpp) and the host helpers further down all use these.
namespace gaussian {
/// KL(N(m, e^l) ‖ N(0, 1)) = ½ (m² + e^l − 1 − l).
template <typename T>
EIGEN_DEVICE_FUNC T kl(T m, T l) {
  return T(0.5) * (m * m + Eigen::numext::exp(l) - T(1) - l);
}
/// The reparameterised sample z = m + e^{½ l} ε.
template <typename T>
EIGEN_DEVICE_FUNC T sample(T m, T l, T eps) {
  return m + Eigen::numext::exp(T(0.5) * l) * eps;
}
/// dLoss/dl of a sample and its KL weighted by w, given dz = dLoss/dz:
/// dz ε ½ e^{½ l} + w ½ (e^l − 1) (dLoss/dm is dz + w m).
template <typename T>
EIGEN_DEVICE_FUNC T logvar_gradient(T l, T eps, T dz, T w) {
  using Eigen::numext::exp;
  return dz * eps * T(0.5) * exp(T(0.5) * l) + w * T(0.5) * (exp(l) - T(1));
}
/// The backward of a sample and its KL weighted by w at one element, given dz = dLoss/dz: dLoss/dm
/// = dz + w m, or with `log_variance` dLoss/dl (logvar_gradient).
template <typename T>
EIGEN_DEVICE_FUNC T sample_gradient(T m, T l, T eps, T dz, T w, bool log_variance) {
  return log_variance ? logvar_gradient(l, eps, dz, w) : dz + w * m;
}
/// The summands of log N(x; μ, σ²) on Array or Tensor expressions: −½ ((x − μ)²/σ² + log σ² + log 2π).
template <typename X, typename M, typename L>
auto log_density(const X& x, const M& mean, const L& logvar) {
  using T = ew::scalar_t<X>;
  constexpr T log_two_pi = T(1.8378770664093454835606594728112);
  return T(-0.5) * ((x - mean).square() * (-logvar).exp() + logvar + log_two_pi);
}
}  // namespace gaussian

/// Element (r, c) of a reparameterised diagonal Gaussian sample: mean + e^{½ logvar} · eps.
template <typename T>
struct GaussianSample {
  ColumnsView<T> mean, logvar, eps;  ///< dims x N each
  /// Element (r, c).
  EIGEN_DEVICE_FUNC T operator()(Index r, Index c) const { return gaussian::sample(mean(r, c), logvar(r, c), eps(r, c)); }
};

/// KL(N(mean, diag e^{logvar}) ‖ N(0, I)) of column c (a 1 x N kernel), summed over the dimensions.
template <typename T>
struct GaussianKl {
  ColumnsView<T> mean, logvar;  ///< dims x N each
  Index dims;                   ///< rows summed
  /// Element (0, c).
  EIGEN_DEVICE_FUNC T operator()(Index, Index c) const {
    T sum = 0;
    for (Index d = 0; d < dims; ++d) sum += gaussian::kl(mean(d, c), logvar(d, c));
    return sum;
  }
};

/// Backward of a reparameterised sample and its weighted KL together: dLoss/dmean (or, with
/// `log_variance`, dLoss/dlogvar) of element (r, c), given dz = dLoss/dz.
template <typename T>
struct GaussianSampleGradient {
  ColumnsView<T> mean, logvar, eps, dz;  ///< dims x N each
  T kl_weight;                           ///< w, the KL's weight in the loss
  bool log_variance;                     ///< which output
  /// Element (r, c).
  EIGEN_DEVICE_FUNC T operator()(Index r, Index c) const {
    return gaussian::sample_gradient(mean(r, c), logvar(r, c), eps(r, c), dz(r, c), kl_weight, log_variance);
  }
};

// ---- the host's helpers over Eigen matrices (other models' steps, evaluation) -----------------

/// Per-column KL(N(mean, diag exp(logvar)) ‖ N(0, I)), summed over rows: `kl(j)` for column j.
template <typename T, typename M, typename L>
void kl_to_standard_normal(const Eigen::MatrixBase<M>& mean, const Eigen::MatrixBase<L>& logvar, RowVector<T>& kl) {
  require<ShapeError>(mean.rows() == logvar.rows() && mean.cols() == logvar.cols(),
                      "kl_to_standard_normal: mean is ", mean.rows(), "x", mean.cols(), " but logvar is ",
                      logvar.rows(), "x", logvar.cols());
  ensure_shape(kl, 1, mean.cols());
  kl = mean.binaryExpr(logvar, [](T m, T l) { return gaussian::kl(m, l); }).colwise().sum();
}

/// Backward of `weight(j) · kl(j)` summed over columns: ADDS weight·μ to `dmean` and
/// weight·½(σ² − 1) to `dlogvar` (weight is a scalar applied to every column).
template <typename T, typename M, typename L, typename DM, typename DL>
void kl_to_standard_normal_backward(const Eigen::MatrixBase<M>& mean, const Eigen::MatrixBase<L>& logvar, T weight,
                                    Eigen::MatrixBase<DM>& dmean, Eigen::MatrixBase<DL>& dlogvar) {
  dmean.array() += weight * mean.array();
  dlogvar += logvar.unaryExpr([weight](T l) { return gaussian::logvar_gradient(l, T(0), T(0), weight); });
}

/// z = mean + exp(½ logvar) ⊙ eps (the reparameterisation trick). All arguments dims x batch.
template <typename M, typename L, typename E, typename Z>
void reparameterize(const Eigen::MatrixBase<M>& mean, const Eigen::MatrixBase<L>& logvar,
                    const Eigen::MatrixBase<E>& eps, Eigen::MatrixBase<Z>& z) {
  for (Index c = 0; c < z.cols(); ++c)
    for (Index r = 0; r < z.rows(); ++r) z(r, c) = gaussian::sample(mean(r, c), logvar(r, c), eps(r, c));
}

/// Backward of `reparameterize`: given dz, ADDS dz to dmean and dz ⊙ eps ⊙ ½ exp(½ logvar) to dlogvar.
template <typename L, typename E, typename DZ, typename DM, typename DL>
void reparameterize_backward(const Eigen::MatrixBase<L>& logvar, const Eigen::MatrixBase<E>& eps,
                             const Eigen::MatrixBase<DZ>& dz, Eigen::MatrixBase<DM>& dmean,
                             Eigen::MatrixBase<DL>& dlogvar) {
  using T = typename DL::Scalar;
  dmean += dz;
  for (Index c = 0; c < dlogvar.cols(); ++c)
    for (Index r = 0; r < dlogvar.rows(); ++r)
      dlogvar(r, c) += gaussian::logvar_gradient(T(logvar(r, c)), T(eps(r, c)), T(dz(r, c)), T(0));
}

/// log N(x; mean, diag exp(logvar)) per column, summed over rows.
template <typename T, typename X, typename M, typename L>
void log_normal_density(const Eigen::MatrixBase<X>& x, const Eigen::MatrixBase<M>& mean,
                        const Eigen::MatrixBase<L>& logvar, RowVector<T>& out) {
  ensure_shape(out, 1, x.cols());
  out = gaussian::log_density(x.array(), mean.array(), logvar.array()).colwise().sum();
}

/// log N(x; 0, I) per column, summed over rows.
template <typename T, typename X>
void log_standard_normal_density(const Eigen::MatrixBase<X>& x, RowVector<T>& out) {
  constexpr T log_two_pi = T(1.8378770664093454835606594728112);
  ensure_shape(out, 1, x.cols());
  out = (T(-0.5) * (x.array().square() + log_two_pi)).colwise().sum();
}

}  // namespace mlvae
