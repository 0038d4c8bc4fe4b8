/// @file
/// mlvae/model/mlvae.hpp — the Multi-Level VAE (Bouchacourt, Tomioka & Nowozin, AAAI 2018).
/// Each observation has a style latent s_i; each group shares a content latent c_G whose posterior
/// is the product of the members' Gaussian content estimates (dist/group_posterior.hpp).
/// Objective (docs/elbo.md, "The group ELBO"), averaged over the G groups of a minibatch:
///   L(G) = Σ_i E_q[log p(x_i | c_G, s_i)] − Σ_i KL(q(s_i|x_i) ‖ p(s)) − KL(q(c_G|X_G) ‖ p(c)),
/// the content KL counted ONCE per group. One content sample per group, shared by its members.
/// MLVAEOptions selects the related models on the same machinery (model/content_path.hpp: GVAE,
/// Ada-ML-VAE / Ada-GVAE, a content sample per observation; and the reverse-cycle loss).
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/random.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/dist/gaussian.hpp"
#include "mlvae/dist/group_posterior.hpp"
#include "mlvae/dist/likelihood.hpp"
#include "mlvae/model/batch_shard.hpp"
#include "mlvae/model/content_path.hpp"
#include "mlvae/model/loss_terms.hpp"
#include "mlvae/nn/dense.hpp"
#include "mlvae/nn/layer.hpp"

#include <cmath>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace mlvae {

namespace detail {
/// z = [style; content] for decoding, after checking the codes: style S x N, content C x N.
/// Throws ShapeError naming `where` otherwise.
template <typename T>
void stack_codes(const Matrix<T>& style, const Matrix<T>& content, Index S, Index C, Matrix<T>& z, const char* where) {
  require<ShapeError>(style.rows() == S && content.rows() == C && style.cols() == content.cols(), where,
                      ": expected style ", S, "xN and content ", C, "xN, found ", style.rows(), "x", style.cols(),
                      " and ", content.rows(), "x", content.cols());
  ensure_shape(z, S + C, style.cols());
  z.topRows(S) = style;
  z.bottomRows(C) = content;
}
}  // namespace detail

/// KL weights of the ML-VAE objective (1 and 1 give the ELBO of the paper).
template <typename T>
struct MLVAEOptions {
  /// Weight β_s of the style KL term.
  T style_kl_weight = T(1);
  /// Weight β_c of the content KL term.
  T content_kl_weight = T(1);
  /// Content path (model/content_path.hpp): product (ML-VAE) or mean (GVAE) aggregation, Ada shared
  /// dimensions per pair, one content sample per group or per observation. Default: the paper's ML-VAE.
  ContentPathOptions content = {};
  /// Weight λ of the reverse-cycle loss of Jha et al. 2018 (0: off; Bernoulli likelihood only). For each
  /// group g a style s ~ p(s) is decoded with the content sample of g and of group g+1 (mod G); both
  /// images are re-encoded and loss += λ/G Σ_g ‖μ_s(x̃_g) − μ_s(x̃_g+1)‖₁. Its gradient updates the encoder
  /// only (trunk, style and content heads, through the decoder); the decoder's parameters get none from it.
  T cycle_weight = T(0);
};

/// ML-VAE over layer stacks: `Trunk` maps an observation to features, `StyleHead` and `ContentHead`
/// map features to [mean; log-variance] (2·style and 2·content rows), `Decoder` maps
/// [style; content] to the `Likelihood`'s parameters. All four follow the layer contract
/// (nn/layer.hpp). The model owns one ParameterStore: trunk, style head, content head, decoder.
template <typename T, typename Trunk, typename StyleHead, typename ContentHead, typename Decoder,
          typename Likelihood = BernoulliLikelihood<T>>
class MLVAE {
public:
  /// The floating-point type of parameters and activations.
  using Scalar = T;

