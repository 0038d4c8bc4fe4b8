/// @file
/// mlvae/nn/sequential.hpp — a compile-time stack of layers: Sequential<Dense<T>, Tanh<T>, ...>.
/// The whole stack is one type (no virtual dispatch); it follows the layer contract itself, so
/// stacks nest. Backward runs the layers in reverse, chaining dLoss/dInput. A layer that can apply
/// the activation after it in its own passes (Dense: bias and f in one pass after the product, f'
/// and the bias gradient in one pass before it; Conv2d: ReLU) is fused with it: fewer passes over the
/// activations, the same values as running the two layers one after the other.
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/nn/activations.hpp"
#include "mlvae/nn/layer.hpp"

#include <cstddef>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace mlvae {

namespace detail {
/// Whether layer P applies the activation layer A (an Elementwise of any context) in its own passes:
/// P declares `template <typename Op> static constexpr bool fuses_activation` and has
/// forward_activation / backward_activation (Dense for activations whose derivative comes from the
/// output, Conv2d for ReLU).
template <typename P, typename A, typename = void>
struct fuses_with : std::false_type {};
template <typename P, typename T, typename Op, typename Ctx>
struct fuses_with<P, BasicElementwise<T, Op, Ctx>, std::enable_if_t<P::template fuses_activation<Op>>>
    : std::true_type {};
template <typename P, typename A>
inline constexpr bool fuses_with_v = fuses_with<P, A>::value;

/// The array a layer takes and returns: its `Array` when it names one (a device layer's
/// DeviceArray, device/layers.hpp), else Matrix<Scalar>.
template <typename L, typename = void>
struct layer_array {
  using type = Matrix<typename L::Scalar>;
};
template <typename L>
struct layer_array<L, std::void_t<typename L::Array>> {
  using type = typename L::Array;
};
template <typename L>
using layer_array_t = typename layer_array<L>::type;

// What a chain of layers does with its tuple.

/// Sum of the layers' parameter counts.
template <typename Tuple>
Index chain_parameter_count(const Tuple& layers) {
  return std::apply([](const auto&... l) { return (Index{0} + ... + l.parameter_count()); }, layers);
}
/// "Sequential[<layer>, <layer>, ...]", as recorded in checkpoints.
template <typename Tuple>
std::string chain_describe(const Tuple& layers) {
  std::string out = "Sequential[";
  std::apply(
      [&](const auto&... l) {
        std::size_t i = 0;
        ((out += (i++ ? ", " : "") + l.describe()), ...);
      },
      layers);
  return out + "]";
}
/// Binds each layer to consecutive slices starting at `values` / `gradients`.
template <typename Tuple, typename T>
void chain_bind(Tuple& layers, T* values, T* gradients) {
  std::apply(
      [&](auto&... l) {
        ((l.bind(values, gradients), values += l.parameter_count(), gradients += l.parameter_count()), ...);
      },
      layers);
}

}  // namespace detail

/// A chain of layers run in order; itself a layer (the layer contract), its parameters the layers' in order.
/// The same stack runs on any device: its layers' `Array` (Matrix on the CPU, device::DeviceArray on a
/// device) is what it takes and returns.
template <typename... Layers>
class Sequential {
  static_assert(sizeof...(Layers) > 0, "Sequential needs at least one layer");
  using First = std::tuple_element_t<0, std::tuple<Layers...>>;
  static constexpr std::size_t count = sizeof...(Layers);

public:
  /// The floating-point type, taken from the first layer.
  using Scalar = typename First::Scalar;
  /// Shorthand for Scalar.
  using T = Scalar;
  /// What the stack takes and returns: the first layer's array (Matrix<T> for the CPU layers).
  using Array = detail::layer_array_t<First>;

  /// Takes the layers in order; throws ShapeError when one's output size differs from the next
  /// one's input size.
  explicit Sequential(Layers... layers) : layers_(std::move(layers)...) { check_sizes<0>(); }
  /// Builds each layer from `context` and the matching layer of `other` (Layer(context, other's
  /// layer)): a stack's copy on a device (device/layers.hpp), with the same sizes and parameter layout.
  template <typename Context, typename... Others>
  Sequential(Context& context, const Sequential<Others...>& other)
      : Sequential(context, other, std::index_sequence_for<Others...>{}) {}

