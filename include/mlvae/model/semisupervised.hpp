/// @file
/// mlvae/model/semisupervised.hpp — the semi-supervised VAE with a discrete label y and a continuous
/// style z: the disentangled model of Siddharth et al. (NIPS 2017) and M2 of Kingma et al. (2014) on
/// the same parts. Generative model p(y) p(z) p(x|y,z), p(y) uniform over K classes, p(z) = N(0, I);
/// recognition q(y|x) = Cat(softmax(a(x))) and q(z|x,y) = N(μ(h(x), y), diag σ²(h(x), y)).
/// Objective per minibatch (docs/semisupervised.md, "The minibatch loss"):
///   loss = −(1/n) [ Σ_labelled (ELBO(x,y) + α log q(y|x)) + Σ_unlabelled U(x) ],
///   U(x) = Σ_y q(y|x) ELBO(x,y) + H(q(y|x))  (exact enumeration of the K classes), or the
///   Concrete-relaxed one-sample estimate ELBO(x, ỹ) + H(q(y|x)) (Siddharth only).
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/random.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/dist/categorical.hpp"
#include "mlvae/dist/gaussian.hpp"
#include "mlvae/dist/likelihood.hpp"
#include "mlvae/nn/layer.hpp"

#include <cmath>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace mlvae {

/// Which paper's objective the model trains with (they share every part; docs/semisupervised.md, "Two objectives").
enum class SemiSupervisedObjective {
  Siddharth,  ///< Siddharth et al. 2017: α per labelled example (paper default 0.1); relaxed y optional
  M2          ///< Kingma et al. 2014: y always summed out; α set from Kingma's 0.1·N (see m2_alpha)
};

/// How y is handled for an unlabelled observation.
enum class UnlabelledEstimator {
  Enumerate,  ///< exact: Σ_y q(y|x) ELBO(x, y) + H(q(y|x)) over all K classes
  Relaxed     ///< one Concrete / Gumbel-softmax sample ỹ at `temperature`: ELBO(x, ỹ) + H(q(y|x))
};

/// The objective's settings.
template <typename T>
struct SemiSupervisedOptions {
  /// Siddharth or M2 (recorded in checkpoints).
  SemiSupervisedObjective objective = SemiSupervisedObjective::Siddharth;
  /// Weight of the classifier term log q(y|x) of each labelled example in the minibatch sum.
  T alpha = T(0.1);
  /// Exact enumeration (default) or the relaxed one-sample estimator for unlabelled observations.
  UnlabelledEstimator unlabelled = UnlabelledEstimator::Enumerate;
  /// Temperature τ of the relaxed estimator (the authors' MNIST example uses 0.66).
  T temperature = T(0.66);

  /// Throws ArgumentError when a setting is out of range or M2 is asked for the relaxed estimator.
  void validate() const {
    require<ArgumentError>(alpha >= T(0) && std::isfinite(static_cast<double>(alpha)),
                           "SemiSupervisedOptions: alpha must be >= 0 and finite, found ", alpha);
    require<ArgumentError>(temperature > T(0) && std::isfinite(static_cast<double>(temperature)),
                           "SemiSupervisedOptions: the temperature must be positive and finite, found ", temperature);
    require<ArgumentError>(!(objective == SemiSupervisedObjective::M2 && unlabelled == UnlabelledEstimator::Relaxed),
                           "SemiSupervisedOptions: M2 sums y out exactly; the relaxed estimator is offered for the "
                           "Siddharth objective only");
  }
};

/// M2's classifier weight per labelled example of a minibatch of `batch_size` with `labelled_per_batch`
/// labelled: Kingma et al.'s J^α = J + α·E_{labelled}[−log q(y|x)] with α = `kingma_alpha`·N, divided by N
/// to per-example units, gives `kingma_alpha` · batch_size / labelled_per_batch (docs/semisupervised.md, "Two objectives").
inline double m2_alpha(Index batch_size, Index labelled_per_batch, double kingma_alpha = 0.1) {
  require<ArgumentError>(batch_size > 0 && labelled_per_batch > 0 && labelled_per_batch <= batch_size,
                         "m2_alpha: expected 0 < labelled_per_batch <= batch_size, found ", labelled_per_batch,
                         " of ", batch_size);
  return kingma_alpha * static_cast<double>(batch_size) / static_cast<double>(labelled_per_batch);
}

