/// @file
/// mlvae/mpi/data_parallel.hpp — data-parallel training over MPI: every rank draws the same global
/// minibatch of G whole groups (the sampler shuffles identically from the seed), computes the
/// share of its own groups (train/sharding.hpp), and one collective per step sums the flat
/// gradient and the loss sums, normalised by the global G; every rank then takes the identical Adam
/// step. Rank 0 broadcasts the whole training state at start and after a resume, and writes the
/// checkpoints (the ordinary format, so a run resumes on any rank count or on one process).
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/random.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/data/grouped_sampler.hpp"
#include "mlvae/io/checkpoint.hpp"
#include "mlvae/model/loss_terms.hpp"
#include "mlvae/mpi/communicator.hpp"
#include "mlvae/train/sharding.hpp"
#include "mlvae/train/trainer.hpp"

#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace mlvae::mpi {

/// How the ranks' gradients are summed.
enum class Reduction {
  /// One MPI_Allreduce of the gradient and loss sums; MPI chooses the summation order, so the
  /// result equals a single-process step up to floating-point rounding (the fast mode).
  Allreduce,
  /// Deterministic: the batch is cut into a fixed number of shards independent of the rank count;
  /// each rank computes its shards, rank 0 gathers them (MPI_Gatherv) and sums them in shard
  /// order, then broadcasts the sum. Bit-identical to ShardedGradient with the same shard count in
  /// one process, on any number of ranks (with one shard: to a plain Trainer step).
  Ordered
};

/// Options of DataParallel.
struct DataParallelOptions {
  /// How gradients are summed.
  Reduction reduction = Reduction::Allreduce;
  /// Reduction::Ordered: the number of shards a batch is cut into (0: the rank count). Keep it
  /// fixed across runs (e.g. a multiple of every rank count you use) for bit-identical results.
  Index shards = 0;
};

/// Time and traffic of the reductions so far (this rank).
struct ReductionStats {
  long long steps = 0;              ///< steps reduced
  double compute_seconds = 0;       ///< forward/backward on this rank's groups
  double reduce_seconds = 0;        ///< in collectives (includes waiting for slower ranks)
  std::int64_t elements_per_step = 0;  ///< scalars per rank per step in the reduction
  std::int64_t bytes_per_step = 0;     ///< elements_per_step × sizeof(scalar)
};

/// The loss terms a step reduces, as scalars appended to the gradient.
inline constexpr Index reduced_term_count = 6;

/// A GradientStrategy that computes this rank's groups of each batch and sums the gradient and the
/// loss terms over all ranks (see Reduction). Install it with enable_data_parallel().
template <typename Model>
class DataParallel : public GradientStrategy<Model> {
public:
  /// The model's floating-point type.
  using T = typename Model::Scalar;

  /// The strategy over `comm` (which must outlive it). @throws ArgumentError on a negative shard count.
  DataParallel(Communicator& comm, DataParallelOptions options) : comm_(comm), options_(options) {
    require<ArgumentError>(options.shards >= 0, "DataParallel: the shard count must be >= 0, found ", options.shards);
    if (options_.shards == 0) options_.shards = comm.size();
  }
  /// The options in effect (shards resolved).
  const DataParallelOptions& options() const { return options_; }
  /// Reduction time and traffic on this rank.
  const ReductionStats& stats() const { return stats_; }
  /// Replaces MPI_Allreduce in Reduction::Allreduce by `sum(data, n)`, which must sum data[0..n)
  /// over all ranks in place (e.g. NcclCommunicator::allreduce_sum for GPU ranks, mpi/nccl.hpp);
  /// an empty function restores MPI_Allreduce.
  void set_allreduce(std::function<void(T*, Index)> sum) { custom_sum_ = std::move(sum); }
  /// Groups [begin, end) of a batch of `groups` groups that this rank computes (Allreduce mode).
  std::pair<Index, Index> my_groups(Index groups) const { return split_range(groups, comm_.size(), comm_.rank()); }

