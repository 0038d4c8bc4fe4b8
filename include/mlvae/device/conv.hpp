/// @file
/// mlvae/device/conv.hpp — device mirrors of Conv2d, ConvTranspose2d and Reshape (nn/conv2d.hpp,
/// nn/conv_transpose2d.hpp, nn/reshape.hpp): im2col + GEMM as on the CPU, for the whole batch at
/// once. im2col and its adjoint col2im are Tensor generator expressions (each output element
/// computed from the geometry of nn/im2col.hpp; col2im gathers, so no atomics are needed), the
/// layout changes between "one column per observation" and "one row per output position" are
/// Tensor shuffles, and the products go through the context (mlvae's Gemm on the CPU, cuBLAS on
/// the GPU). Backward formulas: docs/elbo.md, "Convolutions".
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/device/context.hpp"
#include "mlvae/device/layers.hpp"
#include "mlvae/device/ops.hpp"
#include "mlvae/nn/conv2d.hpp"
#include "mlvae/nn/conv_transpose2d.hpp"
#include "mlvae/nn/im2col.hpp"
#include "mlvae/nn/reshape.hpp"

#include <string>

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

namespace detail {
/// db += Σ over positions and observations of dy (channels·positions x N, channel-major rows),
/// in two partial reductions (inner, then outer) through `partial` (channels·N) and `sum` (channels).
template <typename D, typename T, typename Ctx>
void add_channel_sums(const D& d, const DeviceArray<T, Ctx>& dy, Index channels, Index positions,
                      DeviceArray<T, Ctx>& partial, DeviceArray<T, Ctx>& sum, T* bias_grad) {
  const Index n = dy.cols();
  partial.resize(channels, n);
  sum.resize(channels, 1);
  assign(d, TensorVector<T>(partial.data(), channels * n),
         TensorMatrix<const T>(dy.data(), positions, channels * n).sum(Dims1{0}));
  assign(d, TensorVector<T>(sum.data(), channels), partial.tensor().sum(Dims1{1}));
  TensorVector<T> db(bias_grad, channels);
  assign(d, db, db + TensorVector<const T>(sum.data(), channels));
}
}  // namespace detail

/// Conv2d on a device: y = W·im2col(x) + b per output position (nn/conv2d.hpp).
template <typename T, typename Ctx>
class DeviceConv2d {
public:
  /// The floating-point type.
  using Scalar = T;
  /// What the layer takes and returns (Sequential chains it).
  using Array = DeviceArray<T, Ctx>;
  /// Mirrors `cpu` (geometry, channels) in `ctx`.
  DeviceConv2d(Ctx& ctx, const Conv2d<T>& cpu)
      : ctx_(&ctx), geom_(cpu.geometry()), out_channels_(cpu.output_shape().channels), describe_(cpu.describe()),
        output_(ctx), input_grad_(ctx), cols_(ctx), rows_(ctx), dcols_(ctx), partial_(ctx), sum_(ctx) {}

  /// C·H·W.
  Index input_size() const { return geom_.input.size(); }
  /// OC·OH·OW.
  Index output_size() const { return out_channels_ * geom_.positions(); }
  /// OC·C·k·k + OC.
  Index parameter_count() const { return out_channels_ * geom_.patch_size() + out_channels_; }
  /// As the CPU layer describes itself.
  std::string describe() const { return describe_; }
  /// Binds W (OC x C·k·k) then b (OC).
  void bind(T* values, T* gradients) {
    weight_ = values;
    weight_grad_ = gradients;
    bias_ = values + out_channels_ * geom_.patch_size();
    bias_grad_ = gradients + out_channels_ * geom_.patch_size();
  }

  /// y (OC·P x N) = b + W·patches, per observation.
  const DeviceArray<T, Ctx>& forward(const DeviceArray<T, Ctx>& x) {
    require<ShapeError>(x.rows() == input_size(), describe_, " (device): expected input with ", input_size(),
                        " rows, found ", x.rows());
    input_ = &x;
    const auto& d = ctx_->device();
    const Index n = x.cols(), P = geom_.positions(), PK = geom_.patch_size(), OC = out_channels_;
    cols_.resize(n * P, PK);
    assign(d, cols_.tensor(), cols_.tensor().generate(Im2colGenerator<T>{ConvIndexing(geom_), x.data()}));
    rows_.resize(n * P, OC);
    ctx_->gemm(forward_gemm_, Transpose::No, Transpose::Yes, n * P, OC, PK, cols_.data(), n * P, weight_, OC,
               rows_.data(), n * P, false);  // rows = cols Wᵀ
    output_.resize(output_size(), n);
    assign(d, output_.tensor().reshape(Dims3{P, OC, n}),
           rows_.tensor().reshape(Dims3{P, n, OC}).shuffle(Dims3{0, 2, 1}) +
               TensorMatrix<const T>(bias_, OC, 1).reshape(Dims3{1, OC, 1}).broadcast(Dims3{P, 1, n}));
    return output_;
  }

