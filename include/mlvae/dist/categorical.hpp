/// @file
/// mlvae/dist/categorical.hpp — a categorical q(y|x) from logits a (K x N, one column per observation):
/// log-softmax, entropy, and the Concrete / Gumbel-softmax relaxed sample, each with its backward pass.
/// docs/semisupervised.md, sections "The classifier q(y|x)", "Entropy" and "The relaxed estimator".
///   log π = a − logsumexp(a)              d(Σ_k g_k log π_k)/da = g − π Σ_k g_k
///   H(π) = −Σ π log π                     dH/da_k = −π_k (log π_k + H)
///   ỹ = softmax((a + G)/τ), G ~ Gumbel    dL/da = (1/τ) ỹ ⊙ (dL/dỹ − ⟨ỹ, dL/dỹ⟩)
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/random.hpp"
#include "mlvae/core/types.hpp"

#include <cmath>

namespace mlvae {

/// Column-wise log-softmax: `log_probs(k, j) = a(k, j) − log Σ_i exp a(i, j)` (stable: shifted by the column max).
template <typename T, typename A>
void log_softmax(const Eigen::MatrixBase<A>& logits, Matrix<T>& log_probs) {
  require<ShapeError>(logits.rows() > 0, "log_softmax: the logits have no rows (classes)");
  ensure_shape(log_probs, logits.rows(), logits.cols());
  for (Index j = 0; j < logits.cols(); ++j) {
    const T m = logits.col(j).maxCoeff();
    const T lse = m + std::log((logits.col(j).array() - m).exp().sum());
    log_probs.col(j).array() = logits.col(j).array() - lse;
  }
}

/// Backward of Σ_{k,j} g(k, j) · log π(k, j) through the log-softmax: ADDS g − π ⊙ (column sums of g) to `dlogits`.
template <typename T, typename LP, typename G, typename D>
void log_softmax_backward(const Eigen::MatrixBase<LP>& log_probs, const Eigen::MatrixBase<G>& g,
                          Eigen::MatrixBase<D>& dlogits) {
  for (Index j = 0; j < g.cols(); ++j) {
    const T s = g.col(j).sum();
    dlogits.col(j).array() += g.col(j).array() - log_probs.col(j).array().exp() * s;
  }
}

/// Per-column entropy H(π_j) = −Σ_k π_k log π_k from log-probabilities (K x N) into `out` (1 x N).
template <typename T, typename LP>
void categorical_entropy(const Eigen::MatrixBase<LP>& log_probs, RowVector<T>& out) {
  ensure_shape(out, 1, log_probs.cols());
  out = -(log_probs.array().exp() * log_probs.array()).colwise().sum();
}

/// Backward of Σ_j w · H(π_j) with respect to the logits: ADDS −w π_k (log π_k + H_j) to `dlogits`.
template <typename T, typename LP, typename H, typename D>
void categorical_entropy_backward(const Eigen::MatrixBase<LP>& log_probs, const Eigen::MatrixBase<H>& entropy,
                                  T weight, Eigen::MatrixBase<D>& dlogits) {
  for (Index j = 0; j < log_probs.cols(); ++j)
    dlogits.col(j).array() -=
        weight * log_probs.col(j).array().exp() * (log_probs.col(j).array() + entropy(0, j));
}

/// Fills `gumbel` with standard Gumbel noise G = −log(−log U), U ~ Uniform(0, 1) (drawn column by column).
template <typename T>
void fill_gumbel(Rng& rng, Matrix<T>& gumbel) {
  for (Index j = 0; j < gumbel.cols(); ++j)
    for (Index k = 0; k < gumbel.rows(); ++k) {
      double u = rng.uniform();
      while (u <= 0.0) u = rng.uniform();
      gumbel(k, j) = static_cast<T>(-std::log(-std::log(u)));
    }
}

/// The Concrete / Gumbel-softmax relaxed sample ỹ = softmax((a + G) / τ), column-wise (Maddison et al. 2017,
/// Jang et al. 2017). Throws ArgumentError unless τ > 0.
template <typename T, typename A, typename G>
void gumbel_softmax(const Eigen::MatrixBase<A>& logits, const Eigen::MatrixBase<G>& gumbel, T temperature,
                    Matrix<T>& sample) {
  require<ArgumentError>(temperature > T(0) && std::isfinite(static_cast<double>(temperature)),
                         "gumbel_softmax: the temperature must be positive and finite, found ", temperature);
  require<ShapeError>(gumbel.rows() == logits.rows() && gumbel.cols() == logits.cols(), "gumbel_softmax: logits are ",
                      logits.rows(), "x", logits.cols(), " but the noise is ", gumbel.rows(), "x", gumbel.cols());
  ensure_shape(sample, logits.rows(), logits.cols());
  for (Index j = 0; j < logits.cols(); ++j) {
    sample.col(j) = (logits.col(j) + gumbel.col(j)) / temperature;
    const T m = sample.col(j).maxCoeff();
    sample.col(j).array() = (sample.col(j).array() - m).exp();
    sample.col(j) /= sample.col(j).sum();
  }
}

/// Backward of `gumbel_softmax` (noise held fixed): ADDS (1/τ) ỹ ⊙ (dỹ − ⟨ỹ, dỹ⟩) to `dlogits`.
template <typename T, typename S, typename DS, typename D>
void gumbel_softmax_backward(const Eigen::MatrixBase<S>& sample, const Eigen::MatrixBase<DS>& dsample, T temperature,
                             Eigen::MatrixBase<D>& dlogits) {
  for (Index j = 0; j < sample.cols(); ++j) {
    const T inner = sample.col(j).dot(dsample.col(j));
    dlogits.col(j).array() += sample.col(j).array() * (dsample.col(j).array() - inner) / temperature;
  }
}

}  // namespace mlvae
