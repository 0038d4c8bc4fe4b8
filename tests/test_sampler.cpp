// tests/test_sampler.cpp — GroupedSampler (whole groups, coverage, determinism), make_batch, gather_columns.
#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "mlvae/data/grouped_sampler.hpp"

using mlvae::GroupedBatch;
using mlvae::GroupedSampler;
using mlvae::GroupedSamplerOptions;
using mlvae::Index;

namespace {

/// keys[i] = i % key_count, then `extra` more observations of key 0 (so keys have leftovers).
std::vector<int> make_keys(int n, int key_count, int extra = 0) {
  std::vector<int> keys;
  for (int i = 0; i < n; ++i) keys.push_back(i % key_count);
  for (int i = 0; i < extra; ++i) keys.push_back(0);
  return keys;
}

/// Runs one epoch, checks every batch's structure, returns all batches.
std::vector<GroupedBatch> run_epoch(GroupedSampler& sampler, const std::vector<int>& keys,
                                    const GroupedSamplerOptions& options) {
  std::vector<GroupedBatch> batches;
  std::vector<int> seen(keys.size(), 0);
  std::map<int, int> small_groups;  // key -> groups smaller than min_group_size
  sampler.start_epoch();
  GroupedBatch batch;
  while (sampler.next(batch)) {
    REQUIRE(batch.group_count() >= 1);
    REQUIRE(batch.group_count() <= options.groups_per_batch);
    REQUIRE(batch.group_offsets.size() == batch.group_keys.size() + 1);
    REQUIRE(batch.group_offsets.front() == 0);
    REQUIRE(batch.group_offsets.back() == batch.size());
    for (Index g = 0; g < batch.group_count(); ++g) {
      const Index size = batch.group_size(g);
      REQUIRE(size >= 1);
      CHECK(size <= options.max_group_size);
      if (size < options.min_group_size) ++small_groups[batch.group_keys[static_cast<std::size_t>(g)]];
      for (Index j = batch.group_offsets[static_cast<std::size_t>(g)]; j < batch.group_offsets[static_cast<std::size_t>(g) + 1]; ++j) {
        const Index i = batch.indices[static_cast<std::size_t>(j)];
        REQUIRE(i >= 0);
        REQUIRE(i < static_cast<Index>(keys.size()));
        CHECK(keys[static_cast<std::size_t>(i)] == batch.group_keys[static_cast<std::size_t>(g)]);  // one key per group
        ++seen[static_cast<std::size_t>(i)];
      }
    }
    batches.push_back(batch);
  }
  CHECK(static_cast<Index>(batches.size()) == sampler.batches_per_epoch());
  for (std::size_t b = 0; b + 1 < batches.size(); ++b) CHECK(batches[b].group_count() == options.groups_per_batch);
  for (std::size_t i = 0; i < seen.size(); ++i) {
    CAPTURE(i);
    CHECK(seen[i] == 1);  // every observation exactly once per epoch
  }
  for (const auto& entry : small_groups) CHECK(entry.second <= 1);  // at most one leftover group per key
  CHECK_FALSE(sampler.next(batch));  // stays at the end until start_epoch()
  return batches;
}

bool same(const std::vector<GroupedBatch>& a, const std::vector<GroupedBatch>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].indices != b[i].indices || a[i].group_offsets != b[i].group_offsets || a[i].group_keys != b[i].group_keys)
      return false;
  return true;
}

}  // namespace

TEST_CASE("sampler: fixed-size groups are whole - single-key - and cover every observation once per epoch") {
  const auto keys = make_keys(200, 10);  // 20 per key: one group of 8, one of 8, one leftover of 4
  const GroupedSamplerOptions options{3, 8, 8, 7};
  GroupedSampler sampler(keys, options);
  CHECK(sampler.groups_per_epoch() == 30);
  CHECK(sampler.batches_per_epoch() == 10);
  for (int e = 0; e < 3; ++e) {
    const auto batches = run_epoch(sampler, keys, options);
    CHECK(sampler.epoch() == e + 1);
    int leftover = 0;
    for (const auto& b : batches)
      for (Index g = 0; g < b.group_count(); ++g) leftover += b.group_size(g) == 4;
    CHECK(leftover == 10);
  }
}

TEST_CASE("sampler: variable group sizes and keys with leftovers") {
  const auto keys = make_keys(97, 4, 13);  // uneven key counts
  const GroupedSamplerOptions options{5, 2, 7, 123};
  GroupedSampler sampler(keys, options);
  for (int e = 0; e < 4; ++e) run_epoch(sampler, keys, options);

  // One observation per key, groups larger than any key, a single group per batch.
  const std::vector<int> tiny = {5, -3, 5, 8};
  const GroupedSamplerOptions big{1, 16, 16, 1};
  GroupedSampler small_sampler(tiny, big);
  CHECK(small_sampler.batches_per_epoch() == 3);
  run_epoch(small_sampler, tiny, big);
  CHECK(small_sampler.distinct_keys() == std::vector<int>{-3, 5, 8});
}

