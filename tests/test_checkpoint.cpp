// tests/test_checkpoint.cpp — cereal checkpoints: binary and JSON round trips of the whole training
// state, model-only files, clear errors on mismatched architecture / scalar type / version / options,
// atomic writes that keep the previous file on failure, and the divergence guard.
#include <doctest/doctest.h>

#include "support.hpp"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "mlvae/mlvae.hpp"

namespace {

using mlvae_test::TempDir;
using mlvae_test::toy_data;
using mlvae_test::toy_keys;
using mlvae_test::train_steps;
using mlvae_test::contains;
using mlvae_test::read_bytes;
using mlvae_test::write_bytes;

namespace fs = std::filesystem;
using mlvae::CheckpointFormat;

mlvae::TrainerOptions toy_options() {
  mlvae::TrainerOptions o;
  o.sampler = {3, 2, 5, 11};
  o.noise_seed = 5;
  o.adam.learning_rate = 1e-2;
  return o;
}

/// Everything a checkpoint restores, compared exactly.
template <typename Trainer>
void check_same_state(Trainer& a, Trainer& b) {
  CHECK(a.model().parameters().values == b.model().parameters().values);
  CHECK(a.optimizer().step_count() == b.optimizer().step_count());
  CHECK(a.optimizer().first_moment() == b.optimizer().first_moment());
  CHECK(a.optimizer().second_moment() == b.optimizer().second_moment());
  CHECK(a.optimizer().options().learning_rate == b.optimizer().options().learning_rate);
  CHECK(a.noise() == b.noise());
  CHECK(a.step_in_epoch() == b.step_in_epoch());
  CHECK(a.skipped_steps() == b.skipped_steps());
  const auto sa = a.sampler().state(), sb = b.sampler().state();
  CHECK(sa.rng_state == sb.rng_state);
  CHECK(sa.rng_has_cached_normal == sb.rng_has_cached_normal);
  CHECK(sa.order == sb.order);
  REQUIRE(sa.groups.size() == sb.groups.size());
  for (std::size_t g = 0; g < sa.groups.size(); ++g) {
    CHECK(sa.groups[g].begin == sb.groups[g].begin);
    CHECK(sa.groups[g].end == sb.groups[g].end);
    CHECK(sa.groups[g].key == sb.groups[g].key);
  }
  CHECK(sa.cursor == sb.cursor);
  CHECK(sa.epoch == sb.epoch);
  CHECK(sa.pending == sb.pending);
}

}  // namespace

TEST_CASE("checkpoint: a training checkpoint records the GEMM kernel chosen for each product") {
  TempDir tmp;
  mlvae::set_gemm_kernel(mlvae::GemmKernel::Eigen);  // a choice without timing (nothing measured in a test)
  // A float product large enough to go through the kernel choice (nn/gemm_select.hpp).
  const mlvae::Matrix<float> a = mlvae::Matrix<float>::Constant(128, 128, 0.5f);
  const mlvae::Matrix<float> b = mlvae::Matrix<float>::Constant(128, 128, 0.25f);
  mlvae::Matrix<float> c(128, 128);
  mlvae::Gemm<float> gemm;
  gemm.run(mlvae::Transpose::No, mlvae::Transpose::No, a, b, c, false);
  const std::vector<std::string> choices = mlvae::gemm_kernel_choices();
  REQUIRE(choices.size() == 1);
  CHECK(choices[0] == "NN 128x128x128: eigen");

  const auto data = toy_data<float>(40);
  auto model = mlvae::make_mlp_mlvae<float>(12, 7, 3, 2);
  mlvae::Rng init(1);
  model.initialize(init);
  mlvae::Trainer<decltype(model)> trainer(model, data, toy_keys(40), toy_options());
  train_steps(trainer, 2);
  for (const auto format : {CheckpointFormat::Binary, CheckpointFormat::Json}) {
    const std::string path = tmp.file(format == CheckpointFormat::Json ? "k.json" : "k.bin");
    mlvae::save_checkpoint(path, trainer, format);
    CHECK(mlvae::read_checkpoint_info(path).gemm_kernels == "NN 128x128x128: eigen\n");
    mlvae::Trainer<decltype(model)> resumed(model, data, toy_keys(40), toy_options());
    mlvae::load_checkpoint(path, resumed);  // the record does not stand in the way of loading
    CHECK(resumed.optimizer().step_count() == 2);
  }
  mlvae::reset_gemm_selection();  // back to the environment's choice
}