/// One evaluation of the semi-supervised objective on a minibatch. Averages over the whole batch
/// (`loss`, `reconstruction`, `kl_z`), over its labelled members (`labelled_*`, `classifier_log_q`,
/// `labelled_accuracy`) or over its unlabelled members (`unlabelled_bound`, `entropy`).
struct SemiSupervisedTerms {
  double loss = 0;              ///< what the optimiser minimises: −(Σ_l L(x,y) + Σ_u U(x)) / n
  double labelled_elbo = 0;     ///< mean ELBO(x, y) of the labelled examples (includes log p(y) = −log K)
  double classifier_log_q = 0;  ///< mean log q(y|x) of the labelled examples (the α term, unweighted)
  double unlabelled_bound = 0;  ///< mean U(x) of the unlabelled examples (a bound on log p(x))
  double entropy = 0;           ///< mean H(q(y|x)) of the unlabelled examples
  double reconstruction = 0;    ///< mean over all examples of E_q[log p(x | y, z)] (y weighted by q(y|x) when enumerated)
  double kl_z = 0;              ///< mean over all examples of KL(q(z|x,y) ‖ p(z)) (same weighting)
  double labelled_accuracy = 0; ///< fraction of the labelled examples whose argmax q(y|x) is the label
  Index labelled = 0;           ///< labelled examples covered
  Index unlabelled = 0;         ///< unlabelled examples covered

  /// Examples covered.
  Index examples() const { return labelled + unlabelled; }

  /// Accumulates `other`, each average weighted by the count it was taken over.
  void accumulate(const SemiSupervisedTerms& o) {
    const auto mix = [](double a, Index na, double b, Index nb) {
      const double n = static_cast<double>(na + nb);
      return n > 0 ? (a * static_cast<double>(na) + b * static_cast<double>(nb)) / n : 0.0;
    };
    const Index n0 = examples(), n1 = o.examples();
    loss = mix(loss, n0, o.loss, n1);
    reconstruction = mix(reconstruction, n0, o.reconstruction, n1);
    kl_z = mix(kl_z, n0, o.kl_z, n1);
    labelled_elbo = mix(labelled_elbo, labelled, o.labelled_elbo, o.labelled);
    classifier_log_q = mix(classifier_log_q, labelled, o.classifier_log_q, o.labelled);
    labelled_accuracy = mix(labelled_accuracy, labelled, o.labelled_accuracy, o.labelled);
    unlabelled_bound = mix(unlabelled_bound, unlabelled, o.unlabelled_bound, o.unlabelled);
    entropy = mix(entropy, unlabelled, o.entropy, o.unlabelled);
    labelled += o.labelled;
    unlabelled += o.unlabelled;
  }
};

/// Marks an unlabelled observation in the label vector handed to the model.
inline constexpr int unlabelled_marker = -1;

/// The semi-supervised VAE over layer stacks: `Trunk` maps x to features h (F rows), `ClassifierHead`
/// maps h to K logits of q(y|x), `StyleHead` maps [h; y] (F + K rows) to [mean; log-variance] of z
/// (2·Z rows), `Decoder` maps [y; z] (K + Z rows) to the `Likelihood`'s parameters. y enters as a
/// one-hot code (or a relaxed sample). One ParameterStore: trunk, classifier head, style head, decoder.
template <typename T, typename Trunk, typename ClassifierHead, typename StyleHead, typename Decoder,
          typename Likelihood = BernoulliLikelihood<T>>
class SemiSupervisedVAE {
public:
  /// The floating-point type of parameters and activations.
  using Scalar = T;

