/// @file
/// mlvae/model/content_path.hpp — the content half of the group models on one machinery: how the
/// members' content estimates are aggregated (ML-VAE product of Gaussians, GVAE arithmetic mean),
/// which dimensions are shared (all, or per pair by the Ada threshold τ = ½(max_d KL_d + min_d KL_d)
/// of Locatello et al. 2020), and whether one content sample is drawn per group or per observation.
///
/// Per group g and dimension d the content of member i is the aggregate q_G,d when (d, g) is shared,
/// else the member's own estimate q_i,d. The KL of a shared dimension is counted once per group (the
/// ML-VAE group ELBO), of an unshared one once per member. Gradients (docs/elbo.md, "Related models"):
///   * mean (GVAE): μ_G = (1/n) Σ μ_i, σ²_G = (1/n) Σ σ²_i, so dμ_i = dμ_G / n and
///     dlogvar_i = dlogvar_G · σ²_i / (n σ²_G);
///   * product (ML-VAE): dist/group_posterior.hpp;
///   * the Ada mask is piecewise constant in the encodings: no gradient flows through τ.
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/random.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/model/batch_shard.hpp"
#include "mlvae/dist/group_posterior.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace mlvae {

/// How a group's content posterior is formed from its members' Gaussian estimates.
enum class ContentAggregation {
  Product,  ///< ML-VAE (Bouchacourt et al. 2018): normalised product of Gaussians
  Mean      ///< GVAE (Hosoya 2019): arithmetic mean of the members' means and variances
};

/// Options of the content path (defaults: the ML-VAE of the paper).
struct ContentPathOptions {
  /// Product (ML-VAE) or arithmetic mean (GVAE).
  ContentAggregation aggregation = ContentAggregation::Product;
  /// Ada-ML-VAE / Ada-GVAE: groups must be pairs (a lone observation, e.g. a key's leftover, is its own
  /// group); a dimension is shared when the symmetric KL between the two members' estimates is below
  /// τ = ½(max_d + min_d) of that pair.
  bool adaptive = false;
  /// Draw one content sample per observation (true) or one per group, shared by the members (false).
  bool sample_per_observation = false;
};

/// Arithmetic-mean group posterior (GVAE): mean of means, log of the mean variance. dims x G out.
template <typename T, typename M, typename L>
void group_mean_posterior(const Eigen::MatrixBase<M>& mean, const Eigen::MatrixBase<L>& logvar,
                          const std::vector<Index>& offsets, Matrix<T>& group_mean, Matrix<T>& group_logvar) {
  check_group_offsets(offsets, mean.cols(), "group_mean_posterior");
  const Index dims = mean.rows(), groups = static_cast<Index>(offsets.size()) - 1;
  ensure_shape(group_mean, dims, groups);
  ensure_shape(group_logvar, dims, groups);
  for (Index g = 0; g < groups; ++g) {
    const Index b = offsets[static_cast<std::size_t>(g)], e = offsets[static_cast<std::size_t>(g) + 1];
    const T n = T(e - b);
    for (Index d = 0; d < dims; ++d) {
      T top = logvar(d, b);
      for (Index i = b + 1; i < e; ++i) top = std::max(top, T(logvar(d, i)));
      T m = 0, v = 0;
      for (Index i = b; i < e; ++i) {
        m += mean(d, i);
        v += std::exp(logvar(d, i) - top);
      }
      group_mean(d, g) = m / n;
      group_logvar(d, g) = top + std::log(v / n);
    }
  }
}

/// Backward of group_mean_posterior: ADDS dLoss/dmean and dLoss/dlogvar of every member.
template <typename T, typename L, typename DM, typename DL>
void group_mean_posterior_backward(const Eigen::MatrixBase<L>& logvar, const std::vector<Index>& offsets,
                                   const Matrix<T>& group_logvar, const Matrix<T>& dgroup_mean,
                                   const Matrix<T>& dgroup_logvar, Eigen::MatrixBase<DM>& dmean,
                                   Eigen::MatrixBase<DL>& dlogvar) {
  const Index dims = logvar.rows(), groups = static_cast<Index>(offsets.size()) - 1;
  for (Index g = 0; g < groups; ++g) {
    const Index b = offsets[static_cast<std::size_t>(g)], e = offsets[static_cast<std::size_t>(g) + 1];
    const T n = T(e - b);
    for (Index i = b; i < e; ++i)
      for (Index d = 0; d < dims; ++d) {
        dmean(d, i) += dgroup_mean(d, g) / n;
        dlogvar(d, i) += dgroup_logvar(d, g) * std::exp(logvar(d, i) - group_logvar(d, g)) / n;
      }
  }
}

