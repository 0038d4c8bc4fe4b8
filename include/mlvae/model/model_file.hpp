/// @file
/// mlvae/model/model_file.hpp — the inference model file: a trained model's architecture and
/// parameters in a compact, versioned, CRC-32-checked little-endian layout (docs/model_file.md),
/// written and read with the C++ standard library alone (no cereal, zlib or POSIX), from a path or
/// from memory. export_model() writes one; load_model_file() fills a model built in code;
/// with_model_file() builds the ready-made architecture the file names (mlp, conv28, conv64).
#pragma once

#include "mlvae/core/crc32.hpp"
#include "mlvae/core/error.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/model/architectures.hpp"
#include "mlvae/model/conv_architectures.hpp"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace mlvae {

/// The 8 bytes every model file starts with.
inline constexpr char model_file_magic[8] = {'M', 'L', 'V', 'A', 'E', 'M', 'D', 'L'};
/// The layout version this build writes and reads.
inline constexpr std::uint32_t model_file_version = 1;
/// Bytes of the fixed frame: magic (8), version (4), file size (8) and the trailing CRC-32 (4).
inline constexpr std::size_t model_file_frame_bytes = 24;

/// What a model file says about itself (read_model_file_info reads it without a model).
struct ModelFileInfo {
  std::uint32_t version = 0;      ///< layout version
  std::uint64_t file_size = 0;    ///< total bytes, the checksum included
  std::uint32_t scalar_size = 0;  ///< 4: float parameters, 8: double
  std::string model_kind;         ///< "MLVAE" or "VAE"
  /// Ready-made architecture that rebuilds the model ("mlp", "conv28", "conv64"), or "" for a model
  /// built in code (load it with load_model_file into the same type).
  std::string architecture_name;
  /// The builder's arguments: mlp {input, hidden, style, content}; conv28/conv64 {style, content}.
  std::vector<std::int64_t> architecture_sizes;
  std::string description;                 ///< the model's describe(): every layer and shape
  std::vector<std::int64_t> latent_sizes;  ///< MLVAE {style, content}; VAE {latent}
  std::int64_t parameter_count = 0;        ///< scalars stored
  std::uint32_t checksum = 0;              ///< the CRC-32 of every byte before it
};

/// Names the ready-made architecture of `Model` in a model file, and the builder arguments that
/// rebuild it. Specialised for MlpMLVAE, Conv28MLVAE and Conv64MLVAE; any other model is stored as
/// a custom one (name "") and is loaded into a model built in code.
template <typename Model>
struct ModelFileArchitecture {
  /// The architecture name ("" for a custom model).
  static const char* name() { return ""; }
  /// The builder's arguments (none for a custom model).
  static std::vector<std::int64_t> sizes(const Model&) { return {}; }
};

/// The paper's MLP ML-VAE: make_mlp_mlvae(input, hidden, style, content).
template <typename T>
struct ModelFileArchitecture<MlpMLVAE<T>> {
  /// "mlp".
  static const char* name() { return "mlp"; }
  /// {input, hidden, style, content}.
  static std::vector<std::int64_t> sizes(const MlpMLVAE<T>& m) {
    return {m.data_size(), m.trunk().output_size(), m.style_size(), m.content_size()};
  }
};

/// The conv28 ML-VAE: make_conv28_mlvae(style, content).
template <typename T>
struct ModelFileArchitecture<Conv28MLVAE<T>> {
  /// "conv28".
  static const char* name() { return "conv28"; }
  /// {style, content}.
  static std::vector<std::int64_t> sizes(const Conv28MLVAE<T>& m) { return {m.style_size(), m.content_size()}; }
};

/// The conv64 ML-VAE: make_conv64_mlvae(style, content).
template <typename T>
struct ModelFileArchitecture<Conv64MLVAE<T>> {
  /// "conv64".
  static const char* name() { return "conv64"; }
  /// {style, content}.
  static std::vector<std::int64_t> sizes(const Conv64MLVAE<T>& m) { return {m.style_size(), m.content_size()}; }
};

