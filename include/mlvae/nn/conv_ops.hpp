/// @file
/// mlvae/nn/conv_ops.hpp — the host's operations under the convolution layers written once
/// (nn/conv2d.hpp, nn/conv_transpose2d.hpp): im2col / col2im (nn/im2col.hpp), the layout change
/// between "one column per observation" (CHW) and "one row per output position" (the GEMM's
/// layout) with the bias and a fused ReLU, and the bias gradients' reductions. A device supplies
/// the same calls on its arrays (device/conv.hpp); the layer's arithmetic and order are the same.
#pragma once

#include "mlvae/core/types.hpp"
#include "mlvae/nn/gemm.hpp"
#include "mlvae/nn/im2col.hpp"
#include "mlvae/nn/layer.hpp"

#include <algorithm>
#include <cstddef>
#include <limits>
#include <type_traits>

namespace mlvae {

namespace detail {
/// A convolution layer's workspace bound on context `Ctx`: default_conv_workspace_bytes on the host
/// (chunks that stay in cache), none on a device (one chunk: the whole batch in one product).
template <typename Ctx>
constexpr std::size_t conv_workspace_limit() {
  return std::is_same_v<Ctx, HostContext> ? default_conv_workspace_bytes : std::numeric_limits<std::size_t>::max();
}

/// What Conv2d and ConvTranspose2d share; each adds its shapes, forward and backward. The geometry
/// is the convolution's (for the transposed layer, that of the convolution it is the adjoint of);
/// W is `weight_rows` x geometry().patch_size(), then the bias, one per output channel.
template <typename T, typename Ctx>
class ConvLayerBase : public WeightAndBias<T> {
public:
  /// The floating-point type of parameters and activations.
  using Scalar = T;
  /// What the layer takes and returns: Matrix<T> on the host, the context's DeviceArray on a device.
  using Array = typename Ctx::template Array<T>;

  /// Kernel side k.
  Index kernel() const { return geom_.kernel; }
  /// Stride s.
  Index stride() const { return geom_.stride; }
  /// Zero padding p on each side (the transposed layer removes it from each side of its output).
  Index padding() const { return geom_.padding; }
  /// The initialisation scheme of W.
  Init init() const { return init_; }
  /// The geometry of the convolution (the transposed layer's: of its adjoint, output image → input grid).
  const ConvGeometry& geometry() const { return geom_; }

  /// Bound on the workspace bytes (at least one observation's worth is always used).
  std::size_t workspace_limit() const { return workspace_limit_; }
  /// Sets the workspace bound in bytes; the chunk is re-planned on the next call.
  void set_workspace_limit(std::size_t bytes) {
    workspace_limit_ = bytes;
    batch_ = -1;
  }
  /// Arithmetic of the layer's products, forward and backward: Float32 (default) or BFloat16
  /// (nn/gemm_bf16.hpp). Raises ArgumentError for BFloat16 unless T is float and the CPU has AMX-BF16.
  void set_precision(Precision p) { products_.set_precision(p); }
  /// The arithmetic of the layer's products.
  Precision precision() const { return products_.precision(); }
  /// Observations per chunk chosen for the current batch size (0 before the first forward).
  Index chunk_size() const { return chunk_; }

  /// The output of the last forward() (output_size() x batch).
  const Array& output() const { return output_; }

protected:
  ConvLayerBase(Ctx& ctx, const ConvGeometry& geom, Index out_channels, Init init)
      : ctx_(&ctx), geom_(geom), out_channels_(out_channels), init_(init), output_(make_array<Array>(ctx)),
        input_grad_(make_array<Array>(ctx)), cols_(make_array<Array>(ctx)), rows_(make_array<Array>(ctx)),
        bias_sum_(make_array<Array>(ctx)) {}

  /// Maps W (`weight_rows` x patch_size()) then b (out_channels), and their gradients, onto
  /// `values` / `gradients` (in the context's memory).
  void bind_parameters(T* values, T* gradients, Index weight_rows) {
    this->bind_weight_and_bias(values, gradients, weight_rows, geom_.patch_size(), out_channels_);
  }

