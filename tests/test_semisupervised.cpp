// The semi-supervised VAE (Siddharth et al. 2017 / M2): finite-difference gradient checks in double
// precision of every term (log-softmax, entropy, Gumbel-softmax) and of the complete loss on labelled,
// unlabelled, mixed and relaxed batches, through the one checker (nn/gradient_check.hpp, tests/support.hpp);
// the balanced labelled subset and the mixing sampler; training and exact resume through checkpoints.
#include <doctest/doctest.h>

#include "support.hpp"

#include "mlvae/data/semisupervised_sampler.hpp"
#include "mlvae/dist/categorical.hpp"
#include "mlvae/io/checkpoint.hpp"
#include "mlvae/io/semisupervised_checkpoint.hpp"
#include "mlvae/model/semisupervised.hpp"
#include "mlvae/model/semisupervised_architectures.hpp"
#include "mlvae/nn/activations.hpp"
#include "mlvae/nn/dense.hpp"
#include "mlvae/nn/gradient_check.hpp"
#include "mlvae/nn/sequential.hpp"
#include "mlvae/train/semisupervised_trainer.hpp"

#include <set>
#include <vector>

using namespace mlvae;
using Mat = Matrix<double>;
using Vec = Vector<double>;

namespace {

Vec flatten(const Mat& m) { return Eigen::Map<const Vec>(m.data(), m.size()); }

GradientCheckResult check_matrix(const std::function<double()>& f, Mat& x, const Mat& analytic) {
  Eigen::Map<Vec> flat(x.data(), x.size());
  return check_gradient(f, flat, flatten(analytic));
}

// A small smooth model for gradient checks: tanh everywhere (no ReLU kinks), 12 features, 3 classes, z of 2.
using SmallModel = SemiSupervisedVAE<double, Sequential<Dense<double>, Tanh<double>>, Sequential<Dense<double>>,
                                     Sequential<Dense<double>>, Sequential<Dense<double>, Tanh<double>, Dense<double>>>;

SmallModel small_model(SemiSupervisedOptions<double> options, std::uint64_t seed = 1) {
  const Index D = 12, H = 6, K = 3, Z = 2;
  SmallModel model(Sequential<Dense<double>, Tanh<double>>(Dense<double>(D, H), Tanh<double>(H)),
                   Sequential<Dense<double>>(Dense<double>(H, K)), Sequential<Dense<double>>(Dense<double>(H + K, 2 * Z)),
                   Sequential<Dense<double>, Tanh<double>, Dense<double>>(Dense<double>(K + Z, H), Tanh<double>(H),
                                                                           Dense<double>(H, D)),
                   {}, options);
  Rng init(seed);
  model.initialize(init);
  // Move every parameter off special values (zero biases) so each path carries gradient.
  for (Index k = 0; k < model.parameters().size(); ++k) model.parameters().values(k) += 0.3 * init.normal();
  return model;
}

SemiSupervisedOptions<double> options(SemiSupervisedObjective objective, double alpha, UnlabelledEstimator est,
                                      double temperature = 0.66) {
  SemiSupervisedOptions<double> o;
  o.objective = objective;
  o.alpha = alpha;
  o.unlabelled = est;
  o.temperature = temperature;
  return o;
}

void check_loss(SmallModel& model, const std::vector<int>& labels, std::uint64_t noise_seed = 9) {
  const Mat x = mlvae_test::toy_data<double>(static_cast<Index>(labels.size()), 21);
  const auto [result, analytic] = mlvae_test::check_model_gradient(model, Rng(noise_seed), x, labels);
  INFO(model.describe(), ": ", result.report());
  CHECK(result.passed);
  CHECK(result.checked == model.parameters().size());
  CHECK(analytic.cwiseAbs().maxCoeff() > 1e-6);
}

}  // namespace

