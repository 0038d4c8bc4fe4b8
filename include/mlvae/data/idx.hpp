/// @file
/// mlvae/data/idx.hpp — reader for IDX files (the MNIST / Fashion-MNIST format), plain or gzip,
/// and loaders for Fashion-MNIST that return images as columns (784 x N, pixel/255 in [0, 1]).
/// Compression is detected from the content (zlib's gzread passes plain files through unchanged).
#pragma once

#include <zlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "mlvae/core/error.hpp"
#include "mlvae/core/types.hpp"

namespace mlvae {

/// "No limit" for the `max_items` arguments below.
inline constexpr std::size_t idx_all_items = std::numeric_limits<std::size_t>::max();

/// The contents of one IDX file: its dimensions and its unsigned-byte payload in file order
/// (row-major: the last dimension varies fastest).
struct IdxArray {
  std::vector<std::uint32_t> dims;  ///< sizes, first dimension first (items along dims[0])
  std::vector<std::uint8_t> data;   ///< product(dims) bytes

  /// Number of items along the first dimension.
  std::size_t items() const { return dims.empty() ? 0 : dims[0]; }
  /// Bytes per item: the product of all dimensions but the first.
  std::size_t item_size() const {
    std::size_t n = 1;
    for (std::size_t i = 1; i < dims.size(); ++i) n *= dims[i];
    return n;
  }
};

namespace detail {

struct GzFileCloser {
  void operator()(gzFile_s* f) const {
    if (f != nullptr) gzclose(f);
  }
};
using GzFilePtr = std::unique_ptr<gzFile_s, GzFileCloser>;

/// Reads up to `n` bytes; returns how many were read (fewer only at end of stream or on a
/// truncated gzip stream). Throws IoError on a real read/decompression error.
inline std::size_t gz_read_bytes(gzFile file, void* buffer, std::size_t n, const std::string& path) {
  auto* out = static_cast<unsigned char*>(buffer);
  std::size_t total = 0;
  while (total < n) {
    const std::size_t chunk = std::min<std::size_t>(n - total, 1u << 30);
    const int got = gzread(file, out + total, static_cast<unsigned>(chunk));
    if (got < 0) {
      int code = Z_OK;
      const char* message = gzerror(file, &code);
      if (code == Z_BUF_ERROR) break;  // truncated gzip stream: report as a short read
      throw IoError(concat("IDX file '", path, "': read error: ", message ? message : "unknown"));
    }
    if (got == 0) break;
    total += static_cast<std::size_t>(got);
  }
  return total;
}

inline std::uint32_t read_be32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

}  // namespace detail

/// Reads an IDX file (plain or gzip-compressed, detected from the content).
///
/// Reads at most `max_items` items along the first dimension (dims[0] of the result is then
/// min(file's dims[0], max_items)), so a small slice of a large file loads cheaply.
/// Only type code 0x08 (unsigned byte) is supported.
/// @throws IoError when the file is missing or unreadable, the magic bytes are not 0,0, the type
///         code is not 0x08, the number of dimensions is not 1..4, or the payload is truncated
///         (the message names the file, the expected and the found byte counts).
inline IdxArray read_idx(const std::string& path, std::size_t max_items = idx_all_items) {
  std::error_code ec;
  require<IoError>(std::filesystem::is_regular_file(path, ec), "IDX file '", path,
                   "' does not exist or is not a regular file");
  detail::GzFilePtr file(gzopen(path.c_str(), "rb"));
  require<IoError>(file != nullptr, "IDX file '", path, "' could not be opened for reading");

  unsigned char magic[4];
  const std::size_t got_magic = detail::gz_read_bytes(file.get(), magic, 4, path);
  require<IoError>(got_magic == 4, "IDX file '", path, "': expected a 4-byte header, found ",
                   got_magic, " bytes");
  require<IoError>(magic[0] == 0 && magic[1] == 0, "IDX file '", path,
                   "': expected magic bytes 0x00 0x00, found 0x", std::hex, int{magic[0]}, " 0x",
                   int{magic[1]}, " (not an IDX file)");
  require<IoError>(magic[2] == 0x08, "IDX file '", path, "': unsupported type code 0x", std::hex,
                   int{magic[2]}, "; only 0x08 (unsigned byte) is supported");
  const int rank = magic[3];
  require<IoError>(rank >= 1 && rank <= 4, "IDX file '", path,
                   "': expected 1 to 4 dimensions, found ", rank);

  IdxArray result;
  unsigned char dim_bytes[16];
  const std::size_t want_dims = static_cast<std::size_t>(4 * rank);
  const std::size_t got_dims = detail::gz_read_bytes(file.get(), dim_bytes, want_dims, path);
  require<IoError>(got_dims == want_dims, "IDX file '", path, "': expected ", want_dims,
                   " bytes of dimension sizes, found ", got_dims);
  result.dims.resize(static_cast<std::size_t>(rank));
  for (int i = 0; i < rank; ++i) result.dims[static_cast<std::size_t>(i)] = detail::read_be32(dim_bytes + 4 * i);
  if (max_items < result.dims[0]) result.dims[0] = static_cast<std::uint32_t>(max_items);

  // Payload size in 64 bits; refuse anything that would not fit in memory.
  std::uint64_t payload = 1;
  for (std::uint32_t d : result.dims) {
    require<IoError>(d == 0 || payload <= (std::uint64_t{1} << 40) / d, "IDX file '", path,
                     "': dimensions too large (more than 2^40 bytes of payload)");
    payload *= d;
  }
  // Read in chunks, growing the buffer only as bytes arrive: a corrupted header announcing a
  // huge payload in a small file costs at most one chunk, then fails as truncated.
  const auto want = static_cast<std::size_t>(payload);
  const std::size_t chunk = std::size_t{1} << 24;
  result.data.reserve(std::min(want, std::size_t{1} << 26));
  std::size_t got = 0;
  while (got < want) {
    const std::size_t next = std::min(want, got + chunk);
    result.data.resize(next);
    const std::size_t n = detail::gz_read_bytes(file.get(), result.data.data() + got, next - got, path);
    got += n;
    if (got < next) break;
  }
  result.data.resize(got);
  require<IoError>(got == want, "IDX file '", path, "': expected ", payload,
                   " bytes of payload, found ", got, " (truncated file?)");
  return result;
}

/// The ten Fashion-MNIST class names, indexed by label.
inline std::vector<std::string> fashion_mnist_class_names() {
  return {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
          "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
}

/// Where the Debian package `dataset-fashion-mnist` installs the files.
inline constexpr const char* fashion_mnist_debian_dir = "/usr/share/datasets/fashion-mnist";

/// The Fashion-MNIST directory: $MLVAE_FASHION_MNIST_DIR if set and non-empty, else the
/// Debian location /usr/share/datasets/fashion-mnist.
inline std::string fashion_mnist_default_dir() {
  const char* env = std::getenv("MLVAE_FASHION_MNIST_DIR");
  if (env != nullptr && *env != '\0') return env;
  return fashion_mnist_debian_dir;
}

/// Images as columns plus their labels.
template <typename T>
struct LabelledImages {
  Matrix<T> images;         ///< (height*width) x N; each column one image, row-major pixels, values pixel/255
  std::vector<int> labels;  ///< N labels
  Index height = 0;         ///< image height in pixels
  Index width = 0;          ///< image width in pixels

  /// Number of images N (columns of `images`).
  Index size() const { return images.cols(); }
};

namespace detail {

/// `dir/stem.gz` if it exists, else `dir/stem` if that exists, else "" .
inline std::string find_dataset_file(const std::string& dir, const std::string& stem) {
  std::error_code ec;
  const std::filesystem::path base = std::filesystem::path(dir) / stem;
  const std::string gz = base.string() + ".gz";
  if (std::filesystem::is_regular_file(gz, ec)) return gz;
  if (std::filesystem::is_regular_file(base, ec)) return base.string();
  return {};
}

inline bool is_debian_fashion_mnist_dir(const std::string& dir) {
  std::string d = dir;
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  return d == fashion_mnist_debian_dir;
}

/// The message for a missing Fashion-MNIST file `stem` in `dir`; at the Debian location it says
/// which package to install.
inline std::string fashion_mnist_missing_message(const std::string& dir, const std::string& stem) {
  const char* hint = is_debian_fashion_mnist_dir(dir)
                         ? "; install the Debian package dataset-fashion-mnist "
                           "(apt-get install dataset-fashion-mnist) or set MLVAE_FASHION_MNIST_DIR"
                         : "; set MLVAE_FASHION_MNIST_DIR or pass the directory that holds the files";
  return concat("Fashion-MNIST file '", stem, "[.gz]' not found in '", dir, "'", hint);
}

}  // namespace detail

/// Loads a Fashion-MNIST split ("train": 60000 images, "test": 10000 images) from `dir`.
///
/// Looks for `{train,t10k}-{images-idx3,labels-idx1}-ubyte` with or without `.gz`.
/// Reads at most `max_items` images and labels (the first ones in file order).
/// @throws ArgumentError for a split other than "train"/"test".
/// @throws IoError when a file is missing (at the Debian path the message says to
///         `apt-get install dataset-fashion-mnist`), malformed, or holds a label outside 0..9.
/// @throws ShapeError when the image file is not 3-dimensional, the label file is not
///         1-dimensional, or the two hold different numbers of items.
template <typename T>
LabelledImages<T> load_fashion_mnist(const std::string& split,
                                     const std::string& dir = fashion_mnist_default_dir(),
                                     std::size_t max_items = idx_all_items) {
  require<ArgumentError>(split == "train" || split == "test",
                         "load_fashion_mnist: split must be \"train\" or \"test\", found \"", split,
                         "\"");
  const std::string prefix = split == "train" ? "train" : "t10k";
  const std::string image_stem = prefix + "-images-idx3-ubyte";
  const std::string label_stem = prefix + "-labels-idx1-ubyte";
  const std::string image_path = detail::find_dataset_file(dir, image_stem);
  const std::string label_path = detail::find_dataset_file(dir, label_stem);
  if (image_path.empty() || label_path.empty())
    throw IoError(detail::fashion_mnist_missing_message(dir, image_path.empty() ? image_stem : label_stem));

  const IdxArray images = read_idx(image_path, max_items);
  const IdxArray labels = read_idx(label_path, max_items);
  require<ShapeError>(images.dims.size() == 3, "Fashion-MNIST image file '", image_path,
                      "': expected 3 dimensions (count x height x width), found ",
                      images.dims.size());
  require<ShapeError>(labels.dims.size() == 1, "Fashion-MNIST label file '", label_path,
                      "': expected 1 dimension (count), found ", labels.dims.size());
  require<ShapeError>(images.dims[0] == labels.dims[0], "Fashion-MNIST: image file '", image_path,
                      "' holds ", images.dims[0], " images but label file '", label_path,
                      "' holds ", labels.dims[0], " labels");

  LabelledImages<T> out;
  out.height = static_cast<Index>(images.dims[1]);
  out.width = static_cast<Index>(images.dims[2]);
  const Index pixels = out.height * out.width;
  const Index count = static_cast<Index>(images.dims[0]);
  out.images.resize(pixels, count);
  const T inv255 = T(1) / T(255);
  const std::uint8_t* src = images.data.data();
  T* dst = out.images.data();  // column-major: column j is contiguous, same order as the file
  for (std::size_t i = 0, n = images.data.size(); i < n; ++i) dst[i] = T(src[i]) * inv255;

  out.labels.resize(labels.data.size());
  for (std::size_t i = 0; i < labels.data.size(); ++i) {
    const int label = labels.data[i];
    require<IoError>(label <= 9, "Fashion-MNIST label file '", label_path,
                     "': expected labels 0..9, found ", label, " at item ", i);
    out.labels[i] = label;
  }
  return out;
}

}  // namespace mlvae
