/// @file
/// mlvae/dist/kl_decomposition.hpp — the two-level decomposition of the KL term of HFVAE (Esmaeili
/// et al. 2019), with β-TCVAE (Chen et al. 2018) as the case of one-dimensional blocks, estimated on a
/// minibatch and differentiated by hand. For z_n ~ q(z|x_n) and latent blocks b with dimensions d:
///   log q(z|x) − log p(z) = [log q(z|x) − log q(z)]                          (index-code MI, α)
///                         + [log q(z) − Σ_b log q(z_b)]                      (TC between blocks, β)
///                         + Σ_b [log q(z_b) − Σ_{d∈b} log q(z_d)]            (TC within blocks, γ)
///                         + Σ_d [log q(z_d) − log p(z_d)]                    (dimension-wise KL, δ)
/// with log q(z_S) (S = all dimensions, one block, one dimension) estimated from the batch by
///   log q̂(z_n,S) = logsumexp_m [ Σ_{d∈S} log N(z_nd; μ_md, σ²_md) + log w_nm ],
/// minibatch-weighted sampling w_nm = 1/(N·B), or stratified sampling w_nn = 1/N,
/// w_nm = (N−1)/(N(B−1)) for m ≠ n. docs/disentanglement.md, sections "The decomposition" and
/// "Backward through the estimator".
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/types.hpp"

#include <cmath>
#include <string>
#include <utility>
#include <vector>

namespace mlvae {

/// How log q(z) and its marginals are estimated from a minibatch.
enum class MarginalEstimator {
  MinibatchWeighted,   ///< MWS (Chen et al. 2018): every pair weighted 1/(N·B)
  MinibatchStratified  ///< MSS / probtorch's log_batch_marginal: own example 1/N, others (N−1)/(N(B−1))
};

/// Weights of the four KL terms (all 1: the sum is the usual KL estimate, the plain VAE ELBO).
struct KLDecompositionWeights {
  double mutual_information = 1;   ///< α on log q(z|x) − log q(z)
  double between_tc = 1;           ///< β on log q(z) − Σ_b log q(z_b)
  double within_tc = 1;            ///< γ on Σ_b [log q(z_b) − Σ_{d∈b} log q(z_d)]
  double dimension_kl = 1;         ///< δ on Σ_d [log q(z_d) − log p(z_d)]
};

/// Everything that defines the decomposed KL term besides the batch.
struct KLDecompositionOptions {
  /// Term weights.
  KLDecompositionWeights weights;
  /// Sizes of the latent blocks, in order; empty = one-dimensional blocks (β-TCVAE).
  std::vector<Index> block_sizes;
  /// N, the size of the data set the batch is drawn from.
  double dataset_size = 1;
  /// The estimator of log q(z) and its marginals.
  MarginalEstimator estimator = MarginalEstimator::MinibatchWeighted;
};

/// The four terms on one batch, each averaged over the batch (unweighted), and the weighted sum.
struct KLDecompositionTerms {
  /// Estimated index-code mutual information E[log q(z|x) − log q(z)].
  double mutual_information = 0;
  /// Estimated total correlation between blocks.
  double between_tc = 0;
  /// Estimated total correlation within blocks, summed over blocks.
  double within_tc = 0;
  /// Estimated dimension-wise KL, summed over dimensions.
  double dimension_kl = 0;
  /// α·MI + β·TC_between + γ·TC_within + δ·KL_dim (what the loss adds).
  double weighted = 0;
};

/// The estimator and its backward pass, with workspaces kept between calls.
template <typename T>
class KLDecomposition {
public:
  /// The decomposition with `options` over a latent of `latent` dimensions.
  /// @throws ArgumentError when the block sizes do not add up to `latent`, a block is empty, or the
  /// data set size is below 1.
  KLDecomposition(Index latent, KLDecompositionOptions options) : options_(std::move(options)), latent_(latent) {
    require<ArgumentError>(latent >= 1, "KLDecomposition: expected a latent of at least one dimension, found ", latent);
    require<ArgumentError>(options_.dataset_size >= 1, "KLDecomposition: the data set size must be >= 1, found ",
                           options_.dataset_size);
    if (options_.block_sizes.empty()) options_.block_sizes.assign(static_cast<std::size_t>(latent), 1);
    Index total = 0;
    for (std::size_t b = 0; b < options_.block_sizes.size(); ++b) {
      require<ArgumentError>(options_.block_sizes[b] >= 1, "KLDecomposition: block ", b,
                             " must have at least one dimension, found ", options_.block_sizes[b]);
      total += options_.block_sizes[b];
    }
    require<ArgumentError>(total == latent, "KLDecomposition: the block sizes add up to ", total,
                           " but the latent has ", latent, " dimensions");
  }

