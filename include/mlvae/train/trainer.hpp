/// @file
/// mlvae/train/trainer.hpp — the training loop: minibatches of whole groups from a GroupedSampler,
/// the model's forward/backward, an Adam step, per-step loss terms, and evaluation over a dataset.
/// Works for MLVAE (grouped objective) and VAE (the grouping only forms the batches).
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/random.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/data/grouped_sampler.hpp"
#include "mlvae/model/batch_shard.hpp"
#include "mlvae/model/loss_terms.hpp"
#include "mlvae/optim/adam.hpp"
#include "mlvae/train/training_loop.hpp"

#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace mlvae {

namespace detail {
template <typename Model, typename = void>
struct is_grouped_model : std::false_type {};
template <typename Model>
struct is_grouped_model<Model, std::void_t<decltype(std::declval<Model&>().forward_backward(
                                   std::declval<const Matrix<typename Model::Scalar>&>(),
                                   std::declval<const std::vector<Index>&>(), std::declval<Rng&>()))>>
    : std::true_type {};

/// Detects a model whose likelihood can check data (Likelihood::check_data(x, what)).
template <typename Model, typename = void>
struct has_likelihood_check : std::false_type {};
template <typename Model>
struct has_likelihood_check<Model, std::void_t<decltype(std::declval<const Model&>().likelihood().check_data(
                                       std::declval<const Matrix<typename Model::Scalar>&>(), std::string()))>>
    : std::true_type {};

template <typename Model>
LossTerms model_step(Model& model, const Matrix<typename Model::Scalar>& x, const std::vector<Index>& offsets,
                     Rng& rng, bool backward, const BatchShard& shard = {}) {
  if constexpr (is_grouped_model<Model>::value)
    return backward ? model.forward_backward(x, offsets, rng, shard) : model.evaluate(x, offsets, rng, shard);
  else
    return backward ? model.forward_backward(x, rng, shard) : model.evaluate(x, rng, shard);
}
}  // namespace detail

/// How a training step turns its minibatch into a gradient: the hook through which data-parallel
/// training (mlvae/mpi/data_parallel.hpp) and gradient accumulation (train/sharding.hpp) plug into
/// Trainer without changing its loop. Without a strategy, Trainer runs the model on the whole batch.
template <typename Model>
class GradientStrategy {
public:
  virtual ~GradientStrategy() = default;
  /// Leaves d loss / d parameters of the WHOLE `batch` (columns of `data`) in
  /// model.parameters().gradients and returns the whole batch's loss terms; draws the batch's
  /// reparameterisation noise from `noise`, leaving it where a plain step would. Every process of a
  /// data-parallel job must return the same gradient and terms, so that all take the same step.
  virtual LossTerms compute(Model& model, const Matrix<typename Model::Scalar>& data, const GroupedBatch& batch,
                            Rng& noise) = 0;
};

/// Everything that determines a training run besides the model and the data.
struct TrainerOptions {
  /// Optimiser hyper-parameters.
  AdamOptions adam;
  /// Minibatch layout: groups per batch, group sizes, sampler seed.
  GroupedSamplerOptions sampler;
  std::uint64_t noise_seed = 7;  ///< seed of the reparameterisation noise
  /// What a step does on a non-finite loss or gradient.
  DivergencePolicy on_divergence = DivergencePolicy::Throw;
};

/// Progress of one training step, handed to the step callback.
struct StepReport {
  Index epoch = 0;        ///< 1-based
  Index step_in_epoch = 0;  ///< 1-based
  /// Batches in this epoch.
  Index steps_per_epoch = 0;
  /// Optimiser updates taken so far (Adam::step_count(); skipped steps not counted).
  long long global_step = 0;
  /// The batch's loss and ELBO terms.
  LossTerms terms;
  /// Global L2 norm of the gradient before clipping.
  double gradient_norm = 0;
  bool skipped = false;  ///< the update was skipped (non-finite loss or gradient, DivergencePolicy::SkipStep)
};

