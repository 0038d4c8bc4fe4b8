// End-to-end behaviour: float and double models run, a short training run on a real
// Fashion-MNIST slice improves the ELBO, the content KL is counted once per group, and the
// public model API rejects bad batches with clear messages.
#include <doctest/doctest.h>

#include "mlvae/mlvae.hpp"

#include <functional>
#include <limits>
#include <string>

using namespace mlvae;

namespace {
std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE_TEMPLATE("ML-VAE and VAE instantiate and take a step in float and double", T, float, double) {
  auto model = make_mlp_mlvae<T>(16, 8, 3, 2);
  Rng rng(1);
  model.initialize(rng);
  Matrix<T> x = Matrix<T>::Constant(16, 5, T(0.5));
  const LossTerms terms = model.forward_backward(x, {0, 2, 5}, rng);
  CHECK(std::isfinite(terms.loss));
  CHECK(terms.groups == 2);
  CHECK(terms.images == 5);
  CHECK(model.parameters().gradients.allFinite());
  CHECK(model.parameters().gradients.norm() > 0);

  auto vae = make_mlp_vae<T>(16, 8, 4);
  vae.initialize(rng);
  CHECK(std::isfinite(vae.forward_backward(x, rng).loss));
}

TEST_CASE("ML-VAE objective: terms add up - content KL once per group - averaged over groups") {
  auto model = make_mlp_mlvae<double>(10, 6, 2, 3);
  Rng init(3);
  model.initialize(init);
  Matrix<double> x(10, 6);
  for (Index j = 0; j < 6; ++j)
    for (Index i = 0; i < 10; ++i) x(i, j) = init.uniform();
  Rng r1(5);
  const LossTerms t = model.evaluate(x, {0, 4, 6}, r1);
  CHECK(t.elbo_per_group == doctest::Approx(t.reconstruction - t.style_kl - t.content_kl));
  CHECK(t.loss == doctest::Approx(-t.elbo_per_group));
  CHECK(t.elbo_per_image == doctest::Approx(t.elbo_per_group * 2.0 / 6.0));

  // Content KL recomputed by hand from the group posterior: one KL per group, divided by G = 2.
  Matrix<double> sm, sl, cm, cl, gm, gl;
  model.encode(x, sm, sl, cm, cl);
  group_posterior(cm, cl, {0, 4, 6}, gm, gl);
  RowVector<double> kl;
  kl_to_standard_normal<double>(gm, gl, kl);
  CHECK(t.content_kl == doctest::Approx(kl.sum() / 2.0));
  kl_to_standard_normal<double>(sm, sl, kl);
  CHECK(t.style_kl == doctest::Approx(kl.sum() / 2.0));
}

TEST_CASE("training on a real Fashion-MNIST slice improves the ELBO") {
  const auto train = load_fashion_mnist<float>("train", fashion_mnist_default_dir(), 1024);
  auto model = make_mlp_mlvae<float>(784, 64, 4, 4);
  Rng init(11);
  model.initialize(init);
  TrainerOptions options;
  options.sampler = {8, 8, 8, 3};  // 64 images per batch, groups of 8 of one class
  Trainer<decltype(model)> trainer(model, train.images, train.labels, options);
  const LossTerms before = evaluate_dataset(model, train.images, train.labels, 8);
  LossTerms last;
  for (int epoch = 0; epoch < 3; ++epoch) last = trainer.run_epoch();
  const LossTerms after = evaluate_dataset(model, train.images, train.labels, 8);
  INFO("ELBO per image before ", before.elbo_per_image, " after ", after.elbo_per_image);
  CHECK(after.elbo_per_image > before.elbo_per_image + 100.0);
  CHECK(last.images == 1024);
  CHECK(trainer.optimizer().step_count() == 3 * trainer.sampler().batches_per_epoch());
}

TEST_CASE("the model API rejects bad batches with messages naming expected and found") {
  auto model = make_mlp_mlvae<double>(10, 6, 2, 3);
  Rng rng(1);
  model.initialize(rng);
  Matrix<double> x = Matrix<double>::Constant(10, 4, 0.5);

  const std::string rows = message_of([&] {
    Matrix<double> wrong(9, 4);
    wrong.setZero();
    model.forward_backward(wrong, {0, 4}, rng);
  });
  CHECK(rows.find("expected observations with 10 features") != std::string::npos);
  CHECK(rows.find("found 9") != std::string::npos);

  CHECK_THROWS_AS(model.forward_backward(x, {0, 2, 2, 4}, rng), ArgumentError);  // empty group
  CHECK(message_of([&] { model.forward_backward(x, {0, 2, 2, 4}, rng); }).find("group 1 is empty") !=
        std::string::npos);
  CHECK_THROWS_AS(model.forward_backward(x, {0, 3}, rng), ShapeError);  // offsets do not cover the batch
  CHECK_THROWS_AS(model.forward_backward(x, {}, rng), ArgumentError);
  CHECK_THROWS_AS(model.forward_backward(x, {1, 4}, rng), ArgumentError);

  x(3, 2) = std::numeric_limits<double>::quiet_NaN();
  CHECK(message_of([&] { model.forward_backward(x, {0, 4}, rng); }).find("NaN") != std::string::npos);
  x(3, 2) = std::numeric_limits<double>::infinity();
  CHECK_THROWS_AS(model.evaluate(x, {0, 4}, rng), ArgumentError);

  // Architecture mismatches when composing a model.
  auto mismatched_stack = [] { Sequential<Dense<double>, Tanh<double>>(Dense<double>(4, 5), Tanh<double>(6)); };
  CHECK_THROWS_AS(mismatched_stack(), ShapeError);
  auto mismatched_decoder = [] {  // decoder expects 4 inputs, style + content = 2 + 3
    MlpMLVAE<double>(MlpTrunk<double>(Dense<double>(10, 6), Tanh<double>(6)), MlpHead<double>(Dense<double>(6, 4)),
                     MlpHead<double>(Dense<double>(6, 6)),
                     MlpDecoder<double>(Dense<double>(4, 6), Tanh<double>(6), Dense<double>(6, 10)));
  };
  CHECK_THROWS_AS(mismatched_decoder(), ShapeError);
  CHECK(message_of(mismatched_decoder).find("the decoder expects 4 inputs but style + content = 2 + 3") !=
        std::string::npos);
}