  /// dW += dyᵀ·patches, db += Σ dy, dx = col2im(dy·W) when asked.
  const DeviceArray<T, Ctx>& backward(const DeviceArray<T, Ctx>& dy, bool need_input_gradient = true) {
    require<ShapeError>(input_ != nullptr && dy.rows() == output_size() && dy.cols() == input_->cols(), describe_,
                        " (device): backward needs a forward pass and a gradient of ", output_size(), " rows, found ",
                        dy.rows(), "x", dy.cols());
    const auto& d = ctx_->device();
    const Index n = dy.cols(), P = geom_.positions(), PK = geom_.patch_size(), OC = out_channels_;
    assign(d, rows_.tensor().reshape(Dims3{P, n, OC}), dy.tensor().reshape(Dims3{P, OC, n}).shuffle(Dims3{0, 2, 1}));
    ctx_->gemm(weight_grad_gemm_, Transpose::Yes, Transpose::No, OC, PK, n * P, rows_.data(), n * P, cols_.data(),
               n * P, weight_grad_, OC, true);  // dW += dyᵀ cols
    detail::add_channel_sums(d, dy, OC, P, partial_, sum_, bias_grad_);
    if (need_input_gradient) {
      dcols_.resize(n * P, PK);
      ctx_->gemm(input_grad_gemm_, Transpose::No, Transpose::No, n * P, PK, OC, rows_.data(), n * P, weight_, OC,
                 dcols_.data(), n * P, false);  // dcols = dy W
      input_grad_.resize(input_size(), n);
      assign(d, input_grad_.tensor(),
             input_grad_.tensor().generate(Col2imGenerator<T>{ConvIndexing(geom_), dcols_.data(), n * P}));
    }
    return input_grad_;
  }

private:
  Ctx* ctx_;
  ConvGeometry geom_;
  Index out_channels_;
  std::string describe_;
  T *weight_ = nullptr, *bias_ = nullptr, *weight_grad_ = nullptr, *bias_grad_ = nullptr;
  const DeviceArray<T, Ctx>* input_ = nullptr;
  DeviceArray<T, Ctx> output_, input_grad_, cols_, rows_, dcols_, partial_, sum_;
  typename Ctx::template GemmSite<T> forward_gemm_, weight_grad_gemm_, input_grad_gemm_;
};

/// ConvTranspose2d on a device: y = b + col2im(x·W) (nn/conv_transpose2d.hpp).
template <typename T, typename Ctx>
class DeviceConvTranspose2d {
public:
  /// The floating-point type.
  using Scalar = T;
  /// What the layer takes and returns (Sequential chains it).
  using Array = DeviceArray<T, Ctx>;
  /// Mirrors `cpu` in `ctx`.
  DeviceConvTranspose2d(Ctx& ctx, const ConvTranspose2d<T>& cpu)
      : ctx_(&ctx), in_(cpu.input_shape()), geom_(cpu.geometry()), out_channels_(cpu.output_shape().channels),
        describe_(cpu.describe()), output_(ctx), input_grad_(ctx), xs_(ctx), cols_(ctx), dxs_(ctx), partial_(ctx),
        sum_(ctx) {}

  /// C_in·H·W.
  Index input_size() const { return in_.size(); }
  /// C_out·OH·OW.
  Index output_size() const { return geom_.input.size(); }
  /// C_in·C_out·k·k + C_out.
  Index parameter_count() const { return in_.channels * geom_.patch_size() + out_channels_; }
  /// As the CPU layer describes itself.
  std::string describe() const { return describe_; }
  /// Binds W (C_in x C_out·k·k) then b (C_out).
  void bind(T* values, T* gradients) {
    weight_ = values;
    weight_grad_ = gradients;
    bias_ = values + in_.channels * geom_.patch_size();
    bias_grad_ = gradients + in_.channels * geom_.patch_size();
  }

  /// y = b + col2im(xs·W), xs the input with one row per (observation, pixel).
  const DeviceArray<T, Ctx>& forward(const DeviceArray<T, Ctx>& x) {
    require<ShapeError>(x.rows() == input_size(), describe_, " (device): expected input with ", input_size(),
                        " rows, found ", x.rows());
    input_ = &x;
    const auto& d = ctx_->device();
    const Index n = x.cols(), P = geom_.positions(), PK = geom_.patch_size(), C = in_.channels;
    const Index OP = geom_.input.plane(), OC = out_channels_;
    xs_.resize(n * P, C);
    assign(d, xs_.tensor().reshape(Dims3{P, n, C}), x.tensor().reshape(Dims3{P, C, n}).shuffle(Dims3{0, 2, 1}));
    cols_.resize(n * P, PK);
    ctx_->gemm(forward_gemm_, Transpose::No, Transpose::No, n * P, PK, C, xs_.data(), n * P, weight_, C,
               cols_.data(), n * P, false);  // cols = xs W
    output_.resize(output_size(), n);
    assign(d, output_.tensor(),
           output_.tensor().generate(Col2imGenerator<T>{ConvIndexing(geom_), cols_.data(), n * P}));
    auto out3 = output_.tensor().reshape(Dims3{OP, OC, n});
    assign(d, out3, out3 + TensorMatrix<const T>(bias_, OC, 1).reshape(Dims3{1, OC, 1}).broadcast(Dims3{OP, 1, n}));
    return output_;
  }

