/// @file
/// mlvae/nn/conv_transpose2d.hpp — batched 2-D transposed convolution ("deconvolution"), the adjoint
/// of Conv2d: y = col2im(x·W) + b, i.e. y(o, ih·s − p + i, iw·s − p + j) += Σ_c W(c, (o·k+i)·k+j) x(c, ih, iw),
/// OH = (H − 1)·s − 2p + k + output_padding (PyTorch's convention). Backward: cols = im2col(dY),
/// dW += Xᵀ·cols, db += Σ dY, dx = cols·Wᵀ. Written once for the CPU and every device.
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/nn/conv_ops.hpp"
#include "mlvae/nn/gemm.hpp"
#include "mlvae/nn/im2col.hpp"
#include "mlvae/nn/layer.hpp"

#include <algorithm>
#include <cstddef>
#include <string>

namespace mlvae {

/// Transposed 2-D convolution over a batch of images, one image per column in CHW order.
///
/// With input C_in × H × W it produces C_out × OH × OW with
///     OH = (H − 1)·stride − 2·padding + kernel + output_padding   (same for OW),
/// exactly PyTorch's `ConvTranspose2d` (dilation 1, groups 1). `output_padding` (< stride) adds
/// rows/columns at the bottom/right to pick among the output sizes a stride-s convolution maps to H.
///
/// Parameters: the weight W, C_in × (C_out·k·k) column-major with W(c, (o·k + i)·k + j) = PyTorch's
/// weight[c][o][i][j], then the bias (C_out). With the same weight matrix this layer is the adjoint of
/// `Conv2d(ImageShape{C_out, OH, OW}, C_in, kernel, stride, padding)`: ⟨conv(u), v⟩ = ⟨u, convT(v)⟩
/// when both biases are zero. Work is chunked over observations as in Conv2d.
///
/// Written once for every device: `Ctx` supplies the arrays, the products and the operations of
/// nn/conv_ops.hpp (HostContext; a device context, device/conv.hpp). ConvTranspose2d<T> is the CPU layer.
template <typename T, typename Ctx = HostContext>
class BasicConvTranspose2d : public detail::ConvLayerBase<T, Ctx> {
  using Base = detail::ConvLayerBase<T, Ctx>;

public:
  /// What the layer takes and returns: Matrix<T> on the host, the context's DeviceArray on a device.
  using typename Base::Array;

  /// The layer on the host. Throws ShapeError when a size is not positive, output_padding is not in
  /// [0, stride), or the output would be empty.
  BasicConvTranspose2d(ImageShape in, Index out_channels, Index kernel, Index stride = 1, Index padding = 0,
                       Index output_padding = 0, Init init = Init::HeNormal)
      : BasicConvTranspose2d(HostContext::instance(), in, out_channels, kernel, stride, padding, output_padding,
                             init) {}
  /// The layer `other` (its geometry) on `ctx`, which must outlive it: a model's copy on a device
  /// (device/layers.hpp) has the same parameter layout.
  template <typename OtherCtx>
  BasicConvTranspose2d(Ctx& ctx, const BasicConvTranspose2d<T, OtherCtx>& other)
      : BasicConvTranspose2d(ctx, other.input_shape(), other.output_shape().channels, other.kernel(), other.stride(),
                             other.padding(), other.output_padding(), other.init()) {}

  /// C_in·H·W of the input image.
  Index input_size() const { return in_.size(); }
  /// C_out·OH·OW of the output image.
  Index output_size() const { return geom_.input.size(); }
  /// C_in·C_out·k·k weights plus C_out biases.
  Index parameter_count() const { return in_.channels * geom_.patch_size() + out_channels_; }
  /// e.g. "ConvTranspose2d(64x7x7->32x14x14,k4,s2,p1)" (",op1" appended for output_padding 1).
  std::string describe() const {
    std::string s = detail::concat("ConvTranspose2d(", input_shape().describe(), "->", output_shape().describe(),
                                   ",k", geom_.kernel, ",s", geom_.stride, ",p", geom_.padding);
    if (output_padding_ > 0) s += detail::concat(",op", output_padding_);
    return s + ")";
  }
  /// The input image shape C_in × H × W.
  ImageShape input_shape() const { return in_; }
  /// The output image shape C_out × OH × OW.
  ImageShape output_shape() const { return geom_.input; }
  /// Extra rows/columns added at the bottom/right of the output.
  Index output_padding() const { return output_padding_; }

