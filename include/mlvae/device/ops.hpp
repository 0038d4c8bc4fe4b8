/// @file
/// mlvae/device/ops.hpp — the math of an ML-VAE step written once as Eigen Tensor expressions,
/// evaluated with `.device(d)` on any Eigen device (DefaultDevice, ThreadPoolDevice, GpuDevice):
/// the likelihoods and their gradients, the counter-based normal generator, the fused Adam update
/// and the gradient-norm partial sums (the Gaussian and content-path kernels are
/// model/content_path.hpp's, shared with the CPU). The formulas are those of dist/ and
/// optim/adam.hpp (docs/elbo.md), which stay the CPU reference.
///
/// Reductions are only ever partial reductions over the first or the last dimension of a matrix;
/// no full reduction and no reduction of
/// double on the GPU: Eigen 3.4.0's generic GPU reduction reduces recursively (a tree) inside one
/// thread and can overflow its stack on long inputs. Totals (loss terms, the gradient norm) are
/// finished on the host from at most a few thousand partial sums, in a fixed order.
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/device/context.hpp"
#include "mlvae/dist/gaussian.hpp"
#include "mlvae/dist/likelihood.hpp"
#include "mlvae/nn/activations.hpp"
#include "mlvae/optim/adam.hpp"

#include <cstdint>
#include <type_traits>
#include <vector>