/// Trains `Model` (MLVAE or VAE) with Adam on `data` (features x N) grouped by `keys`.
/// The trainer keeps references to the model and the data: both must outlive it.
template <typename Model>
class Trainer : public EpochLoop<Trainer<Model>, StepReport, LossTerms> {
public:
  /// The model's floating-point type.
  using T = typename Model::Scalar;

  /// Sets up the sampler over `keys` (one per column of `data`), Adam over the model's parameters and the noise Rng.
  /// Throws ShapeError when data rows ≠ model.data_size() or keys.size() ≠ data columns, ArgumentError on
  /// non-finite data, data the model's likelihood cannot model (Likelihood::check_data, e.g. values outside
  /// [0, 1] under a Bernoulli likelihood) or invalid options.
  Trainer(Model& model, const Matrix<T>& data, std::vector<int> keys, TrainerOptions options = {})
      : model_(model), data_(data), options_(options),
        sampler_((check_data(model, data, keys), std::move(keys)), options.sampler),
        optimizer_(model.parameters().size(), options.adam), noise_(options.noise_seed) {}

  /// One optimisation step on the next batch; returns false (and does nothing) at the end of an
  /// epoch. When the loss or gradient is not finite the parameters and the optimiser are left as
  /// they were before the step, and then, by `options().on_divergence`: Throw throws
  /// DivergenceError; SkipStep consumes the batch, counts it in skipped_steps() and returns true
  /// with `report.skipped` set.
  bool step(StepReport& report) {
    if (!sampler_.next(batch_)) return false;
    if (strategy_) {  // e.g. data-parallel: this process's share, reduced across processes
      finish_step(strategy_->compute(model_, data_, batch_, noise_), report);
      return true;
    }
    gather_columns(data_, batch_.indices, x_);
    step_on_batch(x_, batch_.group_offsets, report);
    return true;
  }

  /// One optimisation step, exactly as step() takes it, on a batch the caller provides (columns `x`,
  /// groups given by `offsets` as in GroupedBatch; a plain VAE ignores them): for data generated on
  /// the fly (data/dsprites.hpp) instead of the trainer's own sampler. Counts as a step of the
  /// current epoch; the same divergence policy applies. The gradient strategy is not used here.
  void step_on_batch(const Matrix<T>& x, const std::vector<Index>& offsets, StepReport& report) {
    finish_step(detail::model_step(model_, x, offsets, noise_, true), report);
  }

  /// Begins a new epoch (reshuffles the sampler, resets step_in_epoch()) without taking a step;
  /// run_epoch() and continue_epoch() come from EpochLoop (train/training_loop.hpp).
  void start_epoch() {
    sampler_.start_epoch();
    step_in_epoch_ = 0;
  }

  /// True while the current epoch has batches left (a mid-epoch state: use continue_epoch()).
  bool epoch_in_progress() const { return sampler_.epoch_in_progress(); }

