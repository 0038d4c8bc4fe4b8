/// @file
/// mlvae/model/vae.hpp — the plain VAE baseline (Kingma & Welling 2014) on the same parts as MLVAE:
/// an encoder stack to [mean; log-variance] of one latent z, a decoder, a likelihood policy.
/// Objective per image: E_q[log p(x | z)] − KL(q(z|x) ‖ N(0, I)), averaged over the minibatch.
/// In LossTerms every image is its own group; the KL is reported as `style_kl`.
/// β-VAE: kl_weight = β. β-TCVAE and HFVAE: set_kl_decomposition() replaces the weighted KL in the
/// loss by the weighted minibatch decomposition of dist/kl_decomposition.hpp (docs/disentanglement.md).
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/random.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/dist/gaussian.hpp"
#include "mlvae/dist/kl_decomposition.hpp"
#include "mlvae/dist/likelihood.hpp"
#include "mlvae/model/batch_shard.hpp"
#include "mlvae/model/content_path.hpp"
#include "mlvae/model/loss_terms.hpp"
#include "mlvae/nn/layer.hpp"

#include <optional>
#include <type_traits>
#include <string>
#include <utility>
#include <vector>

namespace mlvae {

/// VAE over layer stacks: `Encoder` maps an observation to [mean; log-variance] (2·latent rows),
/// `Decoder` maps the latent to the `Likelihood`'s parameters. Written once for every device as
/// MLVAE is (model/mlvae.hpp): `Ctx` is HostContext (default) or a device context; compute_step is
/// the step on either, the host adds its driver (Rng noise, shards, the KL decomposition, bf16).
template <typename T, typename Encoder, typename Decoder, typename Likelihood = BernoulliLikelihood<T>,
          typename Ctx = HostContext>
class VAE {
  static constexpr bool on_host = std::is_same_v<Ctx, HostContext>;

public:
  /// The floating-point type of parameters and activations.
  using Scalar = T;
  /// The context's array: Matrix<T> on the host.
  using Array = typename Ctx::template Array<T>;
  /// Parameters and gradients: ParameterStore<T> on the host.
  using Parameters = typename Ctx::template Parameters<T>;

  /// Takes ownership of the layers and binds them to the model's ParameterStore (uninitialised: call initialize()).
  /// Throws ShapeError when the encoder output is odd, the decoder input ≠ latent size, or the decoder output
  /// ≠ Likelihood::output_rows(data_size()). `kl_weight` scales the KL term.
  VAE(Encoder encoder, Decoder decoder, Likelihood likelihood = {}, T kl_weight = T{1})
      : VAE(HostContext::instance(), std::move(encoder), std::move(decoder), std::move(likelihood), kl_weight) {}

  /// The same on context `ctx` (which must outlive the model), from layers on that context.
  VAE(Ctx& ctx, Encoder encoder, Decoder decoder, Likelihood likelihood = {}, T kl_weight = T{1})
      : ctx_(&ctx), encoder_(std::move(encoder)), decoder_(std::move(decoder)), likelihood_(std::move(likelihood)),
        kl_weight_(kl_weight), params_(detail::make_array<Parameters>(ctx)), z_(detail::make_array<Array>(ctx)),
        d_out_(detail::make_array<Array>(ctx)), d_enc_(detail::make_array<Array>(ctx)) {
    require<ShapeError>(encoder_.output_size() % 2 == 0, "VAE: the encoder must output [mean; log-variance] (an even ",
                        "row count), found ", encoder_.output_size());
    latent_size_ = encoder_.output_size() / 2;
    require<ShapeError>(decoder_.input_size() == latent_size_, "VAE: the decoder expects ", decoder_.input_size(),
                        " inputs but the latent has ", latent_size_);
    require<ShapeError>(decoder_.output_size() == Likelihood::output_rows(encoder_.input_size()),
                        "VAE: the decoder outputs ", decoder_.output_size(), " rows but a ", likelihood_.describe(),
                        " likelihood over ", encoder_.input_size(), " features needs ",
                        Likelihood::output_rows(encoder_.input_size()));
    bind_layers(params_, encoder_, decoder_);
  }

