/// @file
/// mlvae/eval/disentanglement.hpp — the disentanglement metrics of disentanglement_lib (Locatello et
/// al. 2019): β-VAE score, FactorVAE score, MIG (20-bin histograms), DCI and SAP, on any ground-truth
/// FactorGrid and any representation function; default sample sizes as in its
/// unsupervised_study_v1 metric configs. Substitutions for scikit-learn models are named at each
/// metric and in docs/disentanglement.md, section "Metrics".
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/random.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/data/dsprites.hpp"
#include "mlvae/eval/classifier.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

namespace mlvae {

/// Maps observations (indices into a FactorGrid) to codes: `codes` becomes (code dims x indices.size()).
/// For a model: render the observations and take the posterior means.
using RepresentationFunction = std::function<void(const std::vector<Index>& indices, Matrix<double>& codes)>;

/// Codes of observations drawn uniformly from the grid, with their factor values.
struct FactorCodeSample {
  /// The observations' grid indices.
  std::vector<Index> indices;
  /// Codes, one column per observation (code dims x n).
  Matrix<double> codes;
  /// Factor values, one column per observation (factors x n).
  Matrix<int> factors;
};

/// Draws `n` observations uniformly and encodes them `chunk` at a time.
inline FactorCodeSample sample_factor_codes(const FactorGrid& grid, const RepresentationFunction& representation,
                                            Index n, Rng& rng, Index chunk = 256) {
  require<ArgumentError>(n >= 1, "sample_factor_codes: expected at least one point, found ", n);
  FactorCodeSample s;
  s.indices.resize(static_cast<std::size_t>(n));
  s.factors.resize(grid.num_factors(), n);
  std::vector<int> f;
  for (Index j = 0; j < n; ++j) {
    grid.sample_factors(rng, f);
    s.indices[static_cast<std::size_t>(j)] = grid.index_of(f);
    for (int k = 0; k < grid.num_factors(); ++k) s.factors(k, j) = f[static_cast<std::size_t>(k)];
  }
  Matrix<double> part;
  for (Index begin = 0; begin < n; begin += chunk) {
    const Index m = std::min(chunk, n - begin);
    const std::vector<Index> idx(s.indices.begin() + begin, s.indices.begin() + begin + m);
    representation(idx, part);
    require<ShapeError>(part.cols() == m && part.rows() >= 1, "sample_factor_codes: the representation returned ",
                        part.rows(), "x", part.cols(), " codes for ", m, " observations");
    if (begin == 0) s.codes.resize(part.rows(), n);
    require<ShapeError>(part.rows() == s.codes.rows(), "sample_factor_codes: the code size changed from ",
                        s.codes.rows(), " to ", part.rows());
    s.codes.middleCols(begin, m) = part;
  }
  return s;
}

/// Writes the sample as CSV: a header `index,<factor names>,code0,...`, then one row per
/// observation (codes with 17 significant digits), so other implementations can recompute the
/// metrics on exactly these numbers. @throws IoError when the file cannot be written.
inline void write_factor_codes_csv(const std::string& path, const FactorGrid& grid, const FactorCodeSample& s) {
  std::ofstream out(path);
  require<IoError>(static_cast<bool>(out), "write_factor_codes_csv: cannot open '", path, "' for writing");
  out << "index";
  for (const auto& name : grid.names()) out << ',' << name;
  for (Index d = 0; d < s.codes.rows(); ++d) out << ",code" << d;
  out << '\n';
  out.precision(17);
  for (Index j = 0; j < s.codes.cols(); ++j) {
    out << s.indices[static_cast<std::size_t>(j)];
    for (Index k = 0; k < s.factors.rows(); ++k) out << ',' << s.factors(k, j);
    for (Index d = 0; d < s.codes.rows(); ++d) out << ',' << s.codes(d, j);
    out << '\n';
  }
  require<IoError>(static_cast<bool>(out), "write_factor_codes_csv: writing '", path, "' failed");
}

/// Histogram discretisation of each code row into `bins` equal-width bins between its minimum and
/// maximum (numpy's histogram + digitize, as disentanglement_lib; labels 0 … bins−1, the maximum in
/// the last bin; a constant row goes to one bin).
inline Matrix<int> histogram_discretize(const Matrix<double>& codes, int bins) {
  require<ArgumentError>(bins >= 1, "histogram_discretize: expected at least one bin, found ", bins);
  Matrix<int> out(codes.rows(), codes.cols());
  for (Index i = 0; i < codes.rows(); ++i) {
    const double lo = codes.row(i).minCoeff(), hi = codes.row(i).maxCoeff();
    for (Index j = 0; j < codes.cols(); ++j) {
      int b = hi > lo ? static_cast<int>(std::floor((codes(i, j) - lo) / (hi - lo) * bins)) : bins / 2;
      out(i, j) = std::clamp(b, 0, bins - 1);
    }
  }
  return out;
}

/// Mutual information (nats) between two label rows of equal length, from their contingency table
/// (scikit-learn's mutual_info_score).
template <typename A, typename B>
double discrete_mutual_information(const Eigen::DenseBase<A>& a, const Eigen::DenseBase<B>& b) {
  require<ShapeError>(a.size() == b.size() && a.size() > 0, "discrete_mutual_information: expected two non-empty ",
                      "label rows of one length, found ", a.size(), " and ", b.size());
  const int ka = a.maxCoeff() + 1, kb = b.maxCoeff() + 1;
  require<ArgumentError>(a.minCoeff() >= 0 && b.minCoeff() >= 0, "discrete_mutual_information: labels must be >= 0");
  Matrix<double> joint = Matrix<double>::Zero(ka, kb);
  for (Index j = 0; j < a.size(); ++j) joint(a(j), b(j)) += 1;
  joint /= static_cast<double>(a.size());
  const Vector<double> pa = joint.rowwise().sum();
  const RowVector<double> pb = joint.colwise().sum();
  double mi = 0;
  for (Index i = 0; i < ka; ++i)
    for (Index k = 0; k < kb; ++k)
      if (joint(i, k) > 0) mi += joint(i, k) * std::log(joint(i, k) / (pa(i) * pb(k)));
  return std::max(mi, 0.0);
}

/// MIG and the matrices behind it.
struct MigScore {
  /// Mean over factors of (largest − second largest MI with a code dimension) / H(factor).
  double mig = 0;
  /// MI between each discretised code dimension (row) and each factor (column), in nats.
  Matrix<double> mutual_information;
  /// Entropy of each factor in the sample, in nats.
  Vector<double> factor_entropy;
};

/// Mutual information gap (Chen et al. 2018) as in disentanglement_lib: codes discretised into
/// `bins`-bin histograms. @throws ShapeError unless there are ≥ 2 code dimensions and one factor
/// column per code column.
inline MigScore mig_score(const Matrix<double>& codes, const Matrix<int>& factors, int bins = 20) {
  require<ShapeError>(codes.rows() >= 2 && codes.cols() == factors.cols() && codes.cols() > 0,
                      "mig_score: expected >= 2 code dimensions and one factor column per code column, found codes ",
                      codes.rows(), "x", codes.cols(), " and factors ", factors.rows(), "x", factors.cols());
  const Matrix<int> discrete = histogram_discretize(codes, bins);
  MigScore s;
  s.mutual_information.resize(codes.rows(), factors.rows());
  s.factor_entropy.resize(factors.rows());
  for (Index k = 0; k < factors.rows(); ++k) {
    s.factor_entropy(k) = discrete_mutual_information(factors.row(k), factors.row(k));
    for (Index i = 0; i < codes.rows(); ++i)
      s.mutual_information(i, k) = discrete_mutual_information(discrete.row(i), factors.row(k));
  }
  double total = 0;
  for (Index k = 0; k < factors.rows(); ++k) {
    std::vector<double> column(s.mutual_information.col(k).data(),
                               s.mutual_information.col(k).data() + codes.rows());
    std::sort(column.begin(), column.end(), std::greater<double>());
    // A constant factor (entropy 0) is skipped by numpy as 0/0 = nan; here it counts as 0.
    total += s.factor_entropy(k) > 0 ? (column[0] - column[1]) / s.factor_entropy(k) : 0.0;
  }
  s.mig = total / static_cast<double>(factors.rows());
  return s;
}

/// DCI and the importance matrix behind it.
struct DciScore {
  /// Σ_codes (1 − H_K(importance row)) · (row's share of the total importance).
  double disentanglement = 0;
  /// Σ_factors (1 − H_D(importance column)) · (column's share).
  double completeness = 0;
  /// Mean over factors of the classifier's accuracy on the training sample.
  double informativeness_train = 0;
  /// Mean over factors of the classifier's accuracy on the test sample.
  double informativeness_test = 0;
  /// Importance of each code dimension (row) for each factor (column), each column summing to 1.
  Matrix<double> importance;
};

namespace detail {
// 1 − entropy(p + 1e-11) in base `base`, p normalised (scipy.stats.entropy).
inline double one_minus_entropy(Vector<double> p, Index base) {
  p.array() += 1e-11;
  p /= p.sum();
  double h = 0;
  for (Index i = 0; i < p.size(); ++i) h -= p(i) * std::log(p(i));
  return 1.0 - h / std::log(static_cast<double>(base));
}
inline std::vector<int> row_labels(const Matrix<int>& factors, Index k) {
  std::vector<int> y(static_cast<std::size_t>(factors.cols()));
  for (Index j = 0; j < factors.cols(); ++j) y[static_cast<std::size_t>(j)] = factors(k, j);
  return y;
}
}  // namespace detail

/// DCI disentanglement, completeness and informativeness (Eastwood & Williams 2018) from an
/// importance matrix. disentanglement_lib fits gradient-boosted trees per factor; here the
/// classifier of each factor is multinomial logistic regression on standardised codes
/// (SoftmaxRegression with `classifier`), and the importance of code d for the factor is
/// Σ_k |W_kd| (weights on standardised codes), normalised per factor. Informativeness is that
/// classifier's accuracy, as disentanglement_lib reports it.
inline DciScore dci_score(const Matrix<double>& train_codes, const Matrix<int>& train_factors,
                          const Matrix<double>& test_codes, const Matrix<int>& test_factors,
                          SoftmaxRegressionOptions classifier = {40, 256, 0.05, 1e-4, true, 1}) {
  require<ShapeError>(train_codes.cols() == train_factors.cols() && test_codes.cols() == test_factors.cols() &&
                          train_codes.rows() == test_codes.rows() && train_factors.rows() == test_factors.rows() &&
                          train_codes.rows() >= 2 && train_factors.rows() >= 2,
                      "dci_score: expected matching train/test codes and factors with >= 2 code dims and factors");
  const Index D = train_codes.rows(), K = train_factors.rows();
  DciScore s;
  s.importance.setZero(D, K);
  for (Index k = 0; k < K; ++k) {
    const std::vector<int> y = detail::row_labels(train_factors, k), y_test = detail::row_labels(test_factors, k);
    const Index classes = std::max(train_factors.row(k).maxCoeff(), test_factors.row(k).maxCoeff()) + 1;
    SoftmaxRegression model(classifier);
    model.fit(train_codes, y, classes);
    Eigen::Map<const Matrix<double>> w(model.parameters().data(), classes, D);
    s.importance.col(k) = w.cwiseAbs().colwise().sum().transpose();
    const double column = s.importance.col(k).sum();
    if (column > 0) s.importance.col(k) /= column;
    s.informativeness_train += accuracy(model.predict(train_codes), y);
    s.informativeness_test += accuracy(model.predict(test_codes), y_test);
  }
  s.informativeness_train /= static_cast<double>(K);
  s.informativeness_test /= static_cast<double>(K);
  Matrix<double> weights = s.importance;
  if (weights.sum() == 0) weights.setOnes();
  const double total = weights.sum();
  for (Index d = 0; d < D; ++d)
    s.disentanglement += detail::one_minus_entropy(s.importance.row(d).transpose(), K) * weights.row(d).sum() / total;
  for (Index k = 0; k < K; ++k)
    s.completeness += detail::one_minus_entropy(s.importance.col(k), D) * weights.col(k).sum() / total;
  return s;
}

/// SAP and its score matrix.
struct SapScore {
  /// Mean over factors of the gap between the two best single-dimension accuracies.
  double sap = 0;
  /// Test accuracy of predicting each factor (column) from each single code dimension (row).
  Matrix<double> accuracy;
};

/// SAP score (Kumar et al. 2018) for discrete factors, as disentanglement_lib configures it for
/// dSprites. There a linear SVM (C = 0.01, balanced) predicts the factor from one code dimension;
/// here the one-dimensional classifier is the majority factor value in each of `bins` equal-width
/// histogram bins of the training codes (the MIG discretisation), scored on the test sample.
inline SapScore sap_score(const Matrix<double>& train_codes, const Matrix<int>& train_factors,
                          const Matrix<double>& test_codes, const Matrix<int>& test_factors, int bins = 20) {
  require<ShapeError>(train_codes.cols() == train_factors.cols() && test_codes.cols() == test_factors.cols() &&
                          train_codes.rows() == test_codes.rows() && train_factors.rows() == test_factors.rows() &&
                          train_codes.rows() >= 2,
                      "sap_score: expected matching train/test codes and factors with >= 2 code dimensions");
  require<ArgumentError>(bins >= 1, "sap_score: expected at least one bin, found ", bins);
  const Index D = train_codes.rows(), K = train_factors.rows();
  SapScore s;
  s.accuracy.setZero(D, K);
  for (Index d = 0; d < D; ++d) {
    const double lo = train_codes.row(d).minCoeff(), hi = train_codes.row(d).maxCoeff();
    auto bin_of = [&](double v) {
      const int b = hi > lo ? static_cast<int>(std::floor((v - lo) / (hi - lo) * bins)) : 0;
      return std::clamp(b, 0, bins - 1);
    };
    for (Index k = 0; k < K; ++k) {
      const int classes = std::max(train_factors.row(k).maxCoeff(), test_factors.row(k).maxCoeff()) + 1;
      Matrix<double> counts = Matrix<double>::Zero(bins, classes);
      for (Index j = 0; j < train_codes.cols(); ++j) counts(bin_of(train_codes(d, j)), train_factors(k, j)) += 1;
      // Empty bins predict the overall majority value.
      Index overall = 0;
      counts.colwise().sum().maxCoeff(&overall);
      std::vector<int> predicted_of_bin(static_cast<std::size_t>(bins));
      for (int b = 0; b < bins; ++b) {
        Index best = overall;
        if (counts.row(b).sum() > 0) counts.row(b).maxCoeff(&best);
        predicted_of_bin[static_cast<std::size_t>(b)] = static_cast<int>(best);
      }
      double hits = 0;
      for (Index j = 0; j < test_codes.cols(); ++j)
        hits += predicted_of_bin[static_cast<std::size_t>(bin_of(test_codes(d, j)))] == test_factors(k, j);
      s.accuracy(d, k) = hits / static_cast<double>(test_codes.cols());
    }
  }
  for (Index k = 0; k < K; ++k) {
    std::vector<double> column(s.accuracy.col(k).data(), s.accuracy.col(k).data() + D);
    std::sort(column.begin(), column.end(), std::greater<double>());
    s.sap += column[0] - column[1];
  }
  s.sap /= static_cast<double>(K);
  return s;
}

/// Train and evaluation accuracy of a vote- or classifier-based score.
struct AccuracyScore {
  /// Accuracy on the points the classifier was fitted on.
  double train_accuracy = 0;
  /// Accuracy on fresh points.
  double eval_accuracy = 0;
};

/// β-VAE score (Higgins et al. 2017) as in disentanglement_lib: a point is the mean over `batch`
/// pairs of |z(x1) − z(x2)|, where each pair shares one factor (drawn uniformly) and the other
/// factors are drawn independently; a linear classifier predicts the shared factor. Classifier:
/// SoftmaxRegression (`classifier`) in place of scikit-learn's LogisticRegression.
inline AccuracyScore beta_vae_score(const FactorGrid& grid, const RepresentationFunction& representation, Rng& rng,
                                    Index batch = 64, Index num_train = 10000, Index num_eval = 5000,
                                    SoftmaxRegressionOptions classifier = {200, 0, 0.05, 1e-4, true, 1}) {
  require<ArgumentError>(batch >= 1 && num_train >= 1 && num_eval >= 1, "beta_vae_score: expected positive sizes");
  auto draw = [&](Index points, Matrix<double>& features, std::vector<int>& labels) {
    std::vector<Index> indices(static_cast<std::size_t>(2 * batch));
    std::vector<int> f1, f2;
    Matrix<double> codes;
    labels.resize(static_cast<std::size_t>(points));
    for (Index p = 0; p < points; ++p) {
      const int k = static_cast<int>(rng.uniform_index(static_cast<std::uint64_t>(grid.num_factors())));
      for (Index j = 0; j < batch; ++j) {
        grid.sample_factors(rng, f1);
        grid.sample_factors(rng, f2);
        f2[static_cast<std::size_t>(k)] = f1[static_cast<std::size_t>(k)];
        indices[static_cast<std::size_t>(j)] = grid.index_of(f1);
        indices[static_cast<std::size_t>(batch + j)] = grid.index_of(f2);
      }
      representation(indices, codes);
      if (p == 0) features.resize(codes.rows(), points);
      features.col(p) = (codes.leftCols(batch) - codes.rightCols(batch)).cwiseAbs().rowwise().mean();
      labels[static_cast<std::size_t>(p)] = k;
    }
  };
  Matrix<double> train, eval;
  std::vector<int> train_labels, eval_labels;
  draw(num_train, train, train_labels);
  draw(num_eval, eval, eval_labels);
  SoftmaxRegression model(classifier);
  model.fit(train, train_labels, grid.num_factors());
  return {accuracy(model.predict(train), train_labels), accuracy(model.predict(eval), eval_labels)};
}

/// FactorVAE score and the number of code dimensions it used.
struct FactorVaeScore : AccuracyScore {
  /// Dimensions whose global standard deviation is at least the pruning threshold.
  Index active_dims = 0;
};

/// FactorVAE score (Kim & Mnih 2018) as in disentanglement_lib: codes are divided by their global
/// standard deviation (from `variance_points` observations; dimensions with std < `prune` are
/// dropped); a vote fixes one factor (drawn uniformly) across `batch` observations and names the
/// active dimension of least normalised variance; the majority-vote classifier maps each dimension
/// to the factor it most often wins for. Accuracy = share of votes that classifier gets right.
inline FactorVaeScore factor_vae_score(const FactorGrid& grid, const RepresentationFunction& representation, Rng& rng,
                                       Index batch = 64, Index num_train = 10000, Index num_eval = 5000,
                                       Index variance_points = 10000, double prune = 0.05) {
  require<ArgumentError>(batch >= 2 && num_train >= 1 && num_eval >= 1 && variance_points >= 2,
                         "factor_vae_score: expected batch >= 2 and positive sample sizes");
  auto variance = [](const Matrix<double>& codes) {  // per row, ddof = 1
    const Vector<double> mean = codes.rowwise().mean();
    return Vector<double>((codes.colwise() - mean).array().square().rowwise().sum() /
                          static_cast<double>(codes.cols() - 1));
  };
  const FactorCodeSample global = sample_factor_codes(grid, representation, variance_points, rng);
  const Vector<double> global_variance = variance(global.codes);
  std::vector<Index> active;
  for (Index d = 0; d < global_variance.size(); ++d)
    if (std::sqrt(global_variance(d)) >= prune) active.push_back(d);
  FactorVaeScore score;
  score.active_dims = static_cast<Index>(active.size());
  if (active.empty()) return score;
  auto votes = [&](Index points) {
    Matrix<double> v = Matrix<double>::Zero(grid.num_factors(), global_variance.size());
    std::vector<Index> indices(static_cast<std::size_t>(batch));
    std::vector<int> f, fixed;
    Matrix<double> codes;
    for (Index p = 0; p < points; ++p) {
      const int k = static_cast<int>(rng.uniform_index(static_cast<std::uint64_t>(grid.num_factors())));
      for (Index j = 0; j < batch; ++j) {
        grid.sample_factors(rng, f);
        if (j == 0) fixed = f;
        f[static_cast<std::size_t>(k)] = fixed[static_cast<std::size_t>(k)];
        indices[static_cast<std::size_t>(j)] = grid.index_of(f);
      }
      representation(indices, codes);
      const Vector<double> local = variance(codes);
      Index best = active[0];
      for (const Index d : active)
        if (local(d) / global_variance(d) < local(best) / global_variance(best)) best = d;
      v(k, best) += 1;
    }
    return v;
  };
  const Matrix<double> train = votes(num_train);
  std::vector<Index> classifier(static_cast<std::size_t>(train.cols()));
  for (Index d = 0; d < train.cols(); ++d) train.col(d).maxCoeff(&classifier[static_cast<std::size_t>(d)]);
  auto accuracy_of = [&](const Matrix<double>& v) {
    double right = 0;
    for (Index d = 0; d < v.cols(); ++d) right += v(classifier[static_cast<std::size_t>(d)], d);
    return right / v.sum();
  };
  score.train_accuracy = accuracy_of(train);
  score.eval_accuracy = accuracy_of(votes(num_eval));
  return score;
}

/// Sample sizes of every metric (defaults: disentanglement_lib's unsupervised_study_v1 configs).
struct DisentanglementOptions {
  Index beta_vae_batch = 64;         ///< pairs per β-VAE point
  Index beta_vae_train = 10000;      ///< β-VAE training points
  Index beta_vae_eval = 5000;        ///< β-VAE evaluation points
  Index factor_vae_batch = 64;       ///< observations per FactorVAE vote
  Index factor_vae_train = 10000;    ///< FactorVAE training votes
  Index factor_vae_eval = 5000;      ///< FactorVAE evaluation votes
  Index factor_vae_variance = 10000; ///< observations for the global variances
  double factor_vae_prune = 0.05;    ///< std threshold below which a dimension is dropped
  Index sample_train = 10000;        ///< observations for MIG and the DCI/SAP training sample
  Index sample_test = 5000;          ///< observations for the DCI/SAP test sample
  int bins = 20;                     ///< histogram bins of MIG and SAP
};

/// Every metric of one representation.
struct DisentanglementReport {
  /// β-VAE score.
  AccuracyScore beta_vae;
  /// FactorVAE score.
  FactorVaeScore factor_vae;
  /// MIG on the training sample.
  MigScore mig;
  /// DCI.
  DciScore dci;
  /// SAP.
  SapScore sap;
  /// The training sample that MIG, DCI and SAP used (write it with write_factor_codes_csv()).
  FactorCodeSample train_sample;
  /// The test sample of DCI and SAP.
  FactorCodeSample test_sample;
};

/// Runs every metric. MIG, DCI and SAP share one training sample (and DCI and SAP one test
/// sample), where disentanglement_lib draws a fresh sample per metric from the same distribution.
inline DisentanglementReport evaluate_disentanglement(const FactorGrid& grid,
                                                      const RepresentationFunction& representation, Rng& rng,
                                                      const DisentanglementOptions& o = {}) {
  DisentanglementReport r;
  r.train_sample = sample_factor_codes(grid, representation, o.sample_train, rng);
  r.test_sample = sample_factor_codes(grid, representation, o.sample_test, rng);
  r.mig = mig_score(r.train_sample.codes, r.train_sample.factors, o.bins);
  r.dci = dci_score(r.train_sample.codes, r.train_sample.factors, r.test_sample.codes, r.test_sample.factors);
  r.sap = sap_score(r.train_sample.codes, r.train_sample.factors, r.test_sample.codes, r.test_sample.factors, o.bins);
  r.beta_vae = beta_vae_score(grid, representation, rng, o.beta_vae_batch, o.beta_vae_train, o.beta_vae_eval);
  r.factor_vae = factor_vae_score(grid, representation, rng, o.factor_vae_batch, o.factor_vae_train,
                                  o.factor_vae_eval, o.factor_vae_variance, o.factor_vae_prune);
  return r;
}

}  // namespace mlvae
