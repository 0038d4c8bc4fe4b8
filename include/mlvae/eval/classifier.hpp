/// @file
/// mlvae/eval/classifier.hpp — classifiers that measure how informative a latent code is of a
/// label (the ML-VAE paper's content-vs-style evaluation): multinomial logistic regression trained
/// with mlvae's Adam, and k-nearest neighbours. Features are columns (dims x N), in double.
/// Softmax regression on standardised features u = (x − μ) / σ, with p = softmax(W u + b):
///   loss = −(1/N) Σ_n log p_{y_n}(u_n) + ½ λ ‖W‖²,
///   ∂loss/∂W = (1/N) (P − Y) Uᵀ + λ W,   ∂loss/∂b = (1/N) Σ_n (p_n − y_n).
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/random.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/optim/adam.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace mlvae {

/// Fraction of `predicted` equal to `truth` (same length, non-empty).
inline double accuracy(const std::vector<int>& predicted, const std::vector<int>& truth) {
  require<ShapeError>(predicted.size() == truth.size() && !truth.empty(), "accuracy: ", predicted.size(),
                      " predictions for ", truth.size(), " labels");
  std::size_t hits = 0;
  for (std::size_t i = 0; i < truth.size(); ++i) hits += predicted[i] == truth[i] ? 1 : 0;
  return static_cast<double>(hits) / static_cast<double>(truth.size());
}

namespace detail {
inline int check_labels(const std::vector<int>& labels, Index n, const char* where) {
  require<ShapeError>(static_cast<Index>(labels.size()) == n && n > 0, where, ": expected ", n,
                      " labels (one per column, at least one), found ", labels.size());
  int classes = 0;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    require<ArgumentError>(labels[i] >= 0, where, ": labels must be >= 0, found ", labels[i], " at ", i);
    classes = std::max(classes, labels[i] + 1);
  }
  return classes;
}
}  // namespace detail

/// Training settings of SoftmaxRegression (trained with mlvae's Adam).
struct SoftmaxRegressionOptions {
  int epochs = 200;         ///< passes over the data
  Index batch_size = 0;     ///< 0: full batch
  /// Adam step size.
  double learning_rate = 0.05;
  double l2 = 1e-4;         ///< λ on the weights (not the biases)
  bool standardize = true;  ///< scale features to zero mean, unit variance (statistics of the fit set)
  std::uint64_t seed = 1;   ///< minibatch shuffling
};

/// Multinomial logistic regression. Parameters θ = [vec(W) (K x D, column-major); b (K)].
class SoftmaxRegression {
public:
  /// An unfitted classifier with the given training settings.
  explicit SoftmaxRegression(SoftmaxRegressionOptions options = {}) : options_(options) {}

  /// Number of classes K (largest fitted label + 1; 0 before fit).
  Index classes() const { return classes_; }
  /// Number of input features D (0 before fit).
  Index features() const { return features_; }
  /// The fitted θ = [vec(W); b], for standardised features.
  const Vector<double>& parameters() const { return theta_; }
  /// The training settings.
  const SoftmaxRegressionOptions& options() const { return options_; }

  /// Mean negative log-likelihood + ½λ‖W‖² of already-standardised features `u` (D x N) with
  /// `labels`, at parameters `theta`; writes the gradient into `grad` (same size as theta).
  static double loss_and_gradient(const Matrix<double>& u, const std::vector<int>& labels, Index classes,
                                  const Vector<double>& theta, double l2, Vector<double>& grad) {
    const Index d = u.rows(), n = u.cols();
    require<ShapeError>(theta.size() == classes * (d + 1), "SoftmaxRegression: expected ", classes * (d + 1),
                        " parameters, found ", theta.size());
    Eigen::Map<const Matrix<double>> w(theta.data(), classes, d);
    Eigen::Map<const Vector<double>> b(theta.data() + classes * d, classes);
    Matrix<double> p = w * u;
    p.colwise() += b;
    double nll = 0;
    for (Index j = 0; j < n; ++j) {
      const double m = p.col(j).maxCoeff();
      p.col(j).array() = (p.col(j).array() - m).exp();
      const double z = p.col(j).sum();
      p.col(j) /= z;
      nll -= std::log(std::max(p(labels[static_cast<std::size_t>(j)], j), 1e-300));
      p(labels[static_cast<std::size_t>(j)], j) -= 1.0;  // P − Y
    }
    grad.resize(theta.size());
    Eigen::Map<Matrix<double>> gw(grad.data(), classes, d);
    Eigen::Map<Vector<double>> gb(grad.data() + classes * d, classes);
    const double inv_n = 1.0 / static_cast<double>(n);
    gw.noalias() = inv_n * p * u.transpose();
    gw += l2 * w;
    gb = inv_n * p.rowwise().sum();
    return nll * inv_n + 0.5 * l2 * w.squaredNorm();
  }