  VAE(const VAE&) = delete;
  VAE& operator=(const VAE&) = delete;
  /// Moves the model (copying is disabled: layers hold views into the parameter store).
  VAE(VAE&&) = default;
  /// Move-assigns the model.
  VAE& operator=(VAE&&) = default;

  /// Features per observation (rows of x).
  Index data_size() const { return encoder_.input_size(); }
  /// Dimension of the latent z.
  Index latent_size() const { return latent_size_; }
  /// Every parameter and its gradient, in store order encoder, decoder.
  Parameters& parameters() { return params_; }
  /// Every parameter and its gradient (read-only).
  const Parameters& parameters() const { return params_; }
  /// The observation model.
  const Likelihood& likelihood() const { return likelihood_; }
  /// The context the model runs on.
  Ctx& context() const { return *ctx_; }
  /// The encoder, x -> [mean; log-variance] of z.
  Encoder& encoder() { return encoder_; }
  /// The decoder, z -> the likelihood's parameters.
  Decoder& decoder() { return decoder_; }

  /// The weight β on the closed-form KL (β-VAE; 1 is the ELBO).
  T kl_weight() const { return kl_weight_; }
  /// Sets the weight β on the closed-form KL.
  void set_kl_weight(T weight) { kl_weight_ = weight; }

  /// Replaces kl_weight·KL(q(z|x) ‖ p(z)) in the loss by the weighted decomposition
  /// α·MI + β·TC_between + γ·TC_within + δ·KL_dim estimated on each batch (β-TCVAE: one-dimensional
  /// blocks; HFVAE: blocks of several dimensions). The reported ELBO keeps the closed-form KL.
  /// @throws ArgumentError when the blocks do not cover latent_size().
  void set_kl_decomposition(const KLDecompositionOptions& options) { decomposition_.emplace(latent_size_, options); }
  /// Back to the closed-form KL weighted by kl_weight.
  void clear_kl_decomposition() { decomposition_.reset(); }
  /// Whether the loss uses the decomposition.
  bool uses_kl_decomposition() const { return decomposition_.has_value(); }
  /// The decomposition's terms on the last batch (zero when it is not used).
  const KLDecompositionTerms& last_kl_decomposition() const { return last_decomposition_; }

  /// Arithmetic of every matrix product of the model, forward and backward: Float32 (the
  /// default) or BFloat16 (operands rounded to bfloat16, float32 sums; nn/gemm_bf16.hpp).
  /// Parameters, gradients and the optimiser stay float32. Raises ArgumentError for BFloat16
  /// when T is not float or the CPU lacks AMX-BF16 (the model is then unchanged).
  void set_precision(Precision p) {
    require_precision<T>(p, "VAE");
    detail::set_layer_precision(encoder_, p);
    detail::set_layer_precision(decoder_, p);
    precision_ = p;
  }
  /// The arithmetic of the model's products (Float32 unless set_precision chose BFloat16).
  Precision precision() const { return precision_; }

  /// Architecture string, e.g. for checkpoints and logs.
  std::string describe() const {
    return detail::concat("VAE{encoder=", encoder_.describe(), ", decoder=", decoder_.describe(),
                          ", likelihood=", likelihood_.describe(), "}");
  }

  /// Draws initial parameters from `rng` (encoder, then decoder).
  void initialize(Rng& rng) {
    encoder_.initialize(rng);
    decoder_.initialize(rng);
  }

  /// Forward and backward on a batch x (data_size x N); overwrites the gradients. With a `shard`,
  /// `x` is the columns [first_column, first_column + N) of a larger batch: the noise is their part
  /// of the whole batch's stream and everything is divided by the whole batch's image count
  /// (model/batch_shard.hpp).
  LossTerms forward_backward(const Matrix<T>& x, Rng& rng, const BatchShard& shard = {}) {
    return run(x, rng, true, shard);
  }
  /// Forward only; `shard` as in forward_backward().
  LossTerms evaluate(const Matrix<T>& x, Rng& rng, const BatchShard& shard = {}) { return run(x, rng, false, shard); }

