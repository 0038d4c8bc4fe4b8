/// @file
/// mlvae/nn/gemm.hpp — the matrix products of the layers, C = op(A)·op(B) (+ C), run on Eigen's
/// GEBP kernels with packing buffers kept from call to call (no heap allocation in steady state)
/// and threads splitting the COLUMNS of C. Every element of C is computed by one thread with the
/// same cache blocking whatever the thread count, so results do not depend on it.
/// docs/architecture.md, "Threading" and "Memory".
///
/// Kernels chosen at run time (float products of 2^20 multiply-adds and more; nn/gemm_select.hpp):
/// where OpenBLAS or BLIS is installed, each product shape is timed once per machine on Eigen and on
/// them, and runs on the fastest from then on (MLVAE_GEMM_KERNEL or set_gemm_kernel() overrides;
/// gemm_kernel_report() lists the choices). Library kernels run single-threaded on a fixed split of
/// C that depends only on the shape, so results stay independent of the thread count. With Eigen
/// alone nothing changes. docs/performance.md, "Kernels chosen by measurement".
///
/// Optional compile-time backend (CMake `-DMLVAE_GEMM_BACKEND=OpenBLAS`, which defines
/// MLVAE_GEMM_OPENBLAS): float and double products of 8 M multiply-adds and more always call
/// OpenBLAS's cblas_?gemm (linked), on the same fixed split, before any run-time choice. Products
/// under 8 M multiply-adds stay on Eigen (OpenBLAS's small-matrix path allocates on every call);
/// the larger ones allocate nothing (OpenBLAS keeps its buffers in its own pool).
/// docs/performance.md, "The GEMM underneath".
///
/// Optional reduced precision (off by default): set_precision(Precision::BFloat16) on a
/// Gemm<float> routes its products to the bfloat16-input / float32-accumulate AMX kernel of
/// nn/gemm_bf16.hpp.
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/threads.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/nn/gemm_bf16.hpp"
#include "mlvae/nn/gemm_select.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef MLVAE_GEMM_OPENBLAS
#include <cblas.h>
#endif

namespace mlvae {

/// Observer of every product's shape, called at the start of Gemm::run when set (null by default).
/// `benchmarks/bench_mlvae_step --gemm-shapes` uses it to list a step's exact products for
/// `bench_gemm --shapes`.
inline void (*gemm_shape_observer)(Transpose ta, Transpose tb, Index m, Index n, Index k, bool accumulate) = nullptr;

/// The process's kernel selection (defined below, after Gemm, whose kernels it times).
inline GemmSelector& gemm_selector();
/// Counts set_gemm_kernel calls: a Gemm that remembered kernels under another count asks again.
inline std::atomic<unsigned>& gemm_selection_generation() {
  static std::atomic<unsigned> generation{0};
  return generation;
}

/// Products below this many multiply-adds run on one thread (threading costs more than it saves).
inline constexpr double gemm_parallel_threshold = 1 << 20;

/// A reusable matrix-product engine: owns one set of packing buffers per thread, sized for the
/// last shape it ran. One instance per product site (e.g. a layer's forward GEMM) keeps the
/// steady state free of allocation.
template <typename T>
class Gemm {
public:
  Gemm() = default;
  /// Copies the precision only: the copy starts with empty buffers.
  Gemm(const Gemm& other) : precision_(other.precision_) {}  // buffers are per instance
  /// Copies the precision and keeps this instance's buffers.
  Gemm& operator=(const Gemm& other) {
    precision_ = other.precision_;
    return *this;
  }
  /// Moves the buffers.
  Gemm(Gemm&&) noexcept = default;
  /// Moves the buffers.
  Gemm& operator=(Gemm&&) noexcept = default;

  /// Selects the arithmetic of the products: Float32 (the default) or BFloat16 (operands rounded
  /// to bfloat16, float32 sums; nn/gemm_bf16.hpp). Raises ArgumentError for BFloat16 when T is not
  /// float, or when the CPU lacks AMX-BF16 (the message names what is missing).
  void set_precision(Precision p) {
    require_precision<T>(p, "Gemm");
    precision_ = p;
  }
  /// The arithmetic of the products (Float32 unless set_precision chose BFloat16).
  Precision precision() const { return precision_; }

