/// @file
/// mlvae/nn/layer.hpp — the contract every layer follows, and the flat parameter store layers bind to.
/// docs/architecture.md explains the contract; tests/test_gradients.cpp checks every layer against it.
#pragma once

#include "mlvae/core/random.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/nn/gemm_bf16.hpp"

#include <cmath>
#include <new>
#include <ostream>
#include <string>
#include <type_traits>
#include <utility>

namespace mlvae {

/// # The layer contract
///
/// A layer `L` over scalar `T` (float or double) has, with observations as columns:
///
///     using Scalar = T;
///     Index input_size() const;      // features per observation going in
///     Index output_size() const;     // features per observation coming out
///     Index parameter_count() const; // scalars it learns (0 for activations)
///     void bind(T* values, T* gradients);  // views into the model's ParameterStore
///     void initialize(Rng& rng);           // writes initial values into the bound parameters
///     const Matrix<T>& forward(const Matrix<T>& x);   // x: input_size x batch
///     const Matrix<T>& backward(const Matrix<T>& dy, bool need_input_gradient = true);
///     std::string describe() const;        // e.g. "Dense(784->500)", recorded in checkpoints
///
/// `forward` returns a reference to the layer's own output buffer and may keep a pointer to `x`:
/// the input must stay alive and unchanged until `backward`. `backward` takes dLoss/dOutput,
/// ADDS dLoss/dParameters into the bound gradient buffer (so parameters shared by several
/// paths accumulate), and returns dLoss/dInput (an empty matrix when `need_input_gradient` is
/// false, which lets the first layer skip a GEMM). Buffers are resized only when the batch size
/// changes, so a steady-state step does not allocate.

namespace detail {
/// Whether layer type L has set_precision(Precision) (layers owning matrix products do).
template <typename L, typename = void>
struct has_set_precision : std::false_type {};
template <typename L>
struct has_set_precision<L, std::void_t<decltype(std::declval<L&>().set_precision(Precision::Float32))>>
    : std::true_type {};
/// Sets the precision of layer `l` when it has products (see has_set_precision); others ignore it.
template <typename L>
void set_layer_precision(L& l, Precision p) {
  if constexpr (has_set_precision<L>::value) l.set_precision(p);
}

/// Streams `object.describe()` only when written, so an error message naming a layer costs
/// nothing (no string, no allocation) on the hot path unless it is thrown.
template <typename Object>
struct Described {
  const Object& object;
  friend std::ostream& operator<<(std::ostream& out, const Described& d) { return out << d.object.describe(); }
};
}  // namespace detail

/// A lazily formatted `object.describe()` for error messages (see detail::Described).
template <typename Object>
detail::Described<Object> described(const Object& object) {
  return {object};
}

/// Weight initialisation schemes.
enum class Init {
  GlorotUniform,  ///< U(-a, a), a = sqrt(6 / (fan_in + fan_out)); for tanh / sigmoid / linear
  HeNormal,       ///< N(0, 2 / fan_in); for ReLU-family activations
  Zeros           ///< all zero (tests, special heads)
};

/// Fills `w` according to `init` with the given fan-in and fan-out, drawing from `rng`.
template <typename Derived>
void initialize_weights(Eigen::DenseBase<Derived>& w, Init init, Index fan_in, Index fan_out, Rng& rng) {
  using T = typename Derived::Scalar;
  switch (init) {
    case Init::GlorotUniform: {
      const double a = std::sqrt(6.0 / static_cast<double>(fan_in + fan_out));
      for (Index j = 0; j < w.cols(); ++j)
        for (Index i = 0; i < w.rows(); ++i) w(i, j) = static_cast<T>((2.0 * rng.uniform() - 1.0) * a);
      break;
    }
    case Init::HeNormal: {
      const double s = std::sqrt(2.0 / static_cast<double>(fan_in));
      for (Index j = 0; j < w.cols(); ++j)
        for (Index i = 0; i < w.rows(); ++i) w(i, j) = static_cast<T>(rng.normal() * s);
      break;
    }
    case Init::Zeros:
      w.setZero();
      break;
  }
}

/// One flat vector of every learnable scalar of a model, and one of their gradients.
/// Layers hold `Eigen::Map` views into it (see `bind`), so the optimiser, the gradient checker
/// and checkpoints all see the whole model as one vector.
template <typename T>
struct ParameterStore {
  static_assert(is_model_scalar_v<T>, "mlvae: parameters are float or double; with MLVAE_FLOAT_ONLY defined, float only");
  /// The parameter values, each layer's slice contiguous.
  Vector<T> values;
  /// dLoss/dvalues, same layout as `values`; layers' backward passes add into it.
  Vector<T> gradients;

  /// Number of scalar parameters.
  Index size() const { return values.size(); }
  /// Resizes both vectors to `n` and sets them to zero (invalidates bound layer views).
  void resize(Index n) {
    values.setZero(n);
    gradients.setZero(n);
  }
  /// Sets every gradient to zero (before a backward pass).
  void zero_gradients() { gradients.setZero(); }
};

namespace detail {
/// A layer's weight matrix W and bias b, laid out W (column-major) then b in the parameter store,
/// and their gradients: views bound by bind_weight_and_bias. Dense and the convolutions derive from it.
template <typename T>
class WeightAndBias {
public:
  /// The weight matrix W, a view into the parameter store.
  MatrixMap<T>& weight() { return weight_; }
  /// The bias b, a view into the parameter store.
  VectorMap<T>& bias() { return bias_; }
  /// The weight matrix W.
  const MatrixMap<T>& weight() const { return weight_; }
  /// The bias b.
  const VectorMap<T>& bias() const { return bias_; }
  /// dLoss/dW, a view into the gradient store.
  MatrixMap<T>& weight_gradient() { return weight_grad_; }
  /// dLoss/db, a view into the gradient store.
  VectorMap<T>& bias_gradient() { return bias_grad_; }

protected:
  /// Maps W (rows x cols) then b (bias_size), and their gradients, onto `values` / `gradients`.
  void bind_weight_and_bias(T* values, T* gradients, Index rows, Index cols, Index bias_size) {
    new (&weight_) MatrixMap<T>(values, rows, cols);
    new (&bias_) VectorMap<T>(values + rows * cols, bias_size);
    new (&weight_grad_) MatrixMap<T>(gradients, rows, cols);
    new (&bias_grad_) VectorMap<T>(gradients + rows * cols, bias_size);
  }

  MatrixMap<T> weight_{nullptr, 0, 0};
  VectorMap<T> bias_{nullptr, 0};
  MatrixMap<T> weight_grad_{nullptr, 0, 0};
  VectorMap<T> bias_grad_{nullptr, 0};
};
}  // namespace detail

/// Binds each layer in turn to consecutive slices of `store`; returns the count bound.
template <typename Store, typename... Layers>
Index bind_layers(Store& store, Layers&... layers) {
  const Index total = (Index{0} + ... + layers.parameter_count());
  store.resize(total);
  Index offset = 0;
  auto bind_one = [&](auto& layer) {
    layer.bind(store.values.data() + offset, store.gradients.data() + offset);
    offset += layer.parameter_count();
  };
  (bind_one(layers), ...);
  return total;
}

}  // namespace mlvae
