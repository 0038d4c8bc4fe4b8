// The minibatch KL decomposition of β-TCVAE and HFVAE (dist/kl_decomposition.hpp): values against
// a direct computation, the identity that the four terms add up to the sampled KL, and
// finite-difference gradient checks of every term, of the cross-example coupling, and of the
// complete β-VAE, β-TCVAE and HFVAE losses through the one checker (nn/gradient_check.hpp).
#include <doctest/doctest.h>

#include "support.hpp"

#include "mlvae/dist/gaussian.hpp"
#include "mlvae/dist/kl_decomposition.hpp"
#include "mlvae/model/architectures.hpp"
#include "mlvae/nn/gradient_check.hpp"

#include <cmath>
#include <vector>

using namespace mlvae;
using Mat = Matrix<double>;
using Vec = Vector<double>;

namespace {

struct Batch {
  Mat mean, logvar, eps;
};

Batch random_batch(Index latent, Index batch, std::uint64_t seed) {
  Rng rng(seed);
  Batch b{Mat(latent, batch), Mat(latent, batch), Mat(latent, batch)};
  rng.fill_normal(b.mean);
  rng.fill_normal(b.logvar);
  b.logvar *= 0.5;
  rng.fill_normal(b.eps);
  return b;
}

// The weighted terms as a function of (mean, logvar) with ε fixed: z = μ + exp(½ lv) ε.
double weighted_value(KLDecomposition<double>& kl, const Batch& b) {
  Mat z(b.mean.rows(), b.mean.cols());
  reparameterize(b.mean, b.logvar, b.eps, z);
  Mat dz = Mat::Zero(z.rows(), z.cols()), dm = dz, dl = dz;
  return kl.evaluate(b.mean, b.logvar, z, false, dz, dm, dl).weighted;
}

// Total gradient wrt [vec(mean); vec(logvar)], chained through the reparameterisation.
Vec weighted_gradient(KLDecomposition<double>& kl, const Batch& b) {
  Mat z(b.mean.rows(), b.mean.cols());
  reparameterize(b.mean, b.logvar, b.eps, z);
  Mat dz = Mat::Zero(z.rows(), z.cols()), dm = dz, dl = dz;
  kl.evaluate(b.mean, b.logvar, z, true, dz, dm, dl);
  reparameterize_backward(b.logvar, b.eps, dz, dm, dl);
  Vec g(2 * dm.size());
  g << Eigen::Map<const Vec>(dm.data(), dm.size()), Eigen::Map<const Vec>(dl.data(), dl.size());
  return g;
}

GradientCheckResult check_decomposition(KLDecomposition<double>& kl, Batch& b) {
  const Vec analytic = weighted_gradient(kl, b);
  const Index n = b.mean.size();
  Vec params(2 * n);
  params << Eigen::Map<const Vec>(b.mean.data(), n), Eigen::Map<const Vec>(b.logvar.data(), n);
  auto f = [&] {
    Eigen::Map<Vec>(b.mean.data(), n) = params.head(n);
    Eigen::Map<Vec>(b.logvar.data(), n) = params.tail(n);
    return weighted_value(kl, b);
  };
  const GradientCheckResult r = check_gradient(f, params, analytic);
  f();  // restore the batch
  return r;
}

// log q̂(z_n,S) computed directly from the formula, for one subset S of dimensions.
double direct_log_marginal(const Batch& b, const Mat& z, Index n, Index first, Index count, double N,
                           bool stratified) {
  const Index B = z.cols();
  double total = 0;
  for (Index m = 0; m < B; ++m) {
    double log_density = 0;
    for (Index d = first; d < first + count; ++d) {
      const double var = std::exp(b.logvar(d, m)), diff = z(d, n) - b.mean(d, m);
      log_density += -0.5 * (diff * diff / var + std::log(2 * M_PI * var));
    }
    const double w = stratified ? (m == n ? 1 / N : (N - 1) / (N * (B - 1))) : 1 / (N * B);
    total += w * std::exp(log_density);
  }
  return std::log(total);
}

}  // namespace

