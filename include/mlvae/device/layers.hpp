/// @file
/// mlvae/device/layers.hpp — device mirrors of mlvae's layers, following the layer contract of
/// nn/layer.hpp with DeviceArray in place of Matrix: Dense (products through the context: mlvae's
/// Gemm on the CPU, cuBLAS on the GPU; bias and its gradient as Tensor expressions), every
/// activation (device/ops.hpp) and Sequential stacks of them. `device_layer_t<Layer, Ctx>` maps a
/// CPU layer type to its mirror, and a mirror is built from the CPU layer (same sizes, same place in
/// the parameter vector), so a CPU model and its device copy share one parameter layout.
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/device/context.hpp"
#include "mlvae/device/ops.hpp"
#include "mlvae/nn/activations.hpp"
#include "mlvae/nn/dense.hpp"
#include "mlvae/nn/sequential.hpp"

#include <string>
#include <tuple>
#include <utility>

namespace mlvae::device {

/// Dense y = W x + b on a device; W (out x in, column-major) then b in the parameter vector.
template <typename T, typename Ctx>
class DeviceDense {
public:
  /// The floating-point type.
  using Scalar = T;
  /// Mirrors `cpu` (its sizes) in `ctx`; bind() before use.
  DeviceDense(Ctx& ctx, const Dense<T>& cpu)
      : ctx_(&ctx), in_(cpu.input_size()), out_(cpu.output_size()), output_(ctx), input_grad_(ctx), bias_sum_(ctx) {}

  /// Input features.
  Index input_size() const { return in_; }
  /// Output features.
  Index output_size() const { return out_; }
  /// out·in + out.
  Index parameter_count() const { return out_ * in_ + out_; }
  /// "Dense(in->out)".
  std::string describe() const { return mlvae::detail::concat("Dense(", in_, "->", out_, ")"); }
  /// Binds to device parameter and gradient slices.
  void bind(T* values, T* gradients) {
    weight_ = values;
    weight_grad_ = gradients;
    bias_ = values + out_ * in_;
    bias_grad_ = gradients + out_ * in_;
  }

  /// y = b + W x (x: in x N on the device).
  const DeviceArray<T, Ctx>& forward(const DeviceArray<T, Ctx>& x) {
    require<ShapeError>(x.rows() == in_, describe(), " (device): expected input with ", in_, " rows, found ", x.rows());
    input_ = &x;
    const Index n = x.cols();
    output_.resize(out_, n);
    assign(ctx_->device(), output_.tensor(), TensorMatrix<const T>(bias_, out_, 1).broadcast(Dims2{1, n}));
    ctx_->gemm(forward_gemm_, Transpose::No, Transpose::No, out_, n, in_, weight_, out_, x.data(), in_,
               output_.data(), out_, true);
    return output_;
  }