  /// Takes ownership of the layers and binds them to the model's ParameterStore (uninitialised: call initialize()).
  /// Throws ShapeError when the trunk, heads, decoder and likelihood sizes do not fit together (odd head outputs,
  /// an empty content latent, decoder input ≠ style + content, decoder output ≠ Likelihood::output_rows(data_size())).
  MLVAE(Trunk trunk, StyleHead style_head, ContentHead content_head, Decoder decoder, Likelihood likelihood = {},
        MLVAEOptions<T> options = {})
      : trunk_(std::move(trunk)),
        style_head_(std::move(style_head)),
        content_head_(std::move(content_head)),
        decoder_(std::move(decoder)),
        likelihood_(std::move(likelihood)),
        options_(options) {
    require<ShapeError>(style_head_.input_size() == trunk_.output_size() &&
                            content_head_.input_size() == trunk_.output_size(),
                        "MLVAE: the trunk outputs ", trunk_.output_size(), " features but the style head expects ",
                        style_head_.input_size(), " and the content head ", content_head_.input_size());
    require<ShapeError>(style_head_.output_size() % 2 == 0 && content_head_.output_size() % 2 == 0,
                        "MLVAE: heads must output [mean; log-variance] (an even row count), found style ",
                        style_head_.output_size(), " and content ", content_head_.output_size());
    style_size_ = style_head_.output_size() / 2;
    content_size_ = content_head_.output_size() / 2;
    require<ShapeError>(content_size_ > 0, "MLVAE: the content latent needs at least one dimension");
    require<ShapeError>(decoder_.input_size() == style_size_ + content_size_, "MLVAE: the decoder expects ",
                        decoder_.input_size(), " inputs but style + content = ", style_size_, " + ", content_size_);
    require<ShapeError>(decoder_.output_size() == Likelihood::output_rows(trunk_.input_size()), "MLVAE: the decoder outputs ",
                        decoder_.output_size(), " rows but a ", likelihood_.describe(), " likelihood over ",
                        trunk_.input_size(), " features needs ", Likelihood::output_rows(trunk_.input_size()));
    bind_layers(params_, trunk_, style_head_, content_head_, decoder_);
  }

  MLVAE(const MLVAE&) = delete;
  MLVAE& operator=(const MLVAE&) = delete;
  /// Moves the model (copying is disabled: layers hold views into the parameter store).
  MLVAE(MLVAE&&) = default;
  /// Move-assigns the model.
  MLVAE& operator=(MLVAE&&) = default;

  /// Features per observation (rows of x).
  Index data_size() const { return trunk_.input_size(); }
  /// Dimension of the style latent s.
  Index style_size() const { return style_size_; }
  /// Dimension of the content latent c.
  Index content_size() const { return content_size_; }
  /// Every parameter and its gradient, in store order trunk, style head, content head, decoder.
  ParameterStore<T>& parameters() { return params_; }
  /// Every parameter and its gradient (read-only).
  const ParameterStore<T>& parameters() const { return params_; }
  /// The observation model.
  const Likelihood& likelihood() const { return likelihood_; }
  /// The KL weights, modifiable (e.g. for KL annealing).
  MLVAEOptions<T>& options() { return options_; }
  /// The KL weights.
  const MLVAEOptions<T>& options() const { return options_; }
  /// The shared encoder trunk.
  Trunk& trunk() { return trunk_; }
  /// The shared encoder trunk (read-only).
  const Trunk& trunk() const { return trunk_; }
  /// The style head, features -> [mean; log-variance] of s.
  StyleHead& style_head() { return style_head_; }
  /// The content head, features -> [mean; log-variance] of the member's content estimate.
  ContentHead& content_head() { return content_head_; }
  /// The decoder, [s; c] -> the likelihood's parameters.
  Decoder& decoder() { return decoder_; }

  /// Arithmetic of every matrix product of the model, forward and backward: Float32 (the
  /// default) or BFloat16 (operands rounded to bfloat16, float32 sums; nn/gemm_bf16.hpp).
  /// Parameters, gradients and the optimiser stay float32. Raises ArgumentError for BFloat16
  /// when T is not float or the CPU lacks AMX-BF16 (the model is then unchanged).
  void set_precision(Precision p) {
    require_precision<T>(p, "MLVAE");
    detail::set_layer_precision(trunk_, p);
    detail::set_layer_precision(style_head_, p);
    detail::set_layer_precision(content_head_, p);
    detail::set_layer_precision(decoder_, p);
    detail::set_layer_precision(heads_, p);
    precision_ = p;
  }
  /// The arithmetic of the model's products (Float32 unless set_precision chose BFloat16).
  Precision precision() const { return precision_; }

  /// Architecture string, e.g. for checkpoints and logs.
  std::string describe() const {
    return detail::concat("MLVAE{trunk=", trunk_.describe(), ", style_head=", style_head_.describe(),
                          ", content_head=", content_head_.describe(), ", decoder=", decoder_.describe(),
                          ", likelihood=", likelihood_.describe(), "}");
  }

  /// Draws initial parameters from `rng` (layer by layer, in store order).
  void initialize(Rng& rng) {
    trunk_.initialize(rng);
    style_head_.initialize(rng);
    content_head_.initialize(rng);
    decoder_.initialize(rng);
  }

