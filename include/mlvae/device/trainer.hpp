/// @file
/// mlvae/device/trainer.hpp — training on a device: DeviceAdam (optim/adam.hpp's update with its
/// moments on the device) and DeviceTrainer, which runs a host Trainer's run on a device. The host
/// Trainer keeps everything that is not per-step arithmetic (sampler, noise Rng, counters, options),
/// so checkpoints stay device-independent: sync_to_host() copies parameters and Adam moments back,
/// and io/checkpoint.hpp writes the host Trainer as usual; a checkpoint loaded into a host Trainer
/// resumes on any device.
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/device/context.hpp"
#include "mlvae/device/mlvae.hpp"
#include "mlvae/device/ops.hpp"
#include "mlvae/optim/adam.hpp"
#include "mlvae/train/trainer.hpp"

#include <cmath>
#include <functional>
#include <string>

namespace mlvae::device {

/// Adam (optim/adam.hpp) with its moments on a device; the update is device/ops.hpp's adam_update.
template <typename T, typename Ctx>
class DeviceAdam {
public:
  /// Uploads the state of `host` (options, step count, moments) to `ctx`.
  DeviceAdam(Ctx& ctx, const Adam<T>& host)
      : ctx_(&ctx), options_(host.options()), step_(host.step_count()), m_(ctx), v_(ctx), device_step_(ctx),
        work_(ctx) {
    m_.upload(host.first_moment());
    v_.upload(host.second_moment());
    ctx.synchronize();
  }

  /// One update of `values` from `gradients` given their norm ‖g‖ (from the step's readback):
  /// clipping, bias correction and the update as in Adam::step. Returns false, changing nothing,
  /// when the norm is not finite (Adam::try_step's contract).
  bool try_step(DeviceArray<T, Ctx>& values, const DeviceArray<T, Ctx>& gradients, double norm) {
    require<ShapeError>(values.size() == m_.size() && gradients.size() == m_.size(), "DeviceAdam::step: expected ",
                        m_.size(), " parameters and gradients, found ", values.size(), " and ", gradients.size());
    require<Error>(!device_ahead_, "DeviceAdam::try_step after queue_step: call sync_step_count() first");
    if (!std::isfinite(norm)) return false;
    ++step_;
    if (device_step_.size() > 0) {  // keep the device's count in step for a later queue_step
      const double t = static_cast<double>(step_);
      ctx_->upload(device_step_.data(), &t, sizeof t);
      ctx_->synchronize();
    }
    adam_update(ctx_->device(), AdamCoefficients<T>::of(options_, step_, norm), m_.size(), values.data(),
                gradients.data(), m_.data(), v_.data());
    return true;
  }
  /// The update without the host (for capture in a CUDA graph): ‖g‖ from the `chunks`
  /// squared-norm partial sums at `norm_partials` (DeviceMLVAE::gradient_norm_partials()), the
  /// step count, clipping and bias corrections all computed on the device, then the update, which
  /// leaves everything unchanged when the norm is not finite (try_step's contract; the device
  /// step count does not advance then either). Queued only: no synchronisation, and no allocation
  /// after the first call. step_count() lags until sync_step_count(); do not mix with try_step
  /// before that.
  void queue_step(DeviceArray<T, Ctx>& values, const DeviceArray<T, Ctx>& gradients, const T* norm_partials,
                  Index chunks) {
    require<ShapeError>(values.size() == m_.size() && gradients.size() == m_.size() && chunks > 0,
                        "DeviceAdam::queue_step: expected ", m_.size(), " parameters and gradients and their norm's "
                        "partial sums, found ", values.size(), ", ", gradients.size(), " and ", chunks);
    if (device_step_.size() == 0) {  // first call: the device keeps the step count from here on
      device_step_.resize(1, 1);
      work_.resize(5, 1);
      const double t = static_cast<double>(step_);
      ctx_->upload(device_step_.data(), &t, sizeof t);
      ctx_->synchronize();  // `t` lives on this stack frame
    }
    AdamCoefficients<T> k;
    k.beta1 = T(options_.beta1);
    k.beta2 = T(options_.beta2);
    k.lr = T(options_.learning_rate);
    k.eps = T(options_.epsilon);
    k.weight_decay = T(options_.weight_decay);
    adam_update_on_device(ctx_->device(), k, options_.clip_norm, options_.beta1, options_.beta2, norm_partials, chunks,
                          device_step_.data(), work_.data(), m_.size(), values.data(), gradients.data(), m_.data(),
                          v_.data());
    device_ahead_ = true;
  }
  /// Waits for the device and copies its step count (queue_step's) into step_count().
  void sync_step_count() {
    if (device_step_.size() == 0) return;
    double t = 0;
    ctx_->download(&t, device_step_.data(), sizeof t);
    ctx_->synchronize();
    step_ = static_cast<long long>(t);
    device_ahead_ = false;
  }

