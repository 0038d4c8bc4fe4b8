/// @file
/// mlvae/train/semisupervised_trainer.hpp — the training loop of the semi-supervised VAE: mixed minibatches
/// from a SemiSupervisedSampler, the model's forward/backward, an Adam step over its ParameterStore (the same
/// Adam, divergence policy and step report fields as train/trainer.hpp), and the classification error of q(y|x).
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/random.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/data/grouped_sampler.hpp"
#include "mlvae/data/semisupervised_sampler.hpp"
#include "mlvae/model/semisupervised.hpp"
#include "mlvae/optim/adam.hpp"
#include "mlvae/train/trainer.hpp"
#include "mlvae/train/training_loop.hpp"

#include <cmath>
#include <functional>
#include <utility>
#include <vector>

namespace mlvae {

/// Everything that determines a semi-supervised training run besides the model and the data.
struct SemiSupervisedTrainerOptions {
  /// Optimiser hyper-parameters.
  AdamOptions adam;
  /// Batch composition and permutation seed.
  SemiSupervisedSamplerOptions sampler;
  std::uint64_t noise_seed = 7;  ///< seed of the reparameterisation (and Gumbel) noise
  /// What a step does on a non-finite loss or gradient.
  DivergencePolicy on_divergence = DivergencePolicy::Throw;
};

/// Progress of one semi-supervised training step.
struct SemiSupervisedStepReport {
  Index epoch = 0;            ///< 1-based
  Index step_in_epoch = 0;    ///< 1-based
  Index steps_per_epoch = 0;  ///< batches in this epoch
  long long global_step = 0;  ///< Adam updates so far
  SemiSupervisedTerms terms;  ///< the batch's loss terms
  double gradient_norm = 0;   ///< global L2 norm before clipping
  bool skipped = false;       ///< the update was skipped (DivergencePolicy::SkipStep)
};

/// Fraction of columns of `x` whose argmax q(y|x) differs from `labels`.
template <typename Model>
double classification_error(Model& model, const Matrix<typename Model::Scalar>& x, const std::vector<int>& labels) {
  require<ShapeError>(static_cast<Index>(labels.size()) == x.cols(), "classification_error: expected one label per ",
                      "column (", x.cols(), "), found ", labels.size());
  const std::vector<int> predicted = model.predict(x);
  Index wrong = 0;
  for (std::size_t j = 0; j < labels.size(); ++j) wrong += predicted[j] != labels[j] ? 1 : 0;
  return static_cast<double>(wrong) / static_cast<double>(std::max<Index>(1, x.cols()));
}

/// Trains a SemiSupervisedVAE with Adam on `data` (features x N): `labelled` columns with `labels`, and
/// `unlabelled` columns. Keeps references to the model and the data: both must outlive it.
template <typename Model>
class SemiSupervisedTrainer
    : public EpochLoop<SemiSupervisedTrainer<Model>, SemiSupervisedStepReport, SemiSupervisedTerms> {
public:
  /// The model's floating-point type.
  using T = typename Model::Scalar;

  /// Throws ShapeError when data rows ≠ model.data_size() or an index is outside the data, ArgumentError on
  /// non-finite data, labels outside [0, classes) or invalid options.
  SemiSupervisedTrainer(Model& model, const Matrix<T>& data, std::vector<Index> labelled, std::vector<int> labels,
                        std::vector<Index> unlabelled, SemiSupervisedTrainerOptions options = {})
      : model_(model), data_(data), options_(options),
        sampler_((check(model, data, labelled, labels, unlabelled), std::move(labelled)), std::move(labels),
                 std::move(unlabelled), options.sampler),
        optimizer_(model.parameters().size(), options.adam), noise_(options.noise_seed) {}

  /// One optimisation step on the next batch; false (nothing done) at the end of an epoch. On a non-finite
  /// loss or gradient the parameters and Adam are left unchanged, then Throw throws DivergenceError and
  /// SkipStep counts the step as skipped.
  bool step(SemiSupervisedStepReport& report) {
    if (!sampler_.next(batch_)) return false;
    gather_columns(data_, batch_.indices, x_);
    const SemiSupervisedTerms terms = model_.forward_backward(x_, batch_.labels, noise_);
    double norm = 0;
    const bool updated = std::isfinite(terms.loss) &&
                         optimizer_.try_step(model_.parameters().values, model_.parameters().gradients, norm);
    detail::close_step("SemiSupervisedTrainer", options_.on_divergence, updated, terms, norm, sampler_, optimizer_,
                       step_in_epoch_, skipped_steps_, report);
    return true;
  }

  /// Begins a new epoch without taking a step (run_epoch() and continue_epoch(): EpochLoop).
  void start_epoch() {
    sampler_.start_epoch();
    step_in_epoch_ = 0;
  }
  /// True while the current epoch has batches left.
  bool epoch_in_progress() const { return sampler_.epoch_in_progress(); }

  /// The model being trained.
  Model& model() { return model_; }
  /// The minibatch sampler.
  SemiSupervisedSampler& sampler() { return sampler_; }
  /// The optimiser.
  Adam<T>& optimizer() { return optimizer_; }
  /// The reparameterisation-noise generator.
  Rng& noise() { return noise_; }
  /// The options of this run.
  const SemiSupervisedTrainerOptions& options() const { return options_; }
  /// Steps taken in the current epoch.
  Index step_in_epoch() const { return step_in_epoch_; }
  /// Sets the step counter of the current epoch (checkpoints).
  void set_step_in_epoch(Index s) { step_in_epoch_ = s; }
  /// Steps skipped under DivergencePolicy::SkipStep.
  long long skipped_steps() const { return skipped_steps_; }
  /// Sets the skipped-step count (checkpoints).
  void set_skipped_steps(long long n) { skipped_steps_ = n; }
  /// Replaces the Adam options. @throws ArgumentError when they are invalid.
  void set_adam_options(const AdamOptions& a) {
    a.validate();
    optimizer_.options() = a;
    options_.adam = a;
  }

private:
  static int check(const Model& model, const Matrix<T>& data, const std::vector<Index>& labelled,
                   const std::vector<int>& labels, const std::vector<Index>& unlabelled) {
    require<ShapeError>(data.rows() == model.data_size(), "SemiSupervisedTrainer: the model expects ",
                        model.data_size(), " features per observation, the data have ", data.rows(), " rows");
    for (const auto* pool : {&labelled, &unlabelled})
      for (Index i : *pool)
        require<ShapeError>(i >= 0 && i < data.cols(), "SemiSupervisedTrainer: index ", i, " outside the ",
                            data.cols(), " data columns");
    for (int y : labels)
      require<ArgumentError>(y >= 0 && y < model.classes(), "SemiSupervisedTrainer: label ", y, " outside [0, ",
                             model.classes(), ")");
    require<ArgumentError>(data.allFinite(), "SemiSupervisedTrainer: the training data contain NaN or infinite values");
    return 0;
  }

  Model& model_;
  const Matrix<T>& data_;
  SemiSupervisedTrainerOptions options_;
  SemiSupervisedSampler sampler_;
  Adam<T> optimizer_;
  Rng noise_;
  SemiSupervisedBatch batch_;
  Matrix<T> x_;
  Index step_in_epoch_ = 0;
  long long skipped_steps_ = 0;
};

}  // namespace mlvae
