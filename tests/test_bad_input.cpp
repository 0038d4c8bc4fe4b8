// tests/test_bad_input.cpp — bad input ends in a clear mlvae::Error, never a crash: every truncation of
// a small checkpoint, random byte flips, a fuzz loop over the IDX reader, and malformed arguments to
// the public API (groups, batch shapes, NaN/Inf data, sampler states). Each loop is bounded in count.
#include <doctest/doctest.h>

#include "support.hpp"

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "mlvae/mlvae.hpp"

namespace {

using mlvae_test::TempDir;
using mlvae_test::toy_data;
using mlvae_test::toy_keys;
using mlvae_test::contains;
using mlvae_test::read_bytes;
using mlvae_test::write_bytes;

namespace fs = std::filesystem;

/// Outcome of one load attempt on a damaged file.
enum class Outcome { Loaded, MlvaeError, OtherException };

template <typename F>
Outcome attempt(F&& f) {
  try {
    f();
    return Outcome::Loaded;
  } catch (const mlvae::Error&) {
    return Outcome::MlvaeError;
  } catch (...) {
    return Outcome::OtherException;
  }
}

/// Counts the bad inputs the tests in this file try (reported at the end of the run).
long long& bad_inputs_tried() {
  static long long n = 0;
  return n;
}

}  // namespace

TEST_CASE("bad input: every truncation of a small checkpoint and random byte flips are IoErrors") {
  TempDir tmp;
  const auto data = toy_data(40);
  auto model = mlvae::make_mlp_mlvae<double>(12, 7, 3, 2);
  mlvae::Rng init(1);
  model.initialize(init);
  mlvae::TrainerOptions options;
  options.sampler = {3, 2, 5, 11};
  mlvae::Trainer<decltype(model)> trainer(model, data, toy_keys(40), options);
  mlvae::StepReport report;
  for (int i = 0; i < 5; ++i) trainer.step(report);
  const std::string bin = tmp.file("c.bin"), json = tmp.file("c.json"), bad = tmp.file("bad");
  mlvae::save_checkpoint(bin, trainer);
  mlvae::save_checkpoint(json, trainer, mlvae::CheckpointFormat::Json);
  const std::string full = read_bytes(bin), full_json = read_bytes(json);

  auto model2 = mlvae::make_mlp_mlvae<double>(12, 7, 3, 2);
  mlvae::Trainer<decltype(model2)> target(model2, data, toy_keys(40), options);
  const mlvae::Vector<double> untouched = model2.parameters().values;

  // Every truncation length of the binary file: IoError naming the file; the target unchanged.
  long long io_errors = 0, others = 0;
  for (std::size_t len = 0; len < full.size(); ++len) {
    write_bytes(bad, full.substr(0, len));
    try {
      mlvae::load_checkpoint(bad, target);
      ++others;
    } catch (const mlvae::IoError& e) {
      ++io_errors;
      if (std::string(e.what()).find(bad) == std::string::npos) ++others;
    } catch (...) {
      ++others;
    }
  }
  bad_inputs_tried() += static_cast<long long>(full.size());
  CHECK(io_errors == static_cast<long long>(full.size()));
  CHECK(others == 0);
  CHECK(model2.parameters().values == untouched);

  // Truncations of the JSON file (every 97th length, plus the last few bytes).
  long long json_failures = 0, json_tried = 0;
  for (std::size_t len = 0; len < full_json.size(); len += (len + 8 >= full_json.size() ? 1 : 97)) {
    write_bytes(bad, full_json.substr(0, len));
    ++json_tried;
    try {
      mlvae::load_checkpoint(bad, target);
    } catch (const mlvae::IoError&) {
      ++json_failures;
    } catch (...) {
    }
  }
  bad_inputs_tried() += json_tried;
  // Dropping only trailing whitespace/newline may still parse; everything else must fail.
  CHECK(json_failures >= json_tried - 2);
  CHECK(model2.parameters().values == untouched);

  // Random byte flips (1 to 3 bytes): either a load whose checks all pass or an mlvae::Error.
  std::mt19937_64 rng(2024);
  int loaded = 0, failed = 0, other = 0;
  for (int trial = 0; trial < 300; ++trial) {
    std::string bytes = full;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int f = 0; f < flips; ++f)
      bytes[rng() % bytes.size()] ^= static_cast<char>(1 + rng() % 255);
    write_bytes(bad, bytes);
    switch (attempt([&] { mlvae::load_checkpoint(bad, target); })) {
      case Outcome::Loaded:
        ++loaded;
        CHECK(model2.parameters().values.allFinite());
        CHECK(model2.parameters().values.size() == model.parameters().size());
        break;
      case Outcome::MlvaeError: ++failed; break;
      case Outcome::OtherException: ++other; break;
    }
  }
  bad_inputs_tried() += 300;
  CHECK(other == 0);
  CHECK(loaded + failed == 300);
  CHECK(loaded == 0);  // the CRC-32 catches every flip of 1 to 3 bytes

  // Flips in the JSON file (bounded; the parser must not crash).
  int json_other = 0;
  for (int trial = 0; trial < 60; ++trial) {
    std::string bytes = full_json;
    bytes[rng() % bytes.size()] = static_cast<char>(rng() % 256);
    write_bytes(bad, bytes);
    if (attempt([&] { mlvae::load_checkpoint(bad, target); }) == Outcome::OtherException) ++json_other;
  }
  bad_inputs_tried() += 60;
  CHECK(json_other == 0);

  // Hand-made corruptions: a huge parameter count / string length must not allocate.
  std::string huge = full;
  for (int i = 1; i <= 8; ++i) huge[static_cast<std::size_t>(i)] = '\x7f';  // tag length
  write_bytes(bad, huge);
  CHECK_THROWS_WITH_AS(mlvae::load_checkpoint(bad, target), contains("not an mlvae checkpoint"), mlvae::IoError);
  CHECK_THROWS_AS(mlvae::read_checkpoint_info(bad), mlvae::IoError);
  CHECK_THROWS_AS(mlvae::read_checkpoint_options(bad), mlvae::IoError);
  bad_inputs_tried() += 3;
}