TEST_CASE("checkpoint: binary and JSON round trips restore the whole training state exactly") {
  TempDir tmp;
  const auto data = toy_data<double>(40);
  for (const auto format : {CheckpointFormat::Binary, CheckpointFormat::Json}) {
    CAPTURE(static_cast<int>(format));
    auto model = mlvae::make_mlp_mlvae<double>(12, 7, 3, 2);
    mlvae::Rng init(1);
    model.initialize(init);
    mlvae::Trainer<decltype(model)> trainer(model, data, toy_keys(40), toy_options());
    train_steps(trainer, 9);  // crosses an epoch boundary, ends mid-epoch
    trainer.noise().normal();  // leave a cached normal in the noise Rng
    trainer.set_skipped_steps(2);
    const std::string path = tmp.file(format == CheckpointFormat::Json ? "c.json" : "c.bin");
    mlvae::save_checkpoint(path, trainer, format);
    if (format == CheckpointFormat::Json) CHECK(read_bytes(path).find("\"architecture\"") != std::string::npos);

    const mlvae::CheckpointInfo info = mlvae::read_checkpoint_info(path);
    CHECK(info.version == mlvae::checkpoint_version);
    CHECK(info.kind == "training");
    CHECK(info.scalar_type == "double");
    CHECK(info.scalar_size == 8u);
    CHECK(info.model_kind == "MLVAE");
    CHECK(info.architecture == model.describe());
    CHECK(info.latent_sizes == std::vector<std::int64_t>{3, 2});
    CHECK(info.parameter_count == model.parameters().size());

    const mlvae::TrainerOptions stored = mlvae::read_checkpoint_options(path);
    CHECK(stored.sampler.max_group_size == 5);
    CHECK(stored.noise_seed == 5u);
    auto fresh_model = mlvae::make_mlp_mlvae<double>(12, 7, 3, 2);
    mlvae::Rng other(99);
    fresh_model.initialize(other);
    mlvae::Trainer<decltype(fresh_model)> fresh(fresh_model, data, toy_keys(40), stored);
    mlvae::load_checkpoint(path, fresh);
    check_same_state(trainer, fresh);
  }
}

