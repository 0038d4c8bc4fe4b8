/// @file
/// mlvae/device/trainer.hpp — training on a device: DeviceAdam (optim/adam.hpp's update with its
/// moments on the device) and DeviceEngine, the StepEngine through which the one Trainer
/// (train/trainer.hpp) runs its steps on a device (put_on). The Trainer keeps everything that is not
/// per-step arithmetic (sampler, noise Rng, counters, options), so checkpoints stay
/// device-independent: io/checkpoint.hpp copies the state back before it writes, and a loaded
/// checkpoint goes onto the device the trainer runs on.
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/device/context.hpp"
#include "mlvae/device/mlvae.hpp"
#include "mlvae/device/support.hpp"
#include "mlvae/device/ops.hpp"
#include "mlvae/optim/adam.hpp"
#include "mlvae/train/trainer.hpp"

#include <cmath>
#include <functional>
#include <memory>
#include <type_traits>
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
  /// squared-norm partial sums at `norm_partials` (DeviceModel::gradient_norm_partials()), the
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

/// The steps of a Trainer (train/trainer.hpp) on a device: a StepEngine that gathers each batch the
/// Trainer's sampler draws — on the device from the training set uploaded once at the first step
/// (up to set_resident_limit; the trainer's data must then not change while it trains), else on the
/// host into staging memory and uploads it — draws one 64-bit noise key from the
/// Trainer's noise Rng (the device noise is CounterNormal of that key), and runs forward_backward and
/// the Adam update on the device. The Trainer keeps its sampler, options, counters, divergence policy
/// and StepReport; its model and optimiser are stale until Trainer::sync_to_host() (checkpoints call
/// it). Put a trainer on a device with put_on(trainer, ctx).
template <typename Model, typename Ctx>
class DeviceEngine final : public StepEngine<Model> {
public:
  /// The floating-point type.
  using T = typename Model::Scalar;

  /// Uploads `model` (its parameters) and `optimizer` (its state and options) to `ctx`, which must
  /// outlive this. Throws ArgumentError naming the option when the device step cannot compute one of
  /// the model's options (require_device_supports).
  DeviceEngine(Ctx& ctx, Model& model, const Adam<T>& optimizer)
      : DeviceEngine(std::shared_ptr<Ctx>(std::shared_ptr<Ctx>(), &ctx), model, optimizer) {}
  /// The same on a context the engine keeps alive (e.g. a CudaContext opened for it alone).
  DeviceEngine(std::shared_ptr<Ctx> ctx, Model& model, const Adam<T>& optimizer)
      : ctx_(std::move(ctx)), model_(*ctx_, model), optimizer_(*ctx_, optimizer) {}

  bool take_step(const Matrix<T>& data, const GroupedBatch& batch, Rng& noise, LossTerms& terms,
                 double& gradient_norm) override {
    if (make_resident(data)) {  // the data set lives on the device: gather the batch there
      model_.gather_batch(resident_, batch.indices);
    } else {  // through host staging memory, one upload per step
      auto x = model_.batch_staging(batch.size());
      for (Index j = 0; j < batch.size(); ++j) x.col(j) = data.col(batch.indices[static_cast<std::size_t>(j)]);
      model_.commit_batch();
    }
    const std::uint64_t key = noise();
    const StepResult result = model_.forward_backward(batch.group_offsets, key);
    terms = result.terms;
    gradient_norm = result.gradient_norm;
    return std::isfinite(result.terms.loss) &&
           optimizer_.try_step(model_.parameters(), model_.gradients(), result.gradient_norm);
  }
  long long step_count() const override { return optimizer_.step_count(); }
  std::string divergence_message(double norm) const override { return optimizer_.divergence_message(norm); }
  /// Copies parameters and Adam state back into the host model and optimiser. Waits for the device.
  void sync_to_host(Model& model, Adam<T>& optimizer) override {
    model_.download_parameters(model.parameters().values);
    optimizer_.download(optimizer);
  }
  /// Uploads the host model's parameters and the host optimiser's state and options again.
  void sync_from_host(const Model& model, const Adam<T>& optimizer) override {
    model_.upload_parameters(model.parameters().values);
    optimizer_ = DeviceAdam<T, Ctx>(model_.context(), optimizer);
  }
  std::string describe() const override { return model_.context().describe(); }