TEST_CASE("bad input: fuzzing read_idx with random mutations of a small valid file") {
  TempDir tmp;
  const std::string path = tmp.file("f.idx");
  std::vector<std::uint8_t> valid = {0, 0, 8, 3, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0, 3};
  for (int i = 0; i < 24; ++i) valid.push_back(static_cast<std::uint8_t>(i * 7));
  std::mt19937_64 rng(7);
  int ok = 0, rejected = 0, other = 0;
  const int iterations = 2000;
  for (int it = 0; it < iterations; ++it) {
    std::vector<std::uint8_t> bytes = valid;
    switch (rng() % 5) {
      case 0:  // flip random bytes anywhere
        for (int f = 0, n = 1 + static_cast<int>(rng() % 4); f < n; ++f)
          bytes[rng() % bytes.size()] = static_cast<std::uint8_t>(rng());
        break;
      case 1:  // truncate
        bytes.resize(rng() % bytes.size());
        break;
      case 2:  // append garbage
        for (int f = 0, n = 1 + static_cast<int>(rng() % 16); f < n; ++f)
          bytes.push_back(static_cast<std::uint8_t>(rng()));
        break;
      case 3:  // corrupt the header (magic, type, rank, dimension sizes)
        bytes[rng() % 16] = static_cast<std::uint8_t>(rng());
        break;
      default:  // huge dimension sizes in a tiny file
        for (std::size_t b = 4; b < 16; ++b)
          if (rng() % 2) bytes[b] = 0xff;
        break;
    }
    std::ofstream(path, std::ios::binary | std::ios::trunc)
        .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    switch (attempt([&] {
      const auto array = mlvae::read_idx(path, rng() % 2 ? mlvae::idx_all_items : 2);
      if (array.data.size() != array.items() * array.item_size()) throw std::logic_error("inconsistent IdxArray");
    })) {
      case Outcome::Loaded: ++ok; break;
      case Outcome::MlvaeError: ++rejected; break;
      case Outcome::OtherException: ++other; break;
    }
  }
  bad_inputs_tried() += iterations;
  CHECK(other == 0);
  CHECK(ok + rejected == iterations);
  CHECK(rejected > iterations / 2);

  // Huge dimensions in a tiny file: a truncation error, without allocating the announced size.
  std::vector<std::uint8_t> huge = {0, 0, 8, 3, 0, 0, 0xff, 0xff, 0, 0, 0x0f, 0xff, 0, 0, 0x0f, 0xff, 1, 2, 3};
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(huge.data()), static_cast<std::streamsize>(huge.size()));
  CHECK_THROWS_WITH_AS(mlvae::read_idx(path), contains("bytes of payload, found 3"), mlvae::IoError);
  bad_inputs_tried() += 1;

  // An image file with zero images: the loader returns an empty set and the Trainer refuses it.
  const std::string dir = tmp.path.string();
  std::vector<std::uint8_t> images = {0, 0, 8, 3, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2};
  std::vector<std::uint8_t> labels = {0, 0, 8, 1, 0, 0, 0, 0};
  std::ofstream(tmp.file("train-images-idx3-ubyte"), std::ios::binary)
      .write(reinterpret_cast<const char*>(images.data()), static_cast<std::streamsize>(images.size()));
  std::ofstream(tmp.file("train-labels-idx1-ubyte"), std::ios::binary)
      .write(reinterpret_cast<const char*>(labels.data()), static_cast<std::streamsize>(labels.size()));
  const auto empty = mlvae::load_fashion_mnist<double>("train", dir);
  CHECK(empty.size() == 0);
  auto model = mlvae::make_mlp_mlvae<double>(4, 3, 2, 2);
  CHECK_THROWS_WITH_AS((mlvae::Trainer<decltype(model)>(model, empty.images, empty.labels)),
                       contains("the training data hold 0 observations"), mlvae::ArgumentError);
  bad_inputs_tried() += 1;
}