  /// Maps W (C_in x C_out·k·k, see weight()) then b (C_out), and their gradients, onto `values` / `gradients`.
  void bind(T* values, T* gradients) { this->bind_parameters(values, gradients, in_.channels); }

  /// Fan-in = contributions per output pixel, C_in·k²/s² (at least 1); fan-out C_out·k²/s². Bias zero.
  void initialize(Rng& rng) {
    const Index kk = geom_.kernel * geom_.kernel, ss = geom_.stride * geom_.stride;
    initialize_weights(weight_, init_, std::max<Index>(1, in_.channels * kk / ss),
                       std::max<Index>(1, out_channels_ * kk / ss), rng);
    bias_.setZero();
  }

  /// y = col2im(x·W) + b for x of C_in·H·W x batch; returns C_out·OH·OW x batch. Throws ShapeError on a wrong row count.
  const Array& forward(const Array& x) {
    require<ShapeError>(x.rows() == input_size(), described(*this), ": expected input with ", input_size(), " rows (",
                        described(input_shape()), "), found ", x.rows(), " (x is ", x.rows(), "x", x.cols(), ")");
    input_ = &x;
    const Index n = x.cols(), P = geom_.positions(), PK = geom_.patch_size(), C = in_.channels;
    plan(n);
    ensure_shape(output_, output_size(), n);
    set_channels(*ctx_, output_.data(), static_cast<const T*>(bias_.data()), geom_.input.plane(), out_channels_,
                 n);  // start from the bias, col2im adds the rest
    for (Index start = 0; start < n; start += chunk_) {
      const Index count = std::min(chunk_, n - start);
      channels_to_positions(*ctx_, x.data() + start * input_size(), static_cast<const T*>(nullptr), P, C, count,
                            rows_.data());
      ctx_->gemm(products_.forward, Transpose::No, Transpose::No, count * P, PK, C, rows_.data(), count * P,
                 weight_.data(), C, cols_.data(), count * P, false);  // cols = xs W
      col2im(*ctx_, geom_, static_cast<const T*>(cols_.data()), count, output_.data() + start * output_size(), false);
    }
    rows_hold_batch_ = chunk_ >= n;
    return output_;
  }

  /// Adds dW and db to the gradients; returns dx (C_in·H·W x batch; empty unless need_input_gradient).
  /// Throws ShapeError before forward() or when dy is not output_size() x batch.
  const Array& backward(const Array& dy, bool need_input_gradient = true) {
    require<ShapeError>(input_ != nullptr, described(*this), ": backward called before forward");
    const Index n = input_->cols(), P = geom_.positions(), PK = geom_.patch_size(), C = in_.channels;
    require<ShapeError>(dy.rows() == output_size() && dy.cols() == n, described(*this), ": expected gradient ",
                        output_size(), "x", n, ", found ", dy.rows(), "x", dy.cols());
    plan(n);
    if (need_input_gradient) ensure_shape(input_grad_, input_size(), n);
    add_channel_sums(*ctx_, bias_grad_.data(), dy.data(), geom_.input.plane(), out_channels_, n, bias_sum_);
    for (Index start = 0; start < n; start += chunk_) {
      const Index count = std::min(chunk_, n - start);
      if (!rows_hold_batch_)
        channels_to_positions(*ctx_, input_->data() + start * input_size(), static_cast<const T*>(nullptr), P, C,
                              count, rows_.data());
      im2col(*ctx_, geom_, dy.data() + start * output_size(), count, cols_.data());  // dcols
      ctx_->gemm(products_.weight_grad, Transpose::Yes, Transpose::No, C, PK, count * P, rows_.data(), count * P,
                 cols_.data(), count * P, weight_grad_.data(), C, true);  // dW += xsᵀ dcols
      if (need_input_gradient) {
        ctx_->gemm(products_.input_grad, Transpose::No, Transpose::Yes, count * P, C, PK, cols_.data(), count * P,
                   weight_.data(), C, drows_.data(), count * P, false);  // dxs = dcols Wᵀ
        positions_to_channels(*ctx_, static_cast<const T*>(drows_.data()), P, C, count, static_cast<const T*>(nullptr),
                              false, input_grad_.data() + start * input_size());
      }
    }
    return input_grad_;
  }

private:
  using Base::batch_, Base::bias_, Base::bias_grad_, Base::bias_sum_, Base::chunk_, Base::cols_, Base::ctx_,
      Base::geom_, Base::init_, Base::input_, Base::input_grad_, Base::out_channels_, Base::output_,
      Base::products_, Base::rows_, Base::weight_, Base::weight_grad_, Base::workspace_limit_;