namespace detail {

template <typename Model, typename = void>
struct model_file_is_mlvae : std::false_type {};
template <typename Model>
struct model_file_is_mlvae<Model, std::void_t<decltype(std::declval<const Model&>().style_size()),
                                              decltype(std::declval<const Model&>().content_size())>>
    : std::true_type {};

/// The latent sizes a model file records: {style, content} for an ML-VAE, {latent} for a VAE.
template <typename Model>
std::vector<std::int64_t> model_file_latents(const Model& model) {
  if constexpr (model_file_is_mlvae<Model>::value)
    return {static_cast<std::int64_t>(model.style_size()), static_cast<std::int64_t>(model.content_size())};
  else
    return {static_cast<std::int64_t>(model.latent_size())};
}

/// Strings and size lists longer than this are refused before anything is allocated.
inline constexpr std::uint32_t model_file_max_string = 1u << 20;
inline constexpr std::uint32_t model_file_max_sizes = 16;

static_assert(std::numeric_limits<float>::is_iec559 && std::numeric_limits<double>::is_iec559,
              "the model file stores IEEE-754 binary32/binary64 parameters");

/// Appends fixed-width little-endian fields to a byte string.
class ModelFileWriter {
public:
  void bytes(const void* data, std::size_t n) { out_.append(static_cast<const char*>(data), n); }
  void u32(std::uint32_t v) { le(v, 4); }
  void u64(std::uint64_t v) { le(v, 8); }
  void i64(std::int64_t v) { le(static_cast<std::uint64_t>(v), 8); }
  void string(const std::string& s) {
    u32(static_cast<std::uint32_t>(s.size()));
    bytes(s.data(), s.size());
  }
  void i64_list(const std::vector<std::int64_t>& v) {
    u32(static_cast<std::uint32_t>(v.size()));
    for (const std::int64_t x : v) i64(x);
  }
  template <typename T>
  void scalars(const T* data, Index n) {
    out_.reserve(out_.size() + static_cast<std::size_t>(n) * sizeof(T));
    for (Index i = 0; i < n; ++i) {
      if constexpr (sizeof(T) == 4) {
        std::uint32_t bits;
        std::memcpy(&bits, &data[i], 4);
        u32(bits);
      } else {
        std::uint64_t bits;
        std::memcpy(&bits, &data[i], 8);
        u64(bits);
      }
    }
  }
  std::string& str() { return out_; }

private:
  void le(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xFFu));
  }
  std::string out_;
};

/// Reads fixed-width little-endian fields, refusing to read past the end (naming the field).
class ModelFileReader {
public:
  ModelFileReader(const unsigned char* data, std::size_t size, const std::string& source)
      : data_(data), size_(size), source_(source) {}
  std::uint64_t le(int n, const char* field) {
    need(static_cast<std::size_t>(n), field);
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= static_cast<std::uint64_t>(data_[pos_ + static_cast<std::size_t>(i)]) << (8 * i);
    pos_ += static_cast<std::size_t>(n);
    return v;
  }
  std::uint32_t u32(const char* field) { return static_cast<std::uint32_t>(le(4, field)); }
  std::uint64_t u64(const char* field) { return le(8, field); }
  std::int64_t i64(const char* field) { return static_cast<std::int64_t>(le(8, field)); }
  std::string string(const char* field) {
    const std::uint32_t n = u32(field);
    require<IoError>(n <= model_file_max_string, "model file '", source_, "': ", field, " is ", n,
                     " bytes long, at most ", model_file_max_string, " expected (corrupted file?)");
    need(n, field);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }
  std::vector<std::int64_t> i64_list(const char* field) {
    const std::uint32_t n = u32(field);
    require<IoError>(n <= model_file_max_sizes, "model file '", source_, "': ", n, " ", field, ", at most ",
                     model_file_max_sizes, " expected (corrupted file?)");
    std::vector<std::int64_t> v(n);
    for (auto& x : v) x = i64(field);
    return v;
  }
  void need(std::size_t n, const char* field) const {
    require<IoError>(n <= size_ - pos_, "model file '", source_, "': truncated: ", field, " at byte ", pos_,
                     " needs ", n, " bytes, ", size_ - pos_, " left");
  }
  std::size_t position() const { return pos_; }

private:
  const unsigned char* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
  const std::string& source_;
};

/// A parsed and verified model file: its header and where its parameters start.
struct ModelFileView {
  ModelFileInfo info;
  const unsigned char* parameters = nullptr;  ///< parameter_count · scalar_size bytes, little-endian
};

inline std::string latent_list(const std::vector<std::int64_t>& v) {
  std::string s = "{";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "}";
}

