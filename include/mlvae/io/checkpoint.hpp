/// @file
/// mlvae/io/checkpoint.hpp — versioned cereal checkpoints of a model, and of a whole training run, written
/// atomically (temporary file in the same directory, flush, fsync, rename) and validated field by field on load.
///
/// Format 3: after the envelope's "format" tag, "version" and "kind" ("model" or "training"), each part writes its
/// own block — a name, the block's version, its fields — and checks what it reads: "model" (scalar type, model
/// kind, architecture, latent sizes, parameter count), "parameters", then for a training run the trainer's options
/// ("trainer_options" / "semisupervised_trainer_options"), "adam", "noise_rng", "progress" and the sampler
/// ("grouped_sampler" / "semisupervised_sampler"). One writer and one reader serve every trainer; a sampler adds
/// its parts through SamplerPart (the semi-supervised one in io/semisupervised_checkpoint.hpp). Formats 1 and 2
/// held the same fields without blocks (the options nested, the sampler's fields among the counters): still read.
///
/// Archives: portable binary (fixed-width little-endian; parameters as cereal::binary_data) and JSON. Lengths are
/// checked against what the receiver expects BEFORE allocating; every failure becomes an mlvae::IoError naming the
/// file and what was expected and found, and leaves the model and trainer unchanged. Since format 2 a file carries
/// a CRC-32 (core/crc32.hpp), checked before parsing: binary files end with the CRC of every byte before it (4
/// bytes, little-endian), JSON files with a field "crc32" (8 hex digits; the CRC of the text with them "00000000").
/// Every save removes stale temporaries of its own naming left by a killed save.
#pragma once

#include "mlvae/core/crc32.hpp"
#include "mlvae/core/error.hpp"
#include "mlvae/core/random.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/data/grouped_sampler.hpp"
#include "mlvae/nn/gemm.hpp"
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
/// The checkpoint format version this build writes (3: each part in its own versioned block).
inline constexpr std::uint32_t checkpoint_version = 3;
/// The oldest version this build reads (1: flat fields, no checksum; 2: flat fields with a CRC-32).
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
  /// The matrix-product kernel the writing process had chosen for each product shape
  /// (gemm_kernel_choices(), one "<shape>: <kernel>" line each; nn/gemm_select.hpp); empty in
  /// files written before the model block's version 2.
  std::string gemm_kernels;
};

namespace detail {

static_assert(sizeof(Index) == sizeof(std::int64_t), "checkpoints store indices as 64-bit integers");

// ---- model traits ------------------------------------------------------------
template <typename Model, typename = void>
struct has_style_content : std::false_type {};
template <typename Model>
struct has_style_content<Model, std::void_t<decltype(std::declval<const Model&>().style_size()),
                                            decltype(std::declval<const Model&>().content_size())>>
    : std::true_type {};

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
    return has_style_content<Model>::value ? "MLVAE" : "VAE";
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

// ---- fields: one function writes or reads each (Archive::is_loading tells which) ---------
template <typename Archive>
inline constexpr bool is_binary_archive_v =
    std::is_same_v<Archive, cereal::PortableBinaryOutputArchive> ||
    std::is_same_v<Archive, cereal::PortableBinaryInputArchive>;
template <typename Archive>
inline constexpr bool is_loading_v = Archive::is_loading::value;

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

/// Reads a sequence written by SequenceOut into `out` (std::vector, std::string or Eigen vector), refusing a
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
      ar(cereal::binary_data(&out[0], static_cast<std::size_t>(n) * sizeof(T)));
    else
      for (cereal::size_type i = 0; i < n; ++i) ar(out[static_cast<Index>(i)]);
  }
};

/// A sequence field: written whole; read with its length checked (see SequenceIn) before allocating.
template <typename Archive, typename Container>
void sequence(Archive& ar, const char* name, Container& c, std::int64_t expected, const char* what,
              std::uint64_t max_size = 0) {
  if constexpr (is_loading_v<Archive>)
    ar(cereal::make_nvp(name, SequenceIn<Container>{c, expected, max_size, what}));
  else
    ar(cereal::make_nvp(name, SequenceOut<std::decay_t<decltype(*c.data())>>{c.data(), std::uint64_t(c.size())}));
}