  BasicConvTranspose2d(Ctx& ctx, ImageShape in, Index out_channels, Index kernel, Index stride, Index padding,
                       Index output_padding, Init init)
      : Base(ctx, ConvGeometry{}, out_channels, init), in_(in), output_padding_(output_padding),
        drows_(detail::make_array<Array>(ctx)) {
    require<ShapeError>(in.channels > 0 && in.height > 0 && in.width > 0,
                        "ConvTranspose2d: the input image shape must be positive, found ", in.channels, "x",
                        in.height, "x", in.width);
    require<ShapeError>(out_channels > 0 && kernel > 0 && stride > 0 && padding >= 0,
                        "ConvTranspose2d: expected out_channels > 0, kernel > 0, stride > 0, padding >= 0, found "
                        "out_channels=",
                        out_channels, " kernel=", kernel, " stride=", stride, " padding=", padding);
    require<ShapeError>(output_padding >= 0 && output_padding < stride,
                        "ConvTranspose2d: output_padding must be in [0, stride) = [0, ", stride, "), found ",
                        output_padding);
    const Index oh = (in.height - 1) * stride - 2 * padding + kernel + output_padding;
    const Index ow = (in.width - 1) * stride - 2 * padding + kernel + output_padding;
    require<ShapeError>(oh > 0 && ow > 0, "ConvTranspose2d: the output of ", in.channels, "x", in.height, "x",
                        in.width, " with kernel ", kernel, ", stride ", stride, ", padding ", padding,
                        ", output_padding ", output_padding, " would be ", oh, "x", ow, " (must be positive)");
    // The convolution this layer is the adjoint of: from the output image back to the input grid.
    geom_ = make_conv_geometry(ImageShape{out_channels, oh, ow}, kernel, stride, padding, "ConvTranspose2d");
    require<ShapeError>(geom_.out_height == in.height && geom_.out_width == in.width,
                        "ConvTranspose2d: internal geometry mismatch");  // holds whenever output_padding < stride
  }


  void plan(Index n) {
    if (n == batch_) return;
    const Index P = geom_.positions(), PK = geom_.patch_size(), C = in_.channels;
    const std::size_t per_observation = static_cast<std::size_t>(P * (PK + 2 * C)) * sizeof(T);
    chunk_ = workspace_chunk(n, per_observation, workspace_limit_);
    ensure_shape(cols_, chunk_ * P * PK, 1);
    ensure_shape(rows_, chunk_ * P * C, 1);
    ensure_shape(drows_, chunk_ * P * C, 1);
    batch_ = n;
    rows_hold_batch_ = false;
  }

  ImageShape in_;
  Index output_padding_;

  // Workspaces (with the base's patch matrix cols_, (chunk·H·W) × C_out·k·k, reused for its gradient
  // in backward, and the stacked input rows_, (chunk·H·W) × C_in): the stacked input's gradient.
  bool rows_hold_batch_ = false;
  Array drows_;
};

/// The CPU's transposed 2-D convolution layer.
template <typename T>
using ConvTranspose2d = BasicConvTranspose2d<T, HostContext>;


}  // namespace mlvae
