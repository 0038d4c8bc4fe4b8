/// @file
/// mlvae/nn/gemm_select.hpp — which kernel runs each float matrix product, chosen by measurement at
/// run time: Eigen's GEBP (always there), OpenBLAS and BLIS (loaded with dlopen when installed; no
/// link-time dependency). Each product shape is timed once per machine (not per thread count: results
/// must not depend on it), on a quiet machine only (busy: Eigen, not remembered), the fastest
/// kernel kept and remembered in a small text cache; MLVAE_GEMM_KERNEL or set_gemm_kernel() overrides.
/// docs/performance.md, "Kernels chosen by measurement"; docs/architecture.md, "Threading".
#pragma once

#include "mlvae/core/types.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#define MLVAE_GEMM_DLOPEN 1
#include <dlfcn.h>
#else
#define MLVAE_GEMM_DLOPEN 0
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

namespace mlvae {

/// Whether an operand enters a product as stored or transposed.
enum class Transpose { No, Yes };

/// A kernel that can run a float product. Only kernels that allocate nothing per call in steady state
/// and whose results do not depend on the thread count are candidates: oneDNN's dnnl_sgemm is not one
/// (it allocates its packing buffer on every call: 3 allocations per call measured with oneDNN 2.6).
enum class GemmKernel { Eigen, OpenBLAS, BLIS };

/// "eigen", "openblas" or "blis" (the spelling of MLVAE_GEMM_KERNEL and of the cache).
inline const char* gemm_kernel_name(GemmKernel kernel) {
  switch (kernel) {
    case GemmKernel::OpenBLAS: return "openblas";
    case GemmKernel::BLIS: return "blis";
    default: return "eigen";
  }
}

/// Reads "eigen", "openblas" or "blis" into `kernel`; false for anything else.
inline bool parse_gemm_kernel(std::string_view text, GemmKernel& kernel) {
  for (GemmKernel k : {GemmKernel::Eigen, GemmKernel::OpenBLAS, GemmKernel::BLIS})
    if (text == gemm_kernel_name(k)) {
      kernel = k;
      return true;
    }
  return false;
}

/// The shape of one product C (m x n) = op(A) (m x k) · op(B) (k x n): what a kernel choice is made for.
struct GemmProduct {
  Transpose ta = Transpose::No, tb = Transpose::No;
  Index m = 0, n = 0, k = 0;
  /// Multiply-adds of the product.
  double work() const { return static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k); }
  /// E.g. "NT 500x784x256" (op(A), op(B), m x n x k), as the cache and the report write it.
  std::string text() const {
    std::ostringstream s;
    s << (ta == Transpose::Yes ? 'T' : 'N') << (tb == Transpose::Yes ? 'T' : 'N') << ' ' << m << 'x' << n << 'x' << k;
    return s.str();
  }
  friend bool operator<(const GemmProduct& a, const GemmProduct& b) {
    return std::tie(a.ta, a.tb, a.m, a.n, a.k) < std::tie(b.ta, b.tb, b.m, b.n, b.k);
  }
  friend bool operator==(const GemmProduct& a, const GemmProduct& b) {
    return a.ta == b.ta && a.tb == b.tb && a.m == b.m && a.n == b.n && a.k == b.k;
  }
};

/// Products below this many multiply-adds always run on Eigen, unmeasured (a library call and its
/// thread split cost more than they could save; this is also gemm.hpp's threading threshold).
inline constexpr double gemm_select_min_work = 1 << 20;
/// OpenBLAS is a candidate from this many multiply-adds: below it OpenBLAS 0.3.21's small-matrix path
/// allocated on every call on an AVX-512 Xeon (docs/performance.md, "The GEMM underneath").
inline constexpr double gemm_openblas_min_work = 8.0 * (1 << 20);