  /// The largest training set (bytes) kept in device memory, uploaded once at the first step, so
  /// that each minibatch is gathered on the device, provided it also takes at most half of the
  /// device's free memory then; a larger one goes through host staging memory every step. Default
  /// 4 GiB (Fashion-MNIST's 60 000 images are 188 MB as float); 0: never.
  void set_resident_limit(std::size_t bytes) {
    resident_limit_ = bytes;
    resident_source_ = nullptr;
  }
  /// Whether the training set is in device memory (after a step).
  bool data_resident() const { return resident_source_ != nullptr; }

  /// The device model.
  DeviceModel<Model, Ctx>& model() { return model_; }
  /// The device optimiser.
  DeviceAdam<T, Ctx>& optimizer() { return optimizer_; }

private:
  // Uploads `data` once when it fits the limit (again only if another data set comes); whether it is
  // resident. The trainer holds the data by reference and they do not change while it trains.
  bool make_resident(const Matrix<T>& data) {
    const std::size_t bytes = static_cast<std::size_t>(data.size()) * sizeof(T);
    if (resident_source_ == data.data() && resident_.rows() == data.rows() && resident_.cols() == data.cols())
      return true;
    // At most the limit, and at most half of the device's free memory (the step's workspaces and
    // other users of the GPU need the rest): a larger data set goes through staging memory.
    if (bytes == 0 || bytes > resident_limit_ || bytes > model_.context().free_memory() / 2) return false;
    resident_.upload(data);
    resident_source_ = data.data();
    return true;
  }

  std::shared_ptr<Ctx> ctx_;  // owning when the engine keeps the context alive (before model_: built first)
  DeviceModel<Model, Ctx> model_;
  DeviceAdam<T, Ctx> optimizer_;
  DeviceArray<T, Ctx> resident_{*ctx_};  // the training set, when it lives on the device
  const T* resident_source_ = nullptr;   // the host data it was uploaded from
  std::size_t resident_limit_ = std::size_t{4} << 30;
};

/// Runs `trainer`'s steps on `ctx` from now on: uploads its model and optimiser state, sets the
/// engine on the trainer, and returns it (shared with the trainer, which keeps `ctx` alive). Throws
/// ArgumentError naming the option and the device when the device step cannot compute one of the
/// model's options, and when the trainer has a gradient strategy (data parallelism, sharding).
template <typename Model, typename Ctx, std::enable_if_t<detail::device_runs_v<Model, GroupedSampler>, int> = 0>
std::shared_ptr<DeviceEngine<Model, Ctx>> put_on(Trainer<Model>& trainer, std::shared_ptr<Ctx> ctx) {
  trainer.sync_to_host();  // from an engine it may already run on
  auto engine = std::make_shared<DeviceEngine<Model, Ctx>>(std::move(ctx), trainer.model(), trainer.optimizer());
  trainer.set_step_engine(engine);
  return engine;
}
/// put_on with a context that the caller keeps alive (it must outlive the trainer's use of it).
template <typename Model, typename Ctx, std::enable_if_t<detail::device_runs_v<Model, GroupedSampler>, int> = 0>
std::shared_ptr<DeviceEngine<Model, Ctx>> put_on(Trainer<Model>& trainer, Ctx& ctx) {
  return put_on(trainer, std::shared_ptr<Ctx>(std::shared_ptr<Ctx>(), &ctx));
}
/// A model family the device step does not compute yet (the β-VAE family, the semi-supervised
/// model, M2): refused with ArgumentError naming the family and the device, never trained as
/// something else; the trainer is unchanged and keeps training on the CPU.
template <typename Model, typename Sampler, typename Ctx,
          std::enable_if_t<!detail::device_runs_v<Model, Sampler>, int> = 0>
void put_on(Trainer<Model, Sampler>& trainer, Ctx& ctx) {
  refuse_device(trainer.model(), ctx.describe());
}
/// The same refusal for a context the engine would keep alive.
template <typename Model, typename Sampler, typename Ctx,
          std::enable_if_t<!detail::device_runs_v<Model, Sampler>, int> = 0>
void put_on(Trainer<Model, Sampler>& trainer, std::shared_ptr<Ctx> ctx) {
  put_on(trainer, *ctx);
}

}  // namespace mlvae::device
