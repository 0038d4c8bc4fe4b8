// mlvae/optim/adam.hpp — Adam (Kingma & Ba 2015) with bias correction, optional decoupled weight
// decay (AdamW, Loshchilov & Hutter 2019) and optional clipping of the global gradient norm.
// Updates a flat parameter vector in place from its gradient (nn/layer.hpp's ParameterStore):
//   g ← g · min(1, clip / ‖g‖);  m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²
//   θ ← θ − lr · ( m/(1−β₁ᵗ) / (√(v/(1−β₂ᵗ)) + ε) + λθ )
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/types.hpp"

#include <cmath>

namespace mlvae {

struct AdamOptions {
  double learning_rate = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double epsilon = 1e-8;
  double weight_decay = 0;    ///< decoupled (AdamW); 0 disables
  double clip_norm = 0;       ///< clip the global gradient L2 norm to this; 0 disables

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

template <typename T>
class Adam {
public:
  explicit Adam(Index parameter_count, AdamOptions options = {}) : options_(options) {
    options_.validate();
    first_moment_.setZero(parameter_count);
    second_moment_.setZero(parameter_count);
  }

  /// One update of `values` from `gradients` (same size as at construction). Returns the global
  /// gradient norm before clipping. Throws DivergenceError, leaving `values` untouched, when a
  /// gradient is not finite.
  double step(Eigen::Ref<Vector<T>> values, const Eigen::Ref<const Vector<T>>& gradients) {
    require<ShapeError>(values.size() == first_moment_.size() && gradients.size() == first_moment_.size(),
                        "Adam::step: expected ", first_moment_.size(), " parameters and gradients, found ",
                        values.size(), " and ", gradients.size());
    const double norm = static_cast<double>(gradients.norm());
    require<DivergenceError>(std::isfinite(norm), "Adam::step: the gradient is not finite (norm ", norm,
                             ") at step ", step_ + 1, "; parameters left unchanged");
    const T scale = (options_.clip_norm > 0 && norm > options_.clip_norm) ? T(options_.clip_norm / norm) : T(1);
    ++step_;
    const T b1 = T(options_.beta1), b2 = T(options_.beta2);
    const T c1 = T(1) / T(1 - std::pow(options_.beta1, static_cast<double>(step_)));
    const T c2 = T(1) / T(1 - std::pow(options_.beta2, static_cast<double>(step_)));
    const T lr = T(options_.learning_rate), eps = T(options_.epsilon), wd = T(options_.weight_decay);
    first_moment_.array() = b1 * first_moment_.array() + (T(1) - b1) * scale * gradients.array();
    second_moment_.array() = b2 * second_moment_.array() + (T(1) - b2) * (scale * gradients.array()).square();
    values.array() -= lr * ((first_moment_.array() * c1) / ((second_moment_.array() * c2).sqrt() + eps) +
                            wd * values.array());
    return norm;
  }

  long long step_count() const { return step_; }
  const AdamOptions& options() const { return options_; }
  AdamOptions& options() { return options_; }
  const Vector<T>& first_moment() const { return first_moment_; }
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
  long long step_ = 0;
};

}  // namespace mlvae