TEST_CASE("sampler: same seed gives the same batches - a different seed different ones") {
  const auto keys = make_keys(150, 6, 5);
  const GroupedSamplerOptions options{4, 3, 6, 42};
  GroupedSampler a(keys, options), b(keys, options);
  GroupedSamplerOptions other = options;
  other.seed = 43;
  GroupedSampler c(keys, other);
  const auto a1 = run_epoch(a, keys, options), a2 = run_epoch(a, keys, options);
  const auto b1 = run_epoch(b, keys, options), b2 = run_epoch(b, keys, options);
  const auto c1 = run_epoch(c, keys, other);
  CHECK(same(a1, b1));
  CHECK(same(a2, b2));
  CHECK_FALSE(same(a1, a2));  // reshuffled each epoch
  CHECK_FALSE(same(a1, c1));

  // next() without start_epoch() starts the first epoch itself, with the same batches.
  GroupedSampler d(keys, options);
  GroupedBatch batch;
  REQUIRE(d.next(batch));
  CHECK(d.epoch() == 1);
  CHECK(batch.indices == a1.front().indices);
}

TEST_CASE("sampler: option validation") {
  const auto keys = make_keys(10, 2);
  using mlvae::ArgumentError;
  CHECK_THROWS_WITH_AS(GroupedSampler({}, {}), doctest::Contains("expected at least one key"), ArgumentError);
  CHECK_THROWS_WITH_AS(GroupedSampler(keys, {0, 4, 4, 1}), doctest::Contains("groups_per_batch must be >= 1, found 0"),
                       ArgumentError);
  CHECK_THROWS_WITH_AS(GroupedSampler(keys, {2, 0, 4, 1}), doctest::Contains("min_group_size must be >= 1, found 0"),
                       ArgumentError);
  CHECK_THROWS_WITH_AS(GroupedSampler(keys, {2, 5, 3, 1}),
                       doctest::Contains("max_group_size must be >= min_group_size (5), found 3"), ArgumentError);
}

TEST_CASE("sampler: make_batch builds CSR offsets and validates groups") {
  const GroupedBatch batch = mlvae::make_batch({{4, 2}, {7}, {0, 1, 3}}, {9, 9, 1});
  CHECK(batch.indices == std::vector<Index>{4, 2, 7, 0, 1, 3});
  CHECK(batch.group_offsets == std::vector<Index>{0, 2, 3, 6});
  CHECK(batch.group_keys == std::vector<int>{9, 9, 1});
  CHECK(batch.size() == 6);
  CHECK(batch.group_count() == 3);
  CHECK(mlvae::make_batch({{1}, {2}}).group_keys == std::vector<int>{0, 1});
  CHECK_THROWS_WITH_AS(mlvae::make_batch({{1}, {}}), doctest::Contains("group 1 is empty"), mlvae::ArgumentError);
  CHECK_THROWS_WITH_AS(mlvae::make_batch({}), doctest::Contains("at least one group"), mlvae::ArgumentError);
  CHECK_THROWS_WITH_AS(mlvae::make_batch({{1}, {2}}, {1}), doctest::Contains("expected 2 keys"), mlvae::ArgumentError);
}

TEST_CASE("sampler: gather_columns copies columns and checks indices") {
  mlvae::Matrix<double> data(3, 5);
  for (Index j = 0; j < 5; ++j)
    for (Index i = 0; i < 3; ++i) data(i, j) = 10.0 * static_cast<double>(j) + static_cast<double>(i);
  mlvae::Matrix<double> out;
  mlvae::gather_columns(data, {4, 0, 4}, out);
  REQUIRE(out.rows() == 3);
  REQUIRE(out.cols() == 3);
  CHECK(out.col(0) == data.col(4));
  CHECK(out.col(1) == data.col(0));
  CHECK(out.col(2) == data.col(4));
  const double* storage = out.data();
  mlvae::gather_columns(data, {1, 2, 3}, out);
  CHECK(out.data() == storage);  // same shape: no reallocation
  CHECK(out.col(2) == data.col(3));
  CHECK_THROWS_WITH_AS(mlvae::gather_columns(data, {1, 5}, out),
                       doctest::Contains("index 5 at position 1 is outside the data's columns [0, 5)"),
                       mlvae::ShapeError);
  CHECK_THROWS_AS(mlvae::gather_columns(data, {-1}, out), mlvae::ShapeError);
}
