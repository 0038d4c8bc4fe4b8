/// @file
/// mlvae/device/layers.hpp — the device operations that the layers written once call (elementwise,
/// set_columns, add_row_sums on DeviceArray and Tensor expressions; the convolutions' in device/conv.hpp;
/// products go through the context: mlvae's Gemm on the CPU device, cuBLAS on the GPU), and
/// `device_layer_t<Layer, Ctx>`, which maps a CPU layer type to the same layer on a device: every
/// layer (Dense, the activations, Conv2d, ConvTranspose2d, Reshape) is nn/'s own class on the
/// device's context, stacks are nn/sequential.hpp's Sequential itself. A device layer is built
/// from the CPU layer (same sizes, same place in the parameter vector), so a CPU model and its device
/// copy share one parameter layout.
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/device/context.hpp"
#include "mlvae/device/conv.hpp"
#include "mlvae/device/ops.hpp"
#include "mlvae/nn/activations.hpp"
#include "mlvae/nn/conv2d.hpp"
#include "mlvae/nn/conv_transpose2d.hpp"
#include "mlvae/nn/dense.hpp"
#include "mlvae/nn/reshape.hpp"
#include "mlvae/nn/sequential.hpp"

#include <string>

namespace mlvae::device {

/// Every column of `out` (rows x N) set to the vector at `v` (rows): the device's set_columns
/// (nn/gemm.hpp has the host's), for a layer written once (nn/dense.hpp).
template <typename T, typename Ctx>
void set_columns(Ctx& ctx, DeviceArray<T, Ctx>& out, const T* v) {
  assign(ctx.device(), out.tensor(), TensorMatrix<const T>(v, out.rows(), 1).broadcast(Dims2{1, out.cols()}));
}
/// acc (rows) += the sum of each row of `dy` (rows x N), through `scratch`: a reduction that is not
/// the root of an assignment would make Eigen's GPU evaluator allocate a temporary on every call.
template <typename T, typename Ctx>
void add_row_sums(Ctx& ctx, T* acc, const DeviceArray<T, Ctx>& dy, DeviceArray<T, Ctx>& scratch) {
  scratch.resize(dy.rows(), 1);
  assign(ctx.device(), TensorVector<T>(scratch.data(), dy.rows()), dy.tensor().sum(Dims1{1}));
  TensorMatrix<T> sum(acc, dy.rows(), 1);
  assign(ctx.device(), sum, sum + scratch.tensor());
}

/// out = f(out + b) element-wise, the vector at `b` (rows) added to every column: the device's
/// bias_activation (nn/gemm.hpp has the host's), for Dense fused with its activation (nn/dense.hpp).
template <typename T, typename Ctx, typename F>
void bias_activation(Ctx& ctx, DeviceArray<T, Ctx>& out, const T* b, F f) {
  assign(ctx.device(), out.tensor(),
         f(out.tensor() + TensorMatrix<const T>(b, out.rows(), 1).broadcast(Dims2{1, out.cols()})));
}
/// dx = f(dy, y) element-wise, then acc (rows) += the row sums of dx: the device's
/// activation_gradient (nn/gemm.hpp has the host's, in one pass).
template <typename T, typename Ctx, typename F>
void activation_gradient(Ctx& ctx, DeviceArray<T, Ctx>& dx, T* acc, F f, const DeviceArray<T, Ctx>& dy,
                         const DeviceArray<T, Ctx>& y, DeviceArray<T, Ctx>& scratch) {
  assign(ctx.device(), dx.tensor(), f(dy.tensor(), y.tensor()));
  add_row_sums(ctx, acc, dx, scratch);
}

/// out = f(ins...) element by element on the device, `f` taking and returning Tensor expressions:
/// the device's elementwise (nn/gemm.hpp has the host's), for layers written once (nn/activations.hpp).
template <typename T, typename Ctx, typename F, typename... In>
void elementwise(Ctx& ctx, DeviceArray<T, Ctx>& out, F f, const In&... ins) {
  assign(ctx.device(), out.tensor(), f(ins.tensor()...));
}

/// A kernel f(r, c) as an Eigen Tensor generator (the coordinates of the element it computes).
template <typename F>
struct KernelGenerator {
  F f;  ///< the kernel
  /// Element (row, column).
  EIGEN_DEVICE_FUNC auto operator()(const Eigen::array<Index, 2>& at) const {
    return f(at[0], at[1]);
  }
};
/// out(r, c) = f(r, c) for the rows x cols matrix at `out` (leading dimension `ld`) on the device:
/// the device's generate_at (nn/gemm.hpp has the host's), for kernels written once.
template <typename T, typename Ctx, typename F>
void generate_at(Ctx& ctx, T* out, Index rows, Index cols, Index ld, const F& f) {
  TensorMatrix<T> all(out, ld, cols);
  assign(ctx.device(), all.slice(Dims2{0, 0}, Dims2{rows, cols}),
         TensorMatrix<T>(out, rows, cols).generate(KernelGenerator<F>{f}));
}

/// Maps a CPU layer type to the same layer on a device (`type`). Every layer of nn/ and Sequential
/// stacks of them have one; a layer without one stops compilation with a clear message.
template <typename Layer, typename Ctx>
struct DeviceLayerOf {
  static_assert(sizeof(Layer) == 0,
                "mlvae::device: this layer has no device form (Dense, the activations, Conv2d, ConvTranspose2d, "
                "Reshape, Flatten and Sequential have one)");
};
/// Dense → the same layer on the device (nn/dense.hpp's BasicDense, written once).
template <typename T, typename Ctx>
struct DeviceLayerOf<Dense<T>, Ctx> {
  using type = BasicDense<T, Ctx>;  ///< the mirror
};
/// Any activation → the same activation on the device (nn/activations.hpp, written once).
template <typename T, typename Op, typename Ctx>
struct DeviceLayerOf<Elementwise<T, Op>, Ctx> {
  using type = BasicElementwise<T, Op, Ctx>;  ///< the mirror
};
/// LeakyRelu → the leaky ReLU on the device, with its slope.
template <typename T, typename Ctx>
struct DeviceLayerOf<LeakyRelu<T>, Ctx> {
  using type = BasicElementwise<T, activation::LeakyReluOp, Ctx>;  ///< the mirror
};
/// Conv2d → the same layer on the device (nn/conv2d.hpp, written once).
template <typename T, typename Ctx>
struct DeviceLayerOf<Conv2d<T>, Ctx> {
  using type = BasicConv2d<T, Ctx>;  ///< the mirror
};
/// ConvTranspose2d → the same layer on the device (nn/conv_transpose2d.hpp, written once).
template <typename T, typename Ctx>
struct DeviceLayerOf<ConvTranspose2d<T>, Ctx> {
  using type = BasicConvTranspose2d<T, Ctx>;  ///< the mirror
};
/// Reshape → the same layer on the device (nn/reshape.hpp).
template <typename T, typename Ctx>
struct DeviceLayerOf<Reshape<T>, Ctx> {
  using type = BasicReshape<T, Ctx>;  ///< the mirror
};
/// Flatten → Reshape on the device.
template <typename T, typename Ctx>
struct DeviceLayerOf<Flatten<T>, Ctx> {
  using type = BasicReshape<T, Ctx>;  ///< the mirror
};
/// Sequential → the same Sequential of the mirrors (built layer by layer from the CPU stack).
template <typename... Layers, typename Ctx>
struct DeviceLayerOf<Sequential<Layers...>, Ctx> {
  using type = Sequential<typename DeviceLayerOf<Layers, Ctx>::type...>;  ///< the mirror
};
/// The device mirror of CPU layer type `Layer` in context type `Ctx`.
template <typename Layer, typename Ctx>
using device_layer_t = typename DeviceLayerOf<Layer, Ctx>::type;

}  // namespace mlvae::device