  /// try_step, raising DivergenceError (parameters unchanged) when the norm is not finite.
  void step(DeviceArray<T, Ctx>& values, const DeviceArray<T, Ctx>& gradients, double norm) {
    if (!try_step(values, gradients, norm)) raise_error<DivergenceError>(divergence_message(norm));
  }
  /// The message of a non-finite gradient at the next step.
  std::string divergence_message(double norm) const {
    return mlvae::detail::concat("DeviceAdam::step: the gradient is not finite (norm ", norm, ") at step ", step_ + 1,
                          "; parameters left unchanged");
  }

  /// Copies the state (step count and moments) into `host` (same size).
  void download(Adam<T>& host) const {
    require<Error>(!device_ahead_, "DeviceAdam::download after queue_step: call sync_step_count() first");
    Vector<T> m, v;
    m_.download(m);
    v_.download(v);
    host.set_state(step_, m, v);
  }
  /// Updates taken so far.
  long long step_count() const { return step_; }
  /// The hyper-parameters.
  AdamOptions& options() { return options_; }

private:
  Ctx* ctx_;
  AdamOptions options_;
  long long step_ = 0;
  DeviceArray<T, Ctx> m_, v_;
  DeviceArray<double, Ctx> device_step_;  // queue_step's step count (allocated by its first call)
  DeviceArray<T, Ctx> work_;              // queue_step's coefficients and ‖g‖²
  bool device_ahead_ = false;             // queue_step ran since the last sync_step_count()
};

/// Runs a host Trainer (train/trainer.hpp) on a device: the same sampler, the same options and
/// divergence policy, the same StepReport. Each step draws one 64-bit noise key from the host
/// Trainer's noise Rng (the device noise is CounterNormal of that key), gathers the minibatch into
/// staging memory, uploads it, runs forward_backward and the Adam update on the device.
/// The host Trainer's model and optimiser are stale until sync_to_host().
template <typename Model, typename Ctx>
class DeviceTrainer : public EpochLoop<DeviceTrainer<Model, Ctx>, StepReport, LossTerms> {
public:
  /// The floating-point type.
  using T = typename Model::Scalar;

  /// Uploads the host trainer's model and optimiser state to `ctx`. Both must outlive this.
  DeviceTrainer(Trainer<Model>& host, Ctx& ctx)
      : host_(host), model_(ctx, host.model()), optimizer_(ctx, host.optimizer()) {}

  /// One step on the next batch (Trainer::step's semantics, divergence policy included); returns
  /// false at the end of an epoch.
  bool step(StepReport& report) {
    GroupedSampler& sampler = host_.sampler();
    if (!sampler.next(batch_)) return false;
    const Matrix<T>& data = host_.data();
    auto x = model_.batch_staging(batch_.size());
    for (Index j = 0; j < batch_.size(); ++j) x.col(j) = data.col(batch_.indices[static_cast<std::size_t>(j)]);
    model_.commit_batch();
    const std::uint64_t key = host_.noise()();
    const StepResult result = model_.forward_backward(batch_.group_offsets, key);
    const bool updated = std::isfinite(result.terms.loss) &&
                         optimizer_.try_step(model_.parameters(), model_.gradients(), result.gradient_norm);
    Index step_in_epoch = host_.step_in_epoch();
    long long skipped = host_.skipped_steps();
    mlvae::detail::close_step("DeviceTrainer", host_.options().on_divergence, updated, result.terms,
                              result.gradient_norm, sampler, optimizer_, step_in_epoch, skipped, report);
    host_.set_step_in_epoch(step_in_epoch);
    host_.set_skipped_steps(skipped);
    return true;
  }

  /// Starts a new epoch (as Trainer::start_epoch); run_epoch() and continue_epoch(): EpochLoop.
  void start_epoch() { host_.start_epoch(); }

  /// Copies parameters and Adam state back into the host Trainer (before a checkpoint or a CPU
  /// evaluation). Waits for the device.
  void sync_to_host() {
    model_.download_parameters(host_.model().parameters().values);
    optimizer_.download(host_.optimizer());
  }
  /// Uploads the host Trainer's parameters and Adam state again (e.g. after load_checkpoint()).
  void sync_from_host() {
    model_.upload_parameters(host_.model().parameters().values);
    optimizer_ = DeviceAdam<T, Ctx>(model_.context(), host_.optimizer());
  }

  /// The device model.
  DeviceMLVAE<Model, Ctx>& model() { return model_; }
  /// The device optimiser.
  DeviceAdam<T, Ctx>& optimizer() { return optimizer_; }
  /// The host Trainer.
  Trainer<Model>& host() { return host_; }

private:
  Trainer<Model>& host_;
  DeviceMLVAE<Model, Ctx> model_;
  DeviceAdam<T, Ctx> optimizer_;
  GroupedBatch batch_;
};

}  // namespace mlvae::device
