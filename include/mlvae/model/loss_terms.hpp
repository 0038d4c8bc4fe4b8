/// @file
/// mlvae/model/loss_terms.hpp — the terms of an ELBO evaluation, reported separately.
#pragma once

#include "mlvae/core/types.hpp"

namespace mlvae {

/// One evaluation of a model's objective on a minibatch. Sums over the batch are divided by the
/// number of groups (`*_per_group`, the ML-VAE training objective) or of images (`elbo_per_image`,
/// comparable with a plain VAE). For a plain VAE every image is its own group.
struct LossTerms {
  double loss = 0;                ///< what the optimiser minimises: −(weighted ELBO) / groups
  double elbo_per_group = 0;      ///< (Σ log p(x|z) − Σ KL_style − Σ KL_content) / groups, unweighted
  double elbo_per_image = 0;      ///< the same sum / images
  double reconstruction = 0;      ///< Σ_i E_q[log p(x_i | c, s_i)] / groups (one-sample estimate)
  double style_kl = 0;            ///< Σ_i KL(q(s_i|x_i) ‖ p(s)) / groups
  double content_kl = 0;          ///< Σ_G KL(q(c_G|X_G) ‖ p(c)) / groups
  /// Number of groups the terms were averaged over.
  Index groups = 0;
  /// Number of images (observations) the terms cover.
  Index images = 0;

  /// The terms of a grouped ELBO from its sums over a batch, written once for every device: `rec`
  /// = Σ log p(x|z), `style_kl` = Σ_i KL_style, `content_kl` = Σ_G KL_content over `images`
  /// observations in `groups` groups (this process's share), averaged over `total_groups` and
  /// `total_images` (the whole batch's, larger under data parallelism); the loss weights the KL sums
  /// by β_s and β_c.
  static LossTerms from_sums(double rec, double style_kl_sum, double content_kl_sum, double beta_style,
                             double beta_content, Index groups, Index images, Index total_groups,
                             Index total_images) {
    LossTerms t;
    t.groups = groups;
    t.images = images;
    const double G = static_cast<double>(total_groups);
    t.reconstruction = rec / G;
    t.style_kl = style_kl_sum / G;
    t.content_kl = content_kl_sum / G;
    t.elbo_per_group = (rec - style_kl_sum - content_kl_sum) / G;
    t.elbo_per_image = (rec - style_kl_sum - content_kl_sum) / static_cast<double>(total_images);
    t.loss = -(rec - beta_style * style_kl_sum - beta_content * content_kl_sum) / G;
    return t;
  }

  /// Accumulates `other` (weighted by its group count) for averaging over several batches.
  void accumulate(const LossTerms& other) {
    const double g0 = static_cast<double>(groups), g1 = static_cast<double>(other.groups);
    const double i0 = static_cast<double>(images), i1 = static_cast<double>(other.images);
    const double g = g0 + g1, i = i0 + i1;
    if (g <= 0) return;
    loss = (loss * g0 + other.loss * g1) / g;
    elbo_per_group = (elbo_per_group * g0 + other.elbo_per_group * g1) / g;
    elbo_per_image = (elbo_per_image * i0 + other.elbo_per_image * i1) / i;
    reconstruction = (reconstruction * g0 + other.reconstruction * g1) / g;
    style_kl = (style_kl * g0 + other.style_kl * g1) / g;
    content_kl = (content_kl * g0 + other.content_kl * g1) / g;
    groups += other.groups;
    images += other.images;
  }
};

}  // namespace mlvae
