/// @file
/// mlvae/io/checkpoint.hpp — versioned cereal checkpoints of a model, and of a whole training run
/// (model + Adam + noise Rng + sampler state + epoch/step + TrainerOptions), written atomically
/// (temporary file in the same directory, flush, fsync, rename) and validated field by field on load.
///
/// Two archives: portable binary (cereal::PortableBinary*Archive: fixed-width little-endian
/// fields, parameter blocks as cereal::binary_data) and JSON (cereal::JSON*Archive). Every load
/// checks the format tag, the version, the scalar type, the architecture string, the latent sizes
/// and every length against what the receiving model/trainer expects BEFORE allocating, and turns
/// every failure (cereal::Exception, RapidJSON errors, bad_alloc, inconsistent values) into an
/// mlvae::IoError naming the file. A failed load leaves the model and trainer unchanged.
///
/// Integrity (format version 2): a checkpoint file carries a CRC-32 (the zlib/PNG polynomial, core/crc32.hpp) of its bytes, checked
/// before anything is parsed: binary files end with the CRC of every byte before it (4 bytes,
/// little-endian); JSON files end with a field "crc32" (8 hex digits), the CRC of the whole text
/// with those digits written as "00000000" (a JSON file edited by hand fails the check until its
/// crc32 is recomputed). Version 1 files (no checksum) are still read. Files
/// that are not checkpoints, truncated files and bad JSON are named as such before any parsing.
/// Every save removes stale temporaries of its own naming left by a killed save (see
/// write_file_atomically).
#pragma once

#include "mlvae/core/crc32.hpp"
#include "mlvae/core/error.hpp"
#include "mlvae/core/random.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/data/grouped_sampler.hpp"
#include "mlvae/optim/adam.hpp"
#include "mlvae/train/trainer.hpp"

#include <cereal/archives/json.hpp>
#include <cereal/archives/portable_binary.hpp>
#include <cereal/cereal.hpp>
#include <cereal/types/string.hpp>
#include <rapidjson/error/en.h>  // after cereal's JSON archive, which configures RapidJSON

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <new>
#include <random>
#include <sstream>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <climits>
#include <csignal>
#include <sys/types.h>
#include <unistd.h>  // fsync, getpid (POSIX)

namespace mlvae {

/// Archive format of a checkpoint file. load_* detects the format from the content.
enum class CheckpointFormat {
  Binary,  ///< cereal portable binary (compact, exact, endianness-independent)
  Json     ///< cereal JSON (readable, exact: doubles are written with round-trip precision)
};

/// The first field of every checkpoint, and the version this build writes and reads.
inline constexpr const char* checkpoint_format_tag = "mlvae-checkpoint";
/// The checkpoint format version this build writes (2: with a CRC-32 of the file).
inline constexpr std::uint32_t checkpoint_version = 2;
/// The oldest version this build reads (1: the same fields, no checksum).
inline constexpr std::uint32_t checkpoint_oldest_version = 1;

/// What a checkpoint file says about itself (read by read_checkpoint_info without a model).
struct CheckpointInfo {
  /// Format version stored in the file.
  std::uint32_t version = 0;
  std::string kind;               ///< "model" (model only) or "training" (a whole training run)
  std::string scalar_type;        ///< "float" or "double"
  std::uint32_t scalar_size = 0;  ///< sizeof the scalar in bytes
  std::string model_kind;         ///< "MLVAE" or "VAE"
  std::string architecture;       ///< the model's describe(): every layer kind and shape, the likelihood
  std::vector<std::int64_t> latent_sizes;  ///< MLVAE: {style, content}; VAE: {latent}
  /// Number of stored parameters (the model's ParameterStore size).
  std::int64_t parameter_count = 0;
};

namespace detail {

// ---- model traits ------------------------------------------------------------
template <typename Model, typename = void>
struct has_style_content : std::false_type {};
template <typename Model>
struct has_style_content<Model, std::void_t<decltype(std::declval<const Model&>().style_size()),
                                            decltype(std::declval<const Model&>().content_size())>>
    : std::true_type {};

template <typename Model>
std::string model_kind_name() {
  return has_style_content<Model>::value ? "MLVAE" : "VAE";
}

template <typename Model, typename = void>
struct has_model_kind : std::false_type {};
template <typename Model>
struct has_model_kind<Model, std::void_t<decltype(std::declval<const Model&>().model_kind())>> : std::true_type {};

/// The kind recorded in a checkpoint: the model's own model_kind() when it has one (e.g. the
/// semi-supervised VAE's "SemiSupervisedVAE/m2"), else "MLVAE" or "VAE".
template <typename Model>
std::string model_kind_of(const Model& model) {
  if constexpr (has_model_kind<Model>::value)
    return model.model_kind();
  else
    return model_kind_name<Model>();
}

template <typename Model>
std::vector<std::int64_t> model_latent_sizes(const Model& model) {
  if constexpr (has_style_content<Model>::value)
    return {static_cast<std::int64_t>(model.style_size()), static_cast<std::int64_t>(model.content_size())};
  else
    return {static_cast<std::int64_t>(model.latent_size())};
}

template <typename T>
const char* scalar_type_name() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "mlvae scalars are float or double");
  return std::is_same_v<T, float> ? "float" : "double";
}

