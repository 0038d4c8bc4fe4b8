/// @file
/// mlvae/nn/dense.hpp — fully connected layer y = W x + b over a batch of columns (one GEMM), on
/// the CPU or any device (one definition).
/// Backward (docs/elbo.md, "Dense layer"): dW += dy x^T, db += sum over columns of dy, dx = W^T dy.
/// Followed by an activation whose derivative comes from its output (tanh, ReLU, sigmoid), the pair
/// runs fused (nn/sequential.hpp): the bias and f in one pass after the product, f' and db in one
/// pass before the backward products.
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/nn/activations.hpp"
#include "mlvae/nn/gemm.hpp"
#include "mlvae/nn/layer.hpp"

#include <string>
#include <type_traits>

namespace mlvae {

/// Fully connected layer with `in` inputs and `out` outputs; parameters laid out as W (out x in,
/// column-major) followed by b (out). Written once for every device: `Ctx` supplies the arrays, the
/// products and two reductions (HostContext, nn/gemm.hpp: Matrix and mlvae's Gemm; a device
/// context, device/context.hpp: DeviceArray, cuBLAS on a GPU). Dense<T> is the CPU layer.
template <typename T, typename Ctx = HostContext>
class BasicDense : public detail::WeightAndBias<T> {
public:
  /// The floating-point type of parameters and activations.
  using Scalar = T;
  /// What the layer takes and returns: Matrix<T> on the host, the context's DeviceArray on a device.
  using Array = typename Ctx::template Array<T>;

  /// A Dense layer `in` -> `out` on the host (unbound until bind()); throws ShapeError unless both
  /// are positive.
  BasicDense(Index in, Index out, Init init = Init::GlorotUniform)
      : BasicDense(HostContext::instance(), in, out, init) {}
  /// The layer `other` (its sizes) on `ctx`, which must outlive it: a model's copy on a device
  /// (device/layers.hpp) has the same parameter layout.
  template <typename OtherCtx>
  BasicDense(Ctx& ctx, const BasicDense<T, OtherCtx>& other)
      : BasicDense(ctx, other.input_size(), other.output_size(), other.init()) {}

  /// Number of input features, `in`.
  Index input_size() const { return in_; }
  /// Number of output features, `out`.
  Index output_size() const { return out_; }
  /// out·in weights plus out biases.
  Index parameter_count() const { return out_ * in_ + out_; }
  /// "Dense(in->out)", as recorded in checkpoints.
  std::string describe() const { return detail::concat("Dense(", in_, "->", out_, ")"); }
  /// The initialisation scheme of W.
  Init init() const { return init_; }

  /// Maps W (out x in, weight()) and b (out, bias()), and their gradients, onto parameter_count()
  /// scalars at `values` / `gradients` (in the context's memory).
  void bind(T* values, T* gradients) { this->bind_weight_and_bias(values, gradients, out_, in_, out_); }

  /// Arithmetic of the layer's products, forward and backward: Float32 (default) or BFloat16
  /// (nn/gemm_bf16.hpp). Raises ArgumentError for BFloat16 unless T is float and the CPU has AMX-BF16.
  void set_precision(Precision p) { products_.set_precision(p); }
  /// The arithmetic of the layer's products.
  Precision precision() const { return products_.precision(); }

  /// Initialises W with the layer's Init scheme and sets b to zero (host memory).
  void initialize(Rng& rng) {
    initialize_weights(weight_, init_, in_, out_, rng);
    bias_.setZero();
  }

  /// y = W x + b for x of in x batch; returns the out x batch output. Throws ShapeError on a wrong row count.
  const Array& forward(const Array& x) {
    check_input(x);
    ensure_shape(output_, out_, x.cols());
    set_columns(*ctx_, output_, bias_.data());  // y = b
    product(x, output_, true);                  // y += W x
    return output_;
  }

  /// Whether the layer applies a following activation Op itself (nn/sequential.hpp fuses the pair):
  /// any Op whose derivative is a function of its output (activation::gradient_from_output_v).
  template <typename Op>
  static constexpr bool fuses_activation = activation::gradient_from_output_v<Op>;
  /// Fused with the activation f after it: writes f(W x + b) into `out` (out x batch): the product,
  /// then the bias and f in one pass, where the two layers make three. output() is not written.
  /// Throws ShapeError on a wrong row count.
  template <typename Op>
  void forward_activation(const Array& x, Array& out, const Op& op) {
    check_input(x);
    ensure_shape(out, out_, x.cols());
    product(x, out, false);  // y = W x
    bias_activation(*ctx_, out, bias_.data(), [&op](const auto& v) { return op.value(v); });  // y = f(y + b)
  }

