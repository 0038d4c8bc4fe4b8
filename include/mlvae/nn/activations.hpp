// mlvae/nn/activations.hpp — element-wise activation layers: identity, tanh, ReLU, leaky ReLU,
// sigmoid, softplus. Backward (docs/elbo.md, "Activations"): dx = dy ⊙ f'(x), with f' written
// in terms of the output where that is cheaper (tanh: 1 - y², sigmoid: y(1 - y)).
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/nn/gemm.hpp"
#include "mlvae/nn/layer.hpp"

#include <string>

namespace mlvae {

namespace activation {

/// f(x) = x.
struct IdentityOp {
  static constexpr const char* name = "Identity";
  template <typename X> auto value(const X& x) const { return x; }
  template <typename DY, typename X, typename Y>
  auto gradient(const DY& dy, const X&, const Y&) const { return dy; }
};

/// f(x) = tanh x, f' = 1 - y².
struct TanhOp {
  static constexpr const char* name = "Tanh";
  template <typename X> auto value(const X& x) const { return x.tanh(); }
  template <typename DY, typename X, typename Y>
  auto gradient(const DY& dy, const X&, const Y& y) const {
    using S = typename Y::Scalar;
    return dy * (S(1) - y.square());
  }
};

/// f(x) = max(x, 0), f' = [x > 0].
struct ReluOp {
  static constexpr const char* name = "Relu";
  template <typename X> auto value(const X& x) const { return x.max(typename X::Scalar(0)); }
  template <typename DY, typename X, typename Y>
  auto gradient(const DY& dy, const X& x, const Y&) const {
    using S = typename X::Scalar;
    return (x > S(0)).select(dy, S(0));
  }
};

/// f(x) = x for x > 0, slope·x otherwise.
struct LeakyReluOp {
  static constexpr const char* name = "LeakyRelu";
  double slope = 0.01;
  template <typename X> auto value(const X& x) const {
    using S = typename X::Scalar;
    return (x > S(0)).select(x, x * S(slope));
  }
  template <typename DY, typename X, typename Y>
  auto gradient(const DY& dy, const X& x, const Y&) const {
    using S = typename X::Scalar;
    return (x > S(0)).select(dy, dy * S(slope));
  }
};

/// f(x) = 1 / (1 + e^{-x}), f' = y (1 - y).
struct SigmoidOp {
  static constexpr const char* name = "Sigmoid";
  template <typename X> auto value(const X& x) const { return x.logistic(); }
  template <typename DY, typename X, typename Y>
  auto gradient(const DY& dy, const X&, const Y& y) const {
    using S = typename Y::Scalar;
    return dy * y * (S(1) - y);
  }
};

/// f(x) = log(1 + e^x), computed as max(x, 0) + log1p(e^{-|x|}); f' = sigmoid(x).
struct SoftplusOp {
  static constexpr const char* name = "Softplus";
  template <typename X> auto value(const X& x) const {
    using S = typename X::Scalar;
    return x.max(S(0)) + (-x.abs()).exp().log1p();
  }
  template <typename DY, typename X, typename Y>
  auto gradient(const DY& dy, const X& x, const Y&) const { return dy * x.logistic(); }
};

}  // namespace activation

/// An element-wise activation layer of `size` features; `Op` supplies f and f'.
template <typename T, typename Op>
class Elementwise {
public:
  using Scalar = T;

  explicit Elementwise(Index size, Op op = Op{}) : size_(size), op_(op) {
    require<ShapeError>(size > 0, Op::name, ": size must be positive, found ", size);
  }

  Index input_size() const { return size_; }
  Index output_size() const { return size_; }
  Index parameter_count() const { return 0; }
  std::string describe() const { return detail::concat(Op::name, "(", size_, ")"); }
  void bind(T*, T*) {}
  void initialize(Rng&) {}

  const Matrix<T>& forward(const Matrix<T>& x) {
    require<ShapeError>(x.rows() == size_, described(*this), ": expected input with ", size_, " rows, found ", x.rows());
    input_ = &x;
    ensure_shape(output_, size_, x.cols());
    parallel_columns(x.cols(), size_, [&](Index begin, Index end) {
      output_.middleCols(begin, end - begin).array() = op_.value(x.middleCols(begin, end - begin).array());
    });
    return output_;
  }

  const Matrix<T>& backward(const Matrix<T>& dy, bool need_input_gradient = true) {
    require<ShapeError>(input_ != nullptr, described(*this), ": backward called before forward");
    require<ShapeError>(dy.rows() == size_ && dy.cols() == output_.cols(), described(*this), ": expected gradient ", size_,
                        "x", output_.cols(), ", found ", dy.rows(), "x", dy.cols());
    if (need_input_gradient) {
      ensure_shape(input_grad_, size_, dy.cols());
      parallel_columns(dy.cols(), size_, [&](Index begin, Index end) {
        const Index n = end - begin;
        input_grad_.middleCols(begin, n).array() = op_.gradient(
            dy.middleCols(begin, n).array(), input_->middleCols(begin, n).array(), output_.middleCols(begin, n).array());
      });
    }
    return input_grad_;
  }

  const Matrix<T>& output() const { return output_; }

private:
  Index size_;
  Op op_;
  const Matrix<T>* input_ = nullptr;
  Matrix<T> output_;
  Matrix<T> input_grad_;
};

template <typename T> using Identity = Elementwise<T, activation::IdentityOp>;
template <typename T> using Tanh = Elementwise<T, activation::TanhOp>;
template <typename T> using Relu = Elementwise<T, activation::ReluOp>;
template <typename T> using Sigmoid = Elementwise<T, activation::SigmoidOp>;
template <typename T> using Softplus = Elementwise<T, activation::SoftplusOp>;

/// Leaky ReLU with a run-time negative slope (default 0.01).
template <typename T>
class LeakyRelu : public Elementwise<T, activation::LeakyReluOp> {
public:
  explicit LeakyRelu(Index size, double slope = 0.01)
      : Elementwise<T, activation::LeakyReluOp>(size, activation::LeakyReluOp{slope}) {}
};

}  // namespace mlvae