// ---- bounded sequences: the length is checked against a limit before anything is allocated ----
template <typename Archive>
inline constexpr bool is_binary_archive_v =
    std::is_same_v<Archive, cereal::PortableBinaryOutputArchive> ||
    std::is_same_v<Archive, cereal::PortableBinaryInputArchive>;

/// Writes `n` arithmetic values as one sequence: size tag + binary_data (binary) or an array (JSON).
template <typename T>
struct SequenceOut {
  const T* data;
  std::uint64_t size;
  template <typename Archive>
  void save(Archive& ar) const {
    ar(cereal::make_size_tag(static_cast<cereal::size_type>(size)));
    if constexpr (is_binary_archive_v<Archive>)
      ar(cereal::binary_data(data, static_cast<std::size_t>(size) * sizeof(T)));
    else
      for (std::uint64_t i = 0; i < size; ++i) ar(data[i]);
  }
};

/// Reads a sequence written by SequenceOut into `out` (std::vector or Eigen vector), refusing a
/// length other than `expected` (or above `max_size` when `expected` < 0) before allocating.
template <typename Container>
struct SequenceIn {
  Container& out;
  std::int64_t expected;
  std::uint64_t max_size;
  const char* what;
  template <typename Archive>
  void load(Archive& ar) {
    using T = std::decay_t<decltype(*out.data())>;
    cereal::size_type n = 0;
    ar(cereal::make_size_tag(n));
    if (expected >= 0)
      require<IoError>(n == static_cast<std::uint64_t>(expected), "expected ", expected, " ", what, ", found ", n);
    else
      require<IoError>(n <= max_size, "expected at most ", max_size, " ", what, ", found ", n);
    out.resize(static_cast<Index>(n));
    if constexpr (is_binary_archive_v<Archive>)
      ar(cereal::binary_data(out.data(), static_cast<std::size_t>(n) * sizeof(T)));
    else
      for (cereal::size_type i = 0; i < n; ++i) ar(out.data()[i]);
  }
};

template <typename Archive, typename T>
void save_sequence(Archive& ar, const char* name, const T* data, Index size) {
  ar(cereal::make_nvp(name, SequenceOut<T>{data, static_cast<std::uint64_t>(size)}));
}

template <typename Archive, typename Container>
void load_sequence(Archive& ar, const char* name, Container& out, std::int64_t expected, const char* what,
                   std::uint64_t max_size = 0) {
  ar(cereal::make_nvp(name, SequenceIn<Container>{out, expected, max_size, what}));
}

/// Strings: bounded in binary archives (a corrupted length must not allocate gigabytes).
inline constexpr std::uint64_t checkpoint_max_string = std::uint64_t{1} << 20;

template <typename Archive>
void save_string(Archive& ar, const char* name, const std::string& s) {
  if constexpr (is_binary_archive_v<Archive>)
    save_sequence(ar, name, s.data(), static_cast<Index>(s.size()));
  else
    ar(cereal::make_nvp(name, s));
}

template <typename Archive>
void load_string(Archive& ar, const char* name, std::string& s, const char* what) {
  if constexpr (is_binary_archive_v<Archive>)
    load_sequence(ar, name, s, -1, what, checkpoint_max_string);
  else
    ar(cereal::make_nvp(name, s));
}

/// Checks every value is finite (the parameters and moments of a checkpoint must be).
template <typename T>
bool all_finite(const std::vector<T>& v) {
  for (const T& x : v)
    if (!std::isfinite(x)) return false;
  return true;
}

// ---- blocks ------------------------------------------------------------------------------
template <typename Archive>
void save_header(Archive& ar, const CheckpointInfo& info) {
  save_string(ar, "format", checkpoint_format_tag);
  ar(cereal::make_nvp("version", info.version));
  save_string(ar, "kind", info.kind);
  save_string(ar, "scalar_type", info.scalar_type);
  ar(cereal::make_nvp("scalar_size", info.scalar_size));
  save_string(ar, "model_kind", info.model_kind);
  save_string(ar, "architecture", info.architecture);
  save_sequence(ar, "latent_sizes", info.latent_sizes.data(), static_cast<Index>(info.latent_sizes.size()));
  ar(cereal::make_nvp("parameter_count", info.parameter_count));
}

/// Reads the header; checks the tag and the version (the rest is checked against a model).
template <typename Archive>
CheckpointInfo load_header(Archive& ar) {
  CheckpointInfo info;
  std::string tag;
  load_string(ar, "format", tag, "bytes of format tag");
  require<IoError>(tag == checkpoint_format_tag, "not an mlvae checkpoint (format tag '", tag.substr(0, 40),
                   "', expected '", checkpoint_format_tag, "')");
  ar(cereal::make_nvp("version", info.version));
  require<IoError>(info.version >= checkpoint_oldest_version && info.version <= checkpoint_version,
                   "unexpected checkpoint version ", info.version, " (this build reads ", checkpoint_oldest_version,
                   " to ", checkpoint_version, ")");
  load_string(ar, "kind", info.kind, "bytes of checkpoint kind");
  load_string(ar, "scalar_type", info.scalar_type, "bytes of scalar type");
  ar(cereal::make_nvp("scalar_size", info.scalar_size));
  load_string(ar, "model_kind", info.model_kind, "bytes of model kind");
  load_string(ar, "architecture", info.architecture, "bytes of architecture");
  load_sequence(ar, "latent_sizes", info.latent_sizes, -1, "latent sizes", 16);
  ar(cereal::make_nvp("parameter_count", info.parameter_count));
  return info;
}