TEST_CASE("checkpoint: float models and VAEs round trip in both formats and model-only files") {
  TempDir tmp;
  const auto data = toy_data<float>(30);
  for (const auto format : {CheckpointFormat::Binary, CheckpointFormat::Json}) {
    auto model = mlvae::make_mlp_mlvae<float>(12, 6, 2, 3);
    mlvae::Rng init(2);
    model.initialize(init);
    mlvae::Trainer<decltype(model)> trainer(model, data, toy_keys(30), toy_options());
    train_steps(trainer, 4);
    mlvae::save_checkpoint(tmp.file("f"), trainer, format);
    CHECK(mlvae::read_checkpoint_info(tmp.file("f")).scalar_type == "float");
    auto m2 = mlvae::make_mlp_mlvae<float>(12, 6, 2, 3);
    mlvae::Trainer<decltype(m2)> t2(m2, data, toy_keys(30), toy_options());
    mlvae::load_checkpoint(tmp.file("f"), t2);
    check_same_state(trainer, t2);

    // The model part of a training checkpoint loads into a bare model.
    auto m3 = mlvae::make_mlp_mlvae<float>(12, 6, 2, 3);
    mlvae::load_model(tmp.file("f"), m3);
    CHECK(m3.parameters().values == model.parameters().values);

    // Model-only files.
    mlvae::save_model(tmp.file("m"), model, format);
    CHECK(mlvae::read_checkpoint_info(tmp.file("m")).kind == "model");
    auto m4 = mlvae::make_mlp_mlvae<float>(12, 6, 2, 3);
    mlvae::load_model(tmp.file("m"), m4);
    CHECK(m4.parameters().values == model.parameters().values);
    // The loaded values are the ones the layers compute with (the store's buffer, not a copy beside it).
    mlvae::Matrix<float> s1, sv1, c1, cv1, s4, sv4, c4, cv4;
    model.encode(data, s1, sv1, c1, cv1);
    m4.encode(data, s4, sv4, c4, cv4);
    CHECK(s4 == s1);
    CHECK(c4 == c1);
    m3.encode(data, s4, sv4, c4, cv4);
    CHECK(s4 == s1);
    CHECK_THROWS_WITH_AS(mlvae::load_checkpoint(tmp.file("m"), t2), contains("expected a training checkpoint"),
                         mlvae::IoError);

    // VAE.
    const auto ddata = toy_data<double>(30);
    auto vae = mlvae::make_mlp_vae<double>(12, 5, 3);
    mlvae::Rng vinit(4);
    vae.initialize(vinit);
    mlvae::Trainer<decltype(vae)> vt(vae, ddata, toy_keys(30), toy_options());
    train_steps(vt, 5);
    mlvae::save_checkpoint(tmp.file("v"), vt, format);
    CHECK(mlvae::read_checkpoint_info(tmp.file("v")).model_kind == "VAE");
    CHECK(mlvae::read_checkpoint_info(tmp.file("v")).latent_sizes == std::vector<std::int64_t>{3});
    auto vae2 = mlvae::make_mlp_vae<double>(12, 5, 3);
    mlvae::Trainer<decltype(vae2)> vt2(vae2, ddata, toy_keys(30), toy_options());
    mlvae::load_checkpoint(tmp.file("v"), vt2);
    check_same_state(vt, vt2);
  }
}

TEST_CASE("checkpoint: cereal_model works inside a user's own cereal archive") {
  auto model = mlvae::make_mlp_mlvae<double>(12, 7, 3, 2);
  mlvae::Rng init(8);
  model.initialize(init);
  std::stringstream buffer;
  {
    cereal::PortableBinaryOutputArchive ar(buffer);
    ar(std::string("user header"), mlvae::cereal_model(model));
  }
  auto copy = mlvae::make_mlp_mlvae<double>(12, 7, 3, 2);
  {
    cereal::PortableBinaryInputArchive ar(buffer);
    std::string header;
    auto wrapped = mlvae::cereal_model(copy);
    ar(header, wrapped);
    CHECK(header == "user header");
  }
  CHECK(copy.parameters().values == model.parameters().values);
}