/// Checks the frame (magic, version, size, CRC-32) and reads the header. Every failure is an
/// IoError naming `source` and what is wrong.
inline ModelFileView parse_model_file(const void* data, std::size_t size, const std::string& source) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  const std::size_t magic_bytes = size < 8 ? size : 8;
  if (std::memcmp(bytes, model_file_magic, magic_bytes) != 0 || size == 0) {
    const std::string head(reinterpret_cast<const char*>(bytes), size < 64 ? size : 64);
    require<IoError>(head.find("mlvae-checkpoint") == std::string::npos, "model file '", source,
                     "': this is an mlvae checkpoint (cereal), not a model file: convert it with export_model");
    raise_error<IoError>(concat("model file '", source, "': not an mlvae model file (it does not start with 'MLVAEMDL')"));
  }
  require<IoError>(size >= model_file_frame_bytes, "model file '", source, "': truncated: ", size,
                   " bytes, a model file has at least ", model_file_frame_bytes);
  ModelFileReader r(bytes, size, source);
  ModelFileView view;
  ModelFileInfo& info = view.info;
  r.le(8, "magic");
  info.version = r.u32("version");
  require<IoError>(info.version == model_file_version, "model file '", source, "': layout version ", info.version,
                   ", this build reads version ", model_file_version);
  info.file_size = r.u64("file size");
  require<IoError>(info.file_size == size, "model file '", source, "': ",
                   info.file_size > size ? "truncated: " : "trailing data: ", "the header announces ",
                   info.file_size, " bytes, found ", size);
  info.checksum = static_cast<std::uint32_t>(bytes[size - 4]) | static_cast<std::uint32_t>(bytes[size - 3]) << 8 |
                  static_cast<std::uint32_t>(bytes[size - 2]) << 16 | static_cast<std::uint32_t>(bytes[size - 1]) << 24;
  const std::uint32_t computed = crc32(bytes, size - 4);
  require<IoError>(computed == info.checksum, "model file '", source, "': checksum mismatch (stored ",
                   "0x", hex32(info.checksum), ", computed 0x", hex32(computed), "): the file is corrupted");
  ModelFileReader body(bytes, size - 4, source);  // fields may not reach into the checksum
  body.le(8, "magic");
  body.le(4, "version");
  body.le(8, "file size");
  info.scalar_size = body.u32("scalar size");
  require<IoError>(info.scalar_size == 4 || info.scalar_size == 8, "model file '", source, "': scalar size ",
                   info.scalar_size, ", expected 4 (float) or 8 (double)");
  info.model_kind = body.string("model kind");
  info.architecture_name = body.string("architecture name");
  info.architecture_sizes = body.i64_list("architecture sizes");
  info.description = body.string("description");
  info.latent_sizes = body.i64_list("latent sizes");
  const std::uint64_t count = body.u64("parameter count");
  const std::size_t left = size - 4 - body.position();
  require<IoError>(count == left / info.scalar_size && left % info.scalar_size == 0, "model file '", source,
                   "': the header announces ", count, " parameters of ", info.scalar_size, " bytes, but ", left,
                   " bytes follow");
  info.parameter_count = static_cast<std::int64_t>(count);
  view.parameters = bytes + body.position();
  return view;
}

template <typename T>
const char* model_file_scalar_name() {
  return sizeof(T) == 4 ? "float" : "double";
}

