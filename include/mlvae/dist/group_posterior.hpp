/// @file
/// mlvae/dist/group_posterior.hpp — the ML-VAE group posterior q(c_G | X_G): the normalised product
/// of the members' diagonal Gaussians. Per dimension, with precisions λ_i = exp(−logvar_i):
///   λ_G = Σ_i λ_i,  logvar_G = −log λ_G,  mean_G = Σ_i (λ_i / λ_G) mean_i.
/// Computed in log space (a log-sum-exp over the members) so that tiny variances do not overflow.
/// Backward, with w_i = λ_i / λ_G (docs/elbo.md, "Gradient of the group posterior"):
///   dmean_i = w_i dmean_G,   dlogvar_i = w_i (dlogvar_G − (mean_i − mean_G) dmean_G).
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/types.hpp"

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

/// Product-of-Gaussians posterior of each group. `mean`, `logvar`: dims x N (one column per
/// observation, members of group g in columns [offsets[g], offsets[g+1])). Writes dims x G.
template <typename T, typename M, typename L>
void group_posterior(const Eigen::MatrixBase<M>& mean, const Eigen::MatrixBase<L>& logvar,
                     const std::vector<Index>& offsets, Matrix<T>& group_mean, Matrix<T>& group_logvar) {
  require<ShapeError>(mean.rows() == logvar.rows() && mean.cols() == logvar.cols(), "group_posterior: mean is ",
                      mean.rows(), "x", mean.cols(), " but logvar is ", logvar.rows(), "x", logvar.cols());
  check_group_offsets(offsets, mean.cols(), "group_posterior");
  const Index dims = mean.rows();
  const Index groups = static_cast<Index>(offsets.size()) - 1;
  ensure_shape(group_mean, dims, groups);
  ensure_shape(group_logvar, dims, groups);
  for (Index g = 0; g < groups; ++g) {
    const Index begin = offsets[g], end = offsets[g + 1];
    for (Index d = 0; d < dims; ++d) {
      // log λ_i = −logvar_i; normalise by the largest precision before exponentiating.
      T max_log_precision = -logvar(d, begin);
      for (Index i = begin + 1; i < end; ++i) max_log_precision = std::max(max_log_precision, T(-logvar(d, i)));
      T weight_sum = 0, weighted_mean = 0;
      for (Index i = begin; i < end; ++i) {
        const T w = std::exp(-logvar(d, i) - max_log_precision);
        weight_sum += w;
        weighted_mean += w * mean(d, i);
      }
      group_mean(d, g) = weighted_mean / weight_sum;
      group_logvar(d, g) = -(max_log_precision + std::log(weight_sum));
    }
  }
}

/// Backward of `group_posterior`: given dLoss/dgroup_mean and dLoss/dgroup_logvar (dims x G),
/// ADDS dLoss/dmean and dLoss/dlogvar (dims x N) for every member.
template <typename T, typename M, typename L, typename DM, typename DL>
void group_posterior_backward(const Eigen::MatrixBase<M>& mean, const Eigen::MatrixBase<L>& logvar,
                              const std::vector<Index>& offsets, const Matrix<T>& group_mean,
                              const Matrix<T>& group_logvar, const Matrix<T>& dgroup_mean,
                              const Matrix<T>& dgroup_logvar, Eigen::MatrixBase<DM>& dmean,
                              Eigen::MatrixBase<DL>& dlogvar) {
  const Index dims = mean.rows();
  const Index groups = static_cast<Index>(offsets.size()) - 1;
  for (Index g = 0; g < groups; ++g) {
    for (Index i = offsets[g]; i < offsets[g + 1]; ++i) {
      for (Index d = 0; d < dims; ++d) {
        const T w = std::exp(group_logvar(d, g) - logvar(d, i));  // λ_i / λ_G
        dmean(d, i) += w * dgroup_mean(d, g);
        dlogvar(d, i) += w * (dgroup_logvar(d, g) - (mean(d, i) - group_mean(d, g)) * dgroup_mean(d, g));
      }
    }
  }
}

}  // namespace mlvae