namespace mlvae::device {

/// Eigen dimension lists.
using Dims1 = Eigen::array<Index, 1>;
/// Two dimensions (rows, cols).
using Dims2 = Eigen::array<Index, 2>;
/// Three dimensions (rows, members, groups).
using Dims3 = Eigen::array<Index, 3>;

// ---- Likelihoods -------------------------------------------------------------------------------

/// A likelihood (dist/likelihood.hpp) on a device: its element-wise formulas (the likelihood's
/// *_terms functions, written once for both kinds of expression) with the device's reductions:
/// per-column log p(x | out), weight · d log p / d out, and the mean E[x] for pictures.
/// Specialised for the three likelihoods of mlvae.
template <typename Likelihood>
struct TensorLikelihood {
  static_assert(sizeof(Likelihood) == 0, "mlvae::device: this likelihood has no device form yet");
};

/// Bernoulli with logits ℓ.
template <typename T>
struct TensorLikelihood<BernoulliLikelihood<T>> {
  /// Writes the per-column log-likelihood (1 x N as a vector of N) of x (D x N) given logits (D x N).
  template <typename D, typename X, typename O, typename L>
  static void log_likelihood(const D& d, const BernoulliLikelihood<T>& lik, const X& x, const O& l, L&& out) {
    assign(d, out, lik.log_p_terms(x, l).sum(Dims1{0}));
  }
  /// Writes weight (x − sigmoid(ℓ)).
  template <typename D, typename X, typename O, typename G>
  static void gradient(const D& d, const BernoulliLikelihood<T>& lik, const X& x, const O& l, T weight, G&& grad) {
    assign(d, grad, lik.gradient_terms(x, l, weight));
  }
  /// Writes E[x] = sigmoid(ℓ) (rows(ℓ) x N).
  template <typename D, typename O, typename M>
  static void mean(const D& d, const BernoulliLikelihood<T>& lik, const O& l, M&& out) {
    assign(d, out, lik.mean_terms(l));
  }
};

/// Gaussian with fixed variance σ².
template <typename T>
struct TensorLikelihood<GaussianLikelihood<T>> {
  /// Writes the per-column log-likelihood of x (D x N) given μ (D x N).
  template <typename D, typename X, typename O, typename L>
  static void log_likelihood(const D& d, const GaussianLikelihood<T>& lik, const X& x, const O& mu, L&& out) {
    assign(d, out, lik.squared_error_terms(x, mu).sum(Dims1{0}));  // a reduction at the root: no GPU temporary
    assign(d, out, lik.log_p_from_squared_error(out, static_cast<Index>(x.dimension(0))));
  }
  /// Writes weight (x − μ)/σ².
  template <typename D, typename X, typename O, typename G>
  static void gradient(const D& d, const GaussianLikelihood<T>& lik, const X& x, const O& mu, T weight, G&& grad) {
    assign(d, grad, lik.gradient_terms(x, mu, weight));
  }
  /// Writes E[x] = μ.
  template <typename D, typename O, typename M>
  static void mean(const D& d, const GaussianLikelihood<T>&, const O& mu, M&& out) {
    assign(d, out, mu);
  }
};

/// Gaussian with learned variance, decoder rows [μ; log σ²].
template <typename T>
struct TensorLikelihood<GaussianLearnedVarianceLikelihood<T>> {
  /// Writes the per-column log-likelihood.
  template <typename D, typename X, typename O, typename L>
  static void log_likelihood(const D& d, const GaussianLearnedVarianceLikelihood<T>& lik, const X& x,
                             const O& out_rows, L&& out) {
    const Index rows = static_cast<Index>(x.dimension(0)), cols = static_cast<Index>(x.dimension(1));
    const auto mu = out_rows.slice(Dims2{0, 0}, Dims2{rows, cols});
    const auto logvar = out_rows.slice(Dims2{rows, 0}, Dims2{rows, cols});
    assign(d, out, lik.log_p_terms(x, mu, logvar).sum(Dims1{0}));
  }
  /// Writes weight [(x − μ)/σ²; ½((x − μ)²/σ² − 1)].
  template <typename D, typename X, typename O, typename G>
  static void gradient(const D& d, const GaussianLearnedVarianceLikelihood<T>& lik, const X& x, const O& out_rows,
                       T weight, G&& grad) {
    const Index rows = static_cast<Index>(x.dimension(0)), cols = static_cast<Index>(x.dimension(1));
    const auto mu = out_rows.slice(Dims2{0, 0}, Dims2{rows, cols});
    const auto logvar = out_rows.slice(Dims2{rows, 0}, Dims2{rows, cols});
    assign(d, grad.slice(Dims2{0, 0}, Dims2{rows, cols}), lik.mean_gradient_terms(x, mu, logvar, weight));
    assign(d, grad.slice(Dims2{rows, 0}, Dims2{rows, cols}), lik.logvar_gradient_terms(x, mu, logvar, weight));
  }
  /// Writes E[x] = μ, the top half of the decoder output.
  template <typename D, typename O, typename M>
  static void mean(const D& d, const GaussianLearnedVarianceLikelihood<T>&, const O& out_rows, M&& out) {
    const Index rows = static_cast<Index>(out_rows.dimension(0)) / 2, cols = static_cast<Index>(out_rows.dimension(1));
    assign(d, out, out_rows.slice(Dims2{0, 0}, Dims2{rows, cols}));
  }
};

/// The per-column log-likelihood of a model's step into `log_likelihood` (N, device memory) and,
/// with `grad`, weight · its gradient with respect to the decoder output: the devices' form of
/// dist/likelihood.hpp's likelihood_columns (a model written once calls either).
template <typename Likelihood, typename T, typename Ctx>
void likelihood_columns(Ctx& ctx, const Likelihood& likelihood, const DeviceArray<T, Ctx>& x,
                        const DeviceArray<T, Ctx>& out, T weight, T* log_likelihood, DeviceArray<T, Ctx>* grad) {
  TensorLikelihood<Likelihood>::log_likelihood(ctx.device(), likelihood, x.tensor(), out.tensor(),
                                               TensorVector<T>(log_likelihood, x.cols()));
  if (grad == nullptr) return;
  grad->resize(out.rows(), out.cols());
  TensorLikelihood<Likelihood>::gradient(ctx.device(), likelihood, x.tensor(), out.tensor(), weight, grad->tensor());
}

// ---- Noise -------------------------------------------------------------------------------------

/// Counter-based standard normals: element i of a draw with key k is a pure function of (k, i),
/// Box–Muller (cosine branch, in double) on two 32-bit halves of SplitMix64's output at position
/// i + 1 of the stream seeded with k. The same bits on every device and for any launch shape or
/// thread count; only the last ulp of log/cos may differ between the host and CUDA math libraries.
template <typename T>
struct CounterNormal {
  std::uint64_t key = 0;  ///< the draw's key (e.g. one 64-bit output of the trainer's Rng per step)

