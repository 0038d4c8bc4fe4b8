/// @file
/// mlvae/nn/conv2d.hpp — batched 2-D convolution (cross-correlation, as in PyTorch) by im2col + GEMM,
/// on the CPU or any device (one definition):
///   y(o, oh, ow) = b(o) + Σ_{c,i,j} W(o, (c·k+i)·k+j) · x(c, oh·s − p + i, ow·s − p + j),
/// OH = ⌊(H + 2p − k)/s⌋ + 1. Backward: dW += dYᵀ·cols, db += Σ dY, dx = col2im(dY·W).
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/nn/activations.hpp"
#include "mlvae/nn/conv_ops.hpp"
#include "mlvae/nn/gemm.hpp"
#include "mlvae/nn/im2col.hpp"
#include "mlvae/nn/layer.hpp"

#include <algorithm>
#include <cstddef>
#include <limits>
#include <string>
#include <type_traits>

namespace mlvae {

/// 2-D convolution over a batch of images, one image per column in CHW order (see ImageShape).
///
/// Parameters (bound into the flat store like Dense): the weight W, out_channels × (C·k·k)
/// column-major with W(o, (c·k + i)·k + j) = PyTorch's weight[o][c][i][j], then the bias (out_channels).
/// The output column is out_channels × OH × OW, again CHW.
///
/// Work is done on chunks of observations: the im2col matrices of a chunk sit side by side
/// ((chunk·OH·OW) × (C·k·k)), so each chunk is one large GEMM. The chunk is the largest that keeps
/// the layer's workspaces within `workspace_limit()` bytes (on the host `default_conv_workspace_bytes`,
/// 4 MiB: chunks whose patches stay in cache between im2col, the product and col2im; on a device
/// the whole batch); workspaces are resized only when the batch size changes. When the whole batch
/// fits in one chunk, the patch matrix built by `forward` is reused by `backward`.
///
/// Written once for every device: `Ctx` supplies the arrays, the products and the operations of
/// nn/conv_ops.hpp (HostContext; a device context, device/conv.hpp). Conv2d<T> is the CPU layer.
template <typename T, typename Ctx = HostContext>
class BasicConv2d : public detail::ConvLayerBase<T, Ctx> {
  using Base = detail::ConvLayerBase<T, Ctx>;

public:
  /// What the layer takes and returns: Matrix<T> on the host, the context's DeviceArray on a device.
  using typename Base::Array;

  /// A convolution of `in` images to `out_channels` channels with a kernel × kernel kernel, on the host.
  /// Throws ShapeError when a size is not positive or the output would be empty.
  BasicConv2d(ImageShape in, Index out_channels, Index kernel, Index stride = 1, Index padding = 0,
              Init init = Init::HeNormal)
      : BasicConv2d(HostContext::instance(), in, out_channels, kernel, stride, padding, init) {}
  /// The layer `other` (its geometry) on `ctx`, which must outlive it: a model's copy on a device
  /// (device/layers.hpp) has the same parameter layout.
  template <typename OtherCtx>
  BasicConv2d(Ctx& ctx, const BasicConv2d<T, OtherCtx>& other)
      : BasicConv2d(ctx, other.input_shape(), other.output_shape().channels, other.kernel(), other.stride(),
                    other.padding(), other.init()) {}

  /// C·H·W of the input image.
  Index input_size() const { return geom_.input.size(); }
  /// out_channels·OH·OW.
  Index output_size() const { return out_channels_ * geom_.positions(); }
  /// out_channels·C·k·k weights plus out_channels biases.
  Index parameter_count() const { return out_channels_ * geom_.patch_size() + out_channels_; }
  /// e.g. "Conv2d(1x28x28->32x14x14,k4,s2,p1)".
  std::string describe() const {
    return detail::concat("Conv2d(", input_shape().describe(), "->", output_shape().describe(), ",k", geom_.kernel,
                          ",s", geom_.stride, ",p", geom_.padding, ")");
  }
  /// The input image shape C × H × W.
  ImageShape input_shape() const { return geom_.input; }
  /// The output image shape out_channels × OH × OW.
  ImageShape output_shape() const { return {out_channels_, geom_.out_height, geom_.out_width}; }
  /// Maps W (out_channels x C·k·k, see weight()) then b (out_channels), and their gradients, onto
  /// `values` / `gradients` (in the context's memory).
  void bind(T* values, T* gradients) { this->bind_parameters(values, gradients, out_channels_); }