template <typename Model>
CheckpointInfo describe_model(const Model& model, const char* kind) {
  using T = typename Model::Scalar;
  CheckpointInfo info;
  info.version = checkpoint_version;
  info.kind = kind;
  info.scalar_type = scalar_type_name<T>();
  info.scalar_size = static_cast<std::uint32_t>(sizeof(T));
  info.model_kind = model_kind_of(model);
  info.architecture = model.describe();
  info.latent_sizes = model_latent_sizes(model);
  info.parameter_count = static_cast<std::int64_t>(model.parameters().size());
  return info;
}

inline std::string latent_string(const std::vector<std::int64_t>& v) {
  std::string s = "{";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "}";
}

/// Checks a header read from a file against the model that is to receive it.
template <typename Model>
void check_header_matches(const CheckpointInfo& found, const Model& model) {
  const CheckpointInfo want = describe_model(model, found.kind.c_str());
  require<IoError>(found.scalar_type == want.scalar_type && found.scalar_size == want.scalar_size,
                   "scalar type differs: the checkpoint holds '", found.scalar_type, "' (", found.scalar_size,
                   " bytes), this model uses '", want.scalar_type, "' (", want.scalar_size, " bytes)");
  require<IoError>(found.model_kind == want.model_kind, "model kind differs: the checkpoint holds a ",
                   found.model_kind, ", this model is a ", want.model_kind);
  if (found.architecture != want.architecture) {
    std::size_t at = 0;
    while (at < found.architecture.size() && at < want.architecture.size() &&
           found.architecture[at] == want.architecture[at])
      ++at;
    throw IoError(concat("architecture differs (first difference at character ", at, "): the checkpoint holds ",
                         found.architecture, ", this model is ", want.architecture));
  }
  require<IoError>(found.latent_sizes == want.latent_sizes, "latent sizes differ: the checkpoint holds ",
                   latent_string(found.latent_sizes), ", this model has ", latent_string(want.latent_sizes));
  require<IoError>(found.parameter_count == want.parameter_count, "parameter count differs: the checkpoint holds ",
                   found.parameter_count, ", this model has ", want.parameter_count);
}

template <typename Archive>
void save_rng(Archive& ar, const char* name, const Rng& rng) {
  const auto& s = rng.state();
  save_sequence(ar, name, s.data(), 4);
  ar(cereal::make_nvp((std::string(name) + "_has_cached_normal").c_str(), rng.has_cached_normal()));
  ar(cereal::make_nvp((std::string(name) + "_cached_normal").c_str(), rng.cached_normal()));
}

struct RngState {
  std::array<std::uint64_t, 4> words{};
  bool has_cached = false;
  double cached = 0;
};

template <typename Archive>
RngState load_rng(Archive& ar, const char* name) {
  RngState r;
  std::vector<std::uint64_t> words;
  load_sequence(ar, name, words, 4, "Rng state words");
  std::copy(words.begin(), words.end(), r.words.begin());
  ar(cereal::make_nvp((std::string(name) + "_has_cached_normal").c_str(), r.has_cached));
  ar(cereal::make_nvp((std::string(name) + "_cached_normal").c_str(), r.cached));
  require<IoError>(std::isfinite(r.cached), "the Rng's cached normal is not finite");
  return r;
}

template <typename Archive>
void serialize_adam_options(Archive& ar, AdamOptions& a) {
  ar(cereal::make_nvp("learning_rate", a.learning_rate), cereal::make_nvp("beta1", a.beta1),
     cereal::make_nvp("beta2", a.beta2), cereal::make_nvp("epsilon", a.epsilon),
     cereal::make_nvp("weight_decay", a.weight_decay), cereal::make_nvp("clip_norm", a.clip_norm));
}

/// TrainerOptions in fixed-width fields.
struct TrainerOptionsRecord {
  AdamOptions adam;
  std::int64_t groups_per_batch = 0, min_group_size = 0, max_group_size = 0;
  std::uint64_t sampler_seed = 0, noise_seed = 0;
  std::uint32_t on_divergence = 0;

  static TrainerOptionsRecord from(const TrainerOptions& o) {
    TrainerOptionsRecord r;
    r.adam = o.adam;
    r.groups_per_batch = o.sampler.groups_per_batch;
    r.min_group_size = o.sampler.min_group_size;
    r.max_group_size = o.sampler.max_group_size;
    r.sampler_seed = o.sampler.seed;
    r.noise_seed = o.noise_seed;
    r.on_divergence = static_cast<std::uint32_t>(o.on_divergence);
    return r;
  }
  TrainerOptions to_options() const {
    TrainerOptions o;
    o.adam = adam;
    o.sampler = {static_cast<Index>(groups_per_batch), static_cast<Index>(min_group_size),
                 static_cast<Index>(max_group_size), sampler_seed};
    o.noise_seed = noise_seed;
    o.on_divergence = static_cast<DivergencePolicy>(on_divergence);
    return o;
  }
  template <typename Archive>
  void serialize(Archive& ar) {
    serialize_adam_options(ar, adam);
    ar(cereal::make_nvp("groups_per_batch", groups_per_batch), cereal::make_nvp("min_group_size", min_group_size),
       cereal::make_nvp("max_group_size", max_group_size), cereal::make_nvp("sampler_seed", sampler_seed),
       cereal::make_nvp("noise_seed", noise_seed), cereal::make_nvp("on_divergence", on_divergence));
  }
  void validate() const {
    adam.validate();
    require<IoError>(groups_per_batch >= 1 && min_group_size >= 1 && max_group_size >= min_group_size,
                     "invalid sampler options in the checkpoint (groups_per_batch ", groups_per_batch,
                     ", group sizes ", min_group_size, "..", max_group_size, ")");
    require<IoError>(on_divergence <= 1, "invalid divergence policy ", on_divergence, " in the checkpoint");
  }
};

