// bench_gemm.cpp — the single-precision GEMM rates the ML-VAE step is compared against
// (docs/performance.md, "The GEMM underneath"):
//
//  * every backend of benchmarks/gemm_backends.hpp — Eigen's GEBP through mlvae::Gemm (what the
//    library runs), OpenBLAS, BLIS, oneDNN — single-threaded inside mlvae's column split, on a
//    square 1024³ product and on every product of one training step (--shapes FILE, as printed
//    by `bench_mlvae_step --gemm-shapes`; without it the MLP step's products);
//  * Eigen's own threaded product at 1024³ (what earlier versions of this page called the peak);
//  * the FMA peak of the CPU: a loop of independent fused multiply-adds on registers only (no
//    memory traffic), the ceiling no GEMM can pass.
//
// Machine-readable output, per thread count T:
//   RESULT gemm <backend> <label> m=.. n=.. k=.. threads=T gflops=.. us=..
//   RESULT gemm_step <backend> threads=T gflops=.. ms=..    (all step products back to back)
//   RESULT gemm_step best threads=T gflops=.. ms=..         (each product on its fastest backend)
//   RESULT gemm_peak threads=T gflops=.. backend=..         (the best 1024³ rate: the "sgemm peak")
//   RESULT fma_peak threads=T gflops=..
// GCC 12 with -march=native on AVX-512 machines warns (-Werror) about the deliberately
// uninitialised `__Y` in avx512fintrin.h's _mm512_undefined_ps once Eigen's kernels are inlined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "gemm_backends.hpp"

#include "mlvae/core/threads.hpp"

#include <CLI/CLI.hpp>
#include <Eigen/Core>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>;
using bench::Index;
using bench::Transpose;

struct Shape {
  Transpose ta, tb;
  Index m, n, k;
  bool accumulate;
  int count;  // how often the step runs it
  std::string label() const {
    std::ostringstream s;
    s << (ta == Transpose::Yes ? 'T' : 'N') << (tb == Transpose::Yes ? 'T' : 'N') << ':' << m << 'x' << n << 'x' << k;
    return s.str();
  }
};

bool use_cpu_time = false;  // --cpu-time: process CPU time instead of wall time (1 thread, loaded machine)
double now_seconds() {
  if (use_cpu_time) {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
  }
  return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
}

// Seconds per call of `once`, best of `reps` timed batches lasting about `min_seconds` each.
template <typename F>
double time_calls(F&& once, int reps, double min_seconds) {
  for (int i = 0; i < 2; ++i) once();
  auto batch_seconds = [&](long calls) {
    const double t0 = now_seconds();
    for (long i = 0; i < calls; ++i) once();
    return now_seconds() - t0;
  };
  long calls = 1;
  while (batch_seconds(calls) < min_seconds && calls < (1L << 24)) calls *= 2;
  double best = 1e300;
  for (int r = 0; r < reps; ++r) best = std::min(best, batch_seconds(calls) / static_cast<double>(calls));
  return best;
}

struct Operands {
  Mat a, b, c;
  explicit Operands(const Shape& s)
      : a(s.ta == Transpose::No ? Mat::Random(s.m, s.k) : Mat::Random(s.k, s.m)),
        b(s.tb == Transpose::No ? Mat::Random(s.k, s.n) : Mat::Random(s.n, s.k)),
        c(Mat::Zero(s.m, s.n)) {}
};

// One backend on one shape at `threads` threads: seconds per call. "eigen" is mlvae::Gemm itself.
double time_shape(const std::string& backend, const std::vector<bench::Backend>& loaded, const Shape& s, int threads,
                  int reps, double min_seconds) {
  Operands o(s);
  if (backend == "eigen") {
    mlvae::Gemm<float> gemm;
    return time_calls([&] { gemm.run(s.ta, s.tb, o.a, o.b, o.c, s.accumulate); }, reps, min_seconds);
  }
  for (const auto& be : loaded)
    if (be.name == backend)
      return time_calls(
          [&] {
            bench::split_run(be, threads, s.ta, s.tb, s.m, s.n, s.k, o.a.data(), o.a.rows(), o.b.data(), o.b.rows(),
                             o.c.data(), o.c.rows(), s.accumulate);
          },
          reps, min_seconds);
  return 0;
}

