/// @file
/// mlvae/data/grouped_sampler.hpp — minibatches made of WHOLE groups, for ML-VAE training.
/// Observations sharing a key (e.g. a class label) are cut into groups each epoch; a batch holds
/// `groups_per_batch` complete groups, laid out contiguously so a group is a column range.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "mlvae/core/error.hpp"
#include "mlvae/core/random.hpp"
#include "mlvae/core/types.hpp"

namespace mlvae {

/// A minibatch of whole groups. Group g occupies batch columns [group_offsets[g], group_offsets[g+1]).
struct GroupedBatch {
  std::vector<Index> indices;        ///< dataset column of each batch column; a group's members are contiguous
  std::vector<Index> group_offsets;  ///< group_count()+1 offsets, CSR style; front() == 0, back() == size()
  std::vector<int> group_keys;       ///< key of each group

  /// Number of observations (batch columns).
  Index size() const { return static_cast<Index>(indices.size()); }
  /// Number of groups.
  Index group_count() const {
    return group_offsets.empty() ? 0 : static_cast<Index>(group_offsets.size()) - 1;
  }
  /// Number of observations in group g.
  Index group_size(Index g) const {
    return group_offsets[static_cast<std::size_t>(g) + 1] - group_offsets[static_cast<std::size_t>(g)];
  }
  /// Empties the batch but keeps its storage.
  void clear() {
    indices.clear();
    group_offsets.clear();
    group_keys.clear();
  }
};

/// Builds a GroupedBatch from explicit groups of dataset column indices (for tests and evaluation).
/// `keys` gives each group's key; when empty, group g gets key g.
/// @throws ArgumentError when `groups` is empty, a group is empty, or `keys` has the wrong size.
inline GroupedBatch make_batch(const std::vector<std::vector<Index>>& groups, std::vector<int> keys = {}) {
  require<ArgumentError>(!groups.empty(), "make_batch: expected at least one group, found none");
  require<ArgumentError>(keys.empty() || keys.size() == groups.size(), "make_batch: expected ",
                         groups.size(), " keys (one per group) or none, found ", keys.size());
  GroupedBatch batch;
  batch.group_offsets.reserve(groups.size() + 1);
  batch.group_offsets.push_back(0);
  for (std::size_t g = 0; g < groups.size(); ++g) {
    require<ArgumentError>(!groups[g].empty(), "make_batch: group ", g, " is empty; every group needs at least one observation");
    batch.indices.insert(batch.indices.end(), groups[g].begin(), groups[g].end());
    batch.group_offsets.push_back(static_cast<Index>(batch.indices.size()));
  }
  if (keys.empty()) {
    keys.resize(groups.size());
    for (std::size_t g = 0; g < groups.size(); ++g) keys[g] = static_cast<int>(g);
  }
  batch.group_keys = std::move(keys);
  return batch;
}

/// Copies the columns `indices` of `data` into `out` (data.rows() x indices.size()).
/// Does not allocate when `out` already has that shape.
/// @throws ShapeError when an index is outside [0, data.cols()).
/// @throws ArgumentError when `out` is `data` itself.
template <typename T>
void gather_columns(const Matrix<T>& data, const std::vector<Index>& indices, Matrix<T>& out) {
  require<ArgumentError>(&data != &out, "gather_columns: `out` must not be `data` itself");
  for (std::size_t j = 0; j < indices.size(); ++j)
    require<ShapeError>(indices[j] >= 0 && indices[j] < data.cols(), "gather_columns: index ",
                        indices[j], " at position ", j, " is outside the data's columns [0, ",
                        data.cols(), ")");
  ensure_shape(out, data.rows(), static_cast<Index>(indices.size()));
  for (std::size_t j = 0; j < indices.size(); ++j)
    out.col(static_cast<Index>(j)) = data.col(indices[j]);
}

/// Options of GroupedSampler.
struct GroupedSamplerOptions {
  Index groups_per_batch = 16;  ///< groups in each batch (the last batch of an epoch may have fewer)
  Index min_group_size = 16;    ///< smallest regular group size
  Index max_group_size = 16;    ///< largest; equal to min = fixed size, else each size uniform in [min, max]
  std::uint64_t seed = 1;       ///< seed of the sampler's Rng
};

/// The complete mid-epoch state of a GroupedSampler (for checkpoints and exact resumption).
/// `order` lists the members of every key (keys ascending), each key's block shuffled; a group is a
/// range [begin, end) of `order`; `cursor` is the next group to hand out.
struct GroupedSamplerState {
  /// One group of the epoch's plan: a range of `order` whose members share a key.
  struct Group {
    /// Start of the range in `order` (inclusive).
    Index begin = 0, end = 0;  ///< range in `order`
    /// The key the group's members share.
    int key = 0;
  };
  /// The sampler Rng's four state words (Rng::state()).
  std::array<std::uint64_t, 4> rng_state{};
  /// The sampler Rng's cache flag (Rng::has_cached_normal()).
  bool rng_has_cached_normal = false;
  /// The sampler Rng's cached normal (Rng::cached_normal()).
  double rng_cached_normal = 0.0;
  /// Observation indices, grouped by key (keys ascending), each key's block shuffled.
  std::vector<Index> order;
  /// The epoch's groups in hand-out order.
  std::vector<Group> groups;
  /// Index in `groups` of the next group to hand out.
  Index cursor = 0;
  /// Number of epochs started so far (GroupedSampler::epoch()).
  Index epoch = 0;
  bool pending = false;  ///< the plan was drawn but the epoch not started yet
};

/// Draws minibatches of whole groups, epoch by epoch.
///
/// Each epoch: the members of every key are shuffled and cut into groups (size fixed, or drawn
/// uniformly in [min_group_size, max_group_size] per group); a key's leftover members form one
/// smaller group (never dropped); all groups are shuffled and packed `groups_per_batch` per batch.
/// Every observation appears exactly once per epoch. Fully determined by the seed.
///
/// Usage (both patterns give the same batches for the same seed):
/// @code
///   GroupedSampler sampler(labels, {8, 16, 16, 42});
///   GroupedBatch batch;
///   for (int e = 0; e < epochs; ++e) {
///     sampler.start_epoch();
///     while (sampler.next(batch)) { gather_columns(data, batch.indices, x); ... }
///   }
/// @endcode
/// The first epoch's plan is drawn in the constructor (so batches_per_epoch() is valid at once); the
/// first start_epoch() adopts it, later calls reshuffle. next() starts the first epoch by itself if
/// start_epoch() was never called; after an epoch ends it keeps returning false until start_epoch().
class GroupedSampler {
public:
  /// What next() fills and what the constructor takes (the trainer reads both from here).
  using Batch = GroupedBatch;
  using Options = GroupedSamplerOptions;
  /// `keys[i]` is the group key (e.g. label) of dataset column i.
  /// @throws ArgumentError when keys are empty or the options are invalid.
  GroupedSampler(std::vector<int> keys, GroupedSamplerOptions options)
      : options_(options), rng_(options.seed) {
    require<ArgumentError>(!keys.empty(), "GroupedSampler: expected at least one key (observation), found none");
    require<ArgumentError>(options.groups_per_batch >= 1,
                           "GroupedSampler: groups_per_batch must be >= 1, found ", options.groups_per_batch);
    require<ArgumentError>(options.min_group_size >= 1,
                           "GroupedSampler: min_group_size must be >= 1, found ", options.min_group_size);
    require<ArgumentError>(options.max_group_size >= options.min_group_size,
                           "GroupedSampler: max_group_size must be >= min_group_size (", options.min_group_size,
                           "), found ", options.max_group_size);
    std::map<int, std::vector<Index>> by_key;
    for (std::size_t i = 0; i < keys.size(); ++i) by_key[keys[i]].push_back(static_cast<Index>(i));
    for (auto& entry : by_key) {
      key_values_.push_back(entry.first);
      key_members_.push_back(std::move(entry.second));
    }
    observation_count_ = static_cast<Index>(keys.size());
    order_.reserve(keys.size());
    plan_epoch();
    pending_ = true;
  }