TEST_CASE("checkpoint: mismatched architecture - scalar type - version - kind - options are clear errors") {
  TempDir tmp;
  const auto data = toy_data<double>(40);
  auto model = mlvae::make_mlp_mlvae<double>(12, 7, 3, 2);
  mlvae::Rng init(1);
  model.initialize(init);
  mlvae::Trainer<decltype(model)> trainer(model, data, toy_keys(40), toy_options());
  train_steps(trainer, 3);
  const std::string bin = tmp.file("c.bin"), json = tmp.file("c.json");
  mlvae::save_checkpoint(bin, trainer);
  mlvae::save_checkpoint(json, trainer, CheckpointFormat::Json);

  for (const std::string& path : {bin, json}) {
    CAPTURE(path);
    // Architecture: another hidden size.
    auto wide = mlvae::make_mlp_mlvae<double>(12, 8, 3, 2);
    mlvae::Trainer<decltype(wide)> tw(wide, data, toy_keys(40), toy_options());
    const auto before = wide.parameters().values;
    CHECK_THROWS_WITH_AS(mlvae::load_checkpoint(path, tw), contains("architecture differs"), mlvae::IoError);
    CHECK_THROWS_WITH_AS(mlvae::load_checkpoint(path, tw), contains("Dense(12->7)"), mlvae::IoError);
    CHECK_THROWS_WITH_AS(mlvae::load_checkpoint(path, tw), contains(path), mlvae::IoError);
    CHECK(wide.parameters().values == before);
    CHECK_THROWS_WITH_AS(mlvae::load_model(path, wide), contains("architecture differs"), mlvae::IoError);

    // Scalar type: a double checkpoint into a float model.
    const auto fdata = toy_data<float>(40);
    auto fmodel = mlvae::make_mlp_mlvae<float>(12, 7, 3, 2);
    mlvae::Trainer<decltype(fmodel)> tf(fmodel, fdata, toy_keys(40), toy_options());
    CHECK_THROWS_WITH_AS(mlvae::load_checkpoint(path, tf),
                         contains("scalar type differs: the checkpoint holds 'double' (8 bytes), this model uses "
                                  "'float' (4 bytes)"),
                         mlvae::IoError);

    // Model kind: an MLVAE checkpoint into a VAE.
    auto vae = mlvae::make_mlp_vae<double>(12, 7, 3);
    CHECK_THROWS_WITH_AS(mlvae::load_model(path, vae), contains("model kind differs"), mlvae::IoError);

    // Sampler options and data.
    auto same = mlvae::make_mlp_mlvae<double>(12, 7, 3, 2);
    auto other_options = toy_options();
    other_options.sampler.groups_per_batch = 4;
    mlvae::Trainer<decltype(same)> ts(same, data, toy_keys(40), other_options);
    CHECK_THROWS_WITH_AS(mlvae::load_checkpoint(path, ts), contains("sampler options differ"), mlvae::IoError);
    const auto more = toy_data<double>(44);
    mlvae::Trainer<decltype(same)> td(same, more, toy_keys(44), toy_options());
    CHECK_THROWS_WITH_AS(mlvae::load_checkpoint(path, td),
                         contains("written for 40 observations, this trainer has 44"), mlvae::IoError);
  }

  // A float checkpoint into a double model.
  const auto fdata = toy_data<float>(40);
  auto fmodel = mlvae::make_mlp_mlvae<float>(12, 7, 3, 2);
  mlvae::save_model(tmp.file("f.bin"), fmodel);
  CHECK_THROWS_WITH_AS(mlvae::load_model(tmp.file("f.bin"), model),
                       contains("the checkpoint holds 'float' (4 bytes), this model uses 'double'"), mlvae::IoError);

  // Version: the uint32 after the endianness byte and the tag (8-byte length + 16 characters).
  std::string bytes = read_bytes(bin);
  REQUIRE(bytes.substr(9, 16) == "mlvae-checkpoint");
  bytes[25] = 7;
  write_bytes(tmp.file("v7.bin"), bytes);
  CHECK_THROWS_WITH_AS(mlvae::load_checkpoint(tmp.file("v7.bin"), trainer),
                       contains("unexpected checkpoint version 7 (this build reads 1 to 3)"), mlvae::IoError);
  std::string text = read_bytes(json);
  const auto at = text.find("\"version\": 3");
  REQUIRE(at != std::string::npos);
  text.replace(at, 12, "\"version\": 4");
  write_bytes(tmp.file("v4.json"), text);
  CHECK_THROWS_WITH_AS(mlvae::read_checkpoint_info(tmp.file("v4.json")),
                       contains("unexpected checkpoint version 4 (this build reads 1 to 3)"), mlvae::IoError);

  // Not a checkpoint at all, missing, empty, a directory.
  write_bytes(tmp.file("junk"), "hello, I am not a checkpoint");
  CHECK_THROWS_WITH_AS(mlvae::load_checkpoint(tmp.file("junk"), trainer), contains("not an mlvae checkpoint"),
                       mlvae::IoError);
  write_bytes(tmp.file("empty"), "");
  CHECK_THROWS_WITH_AS(mlvae::load_checkpoint(tmp.file("empty"), trainer), contains("empty"), mlvae::IoError);
  CHECK_THROWS_WITH_AS(mlvae::load_checkpoint(tmp.file("missing"), trainer), contains("does not exist"),
                       mlvae::IoError);
  CHECK_THROWS_AS(mlvae::load_checkpoint(tmp.path.string(), trainer), mlvae::IoError);
}

