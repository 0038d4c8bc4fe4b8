// bench_gemm.cpp — measured single-precision GEMM rate of Eigen on this machine: the "peak" the
// ML-VAE training step is compared against (docs/performance.md).
//
// Runs a square 1024³ sgemm and every GEMM of one training step of the paper's MLP ML-VAE
// (784-500-tanh trunk, heads 500->2·10, decoder 20-500-tanh-784) on a batch of N columns, in the
// exact expression forms nn/dense.hpp uses:
//   forward  Y  = W X          (out x in)·(in x N)
//   weight   dW += dY X^T      (out x N)·(N x in)
//   input    dX = W^T dY       (in x out)·(out x N)   (not for the first layer)
// for each thread count given. Prints one machine-readable line per measurement:
//   RESULT gemm <label> m=.. k=.. n=.. threads=.. gflops=..
// and a summary line per thread count:
//   RESULT gemm_peak threads=T gflops=..            (the 1024³ rate)
//   RESULT gemm_step threads=T gflops=.. ms=..      (all step GEMMs back to back: FLOPs / time)
// GCC 12 with -march=native on AVX-512 machines warns (-Werror) about the deliberately
// uninitialised `__Y` in avx512fintrin.h's _mm512_undefined_ps once Eigen's kernels are inlined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <CLI/CLI.hpp>
#include <Eigen/Core>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using Clock = std::chrono::steady_clock;
using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>;

enum class Form { NN, NT, TN };  // C = A B, C += A B^T, C = A^T B

struct Shape {
  std::string label;
  Form form;
  Eigen::Index m, k, n;  // C is m x n, inner dimension k
};

void set_threads(int t) {
  Eigen::setNbThreads(t);
#ifdef _OPENMP
  omp_set_num_threads(t);
#endif
}

// Seconds per call, best of `reps` timed batches of calls lasting about `min_seconds` each.
double time_gemm(const Shape& s, int reps, double min_seconds) {
  Mat a, b, c = Mat::Zero(s.m, s.n);
  switch (s.form) {
    case Form::NN: a = Mat::Random(s.m, s.k); b = Mat::Random(s.k, s.n); break;
    case Form::NT: a = Mat::Random(s.m, s.k); b = Mat::Random(s.n, s.k); break;
    case Form::TN: a = Mat::Random(s.k, s.m); b = Mat::Random(s.k, s.n); break;
  }
  auto once = [&] {
    switch (s.form) {
      case Form::NN: c.noalias() = a * b; break;
      case Form::NT: c.noalias() += a * b.transpose(); break;
      case Form::TN: c.noalias() = a.transpose() * b; break;
    }
  };
  for (int i = 0; i < 3; ++i) once();  // warm caches, OpenMP pool
  // Calibrate: double the calls per batch until one batch lasts min_seconds.
  auto batch_seconds = [&](long calls) {
    const auto t0 = Clock::now();
    for (long i = 0; i < calls; ++i) once();
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };
  long calls = 1;
  while (batch_seconds(calls) < min_seconds && calls < (1L << 24)) calls *= 2;
  double best = 1e300;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    for (long i = 0; i < calls; ++i) once();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count() / calls);
  }
  if (c(0, 0) == 12345.f) std::printf(" ");  // keep the result alive
  return best;
}

struct Layer {
  const char* name;
  Eigen::Index in, out;
  bool first;  // no input gradient needed
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Measured Eigen sgemm rate: 1024^3 and the GEMMs of one MLP ML-VAE training step"};
  std::vector<int> threads{1, 2};
  Eigen::Index batch = 256, size = 1024;
  int reps = 5;
  double min_seconds = 0.2;
  bool quick = false;
  app.add_option("--threads", threads, "thread counts to measure")->expected(1, -1);
  app.add_option("--batch", batch, "columns per step (groups x group size)");
  app.add_option("--size", size, "square GEMM size for the peak");
  app.add_option("--reps", reps, "timed repetitions (best is kept)");
  app.add_option("--min-seconds", min_seconds, "length of one timed repetition");
  app.add_flag("--peak-only", quick, "only the square peak GEMM");
  CLI11_PARSE(app, argc, argv);

  const Layer layers[] = {{"enc", 784, 500, true},  {"style", 500, 20, false}, {"content", 500, 20, false},
                          {"dec1", 20, 500, false}, {"dec2", 500, 784, false}};
  std::vector<Shape> step;
  for (const Layer& l : layers) {
    step.push_back({std::string(l.name) + ".fwd", Form::NN, l.out, l.in, batch});
    step.push_back({std::string(l.name) + ".dW", Form::NT, l.out, batch, l.in});
    if (!l.first) step.push_back({std::string(l.name) + ".dX", Form::TN, l.in, l.out, batch});
  }

  std::printf("# Eigen %d.%d.%d, float, SIMD %s\n", EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION, EIGEN_MINOR_VERSION,
              Eigen::SimdInstructionSetsInUse());
  for (int t : threads) {
    set_threads(t);
    const Shape peak{"square", Form::NN, size, size, size};
    const double tp = time_gemm(peak, reps, min_seconds);
    const double peak_gflops = 2.0 * size * size * size / tp * 1e-9;
    std::printf("RESULT gemm %s m=%ld k=%ld n=%ld threads=%d gflops=%.2f\n", peak.label.c_str(), (long)size,
                (long)size, (long)size, t, peak_gflops);
    if (!quick) {
      double total_s = 0, total_flop = 0;
      for (const Shape& s : step) {
        const double ts = time_gemm(s, reps, min_seconds / 2);
        const double flop = 2.0 * s.m * s.k * s.n;
        total_s += ts;
        total_flop += flop;
        std::printf("RESULT gemm %s m=%ld k=%ld n=%ld threads=%d gflops=%.2f us=%.1f\n", s.label.c_str(), (long)s.m,
                    (long)s.k, (long)s.n, t, flop / ts * 1e-9, ts * 1e6);
      }
      std::printf("RESULT gemm_step threads=%d gflops=%.2f ms=%.3f mflop=%.1f\n", t, total_flop / total_s * 1e-9,
                  total_s * 1e3, total_flop * 1e-6);
    }
    std::printf("RESULT gemm_peak threads=%d gflops=%.2f\n", t, peak_gflops);
    std::fflush(stdout);
  }
  return 0;
}