TEST_CASE("bad input: groups - batch shapes - NaN/Inf in the public API are clear errors") {
  long long tried = 0;
  auto expect = [&](auto&& f, const char* fragment) {
    ++tried;
    CHECK_THROWS_WITH_AS(f(), contains(fragment), mlvae::Error);
  };
  auto model = mlvae::make_mlp_mlvae<double>(12, 7, 3, 2);
  mlvae::Rng rng(1);
  model.initialize(rng);
  const auto x = toy_data(6);

  // Groups and offsets.
  expect([&] { model.forward_backward(x, {0, 3, 6, 6}, rng); }, "group 2 is empty");
  expect([&] { model.forward_backward(x, {0, 0, 6}, rng); }, "group 0 is empty");
  expect([&] { model.forward_backward(x, {0, 4}, rng); }, "cover 4 observations but the batch has 6");
  expect([&] { model.forward_backward(x, {0, 3, 7}, rng); }, "cover 7 observations but the batch has 6");
  expect([&] { model.forward_backward(x, {1, 6}, rng); }, "must start at 0");
  expect([&] { model.forward_backward(x, {0}, rng); }, "expected at least one group");
  expect([&] { model.forward_backward(x, {}, rng); }, "expected at least one group");
  expect([&] { model.evaluate(x, {0, 5, 2}, rng); }, "group 1 is empty");
  expect([&] { mlvae::make_batch({}); }, "expected at least one group");
  expect([&] { mlvae::make_batch({{0, 1}, {}}); }, "group 1 is empty");
  expect([&] { mlvae::make_batch({{0, 1}}, {1, 2}); }, "expected 1 keys");
  // Single-member groups are valid for ML-VAE (the group posterior is the member's posterior).
  CHECK(std::isfinite(model.forward_backward(x, {0, 1, 2, 3, 4, 5, 6}, rng).loss));

  // Batch shapes.
  const mlvae::Matrix<double> wrong_rows = mlvae::Matrix<double>::Constant(11, 6, 0.5);
  expect([&] { model.forward_backward(wrong_rows, {0, 6}, rng); }, "expected observations with 12 features");
  expect([&] { model.forward_backward(mlvae::Matrix<double>(12, 0), {0}, rng); }, "the batch is empty");
  mlvae::Matrix<double> sm, sl, cm, cl, mean;
  expect([&] { model.encode(wrong_rows, sm, sl, cm, cl); }, "expected observations with 12 features");
  expect([&] { model.decode_mean(mlvae::Matrix<double>(3, 4), mlvae::Matrix<double>(2, 5), mean); },
         "expected style 3xN and content 2xN");
  expect([&] { model.decode_mean(mlvae::Matrix<double>(2, 4), mlvae::Matrix<double>(2, 4), mean); },
         "expected style 3xN");
  mlvae::Matrix<double> out;
  expect([&] { mlvae::gather_columns(x, {0, 6}, out); }, "index 6 at position 1");
  expect([&] { mlvae::gather_columns(x, {-1}, out); }, "index -1");
  mlvae::Adam<double> adam(5);
  mlvae::Vector<double> v5(5), v4(4);
  v5.setZero();
  v4.setZero();
  expect([&] { adam.step(v4, v4); }, "expected 5 parameters");
  expect([&] { adam.set_state(1, v4, v5); }, "expected moments of size 5");
  expect([&] { (void)mlvae::Adam<double>(3, mlvae::AdamOptions{-1.0}); }, "learning_rate must be positive");

  // NaN / Inf in input data.
  for (const double bad : {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
                           -std::numeric_limits<double>::infinity()}) {
    mlvae::Matrix<double> y = x;
    y(4, 2) = bad;
    expect([&] { model.forward_backward(y, {0, 6}, rng); }, "contains NaN or infinite values");
    expect([&] { model.evaluate(y, {0, 6}, rng); }, "contains NaN or infinite values");
    expect([&] { model.encode(y, sm, sl, cm, cl); }, "contains NaN or infinite values");
    auto vae = mlvae::make_mlp_vae<double>(12, 5, 3);
    expect([&] { vae.forward_backward(y, rng); }, "contains NaN or infinite values");
    mlvae::Matrix<double> data = toy_data(20);
    data(0, 13) = bad;
    expect([&] { (void)mlvae::Trainer<decltype(model)>(model, data, toy_keys(20)); }, "contain NaN or infinite values");
  }

  // Trainer and sampler arguments.
  const auto data = toy_data(20);
  expect([&] { (void)mlvae::Trainer<decltype(model)>(model, data, toy_keys(19)); }, "expected one key per observation (20)");
  expect([&] { (void)mlvae::Trainer<decltype(model)>(model, wrong_rows, toy_keys(6)); }, "the model expects 12 features");
  expect([&] { (void)mlvae::GroupedSampler(toy_keys(8), {0, 2, 2, 1}); }, "groups_per_batch must be >= 1");
  expect([&] { (void)mlvae::GroupedSampler(toy_keys(8), {1, 0, 2, 1}); }, "min_group_size must be >= 1");
  expect([&] { (void)mlvae::GroupedSampler(toy_keys(8), {1, 3, 2, 1}); }, "max_group_size must be >= min_group_size");
  expect([&] { (void)mlvae::GroupedSampler({}, {1, 2, 2, 1}); }, "expected at least one key");

  // Sampler states that do not fit the sampler: rejected, and the sampler keeps working.
  mlvae::GroupedSampler sampler(toy_keys(12), {2, 2, 3, 5});
  const auto good = sampler.state();
  auto broken = good;
  broken.order.pop_back();
  expect([&] { sampler.restore(broken); }, "expected an order of 12 observations");
  broken = good;
  std::swap(broken.order[0], broken.order[11]);  // moves members across keys
  expect([&] { sampler.restore(broken); }, "is not a permutation");
  broken = good;
  broken.groups.pop_back();
  expect([&] { sampler.restore(broken); }, "do not cover every observation");
  broken = good;
  broken.groups[0].end = broken.groups[0].begin + 9;
  expect([&] { sampler.restore(broken); }, "group 0");
  broken = good;
  broken.cursor = 99;
  expect([&] { sampler.restore(broken); }, "cursor 99");
  broken = good;
  broken.groups[1].key = 77;
  expect([&] { sampler.restore(broken); }, "does not lie inside one key's block");
  sampler.restore(good);
  mlvae::GroupedBatch batch;
  CHECK(sampler.next(batch));

  bad_inputs_tried() += tried;
  MESSAGE("public API bad inputs tried: ", tried);
}

TEST_CASE("bad input: total count") {
  // Runs last in this file (doctest keeps file order within a file when not shuffled).
  MESSAGE("bad inputs tried by test_bad_input.cpp: ", bad_inputs_tried());
  CHECK(bad_inputs_tried() >= 0);
}
