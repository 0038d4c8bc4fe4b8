/// @file
/// mlvae/eval/likelihood.hpp — importance-sampled estimates of the marginal log-likelihood, with the
/// encoder's posterior as proposal (Burda et al. 2016). With log-weights log w_k:
///   VAE:    log w_k = log p(x | z_k) + log p(z_k) − log q(z_k | x),   z_k ~ q(z | x)
///   ML-VAE: log w_k = Σ_i [log p(x_i | c_k, s_ik) + log p(s_ik) − log q(s_ik | x_i)]
///                     + log p(c_k) − log q(c_k | X_G),   c_k ~ q(c | X_G), s_ik ~ q(s | x_i)
///   log p̂ = logsumexp_k(log w_k) − log K.
/// In expectation ELBO ≤ E[log p̂] ≤ log p, tightening as K grows. Per sample set, Jensen gives
/// log p̂ ≥ mean_k log w_k (the K-sample Monte Carlo ELBO, reported alongside). The logsumexp is
/// accumulated online in double; samples are drawn in blocks of at most `max_columns` decoder
/// columns so memory stays bounded for any K. Per image = a group of one.
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/random.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/dist/gaussian.hpp"
#include "mlvae/dist/group_posterior.hpp"
#include "mlvae/eval/inference.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace mlvae {

/// Settings of the importance-sampled log-likelihood estimates.
struct ImportanceSamplingOptions {
  Index samples = 100;        ///< K
  Index max_columns = 4096;   ///< decoder columns per block (members x samples)
  std::uint64_t seed = 2024;  ///< noise of the proposal samples
};

/// Per-unit (image or group) results of an importance-sampled estimate.
struct LogLikelihoodEstimate {
  std::vector<double> log_likelihood;  ///< log p̂ = logsumexp_k log w_k − log K
  std::vector<double> elbo;            ///< (1/K) Σ_k log w_k, a K-sample ELBO estimate (≤ log p̂)
  /// Mean of log_likelihood over the units.
  double mean_log_likelihood() const { return mean(log_likelihood); }
  /// Mean of elbo over the units.
  double mean_elbo() const { return mean(elbo); }

private:
  static double mean(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return v.empty() ? 0.0 : s / static_cast<double>(v.size());
  }
};

namespace detail {
/// Online log-sum-exp and sum of log-weights for one unit.
struct LogWeightAccumulator {
  double max = -std::numeric_limits<double>::infinity();
  double scaled_sum = 0;  // Σ exp(log w − max)
  double sum = 0;
  void add(double lw) {
    sum += lw;
    if (lw > max) {
      scaled_sum = scaled_sum * std::exp(max - lw) + 1.0;
      max = lw;
    } else {
      scaled_sum += std::exp(lw - max);
    }
  }
  double log_mean_exp(Index k) const { return max + std::log(scaled_sum) - std::log(static_cast<double>(k)); }
};
}  // namespace detail

/// Importance-sampled log p(x) of every column of `x` under a VAE (proposal q(z | x)).
template <typename Model>
LogLikelihoodEstimate vae_log_likelihood(Model& model, const Matrix<typename Model::Scalar>& x,
                                         ImportanceSamplingOptions options = {}) {
  using T = typename Model::Scalar;
  require<ArgumentError>(options.samples >= 1 && options.max_columns >= 1,
                         "vae_log_likelihood: samples and max_columns must be >= 1, found ", options.samples, " and ",
                         options.max_columns);
  const Index n = x.cols(), L = model.latent_size(), K = options.samples;
  Matrix<T> mean, logvar;
  encode_vae(model, x, mean, logvar);
  Rng rng(options.seed);
  std::vector<detail::LogWeightAccumulator> acc(static_cast<std::size_t>(n));
  const Index images_per_block = std::max<Index>(1, std::min(n, options.max_columns));
  Matrix<T> xr, mr, lr, eps, z, out_mean;
  RowVector<T> ll, lq, lp;
  for (Index begin = 0; begin < n; begin += images_per_block) {
    const Index m = std::min(images_per_block, n - begin);
    const Index kb = std::max<Index>(1, std::min(K, options.max_columns / m));
    for (Index k0 = 0; k0 < K; k0 += kb) {
      const Index ks = std::min(kb, K - k0), cols = ks * m;
      xr.resize(x.rows(), cols);
      mr.resize(L, cols);
      lr.resize(L, cols);
      for (Index s = 0; s < ks; ++s) {
        xr.middleCols(s * m, m) = x.middleCols(begin, m);
        mr.middleCols(s * m, m) = mean.middleCols(begin, m);
        lr.middleCols(s * m, m) = logvar.middleCols(begin, m);
      }
      eps.resize(L, cols);
      rng.fill_normal(eps);
      z.resize(L, cols);
      reparameterize(mr, lr, eps, z);
      const Matrix<T>& out = model.decoder().forward(z);
      model.likelihood().log_likelihood(xr, out, ll);
      log_normal_density<T>(z, mr, lr, lq);
      log_standard_normal_density<T>(z, lp);
      for (Index s = 0; s < ks; ++s)
        for (Index i = 0; i < m; ++i) {
          const Index c = s * m + i;
          acc[static_cast<std::size_t>(begin + i)].add(static_cast<double>(ll(c)) + static_cast<double>(lp(c)) -
                                                      static_cast<double>(lq(c)));
        }
    }
  }
  LogLikelihoodEstimate result;
  for (const auto& a : acc) {
    result.log_likelihood.push_back(a.log_mean_exp(K));
    result.elbo.push_back(a.sum / static_cast<double>(K));
  }
  return result;
}

