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

// The reverse-cycle loss's kernels (MLVAEOptions::cycle_weight): functors of plain values and
// pointers evaluated by a context's generate_at, written once for the CPU and every device. Groups
// pair with the next one of the batch (g with (g + 1) mod G); the codes' columns [0, G) decode
// (ε_g, c_g) and [G, 2G) decode (ε_g, c_{g+1}).

/// The 2G codes [ε; c] of the cycle: style rows from `eps` (S x G), content rows from the content
/// sample of each group's first member in `z` (rows [S, S + C) of the (S + C) x N codes).
template <typename T>
struct CycleCodes {
  const T* eps;            ///< S x G standard normals
  ColumnsView<T> content;  ///< the content rows of the step's codes (C x N)
  const Index* offsets;    ///< the groups (G + 1)
  Index style, groups;     ///< S, G
  /// Element (r, c).
  EIGEN_DEVICE_FUNC T operator()(Index r, Index c) const {
    const Index g = c < groups ? c : c - groups;
    if (r < style) return eps[r + g * style];
    const Index source = c < groups ? g : (g + 1) % groups;
    return content(r - style, offsets[source]);
  }
};

/// The cycle's term of group g: weight · Σ_r |s(r, g) − s(r, G + g)| over the style means s
/// (rows [0, S) of the style head's output on the 2G decoded images).
template <typename T>
struct CycleDistance {
  ColumnsView<T> style_mean;  ///< S x 2G
  Index style, groups;        ///< S, G
  T weight;                   ///< λ / G
  /// Element (0, g).
  EIGEN_DEVICE_FUNC T operator()(Index, Index g) const {
    T sum(0);
    for (Index r = 0; r < style; ++r) sum += Eigen::numext::abs(style_mean(r, g) - style_mean(r, groups + g));
    return weight * sum;
  }
};

/// d(cycle term)/d(style head output) on the 2G decoded images (2S x 2G): ±weight · sign(Δ) on the
/// mean rows, 0 on the log-variance rows.
template <typename T>
struct CycleSign {
  ColumnsView<T> style_mean;  ///< S x 2G
  Index style, groups;        ///< S, G
  T weight;                   ///< λ / G
  /// Element (r, c).
  EIGEN_DEVICE_FUNC T operator()(Index r, Index c) const {
    if (r >= style) return T(0);
    const Index g = c < groups ? c : c - groups;
    const T d = style_mean(r, g) - style_mean(r, groups + g);
    const T s = d > T(0) ? weight : (d < T(0) ? -weight : T(0));
    return c < groups ? s : -s;
  }
};

/// dLoss/d(content sample) of every column (C x N) from the gradient at the cycle's codes `dz`
/// ((S + C) x 2G): a group's content sample entered codes g and G + (g − 1 mod G), and its gradient
/// goes to the group's first member (the content path sums a group's members).
template <typename T>
struct CycleContentGradient {
  ColumnsView<T> dz;      ///< (S + C) x 2G
  const Index* offsets;   ///< the groups (G + 1)
  const Index* group_of;  ///< the group of every column (N)
  Index style, groups;    ///< S, G
  /// Element (r, j).
  EIGEN_DEVICE_FUNC T operator()(Index r, Index j) const {
    const Index g = group_of[j];
    if (offsets[g] != j) return T(0);
    return dz(style + r, g) + dz(style + r, groups + (g + groups - 1) % groups);
  }
};

/// Copies n values from `from` (a column kernel: element (r, 0) = from[r]).
template <typename T>
struct CopyKernel {
  const T* from;  ///< the source
  /// Element (r, c).
  EIGEN_DEVICE_FUNC T operator()(Index r, Index) const { return from[r]; }
};

/// ML-VAE over layer stacks: `Trunk` maps an observation to features, `StyleHead` and `ContentHead`
/// map features to [mean; log-variance] (2·style and 2·content rows), `Decoder` maps
/// [style; content] to the `Likelihood`'s parameters. All four follow the layer contract
/// (nn/layer.hpp). The model owns one parameter store: trunk, style head, content head, decoder.
///
/// Written once for every device: `Ctx` is HostContext (the CPU, the default) or a device context
/// (device/context.hpp), whose layers are the same nn/ classes on that context. The step's
/// arithmetic (compute_step) is the same code on both; the host form adds its drivers (noise from an
/// Rng, shards, the cycle loss, bf16 products), device/mlvae.hpp's DeviceMLVAE the device's (batch
/// upload or gather, counter-based noise, one readback).
template <typename T, typename Trunk, typename StyleHead, typename ContentHead, typename Decoder,
          typename Likelihood = BernoulliLikelihood<T>, typename Ctx = HostContext>
