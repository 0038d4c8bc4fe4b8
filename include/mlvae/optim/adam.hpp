/// @file
/// mlvae/optim/adam.hpp — Adam (Kingma & Ba 2015) with bias correction, optional decoupled weight
/// decay (AdamW, Loshchilov & Hutter 2019) and optional clipping of the global gradient norm.
/// Updates a flat parameter vector in place from its gradient (nn/layer.hpp's ParameterStore):
///   g ← g · min(1, clip / ‖g‖);  m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²
///   θ ← θ − lr · ( m/(1−β₁ᵗ) / (√(v/(1−β₂ᵗ)) + ε) + λθ )
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/core/threads.hpp"

#include <algorithm>
#include <cmath>
#include <string>

namespace mlvae {

/// Hyper-parameters of Adam (AdamW when weight_decay > 0).
struct AdamOptions {
  /// Step size α (> 0).
  double learning_rate = 1e-3;
  /// Decay of the first-moment estimate, in [0, 1).
  double beta1 = 0.9;
  /// Decay of the second-moment estimate, in [0, 1).
  double beta2 = 0.999;
  /// Added to √v̂ in the denominator (> 0).
  double epsilon = 1e-8;
  double weight_decay = 0;    ///< decoupled (AdamW); 0 disables
  double clip_norm = 0;       ///< clip the global gradient L2 norm to this; 0 disables

  /// Throws ArgumentError when an option is out of range.
  void validate() const {
    require<ArgumentError>(learning_rate > 0 && std::isfinite(learning_rate),
                           "Adam: learning_rate must be positive and finite, found ", learning_rate);
    require<ArgumentError>(beta1 >= 0 && beta1 < 1, "Adam: beta1 must be in [0, 1), found ", beta1);
    require<ArgumentError>(beta2 >= 0 && beta2 < 1, "Adam: beta2 must be in [0, 1), found ", beta2);
    require<ArgumentError>(epsilon > 0, "Adam: epsilon must be positive, found ", epsilon);
    require<ArgumentError>(weight_decay >= 0, "Adam: weight_decay must be >= 0, found ", weight_decay);
    require<ArgumentError>(clip_norm >= 0, "Adam: clip_norm must be >= 0 (0 disables), found ", clip_norm);
  }
};

/// The constants of one Adam update, written once for every device (Adam here, DeviceAdam in
/// device/trainer.hpp): clipping factor, β's, bias corrections, learning rate, ε, weight decay.
template <typename T>
struct AdamCoefficients {
  T scale = T(1);  ///< clipping factor min(1, clip / ‖g‖)
  T beta1 = T(0.9), beta2 = T(0.999);
  T c1 = T(1), c2 = T(1);  ///< bias corrections 1/(1 − β₁ᵗ), 1/(1 − β₂ᵗ)
  T lr = T(1e-3), eps = T(1e-8), weight_decay = T(0);

  /// The clipping factor min(1, clip / ‖g‖) of a gradient of norm `norm` (1 when clip is 0).
  EIGEN_DEVICE_FUNC static T clip_factor(double clip, double norm) {
    return (clip > 0 && norm > clip) ? T(clip / norm) : T(1);
  }
  /// The bias correction 1/(1 − βᵗ) of update number `step`.
  EIGEN_DEVICE_FUNC static T bias_correction(double beta, double step) {
    using std::pow;
    return T(1) / T(1 - pow(beta, step));
  }

  /// The coefficients of update number `step` (1-based) of a gradient whose norm is `norm`.
  static AdamCoefficients of(const AdamOptions& o, long long step, double norm) {
    AdamCoefficients k;
    k.scale = clip_factor(o.clip_norm, norm);
    k.beta1 = T(o.beta1);
    k.beta2 = T(o.beta2);
    k.c1 = bias_correction(o.beta1, static_cast<double>(step));
    k.c2 = bias_correction(o.beta2, static_cast<double>(step));
    k.lr = T(o.learning_rate);
    k.eps = T(o.epsilon);
    k.weight_decay = T(o.weight_decay);
    return k;
  }
};

/// Adam's element-wise update, written once for every device: templates over Eigen Array
/// expressions (the host) and Tensor expressions (a device), with the step's coefficients as
/// scalars or as expressions read on the device (device/ops.hpp's step without the host).
namespace adam_terms {
/// m ← β₁ m + (1 − β₁) s g (s: the clipping factor).
template <typename T, typename M, typename G, typename S>
auto first_moment(const M& m, const G& g, T beta1, const S& scale) {
  return beta1 * m + (T(1) - beta1) * scale * g;
}
/// v ← β₂ v + (1 − β₂) (s g)².
template <typename T, typename V, typename G, typename S>
auto second_moment(const V& v, const G& g, T beta2, const S& scale) {
  return beta2 * v + (T(1) - beta2) * (scale * g).square();
}
/// θ ← θ − lr (m c₁ / (√(v c₂) + ε) + λ θ), from the updated moments.
template <typename T, typename P, typename M, typename V, typename C1, typename C2>
auto parameter(const P& p, const M& m, const V& v, const C1& c1, const C2& c2, const AdamCoefficients<T>& k) {
  return p - k.lr * ((m * c1) / ((v * c2).sqrt() + k.eps) + k.weight_decay * p);
}
}  // namespace adam_terms

/// The Adam optimiser (Kingma & Ba 2015) over one flat parameter vector, with optional
/// decoupled weight decay and global-norm gradient clipping; results do not depend on the thread count.
template <typename T>
class Adam {
  static_assert(is_model_scalar_v<T>, "mlvae: Adam runs on float or double; with MLVAE_FLOAT_ONLY defined, float only");

public:
  /// Zero moments for `parameter_count` parameters; throws ArgumentError when `options` are invalid.
  explicit Adam(Index parameter_count, AdamOptions options = {}) : options_(options) {
    options_.validate();
    first_moment_.setZero(parameter_count);
    second_moment_.setZero(parameter_count);
    partial_sums_.setZero((parameter_count + chunk_size - 1) / chunk_size);
  }