namespace detail {

// One single-threaded library call: column-major C (m x n) = op(A) op(B) (+ C when accumulate).
using SgemmCall = void (*)(void* fn, Transpose ta, Transpose tb, Index m, Index n, Index k, const float* a, Index lda,
                           const float* b, Index ldb, float* c, Index ldc, bool accumulate);

struct SgemmLibrary {
  GemmKernel kernel = GemmKernel::Eigen;
  std::string description;  // what was loaded, e.g. "libopenblas.so.0 (0.3.21, Cooperlake kernels)"
  void* fn = nullptr;       // the library's entry point, passed to `call`
  SgemmCall call = nullptr;
  // Run on the calling thread only: BLIS 0.9's packing-block pool grows (allocates) when two threads
  // check out blocks at once, at unpredictable steps (measured: 10 allocations in a steady-state
  // 2-thread conv28 step). The split of C is the same either way, so results are too.
  bool serial = false;
};

using CblasSgemm = void (*)(int order, int ta, int tb, int m, int n, int k, float alpha, const float* a, int lda,
                            const float* b, int ldb, float beta, float* c, int ldc);
// BLIS's typed API (bli_sgemm) with 64-bit dim_t/inc_t and trans_t an int enum (BLIS_NO_TRANSPOSE = 0).
// It takes general strides, so transposes are strides, and it is called rather than BLIS's
// cblas_sgemm, whose sgemm_ could bind to another BLAS already loaded in the process.
using BliSgemm = void (*)(int transa, int transb, std::int64_t m, std::int64_t n, std::int64_t k, const float* alpha,
                          const float* a, std::int64_t rsa, std::int64_t csa, const float* b, std::int64_t rsb,
                          std::int64_t csb, const float* beta, float* c, std::int64_t rsc, std::int64_t csc);

inline void cblas_sgemm_call(void* fn, Transpose ta, Transpose tb, Index m, Index n, Index k, const float* a,
                             Index lda, const float* b, Index ldb, float* c, Index ldc, bool accumulate) {
  constexpr int col_major = 102, no_trans = 111, trans = 112;
  reinterpret_cast<CblasSgemm>(fn)(col_major, ta == Transpose::Yes ? trans : no_trans,
                                   tb == Transpose::Yes ? trans : no_trans, int(m), int(n), int(k), 1.0f, a, int(lda),
                                   b, int(ldb), accumulate ? 1.0f : 0.0f, c, int(ldc));
}

inline void bli_sgemm_call(void* fn, Transpose ta, Transpose tb, Index m, Index n, Index k, const float* a, Index lda,
                           const float* b, Index ldb, float* c, Index ldc, bool accumulate) {
  const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  // op(A)(i, p): A(i, p) = a[i + p·lda] as stored, A(p, i) = a[p + i·lda] transposed; likewise B.
  const std::int64_t rsa = ta == Transpose::No ? 1 : lda, csa = ta == Transpose::No ? lda : 1;
  const std::int64_t rsb = tb == Transpose::No ? 1 : ldb, csb = tb == Transpose::No ? ldb : 1;
  reinterpret_cast<BliSgemm>(fn)(0, 0, m, n, k, &one, a, rsa, csa, b, rsb, csb, &beta, c, 1, ldc);
}

// Loads OpenBLAS and BLIS if installed (RTLD_LOCAL: their identically named BLAS symbols do not
// collide), each set to one thread: mlvae's own threads split C (run_library_sgemm).
inline std::vector<SgemmLibrary> load_sgemm_libraries() {
  std::vector<SgemmLibrary> out;
#if MLVAE_GEMM_DLOPEN
  auto open = [](std::initializer_list<const char*> names, std::string& which) -> void* {
    for (const char* name : names)
      if (void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL)) {
        which = name;
        return h;
      }
    return nullptr;
  };
  std::string lib;
  if (void* h = open({"libopenblas.so.0", "libopenblas.so", "libopenblas.dylib"}, lib)) {
    if (auto set = reinterpret_cast<void (*)(int)>(dlsym(h, "openblas_set_num_threads"))) set(1);
    std::string about = lib;
    if (auto config = reinterpret_cast<char* (*)()>(dlsym(h, "openblas_get_config"))) about += std::string(", ") + config();
    if (auto core = reinterpret_cast<char* (*)()>(dlsym(h, "openblas_get_corename")))
      about += std::string(", ") + core() + " kernels";
    if (void* fn = dlsym(h, "cblas_sgemm")) out.push_back({GemmKernel::OpenBLAS, about, fn, cblas_sgemm_call});
  }
  if (void* h = open({"libblis.so.4", "libblis.so", "libblis.dylib"}, lib)) {
    auto int_size = reinterpret_cast<std::int64_t (*)()>(dlsym(h, "bli_info_get_int_type_size"));
    if (auto set = reinterpret_cast<void (*)(std::int64_t)>(dlsym(h, "bli_thread_set_num_threads"))) set(1);
    std::string about = lib;
    if (auto version = reinterpret_cast<const char* (*)()>(dlsym(h, "bli_info_get_version_str")))
      about += std::string(", ") + version();
    auto id = reinterpret_cast<int (*)()>(dlsym(h, "bli_arch_query_id"));
    auto arch = reinterpret_cast<const char* (*)(int)>(dlsym(h, "bli_arch_string"));
    if (id && arch) about += std::string(", ") + arch(id()) + " kernels";
    void* fn = dlsym(h, "bli_sgemm");
    if (fn && int_size && int_size() == 64) out.push_back({GemmKernel::BLIS, about + ", one thread", fn, bli_sgemm_call, true});
  }
#endif
  return out;
}

}  // namespace detail