/// Strings: bounded in binary archives (a corrupted length must not allocate gigabytes), plain in JSON.
template <typename Archive>
void text(Archive& ar, const char* name, std::string& s, const char* what) {
  if constexpr (is_binary_archive_v<Archive>)
    sequence(ar, name, s, -1, what, std::uint64_t{1} << 20);
  else
    ar(cereal::make_nvp(name, s));
}

/// A count or index stored as a fixed-width 64-bit field.
template <typename Archive, typename Int>
void int64_field(Archive& ar, const char* name, Int& v) {
  auto stored = static_cast<std::int64_t>(v);
  ar(cereal::make_nvp(name, stored));
  v = static_cast<Int>(stored);
}

/// An Rng: its four state words, then `<name>_has_cached_normal` and `<name>_cached_normal`.
template <typename Archive>
void rng_fields(Archive& ar, const std::string& name, std::array<std::uint64_t, 4>& words, bool& has_cached,
                double& cached) {
  std::vector<std::uint64_t> w(words.begin(), words.end());
  sequence(ar, name.c_str(), w, 4, "Rng state words");
  std::copy(w.begin(), w.end(), words.begin());
  ar(cereal::make_nvp((name + "_has_cached_normal").c_str(), has_cached),
     cereal::make_nvp((name + "_cached_normal").c_str(), cached));
  require<IoError>(std::isfinite(cached), "the Rng's cached normal is not finite");
}

// ---- blocks: a name, the block's version, then the part's fields ----------------------------
/// Whether a part's fields depend on its block's version (it has `loaded_version`).
template <typename Part, typename = void>
struct has_loaded_version : std::false_type {};
template <typename Part>
struct has_loaded_version<Part, std::void_t<decltype(std::declval<Part&>().loaded_version)>> : std::true_type {};
/// Tells such a part which version it reads.
template <typename Part>
void set_loaded_version(Part& part, std::uint32_t version) {
  if constexpr (has_loaded_version<Part>::value) part.loaded_version = version;
}

/// Wraps a part (anything with block_name, block_version and fields(archive)) as one block.
template <typename Part>
struct Block {
  Part& part;
  template <typename Archive>
  void save(Archive& ar) const {
    std::string name = part.block_name;
    text(ar, "block", name, "");
    ar(cereal::make_nvp("version", std::uint32_t{part.block_version}));
    part.fields(ar);
  }
  template <typename Archive>
  void load(Archive& ar) {
    std::string name;
    std::uint32_t version = 0;
    text(ar, "block", name, "bytes of block name");
    require<IoError>(name == part.block_name, "expected the block '", part.block_name, "', found '",
                     name.substr(0, 40), "'");
    ar(cereal::make_nvp("version", version));
    require<IoError>(version >= 1 && version <= part.block_version, "block '", name, "' has version ", version,
                     "; this build reads versions 1 to ", part.block_version);
    set_loaded_version(part, version);
    part.fields(ar);
  }
};

/// Writes or reads one part: as a block (format 3), or as the bare fields of format 1 and 2.
template <typename Archive, typename Part>
void part(Archive& ar, std::uint32_t file_version, Part& p) {
  if (file_version < 3) {
    set_loaded_version(p, 1);  // the fields of its first version
    p.fields(ar);
  } else
    ar(cereal::make_nvp(p.block_name, Block<Part>{p}));
}

/// Checks the version found in a file before anything else is read.
inline void check_version(std::uint32_t version) {
  require<IoError>(version >= checkpoint_oldest_version && version <= checkpoint_version,
                   "unexpected checkpoint version ", version, " (this build reads ", checkpoint_oldest_version, " to ",
                   checkpoint_version, ")");
}

/// The envelope's first fields: the format tag, the version and the kind (checked against `kinds` on load).
template <typename Archive>
void envelope(Archive& ar, CheckpointInfo& info, std::initializer_list<const char*> kinds) {
  std::string tag = checkpoint_format_tag;
  text(ar, "format", tag, "bytes of format tag");
  require<IoError>(tag == checkpoint_format_tag, "not an mlvae checkpoint (format tag '", tag.substr(0, 40),
                   "', expected '", checkpoint_format_tag, "')");
  ar(cereal::make_nvp("version", info.version));
  check_version(info.version);
  text(ar, "kind", info.kind, "bytes of checkpoint kind");
  if (kinds.size() == 0 || std::find(kinds.begin(), kinds.end(), info.kind) != kinds.end()) return;
  require<IoError>(info.kind != "model", "expected a training checkpoint, found kind 'model' (use load_model for ",
                   "model checkpoints)");
  throw IoError(concat("expected a ", *kinds.begin(), " checkpoint, found kind '", info.kind.substr(0, 40), "'"));
}

