// tests/test_resume.cpp — exact resumption on real data: training N steps, saving, loading into a
// FRESH model and trainer, and training M more gives bit-identical parameters to N+M steps straight
// through (same seed, same thread count), mid-epoch and across epoch boundaries, in both formats.
#include <doctest/doctest.h>

#include "support.hpp"

#include <filesystem>
#include <random>
#include <string>

#include "mlvae/mlvae.hpp"

namespace {

using mlvae_test::TempDir;
using mlvae_test::train_steps;


using Model = mlvae::MlpMLVAE<double>;

Model fresh_model(std::uint64_t seed) {
  Model model = mlvae::make_mlp_mlvae<double>(784, 24, 4, 4);
  mlvae::Rng init(seed);
  model.initialize(init);
  return model;
}

mlvae::TrainerOptions resume_options() {
  mlvae::TrainerOptions o;
  o.sampler = {4, 6, 10, 21};  // random group sizes: the plan depends on the sampler's history
  o.noise_seed = 22;
  o.adam.learning_rate = 2e-3;
  o.adam.clip_norm = 50;
  return o;
}

}  // namespace

TEST_CASE("resume: N steps + checkpoint + M steps in a fresh trainer == N+M steps bit for bit") {
  const auto train = mlvae::load_fashion_mnist<double>("train", mlvae::fashion_mnist_default_dir(), 512);
  TempDir tmp;

  // Straight-through reference; steps per epoch vary (random group sizes), about 16.
  Model straight_model = fresh_model(1);
  mlvae::Trainer<Model> straight(straight_model, train.images, train.labels, resume_options());
  const mlvae::Index per_epoch = straight.sampler().batches_per_epoch();
  CHECK(per_epoch > 8);

  struct Case {
    int n, m;
    mlvae::CheckpointFormat format;
  };
  const int e = static_cast<int>(per_epoch);
  for (const Case c : {Case{5, 7, mlvae::CheckpointFormat::Binary},            // mid-epoch, same epoch
                       Case{e - 2, 9, mlvae::CheckpointFormat::Binary},        // across an epoch boundary
                       Case{e, 6, mlvae::CheckpointFormat::Json},              // exactly at an epoch end
                       Case{e + 3, 2 * e, mlvae::CheckpointFormat::Json}}) {   // mid second epoch, two more
    CAPTURE(c.n);
    CAPTURE(c.m);
    Model ref_model = fresh_model(1);
    mlvae::Trainer<Model> ref(ref_model, train.images, train.labels, resume_options());
    train_steps(ref, c.n + c.m);

    Model first_model = fresh_model(1);
    mlvae::Trainer<Model> first(first_model, train.images, train.labels, resume_options());
    train_steps(first, c.n);
    const std::string path = tmp.file("resume.ckpt");
    mlvae::save_checkpoint(path, first, c.format);

    Model second_model = fresh_model(12345);  // different initial values: all must be overwritten
    mlvae::Trainer<Model> second(second_model, train.images, train.labels, mlvae::read_checkpoint_options(path));
    mlvae::load_checkpoint(path, second);
    CHECK(second.step_in_epoch() == first.step_in_epoch());
    CHECK(second.sampler().epoch() == first.sampler().epoch());
    train_steps(second, c.m);

    CHECK(second_model.parameters().values == ref_model.parameters().values);
    CHECK(second.optimizer().first_moment() == ref.optimizer().first_moment());
    CHECK(second.optimizer().second_moment() == ref.optimizer().second_moment());
    CHECK(second.optimizer().step_count() == ref.optimizer().step_count());
    CHECK(second.noise() == ref.noise());
    CHECK(second.step_in_epoch() == ref.step_in_epoch());
    CHECK(second.sampler().epoch() == ref.sampler().epoch());
  }
}

TEST_CASE("resume: run_epoch / continue_epoch after a mid-epoch checkpoint equals whole epochs") {
  const auto train = mlvae::load_fashion_mnist<double>("train", mlvae::fashion_mnist_default_dir(), 512);
  TempDir tmp;
  Model ref_model = fresh_model(3);
  mlvae::Trainer<Model> ref(ref_model, train.images, train.labels, resume_options());
  ref.run_epoch();
  ref.run_epoch();

  Model a_model = fresh_model(3);
  mlvae::Trainer<Model> a(a_model, train.images, train.labels, resume_options());
  a.run_epoch();
  a.start_epoch();
  mlvae::StepReport report;
  for (int i = 0; i < 5; ++i) REQUIRE(a.step(report));
  CHECK(a.epoch_in_progress());
  mlvae::save_checkpoint(tmp.file("mid.bin"), a);

  Model b_model = fresh_model(4);
  mlvae::Trainer<Model> b(b_model, train.images, train.labels, resume_options());
  mlvae::load_checkpoint(tmp.file("mid.bin"), b);
  CHECK(b.epoch_in_progress());
  int steps = 0;
  b.continue_epoch([&](const mlvae::StepReport& r) {
    ++steps;
    CHECK(r.epoch == 2);
  });
  CHECK(steps == static_cast<int>(ref.step_in_epoch()) - 5);
  CHECK_FALSE(b.epoch_in_progress());
  CHECK(b_model.parameters().values == ref_model.parameters().values);
}
