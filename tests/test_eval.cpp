// Evaluation: test-time inference strategies, classifiers on latent codes, importance-sampled
// log-likelihoods against closed forms on linear-Gaussian models, manipulation grids.
#include <doctest/doctest.h>

#include "mlvae/eval/classifier.hpp"
#include "mlvae/eval/inference.hpp"
#include "mlvae/eval/likelihood.hpp"
#include "mlvae/eval/manipulation.hpp"
#include "mlvae/model/architectures.hpp"
#include "mlvae/nn/gradient_check.hpp"

#include <Eigen/Cholesky>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

using namespace mlvae;
using Mat = Matrix<double>;
using Vec = Vector<double>;

namespace {

using LinearStack = Sequential<Dense<double>>;
using LinearVAE = VAE<double, LinearStack, LinearStack, GaussianLikelihood<double>>;
using LinearMLVAE = MLVAE<double, LinearStack, LinearStack, LinearStack, LinearStack, GaussianLikelihood<double>>;

// log N(x; mu, cov) for a full covariance.
double log_gaussian(const Vec& x, const Vec& mu, const Mat& cov) {
  const Eigen::LLT<Mat> llt(cov);
  const Vec r = x - mu;
  const double quad = r.dot(llt.solve(r));
  const Mat L = llt.matrixL();
  const double logdet = 2.0 * L.diagonal().array().log().sum();
  return -0.5 * (quad + logdet + static_cast<double>(x.size()) * std::log(2.0 * M_PI));
}

// The affine map of a linear decoder: out = W z + b, read off by decoding 0 and unit vectors.
template <typename Decoder>
void affine_map(Decoder& decoder, Index in, Mat& W, Vec& b) {
  Mat z = Mat::Zero(in, in + 1);
  for (Index j = 0; j < in; ++j) z(j, j + 1) = 1.0;
  const Mat out = decoder.forward(z);
  b = out.col(0);
  W = out.rightCols(in).colwise() - b;
}

// Zeroes the log-variance half ([mean; logvar] rows) of a Dense(in, 2·half) whose parameters
// start at `offset`, so that the proposal has unit variance: wider than the posterior of a
// linear-Gaussian model, which keeps the importance weights' variance finite.
void unit_variance_proposal(Vec& values, Index offset, Index in, Index half) {
  for (Index c = 0; c < in; ++c)
    for (Index r = half; r < 2 * half; ++r) values(offset + c * 2 * half + r) = 0;
  for (Index r = half; r < 2 * half; ++r) values(offset + in * 2 * half + r) = 0;
}

MlpMLVAE<double> small_mlvae(Rng& rng) {
  auto model = make_mlp_mlvae<double>(6, 8, 2, 3);
  model.initialize(rng);
  for (Index k = 0; k < model.parameters().size(); ++k) model.parameters().values(k) += 0.3 * rng.normal();
  return model;
}

}  // namespace

TEST_CASE("strategy 2 on a group of one equals strategy 1") {
  Rng rng(3);
  auto model = small_mlvae(rng);
  Mat x(6, 5);
  rng.fill_normal(x);
  const auto codes = encode_mlvae(model, x, 2);  // chunked encoding
  const std::vector<Index> singles = singleton_offsets(5);
  Mat m1, l1, m2, l2;
  infer_group_content(codes, singles, InferenceStrategy::SingleObservation, m1, l1);
  infer_group_content(codes, singles, InferenceStrategy::AccumulatedGroup, m2, l2);
  CHECK((m1 - m2).cwiseAbs().maxCoeff() < 1e-12);
  CHECK((l1 - l2).cwiseAbs().maxCoeff() < 1e-12);
  // Chunked encoding matches encoding the whole batch at once.
  Mat sm, sl, cm, cl;
  model.encode(x, sm, sl, cm, cl);
  CHECK((cm - codes.content_mean).cwiseAbs().maxCoeff() < 1e-12);
  CHECK((sl - codes.style_logvar).cwiseAbs().maxCoeff() < 1e-12);
  // Strategy 1 on larger groups takes the first member.
  const std::vector<Index> offsets{0, 2, 5};
  infer_group_content(model, x, offsets, InferenceStrategy::SingleObservation, m1, l1);
  CHECK((m1.col(1) - cm.col(2)).cwiseAbs().maxCoeff() < 1e-12);
}