  /// Fan-in C·k·k, fan-out out_channels·k·k; the bias starts at zero (host memory).
  void initialize(Rng& rng) {
    const Index kk = geom_.kernel * geom_.kernel;
    initialize_weights(weight_, init_, geom_.patch_size(), out_channels_ * kk, rng);
    bias_.setZero();
  }

  /// Convolves x (C·H·W x batch, CHW columns); returns out_channels·OH·OW x batch. Throws ShapeError on a wrong row count.
  const Array& forward(const Array& x) {
    run_forward(x, output_, false);
    return output_;
  }

  /// Whether the layer applies a following activation Op itself (nn/sequential.hpp fuses the pair): ReLU.
  template <typename Op>
  static constexpr bool fuses_activation = std::is_same_v<Op, activation::ReluOp>;
  /// Fused with a following ReLU: writes max(conv(x), 0) into `out` (shaped by the caller,
  /// output_size() x batch) in the pass that adds the bias, where the two layers would make three
  /// passes. output() is not written. Throws ShapeError on a wrong row count.
  void forward_activation(const Array& x, Array& out, const activation::ReluOp&) { run_forward(x, out, true); }

  /// Adds dW and db to the gradients; returns dx (C·H·W x batch; empty unless need_input_gradient).
  /// Throws ShapeError before forward() or when dy is not output_size() x batch.
  const Array& backward(const Array& dy, bool need_input_gradient = true) {
    return run_backward(dy, nullptr, need_input_gradient);
  }
  /// Backward of forward_activation: dy is the gradient at the ReLU's output y (the `out` of
  /// forward_activation); the ReLU's derivative [y > 0] is applied as dy is read. Same results as the
  /// two layers' backward.
  const Array& backward_activation(const Array& dy, const Array& y, const activation::ReluOp&,
                                   bool need_input_gradient = true) {
    require<ShapeError>(y.rows() == output_size() && y.cols() == dy.cols(), described(*this),
                        ": expected the ReLU output ", output_size(), "x", dy.cols(), ", found ", y.rows(), "x",
                        y.cols());
    return run_backward(dy, &y, need_input_gradient);
  }

private:
  using Base::batch_, Base::bias_, Base::bias_grad_, Base::bias_sum_, Base::chunk_, Base::cols_, Base::ctx_,
      Base::geom_, Base::init_, Base::input_, Base::input_grad_, Base::out_channels_, Base::output_,
      Base::products_, Base::rows_, Base::weight_, Base::weight_grad_, Base::workspace_limit_;

  BasicConv2d(Ctx& ctx, ImageShape in, Index out_channels, Index kernel, Index stride, Index padding, Init init)
      : Base(ctx, make_conv_geometry(in, kernel, stride, padding, "Conv2d"), out_channels, init),
        dcols_(detail::make_array<Array>(ctx)) {
    require<ShapeError>(out_channels > 0, "Conv2d: out_channels must be positive, found ", out_channels);
  }