/// The libraries found on this machine (loaded once, on first use).
inline const std::vector<detail::SgemmLibrary>& gemm_libraries() {
  static const std::vector<detail::SgemmLibrary> libraries = detail::load_sgemm_libraries();
  return libraries;
}

/// The loaded library behind `kernel`, or null (Eigen, or not installed).
inline const detail::SgemmLibrary* gemm_library(GemmKernel kernel) {
  for (const auto& lib : gemm_libraries())
    if (lib.kernel == kernel) return &lib;
  return nullptr;
}

/// The kernels that may run `p` here: Eigen always; OpenBLAS and BLIS when installed and the product
/// is large enough (gemm_select_min_work; OpenBLAS from gemm_openblas_min_work).
inline std::vector<GemmKernel> gemm_candidates(const GemmProduct& p) {
  std::vector<GemmKernel> out{GemmKernel::Eigen};
  if (p.work() < gemm_select_min_work) return out;
  for (const auto& lib : gemm_libraries())
    if (lib.kernel != GemmKernel::OpenBLAS || p.work() >= gemm_openblas_min_work) out.push_back(lib.kernel);
  return out;
}

/// C (m x n, column-major) = op(A)·op(B) (+ C when `accumulate`) on a library kernel. C is cut into at
/// most 4 blocks of rows or columns (along its longer side, 16-aligned), a function of the shape alone;
/// each block is one single-threaded library call and threads take whole blocks, so results do not
/// depend on the thread count. `threads` <= 1 (and BLIS, see SgemmLibrary::serial) runs the blocks in
/// order on the calling thread.
template <typename T, typename Call>
void split_c_blocks(int threads, Transpose ta, Transpose tb, Index m, Index n, const T* a, Index lda, const T* b,
                    Index ldb, T* c, Index ldc, Call&& call);

inline void run_library_sgemm(const detail::SgemmLibrary& lib, int threads, Transpose ta, Transpose tb, Index m,
                              Index n, Index k, const float* a, Index lda, const float* b, Index ldb, float* c,
                              Index ldc, bool accumulate) {
  split_c_blocks(lib.serial ? 1 : threads, ta, tb, m, n, a, lda, b, ldb, c, ldc,
                 [&](Index rows, Index cols, const float* a_block, const float* b_block, float* c_block) {
                   lib.call(lib.fn, ta, tb, rows, cols, k, a_block, lda, b_block, ldb, c_block, ldc, accumulate);
                 });
}

