/// @file
/// mlvae/nn/activations.hpp — element-wise activation layers: identity, tanh, ReLU, leaky ReLU,
/// sigmoid, softplus. Backward (docs/elbo.md, "Activations"): dx = dy ⊙ f'(x), with f' written
/// in terms of the output where that is cheaper (tanh: 1 - y², sigmoid: y(1 - y)). Each f and f'
/// is written once, for the CPU's Array expressions and a device's Tensor expressions alike.
#pragma once

#include "mlvae/core/elementwise.hpp"
#include "mlvae/core/error.hpp"
#include "mlvae/nn/gemm.hpp"
#include "mlvae/nn/layer.hpp"

#include <string>

namespace mlvae {

namespace activation {

// Each Op is written once for both kinds of Eigen expression: Array expressions on the CPU and
// Tensor expressions on a device (BasicElementwise below, on either context); the spellings that
// differ between the two are in core/elementwise.hpp.

/// f(x) = x.
struct IdentityOp {
  /// Layer name used by describe().
  static constexpr const char* name = "Identity";
  /// f(x) = x, element-wise.
  template <typename X> auto value(const X& x) const { return x; }
  /// dx = dy, given dy, the input x and the output y.
  template <typename DY, typename X, typename Y>
  auto gradient(const DY& dy, const X&, const Y&) const { return dy; }
  /// dx = dy from the output alone.
  template <typename DY, typename Y>
  auto gradient_at_output(const DY& dy, const Y&) const { return dy; }
};

/// f(x) = tanh x, f' = 1 - y².
struct TanhOp {
  /// Layer name used by describe().
  static constexpr const char* name = "Tanh";
  /// f(x) = tanh x, element-wise.
  template <typename X> auto value(const X& x) const { return x.tanh(); }
  /// dx = dy ⊙ (1 − y²), given dy, the input x and the output y.
  template <typename DY, typename X, typename Y>
  auto gradient(const DY& dy, const X&, const Y& y) const { return gradient_at_output(dy, y); }
  /// dx = dy ⊙ (1 − y²) from the output alone.
  template <typename DY, typename Y>
  auto gradient_at_output(const DY& dy, const Y& y) const { return dy * (ew::scalar_t<Y>(1) - y.square()); }
};

/// f(x) = max(x, 0), f' = [x > 0].
struct ReluOp {
  /// Layer name used by describe().
  static constexpr const char* name = "Relu";
  /// f(x) = max(x, 0), element-wise.
  template <typename X> auto value(const X& x) const { return ew::max(x, ew::scalar_t<X>(0)); }
  /// dx = dy ⊙ [x > 0], given dy, the input x and the output y.
  template <typename DY, typename X, typename Y>
  auto gradient(const DY& dy, const X& x, const Y&) const { return ew::where_positive_else_zero(x, dy); }
  /// dx = dy ⊙ [y > 0] from the output alone (y > 0 exactly where x > 0: the same values).
  template <typename DY, typename Y>
  auto gradient_at_output(const DY& dy, const Y& y) const { return ew::where_positive_else_zero(y, dy); }
};

/// f(x) = x for x > 0, slope·x otherwise.
struct LeakyReluOp {
  /// Layer name used by describe().
  static constexpr const char* name = "LeakyRelu";
  /// Multiplier applied to negative inputs.
  double slope = 0.01;
  /// f(x) = x if x > 0 else slope·x, element-wise.
  template <typename X> auto value(const X& x) const {
    return ew::where_positive(x, x, x * ew::scalar_t<X>(slope));
  }
  /// dx = dy where x > 0, slope·dy elsewhere, given dy, the input x and the output y.
  template <typename DY, typename X, typename Y>
  auto gradient(const DY& dy, const X& x, const Y&) const {
    return ew::where_positive(x, dy, dy * ew::scalar_t<X>(slope));
  }
};

/// f(x) = 1 / (1 + e^{-x}), f' = y (1 - y).
struct SigmoidOp {
  /// Layer name used by describe().
  static constexpr const char* name = "Sigmoid";
  /// f(x) = sigmoid(x), element-wise.
  template <typename X> auto value(const X& x) const { return ew::sigmoid(x); }
  /// dx = dy ⊙ y ⊙ (1 − y), given dy, the input x and the output y.
  template <typename DY, typename X, typename Y>
  auto gradient(const DY& dy, const X&, const Y& y) const { return gradient_at_output(dy, y); }
  /// dx = dy ⊙ y ⊙ (1 − y) from the output alone.
  template <typename DY, typename Y>
  auto gradient_at_output(const DY& dy, const Y& y) const { return dy * y * (ew::scalar_t<Y>(1) - y); }
};

/// f(x) = log(1 + e^x), computed as max(x, 0) + log1p(e^{-|x|}); f' = sigmoid(x).
struct SoftplusOp {
  /// Layer name used by describe().
  static constexpr const char* name = "Softplus";
  /// f(x) = softplus(x) (overflow-safe), element-wise.
  template <typename X> auto value(const X& x) const {
    return ew::max(x, ew::scalar_t<X>(0)) + (-x.abs()).exp().log1p();
  }
  /// dx = dy ⊙ sigmoid(x), given dy, the input x and the output y.
  template <typename DY, typename X, typename Y>
  auto gradient(const DY& dy, const X& x, const Y&) const { return dy * ew::sigmoid(x); }
};

/// Whether Op's derivative is a function of its output alone (Op::gradient_at_output): a layer
/// before it can then apply f in its own output pass and f' in its own backward pass (Dense,
/// nn/dense.hpp; fused by nn/sequential.hpp), keeping no copy of the activation's input.
template <typename Op>
inline constexpr bool gradient_from_output_v = false;
template <>
inline constexpr bool gradient_from_output_v<IdentityOp> = true;
template <>
inline constexpr bool gradient_from_output_v<TanhOp> = true;
template <>
inline constexpr bool gradient_from_output_v<ReluOp> = true;
template <>
inline constexpr bool gradient_from_output_v<SigmoidOp> = true;

}  // namespace activation

/// An element-wise activation layer of `size` features; `Op` supplies f and f'. Written once for
/// every device: `Ctx` evaluates the formulas (HostContext, nn/gemm.hpp: Eigen Arrays over threads;
/// a device context: Tensor expressions, device/layers.hpp). Elementwise<T, Op> is the CPU layer.
template <typename T, typename Op, typename Ctx = HostContext>
class BasicElementwise {
public:
  /// The floating-point type of activations.
  using Scalar = T;
  /// What the layer takes and returns: Matrix<T> on the host, the context's DeviceArray on a device.
  using Array = typename Ctx::template Array<T>;