  /// See GradientStrategy::compute.
  LossTerms compute(Model& model, const Matrix<T>& data, const GroupedBatch& batch, Rng& noise) override {
    const Index P = model.parameters().size();
    const Index width = P + reduced_term_count;
    LossTerms total;
    if (options_.reduction == Reduction::Allreduce) {
      const double t0 = MPI_Wtime();
      const auto [begin, end] = my_groups(batch.group_count());
      const LossTerms mine = compute_shard(model, data, batch, begin, end, noise, x_, indices_, offsets_);
      ensure_size(buffer_, width);
      pack(model, mine, buffer_.data());
      const double t1 = MPI_Wtime();
      if (custom_sum_)
        custom_sum_(buffer_.data(), width);
      else
        comm_.allreduce_sum(buffer_.data(), width);
      stats_.compute_seconds += t1 - t0;
      stats_.reduce_seconds += MPI_Wtime() - t1;
      stats_.elements_per_step = width;
      unpack(buffer_.data(), model, total);
    } else {
      const double t0 = MPI_Wtime();
      const Index S = options_.shards;
      const auto [first, last] = split_range(S, comm_.size(), comm_.rank());
      ensure_size(local_, (last - first) * width);
      const Rng start = noise;
      for (Index s = first; s < last; ++s) {
        const auto [begin, end] = split_range(batch.group_count(), S, s);
        noise = start;
        const LossTerms part = compute_shard(model, data, batch, begin, end, noise, x_, indices_, offsets_);
        pack(model, part, local_.data() + (s - first) * width);
      }
      if (first == last) skip_normals(noise, batch_noise_draws(model, batch));
      std::vector<Index> counts(static_cast<std::size_t>(comm_.size()));
      for (int r = 0; r < comm_.size(); ++r) {
        const auto [f, l] = split_range(S, comm_.size(), r);
        counts[static_cast<std::size_t>(r)] = (l - f) * width;
      }
      if (comm_.is_root()) ensure_size(gathered_, S * width);
      ensure_size(buffer_, width);
      const double t1 = MPI_Wtime();
      comm_.gather(local_.data(), (last - first) * width, gathered_.data(), counts);
      if (comm_.is_root()) {
        // Sum in shard order, skipping empty shards: the order ShardedGradient uses.
        bool seen = false;
        for (Index s = 0; s < S; ++s) {
          const auto [begin, end] = split_range(batch.group_count(), S, s);
          if (begin == end) continue;
          const auto block = gathered_.segment(s * width, width);
          if (seen)
            buffer_ += block;
          else
            buffer_ = block;
          seen = true;
        }
      }
      comm_.broadcast(buffer_.data(), width);
      stats_.compute_seconds += t1 - t0;
      stats_.reduce_seconds += MPI_Wtime() - t1;
      stats_.elements_per_step = (last - first) * width + width;
      unpack(buffer_.data(), model, total);
    }
    stats_.bytes_per_step = stats_.elements_per_step * static_cast<std::int64_t>(sizeof(T));
    ++stats_.steps;
    total.groups = batch.group_count();
    total.images = batch.size();
    return total;
  }

private:
  static void ensure_size(Vector<T>& v, Index n) {
    if (v.size() != n) v.resize(n);
  }
  static void pack(Model& model, const LossTerms& t, T* out) {
    const Index P = model.parameters().size();
    std::memcpy(out, model.parameters().gradients.data(), static_cast<std::size_t>(P) * sizeof(T));
    const double terms[reduced_term_count] = {t.loss, t.elbo_per_group, t.elbo_per_image,
                                              t.reconstruction, t.style_kl, t.content_kl};
    for (Index k = 0; k < reduced_term_count; ++k) out[P + k] = static_cast<T>(terms[k]);
  }
  static void unpack(const T* in, Model& model, LossTerms& t) {
    const Index P = model.parameters().size();
    std::memcpy(model.parameters().gradients.data(), in, static_cast<std::size_t>(P) * sizeof(T));
    t.loss = static_cast<double>(in[P + 0]);
    t.elbo_per_group = static_cast<double>(in[P + 1]);
    t.elbo_per_image = static_cast<double>(in[P + 2]);
    t.reconstruction = static_cast<double>(in[P + 3]);
    t.style_kl = static_cast<double>(in[P + 4]);
    t.content_kl = static_cast<double>(in[P + 5]);
  }

  Communicator& comm_;
  DataParallelOptions options_;
  ReductionStats stats_;
  std::function<void(T*, Index)> custom_sum_;
  Matrix<T> x_;
  Vector<T> buffer_, local_, gathered_;
  std::vector<Index> indices_, offsets_;
};

/// A 64-bit fingerprint of the training data and the sampler's first plan (which depends on the
/// keys and the seed): ranks holding different data or keys get different fingerprints.
template <typename Model>
std::uint64_t data_fingerprint(Trainer<Model>& trainer) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  auto mix = [&h](std::uint64_t word) {
    h ^= word + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    h *= 0x100000001b3ULL;
  };
  const auto& data = trainer.data();
  mix(static_cast<std::uint64_t>(data.rows()));
  mix(static_cast<std::uint64_t>(data.cols()));
  const auto* bytes = reinterpret_cast<const unsigned char*>(data.data());
  const std::size_t n = static_cast<std::size_t>(data.size()) * sizeof(typename Model::Scalar);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t word;
    std::memcpy(&word, bytes + i, 8);
    mix(word);
  }
  for (; i < n; ++i) mix(bytes[i]);
  const GroupedSamplerState state = trainer.sampler().state();
  for (Index v : state.order) mix(static_cast<std::uint64_t>(v));
  for (const auto& g : state.groups) mix(static_cast<std::uint64_t>(g.key) ^ (static_cast<std::uint64_t>(g.end) << 32));
  return h;
}

