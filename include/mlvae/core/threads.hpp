// mlvae/core/threads.hpp — one place to set how many threads mlvae uses. Parallelism lives inside
// Eigen's GEMMs (which use OpenMP when built with it); see docs/architecture.md, "Threading".
#pragma once

#include "mlvae/core/error.hpp"

#include <Eigen/Core>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace mlvae {

/// Sets the thread count for Eigen's GEMMs and OpenMP regions; 0 keeps the default
/// (OMP_NUM_THREADS or the number of cores). Returns the count in force afterwards.
inline int set_threads(int threads) {
  require<ArgumentError>(threads >= 0, "set_threads: expected a thread count >= 0, found ", threads);
  if (threads > 0) {
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    Eigen::setNbThreads(threads);
  }
  return Eigen::nbThreads();
}

}  // namespace mlvae