  /// SplitMix64's output function.
  EIGEN_DEVICE_FUNC static std::uint64_t mix(std::uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  /// The normal at linear index i.
  EIGEN_DEVICE_FUNC T operator()(Index i) const {
    const std::uint64_t bits = mix(key + (static_cast<std::uint64_t>(i) + 1) * 0x9e3779b97f4a7c15ULL);
    const double u1 = (static_cast<double>(bits >> 32) + 1.0) * 2.3283064365386962890625e-10;  // (0, 1]
    const double u2 = static_cast<double>(bits & 0xffffffffULL) * 2.3283064365386962890625e-10;  // [0, 1)
    using std::cos;
    using std::log;
    using std::sqrt;
    return static_cast<T>(sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2));
  }
};

/// Fills `out` with CounterNormal draws of key `key` (element i: linear column-major index i).
template <typename D, typename Out>
void fill_normal(const D& d, std::uint64_t key, Out&& out) {
  using T = typename Eigen::internal::traits<std::decay_t<Out>>::Scalar;
  assign(d, out, out.nullaryExpr(CounterNormal<T>{key}));
}

/// A per-stream key from a step key (e.g. stream 0: style noise, stream 1: content noise).
EIGEN_DEVICE_FUNC inline std::uint64_t stream_key(std::uint64_t step_key, std::uint64_t stream) {
  return CounterNormal<double>::mix(step_key ^ (0x632be59bd9b4e019ULL * (stream + 1)));
}

/// CounterNormal whose step key is read from device memory when the expression runs, not when it
/// is queued: element i is CounterNormal{stream_key(*step_key, stream)}(i), the numbers of
/// fill_normal(d, stream_key(key, stream), out) for key = *step_key. A captured step (CUDA graph)
/// replays its launches with their arguments frozen, so its noise key must live on the device.
template <typename T>
struct CounterNormalAt {
  const std::uint64_t* step_key = nullptr;  ///< device memory
  std::uint64_t stream = 0;                 ///< the noise stream (0: style, 1: content)
  /// The normal at linear index i.
  EIGEN_DEVICE_FUNC T operator()(Index i) const { return CounterNormal<T>{stream_key(*step_key, stream)}(i); }
};

/// Fills `out` with the normals of stream `stream` of the step key held at `step_key` (device).
template <typename D, typename Out>
void fill_normal_at(const D& d, const std::uint64_t* step_key, std::uint64_t stream, Out&& out) {
  using T = typename Eigen::internal::traits<std::decay_t<Out>>::Scalar;
  assign(d, out, out.nullaryExpr(CounterNormalAt<T>{step_key, stream}));
}

/// The step-key sequence of a step run without the host: key ← SplitMix64(key + golden ratio).
struct NextKey {
  /// The key after `key`.
  EIGEN_DEVICE_FUNC std::uint64_t operator()(std::uint64_t key) const {
    return CounterNormal<double>::mix(key + 0x9e3779b97f4a7c15ULL);
  }
};

/// Advances the step key held at `key` (one element of device memory) to NextKey's next one.
template <typename D>
void advance_key(const D& d, std::uint64_t* key) {
  TensorVector<std::uint64_t> k(key, 1);
  assign(d, k, k.unaryExpr(NextKey{}));
}

// ---- Optimiser ---------------------------------------------------------------------------------

/// Parameters per partial sum of the squared gradient norm (as optim/adam.hpp's chunks).
inline constexpr Index norm_chunk = 8192;

/// Number of partial sums squared_norm_partials writes for `n` gradients.
inline Index norm_partial_count(Index n) { return (n + norm_chunk - 1) / norm_chunk; }

/// Writes the squared L2 norm of each 8192-element chunk of `g` (n elements) into `partials`
/// (norm_partial_count(n) elements): inner-dimension reductions only, summed on the host in order.
template <typename D, typename T>
void squared_norm_partials(const D& d, const T* g, Index n, T* partials) {
  const Index full = n / norm_chunk, tail = n - full * norm_chunk;
  if (full > 0) {
    TensorMatrix<const T> chunks(g, norm_chunk, full);
    assign(d, TensorVector<T>(partials, full), chunks.square().sum(Dims1{0}));
  }
  if (tail > 0) {
    TensorMatrix<const T> last(g + full * norm_chunk, tail, 1);
    assign(d, TensorVector<T>(partials + full, 1), last.square().sum(Dims1{0}));
  }
}

/// The Adam update of optim/adam.hpp on n parameters (coefficients: AdamCoefficients::of), as three element-wise passes (one per
/// output: m, v, θ), each one fused expression:
///   m ← β₁m + (1−β₁) s g;  v ← β₂v + (1−β₂)(s g)²;  θ ← θ − lr (m c₁ / (√(v c₂) + ε) + λθ).
template <typename D, typename T>
void adam_update(const D& d, const AdamCoefficients<T>& k, Index n, T* values, const T* gradients, T* m, T* v) {
  TensorVector<const T> g(gradients, n);
  TensorVector<T> mt(m, n), vt(v, n), p(values, n);
  assign(d, mt, adam_terms::first_moment(mt, g, k.beta1, k.scale));
  assign(d, vt, adam_terms::second_moment(vt, g, k.beta2, k.scale));
  assign(d, p, adam_terms::parameter(p, mt, vt, k.c1, k.c2, k));
}

/// The value held at `at` (device memory) for every index: a scalar that a queued expression reads
/// when it runs (e.g. an Adam coefficient computed on the device by the step before it).
template <typename T>
struct ValueAt {
  const T* at = nullptr;  ///< device memory
  /// *at.
  EIGEN_DEVICE_FUNC T operator()(Index) const { return *at; }
};

/// Adam's coefficients of one update computed on the device (for a step without the host):
/// slot 0 of `k` the clipping factor, 1 and 2 the bias corrections, 3 the "update" flag (1, or 0
/// when ‖g‖² is not finite: Adam::try_step's "change nothing"); from ‖g‖² at `norm2` and the step
/// count at `step`, already advanced. The same formulas as DeviceAdam::try_step (optim/adam.hpp).
template <typename T>
struct AdamCoefficientsAt {
  const T* norm2 = nullptr;       ///< ‖g‖² (device)
  const double* step = nullptr;   ///< the step count t of this update (device)
  double clip = 0, beta1 = 0.9, beta2 = 0.999;
  /// Coefficient j.
  EIGEN_DEVICE_FUNC T operator()(Index j) const {
    using std::sqrt;
    const double n2 = static_cast<double>(*norm2);
    const bool ok = (Eigen::numext::isfinite)(n2);
    if (j == 3) return ok ? T(1) : T(0);
    if (!ok) return T(1);
    if (j == 0) return AdamCoefficients<T>::clip_factor(clip, sqrt(n2));
    return AdamCoefficients<T>::bias_correction(j == 1 ? beta1 : beta2, *step);
  }
};

/// t + [‖g‖² finite]: the step count after an update that runs only when the norm is finite.
template <typename T>
struct AdvancedStepCount {
  const T* norm2 = nullptr;      ///< ‖g‖² (device)
  const double* step = nullptr;  ///< t (device)
  /// The new count.
  EIGEN_DEVICE_FUNC double operator()(Index) const {
    return *step + ((Eigen::numext::isfinite)(static_cast<double>(*norm2)) ? 1.0 : 0.0);
  }
};

/// Device-side Adam state of a step without the host: `work` holds 5 elements of T, [clip factor,
/// c₁, c₂, update flag, ‖g‖²], `step` one double, the step count; `fixed` gives lr, ε, λ and β₁, β₂
/// for the moments, `clip`, `beta1`, `beta2` the options in double for the coefficients (as Adam).
/// Queues: ‖g‖² = Σ partials (`chunks` of them, from squared_norm_partials); t += [‖g‖² finite];
/// the coefficients; then the update of adam_update with those coefficients read on the device,
/// leaving m, v and θ unchanged when the flag is 0. No host synchronisation, no allocation.
template <typename D, typename T>
void adam_update_on_device(const D& d, const AdamCoefficients<T>& fixed, double clip, double beta1, double beta2,
                           const T* partials, Index chunks, double* step, T* work, Index n, T* values,
                           const T* gradients, T* m, T* v) {
  T* norm2 = work + 4;
  assign(d, TensorVector<T>(norm2, 1), TensorMatrix<const T>(partials, chunks, 1).sum(Dims1{0}));
  TensorVector<double> t(step, 1);
  assign(d, t, t.nullaryExpr(AdvancedStepCount<T>{norm2, step}));
  TensorVector<T> k(work, 4);
  assign(d, k, k.nullaryExpr(AdamCoefficientsAt<T>{norm2, step, clip, beta1, beta2}));
  TensorVector<const T> g(gradients, n);
  TensorVector<T> mt(m, n), vt(v, n), p(values, n);
  const auto scale = g.nullaryExpr(ValueAt<T>{work});
  const auto c1 = g.nullaryExpr(ValueAt<T>{work + 1});
  const auto c2 = g.nullaryExpr(ValueAt<T>{work + 2});
  const auto update = g.nullaryExpr(ValueAt<T>{work + 3}) > T(0);
  assign(d, mt, update.select(adam_terms::first_moment(mt, g, fixed.beta1, scale), mt));
  assign(d, vt, update.select(adam_terms::second_moment(vt, g, fixed.beta2, scale), vt));
  assign(d, p, update.select(adam_terms::parameter(p, mt, vt, c1, c2, fixed), p));
}

/// Sets n device elements to zero.
template <typename D, typename T>
void set_zero(const D& d, T* data, Index n) {
  TensorVector<T> t(data, n);
  assign(d, t, t.constant(T(0)));
}

}  // namespace mlvae::device