/// Checks `view` against `model` and copies its parameters in; the model is unchanged on error.
template <typename Model>
void load_model_file_view(const ModelFileView& view, Model& model, const std::string& source) {
  using T = typename Model::Scalar;
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "mlvae scalars are float or double");
  const ModelFileInfo& info = view.info;
  require<IoError>(info.scalar_size == sizeof(T), "model file '", source, "': scalar type differs: the file holds ",
                   info.scalar_size == 4 ? "float" : "double", " parameters, this model uses ",
                   model_file_scalar_name<T>());
  const char* kind = model_file_is_mlvae<Model>::value ? "MLVAE" : "VAE";
  require<IoError>(info.model_kind == kind, "model file '", source, "': model kind differs: the file holds a ",
                   info.model_kind, ", this model is a ", kind);
  const std::string want = model.describe();
  if (info.description != want) {
    std::size_t at = 0;
    while (at < want.size() && at < info.description.size() && want[at] == info.description[at]) ++at;
    raise_error<IoError>(concat("model file '", source, "': architecture differs (first difference at character ",
                                at, "): the file holds ", info.description, ", this model is ", want));
  }
  const std::vector<std::int64_t> latents = model_file_latents(model);
  require<IoError>(info.latent_sizes == latents, "model file '", source, "': latent sizes differ: the file holds ",
                   latent_list(info.latent_sizes), ", this model has ", latent_list(latents));
  const std::string name = ModelFileArchitecture<Model>::name();
  const std::vector<std::int64_t> sizes = ModelFileArchitecture<Model>::sizes(model);
  require<IoError>(info.architecture_name == name && info.architecture_sizes == sizes, "model file '", source,
                   "': architecture differs: the file names '", info.architecture_name, "' ",
                   latent_list(info.architecture_sizes), ", this model is '", name, "' ", latent_list(sizes));
  require<IoError>(info.parameter_count == model.parameters().size(), "model file '", source,
                   "': parameter count differs: the file holds ", info.parameter_count, ", this model has ",
                   model.parameters().size());
  Vector<T> values(model.parameters().size());
  const unsigned char* p = view.parameters;
  for (Index i = 0; i < values.size(); ++i, p += sizeof(T)) {
    std::uint64_t bits = 0;
    for (std::size_t b = 0; b < sizeof(T); ++b) bits |= static_cast<std::uint64_t>(p[b]) << (8 * b);
    if constexpr (sizeof(T) == 4) {
      const auto bits32 = static_cast<std::uint32_t>(bits);
      std::memcpy(&values[i], &bits32, 4);
    } else {
      std::memcpy(&values[i], &bits, 8);
    }
  }
  require<IoError>(values.allFinite(), "model file '", source, "': the stored parameters are not all finite");
  model.parameters().values = values;
  model.parameters().zero_gradients();
}

/// Reads a whole file into memory with <cstdio> (refusing missing files and files over 4 GiB).
inline std::string read_model_file_bytes(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  require<IoError>(f != nullptr, "model file '", path, "': cannot open it for reading");
  std::string bytes;
  char buffer[1 << 16];
  std::size_t got = 0;
  bool too_large = false;
  while ((got = std::fread(buffer, 1, sizeof buffer, f)) > 0) {
    bytes.append(buffer, got);
    if (bytes.size() > (std::uint64_t{1} << 32)) {
      too_large = true;
      break;
    }
  }
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  require<IoError>(!failed, "model file '", path, "': read error (is it a directory?)");
  require<IoError>(!too_large, "model file '", path, "': larger than 4 GiB, not a model file");
  return bytes;
}

}  // namespace detail

/// The complete model file of `model` as bytes (docs/model_file.md): architecture name and
/// builder sizes (ModelFileArchitecture), describe(), latent sizes, parameters, CRC-32.
/// Reports DivergenceError when a parameter is not finite.
template <typename Model>
std::string model_file_bytes(const Model& model) {
  using T = typename Model::Scalar;
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "mlvae scalars are float or double");
  const auto& values = model.parameters().values;
  require<DivergenceError>(values.allFinite(), "export_model: refusing to export a model with non-finite parameters");
  detail::ModelFileWriter w;
  w.bytes(model_file_magic, 8);
  w.u32(model_file_version);
  w.u64(0);  // file size, patched below
  w.u32(static_cast<std::uint32_t>(sizeof(T)));
  w.string(detail::model_file_is_mlvae<Model>::value ? "MLVAE" : "VAE");
  w.string(ModelFileArchitecture<Model>::name());
  w.i64_list(ModelFileArchitecture<Model>::sizes(model));
  w.string(model.describe());
  w.i64_list(detail::model_file_latents(model));
  w.u64(static_cast<std::uint64_t>(values.size()));
  w.scalars(values.data(), values.size());
  std::string& out = w.str();
  const std::uint64_t total = out.size() + 4;
  for (int i = 0; i < 8; ++i) out[12 + static_cast<std::size_t>(i)] = static_cast<char>((total >> (8 * i)) & 0xFFu);
  const std::uint32_t crc = crc32(out.data(), out.size());
  w.u32(crc);
  return std::move(out);
}

/// Writes `model`'s model file to `path`: first to `path`.tmp, then renamed over `path`, so a
/// failed export leaves an existing file intact. Reports DivergenceError (nothing written) when a
/// parameter is not finite, IoError when the file cannot be written.
template <typename Model>
void export_model(const std::string& path, const Model& model) {
  const std::string bytes = model_file_bytes(model);
  const std::string temporary = path + ".tmp";
  std::FILE* f = std::fopen(temporary.c_str(), "wb");
  require<IoError>(f != nullptr, "export_model: cannot open '", temporary, "' for writing");
  bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  ok = (std::fclose(f) == 0) && ok;
  if (ok && std::rename(temporary.c_str(), path.c_str()) != 0) {
#ifdef _WIN32
    std::remove(path.c_str());  // Windows' rename does not replace an existing file
    ok = std::rename(temporary.c_str(), path.c_str()) == 0;
#else
    ok = false;
#endif
  }
  if (!ok) std::remove(temporary.c_str());
  require<IoError>(ok, "export_model: writing '", path, "' failed");
}