inline std::string latent_string(const std::vector<std::int64_t>& v) {
  std::string s = "{";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "}";
}

/// Block "model": what the model is. On load, checked against `want` (the receiving model) when there is one.
struct ModelPart {
  static constexpr const char* block_name = "model";
  /// 2: the GEMM kernel report after the parameter count.
  static constexpr std::uint32_t block_version = 2;
  CheckpointInfo info;
  const CheckpointInfo* want = nullptr;
  std::uint32_t loaded_version = block_version;  ///< the version being read (set by Block and part)

  template <typename Archive>
  void fields(Archive& ar) {
    text(ar, "scalar_type", info.scalar_type, "bytes of scalar type");
    ar(cereal::make_nvp("scalar_size", info.scalar_size));
    text(ar, "model_kind", info.model_kind, "bytes of model kind");
    text(ar, "architecture", info.architecture, "bytes of architecture");
    sequence(ar, "latent_sizes", info.latent_sizes, -1, "latent sizes", 16);
    ar(cereal::make_nvp("parameter_count", info.parameter_count));
    if (loaded_version >= 2) text(ar, "gemm_kernels", info.gemm_kernels, "bytes of the GEMM kernel report");
    if (is_loading_v<Archive> && want) check_matches(*want);
  }

  void check_matches(const CheckpointInfo& w) const {
    const CheckpointInfo& found = info;
    require<IoError>(found.scalar_type == w.scalar_type && found.scalar_size == w.scalar_size,
                     "scalar type differs: the checkpoint holds '", found.scalar_type, "' (", found.scalar_size,
                     " bytes), this model uses '", w.scalar_type, "' (", w.scalar_size, " bytes)");
    require<IoError>(found.model_kind == w.model_kind, "model kind differs: the checkpoint holds a ",
                     found.model_kind, ", this model is a ", w.model_kind);
    if (found.architecture != w.architecture) {
      std::size_t at = 0;
      while (at < found.architecture.size() && at < w.architecture.size() && found.architecture[at] == w.architecture[at])
        ++at;
      throw IoError(concat("architecture differs (first difference at character ", at, "): the checkpoint holds ",
                           found.architecture, ", this model is ", w.architecture));
    }
    require<IoError>(found.latent_sizes == w.latent_sizes, "latent sizes differ: the checkpoint holds ",
                     latent_string(found.latent_sizes), ", this model has ", latent_string(w.latent_sizes));
    require<IoError>(found.parameter_count == w.parameter_count, "parameter count differs: the checkpoint holds ",
                     found.parameter_count, ", this model has ", w.parameter_count);
  }
};

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
  for (const std::string& line : gemm_kernel_choices()) info.gemm_kernels += line + "\n";
  return info;
}

/// Block "parameters": every parameter of the model's ParameterStore, all finite.
template <typename T>
struct ParametersPart {
  static constexpr const char* block_name = "parameters";
  static constexpr std::uint32_t block_version = 1;
  Vector<T> values;
  std::int64_t expected;

  template <typename Archive>
  void fields(Archive& ar) {
    sequence(ar, "parameters", values, expected, "parameters");
    require<IoError>(values.allFinite(), "the stored parameters are not all finite");
  }
};

/// Block "adam": the step count and both moments (Adam's options are the trainer's, see OptionsPart).
template <typename T>
struct AdamPart {
  static constexpr const char* block_name = "adam";
  static constexpr std::uint32_t block_version = 1;
  std::int64_t step = 0;
  Vector<T> m, v;

  template <typename Archive>
  void fields(Archive& ar) {
    const std::int64_t n = m.size();
    ar(cereal::make_nvp("adam_step", step));
    require<IoError>(step >= 0, "the Adam step count is negative (", step, ")");
    sequence(ar, "adam_first_moment", m, n, "Adam first moments");
    sequence(ar, "adam_second_moment", v, n, "Adam second moments");
    require<IoError>(m.allFinite() && v.allFinite() && (v.array() >= T(0)).all(),
                     "the stored Adam moments are not finite (or a second moment is negative)");
  }
};

/// Block "noise_rng": the trainer's noise stream.
struct RngPart {
  static constexpr const char* block_name = "noise_rng";
  static constexpr std::uint32_t block_version = 1;
  std::array<std::uint64_t, 4> words{};
  bool has_cached = false;
  double cached = 0;