TEST_CASE("gradient check: log-softmax and the categorical entropy") {
  Rng rng(5);
  Mat a(4, 3), g(4, 3);
  rng.fill_normal(a);
  rng.fill_normal(g);
  Mat lp, d = Mat::Zero(4, 3);
  log_softmax<double>(a, lp);
  CHECK(lp.array().exp().colwise().sum().isApprox(Eigen::RowVectorXd::Ones(3).array()));
  log_softmax_backward<double>(lp, g, d);
  auto f = [&] {
    Mat l;
    log_softmax<double>(a, l);
    return (l.array() * g.array()).sum();
  };
  auto r = check_matrix(f, a, d);
  INFO(r.report());
  CHECK(r.passed);

  RowVector<double> h;
  categorical_entropy<double>(lp, h);
  Mat dh = Mat::Zero(4, 3);
  categorical_entropy_backward<double>(lp, h, 0.7, dh);
  auto fh = [&] {
    Mat l;
    RowVector<double> e;
    log_softmax<double>(a, l);
    categorical_entropy<double>(l, e);
    return 0.7 * e.sum();
  };
  r = check_matrix(fh, a, dh);
  INFO(r.report());
  CHECK(r.passed);
  CHECK(h(0) <= std::log(4.0) + 1e-12);
}

TEST_CASE("gradient check: Concrete / Gumbel-softmax relaxed sample") {
  Rng rng(8);
  Mat a(5, 4), w(5, 4), gumbel(5, 4);
  rng.fill_normal(a);
  rng.fill_normal(w);
  fill_gumbel(rng, gumbel);
  for (double tau : {0.66, 2.0}) {
    Mat s, d = Mat::Zero(5, 4);
    gumbel_softmax<double>(a, gumbel, tau, s);
    CHECK(s.colwise().sum().isApprox(Eigen::RowVectorXd::Ones(4)));
    gumbel_softmax_backward<double>(s, w, tau, d);
    auto f = [&] {
      Mat t;
      gumbel_softmax<double>(a, gumbel, tau, t);
      return (t.array() * w.array()).sum();
    };
    const auto r = check_matrix(f, a, d);
    INFO("tau ", tau, ": ", r.report());
    CHECK(r.passed);
  }
  Mat s;
  CHECK_THROWS_AS(gumbel_softmax<double>(a, gumbel, 0.0, s), ArgumentError);
}

TEST_CASE("gradient check: semi-supervised loss on labelled examples") {
  SUBCASE("ELBO alone (alpha 0)") {
    auto model = small_model(options(SemiSupervisedObjective::Siddharth, 0.0, UnlabelledEstimator::Enumerate));
    check_loss(model, {0, 2, 1, 1});
  }
  SUBCASE("ELBO plus the classifier term") {
    auto model = small_model(options(SemiSupervisedObjective::Siddharth, 0.7, UnlabelledEstimator::Enumerate));
    check_loss(model, {0, 2, 1, 1});
  }
}

TEST_CASE("gradient check: semi-supervised loss on unlabelled examples by exact enumeration") {
  auto model = small_model(options(SemiSupervisedObjective::M2, 0.2, UnlabelledEstimator::Enumerate));
  check_loss(model, {-1, -1, -1});
}

TEST_CASE("gradient check: semi-supervised loss on mixed batches") {
  SUBCASE("Siddharth, enumeration") {
    auto model = small_model(options(SemiSupervisedObjective::Siddharth, 0.1, UnlabelledEstimator::Enumerate));
    check_loss(model, {2, -1, 0, -1, -1});
  }
  SUBCASE("M2") {
    auto model = small_model(options(SemiSupervisedObjective::M2, 1.5, UnlabelledEstimator::Enumerate), 3);
    check_loss(model, {-1, 1, -1, 2});
  }
  SUBCASE("Siddharth, relaxed (Concrete) unlabelled estimator") {
    auto model = small_model(options(SemiSupervisedObjective::Siddharth, 0.3, UnlabelledEstimator::Relaxed, 0.66), 4);
    check_loss(model, {2, -1, 0, -1, -1});
  }
}

TEST_CASE("the gradient checker rejects the semi-supervised gradient with a flipped sign") {
  auto model = small_model(options(SemiSupervisedObjective::Siddharth, 0.4, UnlabelledEstimator::Enumerate));
  const std::vector<int> labels{1, -1, 0, -1};
  const Mat x = mlvae_test::toy_data<double>(4, 21);
  const auto [result, analytic] = mlvae_test::check_model_gradient(model, Rng(9), x, labels);
  REQUIRE(result.passed);
  auto loss = [&] {
    Rng r(9);
    return model.evaluate(x, labels, r).loss;
  };
  CHECK_FALSE(check_gradient(loss, model.parameters().values, Vec(-analytic)).passed);
  // Only the classifier head's gradient flipped: still caught.
  Vec partly = analytic;
  const Index begin = 12 * 6 + 6, count = 6 * 3 + 3;
  partly.segment(begin, count) *= -1;
  CHECK_FALSE(check_gradient(loss, model.parameters().values, partly).passed);
}

