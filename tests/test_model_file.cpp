// tests/test_model_file.cpp — the inference model file (model/model_file.hpp, docs/model_file.md):
// CRC-32 check values, the documented byte layout, exact round trips (float and double, path and
// memory, ready-made and custom models), and a clear IoError for every bad, truncated, corrupted
// or mismatched file, with the model left unchanged.
#include <doctest/doctest.h>

#include "support.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include "mlvae/mlvae.hpp"

namespace {

using mlvae::IoError;
using mlvae_test::contains;

template <typename T>
mlvae::MlpMLVAE<T> small_mlp(mlvae::Index hidden = 8) {
  auto model = mlvae::make_mlp_mlvae<T>(12, hidden, 3, 2);
  mlvae::Rng rng(5);
  model.initialize(rng);
  return model;
}

std::uint64_t read_le(const std::string& bytes, std::size_t at, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i)
    v |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes[at + static_cast<std::size_t>(i)])) << (8 * i);
  return v;
}

void write_le(std::string& bytes, std::size_t at, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) bytes[at + static_cast<std::size_t>(i)] = static_cast<char>((v >> (8 * i)) & 0xFF);
}

// Recomputes the trailing CRC-32 after a deliberate edit, so the edit itself is what gets reported.
void fix_checksum(std::string& bytes) {
  write_le(bytes, bytes.size() - 4, mlvae::crc32(bytes.data(), bytes.size() - 4), 4);
}

