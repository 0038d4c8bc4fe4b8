/// @file
/// mlvae/mpi/communicator.hpp — the small collective interface data-parallel training needs
/// (allreduce of a flat buffer, gather, broadcast, agreement on errors) over MPI, with MPI errors
/// turned into exceptions and a watchdog that ends a rank whose collective does not complete in
/// time (a dead or stuck peer). Optional: only built with MLVAE_ENABLE_MPI (needs <mpi.h>); free of
/// Eigen so that the NCCL layer (mpi/nccl.hpp) can be compiled by nvcc cheaply.
#pragma once

#include "mlvae/core/error.hpp"

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstddef>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace mlvae::mpi {

/// An MPI call failed, or another rank reported an error that every rank must stop on.
class MpiError : public Error {
public:
  /// Creates the exception with message `what`.
  explicit MpiError(const std::string& what) : Error(what) {}
};

/// Throws MpiError naming `what` and MPI's own message when `rc` is not MPI_SUCCESS.
inline void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char message[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, message, &length);
  throw MpiError(detail::concat(what, " failed: ", std::string(message, static_cast<std::size_t>(length))));
}

/// The MPI datatype of `T` (float, double, char, int, long long, std::uint64_t).
template <typename T>
MPI_Datatype datatype() {
  if constexpr (std::is_same_v<T, float>) return MPI_FLOAT;
  else if constexpr (std::is_same_v<T, double>) return MPI_DOUBLE;
  else if constexpr (std::is_same_v<T, char>) return MPI_CHAR;
  else if constexpr (std::is_same_v<T, int>) return MPI_INT;
  else if constexpr (std::is_same_v<T, long long>) return MPI_LONG_LONG;
  else if constexpr (std::is_same_v<T, std::uint64_t>) return MPI_UINT64_T;
  else static_assert(sizeof(T) == 0, "mlvae::mpi::datatype: unsupported type");
}

/// RAII MPI_Init_thread (MPI_THREAD_FUNNELED: only the main thread calls MPI; OpenMP threads
/// compute) and MPI_Finalize. Create one in main() before anything else uses MPI.
class Environment {
public:
  /// Initialises MPI unless it already is. @throws MpiError.
  Environment(int& argc, char**& argv) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) return;
    int provided = 0;
    check(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    owner_ = true;
  }
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;
  /// Finalises MPI if this object initialised it.
  ~Environment() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owner_ && !finalized) MPI_Finalize();
  }

private:
  bool owner_ = false;
};

/// Ends this process when a collective has not completed within a time limit: prints which
/// collective on which rank and why that usually happens, then exits with status 124 (an MPI job
/// launched by mpirun is then torn down by the launcher). One background thread; arm() and
/// disarm() are cheap (an atomic store). A timeout of 0 disables it.
class Watchdog {
public:
  /// Starts the watchdog thread for `rank` of `size` (none when `timeout_seconds` <= 0).
  Watchdog(double timeout_seconds, int rank, int size) : timeout_(timeout_seconds), rank_(rank), size_(size) {
    if (timeout_ > 0) thread_ = std::thread([this] { watch(); });
  }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;
  /// Stops the thread.
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  /// The time limit in seconds (0: disabled).
  double timeout_seconds() const { return timeout_; }
  /// Marks the start of a collective called `what` (a string literal: it is kept by pointer).
  void arm(const char* what) {
    what_.store(what, std::memory_order_relaxed);
    since_.store(now_ns(), std::memory_order_release);
  }
  /// Marks the end of the collective.
  void disarm() { since_.store(0, std::memory_order_release); }

private:
  static std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  void watch() {
    const auto poll = std::chrono::milliseconds(timeout_ < 5 ? 50 : 500);
    std::unique_lock<std::mutex> lock(mutex_);
    while (!wake_.wait_for(lock, poll, [this] { return stop_; })) {
      const std::int64_t since = since_.load(std::memory_order_acquire);
      if (since == 0) continue;
      const double waited = static_cast<double>(now_ns() - since) * 1e-9;
      if (waited < timeout_) continue;
      std::fprintf(stderr,
                   "mlvae rank %d/%d: error: %s did not complete within %.0f s: another rank has died, hangs, or is "
                   "much slower; ending this rank (exit status 124)\n",
                   rank_, size_, what_.load(std::memory_order_relaxed), timeout_);
      std::fflush(stderr);
      std::_Exit(124);
    }
  }

  double timeout_;
  int rank_, size_;
  std::atomic<std::int64_t> since_{0};
  std::atomic<const char*> what_{""};
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

/// A duplicate of an MPI communicator (so mlvae's collectives never mix with the application's)
/// with errors returned as MpiError instead of aborting, and a Watchdog on every collective.
class Communicator {
public:
  /// Duplicates `comm`; `timeout_seconds` bounds every collective (0: wait forever).
  /// @throws MpiError when MPI is not initialised or a call fails.
  explicit Communicator(MPI_Comm comm = MPI_COMM_WORLD, double timeout_seconds = 300) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    require<MpiError>(initialized != 0, "mlvae::mpi::Communicator: MPI is not initialised (create an "
                                        "mlvae::mpi::Environment in main() first)");
    check(MPI_Comm_dup(comm, &comm_), "MPI_Comm_dup");
    check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
    watchdog_ = std::make_unique<Watchdog>(timeout_seconds, rank_, size_);
  }
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;
  /// Frees the duplicate (before MPI_Finalize).
  ~Communicator() {
    watchdog_.reset();
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }

