/// @file
/// mlvae/model/batch_shard.hpp — where a slice of whole groups sits inside a larger minibatch, so a
/// model can compute the slice's share of the whole batch's objective: the same reparameterisation
/// noise the whole batch would give those groups, and normalisation by the whole batch's group
/// count. Used by data-parallel and gradient-accumulation training (train/sharding.hpp, mlvae/mpi).
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/random.hpp"
#include "mlvae/core/types.hpp"

#include <cstdint>

namespace mlvae {

/// Position of a slice of a minibatch inside the whole ("global") minibatch. The slice holds the
/// global batch's groups [first_group, first_group + slice groups), which occupy its columns
/// [first_column, first_column + slice columns). A default-constructed shard means "the slice is
/// the whole batch", which is what a plain training step uses.
///
/// Given a shard, a model (MLVAE, VAE) draws the noise stream of the WHOLE batch from its Rng and
/// uses only the slice's part of it (skipping the rest; see skip_normals()), and divides every
/// term and gradient by the whole batch's group count (MLVAE) or image count (VAE). The slices'
/// loss terms and gradients then add up to those of the whole batch, up to floating-point
/// summation order, and the Rng ends where the whole batch would have left it.
struct BatchShard {
  /// Index of the slice's first group in the global batch.
  Index first_group = 0;
  /// Index of the slice's first observation (column) in the global batch.
  Index first_column = 0;
  /// Groups in the global batch (0: the slice is the whole batch).
  Index global_groups = 0;
  /// Observations (columns) in the global batch (0: the slice is the whole batch).
  Index global_columns = 0;

  /// True when the slice is the whole batch (the default).
  bool whole() const { return global_groups == 0 && global_columns == 0; }

  /// Checks that a slice of `groups` groups and `columns` columns fits this position.
  /// @throws ShapeError naming the slice and the global batch when it does not.
  void check(Index groups, Index columns, const char* who) const {
    if (whole()) return;
    require<ShapeError>(first_group >= 0 && first_column >= 0 && first_group + groups <= global_groups &&
                            first_column + columns <= global_columns,
                        who, ": a slice of ", groups, " groups and ", columns, " columns at group ", first_group,
                        ", column ", first_column, " does not fit a global batch of ", global_groups, " groups and ",
                        global_columns, " columns");
  }
};

/// Advances `rng` exactly as `count` calls of Rng::normal() would, without computing most of the
/// unused values: Box–Muller pairs are skipped as raw draws (honouring the cached second value and
/// the rejection of u1 = 0), except the last one, which is drawn so that even the stale cached
/// value — saved in checkpoints — is the one the plain stream leaves behind.
inline void skip_normals(Rng& rng, std::int64_t count) {
  if (count <= 0) return;
  if (rng.has_cached_normal()) {
    rng.set_state(rng.state(), false, rng.cached_normal());  // as normal() does: the value stays, unflagged
    --count;
  }
  for (; count > 2; count -= 2) {
    while ((rng() >> 11) == 0) {
    }  // u1 = 0 is redrawn by normal()
    rng();  // u2
  }
  for (; count > 0; --count) rng.normal();
}

}  // namespace mlvae