template <typename Model>
std::string load_error(const std::string& bytes, Model& model) {
  try {
    mlvae::load_model_file(bytes.data(), bytes.size(), model, "test.mlvae");
  } catch (const IoError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("model file: crc32 gives the standard check value and can be fed in pieces") {
  const std::string s = "123456789";
  CHECK(mlvae::crc32(s.data(), s.size()) == 0xCBF43926u);
  CHECK(mlvae::crc32(s.data(), 0) == 0u);
  const std::uint32_t first = mlvae::crc32_update(0, s.data(), 4);
  CHECK(mlvae::crc32_update(first, s.data() + 4, 5) == 0xCBF43926u);
}

TEST_CASE("model file: the byte layout is the documented one") {
  const auto model = small_mlp<float>();
  const std::string bytes = mlvae::model_file_bytes(model);
  CHECK(bytes.substr(0, 8) == "MLVAEMDL");
  CHECK(read_le(bytes, 8, 4) == 1);              // version
  CHECK(read_le(bytes, 12, 8) == bytes.size());  // file size
  CHECK(read_le(bytes, 20, 4) == 4);             // scalar size: float
  CHECK(read_le(bytes, 24, 4) == 5);             // model kind, length-prefixed
  CHECK(bytes.substr(28, 5) == "MLVAE");
  CHECK(read_le(bytes, 33, 4) == 3);
  CHECK(bytes.substr(37, 3) == "mlp");
  CHECK(read_le(bytes, 40, 4) == 4);  // architecture sizes: input, hidden, style, content
  CHECK(read_le(bytes, 44, 8) == 12);
  CHECK(read_le(bytes, 52, 8) == 8);
  CHECK(read_le(bytes, 60, 8) == 3);
  CHECK(read_le(bytes, 68, 8) == 2);
  const std::string description = model.describe();
  CHECK(read_le(bytes, 76, 4) == description.size());
  CHECK(bytes.substr(80, description.size()) == description);
  std::size_t at = 80 + description.size();
  CHECK(read_le(bytes, at, 4) == 2);  // latent sizes: style, content
  CHECK(read_le(bytes, at + 4, 8) == 3);
  CHECK(read_le(bytes, at + 12, 8) == 2);
  at += 20;
  const auto count = static_cast<std::size_t>(model.parameters().size());
  CHECK(read_le(bytes, at, 8) == count);
  at += 8;
  const auto first_bits = static_cast<std::uint32_t>(read_le(bytes, at, 4));
  float first = 0;
  std::memcpy(&first, &first_bits, 4);
  CHECK(first == model.parameters().values[0]);
  CHECK(at + 4 * count + 4 == bytes.size());
  CHECK(read_le(bytes, bytes.size() - 4, 4) == mlvae::crc32(bytes.data(), bytes.size() - 4));
}

TEST_CASE("model file: float and double models round-trip exactly through a path and memory") {
  mlvae_test::TempDir dir;
  const auto model = small_mlp<float>();
  const std::string path = dir.file("model.mlvae");
  mlvae::export_model(path, model);
  const mlvae::ModelFileInfo info = mlvae::read_model_file_info(path);
  CHECK(info.version == mlvae::model_file_version);
  CHECK(info.scalar_size == 4);
  CHECK(info.model_kind == "MLVAE");
  CHECK(info.architecture_name == "mlp");
  CHECK(info.architecture_sizes == std::vector<std::int64_t>{12, 8, 3, 2});
  CHECK(info.latent_sizes == std::vector<std::int64_t>{3, 2});
  CHECK(info.description == model.describe());
  CHECK(info.parameter_count == model.parameters().size());

  auto loaded = mlvae::make_mlp_mlvae<float>(12, 8, 3, 2);
  mlvae::load_model_file(path, loaded);
  CHECK(loaded.parameters().values == model.parameters().values);
  mlvae::export_model(path, small_mlp<float>(5));  // replaces the file; no temporary left behind
  CHECK(mlvae::read_model_file_info(path).architecture_sizes == std::vector<std::int64_t>{12, 5, 3, 2});
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
  CHECK_THROWS_WITH_AS(mlvae::export_model(dir.file("missing/model.mlvae"), model), contains("cannot open"), IoError);

  const auto model_d = small_mlp<double>();
  const std::string bytes_d = mlvae::model_file_bytes(model_d);
  CHECK(mlvae::read_model_file_info(bytes_d.data(), bytes_d.size()).scalar_size == 8);
  auto loaded_d = mlvae::make_mlp_mlvae<double>(12, 8, 3, 2);
  mlvae::load_model_file(bytes_d.data(), bytes_d.size(), loaded_d);
  CHECK(loaded_d.parameters().values == model_d.parameters().values);
}

TEST_CASE("model file: with_model_file rebuilds the named architecture and encodes as the original") {
  auto model = small_mlp<float>();
  const mlvae::Matrix<float> x = mlvae_test::toy_data<float>(7);
  mlvae::Matrix<float> sm, sl, cm, cl;
  model.encode(x, sm, sl, cm, cl);
  const std::string bytes = mlvae::model_file_bytes(model);
  int calls = 0;
  mlvae::with_model_file<float>(bytes.data(), bytes.size(), [&](auto& loaded) {
    ++calls;
    mlvae::Matrix<float> sm2, sl2, cm2, cl2;
    loaded.encode(x, sm2, sl2, cm2, cl2);
    CHECK(loaded.describe() == model.describe());
    CHECK(sm2 == sm);
    CHECK(sl2 == sl);
    CHECK(cm2 == cm);
    CHECK(cl2 == cl);
  });
  CHECK(calls == 1);

  // conv28 names itself too (its builder takes style and content sizes).
  auto conv = mlvae::make_conv28_mlvae<float>(2, 3);
  mlvae::Rng rng(2);
  conv.initialize(rng);
  const std::string conv_bytes = mlvae::model_file_bytes(conv);
  CHECK(mlvae::read_model_file_info(conv_bytes.data(), conv_bytes.size()).architecture_name == "conv28");
  mlvae::with_model_file<float>(conv_bytes.data(), conv_bytes.size(), [&](auto& loaded) {
    ++calls;
    CHECK(loaded.parameters().values == conv.parameters().values);
  });
  CHECK(calls == 2);
}

TEST_CASE("model file: a custom model round-trips through load_model_file but not with_model_file") {
  auto vae = mlvae::make_mlp_vae<float>(12, 6, 4);
  mlvae::Rng rng(4);
  vae.initialize(rng);
  const std::string bytes = mlvae::model_file_bytes(vae);
  const auto info = mlvae::read_model_file_info(bytes.data(), bytes.size());
  CHECK(info.model_kind == "VAE");
  CHECK(info.architecture_name.empty());
  CHECK(info.latent_sizes == std::vector<std::int64_t>{4});
  auto loaded = mlvae::make_mlp_vae<float>(12, 6, 4);
  mlvae::load_model_file(bytes.data(), bytes.size(), loaded);
  CHECK(loaded.parameters().values == vae.parameters().values);
  CHECK_THROWS_WITH_AS(mlvae::with_model_file<float>(bytes.data(), bytes.size(), [](auto&) {}),
                       contains("it holds a custom VAE"), IoError);
  // An ML-VAE model refuses a VAE file.
  auto mlvae_model = small_mlp<float>();
  CHECK(load_error(bytes, mlvae_model) ==
        "model file 'test.mlvae': model kind differs: the file holds a VAE, this model is a MLVAE");
}

TEST_CASE("model file: bad truncated corrupted and mismatched files give clear errors and change nothing") {
  auto model = small_mlp<float>();
  const auto before = model.parameters().values;
  const std::string good = mlvae::model_file_bytes(small_mlp<float>());

  CHECK(load_error(std::string(), model) ==
        "model file 'test.mlvae': not an mlvae model file (it does not start with 'MLVAEMDL')");
  CHECK(load_error(std::string("P5\n28 28\n255\n"), model) ==
        "model file 'test.mlvae': not an mlvae model file (it does not start with 'MLVAEMDL')");
  CHECK(load_error(good.substr(0, 10), model) ==
        "model file 'test.mlvae': truncated: 10 bytes, a model file has at least 24");
  CHECK(load_error(good.substr(0, good.size() - 7), model) ==
        "model file 'test.mlvae': truncated: the header announces " + std::to_string(good.size()) + " bytes, found " +
            std::to_string(good.size() - 7));
  CHECK(load_error(good + "xyz", model) == "model file 'test.mlvae': trailing data: the header announces " +
                                               std::to_string(good.size()) + " bytes, found " +
                                               std::to_string(good.size() + 3));

  std::string flipped = good;
  flipped[good.size() / 2] = static_cast<char>(flipped[good.size() / 2] ^ 0x01);
  CHECK(load_error(flipped, model).find("checksum mismatch (stored 0x") != std::string::npos);
  CHECK(load_error(flipped, model).find("the file is corrupted") != std::string::npos);

  std::string version = good;
  write_le(version, 8, 2, 4);
  fix_checksum(version);
  CHECK(load_error(version, model) == "model file 'test.mlvae': layout version 2, this build reads version 1");

  std::string scalar = good;
  write_le(scalar, 20, 3, 4);
  fix_checksum(scalar);
  CHECK(load_error(scalar, model) == "model file 'test.mlvae': scalar size 3, expected 4 (float) or 8 (double)");

  std::string long_string = good;
  write_le(long_string, 24, 0xFFFFFFF0u, 4);  // the model kind's length
  fix_checksum(long_string);
  CHECK(load_error(long_string, model).find("model kind is 4294967280 bytes long, at most 1048576 expected") !=
        std::string::npos);

  std::string nan = good;
  const float bad = std::numeric_limits<float>::quiet_NaN();
  std::uint32_t bits = 0;
  std::memcpy(&bits, &bad, 4);
  write_le(nan, nan.size() - 8, bits, 4);  // the last parameter
  fix_checksum(nan);
  CHECK(load_error(nan, model) == "model file 'test.mlvae': the stored parameters are not all finite");

  auto wider = mlvae::make_mlp_mlvae<float>(12, 9, 3, 2);
  CHECK(load_error(good, wider).find("architecture differs (first difference at character 33)") != std::string::npos);
  auto as_double = mlvae::make_mlp_mlvae<double>(12, 8, 3, 2);
  CHECK(load_error(good, as_double) ==
        "model file 'test.mlvae': scalar type differs: the file holds float parameters, this model uses double");

  CHECK(model.parameters().values == before);  // every failed load left the model as it was

  CHECK_THROWS_WITH_AS(mlvae::read_model_file_info("/nonexistent/model.mlvae"),
                       "model file '/nonexistent/model.mlvae': cannot open it for reading", IoError);
  mlvae_test::TempDir dir;
  CHECK_THROWS_WITH_AS(mlvae::read_model_file_info(dir.path.string()), contains("read error"), IoError);
}

TEST_CASE("model file: a cereal checkpoint is recognised and a non-finite model is not exported") {
  mlvae_test::TempDir dir;
  auto model = small_mlp<float>();
  const std::string checkpoint = dir.file("model.bin");
  mlvae::save_model(checkpoint, model);
  CHECK_THROWS_WITH_AS(mlvae::read_model_file_info(checkpoint), contains("this is an mlvae checkpoint (cereal)"),
                       IoError);
  model.parameters().values[3] = std::numeric_limits<float>::infinity();
  const std::string path = dir.file("model.mlvae");
  CHECK_THROWS_AS(mlvae::export_model(path, model), mlvae::DivergenceError);
  CHECK_FALSE(std::filesystem::exists(path));
}

TEST_CASE("model file: every single-byte corruption and every truncation is caught or harmless") {
  const auto original = small_mlp<float>(4);
  const std::string good = mlvae::model_file_bytes(original);
  auto model = small_mlp<float>(4);
  const auto before = model.parameters().values;
  // Any flipped byte without a matching checksum, and any truncation: an IoError.
  for (std::size_t at = 0; at < good.size(); ++at) {
    std::string bad = good;
    bad[at] = static_cast<char>(bad[at] ^ 0x5A);
    CHECK_THROWS_AS(mlvae::load_model_file(bad.data(), bad.size(), model), IoError);
    CHECK_THROWS_AS(mlvae::load_model_file(good.data(), at, model), IoError);
  }
  CHECK(model.parameters().values == before);
  // The same edits with a recomputed checksum (a writer bug, or a forged file): the parser must
  // never read out of bounds; an edit of the header is refused, one of a parameter may load.
  int loaded = 0;
  for (std::size_t at = 0; at + 4 < good.size(); ++at) {
    std::string bad = good;
    bad[at] = static_cast<char>(bad[at] ^ 0x5A);
    fix_checksum(bad);
    auto target = small_mlp<float>(4);
    try {
      mlvae::load_model_file(bad.data(), bad.size(), target);
      ++loaded;
    } catch (const IoError&) {
      CHECK(target.parameters().values == before);
    }
  }
  const std::size_t header = good.size() - 4 - 4 * static_cast<std::size_t>(original.parameters().size());
  CHECK(loaded <= static_cast<int>(good.size() - header - 4));  // only parameter bytes can load
}