TEST_CASE("checkpoint: a failed save keeps the previous checkpoint and non-finite state is never written") {
  TempDir tmp;
  const auto data = toy_data<double>(40);
  auto model = mlvae::make_mlp_mlvae<double>(12, 7, 3, 2);
  mlvae::Rng init(1);
  model.initialize(init);
  mlvae::Trainer<decltype(model)> trainer(model, data, toy_keys(40), toy_options());
  train_steps(trainer, 2);
  const std::string path = tmp.file("c.bin");
  mlvae::save_checkpoint(path, trainer);
  const std::string good = read_bytes(path);

  // Non-finite parameters: DivergenceError, the file is untouched, no temporary left behind.
  const double saved = model.parameters().values[3];
  model.parameters().values[3] = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH_AS(mlvae::save_checkpoint(path, trainer), contains("not all finite"), mlvae::DivergenceError);
  CHECK_THROWS_AS(mlvae::save_model(path, model, CheckpointFormat::Json), mlvae::DivergenceError);
  model.parameters().values[3] = saved;
  CHECK(read_bytes(path) == good);

  // The target is a directory: the rename fails, the temporary file is removed.
  fs::create_directories(tmp.file("dir"));
  fs::create_directories(tmp.file("dir/inner"));
  CHECK_THROWS_WITH_AS(mlvae::save_checkpoint(tmp.file("dir"), trainer), contains("previous file is unchanged"),
                       mlvae::IoError);
  // A directory that does not exist.
  CHECK_THROWS_WITH_AS(mlvae::save_checkpoint(tmp.file("gone/c.bin"), trainer), contains("temporary file"),
                       mlvae::IoError);
  int entries = 0;
  for (const auto& e : fs::directory_iterator(tmp.path)) {
    CHECK(e.path().filename().string().find(".tmp-") == std::string::npos);
    ++entries;
  }
  CHECK(entries == 2);  // c.bin and dir
  CHECK(read_bytes(path) == good);

  // Overwriting works and is loadable.
  train_steps(trainer, 1);
  mlvae::save_checkpoint(path, trainer);
  CHECK(read_bytes(path) != good);
  mlvae::load_checkpoint(path, trainer);
}