// Register-only FMA throughput of one thread: `acc` independent accumulators (enough to cover
// the FMA latency on two ports), GFLOP/s.
double fma_gflops_one_thread(double min_seconds) {
#if defined(__AVX512F__)
  using V = __m512;
  constexpr int lanes = 16;
  auto fma = [](V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); };
  auto set = [](float x) { return _mm512_set1_ps(x); };
  auto sum = [](V v) { return _mm512_reduce_add_ps(v); };
#elif defined(__FMA__)
  using V = __m256;
  constexpr int lanes = 8;
  auto fma = [](V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); };
  auto set = [](float x) { return _mm256_set1_ps(x); };
  auto sum = [](V v) {
    alignas(32) float f[8];
    _mm256_store_ps(f, v);
    return f[0] + f[1] + f[2] + f[3] + f[4] + f[5] + f[6] + f[7];
  };
#else
  return 0;
#endif
#if defined(__AVX512F__) || defined(__FMA__)
  constexpr int acc = 12;
  V r[acc];
  for (int i = 0; i < acc; ++i) r[i] = set(1.0f + 1e-3f * static_cast<float>(i));
  const V x = set(0.999999f), y = set(1e-7f);
  const long inner = 1 << 16;
  long iterations = 0;
  const double t0 = now_seconds();
  double elapsed = 0;
  do {
    for (long it = 0; it < inner; ++it) {
#pragma GCC unroll 12
      for (int i = 0; i < acc; ++i) r[i] = fma(r[i], x, y);
    }
    iterations += inner;
    elapsed = now_seconds() - t0;
  } while (elapsed < min_seconds);
  float total = 0;
  for (int i = 0; i < acc; ++i) total += sum(r[i]);
  if (total == 12345.f) std::printf(" ");
  return 2.0 * lanes * acc * static_cast<double>(iterations) / elapsed * 1e-9;
#endif
}

double fma_gflops(int threads, double min_seconds) {
  double total = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) reduction(+ : total)
  total += fma_gflops_one_thread(min_seconds);
#else
  (void)threads;
  total = fma_gflops_one_thread(min_seconds);
#endif
  return total;
}

// The MLP ML-VAE step's products (784-500-tanh trunk, heads 500->20 each, decoder 20-500-784),
// as nn/dense.hpp runs them, when no --shapes file is given.
std::vector<Shape> mlp_shapes(Index batch) {
  struct L { Index in, out; bool first; };
  const L layers[] = {{784, 500, true}, {500, 20, false}, {500, 20, false}, {20, 500, false}, {500, 784, false}};
  std::vector<Shape> v;
  for (const L& l : layers) {
    v.push_back({Transpose::No, Transpose::No, l.out, batch, l.in, true, 1});
    v.push_back({Transpose::No, Transpose::Yes, l.out, l.in, batch, true, 1});
    if (!l.first) v.push_back({Transpose::Yes, Transpose::No, l.in, batch, l.out, false, 1});
  }
  return v;
}

