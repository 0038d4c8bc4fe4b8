/// @file
/// mlvae/nn/reshape.hpp — Reshape / Flatten: identity layers (y = x, dx = dy) that only change the
/// declared image shape of a column (C·H·W = C'·H'·W'), e.g. between a Dense and a ConvTranspose2d.
/// Observations are already flat CHW columns, so no data moves (on the CPU or any device).
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/nn/gemm.hpp"
#include "mlvae/nn/im2col.hpp"
#include "mlvae/nn/layer.hpp"

#include <string>

namespace mlvae {

/// Zero-parameter identity layer from image shape `from` to `to` (equal sizes). `forward` returns
/// its input itself and `backward` the incoming gradient itself (the contract allows returning a
/// reference that outlives the call: both are owned by the neighbouring layers or the caller).
/// `Ctx` names the arrays (HostContext: Matrix; a device context: its DeviceArray); Reshape<T> is the CPU layer.
template <typename T, typename Ctx = HostContext>
class BasicReshape {
public:
  /// The floating-point type of activations.
  using Scalar = T;
  /// What the layer takes and returns: Matrix<T> on the host, the context's DeviceArray on a device.
  using Array = typename Ctx::template Array<T>;

  /// Throws ShapeError when the shapes are not positive or hold different numbers of scalars.
  BasicReshape(ImageShape from, ImageShape to) : BasicReshape(HostContext::instance(), from, to) {}
  /// Flattening form: `from` to a flat vector of `to` entries.
  BasicReshape(ImageShape from, Index to) : BasicReshape(from, ImageShape{to, 1, 1}) {}
  /// The layer `other` (its shapes) on `ctx`, which must outlive it.
  template <typename OtherCtx>
  BasicReshape(Ctx& ctx, const BasicReshape<T, OtherCtx>& other)
      : BasicReshape(ctx, other.input_shape(), other.output_shape()) {}

  /// C·H·W of the input shape.
  Index input_size() const { return from_.size(); }
  /// C·H·W of the output shape (equal to input_size()).
  Index output_size() const { return to_.size(); }
  /// 0: no parameters.
  Index parameter_count() const { return 0; }
  /// e.g. "Reshape(32x7x7->1568)".
  std::string describe() const { return detail::concat("Reshape(", from_.describe(), "->", to_.describe(), ")"); }
  /// The input image shape `from`.
  ImageShape input_shape() const { return from_; }
  /// The output image shape `to`.
  ImageShape output_shape() const { return to_; }
  /// No-op (no parameters).
  void bind(T*, T*) {}
  /// No-op (no parameters).
  void initialize(Rng&) {}

  /// Returns x itself (columns are unchanged); throws ShapeError unless x has input_size() rows.
  const Array& forward(const Array& x) {
    require<ShapeError>(x.rows() == from_.size(), described(*this), ": expected input with ", from_.size(),
                        " rows, found ", x.rows());
    input_ = &x;
    return x;
  }

  /// Returns dy itself (empty unless need_input_gradient); throws ShapeError before forward() or on a shape mismatch.
  const Array& backward(const Array& dy, bool need_input_gradient = true) {
    require<ShapeError>(input_ != nullptr, described(*this), ": backward called before forward");
    require<ShapeError>(dy.rows() == to_.size() && dy.cols() == input_->cols(), described(*this), ": expected gradient ",
                        to_.size(), "x", input_->cols(), ", found ", dy.rows(), "x", dy.cols());
    return need_input_gradient ? dy : empty_;
  }

  /// The last forward's output (its input); forward must have been called.
  const Array& output() const {
    require<ShapeError>(input_ != nullptr, described(*this), ": output() called before forward");
    return *input_;
  }

private:
  BasicReshape(Ctx& ctx, ImageShape from, ImageShape to)
      : from_(from), to_(to), empty_(detail::make_array<Array>(ctx)) {
    require<ShapeError>(from.channels > 0 && from.height > 0 && from.width > 0 && to.channels > 0 && to.height > 0 &&
                            to.width > 0,
                        "Reshape: shapes must be positive, found ", from.channels, "x", from.height, "x", from.width,
                        " -> ", to.channels, "x", to.height, "x", to.width);
    require<ShapeError>(from.size() == to.size(), "Reshape: cannot reshape ", from.describe(), " (", from.size(),
                        " values) to ", to.describe(), " (", to.size(), " values)");
  }

  ImageShape from_, to_;
  const Array* input_ = nullptr;
  Array empty_;
};

/// The CPU's reshape layer.
template <typename T>
using Reshape = BasicReshape<T, HostContext>;

/// Reshape from an image to the flat vector of its C·H·W values.
template <typename T>
class Flatten : public Reshape<T> {
public:
  /// Flattens `from` to C·H·W features.
  explicit Flatten(ImageShape from) : Reshape<T>(from, from.size()) {}
};

}  // namespace mlvae