  template <typename Archive>
  void fields(Archive& ar) {
    rng_fields(ar, block_name, words, has_cached, cached);
  }
};

/// Block "progress": where the trainer is in its epoch, and how many steps it skipped.
struct ProgressPart {
  static constexpr const char* block_name = "progress";
  static constexpr std::uint32_t block_version = 1;
  std::int64_t step_in_epoch = 0, skipped = 0;

  template <typename Archive>
  void fields(Archive& ar) {
    ar(cereal::make_nvp("step_in_epoch", step_in_epoch), cereal::make_nvp("skipped_steps", skipped));
    require<IoError>(step_in_epoch >= 0 && skipped >= 0, "negative step counters (step_in_epoch ", step_in_epoch,
                     ", skipped ", skipped, ")");
  }
};

/// What each sampler adds to a training checkpoint: specialised per sampler type, giving
/// - `options_block`, `option_fields(ar, options)` (its options' fields), `check_options(found, mine)` and
///   `check_model_kind(kind)` (refuses, in a flat format-1/2 file, a model the sampler never trains);
/// - the part itself: `block_name`, `block_version`, a constructor from the sampler (what it restores and the
///   sizes a loaded state must have), `fields(ar)`, `legacy_fields(ar, progress)` (format 1/2 order) and `state()`.
template <typename Sampler>
struct SamplerPart;

/// Block "<sampler's options_block>": the trainer's options (Adam's, the sampler's, the noise seed, the
/// divergence policy). On load, the sampler options must equal `mine` when given.
template <typename Sampler>
struct OptionsPart {
  using Options = typename SamplerPart<Sampler>::TrainerOptions;
  static constexpr const char* block_name = SamplerPart<Sampler>::options_block;
  static constexpr std::uint32_t block_version = 1;
  Options options;
  const Options* mine = nullptr;

  template <typename Archive>
  void fields(Archive& ar) {
    AdamOptions& a = options.adam;
    ar(cereal::make_nvp("learning_rate", a.learning_rate), cereal::make_nvp("beta1", a.beta1),
       cereal::make_nvp("beta2", a.beta2), cereal::make_nvp("epsilon", a.epsilon),
       cereal::make_nvp("weight_decay", a.weight_decay), cereal::make_nvp("clip_norm", a.clip_norm));
    SamplerPart<Sampler>::option_fields(ar, options.sampler);
    auto on_divergence = static_cast<std::uint32_t>(options.on_divergence);
    ar(cereal::make_nvp("sampler_seed", options.sampler.seed), cereal::make_nvp("noise_seed", options.noise_seed),
       cereal::make_nvp("on_divergence", on_divergence));
    if (!is_loading_v<Archive>) return;
    a.validate();
    require<IoError>(on_divergence <= 1, "invalid divergence policy ", on_divergence, " in the checkpoint");
    options.on_divergence = static_cast<DivergencePolicy>(on_divergence);
    if (mine) SamplerPart<Sampler>::check_options(options.sampler, mine->sampler);
  }
  /// Formats 1 and 2 stored these fields as one nested object "options" (see options_part).
  template <typename Archive>
  void serialize(Archive& ar) {
    fields(ar);
  }
};

/// Writes or reads the options: as a block (format 3), or as the nested object "options" of formats 1 and 2.
template <typename Archive, typename Part>
void options_part(Archive& ar, std::uint32_t file_version, Part& p) {
  if (file_version < 3)
    ar(cereal::make_nvp("options", p));
  else
    part(ar, file_version, p);
}

/// Checks every value is finite before a save (a diverged run is never written).
template <typename Training>
void require_finite_state(Training& trainer) {
  const auto& adam = trainer.optimizer();
  require<DivergenceError>(trainer.model().parameters().values.allFinite(), "refusing to write a checkpoint: the ",
                           "model's parameters are not all finite (the training diverged)");
  require<DivergenceError>(adam.first_moment().allFinite() && adam.second_moment().allFinite(),
                           "refusing to write a checkpoint: the Adam moments are not all finite");
}

/// A whole training run as its parts, captured from a trainer: written as is, or read over (each part checking
/// what it reads against the trainer) and then restored into the trainer.
template <typename Training>
struct TrainingRecord {
  using Model = std::decay_t<decltype(std::declval<Training&>().model())>;
  using T = typename Model::Scalar;
  using Sampler = std::decay_t<decltype(std::declval<Training&>().sampler())>;
  using Options = typename SamplerPart<Sampler>::TrainerOptions;