  /// dW += dy xᵀ, db += Σ_columns dy; returns dx = Wᵀ dy when asked.
  const DeviceArray<T, Ctx>& backward(const DeviceArray<T, Ctx>& dy, bool need_input_gradient = true) {
    require<ShapeError>(input_ != nullptr && dy.rows() == out_ && dy.cols() == input_->cols(), describe(),
                        " (device): backward needs a forward pass and a gradient of ", out_, " rows, found ",
                        dy.rows(), "x", dy.cols());
    const Index n = dy.cols();
    ctx_->gemm(weight_grad_gemm_, Transpose::No, Transpose::Yes, out_, in_, n, dy.data(), out_, input_->data(), in_,
               weight_grad_, out_, true);
    // The row sum goes to its own buffer first: a reduction that is not the root of an
    // assignment would make Eigen's GPU evaluator allocate a temporary on every call.
    bias_sum_.resize(out_, 1);
    assign(ctx_->device(), TensorVector<T>(bias_sum_.data(), out_), dy.tensor().sum(Dims1{1}));
    TensorMatrix<T> db(bias_grad_, out_, 1);
    assign(ctx_->device(), db, db + bias_sum_.tensor());
    if (need_input_gradient) {
      input_grad_.resize(in_, n);
      ctx_->gemm(input_grad_gemm_, Transpose::Yes, Transpose::No, in_, n, out_, weight_, out_, dy.data(), out_,
                 input_grad_.data(), in_, false);
    }
    return input_grad_;
  }

private:
  Ctx* ctx_;
  Index in_, out_;
  T *weight_ = nullptr, *bias_ = nullptr, *weight_grad_ = nullptr, *bias_grad_ = nullptr;
  const DeviceArray<T, Ctx>* input_ = nullptr;
  DeviceArray<T, Ctx> output_, input_grad_, bias_sum_;
  typename Ctx::template GemmSite<T> forward_gemm_, weight_grad_gemm_, input_grad_gemm_;
};

/// An element-wise activation on a device: y = f(x), dx = dy ⊙ f'(x) (the Op of nn/activations.hpp, on Tensor expressions).
template <typename T, typename Ctx, typename Op>
class DeviceElementwise {
public:
  /// The floating-point type.
  using Scalar = T;
  /// Mirrors `cpu` (size and, for leaky ReLU, the slope) in `ctx`.
  DeviceElementwise(Ctx& ctx, const Elementwise<T, Op>& cpu)
      : ctx_(&ctx), size_(cpu.input_size()), op_(cpu.op()), output_(ctx), input_grad_(ctx) {}

  /// Features.
  Index input_size() const { return size_; }
  /// Features.
  Index output_size() const { return size_; }
  /// 0.
  Index parameter_count() const { return 0; }
  /// "<Op>(size)".
  std::string describe() const { return mlvae::detail::concat(Op::name, "(", size_, ")"); }
  /// No parameters.
  void bind(T*, T*) {}

  /// y = f(x).
  const DeviceArray<T, Ctx>& forward(const DeviceArray<T, Ctx>& x) {
    require<ShapeError>(x.rows() == size_, describe(), " (device): expected input with ", size_, " rows, found ",
                        x.rows());
    input_ = &x;
    output_.resize(size_, x.cols());
    assign(ctx_->device(), output_.tensor(), op_.value(x.tensor()));
    return output_;
  }
  /// dx = dy ⊙ f'(x) when asked.
  const DeviceArray<T, Ctx>& backward(const DeviceArray<T, Ctx>& dy, bool need_input_gradient = true) {
    require<ShapeError>(input_ != nullptr && dy.rows() == size_ && dy.cols() == output_.cols(), describe(),
                        " (device): backward needs a forward pass and a gradient of ", size_, " rows, found ",
                        dy.rows(), "x", dy.cols());
    if (need_input_gradient) {
      input_grad_.resize(size_, dy.cols());
      const auto& out = output_;
      assign(ctx_->device(), input_grad_.tensor(),
             op_.gradient(dy.tensor(), input_->tensor(), out.tensor()));
    }
    return input_grad_;
  }

private:
  Ctx* ctx_;
  Index size_;
  Op op_;
  const DeviceArray<T, Ctx>* input_ = nullptr;
  DeviceArray<T, Ctx> output_, input_grad_;
};

/// A chain of device layers run in order (the device mirror of Sequential).
template <typename Ctx, typename... Layers>
class DeviceSequential {
  static constexpr std::size_t count = sizeof...(Layers);
  using First = std::tuple_element_t<0, std::tuple<Layers...>>;

public:
  /// The floating-point type.
  using Scalar = typename First::Scalar;
  /// Mirrors each layer of `cpu` in `ctx`.
  template <typename... CpuLayers>
  DeviceSequential(Ctx& ctx, const Sequential<CpuLayers...>& cpu)
      : DeviceSequential(ctx, cpu, std::index_sequence_for<CpuLayers...>{}) {}