/// The split of C that every library kernel runs on (run_library_sgemm here, the compile-time
/// OpenBLAS backend in gemm.hpp): up to 4 row or column blocks of C (along its longer side,
/// 16-aligned), a function of the shape only; `call(rows, cols, a_block, b_block, c_block)` computes
/// one block; threads (at most `threads`) take whole blocks, so results do not depend on their count.
template <typename T, typename Call>
void split_c_blocks(int threads, Transpose ta, Transpose tb, Index m, Index n, const T* a, Index lda, const T* b,
                    Index ldb, T* c, Index ldc, Call&& call) {
  const bool by_rows = m > n;
  const Index side = by_rows ? m : n;
  const Index units = (side + 15) / 16;
  const Index blocks = std::min<Index>(4, units);
  auto block = [&](Index i) {
    const Index begin = std::min(side, (units * i / blocks) * 16), end = std::min(side, (units * (i + 1) / blocks) * 16);
    if (end <= begin) return;
    const Index rows = by_rows ? end - begin : m, cols = by_rows ? n : end - begin;
    const T* a_block = !by_rows ? a : (ta == Transpose::No ? a + begin : a + begin * lda);
    const T* b_block = by_rows ? b : (tb == Transpose::No ? b + begin * ldb : b + begin);
    T* c_block = by_rows ? c + begin : c + begin * ldc;
    call(rows, cols, a_block, b_block, c_block);
  };
  threads = static_cast<int>(std::min<Index>(threads, blocks));
  if (threads <= 1) {
    for (Index i = 0; i < blocks; ++i) block(i);
    return;
  }
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
  {
    const Index t = omp_get_thread_num(), count = omp_get_num_threads();
    for (Index i = blocks * t / count; i < blocks * (t + 1) / count; ++i) block(i);
  }
#else
  for (Index i = 0; i < blocks; ++i) block(i);
#endif
}

namespace detail {

// Reads "model name" and the SIMD flags that matter to a GEMM from /proc/cpuinfo (Linux); "unknown"
// elsewhere.
inline std::pair<std::string, std::string> cpu_model_and_isa() {
  std::string model = "unknown", isa;
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  bool have_flags = false;
  while (std::getline(in, line) && (model == "unknown" || !have_flags)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    key.erase(key.find_last_not_of(" \t") + 1);
    std::string value = colon + 1 < line.size() ? line.substr(colon + 1) : "";
    value.erase(0, std::min(value.size(), value.find_first_not_of(" \t")));
    if (key == "model name" && model == "unknown") model = value;
    if (key == "flags" && !have_flags) {
      have_flags = true;
      std::istringstream words(" " + value + " ");
      std::string flag;
      std::vector<std::string> present;
      while (words >> flag) present.push_back(flag);
      for (const char* f : {"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
                            "amx_tile", "amx_bf16"})
        if (std::find(present.begin(), present.end(), f) != present.end()) isa += (isa.empty() ? "" : ",") + std::string(f);
    }
  }
  for (char& ch : model)
    if (ch == '\t' || ch == '\n') ch = ' ';
  return {model, isa.empty() ? "none" : isa};
}

// The default cache file: $MLVAE_GEMM_CACHE (empty: none), else $XDG_CACHE_HOME/mlvae/gemm_kernels.txt,
// else ~/.cache/mlvae/gemm_kernels.txt.
inline std::string default_gemm_cache_path() {
  if (const char* p = std::getenv("MLVAE_GEMM_CACHE")) return p;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/mlvae/gemm_kernels.txt";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/mlvae/gemm_kernels.txt";
  return "";
}

// Busy and idle jiffies of all CPUs together (the first line of /proc/stat); false where there is none.
inline bool cpu_jiffies(unsigned long long& busy, unsigned long long& idle) {
  std::ifstream in("/proc/stat");
  std::string cpu;
  unsigned long long v[8] = {};
  if (!(in >> cpu) || cpu != "cpu") return false;
  for (auto& x : v)
    if (!(in >> x)) return false;
  idle = v[3] + v[4];  // idle + iowait
  busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
  return true;
}

// "" when the machine is quiet enough to time kernels on `threads` threads, else why not, e.g. "1.6 of
// 2 cores busy". A kernel timed on threads that share their cores with other processes is slowed the
// more, the more threads it uses (a barrier waits for the slowest), so a busy machine picks the
// single-threaded kernel whatever its merit: `threads` cores must be idle. Judged over 50 ms of
// /proc/stat where there is one, else by the 1-minute load average.
inline std::string machine_busy(int threads) {
  const unsigned cores = std::thread::hardware_concurrency();
  if (cores == 0) return "";
  const double allowed = std::max(0.0, static_cast<double>(cores) - static_cast<double>(threads)) + 0.25;
  std::ostringstream s;
  s.precision(2);
  unsigned long long b0 = 0, i0 = 0, b1 = 0, i1 = 0;
  if (cpu_jiffies(b0, i0)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (cpu_jiffies(b1, i1) && b1 + i1 > b0 + i0) {
      const double used = static_cast<double>(cores) * static_cast<double>(b1 - b0) /
                          static_cast<double>((b1 - b0) + (i1 - i0));
      if (used <= allowed) return "";
      s << std::fixed << used << " of " << cores << " cores busy";
      return s.str();
    }
  }
  double load = 0;
#if defined(__unix__) || defined(__APPLE__)
  if (getloadavg(&load, 1) != 1) return "";
#endif
  if (load <= allowed + 0.25) return "";
  s << "load " << std::fixed << load << " on " << cores << " cores";
  return s.str();
}

inline std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string::size_type begin = 0;
  for (;;) {
    const auto end = s.find(sep, begin);
    out.push_back(s.substr(begin, end == std::string::npos ? std::string::npos : end - begin));
    if (end == std::string::npos) return out;
    begin = end + 1;
  }
}

}  // namespace detail