TEST_CASE("KL decomposition: terms match a direct computation and add up to the sampled KL") {
  const Index D = 4, B = 6;
  const double N = 1000;
  Batch b = random_batch(D, B, 3);
  Mat z(D, B);
  reparameterize(b.mean, b.logvar, b.eps, z);
  for (const bool stratified : {false, true}) {
    KLDecompositionOptions options;
    options.block_sizes = {1, 3};
    options.dataset_size = N;
    options.estimator = stratified ? MarginalEstimator::MinibatchStratified : MarginalEstimator::MinibatchWeighted;
    KLDecomposition<double> kl(D, options);
    Mat dz = Mat::Zero(D, B), dm = dz, dl = dz;
    const KLDecompositionTerms t = kl.evaluate(b.mean, b.logvar, z, false, dz, dm, dl);
    double mi = 0, tc_between = 0, tc_within = 0, dim_kl = 0, sampled_kl = 0;
    for (Index n = 0; n < B; ++n) {
      double log_q_x = 0, log_p = 0;
      for (Index d = 0; d < D; ++d) {
        const double var = std::exp(b.logvar(d, n)), diff = z(d, n) - b.mean(d, n);
        log_q_x += -0.5 * (diff * diff / var + std::log(2 * M_PI * var));
        log_p += -0.5 * (z(d, n) * z(d, n) + std::log(2 * M_PI));
      }
      const double all = direct_log_marginal(b, z, n, 0, D, N, stratified);
      const double block0 = direct_log_marginal(b, z, n, 0, 1, N, stratified);
      const double block1 = direct_log_marginal(b, z, n, 1, 3, N, stratified);
      double dims = 0;
      for (Index d = 0; d < D; ++d) dims += direct_log_marginal(b, z, n, d, 1, N, stratified);
      mi += log_q_x - all;
      tc_between += all - block0 - block1;
      tc_within += block0 + block1 - dims;
      dim_kl += dims - log_p;
      sampled_kl += log_q_x - log_p;
    }
    CHECK(t.mutual_information == doctest::Approx(mi / B).epsilon(1e-12));
    CHECK(t.between_tc == doctest::Approx(tc_between / B).epsilon(1e-12));
    CHECK(t.within_tc == doctest::Approx(tc_within / B).epsilon(1e-12));
    CHECK(t.dimension_kl == doctest::Approx(dim_kl / B).epsilon(1e-12));
    // Unit weights: the terms telescope to the single-sample KL estimate log q(z|x) − log p(z).
    CHECK(t.weighted == doctest::Approx(sampled_kl / B).epsilon(1e-12));
  }
}

TEST_CASE("gradient check: every KL decomposition term alone and with both estimators") {
  const Index D = 5, B = 4;
  const std::vector<KLDecompositionWeights> unit_terms = {
      {1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}, {0.7, 3.0, 1.5, 0.9}};
  for (const auto estimator : {MarginalEstimator::MinibatchWeighted, MarginalEstimator::MinibatchStratified}) {
    for (std::size_t t = 0; t < unit_terms.size(); ++t) {
      KLDecompositionOptions options;
      options.weights = unit_terms[t];
      options.block_sizes = {2, 3};
      options.dataset_size = 50;
      options.estimator = estimator;
      KLDecomposition<double> kl(D, options);
      Batch b = random_batch(D, B, 10 + t);
      const GradientCheckResult r = check_decomposition(kl, b);
      INFO("term set ", t, " stratified ", estimator == MarginalEstimator::MinibatchStratified, ": ", r.report());
      CHECK(r.passed);
      CHECK(r.checked == 2 * D * B);
    }
  }
}