  const CheckpointInfo want;
  const Options mine;
  ModelPart model{want, &want, ModelPart::block_version};
  ParametersPart<T> parameters;
  OptionsPart<Sampler> options{mine, &mine};
  AdamPart<T> adam;
  RngPart noise;
  ProgressPart progress;
  SamplerPart<Sampler> sampler;

  explicit TrainingRecord(Training& t)
      : want(describe_model(t.model(), "training")), mine(t.options()),
        parameters{t.model().parameters().values, want.parameter_count},
        adam{t.optimizer().step_count(), t.optimizer().first_moment(), t.optimizer().second_moment()},
        noise{t.noise().state(), t.noise().has_cached_normal(), t.noise().cached_normal()},
        progress{t.step_in_epoch(), t.skipped_steps()}, sampler(t.sampler()) {}

  template <typename Archive>
  void fields(Archive& ar) {
    envelope(ar, model.info, {"training"});
    const std::uint32_t v = model.info.version;
    part(ar, v, model);
    part(ar, v, parameters);
    options_part(ar, v, options);
    part(ar, v, adam);
    part(ar, v, noise);
    if (v < 3) return sampler.legacy_fields(ar, progress);
    part(ar, v, progress);
    part(ar, v, sampler);
  }

  /// Puts the loaded state into `t`: the sampler validates first (changing nothing on error); nothing below throws.
  void restore(Training& t) const {
    t.sampler().restore(sampler.state());
    t.set_adam_options(options.options.adam);
    t.optimizer().set_state(static_cast<long long>(adam.step), adam.m, adam.v);
    t.model().parameters().values = parameters.values;
    t.model().parameters().zero_gradients();
    t.noise().set_state(noise.words, noise.has_cached, noise.cached);
    t.set_step_in_epoch(static_cast<Index>(progress.step_in_epoch));
    t.set_skipped_steps(progress.skipped);
  }
};

/// The grouped sampler's options and block "grouped_sampler": the observation count, epoch, Rng, order,
/// groups, cursor and pending flag.
template <>
struct SamplerPart<GroupedSampler> {
  using TrainerOptions = mlvae::TrainerOptions;
  static constexpr const char* options_block = "trainer_options";
  static constexpr const char* block_name = "grouped_sampler";
  static constexpr std::uint32_t block_version = 1;
  GroupedSamplerState s;
  std::int64_t observations, expected_observations;

  explicit SamplerPart(const GroupedSampler& sampler)
      : s(sampler.state()), observations(sampler.observation_count()), expected_observations(observations) {}
  const GroupedSamplerState& state() const { return s; }

  template <typename Archive>
  static void option_fields(Archive& ar, GroupedSamplerOptions& o) {
    int64_field(ar, "groups_per_batch", o.groups_per_batch);
    int64_field(ar, "min_group_size", o.min_group_size);
    int64_field(ar, "max_group_size", o.max_group_size);
    require<IoError>(o.groups_per_batch >= 1 && o.min_group_size >= 1 && o.max_group_size >= o.min_group_size,
                     "invalid sampler options in the checkpoint (groups_per_batch ", o.groups_per_batch,
                     ", group sizes ", o.min_group_size, "..", o.max_group_size, ")");
  }
  static void check_options(const GroupedSamplerOptions& found, const GroupedSamplerOptions& mine) {
    require<IoError>(found.groups_per_batch == mine.groups_per_batch && found.min_group_size == mine.min_group_size &&
                         found.max_group_size == mine.max_group_size && found.seed == mine.seed,
                     "sampler options differ: the checkpoint has groups_per_batch ", found.groups_per_batch,
                     ", group sizes ", found.min_group_size, "..", found.max_group_size, ", seed ", found.seed,
                     "; this trainer has ", mine.groups_per_batch, ", ", mine.min_group_size, "..",
                     mine.max_group_size, ", seed ", mine.seed);
  }
  static void check_model_kind(const std::string& kind) {
    require<IoError>(kind.rfind("SemiSupervisedVAE", 0) != 0, "expected a grouped training checkpoint, found ",
                     "model kind '", kind, "' (use read_semisupervised_checkpoint_options)");
  }

