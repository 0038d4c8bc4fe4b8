/// @file
/// mlvae/train/training_loop.hpp — the divergence policy, the end of a step (policy, counters,
/// report) and the epoch loop of the one Trainer (train/trainer.hpp), whatever its sampler and
/// wherever its steps run.
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/types.hpp"

#include <cmath>
#include <functional>

namespace mlvae {

/// What a training step does when the loss or the gradient is not finite.
enum class DivergencePolicy {
  Throw,    ///< throw DivergenceError; the parameters and the optimiser are left as before the step
  SkipStep  ///< skip the update (parameters and optimiser unchanged), count it, and go on
};

namespace detail {

/// The end of a training step, for every trainer: `updated` says whether the optimiser took the
/// update (false when the loss or the gradient was not finite; the parameters are then as before
/// the step). Then, by `policy`, Throw raises DivergenceError (naming `who` and the step for a
/// non-finite loss, else the optimiser's message) and SkipStep counts the step in
/// `skipped_steps`; the step counter and `report` (epoch, step, steps per epoch, global step,
/// terms, gradient norm, skipped) are filled either way.
template <typename Report, typename Terms, typename Sampler, typename Optimizer>
void close_step(const char* who, DivergencePolicy policy, bool updated, const Terms& terms, double gradient_norm,
                const Sampler& sampler, const Optimizer& optimizer, Index& step_in_epoch, long long& skipped_steps,
                Report& report) {
  report.skipped = false;
  report.gradient_norm = gradient_norm;
  if (!updated) {
    if (policy == DivergencePolicy::Throw) {
      if (!std::isfinite(terms.loss))
        raise_error<DivergenceError>(concat(who, ": the loss is not finite (", terms.loss, ") at epoch ",
                                            sampler.epoch(), " step ", step_in_epoch + 1,
                                            "; parameters left unchanged"));
      raise_error<DivergenceError>(optimizer.divergence_message(gradient_norm));
    }
    report.skipped = true;
    ++skipped_steps;
  }
  ++step_in_epoch;
  report.epoch = sampler.epoch();
  report.step_in_epoch = step_in_epoch;
  report.steps_per_epoch = sampler.batches_per_epoch();
  report.global_step = optimizer.step_count();
  report.terms = terms;
}

}  // namespace detail

/// The epoch loop, for every trainer: `Derived` supplies `bool step(Report&)` (false at the end of
/// an epoch) and `void start_epoch()`; `Terms` accumulates the non-skipped steps' terms.
template <typename Derived, typename Report, typename Terms>
class EpochLoop {
public:
  /// Runs one whole epoch (starting a new one), calling `on_step` after every step; returns the
  /// terms averaged over the epoch's steps that were not skipped.
  Terms run_epoch(const std::function<void(const Report&)>& on_step = {}) {
    self().start_epoch();
    return continue_epoch(on_step);
  }

  /// Runs the rest of the current epoch (e.g. after a checkpoint restored a mid-epoch state),
  /// calling `on_step` after every step; returns the terms averaged over the steps taken here
  /// (skipped steps excluded). Does nothing when the current epoch has no batches left.
  Terms continue_epoch(const std::function<void(const Report&)>& on_step = {}) {
    Terms total;
    Report report;
    while (self().step(report)) {
      if (!report.skipped) total.accumulate(report.terms);
      if (on_step) on_step(report);
    }
    return total;
  }

protected:
  EpochLoop() = default;

private:
  Derived& self() { return static_cast<Derived&>(*this); }
};

}  // namespace mlvae