TEST_CASE("semi-supervised objective: enumeration equals the q-weighted sum of per-class bounds") {
  // With the noise held at zero (ε = 0) each per-class ELBO is deterministic, so the unlabelled bound must equal
  // Σ_y q(y|x) ELBO(x, y) + H(q(y|x)), each ELBO(x, y) taken from a labelled evaluation with alpha 0.
  auto model = small_model(options(SemiSupervisedObjective::M2, 0.0, UnlabelledEstimator::Enumerate));
  const Mat x = mlvae_test::toy_data<double>(1, 4);
  // Put the style head's log-variances at −60 so that σ ε is negligible whatever ε is.
  auto& values = model.parameters().values;
  const Index style_begin = 12 * 6 + 6 + 6 * 3 + 3;
  Eigen::Map<Mat> w(values.data() + style_begin, 4, 9);
  w.bottomRows(2).setZero();
  values.segment(style_begin + 36 + 2, 2).setConstant(-60.0);
  Rng r(1);
  const double bound = model.evaluate(x, {-1}, r).unlabelled_bound;
  Mat logits;
  model.classify_logits(x, logits);
  Mat lp;
  log_softmax<double>(logits, lp);
  double expected = 0;
  for (int y = 0; y < 3; ++y) {
    Rng ry(2);
    expected += std::exp(lp(y, 0)) * model.evaluate(x, {y}, ry).labelled_elbo;
  }
  expected -= (lp.array().exp() * lp.array()).sum();
  CHECK(bound == doctest::Approx(expected).epsilon(1e-9));
}