/// Collective: every rank must hold the same training data and keys; otherwise EVERY rank throws
/// MpiError naming the first rank whose fingerprint differs from rank 0's.
template <typename Model>
void check_same_data(Communicator& comm, Trainer<Model>& trainer) {
  const std::vector<std::uint64_t> all = comm.allgather(data_fingerprint(trainer));
  for (int r = 1; r < comm.size(); ++r)
    require<MpiError>(all[static_cast<std::size_t>(r)] == all[0], "the training data or keys of rank ", r,
                      " differ from rank 0's (fingerprints ", all[static_cast<std::size_t>(r)], " and ", all[0],
                      "); every rank must load the same data set");
}

/// Collective: makes every rank's training state (parameters, Adam step and moments, noise and
/// sampler state, counters) rank 0's, by broadcasting rank 0's checkpoint_bytes(). An error on
/// any rank (e.g. a different architecture) makes every rank throw MpiError naming it.
template <typename Model>
void broadcast_training_state(Communicator& comm, Trainer<Model>& trainer) {
  std::string bytes;
  comm.agree_on([&] {
    if (comm.is_root()) bytes = checkpoint_bytes(trainer);
  });
  comm.broadcast_bytes(bytes);
  comm.agree_on([&] {
    if (!comm.is_root()) load_checkpoint_bytes(bytes, trainer, "<broadcast from rank 0>");
  });
}

/// Collective: rank 0 writes the training checkpoint to `path` atomically (save_checkpoint); the
/// other ranks hold the same state and write nothing. A failure makes every rank throw MpiError.
template <typename Model>
void save_checkpoint(Communicator& comm, const std::string& path, Trainer<Model>& trainer,
                     CheckpointFormat format = CheckpointFormat::Binary) {
  comm.agree_on([&] {
    if (comm.is_root()) mlvae::save_checkpoint(path, trainer, format);
  });
}

/// Collective: rank 0 reads the training checkpoint at `path` (written by any rank count or by one
/// process), then broadcasts the state to every rank. Only rank 0 needs to see the file.
template <typename Model>
void load_checkpoint(Communicator& comm, const std::string& path, Trainer<Model>& trainer) {
  comm.agree_on([&] {
    if (comm.is_root()) mlvae::load_checkpoint(path, trainer);
  });
  broadcast_training_state(comm, trainer);
}

/// Collective: makes `trainer` data-parallel over `comm`: checks that every rank holds the same
/// data and keys, broadcasts rank 0's training state (parameters, optimiser, sampler, noise), and
/// installs a DataParallel strategy, which it returns (for its stats()). Call it after building the
/// trainer and after any resume from a checkpoint (or use mpi::load_checkpoint, which broadcasts).
template <typename Model>
std::shared_ptr<DataParallel<Model>> enable_data_parallel(Communicator& comm, Trainer<Model>& trainer,
                                                          DataParallelOptions options = {}) {
  check_same_data(comm, trainer);
  broadcast_training_state(comm, trainer);
  auto strategy = std::make_shared<DataParallel<Model>>(comm, options);
  trainer.set_gradient_strategy(strategy);
  return strategy;
}

/// Collective: a 64-bit hash of this rank's parameters and Adam moments, compared across ranks;
/// true when all ranks hold bit-identical state (as identical steps should keep them).
template <typename Model>
bool states_identical(Communicator& comm, Trainer<Model>& trainer) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  auto mix_vector = [&h](const auto& v) {
    const auto* bytes = reinterpret_cast<const unsigned char*>(v.data());
    for (std::size_t i = 0; i < static_cast<std::size_t>(v.size()) * sizeof(v.data()[0]); ++i) {
      h ^= bytes[i];
      h *= 0x100000001b3ULL;
    }
  };
  mix_vector(trainer.model().parameters().values);
  mix_vector(trainer.optimizer().first_moment());
  mix_vector(trainer.optimizer().second_moment());
  const std::vector<std::uint64_t> all = comm.allgather(h);
  for (std::uint64_t v : all)
    if (v != all[0]) return false;
  return true;
}

}  // namespace mlvae::mpi