std::vector<Shape> read_shapes(const std::string& file) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error("bench_gemm: cannot read " + file);
  std::map<std::string, Shape> unique;
  std::vector<std::string> order;
  std::string word;
  while (in >> word) {
    if (word != "GEMM") {
      std::getline(in, word);
      continue;
    }
    char ta, tb;
    long m, n, k;
    int acc;
    in >> ta >> tb >> m >> n >> k >> acc;
    Shape s{ta == 'T' ? Transpose::Yes : Transpose::No, tb == 'T' ? Transpose::Yes : Transpose::No, m, n, k, acc != 0, 1};
    const std::string key = s.label() + (s.accumulate ? "+" : "");
    auto it = unique.find(key);
    if (it == unique.end()) {
      unique.emplace(key, s);
      order.push_back(key);
    } else {
      ++it->second.count;
    }
  }
  std::vector<Shape> v;
  for (const auto& key : order) v.push_back(unique.at(key));
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sgemm rates of Eigen / OpenBLAS / BLIS / oneDNN inside mlvae's column split, and the FMA peak"};
  std::vector<int> threads{1, 2};
  std::vector<std::string> backends{"eigen", "openblas", "blis", "onednn"};
  Index batch = 256, size = 1024;
  int reps = 5;
  double min_seconds = 0.2;
  bool peak_only = false;
  std::string shapes_file, step_name = "mlp";
  app.add_option("--threads", threads, "thread counts to measure")->expected(1, -1);
  app.add_option("--backends", backends, "backends to measure (eigen openblas blis onednn)")->expected(1, -1);
  app.add_option("--batch", batch, "columns per step (without --shapes)");
  app.add_option("--size", size, "square GEMM size for the peak");
  app.add_option("--reps", reps, "timed repetitions (best is kept)");
  app.add_option("--min-seconds", min_seconds, "length of one timed repetition");
  app.add_option("--shapes", shapes_file, "products of one step, lines 'GEMM ta tb m n k accumulate'");
  app.add_option("--step-name", step_name, "label of the step in the output");
  app.add_flag("--peak-only", peak_only, "only the square products and the FMA peak");
  app.add_flag("--cpu-time", use_cpu_time, "time with process CPU time (for a loaded machine, 1 thread)");
  CLI11_PARSE(app, argc, argv);

  const std::vector<bench::Backend> loaded = bench::load_backends(backends);
  std::vector<std::string> names;
  if (std::find(backends.begin(), backends.end(), "eigen") != backends.end()) names.push_back("eigen");
  std::printf("# Eigen %d.%d.%d, float, SIMD %s (through mlvae::Gemm)\n", EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION,
              EIGEN_MINOR_VERSION, Eigen::SimdInstructionSetsInUse());
  for (const auto& be : loaded) {
    std::printf("# %s: %s, single-threaded inside mlvae's column split\n", be.name.c_str(), be.library.c_str());
    names.push_back(be.name);
  }
  for (const auto& w : backends)
    if (std::find(names.begin(), names.end(), w) == names.end()) std::printf("# %s: not installed, skipped\n", w.c_str());
  const std::vector<Shape> step = shapes_file.empty() ? mlp_shapes(batch) : read_shapes(shapes_file);

  for (int t : threads) {
    mlvae::set_threads(t);
    const double fma = fma_gflops(t, min_seconds);
    std::printf("RESULT fma_peak threads=%d gflops=%.2f\n", t, fma);
    // Square product: every backend, and Eigen's own threaded GEMM for reference.
    const Shape square{Transpose::No, Transpose::No, size, size, size, false, 1};
    const double flop_sq = 2.0 * double(size) * double(size) * double(size);
    double best = 0;
    std::string best_name;
    for (const auto& name : names) {
      const double g = flop_sq / time_shape(name, loaded, square, t, reps, min_seconds) * 1e-9;
      std::printf("RESULT gemm %s square m=%ld n=%ld k=%ld threads=%d gflops=%.2f\n", name.c_str(), (long)size,
                  (long)size, (long)size, t, g);
      if (g > best) best = g, best_name = name;
    }
    {
      Operands o(square);
      const double s = time_calls([&] { o.c.noalias() = o.a * o.b; }, reps, min_seconds);
      std::printf("RESULT gemm eigen_threaded square m=%ld n=%ld k=%ld threads=%d gflops=%.2f\n", (long)size,
                  (long)size, (long)size, t, flop_sq / s * 1e-9);
    }
    if (!peak_only) {
      std::vector<double> best_s(step.size(), 1e300);
      double flop_total = 0;
      for (const Shape& s : step) flop_total += 2.0 * double(s.m) * double(s.n) * double(s.k) * s.count;
      for (const auto& name : names) {
        double total = 0;
        for (std::size_t i = 0; i < step.size(); ++i) {
          const Shape& s = step[i];
          const double sec = time_shape(name, loaded, s, t, reps, min_seconds / 4);
          best_s[i] = std::min(best_s[i], sec);
          total += sec * s.count;
          std::printf("RESULT gemm %s %s%s x%d threads=%d gflops=%.2f us=%.1f\n", name.c_str(), s.label().c_str(),
                      s.accumulate ? "+" : "", s.count, t, 2.0 * double(s.m) * double(s.n) * double(s.k) / sec * 1e-9,
                      sec * 1e6);
        }
        std::printf("RESULT gemm_step %s %s threads=%d gflops=%.2f ms=%.3f\n", step_name.c_str(), name.c_str(), t,
                    flop_total / total * 1e-9, total * 1e3);
      }
      double total = 0;
      for (std::size_t i = 0; i < step.size(); ++i) total += best_s[i] * step[i].count;
      std::printf("RESULT gemm_step %s best threads=%d gflops=%.2f ms=%.3f\n", step_name.c_str(), t,
                  flop_total / total * 1e-9, total * 1e3);
    }
    std::printf("RESULT gemm_peak threads=%d gflops=%.2f backend=%s fma_gflops=%.2f\n", t, best, best_name.c_str(), fma);
    std::fflush(stdout);
  }
  return 0;
}