// ---- files -------------------------------------------------------------------------------
/// Reads a whole file (refusing directories, missing files and files over 4 GiB).
inline std::string read_file_bytes(const std::string& path) {
  std::error_code ec;
  require<IoError>(std::filesystem::is_regular_file(path, ec), "checkpoint '", path,
                   "' does not exist or is not a regular file");
  const auto size = std::filesystem::file_size(path, ec);
  require<IoError>(!ec, "checkpoint '", path, "': cannot read its size: ", ec.message());
  require<IoError>(size < (std::uintmax_t{1} << 32), "checkpoint '", path, "' is implausibly large (", size,
                   " bytes)");
  std::ifstream in(path, std::ios::binary);
  require<IoError>(static_cast<bool>(in), "checkpoint '", path, "' could not be opened for reading");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  require<IoError>(!in.bad(), "checkpoint '", path, "': read error");
  return bytes;
}

inline bool looks_like_json(const std::string& bytes) {
  for (char c : bytes) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    return c == '{';
  }
  return false;
}

inline std::uint32_t read_le32(const char* p) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

/// The last field of a version-2 JSON checkpoint, as written before its value is filled in.
inline constexpr const char* json_crc_field = "\"crc32\": \"";
inline constexpr const char* json_crc_placeholder = "00000000";

/// Checks the version found in a file before anything else is read.
inline void check_version(std::uint32_t version) {
  require<IoError>(version >= checkpoint_oldest_version && version <= checkpoint_version,
                   "unexpected checkpoint version ", version, " (this build reads ", checkpoint_oldest_version, " to ",
                   checkpoint_version, ")");
}

/// A binary checkpoint starts with cereal's endianness byte, the tag's 8-byte length (16) and the
/// tag, then the uint32 version. Checks all that, then the CRC-32 trailer of a version-2 file.
inline void check_binary_envelope(const std::string& bytes) {
  const std::string tag = checkpoint_format_tag;
  std::string expected(1, bytes.empty() ? '\x01' : bytes[0]);
  expected += std::string("\x10\0\0\0\0\0\0\0", 8) + tag;
  const std::size_t head = expected.size();  // 25
  const std::size_t common = std::min(head, bytes.size());
  const bool prefix_ok = (bytes.empty() || bytes[0] == '\x00' || bytes[0] == '\x01') &&
                         bytes.compare(0, common, expected, 0, common) == 0;
  require<IoError>(prefix_ok, "not an mlvae checkpoint (it does not start with the '", tag,
                   "' tag of a binary checkpoint, nor with '{' of a JSON one)");
  require<IoError>(bytes.size() >= head + 4, "truncated checkpoint: the file ends after ", bytes.size(),
                   " bytes, inside its header");
  const std::uint32_t version = read_le32(bytes.data() + head);
  check_version(version);
  if (version < 2) return;
  require<IoError>(bytes.size() >= head + 8, "truncated checkpoint: the file ends after ", bytes.size(),
                   " bytes, inside its header");
  const std::size_t body = bytes.size() - 4;
  const std::uint32_t stored = read_le32(bytes.data() + body), computed = crc32(bytes.data(), body);
  require<IoError>(stored == computed, "corrupted or truncated checkpoint: the CRC-32 of its first ", body,
                   " bytes is ", hex32(computed), " but the file records ", hex32(stored));
}

/// Parses the JSON text once to report syntax errors in words (truncated JSON at byte N), checks
/// the tag and the version, then the CRC-32 of a version-2 file.
inline void check_json_envelope(const std::string& text) {
  RAPIDJSON_NAMESPACE::Document doc;
  doc.Parse(text.data(), text.size());
  if (doc.HasParseError()) {
    const std::size_t at = doc.GetErrorOffset();
    std::size_t last = text.find_last_not_of(" \t\r\n");
    if (last == std::string::npos) last = 0;
    require<IoError>(at <= last, "truncated JSON at byte ", at, " (the file ends inside the JSON document)");
    throw IoError(concat("invalid JSON at byte ", at, ": ", RAPIDJSON_NAMESPACE::GetParseError_En(doc.GetParseError())));
  }
  const char* tag = checkpoint_format_tag;
  require<IoError>(doc.IsObject() && doc.HasMember("format") && doc["format"].IsString() &&
                       std::string(doc["format"].GetString()) == tag,
                   "not an mlvae checkpoint (a JSON document without the field \"format\": \"", tag, "\")");
  require<IoError>(doc.HasMember("version") && doc["version"].IsUint(),
                   "not an mlvae checkpoint (no unsigned integer field \"version\")");
  const std::uint32_t version = doc["version"].GetUint();
  check_version(version);
  if (version < 2) return;
  const std::size_t at = text.rfind(json_crc_field);
  const std::size_t digits = at == std::string::npos ? at : at + std::strlen(json_crc_field);
  require<IoError>(at != std::string::npos && digits + 8 <= text.size() && doc.HasMember("crc32") &&
                       doc["crc32"].IsString() && doc["crc32"].GetStringLength() == 8,
                   "corrupted checkpoint: the version-2 field \"crc32\" (8 hex digits) is missing");
  std::string zeroed = text;
  zeroed.replace(digits, 8, json_crc_placeholder);
  const std::string stored = text.substr(digits, 8), computed = hex32(crc32(zeroed.data(), zeroed.size()));
  require<IoError>(stored == computed, "corrupted checkpoint: the CRC-32 of the JSON text is ", computed,
                   " but the file records ", stored);
}