/// The machine a cache entry belongs to: CPU model and SIMD flags (tab-separated), e.g.
/// "AMD EPYC\tavx,avx2,fma,avx512f,...".
inline const std::string& gemm_machine() {
  static const std::string machine = [] {
    const auto [model, isa] = detail::cpu_model_and_isa();
    return model + '\t' + isa;
  }();
  return machine;
}

/// Chooses the kernel of each float product by measurement, once per shape and thread count, and
/// remembers the choices: in memory for the process (a shape keeps its kernel whatever the thread
/// count later, so a process's results never depend on set_threads), and in a text cache file for
/// the next processes on the same machine. The process-wide instance is gemm_selector() (nn/gemm.hpp);
/// tests make their own with a temporary cache and, to be deterministic, a fake timer.
///
/// Cache file: a first line "mlvae-gemm-kernels 1", then one tab-separated line per choice:
/// CPU model, SIMD flags, kernels available, threads, product ("NT 500x784x256"), kernel, timings
/// ("eigen=1.2e-03,openblas=9.8e-04", seconds per call). Lines that do not parse, or that name a
/// kernel not available now, are ignored; a file with another first line is ignored and rewritten;
/// a file that cannot be read or written is not an error (the choices are then made per process).
class GemmSelector {
public:
  /// Seconds one call of `kernel` takes on product `p` at `threads` threads.
  using Timer = std::function<double(GemmKernel kernel, const GemmProduct& p, int threads)>;

  struct Options {
    /// A kernel to use for every product it is a candidate for (others: Eigen); nullopt measures.
    std::optional<GemmKernel> force;
    /// Why `force` is set (e.g. "MLVAE_GEMM_KERNEL=openblas"), or a note on an ignored request.
    std::string force_note;
    /// The cache file ("" : none).
    std::string cache_path;
    /// The machine key (gemm_machine() by default).
    std::string machine = gemm_machine();
    /// Measure nothing (Eigen, not remembered) while the machine is busy (fewer idle cores than the
    /// product's threads, detail::machine_busy): other processes' threads then decide the timings,
    /// most of all those of multi-threaded kernels, and the file would keep that verdict. Tests
    /// turn it off.
    bool skip_cache_when_busy = true;
  };

  /// A selector with `options`, timing candidates with `timer`.
  GemmSelector(Options options, Timer timer) : options_(std::move(options)), timer_(std::move(timer)) {
    load_cache();
  }

