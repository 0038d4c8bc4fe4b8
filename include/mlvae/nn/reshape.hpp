/// @file
/// mlvae/nn/reshape.hpp — Reshape / Flatten: identity layers (y = x, dx = dy) that only change the
/// declared image shape of a column (C·H·W = C'·H'·W'), e.g. between a Dense and a ConvTranspose2d.
/// Observations are already flat CHW columns, so no data moves.
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/nn/im2col.hpp"
#include "mlvae/nn/layer.hpp"

#include <string>

namespace mlvae {

/// Zero-parameter identity layer from image shape `from` to `to` (equal sizes). `forward` returns
/// its input itself and `backward` the incoming gradient itself (the contract allows returning a
/// reference that outlives the call: both are owned by the neighbouring layers or the caller).
template <typename T>
class Reshape {
public:
  /// The floating-point type of activations.
  using Scalar = T;

  /// Throws ShapeError when the shapes are not positive or hold different numbers of scalars.
  Reshape(ImageShape from, ImageShape to) : from_(from), to_(to) {
    require<ShapeError>(from.channels > 0 && from.height > 0 && from.width > 0 && to.channels > 0 && to.height > 0 &&
                            to.width > 0,
                        "Reshape: shapes must be positive, found ", from.channels, "x", from.height, "x", from.width,
                        " -> ", to.channels, "x", to.height, "x", to.width);
    require<ShapeError>(from.size() == to.size(), "Reshape: cannot reshape ", from.describe(), " (", from.size(),
                        " values) to ", to.describe(), " (", to.size(), " values)");
  }
  /// Flattening form: `from` to a flat vector of `to` entries.
  Reshape(ImageShape from, Index to) : Reshape(from, ImageShape{to, 1, 1}) {}

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
  const Matrix<T>& forward(const Matrix<T>& x) {
    require<ShapeError>(x.rows() == from_.size(), described(*this), ": expected input with ", from_.size(),
                        " rows, found ", x.rows());
    input_ = &x;
    return x;
  }

  /// Returns dy itself (empty unless need_input_gradient); throws ShapeError before forward() or on a shape mismatch.
  const Matrix<T>& backward(const Matrix<T>& dy, bool need_input_gradient = true) {
    require<ShapeError>(input_ != nullptr, described(*this), ": backward called before forward");
    require<ShapeError>(dy.rows() == to_.size() && dy.cols() == input_->cols(), described(*this), ": expected gradient ",
                        to_.size(), "x", input_->cols(), ", found ", dy.rows(), "x", dy.cols());
    return need_input_gradient ? dy : empty_;
  }

  /// The last forward's output (its input); forward must have been called.
  const Matrix<T>& output() const {
    require<ShapeError>(input_ != nullptr, described(*this), ": output() called before forward");
    return *input_;
  }

private:
  ImageShape from_, to_;
  const Matrix<T>* input_ = nullptr;
  Matrix<T> empty_;
};

/// Reshape from an image to the flat vector of its C·H·W values.
template <typename T>
class Flatten : public Reshape<T> {
public:
  /// Flattens `from` to C·H·W features.
  explicit Flatten(ImageShape from) : Reshape<T>(from, from.size()) {}
};

}  // namespace mlvae