  void run_forward(const Array& x, Array& output, bool relu) {
    require<ShapeError>(x.rows() == input_size(), described(*this), ": expected input with ", input_size(),
                        " rows (", described(input_shape()), "), found ", x.rows(), " (x is ", x.rows(), "x", x.cols(),
                        ")");
    input_ = &x;
    const Index n = x.cols(), P = geom_.positions(), PK = geom_.patch_size(), OC = out_channels_;
    plan(n);
    ensure_shape(output, output_size(), n);
    for (Index start = 0; start < n; start += chunk_) {
      const Index count = std::min(chunk_, n - start);
      im2col(*ctx_, geom_, x.data() + start * input_size(), count, cols_.data());
      ctx_->gemm(products_.forward, Transpose::No, Transpose::Yes, count * P, OC, PK, cols_.data(), count * P,
                 weight_.data(), OC, rows_.data(), count * P, false);  // y = cols Wᵀ
      positions_to_channels(*ctx_, static_cast<const T*>(rows_.data()), P, OC, count, bias_.data(), relu,
                            output.data() + start * output_size());
    }
    cols_hold_batch_ = chunk_ >= n;
  }

  // relu_out: the fused ReLU's output (dy is masked by [relu_out > 0]), or null.
  const Array& run_backward(const Array& dy, const Array* relu_out, bool need_input_gradient) {
    require<ShapeError>(input_ != nullptr, described(*this), ": backward called before forward");
    const Index n = input_->cols(), P = geom_.positions(), PK = geom_.patch_size(), OC = out_channels_;
    require<ShapeError>(dy.rows() == output_size() && dy.cols() == n, described(*this), ": expected gradient ",
                        output_size(), "x", n, ", found ", dy.rows(), "x", dy.cols());
    plan(n);
    if (need_input_gradient) ensure_shape(input_grad_, input_size(), n);  // col2im assigns: no zeroing pass
    for (Index start = 0; start < n; start += chunk_) {
      const Index count = std::min(chunk_, n - start);
      const Index offset = start * output_size();
      if (!cols_hold_batch_) im2col(*ctx_, geom_, input_->data() + start * input_size(), count, cols_.data());
      channels_to_positions(*ctx_, dy.data() + offset, relu_out ? relu_out->data() + offset : nullptr, P, OC, count,
                            rows_.data());
      ctx_->gemm(products_.weight_grad, Transpose::Yes, Transpose::No, OC, PK, count * P, rows_.data(), count * P,
                 cols_.data(), count * P, weight_grad_.data(), OC, true);  // dW += dyᵀ cols
      add_column_sums(*ctx_, bias_grad_.data(), static_cast<const T*>(rows_.data()), count * P, OC, bias_sum_);
      if (need_input_gradient) {
        ctx_->gemm(products_.input_grad, Transpose::No, Transpose::No, count * P, PK, OC, rows_.data(), count * P,
                   weight_.data(), OC, dcols_.data(), count * P, false);  // dcols = dy W
        col2im(*ctx_, geom_, static_cast<const T*>(dcols_.data()), count, input_grad_.data() + start * input_size(),
               true);
      }
    }
    return input_grad_;
  }

  /// Chooses the chunk for batch size `n` and sizes the workspaces (only when `n` changes).
  void plan(Index n) {
    if (n == batch_) return;
    const Index P = geom_.positions(), PK = geom_.patch_size();
    const std::size_t per_observation = static_cast<std::size_t>(P * (2 * PK + out_channels_)) * sizeof(T);
    chunk_ = workspace_chunk(n, per_observation, workspace_limit_);
    ensure_shape(cols_, chunk_ * P * PK, 1);
    ensure_shape(dcols_, chunk_ * P * PK, 1);
    ensure_shape(rows_, chunk_ * P * out_channels_, 1);
    batch_ = n;
    cols_hold_batch_ = false;
  }

  // Workspaces (with the base's patch matrix cols_, (chunk·P) × C·k·k, and per-position rows rows_,
  // chunk·P × OC): the patch matrix's gradient.
  bool cols_hold_batch_ = false;
  Array dcols_;
};

/// The CPU's 2-D convolution layer.
template <typename T>
using Conv2d = BasicConv2d<T, HostContext>;

}  // namespace mlvae