  /// Takes ownership of the layers and binds them (uninitialised: call initialize()). Throws ShapeError when
  /// the sizes do not fit together (see the class comment) and ArgumentError on invalid `options`.
  SemiSupervisedVAE(Trunk trunk, ClassifierHead classifier, StyleHead style_head, Decoder decoder,
                    Likelihood likelihood = {}, SemiSupervisedOptions<T> options = {})
      : trunk_(std::move(trunk)), classifier_(std::move(classifier)), style_head_(std::move(style_head)),
        decoder_(std::move(decoder)), likelihood_(std::move(likelihood)), options_(options) {
    options_.validate();
    features_ = trunk_.output_size();
    require<ShapeError>(classifier_.input_size() == features_, "SemiSupervisedVAE: the trunk outputs ", features_,
                        " features but the classifier head expects ", classifier_.input_size());
    classes_ = classifier_.output_size();
    require<ShapeError>(classes_ >= 2, "SemiSupervisedVAE: the classifier needs at least 2 classes, found ", classes_);
    require<ShapeError>(style_head_.input_size() == features_ + classes_, "SemiSupervisedVAE: the style head expects ",
                        style_head_.input_size(), " inputs but features + classes = ", features_, " + ", classes_);
    require<ShapeError>(style_head_.output_size() % 2 == 0 && style_head_.output_size() > 0,
                        "SemiSupervisedVAE: the style head must output [mean; log-variance] (an even row count), found ",
                        style_head_.output_size());
    latent_ = style_head_.output_size() / 2;
    require<ShapeError>(decoder_.input_size() == classes_ + latent_, "SemiSupervisedVAE: the decoder expects ",
                        decoder_.input_size(), " inputs but classes + latent = ", classes_, " + ", latent_);
    require<ShapeError>(decoder_.output_size() == Likelihood::output_rows(trunk_.input_size()),
                        "SemiSupervisedVAE: the decoder outputs ", decoder_.output_size(), " rows but a ",
                        likelihood_.describe(), " likelihood over ", trunk_.input_size(), " features needs ",
                        Likelihood::output_rows(trunk_.input_size()));
    bind_layers(params_, trunk_, classifier_, style_head_, decoder_);
  }

  SemiSupervisedVAE(const SemiSupervisedVAE&) = delete;
  SemiSupervisedVAE& operator=(const SemiSupervisedVAE&) = delete;
  /// Moves the model (copying is disabled: layers hold views into the parameter store).
  SemiSupervisedVAE(SemiSupervisedVAE&&) = default;
  /// Move-assigns the model.
  SemiSupervisedVAE& operator=(SemiSupervisedVAE&&) = default;

  /// Features per observation (rows of x).
  Index data_size() const { return trunk_.input_size(); }
  /// Number of classes K of y.
  Index classes() const { return classes_; }
  /// Dimension of the style latent z.
  Index latent_size() const { return latent_; }
  /// Every parameter and its gradient: trunk, classifier head, style head, decoder.
  ParameterStore<T>& parameters() { return params_; }
  /// Every parameter and its gradient (read-only).
  const ParameterStore<T>& parameters() const { return params_; }
  /// The objective's settings.
  const SemiSupervisedOptions<T>& options() const { return options_; }
  /// Replaces the objective's settings. @throws ArgumentError when they are invalid.
  void set_options(const SemiSupervisedOptions<T>& o) {
    o.validate();
    options_ = o;
  }
  /// The observation model.
  const Likelihood& likelihood() const { return likelihood_; }

  /// "SemiSupervisedVAE/siddharth" or "SemiSupervisedVAE/m2", as recorded in checkpoints.
  std::string model_kind() const {
    return options_.objective == SemiSupervisedObjective::M2 ? "SemiSupervisedVAE/m2" : "SemiSupervisedVAE/siddharth";
  }