  Ctx* ctx_;
  ConvGeometry geom_;
  Index out_channels_;
  Init init_;
  const Array* input_ = nullptr;
  LayerProducts<T, Ctx> products_;
  Array output_, input_grad_;
  std::size_t workspace_limit_ = conv_workspace_limit<Ctx>();
  Index batch_ = -1, chunk_ = 0;  // the batch size the workspaces are planned for, and its chunk
  Array cols_, rows_, bias_sum_;  // the patch matrix, the per-position rows, the bias sums' scratch
};
}  // namespace detail

/// im2col of `count` images at `images` into `cols` ((count·P) × (C·k·k), nn/im2col.hpp).
template <typename T>
void im2col(HostContext&, const ConvGeometry& g, const T* images, Index count, T* cols) {
  im2col(g, images, count, cols);
}
/// col2im of `cols` into `count` images at `images`: added to them, or written with `assign`.
template <typename T>
void col2im(HostContext&, const ConvGeometry& g, const T* cols, Index count, T* images, bool assign) {
  col2im(g, cols, count, images, assign);
}

/// Observation j's output column (P positions × C channels, channel-major: CHW) from rows
/// [j·P, (j+1)·P) of `rows` ((count·P) × C, column-major), for j < count, plus `bias` (C, or null),
/// then max(·, 0) when `relu`.
template <typename T>
void positions_to_channels(HostContext&, const T* rows, Index positions, Index channels, Index count, const T* bias,
                           bool relu, T* out) {
  const Index P = positions, C = channels;
  const Eigen::Map<const Matrix<T>> all(rows, count * P, C);
  parallel_columns(count, P * C, [&](Index begin, Index end) {
    for (Index j = begin; j < end; ++j) {
      MatrixMap<T> o(out + j * P * C, P, C);
      const auto y = all.middleRows(j * P, P);
      if (bias == nullptr) {
        o = y;
      } else {
        const auto b = Eigen::Map<const RowVector<T>>(bias, C);
        if (relu)
          o.noalias() = (y.rowwise() + b).cwiseMax(T(0));
        else
          o.noalias() = y.rowwise() + b;
      }
    }
  });
}

/// The inverse layout change: rows [j·P, (j+1)·P) of `rows` ((count·P) × C) from observation j's
/// column of `in` (P × C, CHW), masked by [relu_out > 0] when `relu_out` (same layout as `in`) is given.
template <typename T>
void channels_to_positions(HostContext&, const T* in, const T* relu_out, Index positions, Index channels, Index count,
                           T* rows) {
  const Index P = positions, C = channels;
  MatrixMap<T> all(rows, count * P, C);
  parallel_columns(count, P * C, [&](Index begin, Index end) {
    for (Index j = begin; j < end; ++j) {
      const Eigen::Map<const Matrix<T>> x(in + j * P * C, P, C);
      if (relu_out != nullptr) {
        const Eigen::Map<const Matrix<T>> y(relu_out + j * P * C, P, C);
        all.middleRows(j * P, P) = (y.array() > T(0)).select(x, T(0));
      } else {
        all.middleRows(j * P, P) = x;
      }
    }
  });
}

/// Every channel plane of `count` CHW columns at `out` (planes of `plane` pixels, C channels) set
/// to its bias value.
template <typename T>
void set_channels(HostContext&, T* out, const T* bias, Index plane, Index channels, Index count) {
  for (Index j = 0; j < count; ++j)
    for (Index c = 0; c < channels; ++c)
      std::fill_n(out + (j * channels + c) * plane, plane, bias[c]);
}

/// acc (n) += the sum of each column of the m × n matrix at `a` (column-major).
template <typename T>
void add_column_sums(HostContext&, T* acc, const T* a, Index m, Index n, Matrix<T>& /*scratch*/) {
  VectorMap<T>(acc, n) += Eigen::Map<const Matrix<T>>(a, m, n).colwise().sum().transpose();
}

/// acc (C) += the sum of every channel plane (`plane` pixels) of `count` CHW columns at `dy`.
template <typename T>
void add_channel_sums(HostContext&, T* acc, const T* dy, Index plane, Index channels, Index count,
                      Matrix<T>& /*scratch*/) {
  for (Index j = 0; j < count; ++j)
    VectorMap<T>(acc, channels) +=
        Eigen::Map<const Matrix<T>>(dy + j * plane * channels, plane, channels).colwise().sum().transpose();
}

}  // namespace mlvae
