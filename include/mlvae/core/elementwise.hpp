/// @file
/// mlvae/core/elementwise.hpp — the few element-wise spellings that differ between Eigen's Array
/// expressions (the CPU) and its Tensor expressions (every device: DefaultDevice, ThreadPoolDevice,
/// GpuDevice), so that each formula of an activation, a likelihood or a Gaussian term is written
/// once and evaluated on either (dlib's tensor_tools pattern, at the level of expressions).
/// Needs only Eigen's Core: a Tensor expression is recognised by not being an Array expression.
#pragma once

#include <Eigen/Core>

#include <type_traits>

namespace mlvae::ew {

/// The scalar type of an Array or Tensor expression.
template <typename X>
using scalar_t = typename Eigen::internal::traits<std::decay_t<X>>::Scalar;

/// Whether X is an Eigen Array expression (the CPU's); otherwise it is taken as a Tensor expression.
template <typename X>
inline constexpr bool is_array_v = std::is_base_of_v<Eigen::ArrayBase<std::decay_t<X>>, std::decay_t<X>>;

/// max(x, s) element-wise.
template <typename X>
auto max(const X& x, scalar_t<X> s) {
  if constexpr (is_array_v<X>) return x.max(s);
  else return x.cwiseMax(s);
}

/// 1 / (1 + e^{−x}) element-wise.
template <typename X>
auto sigmoid(const X& x) {
  if constexpr (is_array_v<X>) return x.logistic();
  else return x.sigmoid();
}

/// `a` where x > 0, `b` elsewhere (a and b expressions of x's shape).
template <typename X, typename A, typename B>
auto where_positive(const X& x, const A& a, const B& b) {
  return (x > scalar_t<X>(0)).select(a, b);
}

/// `a` where x > 0, 0 elsewhere.
template <typename X, typename A>
auto where_positive_else_zero(const X& x, const A& a) {
  using S = scalar_t<X>;
  if constexpr (is_array_v<X>) return (x > S(0)).select(a, S(0));
  else return (x > S(0)).select(a, a.constant(S(0)));
}

}  // namespace mlvae::ew