  /// Arithmetic of every matrix product of the model, forward and backward: Float32 (the
  /// default) or BFloat16 (operands rounded to bfloat16, float32 sums; nn/gemm_bf16.hpp).
  /// Parameters, gradients and the optimiser stay float32. Raises ArgumentError for BFloat16
  /// when T is not float or the CPU lacks AMX-BF16 (the model is then unchanged).
  void set_precision(Precision p) {
    require_precision<T>(p, "SemiSupervisedVAE");
    detail::set_layer_precision(trunk_, p);
    detail::set_layer_precision(classifier_, p);
    detail::set_layer_precision(style_head_, p);
    detail::set_layer_precision(decoder_, p);
    precision_ = p;
  }
  /// The arithmetic of the model's products (Float32 unless set_precision chose BFloat16).
  Precision precision() const { return precision_; }

  /// Architecture and objective string, e.g. for checkpoints and logs.
  std::string describe() const {
    return detail::concat(
        "SemiSupervisedVAE{objective=", options_.objective == SemiSupervisedObjective::M2 ? "m2" : "siddharth",
        ", alpha=", options_.alpha, ", unlabelled=",
        options_.unlabelled == UnlabelledEstimator::Relaxed ? detail::concat("relaxed(t=", options_.temperature, ")")
                                                            : std::string("enumerate"),
        ", trunk=", trunk_.describe(), ", classifier=", classifier_.describe(), ", style_head=",
        style_head_.describe(), ", decoder=", decoder_.describe(), ", likelihood=", likelihood_.describe(), "}");
  }

  /// Draws initial parameters from `rng` (layer by layer, in store order).
  void initialize(Rng& rng) {
    trunk_.initialize(rng);
    classifier_.initialize(rng);
    style_head_.initialize(rng);
    decoder_.initialize(rng);
  }

  /// Forward and backward on a minibatch: `x` is data_size x n, `labels[j]` the class of column j or
  /// `unlabelled_marker` (−1). Overwrites parameters().gradients with d loss / d parameters. Noise from
  /// `rng`: Z normals per decoded column (columns in batch order; an enumerated example has K), then K
  /// Gumbel variates per relaxed unlabelled example.
  SemiSupervisedTerms forward_backward(const Matrix<T>& x, const std::vector<int>& labels, Rng& rng) {
    return run(x, labels, rng, true);
  }
  /// Forward only: the terms on one minibatch (gradients untouched).
  SemiSupervisedTerms evaluate(const Matrix<T>& x, const std::vector<int>& labels, Rng& rng) {
    return run(x, labels, rng, false);
  }

  /// Logits of q(y|x) (K x n).
  void classify_logits(const Matrix<T>& x, Matrix<T>& logits) {
    check_input(x);
    logits = classifier_.forward(trunk_.forward(x));
  }

  /// argmax_y q(y|x) for each column of x, computed `chunk` columns at a time.
  std::vector<int> predict(const Matrix<T>& x, Index chunk = 1000) {
    require<ArgumentError>(chunk > 0, "SemiSupervisedVAE::predict: chunk must be positive, found ", chunk);
    std::vector<int> out(static_cast<std::size_t>(x.cols()));
    Matrix<T> part, logits;
    for (Index begin = 0; begin < x.cols(); begin += chunk) {
      const Index m = std::min(chunk, x.cols() - begin);
      part = x.middleCols(begin, m);
      classify_logits(part, logits);
      for (Index j = 0; j < m; ++j) {
        Index best = 0;
        logits.col(j).maxCoeff(&best);
        out[static_cast<std::size_t>(begin + j)] = static_cast<int>(best);
      }
    }
    return out;
  }

  /// Mean and log-variance of q(z | x, y) for each column of x with the given classes (Z x n each).
  void encode_style(const Matrix<T>& x, const std::vector<int>& classes, Matrix<T>& mean, Matrix<T>& logvar) {
    check_input(x);
    check_labels(classes, x.cols(), false);
    const Matrix<T>& h = trunk_.forward(x);
    ensure_shape(style_in_, features_ + classes_, x.cols());
    style_in_.topRows(features_) = h;
    style_in_.bottomRows(classes_).setZero();
    for (Index j = 0; j < x.cols(); ++j) style_in_(features_ + classes[static_cast<std::size_t>(j)], j) = T(1);
    const Matrix<T>& u = style_head_.forward(style_in_);
    mean = u.topRows(latent_);
    logvar = u.bottomRows(latent_);
  }