/// Runs `body(archive)` on an input archive over `bytes` (format detected), turning every
/// failure into an IoError naming `path`. The envelope (tag, version, CRC-32, JSON syntax) is
/// checked first, so damaged files are reported in words before cereal reads a field.
template <typename Body>
void with_input_archive(const std::string& path, const std::string& bytes, Body&& body) {
  try {
    require<IoError>(!bytes.empty(), "the file is empty");
    std::istringstream in(bytes, std::ios::binary);
    if (looks_like_json(bytes)) {
      check_json_envelope(bytes);
      cereal::JSONInputArchive ar(in);
      body(ar);
    } else {
      check_binary_envelope(bytes);
      cereal::PortableBinaryInputArchive ar(in);
      body(ar);
    }
  } catch (const IoError& e) {
    throw IoError(concat("checkpoint '", path, "': ", e.what()));
  } catch (const Error& e) {  // ArgumentError / ShapeError from validation of the loaded values
    throw IoError(concat("checkpoint '", path, "': inconsistent contents: ", e.what()));
  } catch (const cereal::Exception& e) {
    throw IoError(concat("checkpoint '", path, "': corrupted or truncated file: ", e.what()));
  } catch (const std::bad_alloc&) {
    throw IoError(concat("checkpoint '", path, "': corrupted file (a length is implausibly large)"));
  } catch (const std::exception& e) {
    throw IoError(concat("checkpoint '", path, "': corrupted file: ", e.what()));
  }
}

/// Serialises with `body(archive)` into memory in the chosen format, and seals it with its CRC-32:
/// a 4-byte little-endian trailer (binary) or a last field "crc32" (JSON).
template <typename Body>
std::string write_to_string(CheckpointFormat format, Body&& body) {
  std::ostringstream out(std::ios::binary);
  if (format == CheckpointFormat::Json) {
    {
      cereal::JSONOutputArchive ar(out);
      body(ar);
      ar(cereal::make_nvp("crc32", std::string(json_crc_placeholder)));
    }  // the archive's destructor completes the JSON document
    std::string text = out.str();
    const std::size_t at = text.rfind(json_crc_field);
    require<IoError>(at != std::string::npos, "internal error: the JSON checkpoint has no crc32 field");
    text.replace(at + std::strlen(json_crc_field), 8, hex32(crc32(text.data(), text.size())));
    return text;
  }
  {
    cereal::PortableBinaryOutputArchive ar(out);
    body(ar);
  }
  std::string bytes = out.str();
  const std::uint32_t crc = crc32(bytes.data(), bytes.size());
  for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<char>((crc >> (8 * i)) & 0xffu));
  return bytes;
}

/// True for `name` == `stem` + ".tmp-" + digits + "-" + digits: the temporary files that
/// write_file_atomically creates (the first number is the writer's process id). `pid` gets it.
inline bool is_own_temporary_name(const std::string& name, const std::string& stem, unsigned long long& pid) {
  const std::string prefix = stem + ".tmp-";
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return false;
  const std::string rest = name.substr(prefix.size());
  const std::size_t dash = rest.find('-');
  if (dash == std::string::npos || dash == 0 || dash + 1 >= rest.size() || dash > 19 || rest.size() - dash - 1 > 20)
    return false;
  for (std::size_t i = 0; i < rest.size(); ++i)
    if (i != dash && (rest[i] < '0' || rest[i] > '9')) return false;
  pid = std::stoull(rest.substr(0, dash));
  return true;
}

/// Removes the temporaries of earlier saves to `target` that a killed process left behind:
/// files in the same directory named exactly `<name>.tmp-<pid>-<number>` whose process is no
/// longer running (or is this process: one save at a time per target). Other files are never
/// touched; failures to remove are ignored (the save itself does not depend on them).
inline void remove_stale_temporaries(const std::filesystem::path& dir, const std::string& stem) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  if (ec) return;
  const auto self = static_cast<unsigned long long>(::getpid());
  std::vector<fs::path> stale;
  for (; it != end; it.increment(ec)) {
    if (ec) break;
    unsigned long long pid = 0;
    const std::string name = it->path().filename().string();
    if (!is_own_temporary_name(name, stem, pid)) continue;
    std::error_code type_ec;
    if (!it->is_regular_file(type_ec)) continue;
    // A pid that cannot be a live process (0, too large) or that no longer runs is stale.
    const bool alive = pid != self && pid > 0 && pid <= static_cast<unsigned long long>(INT_MAX) &&
                       (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM);
    if (!alive) stale.push_back(it->path());
  }
  for (const auto& p : stale) fs::remove(p, ec);
}

}  // namespace detail

