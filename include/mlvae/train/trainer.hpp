/// @file
/// mlvae/train/trainer.hpp — the one training loop of every model family: minibatches from a sampler
/// (GroupedSampler: whole groups, for MLVAE and VAE; SemiSupervisedSampler: labelled and unlabelled
/// examples, for SemiSupervisedVAE and M2), the model's forward/backward, an Adam step, per-step loss
/// terms, and evaluation over a dataset.
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/random.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/data/grouped_sampler.hpp"
#include "mlvae/data/semisupervised_sampler.hpp"
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
/// A step on a grouped batch (its group offsets).
template <typename Model>
LossTerms model_step(Model& model, const Matrix<typename Model::Scalar>& x, const GroupedBatch& batch, Rng& rng,
                     bool backward) {
  return model_step(model, x, batch.group_offsets, rng, backward);
}
/// A step on a semi-supervised batch (its labels, −1 where unlabelled).
template <typename Model>
auto model_step(Model& model, const Matrix<typename Model::Scalar>& x, const SemiSupervisedBatch& batch, Rng& rng,
                bool backward) {
  return backward ? model.forward_backward(x, batch.labels, rng) : model.evaluate(x, batch.labels, rng);
}
/// The loss terms a model returns for a sampler's batch (LossTerms, SemiSupervisedTerms).
template <typename Model, typename Sampler>
using terms_of = decltype(model_step(std::declval<Model&>(), std::declval<const Matrix<typename Model::Scalar>&>(),
                                     std::declval<const typename Sampler::Batch&>(), std::declval<Rng&>(), true));
}  // namespace detail

/// How a training step turns its minibatch into a gradient: the hook through which data-parallel
/// training (mlvae/mpi/data_parallel.hpp) and gradient accumulation (train/sharding.hpp) plug into
/// Trainer without changing its loop. Without a strategy, Trainer runs the model on the whole batch.
template <typename Model, typename Batch = GroupedBatch, typename Terms = LossTerms>
class GradientStrategy {
public:
  virtual ~GradientStrategy() = default;
  /// Leaves d loss / d parameters of the WHOLE `batch` (columns of `data`) in
  /// model.parameters().gradients and returns the whole batch's loss terms; draws the batch's
  /// reparameterisation noise from `noise`, leaving it where a plain step would. Every process of a
  /// data-parallel job must return the same gradient and terms, so that all take the same step.
  virtual Terms compute(Model& model, const Matrix<typename Model::Scalar>& data, const Batch& batch, Rng& noise) = 0;
};

/// Where a Trainer's steps run when not on its host model: a device (device::DeviceEngine in
/// device/trainer.hpp). The engine takes the whole step — gradient and optimiser update — on the
/// batch the Trainer's sampler drew, with the Trainer's noise, and holds the parameters and the
/// optimiser state until sync_to_host(); the Trainer keeps the sampler, the noise, the counters, the
/// options and the divergence policy, so checkpoints stay device-independent.
template <typename Model, typename Batch = GroupedBatch, typename Terms = LossTerms>
class StepEngine {
public:
  /// The model's floating-point type.
  using T = typename Model::Scalar;
  virtual ~StepEngine() = default;
  /// One step on `batch` (columns of `data`), drawing its noise from `noise`: sets `terms` and the
  /// gradient's norm before clipping, and returns whether the update was taken (false when the loss
  /// or the gradient is not finite: then nothing changed).
  virtual bool take_step(const Matrix<T>& data, const Batch& batch, Rng& noise, Terms& terms,
                         double& gradient_norm) = 0;
  /// Optimiser updates taken so far.
  virtual long long step_count() const = 0;
  /// The message of a non-finite gradient at the next step.
  virtual std::string divergence_message(double norm) const = 0;
  /// Copies the parameters and the optimiser state into the host model and optimiser.
  virtual void sync_to_host(Model& model, Adam<T>& optimizer) = 0;
  /// Takes the host model's parameters and optimiser state (e.g. after a checkpoint was loaded).
  virtual void sync_from_host(const Model& model, const Adam<T>& optimizer) = 0;
  /// Where the steps run, e.g. "cuda:0 (NVIDIA H200)".
  virtual std::string describe() const = 0;
};