  /// The likelihood's mean (e.g. pixel probabilities) of p(x | y, z) for classes (n) and styles z (Z x n).
  void decode_mean(const std::vector<int>& classes, const Matrix<T>& z, Matrix<T>& mean) {
    require<ShapeError>(z.rows() == latent_, "SemiSupervisedVAE::decode_mean: expected ", latent_,
                        " latent rows, found ", z.rows());
    check_labels(classes, z.cols(), false);
    ensure_shape(dec_in_, classes_ + latent_, z.cols());
    dec_in_.topRows(classes_).setZero();
    for (Index j = 0; j < z.cols(); ++j) dec_in_(classes[static_cast<std::size_t>(j)], j) = T(1);
    dec_in_.bottomRows(latent_) = z;
    likelihood_.mean(decoder_.forward(dec_in_), mean);
  }

private:
  void check_input(const Matrix<T>& x) const {
    require<ShapeError>(x.rows() == data_size(), "SemiSupervisedVAE: expected observations with ", data_size(),
                        " features (rows), found ", x.rows());
    require<ShapeError>(x.cols() > 0, "SemiSupervisedVAE: the batch is empty");
    require<ArgumentError>(std::isfinite(static_cast<double>(x.sum())) || x.allFinite(),
                           "SemiSupervisedVAE: the input batch contains NaN or infinite values");
  }
  void check_labels(const std::vector<int>& labels, Index n, bool allow_unlabelled) const {
    require<ShapeError>(static_cast<Index>(labels.size()) == n, "SemiSupervisedVAE: expected one label per column (",
                        n, "), found ", labels.size());
    for (std::size_t j = 0; j < labels.size(); ++j)
      require<ArgumentError>((labels[j] >= 0 && labels[j] < classes_) ||
                                 (allow_unlabelled && labels[j] == unlabelled_marker),
                             "SemiSupervisedVAE: label ", labels[j], " at column ", j, " is outside [0, ", classes_,
                             ")", allow_unlabelled ? " and is not the unlabelled marker -1" : "");
  }