  /// This process's rank (0-based).
  int rank() const { return rank_; }
  /// Number of ranks.
  int size() const { return size_; }
  /// True on rank 0 (which prints and writes checkpoints).
  bool is_root() const { return rank_ == 0; }
  /// The underlying (duplicated) MPI communicator.
  MPI_Comm get() const { return comm_; }
  /// The collective time limit in seconds (0: none).
  double timeout_seconds() const { return watchdog_->timeout_seconds(); }

  /// Sums `data[0..n)` over all ranks, in place; every rank receives the sum (MPI_Allreduce).
  template <typename T>
  void allreduce_sum(T* data, std::ptrdiff_t n) {
    Armed armed(*watchdog_, "MPI_Allreduce");
    check(MPI_Allreduce(MPI_IN_PLACE, data, count(n), datatype<T>(), MPI_SUM, comm_), "MPI_Allreduce");
  }

  /// Gathers `send[0..n)` of every rank on `root` into `recv`, rank after rank (MPI_Gatherv);
  /// `counts[r]` is rank r's n. `recv` is only used on root.
  template <typename T>
  void gather(const T* send, std::ptrdiff_t n, T* recv, const std::vector<std::ptrdiff_t>& counts, int root = 0) {
    require<MpiError>(static_cast<int>(counts.size()) == size_, "Communicator::gather: expected ", size_,
                      " counts, found ", counts.size());
    std::vector<int> c(counts.size()), displacements(counts.size());
    std::ptrdiff_t offset = 0;
    for (std::size_t r = 0; r < counts.size(); ++r) {
      c[r] = count(counts[r]);
      displacements[r] = count(offset);
      offset += counts[r];
    }
    Armed armed(*watchdog_, "MPI_Gatherv");
    check(MPI_Gatherv(send, count(n), datatype<T>(), recv, c.data(), displacements.data(), datatype<T>(), root, comm_),
          "MPI_Gatherv");
  }

  /// Broadcasts `data[0..n)` from `root` (MPI_Bcast).
  template <typename T>
  void broadcast(T* data, std::ptrdiff_t n, int root = 0) {
    Armed armed(*watchdog_, "MPI_Bcast");
    check(MPI_Bcast(data, count(n), datatype<T>(), root, comm_), "MPI_Bcast");
  }

  /// Broadcasts a byte string (its length, then its bytes) from `root`; other ranks' `bytes` are replaced.
  void broadcast_bytes(std::string& bytes, int root = 0) {
    long long length = static_cast<long long>(bytes.size());
    broadcast(&length, 1, root);
    bytes.resize(static_cast<std::size_t>(length));
    if (length > 0) broadcast(bytes.data(), static_cast<std::ptrdiff_t>(length), root);
  }

  /// Every rank's `value`, in rank order (MPI_Allgather).
  std::vector<std::uint64_t> allgather(std::uint64_t value) {
    std::vector<std::uint64_t> all(static_cast<std::size_t>(size_));
    Armed armed(*watchdog_, "MPI_Allgather");
    check(MPI_Allgather(&value, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, comm_), "MPI_Allgather");
    return all;
  }

  /// Collective agreement on an outcome: each rank passes its error message ("" when it succeeded).
  /// When any rank failed, EVERY rank throws MpiError with the lowest failing rank's message
  /// ("rank r: ..."), so all ranks stop together instead of some waiting forever.
  void agree(const std::string& error) {
    int first_failed = error.empty() ? size_ : rank_;
    {
      Armed armed(*watchdog_, "MPI_Allreduce (error agreement)");
      check(MPI_Allreduce(MPI_IN_PLACE, &first_failed, 1, MPI_INT, MPI_MIN, comm_), "MPI_Allreduce");
    }
    if (first_failed == size_) return;
    std::string message = error;
    broadcast_bytes(message, first_failed);
    throw MpiError(detail::concat("rank ", first_failed, " of ", size_, ": ", message));
  }

  /// Runs `body()` on every rank and agree()s on its outcome: an exception on any rank makes every
  /// rank throw MpiError naming it. Returns normally only when all ranks succeeded.
  template <typename Body>
  void agree_on(Body&& body) {
    std::string error;
    try {
      body();
    } catch (const std::exception& e) {
      error = e.what();
      if (error.empty()) error = "unknown error";
    }
    agree(error);
  }

private:
  struct Armed {
    Watchdog& watchdog;
    Armed(Watchdog& w, const char* what) : watchdog(w) { watchdog.arm(what); }
    ~Armed() { watchdog.disarm(); }
    Armed(const Armed&) = delete;
    Armed& operator=(const Armed&) = delete;
  };
  static int count(std::ptrdiff_t n) {
    require<MpiError>(n >= 0 && n <= INT_MAX, "mlvae::mpi: a message of ", n, " elements exceeds MPI's int count");
    return static_cast<int>(n);
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  std::unique_ptr<Watchdog> watchdog_;
};

/// Runs `body()`; when it throws, prints "mlvae rank r/n: error: ..." to stderr and calls
/// MPI_Abort on MPI_COMM_WORLD, which ends every rank of the job (a rank failing alone, e.g. on
/// invalid data, must not leave the others waiting in a collective). Returns body's status.
template <typename Body>
int run_or_abort(Body&& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    int rank = 0, size = 1, initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) {
      MPI_Comm_rank(MPI_COMM_WORLD, &rank);
      MPI_Comm_size(MPI_COMM_WORLD, &size);
    }
    std::fprintf(stderr, "mlvae rank %d/%d: error: %s\n", rank, size, e.what());
    std::fflush(stderr);
    if (initialized && size > 1) MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
  }
}

}  // namespace mlvae::mpi