/// Everything that determines a training run besides the model and the data; `SamplerOptions` are
/// the sampler's (GroupedSamplerOptions, SemiSupervisedSamplerOptions).
template <typename SamplerOptions>
struct BasicTrainerOptions {
  /// Optimiser hyper-parameters.
  AdamOptions adam;
  /// Minibatch layout and sampler seed.
  SamplerOptions sampler;
  std::uint64_t noise_seed = 7;  ///< seed of the reparameterisation (and Gumbel) noise
  /// What a step does on a non-finite loss or gradient.
  DivergencePolicy on_divergence = DivergencePolicy::Throw;
};
/// Options of a run on grouped data (MLVAE, VAE).
using TrainerOptions = BasicTrainerOptions<GroupedSamplerOptions>;
/// Options of a semi-supervised run (SemiSupervisedVAE, M2).
using SemiSupervisedTrainerOptions = BasicTrainerOptions<SemiSupervisedSamplerOptions>;

/// Progress of one training step, handed to the step callback; `Terms` are the model's loss terms.
template <typename Terms>
struct BasicStepReport {
  Index epoch = 0;        ///< 1-based
  Index step_in_epoch = 0;  ///< 1-based
  /// Batches in this epoch.
  Index steps_per_epoch = 0;
  /// Optimiser updates taken so far (Adam::step_count(); skipped steps not counted).
  long long global_step = 0;
  /// The batch's loss terms.
  Terms terms;
  /// Global L2 norm of the gradient before clipping.
  double gradient_norm = 0;
  bool skipped = false;  ///< the update was skipped (non-finite loss or gradient, DivergencePolicy::SkipStep)
};
/// The step report of MLVAE and VAE runs.
using StepReport = BasicStepReport<LossTerms>;