  /// Forward and backward pass on one minibatch of whole groups: `x` is data_size x N, group g
  /// occupies columns [offsets[g], offsets[g+1]). Overwrites parameters().gradients with
  /// d loss / d parameters. Noise is drawn from `rng` (N·style then G·content normals).
  /// With a `shard`, `x` is a slice of a larger batch: the noise is the slice's part of the whole
  /// batch's stream and the terms and gradients are divided by the whole batch's group count
  /// (model/batch_shard.hpp), so the slices' results add up to the whole batch's.
  LossTerms forward_backward(const Matrix<T>& x, const std::vector<Index>& offsets, Rng& rng,
                             const BatchShard& shard = {}) {
    return run(x, offsets, rng, true, shard);
  }

  /// Forward pass only: the loss terms on one minibatch (gradients untouched); `shard` as in forward_backward().
  LossTerms evaluate(const Matrix<T>& x, const std::vector<Index>& offsets, Rng& rng, const BatchShard& shard = {}) {
    return run(x, offsets, rng, false, shard);
  }

  /// Per-observation encodings: style and content means and log-variances (each dims x N).
  void encode(const Matrix<T>& x, Matrix<T>& style_mean, Matrix<T>& style_logvar, Matrix<T>& content_mean,
              Matrix<T>& content_logvar) {
    check_input(x);
    const Matrix<T>& h = trunk_.forward(x);
    const Matrix<T>& so = style_head_.forward(h);
    style_mean = so.topRows(style_size_);
    style_logvar = so.bottomRows(style_size_);
    const Matrix<T>& co = content_head_.forward(h);
    content_mean = co.topRows(content_size_);
    content_logvar = co.bottomRows(content_size_);
  }

  /// The likelihood's mean (e.g. pixel probabilities) for latent codes: style (S x N), content (C x N).
  void decode_mean(const Matrix<T>& style, const Matrix<T>& content, Matrix<T>& mean) {
    detail::stack_codes(style, content, style_size_, content_size_, z_, "MLVAE::decode_mean");
    likelihood_.mean(decoder_.forward(z_), mean);
  }

private:
  void check_input(const Matrix<T>& x) const {
    require<ShapeError>(x.rows() == data_size(), "MLVAE: expected observations with ", data_size(),
                        " features (rows), found ", x.rows(), " (x is ", x.rows(), "x", x.cols(), ")");
    require<ShapeError>(x.cols() > 0, "MLVAE: the batch is empty");
    // A finite sum proves every entry finite (one cheap pass); otherwise check entry by entry.
    require<ArgumentError>(std::isfinite(static_cast<double>(x.sum())) || x.allFinite(),
                           "MLVAE: the input batch contains NaN or infinite values");
  }

