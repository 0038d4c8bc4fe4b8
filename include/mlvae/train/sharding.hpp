/// @file
/// mlvae/train/sharding.hpp — cutting a minibatch of whole groups into shards, computing one
/// shard's share of the whole batch's gradient (model/batch_shard.hpp), and ShardedGradient:
/// the shards computed one after another and summed in a fixed order (gradient accumulation).
/// ShardedGradient with S shards is the single-process reference that the deterministic
/// data-parallel mode (mlvae/mpi/data_parallel.hpp) reproduces bit for bit on any rank count.
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/random.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/data/grouped_sampler.hpp"
#include "mlvae/model/batch_shard.hpp"
#include "mlvae/model/loss_terms.hpp"
#include "mlvae/train/trainer.hpp"

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace mlvae {

/// The part `part` of `total` items cut into `parts` contiguous, nearly equal ranges (sizes differ
/// by at most one; the first ranges get the extra items): returns [begin, end).
/// @throws ArgumentError when parts < 1 or part is outside [0, parts).
inline std::pair<Index, Index> split_range(Index total, Index parts, Index part) {
  require<ArgumentError>(parts >= 1 && part >= 0 && part < parts && total >= 0, "split_range: expected 0 <= part < parts, found part ",
                         part, " of ", parts, " (total ", total, ")");
  const Index base = total / parts, extra = total % parts;
  const Index begin = part * base + std::min(part, extra);
  return {begin, begin + base + (part < extra ? 1 : 0)};
}

/// Number of normals a plain step of `model` draws for `batch` (its whole noise stream):
/// N·style + G·content for an ML-VAE, N·latent for a VAE.
template <typename Model>
std::int64_t batch_noise_draws(const Model& model, const GroupedBatch& batch) {
  if constexpr (detail::is_grouped_model<Model>::value)
    return std::int64_t{batch.size()} * model.style_size() + std::int64_t{batch.group_count()} * model.content_size();
  else
    return std::int64_t{batch.size()} * model.latent_size();
}

/// Adds a shard's loss terms (already divided by the whole batch's counts, see BatchShard) to
/// `total`: the sums of the shards' terms are the whole batch's terms.
inline void add_shard_terms(LossTerms& total, const LossTerms& part) {
  total.loss += part.loss;
  total.elbo_per_group += part.elbo_per_group;
  total.elbo_per_image += part.elbo_per_image;
  total.reconstruction += part.reconstruction;
  total.style_kl += part.style_kl;
  total.content_kl += part.content_kl;
  total.groups += part.groups;
  total.images += part.images;
}

/// Computes the share of the groups [group_begin, group_end) of `batch` in the whole batch's
/// objective: gathers their columns of `data` into `x`, runs the model's forward/backward with the
/// matching BatchShard (so model.parameters().gradients holds the shard's share), and returns the
/// shard's terms. `noise` must be at the whole batch's start; it ends where the whole batch would
/// leave it. An empty range computes nothing: it zeroes the gradients, skips the batch's noise and
/// returns zero terms. `offsets`/`indices` are workspaces.
template <typename Model>
LossTerms compute_shard(Model& model, const Matrix<typename Model::Scalar>& data, const GroupedBatch& batch,
                        Index group_begin, Index group_end, Rng& noise, Matrix<typename Model::Scalar>& x,
                        std::vector<Index>& indices, std::vector<Index>& offsets) {
  require<ArgumentError>(0 <= group_begin && group_begin <= group_end && group_end <= batch.group_count(),
                         "compute_shard: groups [", group_begin, ", ", group_end, ") are not a range of the batch's ",
                         batch.group_count(), " groups");
  if (group_begin == group_end) {
    model.parameters().zero_gradients();
    skip_normals(noise, batch_noise_draws(model, batch));
    return {};
  }
  const Index first = batch.group_offsets[static_cast<std::size_t>(group_begin)];
  const Index last = batch.group_offsets[static_cast<std::size_t>(group_end)];
  indices.assign(batch.indices.begin() + first, batch.indices.begin() + last);
  offsets.clear();
  for (Index g = group_begin; g <= group_end; ++g) offsets.push_back(batch.group_offsets[static_cast<std::size_t>(g)] - first);
  gather_columns(data, indices, x);
  BatchShard shard;
  shard.first_group = group_begin;
  shard.first_column = first;
  shard.global_groups = batch.group_count();
  shard.global_columns = batch.size();
  return detail::model_step(model, x, offsets, noise, true, shard);
}

/// Gradient accumulation in one process: the batch's groups are cut into `shards` nearly equal
/// ranges (split_range), each computed separately (compute_shard) and their gradients summed in
/// shard order (g = g_0; g += g_1; ...), empty shards skipped. With one shard this is exactly a
/// plain step; with S shards it is the reference the deterministic data-parallel mode matches
/// bit for bit. Peak activation memory is that of one shard.
template <typename Model>
class ShardedGradient : public GradientStrategy<Model> {
public:
  /// The model's floating-point type.
  using T = typename Model::Scalar;
  /// @throws ArgumentError when shards < 1.
  explicit ShardedGradient(Index shards) : shards_(shards) {
    require<ArgumentError>(shards >= 1, "ShardedGradient: expected at least one shard, found ", shards);
  }
  /// Number of shards a batch is cut into.
  Index shards() const { return shards_; }

  /// See GradientStrategy::compute.
  LossTerms compute(Model& model, const Matrix<T>& data, const GroupedBatch& batch, Rng& noise) override {
    const Rng start = noise;
    LossTerms total;
    bool first = true;
    for (Index s = 0; s < shards_; ++s) {
      const auto [begin, end] = split_range(batch.group_count(), shards_, s);
      if (begin == end) continue;
      noise = start;
      add_shard_terms(total, compute_shard(model, data, batch, begin, end, noise, x_, indices_, offsets_));
      if (first)
        sum_ = model.parameters().gradients;
      else
        sum_ += model.parameters().gradients;
      first = false;
    }
    model.parameters().gradients = sum_;
    return total;
  }

private:
  Index shards_;
  Matrix<T> x_;
  Vector<T> sum_;
  std::vector<Index> indices_, offsets_;
};

}  // namespace mlvae