  /// The first layer's input size.
  Index input_size() const { return std::get<0>(layers_).input_size(); }
  /// The last layer's output size.
  Index output_size() const { return std::get<count - 1>(layers_).output_size(); }
  /// Sum of the layers' parameter counts.
  Index parameter_count() const { return detail::chain_parameter_count(layers_); }
  /// "Sequential[<layer>, <layer>, ...]", as recorded in checkpoints.
  std::string describe() const { return detail::chain_describe(layers_); }

  /// Binds each layer to consecutive slices starting at `values` / `gradients`.
  void bind(T* values, T* gradients) { detail::chain_bind(layers_, values, gradients); }
  /// Initialises every layer in order from `rng`.
  void initialize(Rng& rng) {
    std::apply([&](auto&... l) { (l.initialize(rng), ...); }, layers_);
  }

  /// Sets the arithmetic of every layer that has matrix products (Dense, Conv2d,
  /// ConvTranspose2d, nested stacks); the others ignore it. See nn/gemm_bf16.hpp.
  void set_precision(Precision p) {
    std::apply([&](auto&... l) { (detail::set_layer_precision(l, p), ...); }, layers_);
  }

  /// Runs x (input_size x batch) through every layer; returns the last layer's output.
  const Array& forward(const Array& x) { return forward_from<0>(x); }
  /// Backpropagates dy through the layers in reverse, adding parameter gradients; returns dx (empty unless need_input_gradient).
  const Array& backward(const Array& dy, bool need_input_gradient = true) {
    return backward_from<count - 1>(dy, need_input_gradient);
  }
  /// The last layer's output from the last forward().
  const Array& output() const { return std::get<count - 1>(layers_).output(); }

  /// The I-th layer.
  template <std::size_t I> auto& layer() { return std::get<I>(layers_); }
  /// The I-th layer (read-only).
  template <std::size_t I> const auto& layer() const { return std::get<I>(layers_); }
  /// Number of layers.
  static constexpr std::size_t size() { return count; }

private:
  template <typename Context, typename Other, std::size_t... I>
  Sequential(Context& context, const Other& other, std::index_sequence<I...>)
      : layers_(Layers(context, other.template layer<I>())...) {}

  template <std::size_t I>
  void check_sizes() const {
    if constexpr (I + 1 < count) {
      const auto& a = std::get<I>(layers_);
      const auto& b = std::get<I + 1>(layers_);
      require<ShapeError>(a.output_size() == b.input_size(), "Sequential: layer ", I, " ", a.describe(), " outputs ",
                          a.output_size(), " features but layer ", I + 1, " ", b.describe(), " expects ",
                          b.input_size());
      check_sizes<I + 1>();
    }
  }
  // Whether layer I applies the activation at I + 1 itself.
  template <std::size_t I>
  static constexpr bool fused() {
    if constexpr (I + 1 < count)
      return detail::fuses_with_v<std::tuple_element_t<I, std::tuple<Layers...>>,
                                  std::tuple_element_t<I + 1, std::tuple<Layers...>>>;
    else
      return false;
  }
  // Whether layer I is an activation applied by layer I - 1.
  template <std::size_t I>
  static constexpr bool written_by_previous() {
    if constexpr (I > 0) return fused<I - 1>();
    else return false;
  }
  template <std::size_t I>
  const Array& forward_from(const Array& x) {
    if constexpr (fused<I>()) {
      auto& activation = std::get<I + 1>(layers_);
      std::get<I>(layers_).forward_activation(x, activation.fused_output(x.cols()), activation.op());
      if constexpr (I + 2 < count) return forward_from<I + 2>(activation.output());
      else return activation.output();
    } else {
      const Array& y = std::get<I>(layers_).forward(x);
      if constexpr (I + 1 < count) return forward_from<I + 1>(y);
      else return y;
    }
  }
  template <std::size_t I>
  const Array& backward_from(const Array& dy, bool need_input_gradient) {
    if constexpr (written_by_previous<I>()) {
      const bool need = I - 1 == 0 ? need_input_gradient : true;
      const auto& activation = std::get<I>(layers_);
      const Array& dx = std::get<I - 1>(layers_).backward_activation(dy, activation.output(), activation.op(), need);
      if constexpr (I - 1 == 0) return dx;
      else return backward_from<I - 2>(dx, need_input_gradient);
    } else if constexpr (I == 0) {
      return std::get<0>(layers_).backward(dy, need_input_gradient);
    } else {
      const Array& dx = std::get<I>(layers_).backward(dy, true);
      return backward_from<I - 1>(dx, need_input_gradient);
    }
  }

  std::tuple<Layers...> layers_;
};

}  // namespace mlvae