/// Writes `bytes` to `path` atomically: a uniquely named temporary file in the same directory,
/// `<name>.tmp-<pid>-<random>`, is written, flushed and fsync'ed, then renamed over `path`. On any
/// failure the temporary file is removed, `path` is left as it was, and IoError is thrown.
/// Temporaries of this exact naming left by a killed save (their process no longer runs) are
/// removed first; no other file is touched.
inline void write_file_atomically(const std::string& path, const std::string& bytes) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  detail::remove_stale_temporaries(dir, target.filename().string());
  std::random_device device;
  const fs::path temp = dir / (target.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" +
                               std::to_string(device()));
  std::FILE* f = std::fopen(temp.string().c_str(), "wb");
  require<IoError>(f != nullptr, "cannot write checkpoint '", path, "': cannot create the temporary file '",
                   temp.string(), "' (", std::strerror(errno), ")");
  bool ok = bytes.empty() || std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  ok = ok && std::fflush(f) == 0 && ::fsync(::fileno(f)) == 0;
  const int saved_errno = errno;
  ok = (std::fclose(f) == 0) && ok;
  std::error_code ec;
  if (!ok) {
    fs::remove(temp, ec);
    throw IoError(detail::concat("cannot write checkpoint '", path, "': writing '", temp.string(), "' failed (",
                         std::strerror(saved_errno), "); the previous file is unchanged"));
  }
  fs::rename(temp, target, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(temp, ignored);
    throw IoError(detail::concat("cannot write checkpoint '", path, "': renaming the temporary file failed (",
                         ec.message(), "); the previous file is unchanged"));
  }
}

/// Reads the header of a checkpoint (model or training) without a model: version, scalar type,
/// architecture, latent sizes, parameter count. @throws IoError.
inline CheckpointInfo read_checkpoint_info(const std::string& path) {
  CheckpointInfo info;
  const std::string bytes = detail::read_file_bytes(path);
  detail::with_input_archive(path, bytes, [&](auto& ar) { info = detail::load_header(ar); });
  return info;
}

// ---- model checkpoints -----------------------------------------------------------------------

/// cereal serialization of a whole model (every layer's parameters, which live in the model's one
/// ParameterStore, plus the architecture header): `archive(mlvae::cereal_model(model))` in any cereal
/// archive. Loading checks the header against the model and throws IoError naming what differs
/// (the model is unchanged then). It also reads the model part of a training checkpoint, which
/// starts with the same fields.
template <typename Model>
struct CerealModel {
  /// The model serialised or filled in.
  Model& model;

  /// Writes the header and the parameters; throws DivergenceError (nothing written) when a parameter is not finite.
  template <typename Archive>
  void save(Archive& ar) const {
    using T = typename Model::Scalar;
    const auto& values = model.parameters().values;
    require<DivergenceError>(values.allFinite(), "refusing to save a model with non-finite parameters");
    detail::save_header(ar, detail::describe_model(model, "model"));
    detail::save_sequence<Archive, T>(ar, "parameters", values.data(), values.size());
  }
  /// Reads and checks the header, then the parameters; throws IoError when the header does not match the model
  /// or a stored value is not finite (the model is unchanged then).
  template <typename Archive>
  void load(Archive& ar) {
    using T = typename Model::Scalar;
    const CheckpointInfo info = detail::load_header(ar);
    require<IoError>(info.kind == "model" || info.kind == "training", "unknown checkpoint kind '", info.kind, "'");
    detail::check_header_matches(info, model);
    Vector<T> values;
    detail::load_sequence(ar, "parameters", values, static_cast<std::int64_t>(model.parameters().size()),
                          "parameters");
    require<IoError>(values.allFinite(), "the stored parameters are not all finite");
    model.parameters().values = values;
  }
};

/// Wraps `model` for cereal: `archive(cereal_model(model))` saves or loads it.
template <typename Model>
CerealModel<Model> cereal_model(Model& model) {
  return {model};
}

/// Saves the model's architecture and parameters to `path` (atomically).
/// @throws DivergenceError (nothing written) when a parameter is not finite; IoError on write failure.
template <typename Model>
void save_model(const std::string& path, const Model& model, CheckpointFormat format = CheckpointFormat::Binary) {
  Model& m = const_cast<Model&>(model);  // CerealModel::save only reads
  const std::string bytes = detail::write_to_string(format, [&](auto& ar) { cereal_model(m).save(ar); });
  write_file_atomically(path, bytes);
}

/// Loads parameters saved by save_model (or the model part of save_checkpoint) into `model`, which
/// must have the same architecture.
/// @throws IoError naming the file and what differs or is corrupted (the model is then unchanged).
template <typename Model>
void load_model(const std::string& path, Model& model) {
  const std::string bytes = detail::read_file_bytes(path);
  detail::with_input_archive(path, bytes, [&](auto& ar) { cereal_model(model).load(ar); });
}

// ---- training checkpoints --------------------------------------------------------------------