  /// Adds dW = dy xᵀ and db = Σ dy to the gradients; returns dx = Wᵀ dy (empty unless need_input_gradient).
  /// Throws ShapeError before forward() or when dy is not out x batch.
  const Array& backward(const Array& dy, bool need_input_gradient = true) {
    check_gradient(dy);
    add_row_sums(*ctx_, bias_grad_.data(), dy, bias_sum_);  // db += Σ_columns dy
    return backward_products(dy, need_input_gradient);
  }
  /// Backward of forward_activation: dy is the gradient at the activation's output y. One pass
  /// forms the gradient at W x + b, dy ⊙ f'(y), and adds its row sums to db; then the products as
  /// in backward(). Throws ShapeError before forward_activation() or on a wrong shape.
  template <typename Op>
  const Array& backward_activation(const Array& dy, const Array& y, const Op& op, bool need_input_gradient = true) {
    check_gradient(dy);
    require<ShapeError>(y.rows() == out_ && y.cols() == dy.cols(), described(*this), ": expected the activation's output ",
                        out_, "x", dy.cols(), ", found ", y.rows(), "x", y.cols());
    ensure_shape(output_, out_, dy.cols());  // holds dLoss/d(W x + b): the fused forward does not use it
    activation_gradient(
        *ctx_, output_, bias_grad_.data(), [&op](const auto& g, const auto& v) { return op.gradient_at_output(g, v); },
        dy, y, bias_sum_);
    return backward_products(output_, need_input_gradient);
  }

  /// The output of the last forward() (out x batch).
  const Array& output() const { return output_; }
private:
  using detail::WeightAndBias<T>::weight_, detail::WeightAndBias<T>::bias_, detail::WeightAndBias<T>::weight_grad_,
      detail::WeightAndBias<T>::bias_grad_;

  void check_input(const Array& x) {
    require<ShapeError>(x.rows() == in_, described(*this), ": expected input with ", in_, " rows, found ", x.rows(),
                        " (x is ", x.rows(), "x", x.cols(), ")");
    input_ = &x;
  }
  void check_gradient(const Array& dy) const {
    require<ShapeError>(input_ != nullptr, described(*this), ": backward called before forward");
    require<ShapeError>(dy.rows() == out_ && dy.cols() == input_->cols(), described(*this), ": expected gradient ", out_,
                        "x", input_->cols(), ", found ", dy.rows(), "x", dy.cols());
  }
  // y (out x batch) = W x, or += when `accumulate`.
  void product(const Array& x, Array& y, bool accumulate) {
    ctx_->gemm(products_.forward, Transpose::No, Transpose::No, out_, x.cols(), in_, weight_.data(), out_, x.data(), in_,
               y.data(), out_, accumulate);
  }
  // dW += g xᵀ; dx = Wᵀ g (when asked) for g, the gradient at W x + b.
  const Array& backward_products(const Array& g, bool need_input_gradient) {
    const Index n = g.cols();
    ctx_->gemm(products_.weight_grad, Transpose::No, Transpose::Yes, out_, in_, n, g.data(), out_, input_->data(), in_,
               weight_grad_.data(), out_, true);
    if (need_input_gradient) {
      ensure_shape(input_grad_, in_, n);
      ctx_->gemm(products_.input_grad, Transpose::Yes, Transpose::No, in_, n, out_, weight_.data(), out_, g.data(), out_,
                 input_grad_.data(), in_, false);
    }
    return input_grad_;
  }

  BasicDense(Ctx& ctx, Index in, Index out, Init init)
      : ctx_(&ctx), in_(in), out_(out), init_(init), output_(detail::make_array<Array>(ctx)),
        input_grad_(detail::make_array<Array>(ctx)), bias_sum_(detail::make_array<Array>(ctx)) {
    require<ShapeError>(in > 0 && out > 0, "Dense: sizes must be positive, found in=", in, " out=", out);
  }

