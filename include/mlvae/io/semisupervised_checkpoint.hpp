/// @file
/// mlvae/io/semisupervised_checkpoint.hpp — training checkpoints of a SemiSupervisedTrainer in the format of
/// io/checkpoint.hpp: the same versioned header (model kind "SemiSupervisedVAE/siddharth" or "/m2", the
/// architecture and objective string, scalar type, parameter count), the same bounded sequences and Rng
/// records, written atomically, validated before anything changes, every failure an IoError naming the file.
/// After the header: parameters, options, Adam state, noise Rng, counters, the labelled subset, and the
/// sampler's mid-epoch state — so a resumed run continues bit for bit. save_model / load_model work unchanged.
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/data/semisupervised_sampler.hpp"
#include "mlvae/io/checkpoint.hpp"
#include "mlvae/train/semisupervised_trainer.hpp"

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace mlvae {

namespace detail {
/// SemiSupervisedTrainerOptions in fixed-width fields.
struct SemiSupervisedOptionsRecord {
  AdamOptions adam;
  std::int64_t labelled_per_batch = 0, unlabelled_per_batch = 0;
  std::uint64_t sampler_seed = 0, noise_seed = 0;
  std::uint32_t on_divergence = 0;

  static SemiSupervisedOptionsRecord from(const SemiSupervisedTrainerOptions& o) {
    SemiSupervisedOptionsRecord r;
    r.adam = o.adam;
    r.labelled_per_batch = o.sampler.labelled_per_batch;
    r.unlabelled_per_batch = o.sampler.unlabelled_per_batch;
    r.sampler_seed = o.sampler.seed;
    r.noise_seed = o.noise_seed;
    r.on_divergence = static_cast<std::uint32_t>(o.on_divergence);
    return r;
  }
  SemiSupervisedTrainerOptions to_options() const {
    SemiSupervisedTrainerOptions o;
    o.adam = adam;
    o.sampler = {static_cast<Index>(labelled_per_batch), static_cast<Index>(unlabelled_per_batch), sampler_seed};
    o.noise_seed = noise_seed;
    o.on_divergence = static_cast<DivergencePolicy>(on_divergence);
    return o;
  }
  template <typename Archive>
  void serialize(Archive& ar) {
    serialize_adam_options(ar, adam);
    ar(cereal::make_nvp("labelled_per_batch", labelled_per_batch),
       cereal::make_nvp("unlabelled_per_batch", unlabelled_per_batch), cereal::make_nvp("sampler_seed", sampler_seed),
       cereal::make_nvp("noise_seed", noise_seed), cereal::make_nvp("on_divergence", on_divergence));
  }
  void validate() const {
    adam.validate();
    require<IoError>(labelled_per_batch >= 1 && unlabelled_per_batch >= 1, "invalid batch composition in the ",
                     "checkpoint (", labelled_per_batch, " labelled, ", unlabelled_per_batch, " unlabelled)");
    require<IoError>(on_divergence <= 1, "invalid divergence policy ", on_divergence, " in the checkpoint");
  }
};

/// Reads the header of a semi-supervised training checkpoint and skips its parameters.
template <typename Archive>
CheckpointInfo load_semisupervised_header(Archive& ar) {
  const CheckpointInfo info = load_header(ar);
  require<IoError>(info.kind == "training", "expected a training checkpoint, found kind '", info.kind, "'");
  require<IoError>(info.model_kind.rfind("SemiSupervisedVAE", 0) == 0, "expected a SemiSupervisedVAE checkpoint, ",
                   "found model kind '", info.model_kind, "'");
  return info;
}
}  // namespace detail

/// Serialises the whole training state of `trainer` into memory (see save_semisupervised_checkpoint).
template <typename Model>
std::string semisupervised_checkpoint_bytes(SemiSupervisedTrainer<Model>& trainer,
                                            CheckpointFormat format = CheckpointFormat::Binary) {
  const Model& model = trainer.model();
  const auto& values = model.parameters().values;
  const auto& adam = trainer.optimizer();
  require<DivergenceError>(values.allFinite(), "refusing to write a checkpoint: the model's parameters are not all "
                           "finite (the training diverged)");
  require<DivergenceError>(adam.first_moment().allFinite() && adam.second_moment().allFinite(),
                           "refusing to write a checkpoint: the Adam moments are not all finite");
  const CheckpointInfo info = detail::describe_model(model, "training");
  const auto options = detail::SemiSupervisedOptionsRecord::from(trainer.options());
  const SemiSupervisedSamplerState s = trainer.sampler().state();
  const auto to64 = [](const std::vector<Index>& v) { return std::vector<std::int64_t>(v.begin(), v.end()); };
  const std::vector<std::int64_t> labelled = to64(trainer.sampler().labelled_indices());
  const std::vector<std::int32_t> labels(trainer.sampler().labelled_labels().begin(),
                                         trainer.sampler().labelled_labels().end());
  const std::vector<std::int64_t> lplan = to64(s.labelled_plan), uplan = to64(s.unlabelled_plan);
  const std::int64_t adam_step = adam.step_count(), step_in_epoch = trainer.step_in_epoch(),
                     skipped = trainer.skipped_steps(), unlabelled = trainer.sampler().unlabelled_count(),
                     epoch = s.epoch, batch = s.batch;
  return detail::write_to_string(format, [&](auto& ar) {
    detail::save_header(ar, info);
    detail::save_sequence(ar, "parameters", values.data(), values.size());
    ar(cereal::make_nvp("options", options));
    ar(cereal::make_nvp("adam_step", adam_step));
    detail::save_sequence(ar, "adam_first_moment", adam.first_moment().data(), adam.first_moment().size());
    detail::save_sequence(ar, "adam_second_moment", adam.second_moment().data(), adam.second_moment().size());
    detail::save_rng(ar, "noise_rng", trainer.noise());
    ar(cereal::make_nvp("step_in_epoch", step_in_epoch), cereal::make_nvp("skipped_steps", skipped));
    detail::save_sequence(ar, "labelled_indices", labelled.data(), static_cast<Index>(labelled.size()));
    detail::save_sequence(ar, "labelled_labels", labels.data(), static_cast<Index>(labels.size()));
    ar(cereal::make_nvp("unlabelled_count", unlabelled));
    Rng sampler_rng;
    sampler_rng.set_state(s.rng_state, s.rng_has_cached_normal, s.rng_cached_normal);
    detail::save_rng(ar, "sampler_rng", sampler_rng);
    ar(cereal::make_nvp("epoch", epoch), cereal::make_nvp("batch", batch));
    detail::save_sequence(ar, "labelled_plan", lplan.data(), static_cast<Index>(lplan.size()));
    detail::save_sequence(ar, "unlabelled_plan", uplan.data(), static_cast<Index>(uplan.size()));
  });
}

/// Writes the complete training state of `trainer` to `path` atomically (a failure leaves a previous file intact).
/// @throws DivergenceError (nothing written) when parameters or moments are not finite; IoError on write failure.
template <typename Model>
void save_semisupervised_checkpoint(const std::string& path, SemiSupervisedTrainer<Model>& trainer,
                                    CheckpointFormat format = CheckpointFormat::Binary) {
  write_file_atomically(path, semisupervised_checkpoint_bytes(trainer, format));
}

/// The SemiSupervisedTrainerOptions stored in a checkpoint (to build the trainer that resumes it). @throws IoError.
inline SemiSupervisedTrainerOptions read_semisupervised_checkpoint_options(const std::string& path) {
  SemiSupervisedTrainerOptions result;
  const std::string bytes = detail::read_file_bytes(path);
  detail::with_input_archive(path, bytes, [&](auto& ar) {
    const CheckpointInfo info = detail::load_semisupervised_header(ar);
    detail::skip_parameters(ar, info);
    detail::SemiSupervisedOptionsRecord record;
    ar(cereal::make_nvp("options", record));
    record.validate();
    result = record.to_options();
  });
  return result;
}

/// Restores a state written by save_semisupervised_checkpoint into `trainer`, which must have the same model
/// kind, architecture and objective, scalar type, labelled subset, unlabelled count and sampler options. The Adam
/// options come from the checkpoint; the divergence policy is kept. Everything is validated first.
/// @throws IoError naming the file and what differs or is corrupted; the trainer is then unchanged.
template <typename Model>
void load_semisupervised_checkpoint(const std::string& path, SemiSupervisedTrainer<Model>& trainer) {
  using T = typename Model::Scalar;
  Model& model = trainer.model();
  const std::string bytes = detail::read_file_bytes(path);
  detail::with_input_archive(path, bytes, [&](auto& ar) {
    const CheckpointInfo info = detail::load_semisupervised_header(ar);
    detail::check_header_matches(info, model);
    const auto n_params = static_cast<std::int64_t>(model.parameters().size());
    Vector<T> values, m, v;
    detail::load_sequence(ar, "parameters", values, n_params, "parameters");
    require<IoError>(values.allFinite(), "the stored parameters are not all finite");
    detail::SemiSupervisedOptionsRecord record;
    ar(cereal::make_nvp("options", record));
    record.validate();
    const SemiSupervisedTrainerOptions stored = record.to_options();
    const SemiSupervisedSamplerOptions& mine = trainer.sampler().options();
    require<IoError>(stored.sampler.labelled_per_batch == mine.labelled_per_batch &&
                         stored.sampler.unlabelled_per_batch == mine.unlabelled_per_batch &&
                         stored.sampler.seed == mine.seed,
                     "sampler options differ: the checkpoint has ", stored.sampler.labelled_per_batch, " labelled + ",
                     stored.sampler.unlabelled_per_batch, " unlabelled per batch, seed ", stored.sampler.seed,
                     "; this trainer has ", mine.labelled_per_batch, " + ", mine.unlabelled_per_batch, ", seed ",
                     mine.seed);
    std::int64_t adam_step = 0;
    ar(cereal::make_nvp("adam_step", adam_step));
    require<IoError>(adam_step >= 0, "the Adam step count is negative (", adam_step, ")");
    detail::load_sequence(ar, "adam_first_moment", m, n_params, "Adam first moments");
    detail::load_sequence(ar, "adam_second_moment", v, n_params, "Adam second moments");
    require<IoError>(m.allFinite() && v.allFinite() && (v.array() >= T(0)).all(),
                     "the stored Adam moments are not finite (or a second moment is negative)");
    const detail::RngState noise = detail::load_rng(ar, "noise_rng");
    std::int64_t step_in_epoch = 0, skipped = 0, unlabelled = 0, epoch = 0, batch = 0;
    ar(cereal::make_nvp("step_in_epoch", step_in_epoch), cereal::make_nvp("skipped_steps", skipped));
    require<IoError>(step_in_epoch >= 0 && skipped >= 0, "negative step counters (step_in_epoch ", step_in_epoch,
                     ", skipped ", skipped, ")");
    const auto& my_labelled = trainer.sampler().labelled_indices();
    const auto& my_labels = trainer.sampler().labelled_labels();
    std::vector<std::int64_t> labelled;
    std::vector<std::int32_t> labels;
    detail::load_sequence(ar, "labelled_indices", labelled, static_cast<std::int64_t>(my_labelled.size()),
                          "labelled indices (the labelled subset differs)");
    detail::load_sequence(ar, "labelled_labels", labels, static_cast<std::int64_t>(my_labels.size()),
                          "labelled labels");
    require<IoError>(std::equal(labelled.begin(), labelled.end(), my_labelled.begin()) &&
                         std::equal(labels.begin(), labels.end(), my_labels.begin()),
                     "the labelled subset differs from this trainer's (another --labels count or seed?)");
    ar(cereal::make_nvp("unlabelled_count", unlabelled));
    require<IoError>(unlabelled == trainer.sampler().unlabelled_count(), "the training data differ: the checkpoint ",
                     "has ", unlabelled, " unlabelled examples, this trainer ", trainer.sampler().unlabelled_count());
    const detail::RngState sampler_rng = detail::load_rng(ar, "sampler_rng");
    ar(cereal::make_nvp("epoch", epoch), cereal::make_nvp("batch", batch));
    std::vector<std::int64_t> lplan, uplan;
    const auto bound = static_cast<std::uint64_t>(trainer.sampler().batches_per_epoch()) *
                       static_cast<std::uint64_t>(std::max(mine.labelled_per_batch, mine.unlabelled_per_batch));
    detail::load_sequence(ar, "labelled_plan", lplan, -1, "labelled plan entries", bound);
    detail::load_sequence(ar, "unlabelled_plan", uplan, -1, "unlabelled plan entries", bound);

    SemiSupervisedSamplerState s;
    s.rng_state = sampler_rng.words;
    s.rng_has_cached_normal = sampler_rng.has_cached;
    s.rng_cached_normal = sampler_rng.cached;
    s.epoch = static_cast<Index>(epoch);
    s.batch = static_cast<Index>(batch);
    s.labelled_plan.assign(lplan.begin(), lplan.end());
    s.unlabelled_plan.assign(uplan.begin(), uplan.end());

    // Commit: the sampler validates first (changing nothing on error); nothing below throws.
    trainer.sampler().restore(s);
    trainer.set_adam_options(stored.adam);
    trainer.optimizer().set_state(static_cast<long long>(adam_step), m, v);
    model.parameters().values = values;
    model.parameters().zero_gradients();
    trainer.noise().set_state(noise.words, noise.has_cached, noise.cached);
    trainer.set_step_in_epoch(static_cast<Index>(step_in_epoch));
    trainer.set_skipped_steps(skipped);
  });
}

}  // namespace mlvae