  /// The options (block sizes filled in).
  const KLDecompositionOptions& options() const { return options_; }
  /// Latent dimensions.
  Index latent_size() const { return latent_; }

  /// Evaluates the terms at samples `z` = mean + exp(½ logvar) ⊙ ε (all latent x B). When `backward`
  /// is true, ADDS ∂(weighted / B · scale)/∂ to `dz`, `dmean` and `dlogvar` — the partial
  /// derivatives holding the other two fixed; the caller chains dz through the reparameterisation.
  /// `scale` multiplies the gradient only (e.g. 1 to differentiate the batch mean of `weighted`).
  template <typename M, typename L, typename Z, typename DZ, typename DM, typename DL>
  KLDecompositionTerms evaluate(const Eigen::MatrixBase<M>& mean, const Eigen::MatrixBase<L>& logvar,
                                const Eigen::MatrixBase<Z>& z, bool backward, Eigen::MatrixBase<DZ>& dz,
                                Eigen::MatrixBase<DM>& dmean, Eigen::MatrixBase<DL>& dlogvar, T scale = T(1)) {
    const Index D = latent_, B = z.cols();
    require<ShapeError>(mean.rows() == D && logvar.rows() == D && z.rows() == D && mean.cols() == B &&
                            logvar.cols() == B,
                        "KLDecomposition: expected mean, logvar and z of ", D, " rows and equal columns, found ",
                        mean.rows(), "x", mean.cols(), ", ", logvar.rows(), "x", logvar.cols(), ", ", z.rows(), "x",
                        z.cols());
    const bool stratified = options_.estimator == MarginalEstimator::MinibatchStratified;
    require<ShapeError>(B >= 1 && (!stratified || B >= 2), "KLDecomposition: the ",
                        stratified ? "stratified estimator needs at least 2" : "estimator needs at least 1",
                        " examples in the batch, found ", B);
    constexpr double log_two_pi = 1.8378770664093454835606594728112;
    const double N = options_.dataset_size;
    const double log_w_other = stratified ? std::log((N - 1) / (N * (B - 1))) : -std::log(N * B);
    const double log_w_self = stratified ? -std::log(N) : -std::log(N * B);
    // N − 1 = 0 makes the off-diagonal weight zero (log = −inf): only the own example counts.

    // log N(z_nd; μ_md, σ²_md) for every (d, n, m): density_[d](n, m).
    density_.resize(static_cast<std::size_t>(D));
    for (Index d = 0; d < D; ++d) {
      Matrix<double>& P = density_[static_cast<std::size_t>(d)];
      ensure_shape(P, B, B);
      for (Index m = 0; m < B; ++m) {
        const double mu = static_cast<double>(mean(d, m)), lv = static_cast<double>(logvar(d, m));
        const double inv_var = std::exp(-lv);
        for (Index n = 0; n < B; ++n) {
          const double diff = static_cast<double>(z(d, n)) - mu;
          P(n, m) = -0.5 * (diff * diff * inv_var + lv + log_two_pi);
        }
      }
    }

    // Subsets S: the whole latent, each block, each dimension; coefficient of log q(z_S) in the
    // weighted sum: (β − α), (γ − β), (δ − γ).
    const KLDecompositionWeights& w = options_.weights;
    const Index blocks = static_cast<Index>(options_.block_sizes.size());
    ensure_shape(log_q_all_, 1, B);
    ensure_shape(log_q_block_, blocks, B);
    ensure_shape(log_q_dim_, D, B);
    ensure_shape(coeff_, D, B * B);  // accumulated ∂(weighted sum per example)/∂ log N(z_nd; μ_md, σ²_md)
    coeff_.setZero();
    auto subset = [&](Index first, Index count, double coefficient, auto&& out_row) {
      ensure_shape(sum_, B, B);
      sum_ = density_[static_cast<std::size_t>(first)];
      for (Index d = first + 1; d < first + count; ++d) sum_ += density_[static_cast<std::size_t>(d)];
      for (Index n = 0; n < B; ++n) {
        double top = -HUGE_VAL;
        for (Index m = 0; m < B; ++m) {
          sum_(n, m) += (m == n ? log_w_self : log_w_other);
          if (sum_(n, m) > top) top = sum_(n, m);
        }
        double total = 0;
        for (Index m = 0; m < B; ++m) total += std::exp(sum_(n, m) - top);
        out_row(n) = top + std::log(total);
        if (!backward || coefficient == 0) continue;
        for (Index m = 0; m < B; ++m) {
          const double responsibility = std::exp(sum_(n, m) - out_row(n));
          for (Index d = first; d < first + count; ++d) coeff_(d, n * B + m) += coefficient * responsibility;
        }
      }
    };
    subset(0, D, w.between_tc - w.mutual_information, log_q_all_.row(0));
    for (Index b = 0, first = 0; b < blocks; first += options_.block_sizes[static_cast<std::size_t>(b)], ++b)
      subset(first, options_.block_sizes[static_cast<std::size_t>(b)], w.within_tc - w.between_tc,
             log_q_block_.row(b));
    for (Index d = 0; d < D; ++d) subset(d, 1, w.dimension_kl - w.within_tc, log_q_dim_.row(d));

    KLDecompositionTerms terms;
    for (Index n = 0; n < B; ++n) {
      double log_q_given_x = 0, log_prior = 0;
      for (Index d = 0; d < D; ++d) {
        log_q_given_x += density_[static_cast<std::size_t>(d)](n, n);
        const double zd = static_cast<double>(z(d, n));
        log_prior += -0.5 * (zd * zd + log_two_pi);
      }
      terms.mutual_information += log_q_given_x - log_q_all_(0, n);
      terms.between_tc += log_q_all_(0, n) - log_q_block_.col(n).sum();
      terms.within_tc += log_q_block_.col(n).sum() - log_q_dim_.col(n).sum();
      terms.dimension_kl += log_q_dim_.col(n).sum() - log_prior;
    }
    const double inv_b = 1.0 / static_cast<double>(B);
    terms.mutual_information *= inv_b;
    terms.between_tc *= inv_b;
    terms.within_tc *= inv_b;
    terms.dimension_kl *= inv_b;
    terms.weighted = w.mutual_information * terms.mutual_information + w.between_tc * terms.between_tc +
                     w.within_tc * terms.within_tc + w.dimension_kl * terms.dimension_kl;
    if (!backward) return terms;

    // log q(z_n|x_n) = Σ_d log N(z_nd; μ_nd, σ²_nd): coefficient α on the diagonal.
    for (Index n = 0; n < B; ++n)
      for (Index d = 0; d < D; ++d) coeff_(d, n * B + n) += w.mutual_information;
    // Chain through log N(z_nd; μ_md, σ²_md) = −½((z_nd − μ_md)² e^{−lv_md} + lv_md + log 2π).
    const double g = static_cast<double>(scale) * inv_b;
    for (Index d = 0; d < D; ++d) {
      for (Index m = 0; m < B; ++m) {
        const double mu = static_cast<double>(mean(d, m));
        const double inv_var = std::exp(-static_cast<double>(logvar(d, m)));
        double d_mu = 0, d_lv = 0;
        for (Index n = 0; n < B; ++n) {
          const double a = g * coeff_(d, n * B + m);
          if (a == 0) continue;
          const double diff = static_cast<double>(z(d, n)) - mu;
          dz(d, n) += static_cast<T>(-a * diff * inv_var);
          d_mu += a * diff * inv_var;
          d_lv += a * 0.5 * (diff * diff * inv_var - 1.0);
        }
        dmean(d, m) += static_cast<T>(d_mu);
        dlogvar(d, m) += static_cast<T>(d_lv);
      }
    }
    // −δ log p(z_nd) = δ · ½ z²_nd + const.
    for (Index n = 0; n < B; ++n)
      for (Index d = 0; d < D; ++d) dz(d, n) += static_cast<T>(g * w.dimension_kl * static_cast<double>(z(d, n)));
    return terms;
  }

private:
  KLDecompositionOptions options_;
  Index latent_ = 0;
  std::vector<Matrix<double>> density_;
  Matrix<double> log_q_all_, log_q_block_, log_q_dim_, coeff_, sum_;
};

}  // namespace mlvae