class MLVAE {
  static constexpr bool on_host = std::is_same_v<Ctx, HostContext>;

public:
  /// The floating-point type of parameters and activations.
  using Scalar = T;
  /// The context's array: Matrix<T> on the host.
  using Array = typename Ctx::template Array<T>;
  /// Parameters and gradients: ParameterStore<T> on the host.
  using Parameters = typename Ctx::template Parameters<T>;

  /// Takes ownership of the layers and binds them to the model's ParameterStore (uninitialised: call initialize()).
  /// Throws ShapeError when the trunk, heads, decoder and likelihood sizes do not fit together (odd head outputs,
  /// an empty content latent, decoder input ≠ style + content, decoder output ≠ Likelihood::output_rows(data_size())).
  MLVAE(Trunk trunk, StyleHead style_head, ContentHead content_head, Decoder decoder, Likelihood likelihood = {},
        MLVAEOptions<T> options = {})
      : MLVAE(HostContext::instance(), std::move(trunk), std::move(style_head), std::move(content_head),
              std::move(decoder), std::move(likelihood), options) {}

  /// The same on context `ctx` (which must outlive the model), from layers on that context.
  MLVAE(Ctx& ctx, Trunk trunk, StyleHead style_head, ContentHead content_head, Decoder decoder,
        Likelihood likelihood = {}, MLVAEOptions<T> options = {})
      : ctx_(&ctx),
        trunk_(std::move(trunk)),
        style_head_(std::move(style_head)),
        content_head_(std::move(content_head)),
        decoder_(std::move(decoder)),
        likelihood_(std::move(likelihood)),
        options_(options),
        params_(detail::make_array<Parameters>(ctx)),
        content_(ctx),
        z_(detail::make_array<Array>(ctx)),
        d_out_(detail::make_array<Array>(ctx)),
        d_style_out_(detail::make_array<Array>(ctx)),
        d_content_out_(detail::make_array<Array>(ctx)),
        d_features_(detail::make_array<Array>(ctx)),
        d_z_content_(detail::make_array<Array>(ctx)),
        z_cycle_(detail::make_array<Array>(ctx)),
        x_cycle_(detail::make_array<Array>(ctx)),
        d_cycle_out_(detail::make_array<Array>(ctx)),
        d_x_cycle_(detail::make_array<Array>(ctx)),
        saved_gradients_(detail::make_array<Array>(ctx)) {
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
  Parameters& parameters() { return params_; }
  /// Every parameter and its gradient (read-only).
  const Parameters& parameters() const { return params_; }
  /// The observation model.
  const Likelihood& likelihood() const { return likelihood_; }
  /// The KL weights, modifiable (e.g. for KL annealing).
  MLVAEOptions<T>& options() { return options_; }
  /// The KL weights.
  const MLVAEOptions<T>& options() const { return options_; }
  /// The context the model runs on.
  Ctx& context() const { return *ctx_; }
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

  // ---- the step, for every device: what a device's driver (device/mlvae.hpp) calls ----------------
  /// Rows of the standard normals of noise stream `stream` the step reads (0: style, 1: content,
  /// 2: the reverse cycle's styles, none unless cycle_weight > 0).
  Index noise_rows(int stream) const {
    return stream == 0 ? style_size_ : stream == 1 ? content_size_ : (options_.cycle_weight > T(0) ? style_size_ : 0);
  }
  /// Their columns for a batch of `offsets`: one per observation, or one content column per group;
  /// one cycle column per group when the cycle runs (cycle_weight > 0 and more than one group).
  Index noise_columns(int stream, const std::vector<Index>& offsets) const {
    const Index groups = static_cast<Index>(offsets.size()) - 1;
    if (stream == 2) return options_.cycle_weight > T(0) && groups > 1 ? groups : 0;
    const bool per_group = stream == 1 && BasicContentPath<T, Ctx>::per_group_noise(options_.content);
    return per_group ? groups : offsets.back();
  }
  /// What the step divides by: the batch's group count.
  Index normaliser(const std::vector<Index>& offsets) const { return static_cast<Index>(offsets.size()) - 1; }
  /// The loss terms from the sums of compute_step's per-column terms over the batch of `offsets`,
  /// a slice of a larger one with a `shard`.
  LossTerms loss_terms(const double sums[3], const std::vector<Index>& offsets, const BatchShard& shard = {}) const {
    const Index n = offsets.back(), groups = static_cast<Index>(offsets.size()) - 1;
    return LossTerms::from_sums(sums[0], sums[1], sums[2], static_cast<double>(options_.style_kl_weight),
                                static_cast<double>(options_.content_kl_weight), groups, n,
                                shard.whole() ? groups : shard.global_groups, shard.whole() ? n : shard.global_columns);
  }

  /// The step's arithmetic on the context's memory, for every device: encoder, reparameterised style
  /// samples from `eps_style` (S x N), the content path (model/content_path.hpp) from `eps_content`
  /// (C x G, or C x N with Ada or a sample per observation), decoder and likelihood; with `backward`,
  /// OVERWRITES the gradients with those of loss = −(1/G)[Σ_i log p − β_s Σ_i KL_s − β_c Σ KL_c],
  /// G = `normaliser_groups` (the whole batch's group count). Writes the per-column terms into the
  /// context's memory at `terms` (3N: log p of each column, then its style KL, then its content KL)
  /// and queues everything: no host synchronisation (the drivers read `terms`). `x` and the noise
  /// are the caller's and must stay valid until the step has run; the batch layout is checked here.
  /// With the reverse cycle (noise_columns(2, offsets) > 0, `eps_cycle` its S x G normals) the step
  /// adds its term and gradient (cycle_step) and writes each group's term after the 3N (G more).
  void compute_step(const Array& x, const std::vector<Index>& offsets, const T* eps_style, const T* eps_content,
                    const T* eps_cycle, Index normaliser_groups, bool backward, T* terms) {
    check_group_offsets(offsets, x.cols(), "MLVAE");
    const Index n = x.cols(), S = style_size_, C = content_size_;

    // Encoder: trunk, then both heads on the same features (one stacked product on the host when both
    // are one Dense layer: rows [0, 2S) style, [2S, 2S+2C) content; nn/dense.hpp, StackedDense).
    const Array& h = trunk_.forward(x);
    const Array* so = nullptr;
    const Array* co = nullptr;
    if constexpr (stacked_heads) {
      so = co = &heads_.forward(detail::single_dense<T>(style_head_), detail::single_dense<T>(content_head_), h);
    } else {
      so = &style_head_.forward(h);
      co = &content_head_.forward(h);
    }
    const Index c0 = stacked_heads ? 2 * S : 0;
    s_mean_ = {so->data(), so->rows()};
    s_logvar_ = {so->data() + S, so->rows()};
    c_mean_ = {co->data() + c0, co->rows()};
    c_logvar_ = {co->data() + c0 + C, co->rows()};
    eps_style_ = {eps_style, S};

    // Reparameterised samples: one style per observation; the content path writes the content rows of
    // z and each column's content KL.
    ensure_shape(z_, S + C, n);
    generate_at(*ctx_, z_.data(), S, n, S + C, GaussianSample<T>{s_mean_, s_logvar_, eps_style_});
    content_.forward(c_mean_, c_logvar_, C, offsets, options_.content, eps_content, z_.data() + S, S + C, terms + 2 * n);

    // Decoder, the log-likelihood (with its gradient in the same pass) and the style KL, per column.
    const Array& out = decoder_.forward(z_);
    const T w = T(1) / T(normaliser_groups);
    likelihood_columns(*ctx_, likelihood_, x, out, -w, terms, backward ? &d_out_ : nullptr);
    generate_at(*ctx_, terms + n, 1, n, 1, GaussianKl<T>{s_mean_, s_logvar_, S});
    const bool cycle = noise_columns(2, offsets) > 0;
    if (!backward) {
      if (cycle) cycle_step(x, offsets, eps_cycle, false, terms + 3 * n);
      return;
    }

    // Backward: through the decoder, the style samples and KLs, the content path, the heads, the trunk.
    params_.zero_gradients();
    const Array& dz = decoder_.backward(d_out_);
    const ColumnsView<T> dz_style{dz.data(), dz.rows()}, dz_content{dz.data() + S, dz.rows()};
    T* d_style = nullptr;  // [dmean; dlogvar] of the style, then of the content (one matrix when stacked)
    T* d_content = nullptr;
    Index d_ld = 0;
    if constexpr (stacked_heads) {
      ensure_shape(d_heads_out_, 2 * S + 2 * C, n);
      d_style = d_heads_out_.data();
      d_content = d_style + c0;
      d_ld = 2 * S + 2 * C;
    } else {
      ensure_shape(d_style_out_, 2 * S, n);
      ensure_shape(d_content_out_, 2 * C, n);
      d_style = d_style_out_.data();
      d_content = d_content_out_.data();
    }
    GaussianSampleGradient<T> style{s_mean_, s_logvar_, eps_style_, dz_style, T(w * options_.style_kl_weight), false};
    generate_at(*ctx_, d_style, S, n, stacked_heads ? d_ld : 2 * S, style);
    style.log_variance = true;
    generate_at(*ctx_, d_style + S, S, n, stacked_heads ? d_ld : 2 * S, style);
    content_.backward(c_mean_, c_logvar_, dz_content, T(w * options_.content_kl_weight), d_content, d_content + C,
                      stacked_heads ? d_ld : 2 * C);

    if constexpr (stacked_heads) {
      trunk_.backward(heads_.backward(detail::single_dense<T>(style_head_), detail::single_dense<T>(content_head_),
                                      d_heads_out_),
                      false);
    } else {
      const Array& ds = style_head_.backward(d_style_out_);
      const Array& dc = content_head_.backward(d_content_out_);
      ensure_shape(d_features_, ds.rows(), n);
      elementwise(*ctx_, d_features_, [](const auto& a, const auto& b) { return a + b; }, ds, dc);
      trunk_.backward(d_features_, false);
    }
    if (cycle) cycle_step(x, offsets, eps_cycle, true, terms + 3 * n);
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

  // `rows` normals for each of the `units` columns this slice owns, out of the whole batch's
  // `global_units` starting at `first`: the rest of the stream is skipped, so slices draw disjoint parts.
  static void draw_slice(Rng& rng, Matrix<T>& eps, Index rows, Index units, Index first, Index global_units) {
    ensure_shape(eps, rows, units);
    skip_normals(rng, std::int64_t{first} * rows);
    rng.fill_normal(eps);
    skip_normals(rng, std::int64_t{global_units - first - units} * rows);
  }

  // The host's driver of compute_step: noise from `rng` (style, then content, then the cycle's), the
  // terms summed in double, and the reverse-cycle loss.
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
    const bool cycle = options_.cycle_weight > T(0) && groups > 1;
    // The reverse cycle pairs each group with the next one of the batch: a slice cannot reproduce it.
    require<ArgumentError>(!cycle || shard.whole(), "MLVAE: the cycle-consistency loss (cycle_weight ",
                           options_.cycle_weight, ") pairs groups across the whole batch and cannot be split into ",
                           "shards (data-parallel or sharded training); train it in one process without shards");

    draw_slice(rng, eps_style_host_, S, n, shard.first_column, global_n);
    const bool per_group = BasicContentPath<T, Ctx>::per_group_noise(options_.content);
    draw_slice(rng, eps_content_host_, C, noise_columns(1, offsets), per_group ? shard.first_group : shard.first_column,
               per_group ? global_groups : global_n);
    ensure_shape(eps_cycle_, noise_rows(2), noise_columns(2, offsets));
    rng.fill_normal(eps_cycle_);
    ensure_shape(terms_host_, 3 * n + eps_cycle_.cols(), 1);
    compute_step(x, offsets, eps_style_host_.data(), eps_content_host_.data(), eps_cycle_.data(), global_groups,
                 backward, terms_host_.data());
    double sums[3] = {0, 0, 0}, cycle_sum = 0;
    for (int k = 0; k < 3; ++k)
      for (Index j = 0; j < n; ++j) sums[k] += static_cast<double>(terms_host_(k * n + j));
    for (Index g = 0; g < eps_cycle_.cols(); ++g) cycle_sum += static_cast<double>(terms_host_(3 * n + g));
    LossTerms terms = loss_terms(sums, offsets, shard);
    terms.loss += cycle_sum;
    return terms;
  }

  // The reverse-cycle term (see MLVAEOptions::cycle_weight) of the step just computed, for every
  // device: the 2G codes from the content samples in z_ and the styles `eps_cycle`, decoded to their
  // means, re-encoded; each group's term at `terms` (G). With `backward`, ADDS its gradient to the
  // encoder's parameters (the decoder's own gradients are kept: the cycle trains the encoder) and,
  // through the decoder to the content samples, once more through the content path (the encoder
  // re-run on x for its caches).
  void cycle_step(const Array& x, const std::vector<Index>& offsets, const T* eps_cycle, bool backward, T* terms) {
    if constexpr (!std::is_same_v<Likelihood, BernoulliLikelihood<T>>) {
      (void)x, (void)offsets, (void)eps_cycle, (void)backward, (void)terms;
      raise_error<ArgumentError>("MLVAE: the cycle-consistency loss (cycle_weight > 0) needs the Bernoulli likelihood, found " +
                                 likelihood_.describe());
    } else {
      const Index S = style_size_, C = content_size_, n = x.cols(), G = static_cast<Index>(offsets.size()) - 1;
      const Index* offs = content_.offsets_on_context();
      ensure_shape(z_cycle_, S + C, 2 * G);
      generate_at(*ctx_, z_cycle_.data(), S + C, 2 * G, S + C,
                  CycleCodes<T>{eps_cycle, {z_.data() + S, S + C}, offs, S, G});
      const Array& logits = decoder_.forward(z_cycle_);
      ensure_shape(x_cycle_, logits.rows(), 2 * G);
      elementwise(*ctx_, x_cycle_, [](const auto& l) { return ew::sigmoid(l); }, logits);  // the Bernoulli means
      const Array& so = style_head_.forward(trunk_.forward(x_cycle_));
      const T weight = options_.cycle_weight / T(G);
      generate_at(*ctx_, terms, 1, G, 1, CycleDistance<T>{{so.data(), so.rows()}, S, G, weight});
      if (!backward) return;
      ensure_shape(d_cycle_out_, 2 * S, 2 * G);
      generate_at(*ctx_, d_cycle_out_.data(), 2 * S, 2 * G, 2 * S, CycleSign<T>{{so.data(), so.rows()}, S, G, weight});
      const Array& dx = trunk_.backward(style_head_.backward(d_cycle_out_), true);
      ensure_shape(d_x_cycle_, dx.rows(), 2 * G);
      elementwise(  // through the sigmoid mean
          *ctx_, d_x_cycle_, [](const auto& d, const auto& m) { return d * m * (T(1) - m); }, dx, x_cycle_);
      // Through the decoder to its inputs, keeping the decoder's own parameter gradients unchanged.
      const Index dec = decoder_.parameter_count();
      T* decoder_gradients = params_.gradients.data() + params_.size() - dec;
      ensure_shape(saved_gradients_, dec, 1);
      generate_at(*ctx_, saved_gradients_.data(), dec, 1, dec, CopyKernel<T>{decoder_gradients});
      const Array& dz = decoder_.backward(d_x_cycle_, true);
      generate_at(*ctx_, decoder_gradients, dec, 1, dec, CopyKernel<T>{saved_gradients_.data()});
      ensure_shape(d_z_content_, C, n);
      generate_at(*ctx_, d_z_content_.data(), C, n, C,
                  CycleContentGradient<T>{{dz.data(), dz.rows()}, offs, content_.group_of_on_context(), S, G});
      const Array& co = content_head_.forward(trunk_.forward(x));
      ensure_shape(d_content_out_, 2 * C, n);
      content_.backward({co.data(), co.rows()}, {co.data() + C, co.rows()}, {d_z_content_.data(), C}, T(0),
                        d_content_out_.data(), d_content_out_.data() + C, 2 * C);
      trunk_.backward(content_head_.backward(d_content_out_), false);
    }
  }

  // Both heads as one product: on the host, when each is one Dense layer.
  static constexpr bool stacked_heads =
      on_host && detail::is_single_dense<StyleHead, T>::value && detail::is_single_dense<ContentHead, T>::value;

  Ctx* ctx_;
  Trunk trunk_;
  StyleHead style_head_;
  ContentHead content_head_;
  Decoder decoder_;
  Likelihood likelihood_;
  MLVAEOptions<T> options_;
  Index style_size_ = 0, content_size_ = 0;
  Parameters params_;
  Precision precision_ = Precision::Float32;

  // Workspaces, resized only when the batch shape changes; the views of the last compute_step.
  BasicContentPath<T, Ctx> content_;
  Array z_, d_out_, d_style_out_, d_content_out_, d_features_, d_z_content_;
  Array z_cycle_, x_cycle_, d_cycle_out_, d_x_cycle_, saved_gradients_;  // the reverse cycle's
  ColumnsView<T> s_mean_, s_logvar_, c_mean_, c_logvar_, eps_style_;
  // The host's: its noise and per-column terms, and the stacked heads.
  Matrix<T> eps_style_host_, eps_content_host_, eps_cycle_, terms_host_;
  StackedDense<T> heads_;
  Matrix<T> d_heads_out_;
};

}  // namespace mlvae
