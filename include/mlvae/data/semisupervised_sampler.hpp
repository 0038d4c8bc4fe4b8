/// @file
/// mlvae/data/semisupervised_sampler.hpp — a fixed labelled subset balanced over classes, chosen from a seed,
/// and a sampler that fills each minibatch with `labelled_per_batch` labelled and `unlabelled_per_batch`
/// unlabelled examples. An epoch has max(⌈L/l⌉, ⌈U/u⌉) batches; each pool is walked through fresh
/// permutations, so every example is visited at least once per epoch and the pool that sets the epoch
/// length exactly once (its last batch may be short). docs/semisupervised.md, "Labelled subsets and sampling".
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/random.hpp"
#include "mlvae/core/types.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <numeric>
#include <vector>

namespace mlvae {

/// `count` indices into `labels`, `count / classes` of each class (the first `count % classes` classes, in a
/// seeded random order, get one more), drawn uniformly without replacement with `seed`; sorted ascending.
/// @throws ArgumentError when count < 1, a label is outside [0, classes), or a class has too few examples.
inline std::vector<Index> balanced_labelled_subset(const std::vector<int>& labels, Index count, int classes,
                                                   std::uint64_t seed) {
  require<ArgumentError>(classes >= 1, "balanced_labelled_subset: expected at least one class, found ", classes);
  require<ArgumentError>(count >= 1 && count <= static_cast<Index>(labels.size()),
                         "balanced_labelled_subset: expected 1 <= count <= ", labels.size(), ", found ", count);
  std::vector<std::vector<Index>> members(static_cast<std::size_t>(classes));
  for (std::size_t i = 0; i < labels.size(); ++i) {
    require<ArgumentError>(labels[i] >= 0 && labels[i] < classes, "balanced_labelled_subset: label ", labels[i],
                           " at index ", i, " is outside [0, ", classes, ")");
    members[static_cast<std::size_t>(labels[i])].push_back(static_cast<Index>(i));
  }
  Rng rng(seed);
  std::vector<int> class_order(static_cast<std::size_t>(classes));
  std::iota(class_order.begin(), class_order.end(), 0);
  std::shuffle(class_order.begin(), class_order.end(), rng);
  std::vector<Index> out;
  for (int rank = 0; rank < classes; ++rank) {
    const int c = class_order[static_cast<std::size_t>(rank)];
    const Index want = count / classes + (rank < count % classes ? 1 : 0);
    auto& m = members[static_cast<std::size_t>(c)];
    require<ArgumentError>(static_cast<Index>(m.size()) >= want, "balanced_labelled_subset: class ", c, " has ",
                           m.size(), " examples, ", want, " are needed for ", count, " balanced labels");
    // Partial Fisher–Yates: the first `want` entries become a uniform sample without replacement.
    for (Index i = 0; i < want; ++i) {
      const auto r = static_cast<std::size_t>(i) +
                     static_cast<std::size_t>(rng.uniform_index(static_cast<std::uint64_t>(m.size()) - static_cast<std::uint64_t>(i)));
      std::swap(m[static_cast<std::size_t>(i)], m[r]);
      out.push_back(m[static_cast<std::size_t>(i)]);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

/// Batch composition and seed of a SemiSupervisedSampler.
struct SemiSupervisedSamplerOptions {
  Index labelled_per_batch = 32;     ///< labelled examples in each batch (≥ 1)
  Index unlabelled_per_batch = 96;   ///< unlabelled examples in each batch (≥ 1)
  std::uint64_t seed = 1;            ///< seed of the permutations
};

/// One minibatch: indices into the data set and their labels, labelled first; unlabelled examples carry −1.
struct SemiSupervisedBatch {
  std::vector<Index> indices;  ///< columns of the data set
  std::vector<int> labels;     ///< the label of each labelled member, −1 for each unlabelled one
};

/// Everything a SemiSupervisedSampler needs to continue exactly (for checkpoints).
struct SemiSupervisedSamplerState {
  std::array<std::uint64_t, 4> rng_state{};  ///< the permutation Rng's state words
  bool rng_has_cached_normal = false;        ///< its cached-normal flag
  double rng_cached_normal = 0;              ///< its cached normal
  Index epoch = 0;                           ///< epochs started (1-based once started)
  Index batch = 0;                           ///< batches taken in the current epoch
  std::vector<Index> labelled_plan;          ///< positions into the labelled pool for the whole epoch
  std::vector<Index> unlabelled_plan;        ///< positions into the unlabelled pool for the whole epoch
};

/// Mixes a labelled pool (indices + labels) and an unlabelled pool (indices) into minibatches at a set ratio.
class SemiSupervisedSampler {
public:
  /// What next() fills and what the constructor takes (the trainer reads both from here).
  using Batch = SemiSupervisedBatch;
  using Options = SemiSupervisedSamplerOptions;
  /// `labelled` indices with their `labels` (same length), `unlabelled` indices. Throws ArgumentError when a
  /// pool is empty, the label count differs, a label is negative, or a batch count is < 1.
  SemiSupervisedSampler(std::vector<Index> labelled, std::vector<int> labels, std::vector<Index> unlabelled,
                        SemiSupervisedSamplerOptions options = {})
      : labelled_(std::move(labelled)), labels_(std::move(labels)), unlabelled_(std::move(unlabelled)),
        options_(options), rng_(options.seed) {
    require<ArgumentError>(!labelled_.empty() && !unlabelled_.empty(), "SemiSupervisedSampler: expected non-empty ",
                           "pools, found ", labelled_.size(), " labelled and ", unlabelled_.size(), " unlabelled");
    require<ArgumentError>(labels_.size() == labelled_.size(), "SemiSupervisedSampler: expected one label per ",
                           "labelled index (", labelled_.size(), "), found ", labels_.size());
    for (std::size_t i = 0; i < labels_.size(); ++i)
      require<ArgumentError>(labels_[i] >= 0, "SemiSupervisedSampler: label ", labels_[i], " at ", i, " is negative");
    require<ArgumentError>(options_.labelled_per_batch >= 1 && options_.unlabelled_per_batch >= 1,
                           "SemiSupervisedSampler: expected at least one labelled and one unlabelled example per ",
                           "batch, found ", options_.labelled_per_batch, " and ", options_.unlabelled_per_batch);
    const Index L = static_cast<Index>(labelled_.size()), U = static_cast<Index>(unlabelled_.size());
    batches_ = std::max((L + options_.labelled_per_batch - 1) / options_.labelled_per_batch,
                        (U + options_.unlabelled_per_batch - 1) / options_.unlabelled_per_batch);
  }

  /// Batches in every epoch.
  Index batches_per_epoch() const { return batches_; }
  /// Epochs started so far (the current one, 1-based; 0 before the first).
  Index epoch() const { return epoch_; }
  /// True while the current epoch has batches left.
  bool epoch_in_progress() const { return epoch_ > 0 && batch_ < batches_; }
  /// The options.
  const SemiSupervisedSamplerOptions& options() const { return options_; }
  /// Size of the labelled pool.
  Index labelled_count() const { return static_cast<Index>(labelled_.size()); }
  /// Size of the unlabelled pool.
  Index unlabelled_count() const { return static_cast<Index>(unlabelled_.size()); }
  /// The labelled pool's data-set indices.
  const std::vector<Index>& labelled_indices() const { return labelled_; }
  /// The labels of the labelled pool.
  const std::vector<int>& labelled_labels() const { return labels_; }

  /// Draws the next epoch's plan (fresh permutations of both pools) and rewinds to its first batch.
  void start_epoch() {
    ++epoch_;
    batch_ = 0;
    labelled_plan_ = plan(static_cast<Index>(labelled_.size()), options_.labelled_per_batch);
    unlabelled_plan_ = plan(static_cast<Index>(unlabelled_.size()), options_.unlabelled_per_batch);
  }

  /// Fills `batch` with the next minibatch; returns false (batch untouched) at the end of the epoch.
  bool next(SemiSupervisedBatch& batch) {
    if (!epoch_in_progress()) return false;
    batch.indices.clear();
    batch.labels.clear();
    take(labelled_plan_, options_.labelled_per_batch, [&](Index p) {
      batch.indices.push_back(labelled_[static_cast<std::size_t>(p)]);
      batch.labels.push_back(labels_[static_cast<std::size_t>(p)]);
    });
    take(unlabelled_plan_, options_.unlabelled_per_batch, [&](Index p) {
      batch.indices.push_back(unlabelled_[static_cast<std::size_t>(p)]);
      batch.labels.push_back(-1);
    });
    ++batch_;
    return true;
  }

  /// The complete state (see SemiSupervisedSamplerState).
  SemiSupervisedSamplerState state() const {
    SemiSupervisedSamplerState s;
    s.rng_state = rng_.state();
    s.rng_has_cached_normal = rng_.has_cached_normal();
    s.rng_cached_normal = rng_.cached_normal();
    s.epoch = epoch_;
    s.batch = batch_;
    s.labelled_plan = labelled_plan_;
    s.unlabelled_plan = unlabelled_plan_;
    return s;
  }

  /// Restores a state from state() of a sampler over the same pools and options. Throws ArgumentError
  /// (changing nothing) when it cannot belong to this sampler.
  void restore(const SemiSupervisedSamplerState& s) {
    const auto check_plan = [&](const std::vector<Index>& p, Index pool, Index per_batch, const char* what) {
      if (s.epoch == 0) {
        require<ArgumentError>(p.empty(), "SemiSupervisedSampler::restore: a plan before the first epoch");
        return;
      }
      require<ArgumentError>(static_cast<Index>(p.size()) == planned_length(pool, per_batch),
                             "SemiSupervisedSampler::restore: the ", what, " plan has ", p.size(),
                             " entries, this sampler plans ", planned_length(pool, per_batch));
      for (Index v : p)
        require<ArgumentError>(v >= 0 && v < pool, "SemiSupervisedSampler::restore: ", what, " position ", v,
                               " outside [0, ", pool, ")");
    };
    require<ArgumentError>(s.epoch >= 0 && s.batch >= 0 && s.batch <= batches_,
                           "SemiSupervisedSampler::restore: batch ", s.batch, " outside [0, ", batches_, "]");
    check_plan(s.labelled_plan, labelled_count(), options_.labelled_per_batch, "labelled");
    check_plan(s.unlabelled_plan, unlabelled_count(), options_.unlabelled_per_batch, "unlabelled");
    rng_.set_state(s.rng_state, s.rng_has_cached_normal, s.rng_cached_normal);
    epoch_ = s.epoch;
    batch_ = s.batch;
    labelled_plan_ = s.labelled_plan;
    unlabelled_plan_ = s.unlabelled_plan;
  }

private:
  // Positions for the whole epoch: whole permutations of the pool, concatenated, cut to what the epoch uses.
  // The pool that sets the epoch length is walked exactly once (its last batch may be short); the other one
  // fills every batch, cycling through further permutations.
  Index planned_length(Index pool, Index per_batch) const {
    return (pool + per_batch - 1) / per_batch == batches_ ? pool : batches_ * per_batch;
  }
  std::vector<Index> plan(Index pool, Index per_batch) {
    const Index need = planned_length(pool, per_batch);
    std::vector<Index> out;
    std::vector<Index> perm(static_cast<std::size_t>(pool));
    while (static_cast<Index>(out.size()) < need) {
      std::iota(perm.begin(), perm.end(), Index(0));
      for (std::size_t i = perm.size(); i > 1; --i)
        std::swap(perm[i - 1], perm[static_cast<std::size_t>(rng_.uniform_index(i))]);
      out.insert(out.end(), perm.begin(), perm.end());
    }
    out.resize(static_cast<std::size_t>(need));
    return out;
  }
  template <typename F>
  void take(const std::vector<Index>& plan, Index per_batch, F&& f) const {
    const Index begin = batch_ * per_batch;
    const Index end = std::min(begin + per_batch, static_cast<Index>(plan.size()));
    for (Index p = begin; p < end; ++p) f(plan[static_cast<std::size_t>(p)]);
  }

  std::vector<Index> labelled_;
  std::vector<int> labels_;
  std::vector<Index> unlabelled_;
  SemiSupervisedSamplerOptions options_;
  Rng rng_;
  Index batches_ = 0;
  Index epoch_ = 0;
  Index batch_ = 0;
  std::vector<Index> labelled_plan_, unlabelled_plan_;
};

}  // namespace mlvae