TEST_CASE("the group posterior is invariant to the order of its members") {
  Rng rng(4);
  auto model = small_mlvae(rng);
  Mat x(6, 7);
  rng.fill_normal(x);
  const std::vector<Index> offsets{0, 3, 7};
  Mat xp = x;
  const std::vector<Index> perm{2, 0, 1, 6, 4, 3, 5};  // permute within each group
  for (Index j = 0; j < 7; ++j) xp.col(j) = x.col(perm[static_cast<std::size_t>(j)]);
  Mat m, l, mp, lp;
  infer_group_content(model, x, offsets, InferenceStrategy::AccumulatedGroup, m, l);
  infer_group_content(model, xp, offsets, InferenceStrategy::AccumulatedGroup, mp, lp);
  CHECK((m - mp).cwiseAbs().maxCoeff() < 1e-12);
  CHECK((l - lp).cwiseAbs().maxCoeff() < 1e-12);
  // More members: the posterior variance shrinks.
  Mat m1, l1;
  infer_group_content(model, x, offsets, InferenceStrategy::SingleObservation, m1, l1);
  CHECK((l.array() <= l1.array() + 1e-12).all());
}

TEST_CASE("make_key_groups partitions every key into groups of the requested size") {
  const std::vector<int> keys{0, 1, 0, 1, 0, 2, 0, 1};
  const GroupLayout layout = make_key_groups(keys, 2, 9);
  CHECK(layout.indices.size() == keys.size());
  CHECK(layout.group_count() == 5);  // key 0: 2+2, key 1: 2+1, key 2: 1
  std::vector<int> seen(keys.size(), 0);
  for (Index g = 0; g < layout.group_count(); ++g)
    for (Index i = layout.offsets[static_cast<std::size_t>(g)]; i < layout.offsets[static_cast<std::size_t>(g) + 1];
         ++i) {
      const Index src = layout.indices[static_cast<std::size_t>(i)];
      CHECK(keys[static_cast<std::size_t>(src)] == layout.keys[static_cast<std::size_t>(g)]);
      ++seen[static_cast<std::size_t>(src)];
    }
  for (int s : seen) CHECK(s == 1);
}

TEST_CASE("softmax regression gradient matches finite differences") {
  Rng rng(5);
  Mat u(4, 9);
  rng.fill_normal(u);
  std::vector<int> labels{0, 1, 2, 1, 0, 2, 2, 1, 0};
  Vec theta(3 * 5);
  rng.fill_normal(theta);
  Vec grad;
  SoftmaxRegression::loss_and_gradient(u, labels, 3, theta, 0.1, grad);
  Vec scratch;
  const auto result = check_gradient(
      [&]() { return SoftmaxRegression::loss_and_gradient(u, labels, 3, theta, 0.1, scratch); }, theta, grad);
  INFO(result.report());
  CHECK(result.passed);
}

TEST_CASE("classifiers reach ~100% on separable codes and chance on random ones") {
  Rng rng(6);
  const int classes = 4;
  const Index n_train = 800, n_test = 400;
  auto make = [&](Index n, bool separable, Mat& x, std::vector<int>& y) {
    x.resize(5, n);
    y.resize(static_cast<std::size_t>(n));
    rng.fill_normal(x);
    for (Index j = 0; j < n; ++j) {
      const int c = static_cast<int>(rng.uniform_index(classes));
      y[static_cast<std::size_t>(j)] = c;
      if (separable) x(c, j) += 8.0;  // class c shifted along axis c
    }
  };
  Mat xtr, xte;
  std::vector<int> ytr, yte;
  make(n_train, true, xtr, ytr);
  make(n_test, true, xte, yte);
  SoftmaxRegression lr;
  lr.fit(xtr, ytr, classes);
  CHECK(accuracy(lr.predict(xte), yte) > 0.99);
  KNearestNeighbors knn(5);
  knn.fit(xtr, ytr);
  CHECK(accuracy(knn.predict(xte), yte) > 0.99);

  // Minibatch fitting works too.
  SoftmaxRegressionOptions mb;
  mb.batch_size = 64;
  mb.epochs = 20;
  SoftmaxRegression lr_mb(mb);
  lr_mb.fit(xtr, ytr, classes);
  CHECK(accuracy(lr_mb.predict(xte), yte) > 0.99);

  make(n_train, false, xtr, ytr);
  make(2000, false, xte, yte);
  SoftmaxRegression lr_random;
  lr_random.fit(xtr, ytr, classes);
  const double chance = 1.0 / classes;
  CHECK(std::abs(accuracy(lr_random.predict(xte), yte) - chance) < 0.05);
  knn.fit(xtr, ytr);
  CHECK(std::abs(accuracy(knn.predict(xte), yte) - chance) < 0.05);
}