  /// Parameters per chunk of the fused, threaded update.
  static constexpr Index chunk_size = 8192;

  /// One update of `values` from `gradients` (same size as at construction). Returns the global
  /// gradient norm before clipping. Throws DivergenceError, leaving `values` untouched, when a
  /// gradient is not finite.
  double step(Eigen::Ref<Vector<T>> values, const Eigen::Ref<const Vector<T>>& gradients) {
    double norm = 0;
    if (!try_step(values, gradients, norm)) raise_error<DivergenceError>(divergence_message(norm));
    return norm;
  }

  /// step() without the error: returns false, leaving `values` and the state untouched, when a
  /// gradient is not finite. `norm` receives the global gradient norm before clipping either way.
  bool try_step(Eigen::Ref<Vector<T>> values, const Eigen::Ref<const Vector<T>>& gradients, double& norm) {
    require<ShapeError>(values.size() == first_moment_.size() && gradients.size() == first_moment_.size(),
                        "Adam::step: expected ", first_moment_.size(), " parameters and gradients, found ",
                        values.size(), " and ", gradients.size());
    // Global norm from fixed-size chunks summed in a fixed order: the same bits whatever the
    // thread count.
    const Index n = first_moment_.size();
    const Index chunks = partial_sums_.size();
    parallel_columns(chunks, chunk_size, [&](Index begin, Index end) {
      for (Index c = begin; c < end; ++c) {
        const Index off = c * chunk_size, len = std::min(chunk_size, n - off);
        partial_sums_(c) = static_cast<double>(gradients.segment(off, len).squaredNorm());
      }
    });
    norm = std::sqrt(partial_sums_.sum());
    if (!std::isfinite(norm)) return false;
    ++step_;
    const auto k = AdamCoefficients<T>::of(options_, step_, norm);
    // One fused pass per chunk: moments, bias correction and the update.
    parallel_columns(chunks, chunk_size, [&](Index begin, Index end) {
      for (Index c = begin; c < end; ++c) {
        const Index off = c * chunk_size, len = std::min(chunk_size, n - off);
        auto g = gradients.segment(off, len).array();
        auto m = first_moment_.segment(off, len).array();
        auto v = second_moment_.segment(off, len).array();
        auto p = values.segment(off, len).array();
        m = adam_terms::first_moment(m, g, k.beta1, k.scale);
        v = adam_terms::second_moment(v, g, k.beta2, k.scale);
        p = adam_terms::parameter(p, m, v, k.c1, k.c2, k);
      }
    });
    return true;
  }

  /// The message of the DivergenceError step() reports for a non-finite gradient norm `norm`.
  std::string divergence_message(double norm) const {
    return detail::concat("Adam::step: the gradient is not finite (norm ", norm, ") at step ", step_ + 1,
                          "; parameters left unchanged");
  }

  /// Number of updates taken so far (t).
  long long step_count() const { return step_; }
  /// The hyper-parameters.
  const AdamOptions& options() const { return options_; }
  /// The hyper-parameters, modifiable between steps (not re-validated).
  AdamOptions& options() { return options_; }
  /// First-moment estimate m (uncorrected), one entry per parameter.
  const Vector<T>& first_moment() const { return first_moment_; }
  /// Second-moment estimate v (uncorrected), one entry per parameter.
  const Vector<T>& second_moment() const { return second_moment_; }
  /// Restores the complete state (used by checkpoints).
  void set_state(long long step, const Vector<T>& m, const Vector<T>& v) {
    require<ShapeError>(m.size() == first_moment_.size() && v.size() == second_moment_.size(),
                        "Adam::set_state: expected moments of size ", first_moment_.size(), ", found ", m.size(),
                        " and ", v.size());
    step_ = step;
    first_moment_ = m;
    second_moment_ = v;
  }

private:
  AdamOptions options_;
  Vector<T> first_moment_, second_moment_;
  Vector<double> partial_sums_;
  long long step_ = 0;
};

}  // namespace mlvae