TEST_CASE("divergence: a NaN parameter stops the step with DivergenceError and SkipStep skips and counts") {
  const auto data = toy_data<double>(40);
  auto model = mlvae::make_mlp_mlvae<double>(12, 7, 3, 2);
  mlvae::Rng init(1);
  model.initialize(init);
  mlvae::Trainer<decltype(model)> trainer(model, data, toy_keys(40), toy_options());
  train_steps(trainer, 2);
  model.parameters().values[0] = std::numeric_limits<double>::quiet_NaN();
  const mlvae::Vector<double> before = model.parameters().values;
  const auto m_before = trainer.optimizer().first_moment();
  const long long steps = trainer.optimizer().step_count();
  mlvae::StepReport report;
  CHECK_THROWS_WITH_AS(trainer.step(report), contains("the loss is not finite"), mlvae::DivergenceError);
  // Unchanged (bitwise: the NaN stays in place, every other value is equal).
  CHECK(std::isnan(model.parameters().values[0]));
  CHECK(model.parameters().values.tail(before.size() - 1) == before.tail(before.size() - 1));
  CHECK(trainer.optimizer().first_moment() == m_before);
  CHECK(trainer.optimizer().step_count() == steps);

  // Skip policy: each step is skipped and counted; parameters and Adam stay as they were.
  trainer.set_divergence_policy(mlvae::DivergencePolicy::SkipStep);
  const long long skipped = trainer.skipped_steps();
  REQUIRE(trainer.step(report));
  CHECK(report.skipped);
  REQUIRE(trainer.step(report));
  CHECK(trainer.skipped_steps() == skipped + 2);
  CHECK(trainer.optimizer().step_count() == steps);
  CHECK(model.parameters().values.tail(before.size() - 1) == before.tail(before.size() - 1));

  // Back to finite: steps go through again, nothing more skipped.
  model.parameters().values[0] = 0.01;
  train_steps(trainer, 2);
  CHECK(trainer.skipped_steps() == skipped + 2);
  CHECK(trainer.optimizer().step_count() == steps + 2);

  // A non-finite gradient given to Adam directly: DivergenceError, values untouched.
  mlvae::Adam<double> adam(3);
  mlvae::Vector<double> values = mlvae::Vector<double>::Ones(3), grad(3);
  grad << 1, std::numeric_limits<double>::infinity(), 0;
  CHECK_THROWS_WITH_AS(adam.step(values, grad), contains("the gradient is not finite"), mlvae::DivergenceError);
  CHECK(values == mlvae::Vector<double>::Ones(3));
  CHECK(adam.step_count() == 0);
}

TEST_CASE("checkpoint: a single bit flip anywhere in the payload is caught by the CRC-32") {
  TempDir tmp;
  const auto data = toy_data<double>(40);
  auto model = mlvae::make_mlp_mlvae<double>(12, 7, 3, 2);
  mlvae::Rng init(1);
  model.initialize(init);
  mlvae::Trainer<decltype(model)> trainer(model, data, toy_keys(40), toy_options());
  train_steps(trainer, 3);
  const std::string bin = tmp.file("c.bin"), json = tmp.file("c.json"), bad = tmp.file("bad");
  mlvae::save_checkpoint(bin, trainer);
  mlvae::save_checkpoint(json, trainer, CheckpointFormat::Json);
  auto model2 = mlvae::make_mlp_mlvae<double>(12, 7, 3, 2);
  mlvae::Trainer<decltype(model2)> target(model2, data, toy_keys(40), toy_options());
  const auto untouched = model2.parameters().values;

  // Binary: flip the lowest bit of a parameter's lowest mantissa byte — the loaded value would be
  // finite and plausible, so only the checksum can tell. Parameters start after the header.
  const std::string good = read_bytes(bin);
  const std::string arch = model.describe();
  const std::size_t arch_at = good.find(arch);
  REQUIRE(arch_at != std::string::npos);
  for (std::size_t offset : {std::size_t{200}, std::size_t{1000}, good.size() / 2}) {
    std::string bytes = good;
    bytes[arch_at + arch.size() + offset] ^= 1;
    write_bytes(bad, bytes);
    CHECK_THROWS_WITH_AS(mlvae::load_checkpoint(bad, target), contains("CRC-32"), mlvae::IoError);
    CHECK_THROWS_WITH_AS(mlvae::load_model(bad, model2), contains("corrupted or truncated checkpoint"),
                         mlvae::IoError);
  }
  CHECK(model2.parameters().values == untouched);

  // JSON: change one digit of a stored parameter (still valid JSON, still finite).
  std::string text = read_bytes(json);
  const std::size_t params = text.find("\"parameters\"");
  REQUIRE(params != std::string::npos);
  std::size_t digit = text.find_first_of("123456789", params + 40);
  REQUIRE(digit != std::string::npos);
  text[digit] = text[digit] == '9' ? '8' : static_cast<char>(text[digit] + 1);
  write_bytes(bad, text);
  CHECK_THROWS_WITH_AS(mlvae::load_checkpoint(bad, target), contains("CRC-32 of the JSON text"), mlvae::IoError);
  CHECK(model2.parameters().values == untouched);

  // The unchanged files load.
  mlvae::load_checkpoint(bin, target);
  mlvae::load_checkpoint(json, target);
  CHECK(model2.parameters().values == model.parameters().values);
}

