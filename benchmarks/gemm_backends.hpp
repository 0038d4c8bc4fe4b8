// gemm_backends.hpp — the single-precision GEMMs bench_gemm compares (docs/performance.md, "The
// GEMM underneath"): Eigen's GEBP through mlvae::Gemm (the library's default), and OpenBLAS,
// BLIS and oneDNN loaded at run time with dlopen (RTLD_LOCAL, so their identically named BLAS
// symbols do not collide and a machine without one of them still runs the others). Every
// backend runs SINGLE-THREADED inside the same column split mlvae::Gemm uses: thread t computes
// the columns [begin_t, end_t) of C (8-column aligned) with one call of the backend.
#pragma once

#include "mlvae/nn/gemm.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace bench {

using mlvae::Index;
using mlvae::Transpose;

// Column-major C (m x n) = op(A) op(B) (+ C when accumulate), single-threaded.
using SgemmFn = void (*)(void* state, Transpose ta, Transpose tb, Index m, Index n, Index k, const float* a, Index lda,
                         const float* b, Index ldb, float* c, Index ldc, bool accumulate);

struct Backend {
  std::string name;     // "eigen", "openblas", "blis", "onednn"
  std::string library;  // what was loaded
  SgemmFn fn = nullptr;
  void* state = nullptr;
};

// ---- dlopen'ed C entry points -------------------------------------------------------------------
using CblasSgemm = void (*)(int order, int ta, int tb, int m, int n, int k, float alpha, const float* a, int lda,
                            const float* b, int ldb, float beta, float* c, int ldc);
using DnnlSgemm = int (*)(char ta, char tb, long m, long n, long k, float alpha, const float* a, long lda,
                          const float* b, long ldb, float beta, float* c, long ldc);
constexpr int cblas_col_major = 102, cblas_no_trans = 111, cblas_trans = 112;

inline void cblas_call(void* state, Transpose ta, Transpose tb, Index m, Index n, Index k, const float* a, Index lda,
                       const float* b, Index ldb, float* c, Index ldc, bool accumulate) {
  reinterpret_cast<CblasSgemm>(state)(cblas_col_major, ta == Transpose::Yes ? cblas_trans : cblas_no_trans,
                                      tb == Transpose::Yes ? cblas_trans : cblas_no_trans, int(m), int(n), int(k), 1.f,
                                      a, int(lda), b, int(ldb), accumulate ? 1.f : 0.f, c, int(ldc));
}
// oneDNN's dnnl_sgemm is row-major: column-major C = op(A) op(B) is row-major Cᵀ = op(B)ᵀ op(A)ᵀ.
inline void dnnl_call(void* state, Transpose ta, Transpose tb, Index m, Index n, Index k, const float* a, Index lda,
                      const float* b, Index ldb, float* c, Index ldc, bool accumulate) {
  reinterpret_cast<DnnlSgemm>(state)(tb == Transpose::Yes ? 'T' : 'N', ta == Transpose::Yes ? 'T' : 'N', n, m, k, 1.f,
                                     b, ldb, a, lda, accumulate ? 1.f : 0.f, c, ldc);
}

// Loads what is installed. Eigen (through mlvae::Gemm) is handled by the caller.
inline std::vector<Backend> load_backends(const std::vector<std::string>& wanted) {
  std::vector<Backend> out;
  auto want = [&](const char* n) { return std::find(wanted.begin(), wanted.end(), n) != wanted.end(); };
  auto open = [](std::initializer_list<const char*> names, std::string& which) -> void* {
    for (const char* n : names)
      if (void* h = dlopen(n, RTLD_NOW | RTLD_LOCAL)) {
        which = n;
        return h;
      }
    return nullptr;
  };
  std::string lib;
  if (want("openblas"))
    if (void* h = open({"libopenblas.so.0", "libopenblas.so"}, lib)) {
      if (auto set = reinterpret_cast<void (*)(int)>(dlsym(h, "openblas_set_num_threads"))) set(1);
      std::string core = "?";
      if (auto name = reinterpret_cast<char* (*)()>(dlsym(h, "openblas_get_corename"))) core = name();
      if (void* f = dlsym(h, "cblas_sgemm")) out.push_back({"openblas", lib + " (" + core + " kernels)", cblas_call, f});
    }
  if (want("blis"))
    if (void* h = open({"libblis.so.4", "libblis.so"}, lib)) {
      if (auto set = reinterpret_cast<void (*)(long)>(dlsym(h, "bli_thread_set_num_threads"))) set(1);
      std::string arch = "?";
      auto id = reinterpret_cast<int (*)()>(dlsym(h, "bli_arch_query_id"));
      auto str = reinterpret_cast<const char* (*)(int)>(dlsym(h, "bli_arch_string"));
      if (id && str) arch = str(id());
      if (void* f = dlsym(h, "cblas_sgemm")) out.push_back({"blis", lib + " (" + arch + " kernels)", cblas_call, f});
    }
  if (want("onednn"))
    if (void* h = open({"libdnnl.so.2", "libdnnl.so.3", "libdnnl.so"}, lib)) {
      if (void* f = dlsym(h, "dnnl_sgemm")) out.push_back({"onednn", lib, dnnl_call, f});
    }
  return out;
}

// Runs `backend` on `threads` threads, each computing its 8-aligned slice of C's columns with one
// single-threaded call (the split of mlvae::Gemm::run).
inline void split_run(const Backend& be, int threads, Transpose ta, Transpose tb, Index m, Index n, Index k,
                      const float* a, Index lda, const float* b, Index ldb, float* c, Index ldc, bool accumulate) {
  threads = static_cast<int>(std::min<Index>(threads, std::max<Index>(1, n / 8)));
  auto slice = [&](int t, int count) {
    const Index blocks = (n + 7) / 8;
    const Index begin = std::min(n, (blocks * t / count) * 8), end = std::min(n, (blocks * (t + 1) / count) * 8);
    if (end <= begin) return;
    const float* b_slice = tb == Transpose::No ? b + begin * ldb : b + begin;
    be.fn(be.state, ta, tb, m, end - begin, k, a, lda, b_slice, ldb, c + begin * ldc, ldc, accumulate);
  };
  if (threads <= 1) {
    slice(0, 1);
    return;
  }
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
  slice(omp_get_thread_num(), omp_get_num_threads());
#else
  slice(0, 1);
#endif
}

}  // namespace bench