  /// db += Σ dy, dW += xsᵀ·im2col(dy), dx = im2col(dy)·Wᵀ when asked.
  const DeviceArray<T, Ctx>& backward(const DeviceArray<T, Ctx>& dy, bool need_input_gradient = true) {
    require<ShapeError>(input_ != nullptr && dy.rows() == output_size() && dy.cols() == input_->cols(), describe_,
                        " (device): backward needs a forward pass and a gradient of ", output_size(), " rows, found ",
                        dy.rows(), "x", dy.cols());
    const auto& d = ctx_->device();
    const Index n = dy.cols(), P = geom_.positions(), PK = geom_.patch_size(), C = in_.channels;
    detail::add_channel_sums(d, dy, out_channels_, geom_.input.plane(), partial_, sum_, bias_grad_);
    cols_.resize(n * P, PK);  // reused for the patch matrix of dy
    assign(d, cols_.tensor(), cols_.tensor().generate(Im2colGenerator<T>{ConvIndexing(geom_), dy.data()}));
    ctx_->gemm(weight_grad_gemm_, Transpose::Yes, Transpose::No, C, PK, n * P, xs_.data(), n * P, cols_.data(), n * P,
               weight_grad_, C, true);  // dW += xsᵀ dcols
    if (need_input_gradient) {
      dxs_.resize(n * P, C);
      ctx_->gemm(input_grad_gemm_, Transpose::No, Transpose::Yes, n * P, C, PK, cols_.data(), n * P, weight_, C,
                 dxs_.data(), n * P, false);  // dxs = dcols Wᵀ
      input_grad_.resize(input_size(), n);
      assign(d, input_grad_.tensor().reshape(Dims3{P, C, n}),
             dxs_.tensor().reshape(Dims3{P, n, C}).shuffle(Dims3{0, 2, 1}));
    }
    return input_grad_;
  }

private:
  Ctx* ctx_;
  ImageShape in_;
  ConvGeometry geom_;
  Index out_channels_;
  std::string describe_;
  T *weight_ = nullptr, *bias_ = nullptr, *weight_grad_ = nullptr, *bias_grad_ = nullptr;
  const DeviceArray<T, Ctx>* input_ = nullptr;
  DeviceArray<T, Ctx> output_, input_grad_, xs_, cols_, dxs_, partial_, sum_;
  typename Ctx::template GemmSite<T> forward_gemm_, weight_grad_gemm_, input_grad_gemm_;
};

/// Reshape on a device: the data are unchanged (forward returns its input, backward its gradient).
template <typename T, typename Ctx>
class DeviceReshape {
public:
  /// The floating-point type.
  using Scalar = T;
  /// What the layer takes and returns (Sequential chains it).
  using Array = DeviceArray<T, Ctx>;
  /// Mirrors `cpu`.
  DeviceReshape(Ctx&, const Reshape<T>& cpu) : size_(cpu.input_size()), describe_(cpu.describe()) {}
  /// Features in.
  Index input_size() const { return size_; }
  /// Features out (the same).
  Index output_size() const { return size_; }
  /// 0.
  Index parameter_count() const { return 0; }
  /// As the CPU layer describes itself.
  std::string describe() const { return describe_; }
  /// No parameters.
  void bind(T*, T*) {}
  /// Returns x itself.
  const DeviceArray<T, Ctx>& forward(const DeviceArray<T, Ctx>& x) {
    require<ShapeError>(x.rows() == size_, describe_, " (device): expected input with ", size_, " rows, found ",
                        x.rows());
    return x;
  }
  /// Returns dy itself.
  const DeviceArray<T, Ctx>& backward(const DeviceArray<T, Ctx>& dy, bool = true) { return dy; }

private:
  Index size_;
  std::string describe_;
};

/// Conv2d → DeviceConv2d.
template <typename T, typename Ctx>
struct DeviceLayerOf<Conv2d<T>, Ctx> {
  using type = DeviceConv2d<T, Ctx>;  ///< the mirror
};
/// ConvTranspose2d → DeviceConvTranspose2d.
template <typename T, typename Ctx>
struct DeviceLayerOf<ConvTranspose2d<T>, Ctx> {
  using type = DeviceConvTranspose2d<T, Ctx>;  ///< the mirror
};
/// Reshape → DeviceReshape.
template <typename T, typename Ctx>
struct DeviceLayerOf<Reshape<T>, Ctx> {
  using type = DeviceReshape<T, Ctx>;  ///< the mirror
};
/// Flatten → DeviceReshape.
template <typename T, typename Ctx>
struct DeviceLayerOf<Flatten<T>, Ctx> {
  using type = DeviceReshape<T, Ctx>;  ///< the mirror
};

}  // namespace mlvae::device