TEST_CASE("checkpoint: truncated JSON and random bytes are reported in words") {
  TempDir tmp;
  const auto data = toy_data<double>(40);
  auto model = mlvae::make_mlp_mlvae<double>(12, 7, 3, 2);
  mlvae::Rng init(1);
  model.initialize(init);
  mlvae::Trainer<decltype(model)> trainer(model, data, toy_keys(40), toy_options());
  mlvae::save_checkpoint(tmp.file("c.json"), trainer, CheckpointFormat::Json);
  const std::string text = read_bytes(tmp.file("c.json"));
  write_bytes(tmp.file("cut.json"), text.substr(0, text.size() / 2));
  CHECK_THROWS_WITH_AS(mlvae::load_checkpoint(tmp.file("cut.json"), trainer),
                       contains("truncated JSON at byte " + std::to_string(text.size() / 2)), mlvae::IoError);
  write_bytes(tmp.file("bad.json"), "{\"format\": \"mlvae-checkpoint\", \"version\": 2,, }");
  CHECK_THROWS_WITH_AS(mlvae::load_checkpoint(tmp.file("bad.json"), trainer), contains("invalid JSON at byte 44"),
                       mlvae::IoError);
  write_bytes(tmp.file("other.json"), "{\"name\": \"a JSON file of something else\"}");
  CHECK_THROWS_WITH_AS(mlvae::read_checkpoint_info(tmp.file("other.json")), contains("not an mlvae checkpoint"),
                       mlvae::IoError);
  write_bytes(tmp.file("array.json"), "[1, 2, 3]");
  CHECK_THROWS_WITH_AS(mlvae::read_checkpoint_options(tmp.file("array.json")), contains("not an mlvae checkpoint"),
                       mlvae::IoError);

  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 20; ++trial) {
    std::string junk(64 + rng() % 4096, '\0');
    for (char& c : junk) c = static_cast<char>(rng() & 0xff);
    if (junk[0] == '{' || junk[0] == ' ') junk[0] = 'x';
    write_bytes(tmp.file("random"), junk);
    CHECK_THROWS_WITH_AS(mlvae::load_checkpoint(tmp.file("random"), trainer), contains("not an mlvae checkpoint"),
                         mlvae::IoError);
  }
  // A binary file cut inside its header.
  mlvae::save_checkpoint(tmp.file("c.bin"), trainer);
  write_bytes(tmp.file("head"), read_bytes(tmp.file("c.bin")).substr(0, 20));
  CHECK_THROWS_WITH_AS(mlvae::load_checkpoint(tmp.file("head"), trainer), contains("truncated checkpoint"),
                       mlvae::IoError);
}

TEST_CASE("checkpoint: stale temporaries of a killed save are removed and nothing else is") {
  TempDir tmp;
  const auto data = toy_data<double>(40);
  auto model = mlvae::make_mlp_mlvae<double>(12, 7, 3, 2);
  mlvae::Rng init(1);
  model.initialize(init);
  mlvae::Trainer<decltype(model)> trainer(model, data, toy_keys(40), toy_options());
  const std::string live = "c.bin.tmp-" + std::to_string(::getppid()) + "-17";  // a running process's
  const std::vector<std::string> stale{"c.bin.tmp-3735928559-2837465", "c.bin.tmp-4000000000-1"};
  const std::vector<std::string> kept{live, "c.bin.tmp-abc", "c.bin.tmp-12", "d.bin.tmp-3735928559-1",
                                      "c.bin.tmp-3735928559-1.keep", "c.bin.other"};
  for (const auto& name : stale) write_bytes(tmp.file(name), "partial");
  for (const auto& name : kept) write_bytes(tmp.file(name), "someone else's");
  mlvae::save_checkpoint(tmp.file("c.bin"), trainer);
  for (const auto& name : stale) CHECK_MESSAGE(!fs::exists(tmp.file(name)), name);
  for (const auto& name : kept) CHECK_MESSAGE(read_bytes(tmp.file(name)) == "someone else's", name);
  CHECK(fs::exists(tmp.file("c.bin")));
  // The temporaries of this process carry its pid and never outlive a save.
  int temporaries = 0;
  for (const auto& e : fs::directory_iterator(tmp.path))
    if (e.path().filename().string().rfind("c.bin.tmp-" + std::to_string(::getpid()) + "-", 0) == 0) ++temporaries;
  CHECK(temporaries == 0);
}