  /// C (m x n, column-major, leading dimension ldc) = op(A)·op(B), or += when `accumulate`.
  /// op(A) is m x k: A is stored m x k (lda >= m) or, transposed, k x m (lda >= k); likewise
  /// op(B) is k x n.
  void run(Transpose ta, Transpose tb, Index m, Index n, Index k, const T* a, Index lda, const T* b, Index ldb, T* c,
           Index ldc, bool accumulate) {
    if (gemm_shape_observer) gemm_shape_observer(ta, tb, m, n, k, accumulate);
    if (trivial(m, n, k, c, ldc, accumulate)) return;
    if constexpr (std::is_same_v<T, float>) {
      if (precision_ == Precision::BFloat16) {
        bf16_.run(ta == Transpose::Yes, tb == Transpose::Yes, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
        return;
      }
    }
    const double work = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
#ifdef MLVAE_GEMM_OPENBLAS
    // Small products stay on Eigen: OpenBLAS 0.3.21's small-matrix path mallocs on every call
    // (measured: e.g. 40x64x256 blocks), which would break the allocation-free steady state.
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      if (work >= blas_min_work) {
        run_blas(ta, tb, m, n, k, a, lda, b, ldb, c, ldc, accumulate, true);
        return;
      }
    }
#endif
    if constexpr (std::is_same_v<T, float>) {
      if (work >= gemm_select_min_work) {
        const GemmKernel kernel = selected_kernel(GemmProduct{ta, tb, m, n, k});
        if (kernel != GemmKernel::Eigen) {
          run_library_sgemm(*gemm_library(kernel), compute_threads(), ta, tb, m, n, k, a, lda, b, ldb, c, ldc,
                            accumulate);
          return;
        }
      }
    }
    run_eigen(ta, tb, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
  }

  /// The same product on `kernel`, whatever was selected (float32 arithmetic; no shape observer):
  /// for tests and for timing the candidates. OpenBLAS and BLIS need T = float and the library
  /// installed (gemm_library), else ArgumentError.
  void run_on(GemmKernel kernel, Transpose ta, Transpose tb, Index m, Index n, Index k, const T* a, Index lda,
              const T* b, Index ldb, T* c, Index ldc, bool accumulate) {
    if (trivial(m, n, k, c, ldc, accumulate)) return;
    if (kernel == GemmKernel::Eigen) {
      run_eigen(ta, tb, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
      return;
    }
    const detail::SgemmLibrary* lib = gemm_library(kernel);
    require<ArgumentError>(std::is_same_v<T, float> && lib != nullptr, "Gemm::run_on: the ", gemm_kernel_name(kernel),
                           " kernel needs float products and the library installed (", lib ? "float" : "not found",
                           ")");
    if constexpr (std::is_same_v<T, float>)
      run_library_sgemm(*lib, compute_threads(), ta, tb, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
  }

  /// Convenience for whole Eigen matrices: c = op(a)·op(b) (or +=); c must already have the
  /// product's shape.
  template <typename A, typename B, typename C>
  void run(Transpose ta, Transpose tb, const Eigen::MatrixBase<A>& a, const Eigen::MatrixBase<B>& b,
           Eigen::MatrixBase<C>& c, bool accumulate) {
    const Index m = ta == Transpose::No ? a.rows() : a.cols();
    const Index k = ta == Transpose::No ? a.cols() : a.rows();
    const Index kb = tb == Transpose::No ? b.rows() : b.cols();
    const Index n = tb == Transpose::No ? b.cols() : b.rows();
    require<ShapeError>(k == kb && c.rows() == m && c.cols() == n, "Gemm: op(A) is ", m, "x", k, ", op(B) is ", kb,
                        "x", n, " and C is ", c.rows(), "x", c.cols());
    run(ta, tb, m, n, k, a.derived().data(), a.derived().outerStride(), b.derived().data(), b.derived().outerStride(),
        c.derived().data(), c.derived().outerStride(), accumulate);
  }

private:
  // m, n or k zero: nothing to multiply (C zeroed unless accumulating). True when handled.
  static bool trivial(Index m, Index n, Index k, T* c, Index ldc, bool accumulate) {
    if (m == 0 || n == 0) return true;
    if (k != 0) return false;
    if (!accumulate)
      for (Index j = 0; j < n; ++j) std::fill(c + j * ldc, c + j * ldc + m, T(0));
    return true;
  }

  // Eigen's GEBP on compute_threads() threads (one for small products), C split by rows when tall.
  void run_eigen(Transpose ta, Transpose tb, Index m, Index n, Index k, const T* a, Index lda, const T* b, Index ldb,
                 T* c, Index ldc, bool accumulate) {
    const double work = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
    int threads = work >= gemm_parallel_threshold ? compute_threads() : 1;
    // A tall C (convolutions: batch·positions rows, a few dozen channel columns) is split by ROWS:
    // each thread then packs only its own rows of A, where a column split has every thread pack
    // all of A (measured: conv28's 12544x64x512 product scaled 1.6x on 2 threads split by columns).
    const bool by_rows = m >= 4 * n && m >= 2 * row_unit;
    threads = static_cast<int>(std::min<Index>(threads, std::max<Index>(1, by_rows ? m / row_unit : n / 8)));
    auto& blockings = prepare(m, n, k, threads);
    if (threads == 1) {
      slice(*blockings[0], ta, tb, 0, m, 0, n, k, a, lda, b, ldb, c, ldc, accumulate);
      return;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
    {
      const int t = omp_get_thread_num();
      const int count = omp_get_num_threads();
      // Slices aligned to 8 columns (the widest GEBP register block), or to GEBP's row panel
      // (mr, which divides its row blocking mc), so a split never changes which kernel path
      // computes an element: the blocking comes from the full shape, panels start where they
      // would without the split.
      const Index side = by_rows ? m : n, unit = by_rows ? row_unit : 8;
      const Index blocks = (side + unit - 1) / unit;
      const Index begin = std::min(side, (blocks * t / count) * unit);
      const Index end = std::min(side, (blocks * (t + 1) / count) * unit);
      auto& blocking = *blockings[static_cast<std::size_t>(t)];
      if (end > begin) {
        if (by_rows)
          slice(blocking, ta, tb, begin, end - begin, 0, n, k, a, lda, b, ldb, c, ldc, accumulate);
        else
          slice(blocking, ta, tb, 0, m, begin, end - begin, k, a, lda, b, ldb, c, ldc, accumulate);
      }
    }
#else
    slice(*blockings[0], ta, tb, 0, m, 0, n, k, a, lda, b, ldb, c, ldc, accumulate);
#endif
  }

  // The kernel selected for `p`: this instance remembers the last few (no lock, no allocation in
  // steady state) and asks gemm_selector() for a shape it has not seen, or after set_gemm_kernel.
  GemmKernel selected_kernel(const GemmProduct& p) {
    const unsigned generation = gemm_selection_generation().load(std::memory_order_acquire);
    if (generation != kernel_generation_) {
      kernel_count_ = 0;
      kernel_generation_ = generation;
    }
    for (std::size_t i = 0; i < kernel_count_; ++i)
      if (kernels_[i].first == p) return kernels_[i].second;
    const GemmKernel kernel = gemm_selector().kernel_for(p, compute_threads());
    kernels_[kernel_count_ < kernels_.size() ? kernel_count_++ : (kernel_next_++ % kernels_.size())] = {p, kernel};
    return kernel;
  }

private:
#ifdef MLVAE_GEMM_OPENBLAS
  static constexpr double blas_min_work = 8.0 * (1 << 20);  // multiply-adds; below: Eigen
  // C = op(A) op(B) (+ C) on OpenBLAS, on split_c_blocks's split of C (a function of the shape
  // only); each block is one single-threaded call.
  static void run_blas(Transpose ta, Transpose tb, Index m, Index n, Index k, const T* a, Index lda, const T* b,
                       Index ldb, T* c, Index ldc, bool accumulate, bool parallel) {
    static const bool single_threaded = (openblas_set_num_threads(1), true);  // our threads split C
    (void)single_threaded;
    const int threads = parallel ? compute_threads() : 1;
    split_c_blocks(threads, ta, tb, m, n, a, lda, b, ldb, c, ldc,
                   [&](Index rows, Index cols, const T* a_block, const T* b_block, T* c_block) {
                     const auto op_a = ta == Transpose::Yes ? CblasTrans : CblasNoTrans;
                     const auto op_b = tb == Transpose::Yes ? CblasTrans : CblasNoTrans;
                     const T beta = accumulate ? T(1) : T(0);
                     if constexpr (std::is_same_v<T, float>)
                       cblas_sgemm(CblasColMajor, op_a, op_b, int(rows), int(cols), int(k), 1.0f, a_block, int(lda),
                                   b_block, int(ldb), beta, c_block, int(ldc));
                     else
                       cblas_dgemm(CblasColMajor, op_a, op_b, int(rows), int(cols), int(k), 1.0, a_block, int(lda),
                                   b_block, int(ldb), beta, c_block, int(ldc));
                   });
  }
#endif

  using Blocking = Eigen::internal::gemm_blocking_space<Eigen::ColMajor, T, T, Eigen::Dynamic, Eigen::Dynamic,
                                                        Eigen::Dynamic, 1, false>;

  // Finds (or builds) the per-thread blockings of shape (m, n, k). All are computed from the full
  // shape for one thread, so the cache blocking (kc, mc) is the same whatever the split. A few
  // shapes are kept, so a layer whose last chunk is smaller does not reallocate every step.
  std::vector<std::unique_ptr<Blocking>>& prepare(Index m, Index n, Index k, int threads) {
    Shape* shape = nullptr;
    for (auto& s : shapes_)
      if (s.m == m && s.n == n && s.k == k) shape = &s;
    if (!shape) {
      if (shapes_.size() >= max_shapes) shapes_.clear();
      shapes_.push_back(Shape{m, n, k, {}});
      shape = &shapes_.back();
    }
    while (static_cast<int>(shape->blockings.size()) < threads) {
      shape->blockings.push_back(std::make_unique<Blocking>(m, n, k, 1, true));
      shape->blockings.back()->allocateAll();
    }
    return shape->blockings;
  }

  template <int LhsOrder, int RhsOrder>
  static void kernel(Index m, Index n, Index k, const T* a, Index lda, const T* b, Index ldb, T* c, Index ldc,
                     Blocking& blocking) {
    Eigen::internal::general_matrix_matrix_product<Index, T, LhsOrder, false, T, RhsOrder, false, Eigen::ColMajor,
                                                   1>::run(m, n, k, a, lda, b, ldb, c, 1, ldc, T(1), blocking, nullptr);
  }

  // GEBP's row panel for T (48 floats with AVX-512): row slices start at multiples of it.
  static constexpr Index row_unit = Eigen::internal::gebp_traits<T, T>::mr;

  // Rows [row0, row0 + m) and columns [col0, col0 + cols) of C.
  static void slice(Blocking& blocking, Transpose ta, Transpose tb, Index row0, Index m, Index col0, Index cols, Index k,
                    const T* a, Index lda, const T* b, Index ldb, T* c, Index ldc, bool accumulate) {
    T* c_slice = c + row0 + col0 * ldc;
    if (!accumulate)
      for (Index j = 0; j < cols; ++j) std::fill(c_slice + j * ldc, c_slice + j * ldc + m, T(0));
    // Rows row0.. of op(A): as stored (m x k) they start at row row0; transposed (A stored k x m)
    // at column row0. Columns col0.. of op(B): as stored (k x n, column-major) they start at
    // column col0; when transposed (B stored n x k) at row col0, i.e. a row-major view.
    a = ta == Transpose::No ? a + row0 : a + row0 * lda;
    const T* b_slice = tb == Transpose::No ? b + col0 * ldb : b + col0;
    if (ta == Transpose::No && tb == Transpose::No)
      kernel<Eigen::ColMajor, Eigen::ColMajor>(m, cols, k, a, lda, b_slice, ldb, c_slice, ldc, blocking);
    else if (ta == Transpose::No)
      kernel<Eigen::ColMajor, Eigen::RowMajor>(m, cols, k, a, lda, b_slice, ldb, c_slice, ldc, blocking);
    else if (tb == Transpose::No)
      kernel<Eigen::RowMajor, Eigen::ColMajor>(m, cols, k, a, lda, b_slice, ldb, c_slice, ldc, blocking);
    else
      kernel<Eigen::RowMajor, Eigen::RowMajor>(m, cols, k, a, lda, b_slice, ldb, c_slice, ldc, blocking);
  }

  struct Shape {
    Index m, n, k;
    std::vector<std::unique_ptr<Blocking>> blockings;  // one per thread
  };
  static constexpr std::size_t max_shapes = 4;
  std::vector<Shape> shapes_;
  std::array<std::pair<GemmProduct, GemmKernel>, 8> kernels_{};  // the last products' kernels
  std::size_t kernel_count_ = 0, kernel_next_ = 0;
  unsigned kernel_generation_ = 0;
  Precision precision_ = Precision::Float32;
  // The bfloat16 engine (float only; an empty struct otherwise).
  struct NoBF16 {};
  std::conditional_t<std::is_same_v<T, float>, GemmBF16, NoBF16> bf16_;
};

namespace detail {

// Seconds per call of `kernel` on product `p` at compute_threads() threads (which the selector passes
// as `threads`): operands filled with a fixed pattern, one untimed call, then the fastest of several
// calls (3 to 64, ~3·10^7 multiply-adds in all). The fastest call, not the mean: on a machine shared
// with other work a call that lost its core to another process says nothing about the kernel.
inline double time_gemm_kernel(GemmKernel kernel, const GemmProduct& p, int /*threads*/) {
  const Index rows_a = p.ta == Transpose::No ? p.m : p.k, cols_a = p.ta == Transpose::No ? p.k : p.m;
  const Index rows_b = p.tb == Transpose::No ? p.k : p.n, cols_b = p.tb == Transpose::No ? p.n : p.k;
  std::vector<float> a(static_cast<std::size_t>(rows_a * cols_a)), b(static_cast<std::size_t>(rows_b * cols_b)),
      c(static_cast<std::size_t>(p.m * p.n), 0.0f);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i % 17) * 0.0625f - 0.5f;
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>(i % 13) * 0.0625f - 0.375f;
  Gemm<float> gemm;
  auto call = [&] {
    gemm.run_on(kernel, p.ta, p.tb, p.m, p.n, p.k, a.data(), rows_a, b.data(), rows_b, c.data(), p.m, false);
  };
  call();
  const int calls = static_cast<int>(std::clamp(3e7 / p.work(), 3.0, 64.0));
  double best = 1e300;
  for (int r = 0; r < calls; ++r) {
    const auto start = std::chrono::steady_clock::now();
    call();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return best;
}

// The process's selector: options from the environment (MLVAE_GEMM_KERNEL, MLVAE_GEMM_CACHE,
// XDG_CACHE_HOME, HOME) unless set_gemm_kernel replaced it.
inline std::unique_ptr<GemmSelector> make_process_gemm_selector() {
  GemmSelector::Options options;
  options.cache_path = default_gemm_cache_path();
  gemm_kernel_from_environment(options);
  return std::make_unique<GemmSelector>(std::move(options), time_gemm_kernel);
}
inline std::unique_ptr<GemmSelector>& process_gemm_selector() {
  static std::unique_ptr<GemmSelector> selector = make_process_gemm_selector();
  return selector;
}

}  // namespace detail

/// The selector every Gemm<float> asks for its products' kernels (nn/gemm_select.hpp).
inline GemmSelector& gemm_selector() { return *detail::process_gemm_selector(); }

/// Overrides MLVAE_GEMM_KERNEL for the rest of the process: `kernel` for every product it is a
/// candidate for (others: Eigen), or nullopt to measure ("auto"). Forgets the choices made so far;
/// call it before running products, not while another thread runs them.
inline void set_gemm_kernel(std::optional<GemmKernel> kernel) {
  GemmSelector::Options options;
  options.cache_path = detail::default_gemm_cache_path();
  options.force = kernel;
  options.force_note = std::string("set_gemm_kernel(") + (kernel ? gemm_kernel_name(*kernel) : "auto") + ")";
  if (kernel && *kernel != GemmKernel::Eigen && !gemm_library(*kernel)) options.force_note += " (not installed: eigen)";
  detail::process_gemm_selector() = std::make_unique<GemmSelector>(std::move(options), detail::time_gemm_kernel);
  gemm_selection_generation().fetch_add(1, std::memory_order_acq_rel);
}

/// Forgets the process's kernel choices and reads MLVAE_GEMM_KERNEL and the cache location from the
/// environment again (undoes set_gemm_kernel); the same caveat.
inline void reset_gemm_selection() {
  detail::process_gemm_selector() = detail::make_process_gemm_selector();
  gemm_selection_generation().fetch_add(1, std::memory_order_acq_rel);
}

/// What runs the float products, for a log: first a line naming the kernels installed, the override
/// and the cache file, then one line per product shape chosen so far in this process (a model's
/// shapes appear after its first step), e.g. "NT 500x784x256 (100 M multiply-adds), 2 threads:
/// openblas (measured: eigen 1.62 ms, openblas 1.41 ms, blis 1.55 ms)".
inline std::vector<std::string> gemm_kernel_report() {
  const GemmSelector& selector = gemm_selector();
  std::string head = "GEMM kernels: eigen";
  for (const auto& lib : gemm_libraries()) head += std::string(", ") + gemm_kernel_name(lib.kernel) + " (" + lib.description + ")";
  head += "; choice: ";
  head += selector.options().force_note.empty() ? "auto (MLVAE_GEMM_KERNEL unset)" : selector.options().force_note;
  head += "; cache: " + (selector.options().cache_path.empty() ? std::string("none") : selector.options().cache_path);
#ifdef MLVAE_GEMM_OPENBLAS
  head += "; compile-time OpenBLAS backend for products >= 8 M multiply-adds";
#endif
  std::vector<std::string> out{head};
  for (std::string& line : selector.report()) out.push_back(std::move(line));
  return out;
}

/// The kernel chosen for each float product shape so far, "<shape>: <kernel>" (no timings: stable
/// from run to run on one machine), as training checkpoints record them (io/checkpoint.hpp).
inline std::vector<std::string> gemm_kernel_choices() { return gemm_selector().choices(); }

template <typename T>
struct ParameterStore;  // nn/layer.hpp

// ---- the host as a device: what a layer written once (nn/dense.hpp) calls on the CPU ---------
/// The CPU as the device of the layers: its arrays are Matrix<T>, its products mlvae's Gemm. The
/// device layer's contexts (device/context.hpp, device/cuda.cuh) supply the same members and the
/// same free operations (set_columns, add_row_sums) for their DeviceArray, so a layer calls them
/// without knowing where it runs (the pattern of dlib's tensor_tools).
struct HostContext {
  /// The array a layer keeps and returns.
  template <typename T>
  using Array = Matrix<T>;
  /// A model's parameters and gradients (nn/layer.hpp).
  template <typename T>
  using Parameters = ParameterStore<T>;
  /// Per call site state of a matrix product (packing buffers kept from call to call).
  template <typename T>
  using GemmSite = Gemm<T>;
  /// The one host context (it holds no state).
  static HostContext& instance() {
    static HostContext host;
    return host;
  }
  /// C (m x n, leading dimension ldc) = op(A)·op(B), or += when `accumulate` (Gemm::run).
  template <typename T>
  void gemm(GemmSite<T>& site, Transpose ta, Transpose tb, Index m, Index n, Index k, const T* a, Index lda, const T* b,
            Index ldb, T* c, Index ldc, bool accumulate) {
    site.run(ta, tb, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
  }
};

/// The three products of a layer with parameters — forward, weight gradient, input gradient — each
/// with its own call-site state on context `Ctx`, and their common arithmetic.
template <typename T, typename Ctx>
struct LayerProducts {
  typename Ctx::template GemmSite<T> forward;      ///< y from x
  typename Ctx::template GemmSite<T> weight_grad;  ///< dW
  typename Ctx::template GemmSite<T> input_grad;   ///< dx
  /// Float32 or BFloat16 for all three (nn/gemm_bf16.hpp; ArgumentError where unavailable).
  void set_precision(Precision p) {
    forward.set_precision(p);
    weight_grad.set_precision(p);
    input_grad.set_precision(p);
  }
  /// The arithmetic of the products.
  Precision precision() const { return forward.precision(); }
};

namespace detail {
/// An empty array of type A on `ctx`: a device's DeviceArray is bound to its context, a Matrix is not.
template <typename A, typename Ctx>
A make_array(Ctx& ctx) {
  if constexpr (std::is_same_v<Ctx, HostContext>) {
    (void)ctx;
    return A();
  } else {
    return A(ctx);
  }
}
}  // namespace detail

/// out = f(ins...) element by element, `f` taking and returning Eigen Array expressions (the formulas
/// of nn/activations.hpp and dist/ are templates that also take a device's Tensor expressions); the
/// columns are split over threads (parallel_columns), each element computed by one thread.
template <typename T, typename F, typename... In>
void elementwise(HostContext&, Matrix<T>& out, F f, const In&... ins) {
  parallel_columns(out.cols(), out.rows(), [&](Index begin, Index end) {
    out.middleCols(begin, end - begin).array() = f(ins.middleCols(begin, end - begin).array()...);
  });
}
/// Every column of `out` (rows x N) set to the vector at `v` (rows).
template <typename T>
void set_columns(HostContext&, Matrix<T>& out, const T* v) {
  out.colwise() = Eigen::Map<const Vector<T>>(v, out.rows());
}
/// out(r, c) = f(r, c) for the rows x cols matrix at `out` (leading dimension `ld`): a kernel written
/// once for every device (a functor of plain values and pointers, e.g. model/content_path.hpp's),
/// each element computed independently from what it reads; on the host the columns go in order.
template <typename T, typename F>
void generate_at(HostContext&, T* out, Index rows, Index cols, Index ld, const F& f) {
  for (Index c = 0; c < cols; ++c)
    for (Index r = 0; r < rows; ++r) out[r + c * ld] = f(r, c);
}
/// acc (rows) += the sum of each row of `dy` (rows x N); `scratch` is not needed on the host.
template <typename T>
void add_row_sums(HostContext&, T* acc, const Matrix<T>& dy, Matrix<T>& /*scratch*/) {
  VectorMap<T>(acc, dy.rows()) += dy.rowwise().sum();
}
/// Columns per block of the fused passes below (bias_activation, activation_gradient): a block stays
/// in cache between its two steps; the blocks' partial row sums are added in block order, so
/// results do not depend on the thread count.
inline constexpr Index fused_block_columns = 32;
/// out = f(out + b) element-wise, the vector at `b` (rows) added to every column: a bias and an
/// activation in one pass over memory after a product (nn/dense.hpp; the bias is added to a block
/// of columns, then f runs over the block while it is in cache). `f` takes and returns Array expressions.
template <typename T, typename F>
void bias_activation(HostContext&, Matrix<T>& out, const T* b, F f) {
  const Eigen::Map<const Vector<T>> bias(b, out.rows());
  const Index cols = out.cols(), blocks = (cols + fused_block_columns - 1) / fused_block_columns;
  parallel_columns(blocks, out.rows() * fused_block_columns, [&](Index begin, Index end) {
    for (Index k = begin; k < end; ++k) {
      const Index c0 = k * fused_block_columns;
      auto block = out.middleCols(c0, std::min(fused_block_columns, cols - c0));
      block.colwise() += bias;
      block.array() = f(block.array());
    }
  });
}
/// dx = f(dy, y) element-wise and acc (rows) += the row sums of dx, in one pass over dy and y: a
/// fused activation's derivative and the bias gradient of the layer before it (nn/dense.hpp). `f`
/// takes and returns Array expressions. Threads take blocks of fused_block_columns columns, each
/// summed into its own column of `scratch` while in cache; the blocks' sums are then added in order.
template <typename T, typename F>
void activation_gradient(HostContext&, Matrix<T>& dx, T* acc, F f, const Matrix<T>& dy, const Matrix<T>& y,
                         Matrix<T>& scratch) {
  const Index rows = dx.rows(), cols = dx.cols(), blocks = (cols + fused_block_columns - 1) / fused_block_columns;
  ensure_shape(scratch, rows, blocks);
  parallel_columns(blocks, rows * fused_block_columns, [&](Index begin, Index end) {
    for (Index k = begin; k < end; ++k) {
      const Index c0 = k * fused_block_columns, width = std::min(fused_block_columns, cols - c0);
      dx.middleCols(c0, width).array() = f(dy.middleCols(c0, width).array(), y.middleCols(c0, width).array());
      scratch.col(k) = dx.middleCols(c0, width).rowwise().sum();
    }
  });
  VectorMap<T> total(acc, rows);
  for (Index k = 0; k < blocks; ++k) total += scratch.col(k);
}

}  // namespace mlvae