  Ctx* ctx_;
  Index in_, out_;
  Init init_;
  const Array* input_ = nullptr;
  Array output_, input_grad_, bias_sum_;
  LayerProducts<T, Ctx> products_;
};

/// The CPU's fully connected layer.
template <typename T>
using Dense = BasicDense<T, HostContext>;

template <typename... Layers>
class Sequential;

namespace detail {
/// Whether a layer type is one Dense<T> (alone or as a one-layer Sequential), and that layer.
template <typename L, typename T>
struct is_single_dense : std::false_type {};
template <typename T>
struct is_single_dense<Dense<T>, T> : std::true_type {};
template <typename T>
struct is_single_dense<Sequential<Dense<T>>, T> : std::true_type {};
template <typename T>
Dense<T>& single_dense(Dense<T>& d) { return d; }
template <typename T>
Dense<T>& single_dense(Sequential<Dense<T>>& s) { return s.template layer<0>(); }
}  // namespace detail

/// Two Dense layers that read the same input, run as ONE product: y = [W₁; W₂] x + [b₁; b₂] (the
/// ML-VAE's style and content heads: one 40-row product instead of two 20-row ones, whose thin
/// shapes run far below the GEMM's rate). The layers keep their parameters and gradients in the
/// store; this object copies [W₁; W₂] into a packed matrix at each forward (out₁+out₂ by in, a
/// few kB), and backward adds the two blocks of the stacked dW back. Results equal running the
/// layers one after the other up to summation order; tests/test_gradients.cpp checks both.
template <typename T>
class StackedDense {
public:
  /// y ((out₁+out₂) x batch): rows [0, out₁) are a's output, the rest b's. Throws ShapeError when
  /// the layers' input sizes differ or x has the wrong row count.
  const Matrix<T>& forward(const Dense<T>& a, const Dense<T>& b, const Matrix<T>& x) {
    require<ShapeError>(a.input_size() == b.input_size() && x.rows() == a.input_size(),
                        "StackedDense: the layers take ", a.input_size(), " and ", b.input_size(),
                        " inputs, x has ", x.rows(), " rows");
    const Index oa = a.output_size(), ob = b.output_size();
    input_ = &x;
    ensure_shape(weight_, oa + ob, a.input_size());
    weight_.topRows(oa) = a.weight();
    weight_.bottomRows(ob) = b.weight();
    ensure_shape(output_, oa + ob, x.cols());
    output_.topRows(oa).colwise() = a.bias();
    output_.bottomRows(ob).colwise() = b.bias();
    products_.forward.run(Transpose::No, Transpose::No, weight_, x, output_, true);
    return output_;
  }

  /// For dy ((out₁+out₂) x batch): adds dW and db of both layers into their gradients; returns
  /// dx = [W₁; W₂]ᵀ dy (one product). Throws ShapeError before forward() or on a wrong shape.
  const Matrix<T>& backward(Dense<T>& a, Dense<T>& b, const Matrix<T>& dy) {
    require<ShapeError>(input_ != nullptr && dy.rows() == weight_.rows() && dy.cols() == input_->cols(),
                        "StackedDense: expected gradient ", weight_.rows(), "x", input_ ? input_->cols() : 0,
                        ", found ", dy.rows(), "x", dy.cols());
    const Index oa = a.output_size(), ob = b.output_size();
    ensure_shape(weight_grad_, oa + ob, a.input_size());
    products_.weight_grad.run(Transpose::No, Transpose::Yes, dy, *input_, weight_grad_, false);  // dW = dy xᵀ
    a.weight_gradient() += weight_grad_.topRows(oa);
    b.weight_gradient() += weight_grad_.bottomRows(ob);
    a.bias_gradient() += dy.topRows(oa).rowwise().sum();
    b.bias_gradient() += dy.bottomRows(ob).rowwise().sum();
    ensure_shape(input_grad_, a.input_size(), dy.cols());
    products_.input_grad.run(Transpose::Yes, Transpose::No, weight_, dy, input_grad_, false);  // dx = Wᵀ dy
    return input_grad_;
  }

  /// The output of the last forward().
  const Matrix<T>& output() const { return output_; }

  /// Arithmetic of the layer's products, forward and backward: Float32 (default) or BFloat16
  /// (nn/gemm_bf16.hpp). Raises ArgumentError for BFloat16 unless T is float and the CPU has AMX-BF16.
  void set_precision(Precision p) { products_.set_precision(p); }
  /// The arithmetic of the layer's products.
  Precision precision() const { return products_.precision(); }

private:
  const Matrix<T>* input_ = nullptr;
  Matrix<T> weight_, weight_grad_, output_, input_grad_;
  LayerProducts<T, HostContext> products_;
};

}  // namespace mlvae