  /// Fits on `x` (D x N) with labels in [0, classes); classes = 0 takes max(label) + 1.
  /// Returns the final training loss.
  template <typename Derived>
  double fit(const Eigen::MatrixBase<Derived>& x, const std::vector<int>& labels, Index classes = 0) {
    const int seen = detail::check_labels(labels, x.cols(), "SoftmaxRegression::fit");
    classes_ = classes > 0 ? classes : seen;
    require<ArgumentError>(seen <= classes_, "SoftmaxRegression::fit: label ", seen - 1, " >= classes ", classes_);
    features_ = x.rows();
    const Matrix<double> xd = x.template cast<double>();
    mean_ = xd.rowwise().mean();
    scale_ = Vector<double>::Ones(features_);
    if (options_.standardize) {
      for (Index r = 0; r < features_; ++r) {
        const double var = (xd.row(r).array() - mean_(r)).square().mean();
        scale_(r) = var > 1e-24 ? 1.0 / std::sqrt(var) : 1.0;
      }
    } else {
      mean_.setZero();
    }
    const Matrix<double> u = standardized(xd);
    theta_.setZero(classes_ * (features_ + 1));
    AdamOptions ao;
    ao.learning_rate = options_.learning_rate;
    Adam<double> adam(theta_.size(), ao);
    Vector<double> grad;
    const Index n = u.cols();
    const Index batch = options_.batch_size > 0 ? std::min(options_.batch_size, n) : n;
    std::vector<Index> order(static_cast<std::size_t>(n));
    std::iota(order.begin(), order.end(), Index(0));
    Rng rng(options_.seed);
    Matrix<double> ub;
    std::vector<int> lb;
    double loss = 0;
    for (int epoch = 0; epoch < options_.epochs; ++epoch) {
      if (batch == n) {
        loss = loss_and_gradient(u, labels, classes_, theta_, options_.l2, grad);
        adam.step(theta_, grad);
        continue;
      }
      for (std::size_t i = order.size(); i > 1; --i)
        std::swap(order[i - 1], order[static_cast<std::size_t>(rng.uniform_index(i))]);
      for (Index begin = 0; begin < n; begin += batch) {
        const Index m = std::min(batch, n - begin);
        ub.resize(features_, m);
        lb.resize(static_cast<std::size_t>(m));
        for (Index j = 0; j < m; ++j) {
          const Index src = order[static_cast<std::size_t>(begin + j)];
          ub.col(j) = u.col(src);
          lb[static_cast<std::size_t>(j)] = labels[static_cast<std::size_t>(src)];
        }
        loss_and_gradient(ub, lb, classes_, theta_, options_.l2, grad);
        adam.step(theta_, grad);
      }
    }
    if (batch != n) loss = loss_and_gradient(u, labels, classes_, theta_, options_.l2, grad);
    return loss;
  }

  /// Class probabilities (K x N).
  template <typename Derived>
  Matrix<double> predict_proba(const Eigen::MatrixBase<Derived>& x) const {
    require<ShapeError>(classes_ > 0, "SoftmaxRegression::predict: call fit() first");
    require<ShapeError>(x.rows() == features_, "SoftmaxRegression::predict: fitted on ", features_,
                        " features, found ", x.rows());
    const Matrix<double> u = standardized(x.template cast<double>());
    Eigen::Map<const Matrix<double>> w(theta_.data(), classes_, features_);
    Eigen::Map<const Vector<double>> b(theta_.data() + classes_ * features_, classes_);
    Matrix<double> p = w * u;
    p.colwise() += b;
    for (Index j = 0; j < p.cols(); ++j) {
      p.col(j).array() = (p.col(j).array() - p.col(j).maxCoeff()).exp();
      p.col(j) /= p.col(j).sum();
    }
    return p;
  }

