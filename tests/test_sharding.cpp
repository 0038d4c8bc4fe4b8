// tests/test_sharding.cpp — the pieces data-parallel training rests on, without MPI: skipping
// normals, a model computing a slice of a batch (BatchShard: the slice's noise, the global
// normaliser) whose shards add up to the whole batch, the shard loss against finite differences,
// and ShardedGradient against a plain Trainer (bit for bit with one shard). The MPI runs
// themselves are CTest's mpi_* tests (tests/mpi/mpi_worker.cpp).
#include <doctest/doctest.h>

#include "support.hpp"

#include "mlvae/mlvae.hpp"

#include <memory>
#include <vector>

namespace {

using mlvae::BatchShard;
using mlvae::Index;
using mlvae::Rng;

/// The ML-VAE's groups [begin, end) of `batch` as a shard of it.
struct Slice {
  mlvae::Matrix<double> x;
  std::vector<Index> offsets;
  BatchShard shard;
};

Slice slice_of(const mlvae::Matrix<double>& data, const mlvae::GroupedBatch& batch, Index begin, Index end) {
  Slice s;
  const Index first = batch.group_offsets[static_cast<std::size_t>(begin)];
  const Index last = batch.group_offsets[static_cast<std::size_t>(end)];
  std::vector<Index> idx(batch.indices.begin() + first, batch.indices.begin() + last);
  mlvae::gather_columns(data, idx, s.x);
  for (Index g = begin; g <= end; ++g) s.offsets.push_back(batch.group_offsets[static_cast<std::size_t>(g)] - first);
  s.shard = {begin, first, batch.group_count(), batch.size()};
  return s;
}

mlvae::GroupedBatch uneven_batch() {
  // 5 groups of sizes 3, 1, 4, 2, 3 over 13 observations.
  return mlvae::make_batch({{0, 4, 8}, {1}, {2, 6, 10, 12}, {3, 7}, {5, 9, 11}});
}

}  // namespace

TEST_CASE("skip_normals advances an Rng exactly as that many normal() calls") {
  for (const bool cached : {false, true}) {
    for (const std::int64_t count : {0, 1, 2, 3, 4, 5, 7, 1000, 1001}) {
      CAPTURE(cached);
      CAPTURE(count);
      Rng drawn(17), skipped(17);
      if (cached) {
        drawn.normal();
        skipped.normal();
      }
      for (std::int64_t i = 0; i < count; ++i) drawn.normal();
      mlvae::skip_normals(skipped, count);
      CHECK(skipped == drawn);
      // Byte-identical checkpoints need even the stale cached value to agree.
      CHECK(skipped.has_cached_normal() == drawn.has_cached_normal());
      CHECK(skipped.cached_normal() == drawn.cached_normal());
      CHECK(skipped.normal() == drawn.normal());
    }
  }
}

TEST_CASE("split_range cuts a range into nearly equal contiguous parts") {
  for (const Index total : {0, 1, 5, 16, 17}) {
    for (const Index parts : {1, 2, 3, 6}) {
      Index expected_begin = 0;
      for (Index p = 0; p < parts; ++p) {
        const auto [begin, end] = mlvae::split_range(total, parts, p);
        CHECK(begin == expected_begin);
        CHECK(end - begin >= total / parts);
        CHECK(end - begin <= total / parts + 1);
        expected_begin = end;
      }
      CHECK(expected_begin == total);
    }
  }
  CHECK_THROWS_AS(mlvae::split_range(4, 0, 0), mlvae::ArgumentError);
  CHECK_THROWS_AS(mlvae::split_range(4, 2, 2), mlvae::ArgumentError);
}

TEST_CASE("ML-VAE shards add up to the whole batch: terms and gradient and the noise stream") {
  auto model = mlvae::make_mlp_mlvae<double>(12, 7, 2, 3);
  Rng init(3);
  model.initialize(init);
  const auto data = mlvae_test::toy_data<double>(13);
  const auto batch = uneven_batch();
  mlvae::Matrix<double> x;
  mlvae::gather_columns(data, batch.indices, x);

  Rng whole_noise(41);
  const mlvae::LossTerms whole = model.forward_backward(x, batch.group_offsets, whole_noise);
  const mlvae::Vector<double> whole_gradient = model.parameters().gradients;

  for (const std::vector<Index>& cuts : {std::vector<Index>{0, 5}, {0, 2, 5}, {0, 1, 3, 5}, {0, 1, 2, 3, 4, 5}}) {
    CAPTURE(cuts.size());
    mlvae::LossTerms sum;
    mlvae::Vector<double> gradient = mlvae::Vector<double>::Zero(model.parameters().size());
    Rng end_state;
    for (std::size_t k = 0; k + 1 < cuts.size(); ++k) {
      const Slice s = slice_of(data, batch, cuts[k], cuts[k + 1]);
      Rng noise(41);
      mlvae::add_shard_terms(sum, model.forward_backward(s.x, s.offsets, noise, s.shard));
      gradient += model.parameters().gradients;
      end_state = noise;
    }
    CHECK(end_state == whole_noise);  // every shard leaves the Rng where the whole batch does
    CHECK(sum.groups == whole.groups);
    CHECK(sum.images == whole.images);
    CHECK(sum.loss == doctest::Approx(whole.loss).epsilon(1e-12));
    CHECK(sum.elbo_per_image == doctest::Approx(whole.elbo_per_image).epsilon(1e-12));
    CHECK(sum.content_kl == doctest::Approx(whole.content_kl).epsilon(1e-12));
    CHECK((gradient - whole_gradient).cwiseAbs().maxCoeff() <= 1e-12 * whole_gradient.cwiseAbs().maxCoeff());
  }
}