/// KL(N(m1, e^l1) ‖ N(m2, e^l2)) of one dimension.
template <typename T>
T gaussian_kl(T m1, T l1, T m2, T l2) {
  return T(0.5) * (l2 - l1 + (std::exp(l1) + (m1 - m2) * (m1 - m2)) / std::exp(l2) - T(1));
}

/// The content path of a group model: forward (aggregate, select shared dimensions, sample, KL) and
/// backward (to the members' content means and log-variances). Holds its workspaces.
template <typename T>
class ContentPath {
public:
  /// Forward. `mean`, `logvar`: the members' content estimates (C x N). Draws its noise from `rng`
  /// (C x G normals when one sample per group and not adaptive, else C x N) and writes the content
  /// sample of every observation into `z` (C x N). Returns Σ of the content KLs (shared dimensions once per
  /// group, unshared ones once per member).
  /// With a `shard` (model/batch_shard.hpp) the batch is a slice of a larger one: the noise drawn is
  /// the slice's part of the whole batch's content noise, the rest of which is skipped.
  template <typename M, typename L, typename Z>
  double forward(const Eigen::MatrixBase<M>& mean, const Eigen::MatrixBase<L>& logvar,
                 const std::vector<Index>& offsets, const ContentPathOptions& options, Rng& rng,
                 Eigen::MatrixBase<Z>& z, const BatchShard& shard = {}) {
    options_ = options;
    const Index C = mean.rows(), n = mean.cols(), groups = static_cast<Index>(offsets.size()) - 1;
    if (options.aggregation == ContentAggregation::Product)
      group_posterior(mean, logvar, offsets, group_mean_, group_logvar_);
    else
      group_mean_posterior(mean, logvar, offsets, group_mean_, group_logvar_);
    // Shared mask (C x G): all dimensions, or the Ada threshold per pair.
    shared_.setOnes(C, groups);
    if (options.adaptive) {
      for (Index g = 0; g < groups; ++g) {
        const Index b = offsets[static_cast<std::size_t>(g)], size = offsets[static_cast<std::size_t>(g) + 1] - b;
        require<ArgumentError>(size <= 2, "ContentPath (adaptive, Ada-ML-VAE / Ada-GVAE): every group must be a pair ",
                               "(or a single observation), group ", g, " has ", size, " members");
        if (size == 1) continue;  // a lone observation: its aggregate is its own estimate
        Vector<T> kl(C);
        for (Index d = 0; d < C; ++d)
          kl(d) = T(0.5) * (gaussian_kl<T>(mean(d, b), logvar(d, b), mean(d, b + 1), logvar(d, b + 1)) +
                            gaussian_kl<T>(mean(d, b + 1), logvar(d, b + 1), mean(d, b), logvar(d, b)));
        const T tau = T(0.5) * (kl.maxCoeff() + kl.minCoeff());
        for (Index d = 0; d < C; ++d) shared_(d, g) = kl(d) < tau ? T(1) : T(0);
      }
    }
    per_group_noise_ = !options.sample_per_observation && !options.adaptive;
    const Index units = per_group_noise_ ? groups : n;
    const Index first = per_group_noise_ ? shard.first_group : shard.first_column;
    const Index global_units = shard.whole() ? units : (per_group_noise_ ? shard.global_groups : shard.global_columns);
    ensure_shape(eps_, C, units);
    skip_normals(rng, std::int64_t{first} * C);
    rng.fill_normal(eps_);
    skip_normals(rng, std::int64_t{global_units - first - units} * C);
    // Effective posterior of every observation, and its sample.
    ensure_shape(eff_mean_, C, n);
    ensure_shape(eff_logvar_, C, n);
    ensure_shape(eff_eps_, C, n);
    double kl_sum = 0;
    for (Index g = 0; g < groups; ++g) {
      const Index b = offsets[static_cast<std::size_t>(g)], e = offsets[static_cast<std::size_t>(g) + 1];
      for (Index d = 0; d < C; ++d) {
        const bool sh = shared_(d, g) > T(0);
        if (sh) kl_sum += kl_one(group_mean_(d, g), group_logvar_(d, g));
        for (Index i = b; i < e; ++i) {
          eff_mean_(d, i) = sh ? group_mean_(d, g) : T(mean(d, i));
          eff_logvar_(d, i) = sh ? group_logvar_(d, g) : T(logvar(d, i));
          // One sample per group: every member uses the noise of the group (or of its first member).
          eff_eps_(d, i) = per_group_noise_ ? eps_(d, g) : ((sh && !options.sample_per_observation) ? eps_(d, b) : eps_(d, i));
          if (!sh) kl_sum += kl_one(T(mean(d, i)), T(logvar(d, i)));
        }
      }
    }
    z.derived() = eff_mean_ + (T(0.5) * eff_logvar_.array()).exp().matrix().cwiseProduct(eff_eps_);
    return kl_sum;
  }