TEST_CASE("gradient check: the estimator couples every pair of examples") {
  // The total correlation of one example depends on every other example's mean and variance:
  // the gradient of example 0's share must reach the parameters of example B−1, and match.
  const Index D = 3, B = 5;
  KLDecompositionOptions options;
  options.weights = {0, 1, 0, 0};  // TC between one-dimensional blocks: the β-TCVAE penalty
  options.dataset_size = 20;
  KLDecomposition<double> kl(D, options);
  Batch b = random_batch(D, B, 21);
  const Vec g = weighted_gradient(kl, b);
  const Index n = D * B;
  // ∂/∂(mean of the last example) and ∂/∂(logvar of the last example) are non-zero ...
  CHECK(g.segment(n - D, D).cwiseAbs().maxCoeff() > 1e-4);
  CHECK(g.segment(2 * n - D, D).cwiseAbs().maxCoeff() > 1e-4);
  // ... and correct, as is every other entry (the checker perturbs each example in turn).
  const GradientCheckResult r = check_decomposition(kl, b);
  INFO(r.report());
  CHECK(r.passed);
  // A checker that ignored the coupling (only the own example's terms) would fail: drop the
  // off-diagonal responsibilities by making the batch effectively independent (N = 1, stratified
  // estimator weights the other examples by zero) and the gradient changes.
  KLDecompositionOptions alone = options;
  alone.dataset_size = 1;
  alone.estimator = MarginalEstimator::MinibatchStratified;
  KLDecomposition<double> own_only(D, alone);
  const Vec g_alone = weighted_gradient(own_only, b);
  CHECK((g - g_alone).cwiseAbs().maxCoeff() > 1e-3);
}

TEST_CASE("KL decomposition rejects blocks that do not cover the latent and a tiny batch") {
  KLDecompositionOptions options;
  options.block_sizes = {2, 2};
  CHECK_THROWS_WITH_AS(KLDecomposition<double>(5, options), mlvae_test::contains("add up to 4"), ArgumentError);
  options.block_sizes = {0, 5};
  CHECK_THROWS_AS(KLDecomposition<double>(5, options), ArgumentError);
  options.block_sizes = {};
  options.estimator = MarginalEstimator::MinibatchStratified;
  KLDecomposition<double> kl(2, options);
  Mat one = Mat::Zero(2, 1), d = one, dm = one, dl = one;
  CHECK_THROWS_WITH_AS(kl.evaluate(one, one, one, false, d, dm, dl), mlvae_test::contains("at least 2"), ShapeError);
}

TEST_CASE("gradient check: complete beta-VAE beta-TCVAE and HFVAE losses") {
  const Index input = 10, hidden = 6, latent = 4, batch = 5;
  Rng data_rng(8);
  Mat x(input, batch);
  for (Index j = 0; j < batch; ++j)
    for (Index i = 0; i < input; ++i) x(i, j) = data_rng.uniform();

  SUBCASE("beta-VAE (kl_weight 4)") {
    MlpVAE<double> model(MlpEncoder<double>(Dense<double>(input, hidden), Tanh<double>(hidden),
                                            Dense<double>(hidden, 2 * latent)),
                         MlpDecoder<double>(Dense<double>(latent, hidden), Tanh<double>(hidden),
                                            Dense<double>(hidden, input)),
                         {}, 4.0);
    Rng init(1);
    model.initialize(init);
    const auto [result, analytic] = mlvae_test::check_model_gradient(model, Rng(2), x);
    INFO(result.report());
    CHECK(result.passed);
  }
  for (const bool hierarchical : {false, true}) {
    for (const auto estimator : {MarginalEstimator::MinibatchWeighted, MarginalEstimator::MinibatchStratified}) {
      auto model = make_mlp_vae<double>(input, hidden, latent);
      Rng init(3);
      model.initialize(init);
      KLDecompositionOptions options;
      options.dataset_size = 100;
      options.estimator = estimator;
      if (hierarchical) {
        options.block_sizes = {1, 3};
        options.weights = {1.0, 2.0, 5.0, 1.0};  // HFVAE: α, β between, γ within, δ
      } else {
        options.weights = {1.0, 6.0, 1.0, 1.0};  // β-TCVAE, β = 6
      }
      model.set_kl_decomposition(options);
      const auto [result, analytic] = mlvae_test::check_model_gradient(model, Rng(4), x);
      INFO((hierarchical ? "HFVAE" : "beta-TCVAE"), " stratified ",
           estimator == MarginalEstimator::MinibatchStratified, ": ", result.report());
      CHECK(result.passed);
      CHECK(result.checked == model.parameters().size());
      // The loss is the reconstruction plus the weighted terms, and differs from the plain VAE's.
      Rng noise(4);
      const LossTerms terms = model.evaluate(x, noise);
      CHECK(terms.loss == doctest::Approx(-terms.reconstruction + model.last_kl_decomposition().weighted));
      CHECK(model.last_kl_decomposition().between_tc != 0);
    }
  }
}