TEST_CASE("checkpoint: each part is a named and versioned block - another name or a newer version is refused by name") {
  TempDir tmp;
  const auto data = toy_data<double>(40);
  auto model = mlvae::make_mlp_mlvae<double>(12, 7, 3, 2);
  mlvae::Rng init(1);
  model.initialize(init);
  mlvae::Trainer<decltype(model)> trainer(model, data, toy_keys(40), toy_options());
  train_steps(trainer, 3);
  mlvae::save_checkpoint(tmp.file("c.json"), trainer, CheckpointFormat::Json);
  const std::string text = read_bytes(tmp.file("c.json"));
  for (const char* block : {"model", "parameters", "trainer_options", "adam", "noise_rng", "progress",
                            "grouped_sampler"}) {
    CAPTURE(block);
    CHECK(text.find("\"" + std::string(block) + "\": {") != std::string::npos);
    CHECK(text.find("\"block\": \"" + std::string(block) + "\"") != std::string::npos);
  }

  // Binary: a block is its name (8-byte length + characters), a uint32 version, then its fields. Edit one and
  // seal the file again with its CRC-32, so that only the block check can tell.
  mlvae::save_checkpoint(tmp.file("c.bin"), trainer);
  const std::string good = read_bytes(tmp.file("c.bin"));
  const auto sealed = [](std::string bytes) {
    bytes.resize(bytes.size() - 4);
    const std::uint32_t crc = mlvae::crc32(bytes.data(), bytes.size());
    for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<char>((crc >> (8 * i)) & 0xffu));
    return bytes;
  };
  auto model2 = mlvae::make_mlp_mlvae<double>(12, 7, 3, 2);
  mlvae::Trainer<decltype(model2)> target(model2, data, toy_keys(40), toy_options());
  const auto untouched = model2.parameters().values;
  std::string bytes = good;
  const std::size_t noise = bytes.find("noise_rng");
  REQUIRE(noise != std::string::npos);
  REQUIRE(bytes[noise + 9] == 1);  // the block's version, little-endian
  bytes[noise + 9] = 9;
  write_bytes(tmp.file("newer.bin"), sealed(bytes));
  CHECK_THROWS_WITH_AS(mlvae::load_checkpoint(tmp.file("newer.bin"), target),
                       contains("block 'noise_rng' has version 9; this build reads versions 1 to 1"), mlvae::IoError);
  bytes = good;
  bytes.replace(bytes.find("progress"), 8, "progrexx");
  write_bytes(tmp.file("renamed.bin"), sealed(bytes));
  CHECK_THROWS_WITH_AS(mlvae::load_checkpoint(tmp.file("renamed.bin"), target),
                       contains("expected the block 'progress', found 'progrexx'"), mlvae::IoError);
  CHECK(model2.parameters().values == untouched);
  write_bytes(tmp.file("resealed.bin"), sealed(good));  // the same bytes: loads
  mlvae::load_checkpoint(tmp.file("resealed.bin"), target);
  CHECK(model2.parameters().values == model.parameters().values);
}