  /// The kernel for `p` (timed at `threads` threads when measured): the process's earlier choice
  /// for p, else the forced kernel, else the cache's (whatever thread count it was measured at),
  /// else Eigen when the machine is busy, else measured now and written to the cache. Thread-safe.
  GemmKernel kernel_for(const GemmProduct& p, int threads) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (auto it = chosen_.find(p); it != chosen_.end()) return it->second.kernel;
    const std::vector<GemmKernel> candidates = gemm_candidates(p);
    Choice choice;
    choice.threads = threads;
    if (options_.force) {
      const bool usable = std::find(candidates.begin(), candidates.end(), *options_.force) != candidates.end();
      choice.kernel = usable ? *options_.force : GemmKernel::Eigen;
      choice.how = usable ? "forced" : std::string("forced ") + gemm_kernel_name(*options_.force) + ", not a candidate";
    } else if (candidates.size() == 1) {
      choice.how = "only candidate";
    } else if (auto cached = cache_.find(cache_key(p)); cached != cache_.end() &&
               std::find(candidates.begin(), candidates.end(), cached->second.kernel) != candidates.end()) {
      choice = cached->second;
      choice.how = "cached";
    } else if (const std::string busy = options_.skip_cache_when_busy ? detail::machine_busy(threads) : std::string();
               !busy.empty()) {
      // Timings on a busy machine say more about the other processes than about the kernels, and a
      // choice that differed from process to process would make results depend on when a run
      // started: the default kernel, measured later when the machine is quiet.
      choice.how = "default: not measured on a busy machine (" + busy + ")";
    } else {
      for (GemmKernel k : candidates) choice.seconds.emplace_back(k, 1e300);
      // Interleaved rounds, the best of each kernel kept: load from elsewhere hits all kernels alike.
      for (int round = 0; round < measure_rounds; ++round)
        for (auto& [kernel, best] : choice.seconds) best = std::min(best, timer_(kernel, p, threads));
      choice.kernel = fastest(choice.seconds);
      choice.how = "measured";
      ++measurements_;
      cache_[cache_key(p)] = choice;
      save(p, choice);
    }
    return chosen_.emplace(p, choice).first->second.kernel;
  }

  /// One line per product chosen so far, e.g. "NT 500x784x256 (100.4 M multiply-adds), 2 threads:
  /// openblas (measured: eigen 1.62 ms, openblas 1.41 ms, blis 1.55 ms)".
  std::vector<std::string> report() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::string> out;
    for (const auto& [p, c] : chosen_) {
      std::ostringstream s;
      s.precision(3);
      s << p.text() << " (" << p.work() * 1e-6 << " M multiply-adds), " << c.threads << " thread"
        << (c.threads == 1 ? "" : "s") << ": " << gemm_kernel_name(c.kernel) << " (" << c.how;
      for (std::size_t i = 0; i < c.seconds.size(); ++i)
        s << (i ? ", " : ": ") << gemm_kernel_name(c.seconds[i].first) << ' ' << c.seconds[i].second * 1e3 << " ms";
      s << ')';
      out.push_back(s.str());
    }
    return out;
  }

  /// The choice for each product shape so far, "<shape>: <kernel>" (sorted by shape; no timings, so
  /// the same choices give the same lines: what a checkpoint records).
  std::vector<std::string> choices() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::string> out;
    for (const auto& [p, c] : chosen_) out.push_back(p.text() + ": " + gemm_kernel_name(c.kernel));
    return out;
  }

  /// How many products this selector has timed (not counting cached or forced choices).
  int measurements() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return measurements_;
  }
  /// The options in force.
  const Options& options() const { return options_; }
  /// Whether the cache file was read and its first line was right.
  bool cache_loaded() const { return cache_ok_; }

  /// Rounds of timing per candidate (interleaved over the candidates; the best of each is kept).
  static constexpr int measure_rounds = 5;
  /// Another kernel replaces Eigen only when at least this much faster (a noisy near-tie keeps the
  /// default).
  static constexpr double margin = 0.97;

  /// The kernel `seconds` (one entry per candidate, Eigen first) selects: the fastest, Eigen unless
  /// another is below `margin` times Eigen's time; ties go to the earlier entry.
  static GemmKernel fastest(const std::vector<std::pair<GemmKernel, double>>& seconds) {
    double eigen = 1e300;
    for (const auto& [k, s] : seconds)
      if (k == GemmKernel::Eigen) eigen = s;
    GemmKernel best = GemmKernel::Eigen;
    double best_s = eigen * margin;
    for (const auto& [k, s] : seconds)
      if (k != GemmKernel::Eigen && s < best_s) {
        best = k;
        best_s = s;
      }
    return best;
  }

private:
  struct Choice {
    GemmKernel kernel = GemmKernel::Eigen;
    std::string how;
    std::vector<std::pair<GemmKernel, double>> seconds;  // candidates' times, when measured
    int threads = 1;
  };

  static constexpr const char* header = "mlvae-gemm-kernels 1";

public:
  /// The kernels installed here, e.g. "eigen,openblas,blis" (part of a cache entry's key: an entry
  /// made with another set of libraries is measured again).
  static std::string available_kernels() {
    std::string s = "eigen";
    for (const auto& lib : gemm_libraries()) s += std::string(",") + gemm_kernel_name(lib.kernel);
    return s;
  }