  SemiSupervisedTerms run(const Matrix<T>& x, const std::vector<int>& labels, Rng& rng, bool backward) {
    check_input(x);
    check_labels(labels, x.cols(), true);
    const Index n = x.cols(), K = classes_, Z = latent_, F = features_;
    const bool relaxed = options_.unlabelled == UnlabelledEstimator::Relaxed;
    const T alpha = options_.alpha, tau = options_.temperature;
    const T log_prior = -std::log(T(K));

    // Encoder: features, then q(y|x).
    const Matrix<T>& h = trunk_.forward(x);
    const Matrix<T>& logits = classifier_.forward(h);
    log_softmax<T>(logits, log_probs_);
    categorical_entropy<T>(log_probs_, entropy_);

    // Decoded columns: one per labelled example (its class), K per enumerated unlabelled example
    // (class k), one per relaxed unlabelled example (class −1: the relaxed sample).
    col_src_.clear();
    col_class_.clear();
    for (Index j = 0; j < n; ++j) {
      const int y = labels[static_cast<std::size_t>(j)];
      if (y >= 0 || relaxed) {
        col_src_.push_back(j);
        col_class_.push_back(y);
      } else {
        for (Index k = 0; k < K; ++k) {
          col_src_.push_back(j);
          col_class_.push_back(static_cast<int>(k));
        }
      }
    }
    const Index M = static_cast<Index>(col_src_.size());
    ensure_shape(eps_, Z, M);
    rng.fill_normal(eps_);
    ensure_shape(gumbel_, K, n);
    gumbel_.setZero();
    ensure_shape(soft_, K, n);
    soft_.setZero();
    if (relaxed) {
      for (Index j = 0; j < n; ++j) {
        if (labels[static_cast<std::size_t>(j)] >= 0) continue;
        Matrix<T> g(K, 1);
        fill_gumbel(rng, g);
        gumbel_.col(j) = g;
      }
      Matrix<T> sample;
      gumbel_softmax(logits, gumbel_, tau, sample);
      soft_ = sample;
    }

    // q(z | x, y) from [h; y], z = μ + σ ε, decoder on [y; z].
    ensure_shape(style_in_, F + K, M);
    ensure_shape(dec_in_, K + Z, M);
    ensure_shape(x_cols_, x.rows(), M);
    for (Index c = 0; c < M; ++c) {
      const Index j = col_src_[static_cast<std::size_t>(c)];
      const int y = col_class_[static_cast<std::size_t>(c)];
      style_in_.col(c).head(F) = h.col(j);
      auto code = style_in_.col(c).tail(K);
      if (y >= 0) {
        code.setZero();
        code(y) = T(1);
      } else {
        code = soft_.col(j);
      }
      x_cols_.col(c) = x.col(j);
    }
    dec_in_.topRows(K) = style_in_.bottomRows(K);
    const Matrix<T>& u = style_head_.forward(style_in_);
    const auto mean = u.topRows(Z);
    const auto logvar = u.bottomRows(Z);
    auto z = dec_in_.bottomRows(Z);
    reparameterize(mean, logvar, eps_, z);
    const Matrix<T>& out = decoder_.forward(dec_in_);
    likelihood_.log_likelihood(x_cols_, out, log_likelihood_);
    kl_to_standard_normal<T>(mean, logvar, kl_);

    // Per-column ELBO(x, y) = log p(x|y,z) − KL_z + log p(y); per-column weight in the objective.
    ensure_shape(column_weight_, 1, M);
    ensure_shape(bound_, 1, n);
    bound_.setZero();
    SemiSupervisedTerms terms;
    double rec = 0, kl = 0, lab_elbo = 0, lab_logq = 0, unl_bound = 0, unl_entropy = 0, correct = 0;
    for (Index c = 0; c < M; ++c) {
      const Index j = col_src_[static_cast<std::size_t>(c)];
      const int label = labels[static_cast<std::size_t>(j)];
      const int y = col_class_[static_cast<std::size_t>(c)];
      const T elbo = log_likelihood_(c) - kl_(c) + log_prior;
      const T w = (label < 0 && y >= 0) ? std::exp(log_probs_(y, j)) : T(1);
      column_weight_(c) = w;
      bound_(j) += w * elbo;
      rec += static_cast<double>(w * log_likelihood_(c));
      kl += static_cast<double>(w * kl_(c));
    }
    for (Index j = 0; j < n; ++j) {
      const int label = labels[static_cast<std::size_t>(j)];
      if (label >= 0) {
        ++terms.labelled;
        lab_elbo += static_cast<double>(bound_(j));
        lab_logq += static_cast<double>(log_probs_(label, j));
        bound_(j) += alpha * log_probs_(label, j);
        Index best = 0;
        log_probs_.col(j).maxCoeff(&best);
        correct += best == label ? 1.0 : 0.0;
      } else {
        ++terms.unlabelled;
        bound_(j) += entropy_(j);
        unl_bound += static_cast<double>(bound_(j));
        unl_entropy += static_cast<double>(entropy_(j));
      }
    }
    const double N = static_cast<double>(n);
    terms.loss = -static_cast<double>(bound_.sum()) / N;
    terms.reconstruction = rec / N;
    terms.kl_z = kl / N;
    if (terms.labelled > 0) {
      const double L = static_cast<double>(terms.labelled);
      terms.labelled_elbo = lab_elbo / L;
      terms.classifier_log_q = lab_logq / L;
      terms.labelled_accuracy = correct / L;
    }
    if (terms.unlabelled > 0) {
      const double U = static_cast<double>(terms.unlabelled);
      terms.unlabelled_bound = unl_bound / U;
      terms.entropy = unl_entropy / U;
    }
    if (!backward) return terms;

    // Backward (docs/semisupervised.md, "Backward pass"). s = 1/n; every column carries weight w_c.
    params_.zero_gradients();
    const T s = T(1) / T(n);
    likelihood_.gradient(x_cols_, out, T(1), d_out_);
    d_out_.array().rowwise() *= (-s * column_weight_.array());
    const Matrix<T>& d_dec_in = decoder_.backward(d_out_, true);
    ensure_shape(d_u_, 2 * Z, M);
    d_u_.setZero();
    auto d_mean = d_u_.topRows(Z);
    auto d_logvar = d_u_.bottomRows(Z);
    reparameterize_backward(logvar, eps_, d_dec_in.bottomRows(Z), d_mean, d_logvar);
    for (Index c = 0; c < M; ++c) {  // each column's KL, weighted by s w_c
      const T w = s * column_weight_(c);
      auto dm = d_mean.col(c);
      auto dl = d_logvar.col(c);
      kl_to_standard_normal_backward(mean.col(c), logvar.col(c), w, dm, dl);
    }
    const Matrix<T>& d_style_in = style_head_.backward(d_u_, true);

    ensure_shape(d_h_, F, n);
    d_h_.setZero();
    ensure_shape(d_logits_, K, n);
    d_logits_.setZero();
    ensure_shape(d_soft_, K, n);
    d_soft_.setZero();
    for (Index c = 0; c < M; ++c) {
      const Index j = col_src_[static_cast<std::size_t>(c)];
      d_h_.col(j) += d_style_in.col(c).head(F);
      if (col_class_[static_cast<std::size_t>(c)] < 0)
        d_soft_.col(j) += d_style_in.col(c).tail(K) + d_dec_in.col(c).head(K);
    }
    // Enumerated unlabelled: d U / d a_k = π_k (ELBO_k − log π_k − U).
    for (Index c = 0; c < M; ++c) {
      const Index j = col_src_[static_cast<std::size_t>(c)];
      const int y = col_class_[static_cast<std::size_t>(c)];
      if (labels[static_cast<std::size_t>(j)] >= 0 || y < 0) continue;
      const T elbo = log_likelihood_(c) - kl_(c) + log_prior;
      d_logits_(y, j) -= s * column_weight_(c) * (elbo - log_probs_(y, j) - bound_(j));
    }
    for (Index j = 0; j < n; ++j) {
      const int label = labels[static_cast<std::size_t>(j)];
      auto d_col = d_logits_.col(j);
      if (label >= 0) {
        // −(s α) log π_y through the log-softmax: g = −s α e_y gives −s α (e_y − π).
        ensure_shape(g_, K, 1);
        g_.setZero();
        g_(label) = -s * alpha;
        log_softmax_backward<T>(log_probs_.col(j), g_, d_col);
      } else if (relaxed) {
        categorical_entropy_backward<T>(log_probs_.col(j), entropy_.col(j), -s, d_col);
        gumbel_softmax_backward<T>(soft_.col(j), d_soft_.col(j), tau, d_col);
      }
    }
    d_h_ += classifier_.backward(d_logits_, true);
    trunk_.backward(d_h_, false);
    return terms;
  }

  Trunk trunk_;
  ClassifierHead classifier_;
  StyleHead style_head_;
  Decoder decoder_;
  Likelihood likelihood_;
  SemiSupervisedOptions<T> options_;
  Index features_ = 0, classes_ = 0, latent_ = 0;
  ParameterStore<T> params_;
  Precision precision_ = Precision::Float32;
  std::vector<Index> col_src_;
  std::vector<int> col_class_;
  Matrix<T> g_, log_probs_, eps_, gumbel_, soft_, style_in_, dec_in_, x_cols_, d_out_, d_u_, d_h_, d_logits_, d_soft_;
  RowVector<T> entropy_, log_likelihood_, kl_, column_weight_, bound_;
};

}  // namespace mlvae