  /// Begins a new epoch: reshuffles members and groups from the Rng (the first call adopts the
  /// plan drawn in the constructor). Abandons whatever is left of the current epoch.
  void start_epoch() {
    if (!pending_) plan_epoch();
    pending_ = false;
    cursor_ = 0;
    ++epoch_;
  }

  /// Fills `out` with the next batch (reusing its storage); returns false at the end of the epoch.
  bool next(GroupedBatch& out) {
    if (pending_) start_epoch();
    out.clear();
    if (cursor_ >= groups_.size()) return false;
    const std::size_t end =
        std::min(groups_.size(), cursor_ + static_cast<std::size_t>(options_.groups_per_batch));
    out.group_offsets.push_back(0);
    for (; cursor_ < end; ++cursor_) {
      const Group& group = groups_[cursor_];
      out.indices.insert(out.indices.end(), order_.begin() + group.begin, order_.begin() + group.end);
      out.group_offsets.push_back(static_cast<Index>(out.indices.size()));
      out.group_keys.push_back(group.key);
    }
    return true;
  }

  /// Batches in the current (or, before the first start_epoch(), the upcoming) epoch.
  /// Constant across epochs when min_group_size == max_group_size.
  Index batches_per_epoch() const {
    const auto groups = static_cast<Index>(groups_.size());
    return (groups + options_.groups_per_batch - 1) / options_.groups_per_batch;
  }
  /// Groups in the current (or upcoming) epoch.
  Index groups_per_epoch() const { return static_cast<Index>(groups_.size()); }
  /// Number of epochs started so far (0 before the first start_epoch() or next()).
  Index epoch() const { return epoch_; }
  /// Number of observations (keys) the sampler was built with.
  Index observation_count() const { return observation_count_; }
  /// The distinct keys, ascending.
  const std::vector<int>& distinct_keys() const { return key_values_; }
  /// The options the sampler was built with.
  const GroupedSamplerOptions& options() const { return options_; }
  /// The sampler's random number generator (e.g. to save or restore its state).
  Rng& rng() { return rng_; }
  /// True while the current epoch still has batches to hand out (false before the first epoch
  /// started and after its last batch).
  bool epoch_in_progress() const { return !pending_ && epoch_ > 0 && cursor_ < groups_.size(); }

