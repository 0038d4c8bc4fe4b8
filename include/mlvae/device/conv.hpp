/// @file
/// mlvae/device/conv.hpp — the device's operations under the convolution layers written once
/// (nn/conv2d.hpp, nn/conv_transpose2d.hpp; the host's are nn/conv_ops.hpp). im2col and its adjoint
/// col2im are Tensor generator expressions (each output element computed from the geometry of
/// nn/im2col.hpp; col2im gathers, so no atomics are needed), the layout changes between "one column
/// per observation" and "one row per output position" are Tensor shuffles, and the reductions of
/// the bias gradients go through a scratch array. On a device a layer's chunk is the whole batch.
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/elementwise.hpp"
#include "mlvae/device/context.hpp"
#include "mlvae/device/ops.hpp"
#include "mlvae/nn/im2col.hpp"

namespace mlvae::device {

/// The index arithmetic of one convolution geometry, copyable into device code.
struct ConvIndexing {
  Index channels, height, width, kernel, stride, padding, out_height, out_width;
  /// From a validated geometry (nn/im2col.hpp).
  explicit ConvIndexing(const ConvGeometry& g)
      : channels(g.input.channels), height(g.input.height), width(g.input.width), kernel(g.kernel),
        stride(g.stride), padding(g.padding), out_height(g.out_height), out_width(g.out_width) {}
  /// OH·OW.
  EIGEN_DEVICE_FUNC Index positions() const { return out_height * out_width; }
  /// C·H·W.
  EIGEN_DEVICE_FUNC Index image_size() const { return channels * height * width; }
};

/// im2col as a generator: element (n·P + oh·OW + ow, (c·k + i)·k + j) of the (N·P) × (C·k·k) patch
/// matrix is pixel (c, oh·s − p + i, ow·s − p + j) of image n, or 0 in the padding.
template <typename T>
struct Im2colGenerator {
  ConvIndexing g;    ///< the geometry
  const T* images;   ///< N images back to back (device memory)
  /// The patch-matrix element at (row, column).
  EIGEN_DEVICE_FUNC T operator()(const Eigen::array<Index, 2>& at) const {
    const Index P = g.positions(), K = g.kernel;
    const Index n = at[0] / P, q = at[0] - n * P, oh = q / g.out_width, ow = q - oh * g.out_width;
    const Index kj = at[1] % K, rest = at[1] / K, ki = rest % K, c = rest / K;
    const Index ih = oh * g.stride - g.padding + ki, iw = ow * g.stride - g.padding + kj;
    if (ih < 0 || ih >= g.height || iw < 0 || iw >= g.width) return T(0);
    return images[n * g.image_size() + (c * g.height + ih) * g.width + iw];
  }
};

/// col2im (the adjoint of im2col) as a gather: image element ((c·H + h)·W + w, n) is the sum of
/// every patch-matrix entry read from that pixel.
template <typename T>
struct Col2imGenerator {
  ConvIndexing g;    ///< the geometry
  const T* cols;     ///< the (N·P) × (C·k·k) patch matrix (device memory)
  Index rows;        ///< N·P, its leading dimension
  /// The image element at (row in CHW, observation).
  EIGEN_DEVICE_FUNC T operator()(const Eigen::array<Index, 2>& at) const {
    const Index plane = g.height * g.width, K = g.kernel, s = g.stride;
    const Index c = at[0] / plane, pixel = at[0] - c * plane, h = pixel / g.width, w = pixel - h * g.width;
    const Index n = at[1];
    T sum = T(0);
    for (Index ki = 0; ki < K; ++ki) {
      const Index oh_s = h + g.padding - ki;
      if (oh_s < 0 || oh_s % s != 0 || oh_s / s >= g.out_height) continue;
      for (Index kj = 0; kj < K; ++kj) {
        const Index ow_s = w + g.padding - kj;
        if (ow_s < 0 || ow_s % s != 0 || ow_s / s >= g.out_width) continue;
        const Index row = n * g.positions() + (oh_s / s) * g.out_width + ow_s / s;
        sum += cols[((c * K + ki) * K + kj) * rows + row];
      }
    }
    return sum;
  }
};

/// im2col of `count` images at `images` into `cols` ((count·P) × (C·k·k)), on the device.
template <typename T, typename Ctx>
void im2col(Ctx& ctx, const ConvGeometry& g, const T* images, Index count, T* cols) {
  TensorMatrix<T> out(cols, count * g.positions(), g.patch_size());
  assign(ctx.device(), out, out.generate(Im2colGenerator<T>{ConvIndexing(g), images}));
}

/// col2im of `cols` into `count` images at `images`, added to them or, with `assign_sum`, written.
template <typename T, typename Ctx>
void col2im(Ctx& ctx, const ConvGeometry& g, const T* cols, Index count, T* images, bool assign_sum) {
  TensorMatrix<T> out(images, g.input.size(), count);
  const auto sum = out.generate(Col2imGenerator<T>{ConvIndexing(g), cols, count * g.positions()});
  if (assign_sum)
    assign(ctx.device(), out, sum);
  else
    assign(ctx.device(), out, out + sum);
}

/// Observation j's CHW column of `out` (P × C) from rows [j·P, (j+1)·P) of `rows` ((count·P) × C),
/// plus `bias` (C, or null), then max(·, 0) when `relu` (nn/conv_ops.hpp has the host's).
template <typename T, typename Ctx>
void positions_to_channels(Ctx& ctx, const T* rows, Index positions, Index channels, Index count, const T* bias,
                           bool relu, T* out) {
  const Index P = positions, C = channels;
  auto dst = TensorMatrix<T>(out, P * C, count).reshape(Dims3{P, C, count});
  const auto moved = TensorMatrix<const T>(rows, count * P, C).reshape(Dims3{P, count, C}).shuffle(Dims3{0, 2, 1});
  if (bias == nullptr) {
    assign(ctx.device(), dst, moved);
    return;
  }
  const auto b = TensorMatrix<const T>(bias, C, 1).reshape(Dims3{1, C, 1}).broadcast(Dims3{P, 1, count});
  if (relu)
    assign(ctx.device(), dst, (moved + b).cwiseMax(T(0)));
  else
    assign(ctx.device(), dst, moved + b);
}

/// Rows [j·P, (j+1)·P) of `rows` ((count·P) × C) from observation j's CHW column of `in`, masked by
/// [relu_out > 0] when `relu_out` is given.
template <typename T, typename Ctx>
void channels_to_positions(Ctx& ctx, const T* in, const T* relu_out, Index positions, Index channels, Index count,
                           T* rows) {
  const Index P = positions, C = channels;
  auto dst = TensorMatrix<T>(rows, count * P, C).reshape(Dims3{P, count, C});
  const auto moved = TensorMatrix<const T>(in, P * C, count).reshape(Dims3{P, C, count}).shuffle(Dims3{0, 2, 1});
  if (relu_out == nullptr) {
    assign(ctx.device(), dst, moved);
    return;
  }
  const auto y = TensorMatrix<const T>(relu_out, P * C, count).reshape(Dims3{P, C, count}).shuffle(Dims3{0, 2, 1});
  assign(ctx.device(), dst, ew::where_positive_else_zero(y, moved));
}

/// Every channel plane of `count` CHW columns at `out` set to its bias value.
template <typename T, typename Ctx>
void set_channels(Ctx& ctx, T* out, const T* bias, Index plane, Index channels, Index count) {
  assign(ctx.device(), TensorMatrix<T>(out, plane * channels, count).reshape(Dims3{plane, channels, count}),
         TensorMatrix<const T>(bias, channels, 1).reshape(Dims3{1, channels, 1}).broadcast(Dims3{plane, 1, count}));
}

/// acc (n) += the sum of each column of the m × n matrix at `a`, through `scratch` (a reduction that
/// is not the root of an assignment would make Eigen's GPU evaluator allocate on every call).
template <typename T, typename Ctx>
void add_column_sums(Ctx& ctx, T* acc, const T* a, Index m, Index n, DeviceArray<T, Ctx>& scratch) {
  scratch.resize(n, 1);
  assign(ctx.device(), TensorVector<T>(scratch.data(), n), TensorMatrix<const T>(a, m, n).sum(Dims1{0}));
  TensorVector<T> sum(acc, n);
  assign(ctx.device(), sum, sum + TensorVector<const T>(scratch.data(), n));
}

/// acc (C) += the sum of every channel plane (`plane` pixels) of `count` CHW columns at `dy`, in two
/// partial reductions (over the plane, then over the observations) through `scratch`.
template <typename T, typename Ctx>
void add_channel_sums(Ctx& ctx, T* acc, const T* dy, Index plane, Index channels, Index count,
                      DeviceArray<T, Ctx>& scratch) {
  const Index partials = channels * count;
  scratch.resize(partials + channels, 1);
  T* partial = scratch.data();
  T* sum = partial + partials;
  assign(ctx.device(), TensorVector<T>(partial, partials), TensorMatrix<const T>(dy, plane, partials).sum(Dims1{0}));
  assign(ctx.device(), TensorVector<T>(sum, channels), TensorMatrix<const T>(partial, channels, count).sum(Dims1{1}));
  TensorVector<T> total(acc, channels);
  assign(ctx.device(), total, total + TensorVector<const T>(sum, channels));
}

}  // namespace mlvae::device
