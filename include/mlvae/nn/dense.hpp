/// @file
/// mlvae/nn/dense.hpp — fully connected layer y = W x + b over a batch of columns (one GEMM).
/// Backward (docs/elbo.md, "Dense layer"): dW += dy x^T, db += sum over columns of dy, dx = W^T dy.
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/nn/gemm.hpp"
#include "mlvae/nn/layer.hpp"

#include <string>

namespace mlvae {

/// Fully connected layer with `in` inputs and `out` outputs; parameters laid out as W (out x in,
/// column-major) followed by b (out).
template <typename T>
class Dense {
public:
  /// The floating-point type of parameters and activations.
  using Scalar = T;

  /// A Dense layer `in` -> `out` (unbound until bind()); throws ShapeError unless both are positive.
  Dense(Index in, Index out, Init init = Init::GlorotUniform) : in_(in), out_(out), init_(init) {
    require<ShapeError>(in > 0 && out > 0, "Dense: sizes must be positive, found in=", in, " out=", out);
  }

  /// Number of input features, `in`.
  Index input_size() const { return in_; }
  /// Number of output features, `out`.
  Index output_size() const { return out_; }
  /// out·in weights plus out biases.
  Index parameter_count() const { return out_ * in_ + out_; }
  /// "Dense(in->out)", as recorded in checkpoints.
  std::string describe() const { return detail::concat("Dense(", in_, "->", out_, ")"); }

  /// Maps W and b (and their gradients) onto parameter_count() scalars at `values` / `gradients`.
  void bind(T* values, T* gradients) {
    new (&weight_) MatrixMap<T>(values, out_, in_);
    new (&bias_) VectorMap<T>(values + out_ * in_, out_);
    new (&weight_grad_) MatrixMap<T>(gradients, out_, in_);
    new (&bias_grad_) VectorMap<T>(gradients + out_ * in_, out_);
  }

  /// Initialises W with the layer's Init scheme and sets b to zero.
  void initialize(Rng& rng) {
    initialize_weights(weight_, init_, in_, out_, rng);
    bias_.setZero();
  }

  /// y = W x + b for x of in x batch; returns the out x batch output. Throws ShapeError on a wrong row count.
  const Matrix<T>& forward(const Matrix<T>& x) {
    require<ShapeError>(x.rows() == in_, described(*this), ": expected input with ", in_, " rows, found ", x.rows(),
                        " (x is ", x.rows(), "x", x.cols(), ")");
    input_ = &x;
    ensure_shape(output_, out_, x.cols());
    output_.colwise() = bias_;
    forward_gemm_.run(Transpose::No, Transpose::No, weight_, x, output_, true);  // y = b + W x
    return output_;
  }

  /// Adds dW = dy xᵀ and db = Σ dy to the gradients; returns dx = Wᵀ dy (empty unless need_input_gradient).
  /// Throws ShapeError before forward() or when dy is not out x batch.
  const Matrix<T>& backward(const Matrix<T>& dy, bool need_input_gradient = true) {
    require<ShapeError>(input_ != nullptr, described(*this), ": backward called before forward");
    require<ShapeError>(dy.rows() == out_ && dy.cols() == input_->cols(), described(*this), ": expected gradient ", out_,
                        "x", input_->cols(), ", found ", dy.rows(), "x", dy.cols());
    weight_grad_gemm_.run(Transpose::No, Transpose::Yes, dy, *input_, weight_grad_, true);  // dW += dy xᵀ
    bias_grad_ += dy.rowwise().sum();
    if (need_input_gradient) {
      ensure_shape(input_grad_, in_, dy.cols());
      input_grad_gemm_.run(Transpose::Yes, Transpose::No, weight_, dy, input_grad_, false);  // dx = Wᵀ dy
    }
    return input_grad_;
  }

  /// The output of the last forward() (out x batch).
  const Matrix<T>& output() const { return output_; }
  /// The weight matrix W (out x in), a view into the parameter store.
  MatrixMap<T>& weight() { return weight_; }
  /// The bias b (out), a view into the parameter store.
  VectorMap<T>& bias() { return bias_; }
  /// The weight matrix W (out x in).
  const MatrixMap<T>& weight() const { return weight_; }
  /// The bias b (out).
  const VectorMap<T>& bias() const { return bias_; }

private:
  Index in_, out_;
  Init init_;
  MatrixMap<T> weight_{nullptr, 0, 0};
  VectorMap<T> bias_{nullptr, 0};
  MatrixMap<T> weight_grad_{nullptr, 0, 0};
  VectorMap<T> bias_grad_{nullptr, 0};
  const Matrix<T>* input_ = nullptr;
  Matrix<T> output_;
  Matrix<T> input_grad_;
  Gemm<T> forward_gemm_, weight_grad_gemm_, input_grad_gemm_;
};

}  // namespace mlvae