/// Trains `Model` with Adam on `data` (features x N), in minibatches drawn by `Sampler`: whole groups
/// of one key (GroupedSampler, the default: MLVAE and VAE) or labelled and unlabelled examples
/// (SemiSupervisedSampler: SemiSupervisedVAE and M2; alias SemiSupervisedTrainer). The trainer keeps
/// references to the model and the data: both must outlive it.
template <typename Model, typename Sampler = GroupedSampler>
class Trainer : public EpochLoop<Trainer<Model, Sampler>, BasicStepReport<detail::terms_of<Model, Sampler>>,
                                 detail::terms_of<Model, Sampler>> {
public:
  /// The model's floating-point type.
  using T = typename Model::Scalar;
  /// The model's loss terms (LossTerms, SemiSupervisedTerms).
  using Terms = detail::terms_of<Model, Sampler>;
  /// What a step reports.
  using Report = BasicStepReport<Terms>;
  /// The sampler's batch.
  using Batch = typename Sampler::Batch;
  /// The options of a run.
  using Options = BasicTrainerOptions<typename Sampler::Options>;
  /// How a step may compute its gradient instead of running the model on the whole batch.
  using Strategy = GradientStrategy<Model, Batch, Terms>;
  /// Where the steps may run instead of on the host model.
  using Engine = StepEngine<Model, Batch, Terms>;

  /// Grouped data: sets up the sampler over `keys` (one per column of `data`), Adam over the model's
  /// parameters and the noise Rng. Throws ShapeError when data rows ≠ model.data_size() or keys.size() ≠
  /// data columns, ArgumentError on no or non-finite data, data the model's likelihood cannot model
  /// (Likelihood::check_data, e.g. values outside [0, 1] under a Bernoulli likelihood) or invalid options.
  Trainer(Model& model, const Matrix<T>& data, std::vector<int> keys, Options options = {})
      : model_(model), data_(data), options_(options),
        sampler_((check_keys(model, data, keys), std::move(keys)), options.sampler),
        optimizer_(model.parameters().size(), options.adam), noise_(options.noise_seed) {
    static_assert(std::is_same_v<Sampler, GroupedSampler>, "Trainer: group keys go with a GroupedSampler");
  }

  /// Semi-supervised data: `labelled` columns of `data` with their `labels` in [0, model.classes()), and
  /// `unlabelled` columns. Throws ShapeError when data rows ≠ model.data_size() or an index is outside
  /// the data, ArgumentError on non-finite data, labels outside [0, classes) or invalid options.
  Trainer(Model& model, const Matrix<T>& data, std::vector<Index> labelled, std::vector<int> labels,
          std::vector<Index> unlabelled, Options options = {})
      : model_(model), data_(data), options_(options),
        sampler_((check_labelled(model, data, labelled, labels, unlabelled), std::move(labelled)), std::move(labels),
                 std::move(unlabelled), options.sampler),
        optimizer_(model.parameters().size(), options.adam), noise_(options.noise_seed) {
    static_assert(std::is_same_v<Sampler, SemiSupervisedSampler>,
                  "Trainer: labelled and unlabelled examples go with a SemiSupervisedSampler");
  }

  /// One optimisation step on the next batch; returns false (and does nothing) at the end of an
  /// epoch. When the loss or gradient is not finite the parameters and the optimiser are left as
  /// they were before the step, and then, by `options().on_divergence`: Throw throws
  /// DivergenceError; SkipStep consumes the batch, counts it in skipped_steps() and returns true
  /// with `report.skipped` set.
  bool step(Report& report) {
    if (!sampler_.next(batch_)) return false;
    if (engine_) {  // on a device: the engine takes the step and its update
      Terms terms;
      double norm = 0;
      const bool updated = engine_->take_step(data_, batch_, noise_, terms, norm);
      detail::close_step("Trainer", options_.on_divergence, updated, terms, norm, sampler_, *engine_, step_in_epoch_,
                         skipped_steps_, report);
      return true;
    }
    if (strategy_) {  // e.g. data-parallel: this process's share, reduced across processes
      finish_step(strategy_->compute(model_, data_, batch_, noise_), report);
      return true;
    }
    gather_columns(data_, batch_.indices, x_);
    finish_step(detail::model_step(model_, x_, batch_, noise_, true), report);
    return true;
  }

  /// One optimisation step, exactly as step() takes it, on a batch the caller provides (columns `x`,
  /// groups given by `offsets` as in GroupedBatch; a plain VAE ignores them): for data generated on
  /// the fly (data/dsprites.hpp) instead of the trainer's own sampler. Counts as a step of the
  /// current epoch; the same divergence policy applies. The gradient strategy is not used here.
  void step_on_batch(const Matrix<T>& x, const std::vector<Index>& offsets, Report& report) {
    require<ArgumentError>(!engine_, "Trainer::step_on_batch: the steps run on ", engine_ ? engine_->describe() : "",
                           ", which takes its batches from the trainer's sampler only");
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

  /// The model being trained (its parameters are stale while the steps run on an engine, until
  /// sync_to_host()).
  Model& model() { return model_; }
  /// The training data (features x N), as given to the constructor.
  const Matrix<T>& data() const { return data_; }
  /// The minibatch sampler (its state goes into training checkpoints).
  Sampler& sampler() { return sampler_; }
  /// The optimiser (its state goes into training checkpoints).
  Adam<T>& optimizer() { return optimizer_; }
  /// The generator of the reparameterisation noise.
  Rng& noise() { return noise_; }
  /// The options of this run (Adam options and divergence policy as last set).
  const Options& options() const { return options_; }
  /// Steps taken in the current epoch (0 at its start).
  Index step_in_epoch() const { return step_in_epoch_; }
  /// Sets the step counter of the current epoch (used when a checkpoint is restored).
  void set_step_in_epoch(Index s) { step_in_epoch_ = s; }
  /// Steps skipped under DivergencePolicy::SkipStep since construction (restored by checkpoints).
  long long skipped_steps() const { return skipped_steps_; }
  /// Sets the skipped-step count (used when a checkpoint is restored).
  void set_skipped_steps(long long n) { skipped_steps_ = n; }
  /// Sets how steps compute the gradient (nullptr: the whole batch in this process, the default).
  /// @throws ArgumentError when the steps run on a device (set_step_engine): the two do not combine.
  void set_gradient_strategy(std::shared_ptr<Strategy> strategy) {
    require<ArgumentError>(!strategy || !engine_, "Trainer: the steps run on ", engine_ ? engine_->describe() : "",
                           ", which has no gradient strategy (data parallelism or sharding); train on the CPU ",
                           "for those");
    strategy_ = std::move(strategy);
  }
  /// The gradient strategy (nullptr when the default).
  const std::shared_ptr<Strategy>& gradient_strategy() const { return strategy_; }
  /// Runs the steps on `engine` (a device; nullptr: on the host model again, after copying the
  /// engine's state back). The engine must already hold this trainer's state (device::put_on does both).
  /// @throws ArgumentError when a gradient strategy is set: the two do not combine.
  void set_step_engine(std::shared_ptr<Engine> engine) {
    require<ArgumentError>(!engine || !strategy_, "Trainer: steps on ", engine ? engine->describe() : "",
                           " cannot use the gradient strategy set (data parallelism or sharding); train on the CPU ",
                           "for those");
    if (!engine) sync_to_host();
    engine_ = std::move(engine);
  }
  /// The engine the steps run on (nullptr: the host model).
  const std::shared_ptr<Engine>& step_engine() const { return engine_; }
  /// Where the steps run: "cpu", or the engine's description.
  std::string device() const { return engine_ ? engine_->describe() : std::string("cpu"); }
  /// Copies the parameters and the optimiser state back from the engine into model() and
  /// optimizer() (before an evaluation on the host model; checkpoints do it themselves). Without an
  /// engine it does nothing.
  void sync_to_host() {
    if (engine_) engine_->sync_to_host(model_, optimizer_);
  }
  /// Hands model()'s parameters and optimizer()'s state to the engine (after they were changed on
  /// the host, e.g. by load_checkpoint, which does it itself). Without an engine it does nothing.
  void sync_from_host() {
    if (engine_) engine_->sync_from_host(model_, optimizer_);
  }
  /// Changes the divergence policy (e.g. for a resumed run).
  void set_divergence_policy(DivergencePolicy p) { options_.on_divergence = p; }
  /// Replaces the Adam options (the optimiser's and those reported by options()), e.g. when a
  /// checkpoint is loaded; an engine's optimiser takes them too. @throws ArgumentError when they are invalid.
  void set_adam_options(const AdamOptions& a) {
    a.validate();
    sync_to_host();
    optimizer_.options() = a;
    options_.adam = a;
    sync_from_host();
  }

private:
  /// The rest of a step once the model holds the batch's gradient and `terms` its loss terms:
  /// divergence policy, Adam step, counters and `report`.
  void finish_step(const Terms& terms, Report& report) {
    double norm = 0;
    const bool updated = std::isfinite(terms.loss) &&
                         optimizer_.try_step(model_.parameters().values, model_.parameters().gradients, norm);
    detail::close_step("Trainer", options_.on_divergence, updated, terms, norm, sampler_, optimizer_, step_in_epoch_,
                       skipped_steps_, report);
  }

  /// The data have the model's width (features per observation).
  static void check_width(const Model& model, const Matrix<T>& data) {
    require<ShapeError>(data.rows() == model.data_size(), "Trainer: the model expects ", model.data_size(),
                        " features per observation, the data has ", data.rows(), " rows");
  }
  /// What every run's data must be: the model's width, some columns, finite, and (where the model's
  /// likelihood can tell) values it can model.
  static void check_data(const Model& model, const Matrix<T>& data) {
    check_width(model, data);
    require<ArgumentError>(data.cols() > 0, "Trainer: the training data hold 0 observations (columns)");
    require<ArgumentError>(data.allFinite(), "Trainer: the training data contain NaN or infinite values");
    if constexpr (detail::has_likelihood_check<Model>::value)
      model.likelihood().check_data(data, "training data given to the Trainer");
  }
  static int check_keys(const Model& model, const Matrix<T>& data, const std::vector<int>& keys) {
    check_width(model, data);
    require<ShapeError>(static_cast<Index>(keys.size()) == data.cols(), "Trainer: expected one key per observation (",
                        data.cols(), "), found ", keys.size());
    check_data(model, data);
    return 0;
  }
  static int check_labelled(const Model& model, const Matrix<T>& data, const std::vector<Index>& labelled,
                            const std::vector<int>& labels, const std::vector<Index>& unlabelled) {
    check_data(model, data);
    for (const auto* pool : {&labelled, &unlabelled})
      for (Index i : *pool)
        require<ShapeError>(i >= 0 && i < data.cols(), "Trainer: index ", i, " outside the ", data.cols(),
                            " data columns");
    for (int y : labels)
      require<ArgumentError>(y >= 0 && y < model.classes(), "Trainer: label ", y, " outside [0, ", model.classes(),
                             ")");
    return 0;
  }

  Model& model_;
  const Matrix<T>& data_;
  Options options_;
  Sampler sampler_;
  Adam<T> optimizer_;
  Rng noise_;
  std::shared_ptr<Strategy> strategy_;
  std::shared_ptr<Engine> engine_;
  Batch batch_;
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