  LossTerms run(const Matrix<T>& x, const std::vector<Index>& offsets, Rng& rng, bool backward,
                const BatchShard& shard) {
    check_input(x);
    check_group_offsets(offsets, x.cols(), "MLVAE");
    const Index n = x.cols();
    const Index groups = static_cast<Index>(offsets.size()) - 1;
    const Index S = style_size_, C = content_size_;
    shard.check(groups, n, "MLVAE");
    // The whole batch's sizes: the normaliser and the layout of its noise stream.
    const Index global_n = shard.whole() ? n : shard.global_columns;
    const Index global_groups = shard.whole() ? groups : shard.global_groups;

    // Encoder: trunk, then both heads on the same features (one stacked product when both are one
    // Dense layer: rows [0, 2S) style, [2S, 2S+2C) content; nn/dense.hpp, StackedDense).
    const Matrix<T>& h = trunk_.forward(x);
    const Matrix<T>& so = stacked_heads ? heads_forward(h) : style_head_.forward(h);
    const Matrix<T>& co = stacked_heads ? so : content_head_.forward(h);
    const Index c0 = stacked_heads ? 2 * S : 0;
    const auto s_mean = so.middleRows(0, S);
    const auto s_logvar = so.middleRows(S, S);
    const auto c_mean = co.middleRows(c0, C);
    const auto c_logvar = co.middleRows(c0 + C, C);

    // Reparameterised samples: one style per observation; the content path (q(c_G | X_G), the product
    // of the members' Gaussians by default) draws its noise after the style's.
    ensure_shape(eps_style_, S, n);
    skip_normals(rng, std::int64_t{shard.first_column} * S);
    rng.fill_normal(eps_style_);
    skip_normals(rng, std::int64_t{global_n - shard.first_column - n} * S);
    ensure_shape(z_, S + C, n);
    auto z_style = z_.topRows(S);
    reparameterize(s_mean, s_logvar, eps_style_, z_style);
    auto z_content = z_.bottomRows(C);
    const double klc = content_.forward(c_mean, c_logvar, offsets, options_.content, rng, z_content, shard);

    // Decoder and the three terms.
    const Matrix<T>& out = decoder_.forward(z_);
    const T w = T(1) / T(global_groups);
    if (backward)  // the log-likelihood and its gradient in one pass (dist/likelihood.hpp)
      log_likelihood_and_gradient(likelihood_, x, out, -w, log_likelihood_, d_out_);
    else
      likelihood_.log_likelihood(x, out, log_likelihood_);
    kl_to_standard_normal<T>(s_mean, s_logvar, kl_style_);

    LossTerms terms = LossTerms::from_sums(
        static_cast<double>(log_likelihood_.sum()), static_cast<double>(kl_style_.sum()), klc,
        static_cast<double>(options_.style_kl_weight), static_cast<double>(options_.content_kl_weight), groups, n,
        global_groups, global_n);
    const bool cycle = options_.cycle_weight > T(0) && groups > 1;
    // The reverse cycle pairs each group with the next one of the batch: a slice cannot reproduce it.
    require<ArgumentError>(!cycle || shard.whole(), "MLVAE: the cycle-consistency loss (cycle_weight ",
                           options_.cycle_weight, ") pairs groups across the whole batch and cannot be split into ",
                           "shards (data-parallel or sharded training); train it in one process without shards");
    if (cycle) {
      ensure_shape(eps_cycle_, S, groups);
      rng.fill_normal(eps_cycle_);
    }
    if (!backward) {
      if (cycle) terms.loss += cycle_loss(groups, n, offsets, false);
      return terms;
    }

    // Backward. loss = −(1/G) [Σ_i log p − β_s Σ_i KL_s − β_c Σ_G KL_c].
    params_.zero_gradients();
    const Matrix<T>& dz = decoder_.backward(d_out_);

    Matrix<T>& d_style = stacked_heads ? d_heads_out_ : d_style_out_;
    Matrix<T>& d_content = stacked_heads ? d_heads_out_ : d_content_out_;
    ensure_shape(d_style, stacked_heads ? 2 * S + 2 * C : 2 * S, n);
    d_style.setZero();
    auto ds_mean = d_style.middleRows(0, S);
    auto ds_logvar = d_style.middleRows(S, S);
    reparameterize_backward(s_logvar, eps_style_, dz.topRows(S), ds_mean, ds_logvar);
    kl_to_standard_normal_backward(s_mean, s_logvar, T(w * options_.style_kl_weight), ds_mean, ds_logvar);

    // Content: through the samples (shared ones summed over the group), the KLs and the aggregation.
    d_z_content_ = dz.bottomRows(C);
    if (!stacked_heads) {
      ensure_shape(d_content, 2 * C, n);
      d_content.setZero();
    }
    auto dc_mean = d_content.middleRows(c0, C);
    auto dc_logvar = d_content.middleRows(c0 + C, C);
    content_.backward(c_mean, c_logvar, offsets, d_z_content_, T(w * options_.content_kl_weight), dc_mean, dc_logvar);

    if constexpr (stacked_heads) {
      trunk_.backward(heads_.backward(detail::single_dense<T>(style_head_), detail::single_dense<T>(content_head_),
                                      d_heads_out_),
                      false);
    } else {
      ensure_shape(d_features_, trunk_.output_size(), n);
      d_features_ = style_head_.backward(d_style_out_);
      d_features_ += content_head_.backward(d_content_out_);
      trunk_.backward(d_features_, false);
    }
    if (!cycle) return terms;

    // Reverse cycle: its loss and the encoder's gradient, which reaches the content samples (d_z_content_,
    // C x N); then once more through the content path (the encoder re-run on x for its caches).
    terms.loss += cycle_loss(groups, n, offsets, true);
    const Matrix<T>& h2 = trunk_.forward(x);
    const Matrix<T>& co2 = content_head_.forward(h2);
    ensure_shape(d_content_out_, 2 * C, n);  // not shaped yet when the heads were stacked
    d_content_out_.setZero();
    auto dc_mean2 = d_content_out_.topRows(C);
    auto dc_logvar2 = d_content_out_.bottomRows(C);
    content_.backward(co2.topRows(C), co2.bottomRows(C), offsets, d_z_content_, T(0), dc_mean2, dc_logvar2);
    trunk_.backward(content_head_.backward(d_content_out_), false);
    return terms;
  }