  /// Most probable class of each column.
  template <typename Derived>
  std::vector<int> predict(const Eigen::MatrixBase<Derived>& x) const {
    const Matrix<double> p = predict_proba(x);
    std::vector<int> out(static_cast<std::size_t>(p.cols()));
    for (Index j = 0; j < p.cols(); ++j) {
      Index best = 0;
      p.col(j).maxCoeff(&best);
      out[static_cast<std::size_t>(j)] = static_cast<int>(best);
    }
    return out;
  }

private:
  Matrix<double> standardized(const Matrix<double>& x) const {
    return ((x.colwise() - mean_).array().colwise() * scale_.array()).matrix();
  }

  SoftmaxRegressionOptions options_;
  Index classes_ = 0, features_ = 0;
  Vector<double> theta_, mean_, scale_;
};

/// k-nearest-neighbour classifier, Euclidean distance, majority vote (ties go to the class whose
/// voters are nearer in total, then to the smaller label).
class KNearestNeighbors {
public:
  /// A classifier voting among the `k` nearest references; throws ArgumentError unless k ≥ 1.
  explicit KNearestNeighbors(Index k = 5) : k_(k) {
    require<ArgumentError>(k >= 1, "KNearestNeighbors: k must be >= 1, found ", k);
  }

  /// Stores the reference points `x` (D x N, one per column, copied as double) and their `labels` (≥ 0).
  /// Throws ShapeError unless there is one label per column (at least one), ArgumentError on a negative label.
  template <typename Derived>
  void fit(const Eigen::MatrixBase<Derived>& x, const std::vector<int>& labels) {
    classes_ = detail::check_labels(labels, x.cols(), "KNearestNeighbors::fit");
    reference_ = x.template cast<double>();
    reference_norms_ = reference_.colwise().squaredNorm();
    labels_ = labels;
  }

  /// Predicted label of each column of `x`, `chunk` queries at a time (‖a‖² + ‖b‖² − 2aᵀb by GEMM).
  template <typename Derived>
  std::vector<int> predict(const Eigen::MatrixBase<Derived>& x, Index chunk = 512) const {
    require<ShapeError>(reference_.cols() > 0, "KNearestNeighbors::predict: call fit() first");
    require<ShapeError>(x.rows() == reference_.rows(), "KNearestNeighbors::predict: fitted on ",
                        reference_.rows(), " features, found ", x.rows());
    const Matrix<double> q = x.template cast<double>();
    const Index n = q.cols(), r = reference_.cols(), k = std::min(k_, r);
    std::vector<int> out(static_cast<std::size_t>(n));
    std::vector<Index> idx(static_cast<std::size_t>(r));
    std::vector<double> votes(static_cast<std::size_t>(classes_)), dist_sum(static_cast<std::size_t>(classes_));
    Matrix<double> d2;
    for (Index begin = 0; begin < n; begin += chunk) {
      const Index m = std::min(chunk, n - begin);
      d2.noalias() = -2.0 * reference_.transpose() * q.middleCols(begin, m);
      d2.colwise() += reference_norms_.transpose();
      for (Index j = 0; j < m; ++j) {
        std::iota(idx.begin(), idx.end(), Index(0));
        const auto col = d2.col(j);
        std::nth_element(idx.begin(), idx.begin() + (k - 1), idx.end(),
                         [&](Index a, Index b) { return col(a) < col(b) || (col(a) == col(b) && a < b); });
        std::fill(votes.begin(), votes.end(), 0.0);
        std::fill(dist_sum.begin(), dist_sum.end(), 0.0);
        for (Index t = 0; t < k; ++t) {
          const auto c = static_cast<std::size_t>(labels_[static_cast<std::size_t>(idx[static_cast<std::size_t>(t)])]);
          votes[c] += 1;
          dist_sum[c] += col(idx[static_cast<std::size_t>(t)]);
        }
        std::size_t best = 0;
        for (std::size_t c = 1; c < votes.size(); ++c)
          if (votes[c] > votes[best] || (votes[c] == votes[best] && votes[c] > 0 && dist_sum[c] < dist_sum[best]))
            best = c;
        out[static_cast<std::size_t>(begin + j)] = static_cast<int>(best);
      }
    }
    return out;
  }

  /// Number of neighbours that vote.
  Index k() const { return k_; }

private:
  Index k_;
  int classes_ = 0;
  Matrix<double> reference_;
  RowVector<double> reference_norms_;
  std::vector<int> labels_;
};

}  // namespace mlvae