  /// Posterior mean and log-variance of each observation (latent x N).
  void encode(const Matrix<T>& x, Matrix<T>& mean, Matrix<T>& logvar) {
    check_input(x);
    const Matrix<T>& e = encoder_.forward(x);
    mean = e.topRows(latent_size_);
    logvar = e.bottomRows(latent_size_);
  }

  /// The likelihood's mean for latent codes z (latent x N).
  void decode_mean(const Matrix<T>& z, Matrix<T>& mean) {
    require<ShapeError>(z.rows() == latent_size_, "VAE::decode_mean: expected ", latent_size_, " latent rows, found ",
                        z.rows());
    likelihood_.mean(decoder_.forward(z), mean);
  }

  // ---- the step, for every device: what a device's driver (device/mlvae.hpp) calls ----------------
  /// Rows of the standard normals of noise stream `stream` the step reads (0: the latent; 1, 2: none).
  Index noise_rows(int stream) const { return stream == 0 ? latent_size_ : 0; }
  /// Their columns for a batch of `offsets` (each image is its own unit).
  Index noise_columns(int stream, const std::vector<Index>& offsets) const { return stream == 0 ? offsets.back() : 0; }
  /// What the step divides by: the batch's image count.
  Index normaliser(const std::vector<Index>& offsets) const { return offsets.back(); }
  /// The loss terms from the sums of compute_step's per-column terms (log p, KL) over the batch of
  /// `offsets`, a slice of a larger one with a `shard`.
  LossTerms loss_terms(const double sums[3], const std::vector<Index>& offsets, const BatchShard& shard = {}) const {
    const Index n = offsets.back(), global_n = shard.whole() ? n : shard.global_columns;
    return LossTerms::from_sums(sums[0], sums[1], 0, static_cast<double>(kl_weight_), 0, n, n, global_n, global_n);
  }