TEST_CASE("VAE importance sampling: ELBO <= IS estimate <= log p(x) - converging to the closed form") {
  // p(z) = N(0, I), p(x|z) = N(Wz + b, s2 I)  =>  p(x) = N(b, W W^T + s2 I).
  const Index D = 4, L = 2;
  const double s2 = 0.5;
  LinearVAE model(LinearStack(Dense<double>(D, 2 * L)), LinearStack(Dense<double>(L, D)),
                  GaussianLikelihood<double>(s2));
  Rng rng(11);
  model.initialize(rng);
  // An imperfect proposal: small encoder weights (q close to a shifted prior).
  for (Index k = 0; k < (D + 1) * 2 * L; ++k) model.parameters().values(k) = 0.2 * rng.normal();
  for (Index k = (D + 1) * 2 * L; k < model.parameters().size(); ++k) model.parameters().values(k) += 0.2 * rng.normal();
  unit_variance_proposal(model.parameters().values, 0, D, L);
  Mat W;
  Vec b;
  affine_map(model.decoder(), L, W, b);
  const Mat cov = W * W.transpose() + s2 * Mat::Identity(D, D);
  const Index n = 6;
  Mat x(D, n);
  rng.fill_normal(x);
  x = (cov.llt().matrixL() * x).colwise() + b;  // draws from p(x)

  ImportanceSamplingOptions o;
  o.max_columns = 512;  // forces several blocks
  // ELBO in expectation: mean of single-sample log-weights over many draws.
  o.samples = 4000;
  const auto many = vae_log_likelihood(model, x, o);
  o.samples = 5;
  const auto few = vae_log_likelihood(model, x, o);
  o.samples = 200000;
  o.max_columns = 200000;
  const auto best = vae_log_likelihood(model, x, o);
  for (Index i = 0; i < n; ++i) {
    const double exact = log_gaussian(x.col(i), b, cov);
    const double elbo = many.elbo[static_cast<std::size_t>(i)];  // 4000-sample average: ≈ the ELBO
    INFO("image ", i, " exact ", exact, " elbo ", elbo, " IS5 ", few.log_likelihood[static_cast<std::size_t>(i)],
         " IS200k ", best.log_likelihood[static_cast<std::size_t>(i)]);
    CHECK(elbo < exact);
    CHECK(few.log_likelihood[static_cast<std::size_t>(i)] >= few.elbo[static_cast<std::size_t>(i)]);  // Jensen
    CHECK(many.log_likelihood[static_cast<std::size_t>(i)] > elbo);
    CHECK(best.log_likelihood[static_cast<std::size_t>(i)] == doctest::Approx(exact).epsilon(0.01));
    CHECK(std::abs(best.log_likelihood[static_cast<std::size_t>(i)] - exact) <
          std::abs(few.log_likelihood[static_cast<std::size_t>(i)] - exact) + 1e-3);
  }
  // The average over images tightens monotonically with K and stays below the truth (+ MC noise).
  double exact_mean = 0;
  for (Index i = 0; i < n; ++i) exact_mean += log_gaussian(x.col(i), b, cov) / static_cast<double>(n);
  CHECK(many.mean_elbo() < few.mean_log_likelihood());
  CHECK(few.mean_log_likelihood() < many.mean_log_likelihood());
  CHECK(many.mean_log_likelihood() < exact_mean + 0.01);
  CHECK(std::abs(best.mean_log_likelihood() - exact_mean) < 0.01);
}