  /// The complete state: with restore() on a sampler built from the same keys and options, the
  /// following batches are identical.
  GroupedSamplerState state() const {
    GroupedSamplerState s;
    s.rng_state = rng_.state();
    s.rng_has_cached_normal = rng_.has_cached_normal();
    s.rng_cached_normal = rng_.cached_normal();
    s.order = order_;
    s.groups.reserve(groups_.size());
    for (const Group& g : groups_)
      s.groups.push_back({static_cast<Index>(g.begin), static_cast<Index>(g.end), g.key});
    s.cursor = static_cast<Index>(cursor_);
    s.epoch = epoch_;
    s.pending = pending_;
    return s;
  }

  /// Restores a state from state(). Validates it against the keys and options this sampler was
  /// built with (each key's block of `order` is a permutation of that key's observations, the
  /// groups partition `order` within keys, sizes within the options) and changes nothing when
  /// it is inconsistent.
  /// @throws ArgumentError naming what is inconsistent.
  void restore(const GroupedSamplerState& s) {
    const char* where = "GroupedSampler::restore: ";
    const std::size_t n = static_cast<std::size_t>(observation_count_);
    require<ArgumentError>(s.order.size() == n, where, "expected an order of ", n, " observations, found ",
                           s.order.size());
    // Each key's block of `order` must be a permutation of that key's members.
    std::vector<std::vector<Index>> members(key_members_.size());
    std::vector<std::size_t> key_of_position(n);
    std::vector<char> seen(n, 0);
    std::size_t pos = 0;
    for (std::size_t k = 0; k < key_members_.size(); ++k) {
      std::vector<Index> sorted_now = key_members_[k];
      std::sort(sorted_now.begin(), sorted_now.end());
      members[k].assign(s.order.begin() + static_cast<std::ptrdiff_t>(pos),
                        s.order.begin() + static_cast<std::ptrdiff_t>(pos + key_members_[k].size()));
      std::vector<Index> sorted_new = members[k];
      std::sort(sorted_new.begin(), sorted_new.end());
      require<ArgumentError>(sorted_new == sorted_now, where, "the order's block of key ", key_values_[k],
                             " is not a permutation of that key's ", key_members_[k].size(), " observations");
      for (std::size_t i = 0; i < key_members_[k].size(); ++i) key_of_position[pos + i] = k;
      pos += key_members_[k].size();
    }
    // The groups partition `order`, each inside one key's block, with a size within the options.
    std::vector<Group> groups;
    groups.reserve(s.groups.size());
    for (std::size_t g = 0; g < s.groups.size(); ++g) {
      const auto& group = s.groups[g];
      require<ArgumentError>(group.begin >= 0 && group.begin < group.end && group.end <= static_cast<Index>(n),
                             where, "group ", g, " has an invalid range [", group.begin, ", ", group.end,
                             ") for ", n, " observations");
      require<ArgumentError>(group.end - group.begin <= options_.max_group_size, where, "group ", g, " has ",
                             group.end - group.begin, " members, more than max_group_size ",
                             options_.max_group_size);
      const auto b = static_cast<std::size_t>(group.begin), e = static_cast<std::size_t>(group.end);
      const std::size_t k = key_of_position[b];
      require<ArgumentError>(key_of_position[e - 1] == k && key_values_[k] == group.key, where, "group ", g,
                             " (key ", group.key, ") does not lie inside one key's block of the order");
      for (std::size_t i = b; i < e; ++i) {
        require<ArgumentError>(!seen[i], where, "groups ", g, " overlaps another group at position ", i);
        seen[i] = 1;
      }
      groups.push_back({b, e, group.key});
    }
    require<ArgumentError>(std::find(seen.begin(), seen.end(), 0) == seen.end(), where,
                           "the groups do not cover every observation");
    require<ArgumentError>(s.cursor >= 0 && s.cursor <= static_cast<Index>(groups.size()), where, "cursor ",
                           s.cursor, " is outside [0, ", groups.size(), "]");
    require<ArgumentError>(s.epoch >= 0, where, "epoch must be >= 0, found ", s.epoch);
    require<ArgumentError>(!s.pending || s.cursor == 0, where, "a pending plan must have cursor 0, found ",
                           s.cursor);
    rng_.set_state(s.rng_state, s.rng_has_cached_normal, s.rng_cached_normal);
    key_members_ = std::move(members);
    order_ = s.order;
    groups_ = std::move(groups);
    cursor_ = static_cast<std::size_t>(s.cursor);
    epoch_ = s.epoch;
    pending_ = s.pending;
  }

private:
  struct Group {
    std::size_t begin, end;  // range in order_
    int key;
  };