/// Importance-sampled log p(X_G) of every group of an ML-VAE (`offsets`: CSR layout of the columns
/// of `x`); the content is sampled once per group and sample, the style per member and sample.
/// Singleton offsets {0, 1, ..., N} give per-image estimates.
template <typename Model>
LogLikelihoodEstimate mlvae_log_likelihood(Model& model, const Matrix<typename Model::Scalar>& x,
                                           const std::vector<Index>& offsets,
                                           ImportanceSamplingOptions options = {}) {
  using T = typename Model::Scalar;
  require<ArgumentError>(options.samples >= 1 && options.max_columns >= 1,
                         "mlvae_log_likelihood: samples and max_columns must be >= 1, found ", options.samples,
                         " and ", options.max_columns);
  check_group_offsets(offsets, x.cols(), "mlvae_log_likelihood");
  const Index S = model.style_size(), C = model.content_size(), K = options.samples;
  const Index groups = static_cast<Index>(offsets.size()) - 1;
  const MLVAECodes<T> codes = encode_mlvae(model, x);
  Matrix<T> gmean, glogvar;
  group_posterior(codes.content_mean, codes.content_logvar, offsets, gmean, glogvar);
  Rng rng(options.seed);
  std::vector<detail::LogWeightAccumulator> acc(static_cast<std::size_t>(groups));
  Matrix<T> xr, smr, slr, eps_s, eps_c, cmr, clr, c, z;
  RowVector<T> ll, lqs, lps, lqc, lpc;
  Index g0 = 0;
  while (g0 < groups) {
    // A block of whole groups with at most max_columns members (at least one group).
    Index g1 = g0 + 1;
    while (g1 < groups && offsets[static_cast<std::size_t>(g1) + 1] - offsets[static_cast<std::size_t>(g0)] <=
                              options.max_columns)
      ++g1;
    const Index first = offsets[static_cast<std::size_t>(g0)];
    const Index m = offsets[static_cast<std::size_t>(g1)] - first, gb = g1 - g0;
    const Index kb = std::max<Index>(1, std::min(K, options.max_columns / m));
    for (Index k0 = 0; k0 < K; k0 += kb) {
      const Index ks = std::min(kb, K - k0), cols = ks * m;
      // Content: one sample per (sample, group).
      cmr.resize(C, ks * gb);
      clr.resize(C, ks * gb);
      for (Index s = 0; s < ks; ++s) {
        cmr.middleCols(s * gb, gb) = gmean.middleCols(g0, gb);
        clr.middleCols(s * gb, gb) = glogvar.middleCols(g0, gb);
      }
      eps_c.resize(C, ks * gb);
      rng.fill_normal(eps_c);
      c.resize(C, ks * gb);
      reparameterize(cmr, clr, eps_c, c);
      log_normal_density<T>(c, cmr, clr, lqc);
      log_standard_normal_density<T>(c, lpc);
      // Style: one sample per (sample, member); z = [style; content of the member's group].
      xr.resize(x.rows(), cols);
      smr.resize(S, cols);
      slr.resize(S, cols);
      for (Index s = 0; s < ks; ++s) {
        xr.middleCols(s * m, m) = x.middleCols(first, m);
        smr.middleCols(s * m, m) = codes.style_mean.middleCols(first, m);
        slr.middleCols(s * m, m) = codes.style_logvar.middleCols(first, m);
      }
      eps_s.resize(S, cols);
      rng.fill_normal(eps_s);
      z.resize(S + C, cols);
      auto zs = z.topRows(S);
      reparameterize(smr, slr, eps_s, zs);
      for (Index s = 0; s < ks; ++s)
        for (Index g = g0; g < g1; ++g)
          for (Index i = offsets[static_cast<std::size_t>(g)]; i < offsets[static_cast<std::size_t>(g) + 1]; ++i)
            z.bottomRows(C).col(s * m + (i - first)) = c.col(s * gb + (g - g0));
      log_normal_density<T>(z.topRows(S), smr, slr, lqs);
      log_standard_normal_density<T>(z.topRows(S), lps);
      const Matrix<T>& out = model.decoder().forward(z);
      model.likelihood().log_likelihood(xr, out, ll);
      for (Index s = 0; s < ks; ++s)
        for (Index g = g0; g < g1; ++g) {
          double lw = static_cast<double>(lpc(s * gb + (g - g0))) - static_cast<double>(lqc(s * gb + (g - g0)));
          for (Index i = offsets[static_cast<std::size_t>(g)]; i < offsets[static_cast<std::size_t>(g) + 1]; ++i) {
            const Index col = s * m + (i - first);
            lw += static_cast<double>(ll(col)) + static_cast<double>(lps(col)) - static_cast<double>(lqs(col));
          }
          acc[static_cast<std::size_t>(g)].add(lw);
        }
    }
    g0 = g1;
  }
  LogLikelihoodEstimate result;
  for (const auto& a : acc) {
    result.log_likelihood.push_back(a.log_mean_exp(K));
    result.elbo.push_back(a.sum / static_cast<double>(K));
  }
  return result;
}

/// Singleton offsets {0, 1, ..., n}: every observation its own group.
inline std::vector<Index> singleton_offsets(Index n) {
  std::vector<Index> offsets(static_cast<std::size_t>(n) + 1);
  for (Index i = 0; i <= n; ++i) offsets[static_cast<std::size_t>(i)] = i;
  return offsets;
}

}  // namespace mlvae
