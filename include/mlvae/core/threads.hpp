/// @file
/// mlvae/core/threads.hpp — how many threads mlvae uses, and its one parallel loop. Products split
/// the columns of their result over threads (nn/gemm.hpp); element-wise passes and Adam split
/// columns or fixed chunks the same way, so results do not depend on the thread count.
/// docs/architecture.md, "Threading".
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/types.hpp"

#include <Eigen/Core>

#include <algorithm>

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

/// The number of threads mlvae's own parallel loops and products use: Eigen's setting (see
/// core/threads.hpp), or 1 inside an enclosing OpenMP parallel region.
inline int compute_threads() {
#ifdef _OPENMP
  if (omp_in_parallel()) return 1;
#endif
  return std::max(1, Eigen::nbThreads());
}

/// Runs `body(begin, end)` over column ranges of [0, n) on compute_threads() threads (static
/// split), or serially when the work (`n · rows`) is small. Each column is handled by exactly one
/// call, so element-wise results do not depend on the thread count.
template <typename Body>
void parallel_columns(Index n, Index rows, Body&& body) {
  const int threads = static_cast<double>(n) * static_cast<double>(rows) >= 32768.0 ? compute_threads() : 1;
  if (threads <= 1 || n < 2) {
    body(Index{0}, n);
    return;
  }
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
  {
    const Index t = omp_get_thread_num(), count = omp_get_num_threads();
    const Index begin = n * t / count, end = n * (t + 1) / count;
    if (end > begin) body(begin, end);
  }
#else
  body(Index{0}, n);
#endif
}

}  // namespace mlvae