TEST_CASE("semi-supervised model: bad input and options are refused with a message") {
  auto model = small_model(options(SemiSupervisedObjective::Siddharth, 0.1, UnlabelledEstimator::Enumerate));
  const Mat x = mlvae_test::toy_data<double>(3, 2);
  Rng r(1);
  CHECK_THROWS_WITH_AS(model.evaluate(x, {0, 1}, r), mlvae_test::contains("expected one label per column (3)"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(model.evaluate(x, {0, 3, -1}, r), mlvae_test::contains("label 3 at column 1"), ArgumentError);
  CHECK_THROWS_AS(model.evaluate(x, {0, -2, -1}, r), ArgumentError);
  CHECK_THROWS_WITH_AS(small_model(options(SemiSupervisedObjective::M2, 0.1, UnlabelledEstimator::Relaxed)),
                       mlvae_test::contains("M2 sums y out exactly"), ArgumentError);
  CHECK_THROWS_AS(small_model(options(SemiSupervisedObjective::Siddharth, -1.0, UnlabelledEstimator::Enumerate)),
                  ArgumentError);
  CHECK(m2_alpha(100, 50) == doctest::Approx(0.2));
  CHECK_THROWS_AS(m2_alpha(10, 20), ArgumentError);
}

TEST_CASE("balanced labelled subset: per-class counts and reproducible from the seed") {
  std::vector<int> labels;
  for (int i = 0; i < 500; ++i) labels.push_back((i * 7) % 10);
  const auto a = balanced_labelled_subset(labels, 100, 10, 3);
  const auto b = balanced_labelled_subset(labels, 100, 10, 3);
  const auto c = balanced_labelled_subset(labels, 100, 10, 4);
  CHECK(a == b);
  CHECK(a != c);
  REQUIRE(a.size() == 100);
  std::vector<int> per_class(10, 0);
  for (Index i : a) ++per_class[static_cast<std::size_t>(labels[static_cast<std::size_t>(i)])];
  for (int n : per_class) CHECK(n == 10);
  CHECK(std::set<Index>(a.begin(), a.end()).size() == 100);
  const auto odd = balanced_labelled_subset(labels, 23, 10, 1);  // 3 classes get 3, the others 2
  std::vector<int> counts(10, 0);
  for (Index i : odd) ++counts[static_cast<std::size_t>(labels[static_cast<std::size_t>(i)])];
  CHECK(std::count(counts.begin(), counts.end(), 3) == 3);
  CHECK(std::count(counts.begin(), counts.end(), 2) == 7);
  CHECK_THROWS_WITH_AS(balanced_labelled_subset({0, 0, 0, 1}, 4, 2, 1), mlvae_test::contains("are needed"),
                       ArgumentError);
}

TEST_CASE("semi-supervised sampler: set ratio and every example once per epoch") {
  std::vector<Index> labelled{1, 5, 9, 13, 17}, unlabelled;
  std::vector<int> labels{0, 1, 2, 0, 1};
  for (Index i = 20; i < 43; ++i) unlabelled.push_back(i);
  SemiSupervisedSampler sampler(labelled, labels, unlabelled, {2, 6, 11});
  CHECK(sampler.batches_per_epoch() == 4);  // ⌈23/6⌉ = 4 > ⌈5/2⌉ = 3
  for (int epoch = 0; epoch < 2; ++epoch) {
    sampler.start_epoch();
    SemiSupervisedBatch batch;
    std::vector<Index> seen_u;
    std::multiset<Index> seen_l;
    Index batches = 0;
    while (sampler.next(batch)) {
      ++batches;
      Index l = 0;
      for (std::size_t k = 0; k < batch.indices.size(); ++k) {
        if (batch.labels[k] >= 0) {
          ++l;
          seen_l.insert(batch.indices[k]);
          const auto at = std::find(labelled.begin(), labelled.end(), batch.indices[k]) - labelled.begin();
          CHECK(labels[static_cast<std::size_t>(at)] == batch.labels[k]);
        } else {
          seen_u.push_back(batch.indices[k]);
        }
      }
      CHECK(l == 2);  // the labelled pool is cycled: every batch full
    }
    CHECK(batches == 4);
    std::sort(seen_u.begin(), seen_u.end());
    CHECK(seen_u == unlabelled);  // exactly once
    for (Index i : labelled) CHECK(seen_l.count(i) >= 1);
  }
  // The state restores the rest of an epoch exactly.
  sampler.start_epoch();
  SemiSupervisedBatch batch, other;
  sampler.next(batch);
  const auto state = sampler.state();
  SemiSupervisedSampler copy(labelled, labels, unlabelled, {2, 6, 11});
  copy.restore(state);
  while (sampler.next(batch)) {
    REQUIRE(copy.next(other));
    CHECK(batch.indices == other.indices);
  }
  CHECK_FALSE(copy.next(other));
  auto bad = state;
  bad.unlabelled_plan.pop_back();
  CHECK_THROWS_AS(copy.restore(bad), ArgumentError);
  CHECK_THROWS_AS(SemiSupervisedSampler(labelled, {0, 1}, unlabelled, {}), ArgumentError);
}

TEST_CASE("semi-supervised training: checkpoints record the model kind and resume exactly") {
  const Mat data = mlvae_test::toy_data<double>(40, 5);
  std::vector<Index> labelled{0, 1, 2, 3, 4, 5}, unlabelled;
  std::vector<int> labels{0, 1, 2, 0, 1, 2};
  for (Index i = 6; i < 40; ++i) unlabelled.push_back(i);
  SemiSupervisedTrainerOptions topt;
  topt.sampler = {2, 6, 3};
  for (auto est : {UnlabelledEstimator::Enumerate, UnlabelledEstimator::Relaxed}) {
    CAPTURE(static_cast<int>(est));
    auto model = small_model(options(SemiSupervisedObjective::Siddharth, 0.1, est), 7);
    SemiSupervisedTrainer<SmallModel> trainer(model, data, labelled, labels, unlabelled, topt);
    mlvae_test::train_steps<SemiSupervisedTrainer<SmallModel>, SemiSupervisedStepReport>(trainer, 3);  // mid-epoch (6 batches per epoch)
    mlvae_test::TempDir dir;
    const std::string path = dir.file("ss.bin");
    save_semisupervised_checkpoint(path, trainer);
    const CheckpointInfo info = read_checkpoint_info(path);
    CHECK(info.model_kind == "SemiSupervisedVAE/siddharth");
    CHECK(info.kind == "training");
    mlvae_test::train_steps<SemiSupervisedTrainer<SmallModel>, SemiSupervisedStepReport>(trainer, 8);  // across the epoch boundary
    const Vec expected = model.parameters().values;

    auto fresh = small_model(options(SemiSupervisedObjective::Siddharth, 0.1, est), 99);
    SemiSupervisedTrainer<SmallModel> resumed(fresh, data, labelled, labels, unlabelled,
                                              read_semisupervised_checkpoint_options(path));
    load_semisupervised_checkpoint(path, resumed);
    CHECK(resumed.step_in_epoch() == 3);
    mlvae_test::train_steps<SemiSupervisedTrainer<SmallModel>, SemiSupervisedStepReport>(resumed, 8);
    CHECK(fresh.parameters().values == expected);  // bit for bit

    // Another objective, another labelled subset: refused, the trainer unchanged.
    auto m2 = small_model(options(SemiSupervisedObjective::M2, 0.1, UnlabelledEstimator::Enumerate), 99);
    SemiSupervisedTrainer<SmallModel> other(m2, data, labelled, labels, unlabelled, topt);
    const Vec before = m2.parameters().values;
    CHECK_THROWS_WITH_AS(load_semisupervised_checkpoint(path, other), mlvae_test::contains("model kind differs"),
                         IoError);
    CHECK(m2.parameters().values == before);
    auto again = small_model(options(SemiSupervisedObjective::Siddharth, 0.1, est), 99);
    std::vector<int> other_labels{0, 1, 2, 0, 1, 1};
    SemiSupervisedTrainer<SmallModel> wrong(again, data, labelled, other_labels, unlabelled, topt);
    CHECK_THROWS_WITH_AS(load_semisupervised_checkpoint(path, wrong), mlvae_test::contains("labelled subset differs"),
                         IoError);
    // The model part loads with the generic loader.
    auto plain = small_model(options(SemiSupervisedObjective::Siddharth, 0.1, est), 5);
    load_model(path, plain);
    CHECK(plain.parameters().values.size() == model.parameters().size());
  }
}

TEST_CASE("semi-supervised training lowers the loss and learns the labels of a toy problem") {
  // Two well-separated prototypes; 4 labelled examples, 60 unlabelled.
  const Index n = 64;
  Mat data(12, n);
  std::vector<int> truth(static_cast<std::size_t>(n));
  Rng rng(3);
  for (Index j = 0; j < n; ++j) {
    const int y = static_cast<int>(j % 2);
    truth[static_cast<std::size_t>(j)] = y;
    for (Index i = 0; i < 12; ++i) data(i, j) = ((i < 6) == (y == 0) ? 0.9 : 0.1) + 0.05 * rng.uniform();
  }
  using Model = MlpSemiSupervisedVAE<double>;
  auto model = make_mlp_semisupervised<double>(12, 16, 2, 2);
  Rng init(1);
  model.initialize(init);
  std::vector<Index> labelled{0, 1, 2, 3}, unlabelled;
  std::vector<int> labels{0, 1, 0, 1};
  for (Index i = 4; i < n; ++i) unlabelled.push_back(i);
  SemiSupervisedTrainerOptions topt;
  topt.sampler = {4, 12, 1};
  topt.adam.learning_rate = 1e-2;
  SemiSupervisedTrainer<Model> trainer(model, data, labelled, labels, unlabelled, topt);
  const double first = trainer.run_epoch().loss;
  SemiSupervisedTerms last;
  for (int e = 0; e < 30; ++e) last = trainer.run_epoch();
  CHECK(last.loss < first);
  CHECK(classification_error(model, data, truth) < 0.05);
}

TEST_CASE("semi-supervised conv28 model: one training step on images of 28x28") {
  auto model = make_conv28_semisupervised<float>(10, 8);
  Rng init(2);
  model.initialize(init);
  CHECK(model.model_kind() == "SemiSupervisedVAE/siddharth");
  Matrix<float> x(784, 3);
  for (Index j = 0; j < x.cols(); ++j)
    for (Index i = 0; i < x.rows(); ++i) x(i, j) = static_cast<float>(init.uniform());
  Rng noise(3);
  const SemiSupervisedTerms terms = model.forward_backward(x, {4, -1, -1}, noise);
  CHECK(std::isfinite(terms.loss));
  CHECK(terms.labelled == 1);
  CHECK(terms.unlabelled == 2);
  CHECK(model.parameters().gradients.allFinite());
  CHECK(model.parameters().gradients.cwiseAbs().maxCoeff() > 0);
  CHECK(model.predict(x).size() == 3);
}