  /// An activation over `size` features on the host; throws ShapeError unless size > 0.
  explicit BasicElementwise(Index size, Op op = Op{}) : BasicElementwise(HostContext::instance(), size, op) {}
  /// The activation `other` (its size and, for leaky ReLU, its slope) on `ctx`, which must outlive it.
  template <typename OtherCtx>
  BasicElementwise(Ctx& ctx, const BasicElementwise<T, Op, OtherCtx>& other)
      : BasicElementwise(ctx, other.input_size(), other.op()) {}

  /// Number of features, `size`.
  Index input_size() const { return size_; }
  /// Number of features, `size` (same as the input).
  Index output_size() const { return size_; }
  /// 0: activations have no parameters.
  Index parameter_count() const { return 0; }
  /// "<Op name>(size)", e.g. "Tanh(500)".
  std::string describe() const { return detail::concat(Op::name, "(", size_, ")"); }
  /// No-op (no parameters).
  void bind(T*, T*) {}
  /// No-op (no parameters).
  void initialize(Rng&) {}

  /// y = f(x) element-wise for x of size x batch; throws ShapeError on a wrong row count.
  const Array& forward(const Array& x) {
    require<ShapeError>(x.rows() == size_, described(*this), ": expected input with ", size_, " rows, found ", x.rows());
    input_ = &x;
    ensure_shape(output_, size_, x.cols());
    elementwise(*ctx_, output_, [this](const auto& v) { return op_.value(v); }, x);
    return output_;
  }

  /// Returns dx = dy ⊙ f'(x) (empty unless need_input_gradient); throws ShapeError before forward() or on a shape mismatch.
  const Array& backward(const Array& dy, bool need_input_gradient = true) {
    require<ShapeError>(input_ != nullptr, described(*this), ": backward called before forward");
    require<ShapeError>(dy.rows() == size_ && dy.cols() == output_.cols(), described(*this), ": expected gradient ", size_,
                        "x", output_.cols(), ", found ", dy.rows(), "x", dy.cols());
    if (need_input_gradient) {
      ensure_shape(input_grad_, size_, dy.cols());
      elementwise(
          *ctx_, input_grad_,
          [this](const auto& g, const auto& x, const auto& y) { return op_.gradient(g, x, y); }, dy, *input_,
          output_);
    }
    return input_grad_;
  }

  /// The output of the last forward() (size x batch).
  const Array& output() const { return output_; }
  /// For Sequential's fusion (nn/sequential.hpp), where the layer before writes f(its output)
  /// straight here in its own output pass: the output buffer, shaped size x cols. The layer then
  /// holds no input, and the producing layer applies f' in its backward.
  Array& fused_output(Index cols) {
    ensure_shape(output_, size_, cols);
    input_ = nullptr;
    return output_;
  }
  /// The activation's parameters (e.g. the leaky ReLU slope).
  const Op& op() const { return op_; }

private:
  BasicElementwise(Ctx& ctx, Index size, Op op)
      : ctx_(&ctx), size_(size), op_(op), output_(detail::make_array<Array>(ctx)),
        input_grad_(detail::make_array<Array>(ctx)) {
    require<ShapeError>(size > 0, Op::name, ": size must be positive, found ", size);
  }

  Ctx* ctx_;
  Index size_;
  Op op_;
  const Array* input_ = nullptr;
  Array output_;
  Array input_grad_;
};

/// The CPU's element-wise activation layer.
template <typename T, typename Op>
using Elementwise = BasicElementwise<T, Op, HostContext>;

/// Identity layer, f(x) = x.
template <typename T> using Identity = Elementwise<T, activation::IdentityOp>;
/// Hyperbolic tangent layer.
template <typename T> using Tanh = Elementwise<T, activation::TanhOp>;
/// ReLU layer, max(x, 0).
template <typename T> using Relu = Elementwise<T, activation::ReluOp>;
/// Logistic sigmoid layer.
template <typename T> using Sigmoid = Elementwise<T, activation::SigmoidOp>;
/// Softplus layer, log(1 + eˣ).
template <typename T> using Softplus = Elementwise<T, activation::SoftplusOp>;

/// Leaky ReLU with a run-time negative slope (default 0.01).
template <typename T>
class LeakyRelu : public Elementwise<T, activation::LeakyReluOp> {
public:
  /// A leaky ReLU over `size` features with negative-side multiplier `slope`; throws ShapeError unless size > 0.
  explicit LeakyRelu(Index size, double slope = 0.01)
      : Elementwise<T, activation::LeakyReluOp>(size, activation::LeakyReluOp{slope}) {}
};

}  // namespace mlvae