  /// The model being trained.
  Model& model() { return model_; }
  /// The training data (features x N), as given to the constructor.
  const Matrix<T>& data() const { return data_; }
  /// The minibatch sampler (its state goes into training checkpoints).
  GroupedSampler& sampler() { return sampler_; }
  /// The optimiser (its state goes into training checkpoints).
  Adam<T>& optimizer() { return optimizer_; }
  /// The generator of the reparameterisation noise.
  Rng& noise() { return noise_; }
  /// The options of this run (Adam options and divergence policy as last set).
  const TrainerOptions& options() const { return options_; }
  /// Steps taken in the current epoch (0 at its start).
  Index step_in_epoch() const { return step_in_epoch_; }
  /// Sets the step counter of the current epoch (used when a checkpoint is restored).
  void set_step_in_epoch(Index s) { step_in_epoch_ = s; }
  /// Steps skipped under DivergencePolicy::SkipStep since construction (restored by checkpoints).
  long long skipped_steps() const { return skipped_steps_; }
  /// Sets the skipped-step count (used when a checkpoint is restored).
  void set_skipped_steps(long long n) { skipped_steps_ = n; }
  /// Sets how steps compute the gradient (nullptr: the whole batch in this process, the default).
  void set_gradient_strategy(std::shared_ptr<GradientStrategy<Model>> strategy) { strategy_ = std::move(strategy); }
  /// The gradient strategy (nullptr when the default).
  const std::shared_ptr<GradientStrategy<Model>>& gradient_strategy() const { return strategy_; }
  /// Changes the divergence policy (e.g. for a resumed run).
  void set_divergence_policy(DivergencePolicy p) { options_.on_divergence = p; }
  /// Replaces the Adam options (the optimiser's and those reported by options()), e.g. when a
  /// checkpoint is loaded. @throws ArgumentError when they are invalid.
  void set_adam_options(const AdamOptions& a) {
    a.validate();
    optimizer_.options() = a;
    options_.adam = a;
  }

private:
  /// The rest of a step once the model holds the batch's gradient and `terms` its loss terms:
  /// divergence policy, Adam step, counters and `report`.
  void finish_step(const LossTerms& terms, StepReport& report) {
    double norm = 0;
    const bool updated = std::isfinite(terms.loss) &&
                         optimizer_.try_step(model_.parameters().values, model_.parameters().gradients, norm);
    detail::close_step("Trainer", options_.on_divergence, updated, terms, norm, sampler_, optimizer_, step_in_epoch_,
                       skipped_steps_, report);
  }

  static int check_data(const Model& model, const Matrix<T>& data, const std::vector<int>& keys) {
    require<ShapeError>(data.rows() == model.data_size(), "Trainer: the model expects ", model.data_size(),
                        " features per observation, the data has ", data.rows(), " rows");
    require<ShapeError>(static_cast<Index>(keys.size()) == data.cols(), "Trainer: expected one key per observation (",
                        data.cols(), "), found ", keys.size());
    require<ArgumentError>(data.cols() > 0, "Trainer: the training data hold 0 observations (columns)");
    require<ArgumentError>(data.allFinite(), "Trainer: the training data contain NaN or infinite values");
    // Data the likelihood cannot model (e.g. values outside [0, 1] under a Bernoulli likelihood).
    if constexpr (detail::has_likelihood_check<Model>::value)
      model.likelihood().check_data(data, "training data given to the Trainer");
    return 0;
  }

  Model& model_;
  const Matrix<T>& data_;
  TrainerOptions options_;
  GroupedSampler sampler_;
  Adam<T> optimizer_;
  Rng noise_;
  std::shared_ptr<GradientStrategy<Model>> strategy_;
  GroupedBatch batch_;
  Matrix<T> x_;
  Index step_in_epoch_ = 0;
  long long skipped_steps_ = 0;
};

/// Evaluates the model's objective over a whole dataset, cut into groups of `group_size` members
/// of one key (leftovers form smaller groups) with a fixed seed, `groups_per_batch` groups at a
/// time. Returns the terms averaged over all groups (and images).
template <typename Model>
LossTerms evaluate_dataset(Model& model, const Matrix<typename Model::Scalar>& data, const std::vector<int>& keys,
                           Index group_size = 16, Index groups_per_batch = 16, std::uint64_t seed = 12345) {
  require<ShapeError>(static_cast<Index>(keys.size()) == data.cols(), "evaluate_dataset: expected one key per ",
                      "observation (", data.cols(), "), found ", keys.size());
  GroupedSampler sampler(keys, {groups_per_batch, group_size, group_size, seed});
  Rng noise(seed ^ 0x9e3779b97f4a7c15ULL);
  GroupedBatch batch;
  Matrix<typename Model::Scalar> x;
  LossTerms total;
  sampler.start_epoch();
  while (sampler.next(batch)) {
    gather_columns(data, batch.indices, x);
    total.accumulate(detail::model_step(model, x, batch.group_offsets, noise, false));
  }
  return total;
}

}  // namespace mlvae