  template <typename Archive>
  void fields(Archive& ar) {
    observation_count(ar);
    int64_field(ar, "epoch", s.epoch);
    plan(ar);
  }
  /// Formats 1 and 2: the epoch, the progress counters, the observation count, then the plan.
  template <typename Archive>
  void legacy_fields(Archive& ar, ProgressPart& progress) {
    int64_field(ar, "epoch", s.epoch);
    progress.fields(ar);
    observation_count(ar);
    plan(ar);
  }

private:
  template <typename Archive>
  void observation_count(Archive& ar) {
    ar(cereal::make_nvp("observations", observations));
    require<IoError>(observations == expected_observations, "the training data differ: the checkpoint was ",
                     "written for ", observations, " observations, this trainer has ", expected_observations);
  }
  template <typename Archive>
  void plan(Archive& ar) {
    rng_fields(ar, "sampler_rng", s.rng_state, s.rng_has_cached_normal, s.rng_cached_normal);
    sequence(ar, "sampler_order", s.order, observations, "sampler order entries");
    std::vector<std::int64_t> begin, end;
    std::vector<std::int32_t> key;
    for (const auto& g : s.groups) {
      begin.push_back(g.begin);
      end.push_back(g.end);
      key.push_back(g.key);
    }
    sequence(ar, "sampler_group_begin", begin, -1, "sampler groups", static_cast<std::uint64_t>(observations));
    const auto groups = static_cast<std::int64_t>(begin.size());
    sequence(ar, "sampler_group_end", end, groups, "sampler group ends");
    sequence(ar, "sampler_group_key", key, groups, "sampler group keys");
    s.groups.clear();
    for (std::size_t g = 0; g < begin.size(); ++g) s.groups.push_back({begin[g], end[g], key[g]});
    int64_field(ar, "sampler_cursor", s.cursor);
    ar(cereal::make_nvp("sampler_pending", s.pending));
  }
};

/// Reads the envelope and the model block of a checkpoint of any kind.
template <typename Archive>
CheckpointInfo read_model_part(Archive& ar, std::initializer_list<const char*> kinds) {
  ModelPart model;
  envelope(ar, model.info, kinds);
  part(ar, model.info.version, model);
  return model.info;
}

/// The trainer options stored in a training checkpoint of a trainer whose sampler is `Sampler`.
template <typename Sampler, typename Archive>
typename SamplerPart<Sampler>::TrainerOptions read_training_options(Archive& ar) {
  const CheckpointInfo info = read_model_part(ar, {"training"});
  SamplerPart<Sampler>::check_model_kind(info.model_kind);
  require<IoError>(info.parameter_count >= 0 && info.parameter_count < (std::int64_t{1} << 36),
                   "implausible parameter count ", info.parameter_count);
  if (info.scalar_type == "float") {
    ParametersPart<float> skipped{{}, info.parameter_count};
    part(ar, info.version, skipped);
  } else {
    ParametersPart<double> skipped{{}, info.parameter_count};
    part(ar, info.version, skipped);
  }
  OptionsPart<Sampler> options;
  options_part(ar, info.version, options);
  return options.options;
}

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

/// The last field of a version-2 or -3 JSON checkpoint, as written before its value is filled in.
inline constexpr const char* json_crc_field = "\"crc32\": \"";
inline constexpr const char* json_crc_placeholder = "00000000";


/// A binary checkpoint starts with cereal's endianness byte, the tag's 8-byte length (16) and the
/// tag, then the uint32 version. Checks all that, then the CRC-32 trailer of a version-2 or -3 file.
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
/// the tag and the version, then the CRC-32 of a version-2 or -3 file.
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

/// Reads the envelope and the model block of a checkpoint (model or training) without a model: version, kind,
/// scalar type, architecture, latent sizes, parameter count. @throws IoError.
inline CheckpointInfo read_checkpoint_info(const std::string& path) {
  CheckpointInfo info;
  const std::string bytes = detail::read_file_bytes(path);
  detail::with_input_archive(path, bytes, [&](auto& ar) { info = detail::read_model_part(ar, {}); });
  return info;
}

// ---- model checkpoints -----------------------------------------------------------------------

/// cereal serialization of a whole model (every layer's parameters, which live in the model's one
/// ParameterStore, plus the "model" block that describes it): `archive(mlvae::cereal_model(model))` in any
/// cereal archive. Loading checks the description against the model and throws IoError naming what differs
/// (the model is unchanged then). It also reads the model part of a training checkpoint, which starts with
/// the same blocks.
template <typename Model>
struct CerealModel {
  /// The model serialised or filled in.
  Model& model;