TEST_CASE("ML-VAE importance sampling matches the closed-form marginal of a linear-Gaussian group") {
  // x_i = Wc c + Ws s_i + b + noise, shared c: X_G is Gaussian with blocks
  // Cov(x_i, x_j) = Wc Wc^T + [i == j] (Ws Ws^T + s2 I).
  const Index D = 3, S = 1, C = 1;
  const double s2 = 0.4;
  LinearMLVAE model(LinearStack(Dense<double>(D, D)), LinearStack(Dense<double>(D, 2 * S)),
                    LinearStack(Dense<double>(D, 2 * C)), LinearStack(Dense<double>(S + C, D)),
                    GaussianLikelihood<double>(s2));
  Rng rng(12);
  model.initialize(rng);
  const Index encoder_params = (D * D + D) + (D * 2 * S + 2 * S) + (D * 2 * C + 2 * C);
  for (Index k = 0; k < encoder_params; ++k) model.parameters().values(k) = 0.15 * rng.normal();
  unit_variance_proposal(model.parameters().values, D * D + D, D, S);
  unit_variance_proposal(model.parameters().values, D * D + D + D * 2 * S + 2 * S, D, C);
  Mat W;
  Vec b;
  affine_map(model.decoder(), S + C, W, b);
  const Mat Ws = W.leftCols(S), Wc = W.rightCols(C);

  for (Index members : {1, 3}) {
    const Index n = members;
    Mat cov(D * n, D * n);
    for (Index i = 0; i < n; ++i)
      for (Index j = 0; j < n; ++j) {
        Mat block = Wc * Wc.transpose();
        if (i == j) block += Ws * Ws.transpose() + s2 * Mat::Identity(D, D);
        cov.block(i * D, j * D, D, D) = block;
      }
    Vec mu(D * n);
    for (Index i = 0; i < n; ++i) mu.segment(i * D, D) = b;
    Vec draw(D * n);
    rng.fill_normal(draw);
    const Vec flat = mu + cov.llt().matrixL() * draw;
    const Mat x = Eigen::Map<const Mat>(flat.data(), D, n);
    const double exact = log_gaussian(flat, mu, cov);

    ImportanceSamplingOptions o;
    o.samples = 200000;
    o.max_columns = 100000;
    const std::vector<Index> offsets{0, n};
    const auto est = mlvae_log_likelihood(model, x, offsets, o);
    o.samples = 3;
    const auto few = mlvae_log_likelihood(model, x, offsets, o);
    INFO("members ", n, " exact ", exact, " IS ", est.log_likelihood[0], " ELBO ", est.elbo[0]);
    CHECK(std::abs(est.log_likelihood[0] - exact) < 0.02);
    CHECK(est.elbo[0] < exact);
    CHECK(few.log_likelihood[0] >= few.elbo[0]);
  }

  // Several groups in blocks give the same per-group numbers as one group at a time.
  Mat x(D, 5);
  rng.fill_normal(x);
  ImportanceSamplingOptions o;
  o.samples = 50000;
  const auto together = mlvae_log_likelihood(model, x, {0, 2, 5}, o);
  const auto first = mlvae_log_likelihood(model, Mat(x.leftCols(2)), {0, 2}, o);
  CHECK(std::abs(together.log_likelihood[0] - first.log_likelihood[0]) < 0.05);
}

TEST_CASE("manipulation grids have the documented shapes") {
  Rng rng(13);
  auto model = small_mlvae(rng);
  Mat a(6, 2), b(6, 2);
  rng.fill_normal(a);
  rng.fill_normal(b);
  const Mat content = interpolation_grid(model, a, b, 5, InterpolatedLatent::Content);
  CHECK(content.cols() == 2 * 7);
  CHECK((content.col(0) - a.col(0)).norm() == 0.0);
  CHECK((content.col(6) - b.col(0)).norm() == 0.0);
  // t = 0 decodes the source's own codes for both kinds of interpolation.
  const Mat style = interpolation_grid(model, a, b, 5, InterpolatedLatent::Style);
  CHECK((style.col(1) - content.col(1)).norm() < 1e-12);
  const Mat gen = generation_grid(model, b, {0, 1, 2}, 4, rng);
  CHECK(gen.cols() == 2 * 5);
}
