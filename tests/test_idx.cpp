// tests/test_idx.cpp — IDX reader (plain and gzip, validation messages) and Fashion-MNIST loader.
#include <doctest/doctest.h>

#include "support.hpp"
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "mlvae/data/idx.hpp"

using mlvae::IdxArray;
using mlvae::read_idx;

namespace {

using mlvae_test::TempDir;
using mlvae_test::contains;

namespace fs = std::filesystem;

/// doctest::Contains from a std::string (doctest 2.4.9 only takes its own String).
/// A fresh directory under the system temp dir, removed on destruction.
/// The bytes of an IDX file: magic (0, 0, type, dims.size()), big-endian dims, payload.
std::vector<std::uint8_t> idx_bytes(const std::vector<std::uint32_t>& dims,
                                    const std::vector<std::uint8_t>& payload, std::uint8_t type = 0x08,
                                    std::uint8_t magic0 = 0, std::uint8_t magic1 = 0) {
  std::vector<std::uint8_t> out = {magic0, magic1, type, static_cast<std::uint8_t>(dims.size())};
  for (std::uint32_t d : dims)
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(d >> shift));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

std::vector<std::uint8_t> pattern(std::size_t n) {
  std::vector<std::uint8_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>((i * 37 + 11) % 256);
  return v;
}

void write_plain(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  if (!bytes.empty()) REQUIRE(std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size());
  REQUIRE(std::fclose(f) == 0);
}

void write_gzip(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  if (!bytes.empty()) REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

std::vector<std::uint8_t> read_all(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  REQUIRE(f != nullptr);
  std::vector<std::uint8_t> out;
  int c;
  while ((c = std::fgetc(f)) != EOF) out.push_back(static_cast<std::uint8_t>(c));
  std::fclose(f);
  return out;
}

bool fashion_mnist_available() {
  const std::string dir = mlvae::fashion_mnist_default_dir();
  return fs::exists(fs::path(dir) / "train-images-idx3-ubyte.gz") ||
         fs::exists(fs::path(dir) / "train-images-idx3-ubyte");
}

}  // namespace

TEST_CASE("idx: reads the first 100 Fashion-MNIST training images and labels") {
  // The test scripts install the data; a missing data set is a failure, not a skip.
  REQUIRE_MESSAGE(fashion_mnist_available(), "Fashion-MNIST not found in ", mlvae::fashion_mnist_default_dir(),
                  "; apt-get install dataset-fashion-mnist");
  const std::string dir = mlvae::fashion_mnist_default_dir();
  const IdxArray images = read_idx(dir + "/train-images-idx3-ubyte.gz", 100);
  const IdxArray labels = read_idx(dir + "/train-labels-idx1-ubyte.gz", 100);
  REQUIRE(images.dims == std::vector<std::uint32_t>{100, 28, 28});
  REQUIRE(labels.dims == std::vector<std::uint32_t>{100});
  CHECK(images.data.size() == 100u * 28u * 28u);
  CHECK(images.items() == 100u);
  CHECK(images.item_size() == 784u);
  for (std::uint8_t l : labels.data) CHECK(l <= 9);
  std::uint8_t lo = 255, hi = 0;
  for (std::uint8_t p : images.data) {
    lo = std::min(lo, p);
    hi = std::max(hi, p);
  }
  CHECK(lo == 0);
  CHECK(hi >= 200);

  const auto train = mlvae::load_fashion_mnist<float>("train", dir, 100);
  CHECK(train.height == 28);
  CHECK(train.width == 28);
  REQUIRE(train.images.rows() == 784);
  REQUIRE(train.images.cols() == 100);
  REQUIRE(train.labels.size() == 100u);
  CHECK(train.images.minCoeff() >= 0.0f);
  CHECK(train.images.maxCoeff() <= 1.0f);
  for (std::size_t i = 0; i < 100; ++i) CHECK(train.labels[i] == labels.data[i]);
  // Column j holds image j, row-major: pixel (row 14, col 10) of image 3.
  CHECK(train.images(14 * 28 + 10, 3) == doctest::Approx(images.data[3 * 784 + 14 * 28 + 10] / 255.0));

  const auto test = mlvae::load_fashion_mnist<double>("test", dir, 10);
  CHECK(test.images.cols() == 10);
  CHECK(test.labels.size() == 10u);
}

TEST_CASE("idx: round-trips small files - plain and gzipped - with and without a slice") {
  TempDir tmp;
  const std::vector<std::vector<std::uint32_t>> shapes = {{7}, {3, 5}, {3, 2, 4}, {2, 3, 1, 2}};
  for (const auto& dims : shapes) {
    std::size_t n = 1;
    for (auto d : dims) n *= d;
    const auto payload = pattern(n);
    const auto bytes = idx_bytes(dims, payload);
    const std::string plain = tmp.file("a.idx"), gz = tmp.file("a.idx.gz"), gz_no_ext = tmp.file("b.idx");
    write_plain(plain, bytes);
    write_gzip(gz, bytes);
    write_gzip(gz_no_ext, bytes);  // compression is detected by content, not by extension
    for (const std::string& path : {plain, gz, gz_no_ext}) {
      CAPTURE(path);
      const IdxArray a = read_idx(path);
      CHECK(a.dims == dims);
      CHECK(a.data == payload);
      const IdxArray first = read_idx(path, 2);
      CHECK(first.dims[0] == std::min<std::uint32_t>(2, dims[0]));
      const std::size_t keep = first.dims[0] * a.item_size();
      CHECK(first.data == std::vector<std::uint8_t>(payload.begin(), payload.begin() + static_cast<long>(keep)));
      CHECK(read_idx(path, 0).data.empty());
    }
  }
}

TEST_CASE("idx: rejects a wrong magic number") {
  TempDir tmp;
  const std::string path = tmp.file("bad_magic.idx");
  write_plain(path, idx_bytes({2}, {1, 2}, 0x08, 0x1f, 0x00));
  CHECK_THROWS_WITH_AS(read_idx(path), contains("expected magic bytes 0x00 0x00, found 0x1f 0x0"), mlvae::IoError);
  CHECK_THROWS_WITH_AS(read_idx(path), contains(path), mlvae::IoError);
  write_plain(path, {'h', 'e', 'l', 'l', 'o', '\n'});
  CHECK_THROWS_WITH_AS(read_idx(path), contains("not an IDX file"), mlvae::IoError);
}

TEST_CASE("idx: rejects an unsupported type code - naming the supported one") {
  TempDir tmp;
  const std::string path = tmp.file("float.idx");
  write_plain(path, idx_bytes({2}, {0, 0, 0, 0, 0, 0, 0, 0}, 0x0D));
  CHECK_THROWS_WITH_AS(read_idx(path), contains("unsupported type code 0xd"), mlvae::IoError);
  CHECK_THROWS_WITH_AS(read_idx(path), contains("only 0x08 (unsigned byte) is supported"), mlvae::IoError);
}

TEST_CASE("idx: rejects 0 or more than 4 dimensions") {
  TempDir tmp;
  const std::string path = tmp.file("dims.idx");
  write_plain(path, idx_bytes({}, {}));
  CHECK_THROWS_WITH_AS(read_idx(path), contains("expected 1 to 4 dimensions, found 0"), mlvae::IoError);
  write_plain(path, idx_bytes({1, 1, 1, 1, 1}, {9}));
  CHECK_THROWS_WITH_AS(read_idx(path), contains("expected 1 to 4 dimensions, found 5"), mlvae::IoError);
}

TEST_CASE("idx: reports truncated files with expected and found byte counts") {
  TempDir tmp;
  const auto full = idx_bytes({3, 2, 4}, pattern(24));  // 4 + 12 header bytes, 24 payload bytes
  const std::string path = tmp.file("short.idx");
  const std::string gz = tmp.file("short.idx.gz");
  for (std::size_t found : {0u, 1u, 8u, 23u}) {
    const std::vector<std::uint8_t> cut(full.begin(), full.begin() + static_cast<long>(16 + found));
    const std::string expected = "expected 24 bytes of payload, found " + std::to_string(found);
    write_plain(path, cut);
    CHECK_THROWS_WITH_AS(read_idx(path), contains(expected), mlvae::IoError);
    CHECK_THROWS_WITH_AS(read_idx(path), contains(path), mlvae::IoError);
    write_gzip(gz, cut);  // a complete gzip stream of a truncated IDX file
    CHECK_THROWS_WITH_AS(read_idx(gz), contains(expected), mlvae::IoError);
  }
  // With a slice, only the requested items must be present.
  write_plain(path, std::vector<std::uint8_t>(full.begin(), full.begin() + 16 + 8));
  CHECK(read_idx(path, 1).data.size() == 8u);
  CHECK_THROWS_WITH_AS(read_idx(path, 2), contains("expected 16 bytes of payload, found 8"), mlvae::IoError);

  write_plain(path, {0, 0});
  CHECK_THROWS_WITH_AS(read_idx(path), contains("expected a 4-byte header, found 2 bytes"), mlvae::IoError);
  write_plain(path, std::vector<std::uint8_t>(full.begin(), full.begin() + 10));
  CHECK_THROWS_WITH_AS(read_idx(path), contains("expected 12 bytes of dimension sizes, found 6"), mlvae::IoError);

  // A gzip stream cut in the middle: still an IoError naming the file.
  write_gzip(gz, idx_bytes({3, 2, 4}, pattern(24)));
  auto compressed = read_all(gz);
  compressed.resize(compressed.size() / 2);
  write_plain(gz, compressed);
  CHECK_THROWS_WITH_AS(read_idx(gz), contains(gz), mlvae::IoError);
}

TEST_CASE("idx: a missing file is an IoError naming the path") {
  TempDir tmp;
  const std::string path = tmp.file("does-not-exist.idx");
  CHECK_THROWS_WITH_AS(read_idx(path), contains(path + "' does not exist"), mlvae::IoError);
  CHECK_THROWS_AS(read_idx(tmp.path.string()), mlvae::IoError);  // a directory
}

TEST_CASE("idx: Fashion-MNIST loader validates split - files - shapes and counts") {
  TempDir tmp;
  const std::string dir = tmp.path.string();
  CHECK_THROWS_WITH_AS(mlvae::load_fashion_mnist<float>("validation", dir),
                       contains("split must be \"train\" or \"test\", found \"validation\""), mlvae::ArgumentError);
  CHECK_THROWS_WITH_AS(mlvae::load_fashion_mnist<float>("train", dir),
                       contains("train-images-idx3-ubyte[.gz]' not found in '" + dir), mlvae::IoError);
  CHECK_THROWS_WITH_AS(mlvae::load_fashion_mnist<float>("train", dir), contains("MLVAE_FASHION_MNIST_DIR"),
                       mlvae::IoError);
  // At the Debian location the message says which package to install.
  const std::string debian = mlvae::detail::fashion_mnist_missing_message(
      "/usr/share/datasets/fashion-mnist/", "train-images-idx3-ubyte");
  CHECK(debian.find("apt-get install dataset-fashion-mnist") != std::string::npos);
  CHECK(mlvae::detail::fashion_mnist_missing_message(dir, "x").find("apt-get") == std::string::npos);

  const std::string images = tmp.file("train-images-idx3-ubyte");  // plain files are found too
  const std::string labels = tmp.file("train-labels-idx1-ubyte.gz");
  write_gzip(images, idx_bytes({5, 2, 3}, pattern(30)));
  write_gzip(labels, idx_bytes({4}, {0, 1, 2, 3}));
  CHECK_THROWS_WITH_AS(mlvae::load_fashion_mnist<float>("train", dir),
                       contains("holds 5 images but label file"), mlvae::ShapeError);
  CHECK_THROWS_WITH_AS(mlvae::load_fashion_mnist<float>("train", dir), contains("holds 4 labels"),
                       mlvae::ShapeError);
  CHECK(mlvae::load_fashion_mnist<float>("train", dir, 3).images.cols() == 3);  // a slice of both agrees

  write_gzip(labels, idx_bytes({5}, {0, 1, 2, 3, 9}));
  const auto ok = mlvae::load_fashion_mnist<double>("train", dir);
  CHECK(ok.height == 2);
  CHECK(ok.width == 3);
  CHECK(ok.images.rows() == 6);
  CHECK(ok.labels == std::vector<int>{0, 1, 2, 3, 9});
  CHECK(ok.images(4, 1) == doctest::Approx(pattern(30)[6 + 4] / 255.0));

  write_gzip(labels, idx_bytes({5}, {0, 1, 2, 3, 10}));
  CHECK_THROWS_WITH_AS(mlvae::load_fashion_mnist<float>("train", dir), contains("expected labels 0..9, found 10"),
                       mlvae::IoError);
  write_gzip(labels, idx_bytes({5, 1}, {0, 1, 2, 3, 4}));
  CHECK_THROWS_WITH_AS(mlvae::load_fashion_mnist<float>("train", dir),
                       contains("expected 1 dimension (count), found 2"), mlvae::ShapeError);
  write_gzip(labels, idx_bytes({5}, {0, 1, 2, 3, 4}));
  write_gzip(images, idx_bytes({5, 6}, pattern(30)));
  CHECK_THROWS_WITH_AS(mlvae::load_fashion_mnist<float>("train", dir),
                       contains("expected 3 dimensions (count x height x width), found 2"), mlvae::ShapeError);
}

TEST_CASE("idx: Fashion-MNIST directory from MLVAE_FASHION_MNIST_DIR - and class names") {
  const char* old = std::getenv("MLVAE_FASHION_MNIST_DIR");
  const std::string saved = old ? old : "";
  ::setenv("MLVAE_FASHION_MNIST_DIR", "/some/where", 1);
  CHECK(mlvae::fashion_mnist_default_dir() == "/some/where");
  ::unsetenv("MLVAE_FASHION_MNIST_DIR");
  CHECK(mlvae::fashion_mnist_default_dir() == "/usr/share/datasets/fashion-mnist");
  if (old) ::setenv("MLVAE_FASHION_MNIST_DIR", saved.c_str(), 1);

  const auto names = mlvae::fashion_mnist_class_names();
  REQUIRE(names.size() == 10u);
  CHECK(names[0] == "T-shirt/top");
  CHECK(names[9] == "Ankle boot");
}