private:
  // The thread count is not part of the key: one choice per machine and product, whatever the
  // thread count of the run, so that results do not depend on it (each kernel's do not).
  std::string cache_key(const GemmProduct& p) const {
    return options_.machine + '\t' + available_kernels() + '\t' + p.text();
  }

  void load_cache() {
    if (options_.cache_path.empty()) return;
    std::ifstream in(options_.cache_path);
    std::string line;
    if (!in || !std::getline(in, line) || line != header) return;
    cache_ok_ = true;
    for (int lines = 0; lines < 100000 && std::getline(in, line); ++lines) {
      const std::vector<std::string> f = detail::split(line, '\t');
      // CPU model, ISA, available kernels, threads, product, kernel, timings
      if (f.size() != 7 || f[3].empty() || f[3].size() > 4 || f[3].find_first_not_of("0123456789") != std::string::npos)
        continue;
      Choice c;
      if (!parse_gemm_kernel(f[5], c.kernel)) continue;
      c.threads = std::atoi(f[3].c_str());
      for (const std::string& t : detail::split(f[6], ',')) {
        const auto eq = t.find('=');
        GemmKernel k;
        if (eq == std::string::npos || !parse_gemm_kernel(std::string_view(t).substr(0, eq), k)) continue;
        char* end = nullptr;
        const double s = std::strtod(t.c_str() + eq + 1, &end);
        if (end && *end == '\0' && s > 0 && s < 1e6) c.seconds.emplace_back(k, s);
      }
      const std::string key = f[0] + '\t' + f[1] + '\t' + f[2] + '\t' + f[4];  // f[3]: measured at, not keyed
      cache_.emplace(key, c);  // the first line for a key wins
    }
  }

  std::string line_of(const GemmProduct& p, const Choice& c) const {
    std::ostringstream s;
    s << options_.machine << '\t' << available_kernels() << '\t' << c.threads << '\t' << p.text() << '\t'
      << gemm_kernel_name(c.kernel) << '\t';
    s.precision(4);
    for (std::size_t i = 0; i < c.seconds.size(); ++i)
      s << (i ? "," : "") << gemm_kernel_name(c.seconds[i].first) << '=' << std::scientific << c.seconds[i].second;
    return s.str();
  }

  // Appends the choice to the cache file (creating it, or rewriting one whose first line is wrong);
  // silently does nothing when it cannot.
  void save(const GemmProduct& p, const Choice& c) {
    if (options_.cache_path.empty()) return;
    std::error_code ec;
    const std::filesystem::path path(options_.cache_path);
    if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
    std::ofstream out(options_.cache_path, cache_ok_ ? std::ios::app : std::ios::trunc);
    if (!out) return;
    if (!cache_ok_) out << header << '\n';
    cache_ok_ = true;
    out << line_of(p, c) << '\n';
  }

  Options options_;
  Timer timer_;
  mutable std::mutex mutex_;
  std::map<GemmProduct, Choice> chosen_;     // this process's choices
  std::map<std::string, Choice> cache_;      // the file's entries (and this process's measurements)
  bool cache_ok_ = false;
  int measurements_ = 0;
};

/// Reads MLVAE_GEMM_KERNEL ("auto", "eigen", "openblas" or "blis"; unset or empty: auto) into
/// options.force / force_note; anything else is ignored with a note in the report. A named kernel
/// that is not installed leaves Eigen in its place, also noted.
inline void gemm_kernel_from_environment(GemmSelector::Options& options) {
  const char* env = std::getenv("MLVAE_GEMM_KERNEL");
  if (!env || !*env || std::string_view(env) == "auto") return;
  GemmKernel k;
  if (!parse_gemm_kernel(env, k)) {
    options.force_note = std::string("MLVAE_GEMM_KERNEL=") + env + " not understood (eigen|openblas|blis|auto): auto";
    return;
  }
  options.force = k;
  options.force_note = std::string("MLVAE_GEMM_KERNEL=") + env;
  if (k != GemmKernel::Eigen && !gemm_library(k)) options.force_note += " (not installed: eigen)";
}

}  // namespace mlvae
