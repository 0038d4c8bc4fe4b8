/// @file
/// mlvae/dist/group_posterior.hpp — the group posteriors q(c_G | X_G): the ML-VAE's normalised product
/// of the members' diagonal Gaussians (and the GVAE's arithmetic mean), as kernels written once for
/// every device and the host functions over them. Per dimension, with precisions λ_i = exp(−logvar_i):
///   λ_G = Σ_i λ_i,  logvar_G = −log λ_G,  mean_G = Σ_i (λ_i / λ_G) mean_i.
/// Computed in log space (a log-sum-exp over the members) so that tiny variances do not overflow.
/// Backward, with w_i = λ_i / λ_G (docs/elbo.md, "Gradient of the group posterior"):
///   dmean_i = w_i dmean_G,   dlogvar_i = w_i (dlogvar_G − (mean_i − mean_G) dmean_G).
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/dist/gaussian.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace mlvae {

/// Checks a CSR group layout against `columns` observations: offsets start at 0, strictly increase
/// (no empty group) and end at `columns`. Throws ShapeError / ArgumentError naming the offender.
inline void check_group_offsets(const std::vector<Index>& offsets, Index columns, const char* where) {
  require<ArgumentError>(offsets.size() >= 2, where, ": expected at least one group (offsets of size >= 2), found ",
                         offsets.size(), " offsets");
  require<ArgumentError>(offsets.front() == 0, where, ": group offsets must start at 0, found ", offsets.front());
  for (std::size_t g = 0; g + 1 < offsets.size(); ++g)
    require<ArgumentError>(offsets[g + 1] > offsets[g], where, ": group ", g, " is empty (offsets ", offsets[g], " to ",
                           offsets[g + 1], "); every group needs at least one observation");
  require<ShapeError>(offsets.back() == columns, where, ": group offsets cover ", offsets.back(),
                      " observations but the batch has ", columns);
}

/// The aggregate posterior of a group, one element per (dimension d, group g) — a kernel for
/// generate_at (nn/gemm.hpp), written once for every device. Members of group g are columns
/// [offsets[g], offsets[g+1]) of `mean` / `logvar` (dims x N).
///   * product (ML-VAE), in log space: with m = max_i (−logvar_i), w_i = e^{−logvar_i − m},
///     mean_G = Σ w_i mean_i / Σ w_i,  logvar_G = −(m + log Σ w_i);
///   * arithmetic mean (GVAE): mean_G = (1/n) Σ mean_i,  logvar_G = log((1/n) Σ e^{logvar_i}).
/// `log_variance` selects the output: the group's log-variance, else its mean.
template <typename T>
struct GroupAggregate {
  ColumnsView<T> mean, logvar;  ///< the members' estimates (dims x N)
  const Index* offsets;         ///< CSR group offsets (G + 1), in the device's memory
  bool product;                 ///< product of Gaussians (ML-VAE), else arithmetic mean (GVAE)
  bool log_variance;            ///< which output
  /// Element (d, g).
  EIGEN_DEVICE_FUNC T operator()(Index d, Index g) const {
    using Eigen::numext::exp;
    using Eigen::numext::log;
    const Index b = offsets[g], e = offsets[g + 1];
    if (product) {
      // log λ_i = −logvar_i; normalise by the largest precision before exponentiating.
      T top = -logvar(d, b);
      for (Index i = b + 1; i < e; ++i) top = Eigen::numext::maxi(top, T(-logvar(d, i)));
      T weight_sum = 0, weighted_mean = 0;
      for (Index i = b; i < e; ++i) {
        const T w = exp(-logvar(d, i) - top);
        weight_sum += w;
        weighted_mean += w * mean(d, i);
      }
      return log_variance ? -(top + log(weight_sum)) : weighted_mean / weight_sum;
    }
    const T n = T(e - b);
    T top = logvar(d, b);
    for (Index i = b + 1; i < e; ++i) top = Eigen::numext::maxi(top, logvar(d, i));
    T m = 0, v = 0;
    for (Index i = b; i < e; ++i) {
      m += mean(d, i);
      v += exp(logvar(d, i) - top);
    }
    return log_variance ? top + log(v / n) : m / n;
  }
};

/// Backward of GroupAggregate for one member, one element per (dimension d, observation i) of
/// group g = group_of[i]: dLoss/dmean_i (or, with `log_variance`, dLoss/dlogvar_i) from the group's
/// gradients dmean_G, dlogvar_G (docs/elbo.md):
///   * product, w_i = λ_i / λ_G = e^{logvar_G − logvar_i}: dmean_i = w_i dmean_G,
///     dlogvar_i = w_i (dlogvar_G − (mean_i − mean_G) dmean_G);
///   * mean: dmean_i = dmean_G / n,  dlogvar_i = dlogvar_G · e^{logvar_i − logvar_G} / n.
template <typename T>
struct GroupAggregateBackward {
  ColumnsView<T> mean, logvar;                                    ///< the members' estimates (dims x N)
  ColumnsView<T> group_mean, group_logvar, dgroup_mean, dgroup_logvar;  ///< dims x G
  const Index* offsets;                                           ///< CSR group offsets (G + 1)
  const Index* group_of;                                          ///< the group of every observation (N)
  bool product;                                                   ///< product, else arithmetic mean
  bool log_variance;                                              ///< which output
  /// Element (d, i).
  EIGEN_DEVICE_FUNC T operator()(Index d, Index i) const {
    using Eigen::numext::exp;
    const Index g = group_of[i];
    if (product) {
      const T w = exp(group_logvar(d, g) - logvar(d, i));
      return log_variance ? w * (dgroup_logvar(d, g) - (mean(d, i) - group_mean(d, g)) * dgroup_mean(d, g))
                          : w * dgroup_mean(d, g);
    }
    const T n = T(offsets[g + 1] - offsets[g]);
    return log_variance ? dgroup_logvar(d, g) * exp(logvar(d, i) - group_logvar(d, g)) / n : dgroup_mean(d, g) / n;
  }
};

namespace detail {
/// Column j's group under `offsets` (validated), one entry per column.
inline std::vector<Index> group_of_columns(const std::vector<Index>& offsets) {
  std::vector<Index> group(static_cast<std::size_t>(offsets.back()));
  for (std::size_t g = 0; g + 1 < offsets.size(); ++g)
    for (Index i = offsets[g]; i < offsets[g + 1]; ++i) group[static_cast<std::size_t>(i)] = static_cast<Index>(g);
  return group;
}

/// The host's aggregate posterior of every group (dims x G) through GroupAggregate.
template <typename T, typename M, typename L>
void aggregate_groups(const Eigen::MatrixBase<M>& mean, const Eigen::MatrixBase<L>& logvar,
                      const std::vector<Index>& offsets, bool product, Matrix<T>& group_mean,
                      Matrix<T>& group_logvar, const char* where) {
  require<ShapeError>(mean.rows() == logvar.rows() && mean.cols() == logvar.cols(), where, ": mean is ", mean.rows(),
                      "x", mean.cols(), " but logvar is ", logvar.rows(), "x", logvar.cols());
  check_group_offsets(offsets, mean.cols(), where);
  const Eigen::Ref<const Matrix<T>, 0, Eigen::OuterStride<>> m(mean), l(logvar);
  const Index dims = m.rows(), groups = static_cast<Index>(offsets.size()) - 1;
  ensure_shape(group_mean, dims, groups);
  ensure_shape(group_logvar, dims, groups);
  GroupAggregate<T> k{{m.data(), m.outerStride()}, {l.data(), l.outerStride()}, offsets.data(), product, false};
  for (Index g = 0; g < groups; ++g)
    for (Index d = 0; d < dims; ++d) group_mean(d, g) = k(d, g);
  k.log_variance = true;
  for (Index g = 0; g < groups; ++g)
    for (Index d = 0; d < dims; ++d) group_logvar(d, g) = k(d, g);
}

/// The host's backward of aggregate_groups through GroupAggregateBackward: ADDS to dmean, dlogvar.
template <typename T, typename M, typename L, typename DM, typename DL>
void aggregate_groups_backward(const Eigen::MatrixBase<M>& mean, const Eigen::MatrixBase<L>& logvar,
                               const std::vector<Index>& offsets, bool product, const Matrix<T>& group_mean,
                               const Matrix<T>& group_logvar, const Matrix<T>& dgroup_mean,
                               const Matrix<T>& dgroup_logvar, Eigen::MatrixBase<DM>& dmean,
                               Eigen::MatrixBase<DL>& dlogvar) {
  const Eigen::Ref<const Matrix<T>, 0, Eigen::OuterStride<>> m(mean), l(logvar);
  const std::vector<Index> group_of = group_of_columns(offsets);
  GroupAggregateBackward<T> k{{m.data(), m.outerStride()},
                              {l.data(), l.outerStride()},
                              {group_mean.data(), group_mean.rows()},
                              {group_logvar.data(), group_logvar.rows()},
                              {dgroup_mean.data(), dgroup_mean.rows()},
                              {dgroup_logvar.data(), dgroup_logvar.rows()},
                              offsets.data(),
                              group_of.data(),
                              product,
                              false};
  for (Index i = 0; i < m.cols(); ++i)
    for (Index d = 0; d < m.rows(); ++d) dmean(d, i) += k(d, i);
  k.log_variance = true;
  for (Index i = 0; i < m.cols(); ++i)
    for (Index d = 0; d < m.rows(); ++d) dlogvar(d, i) += k(d, i);
}
}  // namespace detail

/// Product-of-Gaussians posterior of each group. `mean`, `logvar`: dims x N (one column per
/// observation, members of group g in columns [offsets[g], offsets[g+1])). Writes dims x G.
template <typename T, typename M, typename L>
void group_posterior(const Eigen::MatrixBase<M>& mean, const Eigen::MatrixBase<L>& logvar,
                     const std::vector<Index>& offsets, Matrix<T>& group_mean, Matrix<T>& group_logvar) {
  detail::aggregate_groups(mean, logvar, offsets, true, group_mean, group_logvar, "group_posterior");
}

/// Backward of `group_posterior`: given dLoss/dgroup_mean and dLoss/dgroup_logvar (dims x G),
/// ADDS dLoss/dmean and dLoss/dlogvar (dims x N) for every member.
template <typename T, typename M, typename L, typename DM, typename DL>
void group_posterior_backward(const Eigen::MatrixBase<M>& mean, const Eigen::MatrixBase<L>& logvar,
                              const std::vector<Index>& offsets, const Matrix<T>& group_mean,
                              const Matrix<T>& group_logvar, const Matrix<T>& dgroup_mean,
                              const Matrix<T>& dgroup_logvar, Eigen::MatrixBase<DM>& dmean,
                              Eigen::MatrixBase<DL>& dlogvar) {
  detail::aggregate_groups_backward(mean, logvar, offsets, true, group_mean, group_logvar, dgroup_mean, dgroup_logvar,
                                    dmean, dlogvar);
}

/// Arithmetic-mean group posterior (GVAE): mean of means, log of the mean variance. dims x G out.
template <typename T, typename M, typename L>
void group_mean_posterior(const Eigen::MatrixBase<M>& mean, const Eigen::MatrixBase<L>& logvar,
                          const std::vector<Index>& offsets, Matrix<T>& group_mean, Matrix<T>& group_logvar) {
  detail::aggregate_groups(mean, logvar, offsets, false, group_mean, group_logvar, "group_mean_posterior");
}

/// Backward of group_mean_posterior: ADDS dLoss/dmean and dLoss/dlogvar of every member (`mean`
/// is not read: the arithmetic mean's gradient does not depend on it).
template <typename T, typename L, typename DM, typename DL>
void group_mean_posterior_backward(const Eigen::MatrixBase<L>& logvar, const std::vector<Index>& offsets,
                                   const Matrix<T>& group_logvar, const Matrix<T>& dgroup_mean,
                                   const Matrix<T>& dgroup_logvar, Eigen::MatrixBase<DM>& dmean,
                                   Eigen::MatrixBase<DL>& dlogvar) {
  detail::aggregate_groups_backward(logvar, logvar, offsets, false, group_logvar, group_logvar, dgroup_mean,
                                    dgroup_logvar, dmean, dlogvar);
}

}  // namespace mlvae