  /// Backward of the last forward: `dz` = dLoss/dz (C x N), `kl_weight` multiplies the KL sum in the loss.
  /// ADDS dLoss/dmean and dLoss/dlogvar of the members' estimates.
  template <typename M, typename L, typename DZ, typename DM, typename DL>
  void backward(const Eigen::MatrixBase<M>& mean, const Eigen::MatrixBase<L>& logvar, const std::vector<Index>& offsets,
                const Eigen::MatrixBase<DZ>& dz, T kl_weight, Eigen::MatrixBase<DM>& dmean,
                Eigen::MatrixBase<DL>& dlogvar) {
    const Index C = mean.rows(), groups = static_cast<Index>(offsets.size()) - 1;
    d_group_mean_.setZero(C, groups);
    d_group_logvar_.setZero(C, groups);
    for (Index g = 0; g < groups; ++g) {
      const Index b = offsets[static_cast<std::size_t>(g)], e = offsets[static_cast<std::size_t>(g) + 1];
      for (Index d = 0; d < C; ++d) {
        const bool sh = shared_(d, g) > T(0);
        for (Index i = b; i < e; ++i) {
          const T dm = dz(d, i);
          const T dl = dz(d, i) * eff_eps_(d, i) * T(0.5) * std::exp(T(0.5) * eff_logvar_(d, i));
          if (sh) {
            d_group_mean_(d, g) += dm;
            d_group_logvar_(d, g) += dl;
          } else {  // own estimate: reparameterisation and its own KL
            dmean(d, i) += dm + kl_weight * T(mean(d, i));
            dlogvar(d, i) += dl + kl_weight * T(0.5) * (std::exp(T(logvar(d, i))) - T(1));
          }
        }
        if (sh) {
          d_group_mean_(d, g) += kl_weight * group_mean_(d, g);
          d_group_logvar_(d, g) += kl_weight * T(0.5) * (std::exp(group_logvar_(d, g)) - T(1));
        }
      }
    }
    if (options_.aggregation == ContentAggregation::Product)
      group_posterior_backward(mean, logvar, offsets, group_mean_, group_logvar_, d_group_mean_, d_group_logvar_, dmean,
                               dlogvar);
    else
      group_mean_posterior_backward(logvar, offsets, group_logvar_, d_group_mean_, d_group_logvar_, dmean, dlogvar);
  }

  /// The group posteriors of the last forward (C x G).
  const Matrix<T>& group_mean() const { return group_mean_; }
  /// Log-variances of the group posteriors of the last forward (C x G).
  const Matrix<T>& group_logvar() const { return group_logvar_; }
  /// 1 where dimension d of group g was shared in the last forward, else 0 (C x G).
  const Matrix<T>& shared() const { return shared_; }

private:
  static double kl_one(T m, T l) { return 0.5 * static_cast<double>(m * m + std::exp(l) - T(1) - l); }

  ContentPathOptions options_;
  bool per_group_noise_ = true;
  Matrix<T> group_mean_, group_logvar_, shared_, eps_, eff_mean_, eff_logvar_, eff_eps_, d_group_mean_, d_group_logvar_;
};

}  // namespace mlvae