  template <typename Vec>
  void shuffle(Vec& v) {
    for (std::size_t i = v.size(); i > 1; --i) {
      const auto j = static_cast<std::size_t>(rng_.uniform_index(i));
      std::swap(v[i - 1], v[j]);
    }
  }

  Index draw_group_size() {
    if (options_.min_group_size == options_.max_group_size) return options_.min_group_size;
    const auto span = static_cast<std::uint64_t>(options_.max_group_size - options_.min_group_size + 1);
    return options_.min_group_size + static_cast<Index>(rng_.uniform_index(span));
  }

  void plan_epoch() {
    order_.clear();
    groups_.clear();
    for (std::size_t k = 0; k < key_members_.size(); ++k) {
      std::vector<Index>& members = key_members_[k];
      shuffle(members);
      const std::size_t base = order_.size();
      order_.insert(order_.end(), members.begin(), members.end());
      std::size_t pos = 0;
      while (pos < members.size()) {
        const auto size = std::min(static_cast<std::size_t>(draw_group_size()), members.size() - pos);
        groups_.push_back({base + pos, base + pos + size, key_values_[k]});
        pos += size;
      }
    }
    shuffle(groups_);
  }

  GroupedSamplerOptions options_;
  Rng rng_;
  std::vector<int> key_values_;
  std::vector<std::vector<Index>> key_members_;
  std::vector<Index> order_;  // members of all keys, shuffled within key
  std::vector<Group> groups_;
  std::size_t cursor_ = 0;
  Index epoch_ = 0;
  Index observation_count_ = 0;
  bool pending_ = false;
};

}  // namespace mlvae
