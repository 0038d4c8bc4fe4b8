/// @file
/// mlvae/io/semisupervised_checkpoint.hpp — what the semi-supervised sampler adds to the checkpoints of
/// io/checkpoint.hpp: its options' fields and its block "semisupervised_sampler" (the labelled subset, the
/// unlabelled count, the Rng, epoch, batch and plans), so that save_checkpoint / load_checkpoint write and
/// restore a SemiSupervisedTrainer exactly (a resumed run continues bit for bit). The *_semisupervised_*
/// names below are the same calls under the names earlier versions had.
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
/// The semi-supervised sampler's options and block "semisupervised_sampler". On load the labelled subset and the
/// unlabelled count must equal the trainer's, and the plans are bounded by an epoch's batches.
template <>
struct SamplerPart<SemiSupervisedSampler> {
  using TrainerOptions = mlvae::SemiSupervisedTrainerOptions;
  static constexpr const char* options_block = "semisupervised_trainer_options";
  static constexpr const char* block_name = "semisupervised_sampler";
  static constexpr std::uint32_t block_version = 1;
  SemiSupervisedSamplerState s;
  std::vector<Index> labelled;
  std::vector<int> labels;
  std::int64_t unlabelled;
  const std::vector<Index> my_labelled;
  const std::vector<int> my_labels;
  const std::int64_t my_unlabelled;
  const std::uint64_t plan_bound;

  explicit SamplerPart(const SemiSupervisedSampler& sampler)
      : s(sampler.state()), labelled(sampler.labelled_indices()), labels(sampler.labelled_labels()),
        unlabelled(sampler.unlabelled_count()), my_labelled(labelled), my_labels(labels), my_unlabelled(unlabelled),
        plan_bound(static_cast<std::uint64_t>(sampler.batches_per_epoch()) *
                   static_cast<std::uint64_t>(std::max(sampler.options().labelled_per_batch,
                                                       sampler.options().unlabelled_per_batch))) {}
  const SemiSupervisedSamplerState& state() const { return s; }

  template <typename Archive>
  static void option_fields(Archive& ar, SemiSupervisedSamplerOptions& o) {
    int64_field(ar, "labelled_per_batch", o.labelled_per_batch);
    int64_field(ar, "unlabelled_per_batch", o.unlabelled_per_batch);
    require<IoError>(o.labelled_per_batch >= 1 && o.unlabelled_per_batch >= 1, "invalid batch composition in the ",
                     "checkpoint (", o.labelled_per_batch, " labelled, ", o.unlabelled_per_batch, " unlabelled)");
  }
  static void check_options(const SemiSupervisedSamplerOptions& found, const SemiSupervisedSamplerOptions& mine) {
    require<IoError>(found.labelled_per_batch == mine.labelled_per_batch &&
                         found.unlabelled_per_batch == mine.unlabelled_per_batch && found.seed == mine.seed,
                     "sampler options differ: the checkpoint has ", found.labelled_per_batch, " labelled + ",
                     found.unlabelled_per_batch, " unlabelled per batch, seed ", found.seed, "; this trainer has ",
                     mine.labelled_per_batch, " + ", mine.unlabelled_per_batch, ", seed ", mine.seed);
  }
  static void check_model_kind(const std::string& kind) {
    require<IoError>(kind.rfind("SemiSupervisedVAE", 0) == 0, "expected a SemiSupervisedVAE checkpoint, found ",
                     "model kind '", kind, "'");
  }

  template <typename Archive>
  void fields(Archive& ar) {
    sequence(ar, "labelled_indices", labelled, static_cast<std::int64_t>(my_labelled.size()),
             "labelled indices (the labelled subset differs)");
    sequence(ar, "labelled_labels", labels, static_cast<std::int64_t>(my_labels.size()), "labelled labels");
    require<IoError>(labelled == my_labelled && labels == my_labels,
                     "the labelled subset differs from this trainer's (another --labels count or seed?)");
    ar(cereal::make_nvp("unlabelled_count", unlabelled));
    require<IoError>(unlabelled == my_unlabelled, "the training data differ: the checkpoint has ", unlabelled,
                     " unlabelled examples, this trainer ", my_unlabelled);
    rng_fields(ar, "sampler_rng", s.rng_state, s.rng_has_cached_normal, s.rng_cached_normal);
    int64_field(ar, "epoch", s.epoch);
    int64_field(ar, "batch", s.batch);
    sequence(ar, "labelled_plan", s.labelled_plan, -1, "labelled plan entries", plan_bound);
    sequence(ar, "unlabelled_plan", s.unlabelled_plan, -1, "unlabelled plan entries", plan_bound);
  }
  /// Formats 1 and 2: the progress counters, then the same fields.
  template <typename Archive>
  void legacy_fields(Archive& ar, ProgressPart& progress) {
    progress.fields(ar);
    fields(ar);
  }
};
}  // namespace detail

/// save_checkpoint, under its earlier name. @throws DivergenceError (nothing written), IoError.
template <typename Model>
void save_semisupervised_checkpoint(const std::string& path, SemiSupervisedTrainer<Model>& trainer,
                                    CheckpointFormat format = CheckpointFormat::Binary) {
  save_checkpoint(path, trainer, format);
}

/// read_checkpoint_options<SemiSupervisedSampler>, under its earlier name. @throws IoError.
inline SemiSupervisedTrainerOptions read_semisupervised_checkpoint_options(const std::string& path) {
  return read_checkpoint_options<SemiSupervisedSampler>(path);
}

/// load_checkpoint, under its earlier name. @throws IoError; the trainer is then unchanged.
template <typename Model>
void load_semisupervised_checkpoint(const std::string& path, SemiSupervisedTrainer<Model>& trainer) {
  load_checkpoint(path, trainer);
}

}  // namespace mlvae