  /// The first layer's input size.
  Index input_size() const { return std::get<0>(layers_).input_size(); }
  /// The last layer's output size.
  Index output_size() const { return std::get<count - 1>(layers_).output_size(); }
  /// Sum of the layers' parameter counts.
  Index parameter_count() const { return mlvae::detail::chain_parameter_count(layers_); }
  /// "Sequential[...]" as the CPU stack describes itself.
  std::string describe() const { return mlvae::detail::chain_describe(layers_); }
  /// Binds each layer to consecutive device slices.
  void bind(Scalar* values, Scalar* gradients) { mlvae::detail::chain_bind(layers_, values, gradients); }
  /// Runs x through every layer.
  const DeviceArray<Scalar, Ctx>& forward(const DeviceArray<Scalar, Ctx>& x) { return forward_from<0>(x); }
  /// Backpropagates dy through the layers in reverse.
  const DeviceArray<Scalar, Ctx>& backward(const DeviceArray<Scalar, Ctx>& dy, bool need_input_gradient = true) {
    return backward_from<count - 1>(dy, need_input_gradient);
  }

private:
  template <typename Cpu, std::size_t... I>
  DeviceSequential(Ctx& ctx, const Cpu& cpu, std::index_sequence<I...>)
      : layers_(Layers(ctx, cpu.template layer<I>())...) {}

  template <std::size_t I>
  const DeviceArray<Scalar, Ctx>& forward_from(const DeviceArray<Scalar, Ctx>& x) {
    const auto& y = std::get<I>(layers_).forward(x);
    if constexpr (I + 1 < count) return forward_from<I + 1>(y);
    else return y;
  }
  template <std::size_t I>
  const DeviceArray<Scalar, Ctx>& backward_from(const DeviceArray<Scalar, Ctx>& dy, bool need_input_gradient) {
    if constexpr (I == 0) {
      return std::get<0>(layers_).backward(dy, need_input_gradient);
    } else {
      const auto& dx = std::get<I>(layers_).backward(dy, true);
      return backward_from<I - 1>(dx, need_input_gradient);
    }
  }

  std::tuple<Layers...> layers_;
};

/// Maps a CPU layer type to its device mirror (`type`). Dense, every activation and Sequential
/// stacks of them have one; a layer without one stops compilation with a clear message.
template <typename Layer, typename Ctx>
struct DeviceLayerOf {
  static_assert(sizeof(Layer) == 0,
                "mlvae::device: this layer has no device mirror yet (Dense, the activations, Conv2d, ConvTranspose2d, "
                "Reshape and Sequential have one; include mlvae/device/conv.hpp for the conv layers)");
};
/// Dense → DeviceDense.
template <typename T, typename Ctx>
struct DeviceLayerOf<Dense<T>, Ctx> {
  using type = DeviceDense<T, Ctx>;  ///< the mirror
};
/// Any activation → DeviceElementwise.
template <typename T, typename Op, typename Ctx>
struct DeviceLayerOf<Elementwise<T, Op>, Ctx> {
  using type = DeviceElementwise<T, Ctx, Op>;  ///< the mirror
};
/// LeakyRelu → DeviceElementwise with its slope.
template <typename T, typename Ctx>
struct DeviceLayerOf<LeakyRelu<T>, Ctx> {
  using type = DeviceElementwise<T, Ctx, activation::LeakyReluOp>;  ///< the mirror
};
/// Sequential → DeviceSequential of the mirrors.
template <typename... Layers, typename Ctx>
struct DeviceLayerOf<Sequential<Layers...>, Ctx> {
  using type = DeviceSequential<Ctx, typename DeviceLayerOf<Layers, Ctx>::type...>;  ///< the mirror
};
/// The device mirror of CPU layer type `Layer` in context type `Ctx`.
template <typename Layer, typename Ctx>
using device_layer_t = typename DeviceLayerOf<Layer, Ctx>::type;

}  // namespace mlvae::device