  // The reverse-cycle term (see MLVAEOptions::cycle_weight) on the content samples in z_ and the styles
  // eps_cycle_. With `backward`, ADDS its gradient to the encoder's parameters and writes dLoss/d(content
  // sample) of every observation into d_z_content_ (a member's content sample is its group's in the cycle;
  // the gradient goes to the group's first member, so that the content path sums it correctly).
  double cycle_loss(Index groups, Index n, const std::vector<Index>& offsets, bool backward) {
    if constexpr (!std::is_same_v<Likelihood, BernoulliLikelihood<T>>) {
      (void)groups, (void)n, (void)offsets, (void)backward;
      raise_error<ArgumentError>("MLVAE: the cycle-consistency loss (cycle_weight > 0) needs the Bernoulli likelihood, found " +
                          likelihood_.describe());
    } else {
      const Index S = style_size_, C = content_size_;
      ensure_shape(z_cycle_, S + C, 2 * groups);
      for (Index g = 0; g < groups; ++g) {
        const Index partner = (g + 1) % groups;
        z_cycle_.col(g).topRows(S) = eps_cycle_.col(g);
        z_cycle_.col(groups + g).topRows(S) = eps_cycle_.col(g);
        z_cycle_.col(g).bottomRows(C) = z_.bottomRows(C).col(offsets[static_cast<std::size_t>(g)]);
        z_cycle_.col(groups + g).bottomRows(C) = z_.bottomRows(C).col(offsets[static_cast<std::size_t>(partner)]);
      }
      likelihood_.mean(decoder_.forward(z_cycle_), x_cycle_);
      const Matrix<T>& so = style_head_.forward(trunk_.forward(x_cycle_));
      const auto diff = (so.topRows(S).leftCols(groups) - so.topRows(S).rightCols(groups)).eval();
      const T weight = options_.cycle_weight / T(groups);
      const double loss = static_cast<double>(weight) * static_cast<double>(diff.cwiseAbs().sum());
      if (!backward) return loss;
      ensure_shape(d_cycle_out_, 2 * S, 2 * groups);
      d_cycle_out_.setZero();
      const Matrix<T> sign = diff.unaryExpr([weight](T v) { return v > T(0) ? weight : (v < T(0) ? -weight : T(0)); });
      d_cycle_out_.topLeftCorner(S, groups) = sign;
      d_cycle_out_.topRightCorner(S, groups) = -sign;
      Matrix<T> dx = trunk_.backward(style_head_.backward(d_cycle_out_), true);
      dx.array() *= x_cycle_.array() * (T(1) - x_cycle_.array());  // through the sigmoid mean
      // Through the decoder to its inputs, keeping the decoder's own parameter gradients unchanged.
      const Index dec = decoder_.parameter_count(), total = params_.size();
      const Vector<T> saved = params_.gradients.segment(total - dec, dec);
      const Matrix<T>& dzc = decoder_.backward(dx, true);
      params_.gradients.segment(total - dec, dec) = saved;
      d_z_content_.setZero(C, n);
      for (Index g = 0; g < groups; ++g) {
        const Index partner = (g + 1) % groups;
        d_z_content_.col(offsets[static_cast<std::size_t>(g)]) += dzc.col(g).bottomRows(C);
        d_z_content_.col(offsets[static_cast<std::size_t>(partner)]) += dzc.col(groups + g).bottomRows(C);
      }
      return loss;
    }
  }

  static constexpr bool stacked_heads =
      detail::is_single_dense<StyleHead, T>::value && detail::is_single_dense<ContentHead, T>::value;
  const Matrix<T>& heads_forward(const Matrix<T>& h) {
    if constexpr (stacked_heads)
      return heads_.forward(detail::single_dense<T>(style_head_), detail::single_dense<T>(content_head_), h);
    else
      return h;  // not reached
  }

  Trunk trunk_;
  StyleHead style_head_;
  ContentHead content_head_;
  Decoder decoder_;
  Likelihood likelihood_;
  MLVAEOptions<T> options_;
  Index style_size_ = 0, content_size_ = 0;
  ParameterStore<T> params_;
  Precision precision_ = Precision::Float32;

  // Workspaces, resized only when the batch shape changes.
  ContentPath<T> content_;
  Matrix<T> eps_style_, z_, eps_cycle_, z_cycle_, x_cycle_, d_cycle_out_, d_z_content_;
  RowVector<T> log_likelihood_, kl_style_;
  StackedDense<T> heads_;  // used when stacked_heads
  Matrix<T> d_heads_out_;
  Matrix<T> d_out_, d_style_out_, d_content_out_, d_features_;
};

}  // namespace mlvae