/// Reads and verifies the header of the model file in memory (`size` bytes at `data`) without a
/// model; `source` names it in error messages. Reports IoError on a bad magic, version, size or checksum.
inline ModelFileInfo read_model_file_info(const void* data, std::size_t size, const std::string& source = "<memory>") {
  return detail::parse_model_file(data, size, source).info;
}

/// Reads and verifies the header of the model file at `path` (see the in-memory overload).
inline ModelFileInfo read_model_file_info(const std::string& path) {
  const std::string bytes = detail::read_model_file_bytes(path);
  return read_model_file_info(bytes.data(), bytes.size(), path);
}

/// Loads the model file in memory into `model`, which must have the architecture it was exported
/// from (same describe(), scalar type and parameter count). Reports IoError naming `source` and
/// what differs or is corrupted; the model is then unchanged.
template <typename Model>
void load_model_file(const void* data, std::size_t size, Model& model, const std::string& source = "<memory>") {
  detail::load_model_file_view(detail::parse_model_file(data, size, source), model, source);
}

/// Loads the model file at `path` into `model` (see the in-memory overload).
template <typename Model>
void load_model_file(const std::string& path, Model& model) {
  const std::string bytes = detail::read_model_file_bytes(path);
  load_model_file(bytes.data(), bytes.size(), model, path);
}

/// Builds the ready-made ML-VAE the model file in memory names (mlp, conv28 or conv64, scalar `T`),
/// loads its parameters and calls `f(model)` with it. Reports IoError for a custom architecture
/// (use load_model_file with a model built in code) and for every error load_model_file reports.
template <typename T, typename F>
void with_model_file(const void* data, std::size_t size, F&& f, const std::string& source = "<memory>") {
  const detail::ModelFileView view = detail::parse_model_file(data, size, source);
  const ModelFileInfo& info = view.info;
  const auto& s = info.architecture_sizes;
  const auto need_sizes = [&](std::size_t n) {
    require<IoError>(s.size() == n, "model file '", source, "': architecture '", info.architecture_name, "' takes ",
                     n, " sizes, found ", detail::latent_list(s));
    for (const std::int64_t v : s)
      require<IoError>(v > 0 && v <= (std::int64_t{1} << 24), "model file '", source, "': implausible size ", v,
                       " in ", detail::latent_list(s));
  };
  if (info.architecture_name == "mlp") {
    need_sizes(4);
    auto model = make_mlp_mlvae<T>(static_cast<Index>(s[0]), static_cast<Index>(s[1]), static_cast<Index>(s[2]),
                                   static_cast<Index>(s[3]));
    detail::load_model_file_view(view, model, source);
    f(model);
  } else if (info.architecture_name == "conv28" || info.architecture_name == "conv64") {
    need_sizes(2);
    if (info.architecture_name == "conv28") {
      auto model = make_conv28_mlvae<T>(static_cast<Index>(s[0]), static_cast<Index>(s[1]));
      detail::load_model_file_view(view, model, source);
      f(model);
    } else {
      auto model = make_conv64_mlvae<T>(static_cast<Index>(s[0]), static_cast<Index>(s[1]));
      detail::load_model_file_view(view, model, source);
      f(model);
    }
  } else {
    raise_error<IoError>(detail::concat("model file '", source, "': ",
                                info.architecture_name.empty()
                                    ? std::string("it holds a custom ") + info.model_kind +
                                          " (no ready-made architecture): build the model in code and call "
                                          "load_model_file; the file describes it as " + info.description
                                    : "unknown architecture '" + info.architecture_name +
                                          "' (this build knows mlp, conv28 and conv64)"));
  }
}

/// Builds, loads and hands to `f` the ready-made ML-VAE in the model file at `path` (see the
/// in-memory overload).
template <typename T, typename F>
void with_model_file(const std::string& path, F&& f) {
  const std::string bytes = detail::read_model_file_bytes(path);
  with_model_file<T>(bytes.data(), bytes.size(), std::forward<F>(f), path);
}

}  // namespace mlvae