  /// The step's arithmetic on the context's memory, for every device: encoder, reparameterised
  /// samples from `eps` (latent x N), decoder and likelihood; with `backward`, OVERWRITES the
  /// gradients with those of loss = −(1/N)[Σ log p − β Σ KL], N = `normaliser` (or, with the KL
  /// decomposition on the host, its weighted terms instead of β KL). Writes the per-column terms at
  /// `terms` (3N: log p, KL, 0) and queues everything; `offsets` are only counted (one unit per image).
  void compute_step(const Array& x, const std::vector<Index>& offsets, const T* eps, const T* /*unused*/,
                    const T* /*unused*/, Index normaliser, bool backward, T* terms) {
    const Index n = x.cols(), L = latent_size_;
    require<ShapeError>(offsets.back() == n, "VAE: expected a batch of ", offsets.back(), " images, found ", n);
    const Array& e = encoder_.forward(x);
    const ColumnsView<T> mean{e.data(), 2 * L}, logvar{e.data() + L, 2 * L}, noise{eps, L};
    ensure_shape(z_, L, n);
    generate_at(*ctx_, z_.data(), L, n, L, GaussianSample<T>{mean, logvar, noise});
    const Array& out = decoder_.forward(z_);
    const T w = T(1) / T(normaliser);
    likelihood_columns(*ctx_, likelihood_, x, out, -w, terms, backward ? &d_out_ : nullptr);
    generate_at(*ctx_, terms + n, 1, n, 1, GaussianKl<T>{mean, logvar, L});
    generate_at(*ctx_, terms + 2 * n, 1, n, 1, ConstantKernel<T>{T(0)});
    bool decomposed = false;
    if constexpr (!on_host) {
      require<ArgumentError>(!decomposition_, "VAE: the KL decomposition (beta-TCVAE / HFVAE) is not supported on ",
                             ctx_->describe(), ": train this model on the CPU");
    } else {
      decomposed = decomposition_.has_value();
      if (decomposed) {  // the batch mean of the weighted terms, and (backward) its partials wrt z, mean, logvar
        ensure_shape(d_enc_, 2 * L, n);
        d_enc_.setZero();
        ensure_shape(dz_total_, L, n);
        dz_total_.setZero();
        auto d_mean = d_enc_.topRows(L);
        auto d_logvar = d_enc_.bottomRows(L);
        last_decomposition_ = decomposition_->evaluate(e.topRows(L), e.bottomRows(L), z_, backward, dz_total_,
                                                       d_mean, d_logvar);
      }
    }
    if (!backward) return;

    params_.zero_gradients();
    const Array& dz = decoder_.backward(d_out_);
    if constexpr (on_host) {
      if (decomposed) {  // the sample's backward adds to the decomposition's partials
        dz_total_ += dz;
        auto d_mean = d_enc_.topRows(L);
        auto d_logvar = d_enc_.bottomRows(L);
        reparameterize_backward(e.bottomRows(L), Eigen::Map<const Matrix<T>>(eps, L, n), dz_total_, d_mean, d_logvar);
        encoder_.backward(d_enc_, false);
        return;
      }
    }
    ensure_shape(d_enc_, 2 * L, n);
    GaussianSampleGradient<T> grad{mean, logvar, noise, {dz.data(), L}, T(w * kl_weight_), false};
    generate_at(*ctx_, d_enc_.data(), L, n, 2 * L, grad);
    grad.log_variance = true;
    generate_at(*ctx_, d_enc_.data() + L, L, n, 2 * L, grad);
    encoder_.backward(d_enc_, false);
  }

private:
  void check_input(const Matrix<T>& x) const {
    require<ShapeError>(x.rows() == data_size(), "VAE: expected observations with ", data_size(),
                        " features (rows), found ", x.rows());
    require<ShapeError>(x.cols() > 0, "VAE: the batch is empty");
    require<ArgumentError>(x.allFinite(), "VAE: the input batch contains NaN or infinite values");
  }

  // The host's driver of compute_step: noise from `rng` (the shard's part of the stream), the totals.
  LossTerms run(const Matrix<T>& x, Rng& rng, bool backward, const BatchShard& shard) {
    check_input(x);
    const Index n = x.cols(), L = latent_size_;
    // Every image is its own group: only the column position matters.
    const Index global_n = shard.whole() ? n : shard.global_columns;
    shard.check(0, n, "VAE");
    ensure_shape(eps_, L, n);
    skip_normals(rng, std::int64_t{shard.first_column} * L);
    rng.fill_normal(eps_);
    skip_normals(rng, std::int64_t{global_n - shard.first_column - n} * L);
    ensure_shape(terms_, 3 * n, 1);
    offsets_.assign({0, n});
    compute_step(x, offsets_, eps_.data(), nullptr, nullptr, global_n, backward, terms_.data());
    double sums[3] = {0, 0, 0};
    for (int k = 0; k < 2; ++k)
      for (Index j = 0; j < n; ++j) sums[k] += static_cast<double>(terms_(k * n + j));
    LossTerms terms = loss_terms(sums, offsets_, shard);
    if (decomposition_) terms.loss = -sums[0] / static_cast<double>(global_n) + last_decomposition_.weighted;
    return terms;
  }

  Ctx* ctx_;
  Encoder encoder_;
  Decoder decoder_;
  Likelihood likelihood_;
  T kl_weight_;
  Index latent_size_ = 0;
  Parameters params_;
  Precision precision_ = Precision::Float32;
  std::optional<KLDecomposition<T>> decomposition_;
  KLDecompositionTerms last_decomposition_;
  Array z_, d_out_, d_enc_;
  // The host's: its noise, per-column terms, batch layout and the decomposition's partials.
  Matrix<T> eps_, terms_, dz_total_;
  std::vector<Index> offsets_;
};

}  // namespace mlvae