/// Serialises the whole training state of `trainer` into memory (see save_checkpoint).
template <typename Model>
std::string checkpoint_bytes(Trainer<Model>& trainer, CheckpointFormat format = CheckpointFormat::Binary) {
  using T = typename Model::Scalar;
  const Model& model = trainer.model();
  const auto& values = model.parameters().values;
  const Adam<T>& adam = trainer.optimizer();
  require<DivergenceError>(values.allFinite(), "refusing to write a checkpoint: the model's parameters are not all "
                           "finite (the training diverged)");
  require<DivergenceError>(adam.first_moment().allFinite() && adam.second_moment().allFinite(),
                           "refusing to write a checkpoint: the Adam moments are not all finite");
  const CheckpointInfo info = detail::describe_model(model, "training");
  const GroupedSamplerState sampler = trainer.sampler().state();
  std::vector<std::int64_t> order(sampler.order.begin(), sampler.order.end());
  std::vector<std::int64_t> group_begin, group_end;
  std::vector<std::int32_t> group_key;
  for (const auto& g : sampler.groups) {
    group_begin.push_back(g.begin);
    group_end.push_back(g.end);
    group_key.push_back(g.key);
  }
  detail::TrainerOptionsRecord options = detail::TrainerOptionsRecord::from(trainer.options());
  const std::int64_t adam_step = adam.step_count();
  const std::int64_t epoch = sampler.epoch, cursor = sampler.cursor;
  const std::int64_t step_in_epoch = trainer.step_in_epoch(), skipped = trainer.skipped_steps();
  const std::int64_t observations = trainer.sampler().observation_count();
  return detail::write_to_string(format, [&](auto& ar) {
    detail::save_header(ar, info);
    detail::save_sequence(ar, "parameters", values.data(), values.size());
    ar(cereal::make_nvp("options", options));
    ar(cereal::make_nvp("adam_step", adam_step));
    detail::save_sequence(ar, "adam_first_moment", adam.first_moment().data(), adam.first_moment().size());
    detail::save_sequence(ar, "adam_second_moment", adam.second_moment().data(), adam.second_moment().size());
    detail::save_rng(ar, "noise_rng", trainer.noise());
    ar(cereal::make_nvp("epoch", epoch), cereal::make_nvp("step_in_epoch", step_in_epoch),
       cereal::make_nvp("skipped_steps", skipped), cereal::make_nvp("observations", observations));
    Rng sampler_rng;
    sampler_rng.set_state(sampler.rng_state, sampler.rng_has_cached_normal, sampler.rng_cached_normal);
    detail::save_rng(ar, "sampler_rng", sampler_rng);
    detail::save_sequence(ar, "sampler_order", order.data(), static_cast<Index>(order.size()));
    detail::save_sequence(ar, "sampler_group_begin", group_begin.data(), static_cast<Index>(group_begin.size()));
    detail::save_sequence(ar, "sampler_group_end", group_end.data(), static_cast<Index>(group_end.size()));
    detail::save_sequence(ar, "sampler_group_key", group_key.data(), static_cast<Index>(group_key.size()));
    ar(cereal::make_nvp("sampler_cursor", cursor), cereal::make_nvp("sampler_pending", sampler.pending));
  });
}

/// Writes the complete training state — model (architecture + parameters), Adam (step, options,
/// moments), the noise Rng, the sampler's mid-epoch state (Rng, order, groups, cursor, epoch),
/// step_in_epoch, skipped steps and the TrainerOptions — to `path`, atomically: a crash or error
/// during the save leaves a previous file at `path` intact.
/// @throws DivergenceError (nothing written) when parameters or moments are not finite.
/// @throws IoError when the file cannot be written.
template <typename Model>
void save_checkpoint(const std::string& path, Trainer<Model>& trainer,
                     CheckpointFormat format = CheckpointFormat::Binary) {
  write_file_atomically(path, checkpoint_bytes(trainer, format));
}

namespace detail {
/// Reads past the parameter block of a checkpoint whose header is `info` (to reach the options
/// stored after it), never allocating more than the header announced. @throws IoError.
template <typename Archive>
void skip_parameters(Archive& ar, const CheckpointInfo& info) {
  require<IoError>(info.parameter_count >= 0 && info.parameter_count < (std::int64_t{1} << 36),
                   "implausible parameter count ", info.parameter_count);
  if (info.scalar_type == "float") {
    std::vector<float> p;
    load_sequence(ar, "parameters", p, info.parameter_count, "parameters");
  } else {
    std::vector<double> p;
    load_sequence(ar, "parameters", p, info.parameter_count, "parameters");
  }
}
}  // namespace detail

/// The TrainerOptions stored in a training checkpoint (to build the Trainer that resumes it).
/// @throws IoError.
inline TrainerOptions read_checkpoint_options(const std::string& path) {
  TrainerOptions result;
  const std::string bytes = detail::read_file_bytes(path);
  detail::with_input_archive(path, bytes, [&](auto& ar) {
    const CheckpointInfo info = detail::load_header(ar);
    require<IoError>(info.kind == "training", "expected a training checkpoint, found kind '", info.kind, "'");
    detail::skip_parameters(ar, info);
    detail::TrainerOptionsRecord record;
    ar(cereal::make_nvp("options", record));
    record.validate();
    result = record.to_options();
  });
  return result;
}

/// Restores a training state written by save_checkpoint into `trainer` (and its model), which
/// must have the same architecture, scalar type and training data keys. Sampler options must
/// equal the stored ones; the Adam options are taken from the checkpoint; the trainer's divergence
/// policy is kept. Everything is validated before anything is changed.
/// @throws IoError naming the file and what differs or is corrupted; the trainer is then unchanged.
template <typename Model>
void load_checkpoint(const std::string& path, Trainer<Model>& trainer);