TEST_CASE("VAE shards add up to the whole batch") {
  auto model = mlvae::make_mlp_vae<double>(12, 6, 3);
  Rng init(4);
  model.initialize(init);
  const auto x = mlvae_test::toy_data<double>(9);
  Rng whole_noise(8);
  const double whole_loss = model.forward_backward(x, whole_noise).loss;
  const mlvae::Vector<double> whole_gradient = model.parameters().gradients;
  double loss = 0;
  mlvae::Vector<double> gradient = mlvae::Vector<double>::Zero(model.parameters().size());
  for (const auto& [first, n] : {std::pair<Index, Index>{0, 4}, {4, 1}, {5, 4}}) {
    Rng noise(8);
    const mlvae::Matrix<double> part = x.middleCols(first, n);
    loss += model.forward_backward(part, noise, BatchShard{0, first, 0, 9}).loss;
    gradient += model.parameters().gradients;
    CHECK(noise == whole_noise);
  }
  CHECK(loss == doctest::Approx(whole_loss).epsilon(1e-12));
  CHECK((gradient - whole_gradient).cwiseAbs().maxCoeff() <= 1e-12 * whole_gradient.cwiseAbs().maxCoeff());
}

TEST_CASE("gradient check: ML-VAE loss of a shard (slice noise and global normaliser)") {
  auto model = mlvae::make_mlp_mlvae<double>(12, 5, 2, 2);
  Rng init(6);
  model.initialize(init);
  const auto data = mlvae_test::toy_data<double>(13);
  const Slice s = slice_of(data, uneven_batch(), 2, 4);
  auto loss = [&] {
    Rng r(77);
    return model.evaluate(s.x, s.offsets, r, s.shard).loss;
  };
  Rng r(77);
  model.forward_backward(s.x, s.offsets, r, s.shard);
  const mlvae::Vector<double> analytic = model.parameters().gradients;
  const auto result = mlvae::check_gradient(loss, model.parameters().values, analytic);
  INFO(result.report());
  CHECK(result.passed);
  CHECK(result.checked == model.parameters().size());
}

TEST_CASE("a shard that does not fit its batch is refused") {
  auto model = mlvae::make_mlp_mlvae<double>(12, 5, 2, 2);
  Rng init(6), noise(1);
  model.initialize(init);
  const auto data = mlvae_test::toy_data<double>(13);
  Slice s = slice_of(data, uneven_batch(), 2, 4);
  s.shard.first_group = 4;  // groups 4..5 of a 5-group batch
  CHECK_THROWS_WITH_AS(model.forward_backward(s.x, s.offsets, noise, s.shard),
                       mlvae_test::contains("does not fit a global batch of 5 groups"), mlvae::ShapeError);
}

TEST_CASE("ShardedGradient with one shard is a plain Trainer bit for bit and with several agrees closely") {
  using Model = mlvae::MlpMLVAE<float>;
  const auto data = mlvae_test::toy_data<float>(150);
  const auto keys = mlvae_test::toy_keys(150);
  mlvae::TrainerOptions options;
  options.sampler = {7, 3, 6, 21};
  auto make = [] {
    Model m = mlvae::make_mlp_mlvae<float>(12, 16, 3, 3);
    Rng init(1);
    m.initialize(init);
    return m;
  };
  Model plain_model = make();
  mlvae::Trainer<Model> plain(plain_model, data, keys, options);
  mlvae_test::train_steps(plain, 12);
  for (const Index shards : {1, 3, 7, 9}) {
    CAPTURE(shards);
    Model model = make();
    mlvae::Trainer<Model> trainer(model, data, keys, options);
    trainer.set_gradient_strategy(std::make_shared<mlvae::ShardedGradient<Model>>(shards));
    mlvae_test::train_steps(trainer, 12);
    CHECK(trainer.noise() == plain.noise());
    if (shards == 1) {
      CHECK(model.parameters().values == plain_model.parameters().values);
      CHECK(trainer.optimizer().second_moment() == plain.optimizer().second_moment());
    } else {
      CHECK((model.parameters().values - plain_model.parameters().values).cwiseAbs().maxCoeff() <= 1e-5f);
    }
  }
  CHECK_THROWS_AS(mlvae::ShardedGradient<Model>(0), mlvae::ArgumentError);
}