  /// Writes the envelope, the model block and the parameters; throws DivergenceError (nothing written) when a
  /// parameter is not finite.
  template <typename Archive>
  void save(Archive& ar) const {
    require<DivergenceError>(model.parameters().values.allFinite(),
                             "refusing to save a model with non-finite parameters");
    fields(ar, "model");
  }
  /// Reads and checks the model block, then the parameters; throws IoError when the model block does not match
  /// the model or a stored value is not finite (the model is unchanged then).
  template <typename Archive>
  void load(Archive& ar) {
    // Copied into the store's buffer, to which the layers are bound: assigning the temporary would move
    // (swap) its buffer in and leave the layers reading freed memory.
    const Vector<typename Model::Scalar> loaded = fields(ar, "training");
    model.parameters().values = loaded;
  }

private:
  template <typename Archive>
  Vector<typename Model::Scalar> fields(Archive& ar, const char* kind) const {
    const CheckpointInfo want = detail::describe_model(model, "model");
    detail::ModelPart description{want, &want, detail::ModelPart::block_version};
    detail::envelope(ar, description.info, {"model", kind});
    detail::part(ar, description.info.version, description);
    detail::ParametersPart<typename Model::Scalar> parameters{model.parameters().values, want.parameter_count};
    detail::part(ar, description.info.version, parameters);
    return parameters.values;
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

// ---- training checkpoints (any trainer whose sampler has a detail::SamplerPart) -----------------

/// Serialises the whole training state of `trainer` into memory (see save_checkpoint).
template <typename Training>
std::string checkpoint_bytes(Training& trainer, CheckpointFormat format = CheckpointFormat::Binary) {
  trainer.sync_to_host();  // a trainer whose steps run on a device: its state back into the host model
  detail::require_finite_state(trainer);
  detail::TrainingRecord<Training> record(trainer);
  return detail::write_to_string(format, [&](auto& ar) { record.fields(ar); });
}

/// Writes the complete training state — model (architecture + parameters; first copied back from the
/// device when the trainer's steps run on one), the trainer's options, Adam
/// (step, moments), the noise Rng, the progress counters and the sampler's mid-epoch state — to `path`,
/// atomically: a crash or error during the save leaves a previous file at `path` intact.
/// @throws DivergenceError (nothing written) when parameters or moments are not finite.
/// @throws IoError when the file cannot be written.
template <typename Training>
void save_checkpoint(const std::string& path, Training& trainer, CheckpointFormat format = CheckpointFormat::Binary) {
  write_file_atomically(path, checkpoint_bytes(trainer, format));
}

/// The options stored in a training checkpoint (to build the trainer that resumes it): TrainerOptions, or
/// SemiSupervisedTrainerOptions for Sampler = SemiSupervisedSampler. @throws IoError.
template <typename Sampler = GroupedSampler>
typename detail::SamplerPart<Sampler>::TrainerOptions read_checkpoint_options(const std::string& path) {
  typename detail::SamplerPart<Sampler>::TrainerOptions result;
  detail::with_input_archive(path, detail::read_file_bytes(path),
                             [&](auto& ar) { result = detail::read_training_options<Sampler>(ar); });
  return result;
}

/// Restores a training state from checkpoint bytes in memory (what checkpoint_bytes() returns; e.g.
/// broadcast by data-parallel training) exactly as load_checkpoint() does from a file; `name`
/// stands for the file in error messages. @throws IoError; the trainer is then unchanged.
template <typename Training>
void load_checkpoint_bytes(const std::string& bytes, Training& trainer, const std::string& name) {
  detail::with_input_archive(name, bytes, [&](auto& ar) {
    detail::TrainingRecord<Training> record(trainer);
    record.fields(ar);
    record.restore(trainer);
  });
  trainer.sync_from_host();  // and onto the device its steps run on, if any
}

/// Restores a training state written by save_checkpoint into `trainer` (and its model), which must have the
/// same model kind, architecture, scalar type, training data and sampler options. The Adam options are taken
/// from the checkpoint; the trainer's divergence policy is kept. Everything is validated before anything is
/// changed. @throws IoError naming the file and what differs or is corrupted; the trainer is then unchanged.
template <typename Training>
void load_checkpoint(const std::string& path, Training& trainer) {
  load_checkpoint_bytes(detail::read_file_bytes(path), trainer, path);
}

}  // namespace mlvae