/// Restores a training state from checkpoint bytes in memory (what checkpoint_bytes() returns; e.g.
/// broadcast by data-parallel training) exactly as load_checkpoint() does from a file; `name`
/// stands for the file in error messages. @throws IoError; the trainer is then unchanged.
template <typename Model>
void load_checkpoint_bytes(const std::string& bytes, Trainer<Model>& trainer, const std::string& name) {
  using T = typename Model::Scalar;
  Model& model = trainer.model();
  const std::string& path = name;
  detail::with_input_archive(path, bytes, [&](auto& ar) {
    const CheckpointInfo info = detail::load_header(ar);
    require<IoError>(info.kind == "training", "expected a training checkpoint, found kind '", info.kind,
                     "' (use load_model for model checkpoints)");
    detail::check_header_matches(info, model);
    const std::int64_t n_params = static_cast<std::int64_t>(model.parameters().size());
    Vector<T> values, m, v;
    detail::load_sequence(ar, "parameters", values, n_params, "parameters");
    require<IoError>(values.allFinite(), "the stored parameters are not all finite");
    detail::TrainerOptionsRecord record;
    ar(cereal::make_nvp("options", record));
    record.validate();
    const TrainerOptions stored = record.to_options();
    const GroupedSamplerOptions& mine = trainer.sampler().options();
    require<IoError>(stored.sampler.groups_per_batch == mine.groups_per_batch &&
                         stored.sampler.min_group_size == mine.min_group_size &&
                         stored.sampler.max_group_size == mine.max_group_size && stored.sampler.seed == mine.seed,
                     "sampler options differ: the checkpoint has groups_per_batch ", stored.sampler.groups_per_batch,
                     ", group sizes ", stored.sampler.min_group_size, "..", stored.sampler.max_group_size, ", seed ",
                     stored.sampler.seed, "; this trainer has ", mine.groups_per_batch, ", ", mine.min_group_size,
                     "..", mine.max_group_size, ", seed ", mine.seed);
    std::int64_t adam_step = 0;
    ar(cereal::make_nvp("adam_step", adam_step));
    require<IoError>(adam_step >= 0, "the Adam step count is negative (", adam_step, ")");
    detail::load_sequence(ar, "adam_first_moment", m, n_params, "Adam first moments");
    detail::load_sequence(ar, "adam_second_moment", v, n_params, "Adam second moments");
    require<IoError>(m.allFinite() && v.allFinite() && (v.array() >= T(0)).all(),
                     "the stored Adam moments are not finite (or a second moment is negative)");
    const detail::RngState noise = detail::load_rng(ar, "noise_rng");
    std::int64_t epoch = 0, step_in_epoch = 0, skipped = 0, observations = 0;
    ar(cereal::make_nvp("epoch", epoch), cereal::make_nvp("step_in_epoch", step_in_epoch),
       cereal::make_nvp("skipped_steps", skipped), cereal::make_nvp("observations", observations));
    const std::int64_t n_obs = trainer.sampler().observation_count();
    require<IoError>(observations == n_obs, "the training data differ: the checkpoint was written for ",
                     observations, " observations, this trainer has ", n_obs);
    require<IoError>(step_in_epoch >= 0 && skipped >= 0, "negative step counters (step_in_epoch ", step_in_epoch,
                     ", skipped ", skipped, ")");
    const detail::RngState sampler_rng = detail::load_rng(ar, "sampler_rng");
    std::vector<std::int64_t> order, group_begin, group_end;
    std::vector<std::int32_t> group_key;
    detail::load_sequence(ar, "sampler_order", order, n_obs, "sampler order entries");
    detail::load_sequence(ar, "sampler_group_begin", group_begin, -1, "sampler groups",
                          static_cast<std::uint64_t>(n_obs));
    const auto groups = static_cast<std::int64_t>(group_begin.size());
    detail::load_sequence(ar, "sampler_group_end", group_end, groups, "sampler group ends");
    detail::load_sequence(ar, "sampler_group_key", group_key, groups, "sampler group keys");
    std::int64_t cursor = 0;
    bool pending = false;
    ar(cereal::make_nvp("sampler_cursor", cursor), cereal::make_nvp("sampler_pending", pending));

    GroupedSamplerState state;
    state.rng_state = sampler_rng.words;
    state.rng_has_cached_normal = sampler_rng.has_cached;
    state.rng_cached_normal = sampler_rng.cached;
    state.order.assign(order.begin(), order.end());
    for (std::int64_t g = 0; g < groups; ++g)
      state.groups.push_back({static_cast<Index>(group_begin[static_cast<std::size_t>(g)]),
                              static_cast<Index>(group_end[static_cast<std::size_t>(g)]),
                              group_key[static_cast<std::size_t>(g)]});
    state.cursor = static_cast<Index>(cursor);
    state.epoch = static_cast<Index>(epoch);
    state.pending = pending;

    // Commit: the sampler validates (and changes nothing on error) first; nothing below throws.
    trainer.sampler().restore(state);
    trainer.set_adam_options(stored.adam);
    trainer.optimizer().set_state(static_cast<long long>(adam_step), m, v);
    model.parameters().values = values;
    model.parameters().zero_gradients();
    trainer.noise().set_state(noise.words, noise.has_cached, noise.cached);
    trainer.set_step_in_epoch(static_cast<Index>(step_in_epoch));
    trainer.set_skipped_steps(skipped);
  });
}

template <typename Model>
void load_checkpoint(const std::string& path, Trainer<Model>& trainer) {
  load_checkpoint_bytes(detail::read_file_bytes(path), trainer, path);
}

}  // namespace mlvae
