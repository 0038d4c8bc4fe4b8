// bench_mlvae_step.cpp — images/s of one ML-VAE training step (forward + backward + Adam) in
// float, the C++ side of the "beats PyTorch on CPU" comparison (benchmarks/pytorch_mlvae.py is
// the same model in PyTorch; scripts/run_benchmarks.sh runs both; docs/performance.md).
//
//   --arch mlp    make_mlp_mlvae<float>(784, 500, 10, 10)   (the paper's MNIST MLP)
//   --arch conv28 make_conv28_mlvae<float>(10, 10)          (only if model/conv_architectures.hpp exists)
//   --precision float32|bf16  arithmetic of the products (bf16: bfloat16 operands, float32 sums, AMX;
//                             nn/gemm_bf16.hpp)
//
// Batch: --groups x --group-size columns of uniform [0,1) data, contiguous equal-size groups.
// Timing: --warmup steps, then --reps repetitions of --steps steps; reports the median and the best.
// The GEMM FLOPs of a step are counted analytically (forward 2·in·out·N per Dense, backward
// 2·in·out·N for dW and 2·in·out·N for dX except the first layer; convolutions as their im2col
// GEMMs) and reported as GFLOP/s and as a fraction of the measured 1024³ sgemm rate (or of
// --peak-gflops when given, e.g. bench_gemm's number).
//
// Output, machine-readable:
//   RESULT mlvae <arch> images_per_s=<median> best_images_per_s=.. ms_per_step=.. threads=.. precision=..
//          gflop_per_step=.. gflops=.. peak_gflops=.. peak_fraction=.. cpu_ms_per_step=.. images_per_cpu_s=..
//   (cpu_*: process CPU time, all threads, best repetition — robust to other load on the machine)
// GCC 12 with -march=native on AVX-512 machines warns (-Werror) about the deliberately
// uninitialised `__Y` in avx512fintrin.h's _mm512_undefined_ps once Eigen's kernels are inlined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "mlvae/model/architectures.hpp"
#include "mlvae/optim/adam.hpp"

#if __has_include("mlvae/model/conv_architectures.hpp")
#include "mlvae/model/conv_architectures.hpp"
#define MLVAE_BENCH_HAVE_CONV 1
#else
#define MLVAE_BENCH_HAVE_CONV 0
#endif

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <time.h>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using Clock = std::chrono::steady_clock;
using mlvae::Index;

struct Options {
  int threads = 2;
  int steps = 50;
  int warmup = 10;
  int reps = 5;
  Index groups = 16;
  Index group_size = 16;
  std::string arch = "mlp";
  std::string precision = "float32";
  double peak_gflops = 0;  // 0: measure
  bool phases = false;
  bool gemm_shapes = false;
};

bool tracing = false;  // --gemm-shapes: print products during the one timed step

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// CPU seconds used by the whole process (all threads): on a shared machine, wall time absorbs
// other processes' load, CPU time much less so (with one thread it is nearly load-independent).
double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Measured float GEMM rate (1024³, C = A B), best of a few, at the current thread setting.
double measure_sgemm_peak() {
  using Mat = Eigen::MatrixXf;
  const Index n = 1024;
  Mat a = Mat::Random(n, n), b = Mat::Random(n, n), c(n, n);
  for (int i = 0; i < 2; ++i) c.noalias() = a * b;
  double best = 1e300;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = Clock::now();
    c.noalias() = a * b;
    best = std::min(best, seconds_since(t0));
  }
  return 2.0 * n * n * n / best * 1e-9;
}

// GEMM FLOPs of one step of Dense(in, out) layers on N columns (list in forward order; the first
// needs no input gradient).
struct GemmLayer {
  double m, k;  // the layer's GEMM is (m x k)·(k x N·p); for Dense m = out, k = in, p = 1
  double p;     // columns per observation (output pixels for a convolution)
  bool first;
};
double step_flops(const std::vector<GemmLayer>& layers, double n) {
  double f = 0;
  for (const GemmLayer& l : layers) {
    const double one = 2.0 * l.m * l.k * n * l.p;
    f += one /*forward*/ + one /*dW*/ + (l.first ? 0.0 : one) /*dX*/;
  }
  return f;
}

struct Timing {
  double median_s, best_s;
  double best_cpu_s = 0;  // process CPU seconds per step, best repetition
  double forward_s = 0, forward_backward_s = 0, adam_s = 0;
};

template <typename Model>
Timing time_steps(Model& model, const Options& o) {
  const Index n = o.groups * o.group_size;
  mlvae::Rng rng(1234);
  mlvae::Matrix<float> x(model.data_size(), n);
  for (Index j = 0; j < x.cols(); ++j)
    for (Index i = 0; i < x.rows(); ++i) x(i, j) = static_cast<float>(rng.uniform());
  std::vector<Index> offsets;
  for (Index g = 0; g <= o.groups; ++g) offsets.push_back(g * o.group_size);
  model.initialize(rng);
  mlvae::AdamOptions ao;
  ao.learning_rate = 1e-3;
  mlvae::Adam<float> adam(model.parameters().size(), ao);

  double sink = 0;
  auto step = [&] {
    sink += model.forward_backward(x, offsets, rng).loss;
    adam.step(model.parameters().values, model.parameters().gradients);
  };
  for (int i = 0; i < o.warmup; ++i) step();
  // The kernels were chosen (measured or read from the cache) in the first warm-up step.
  for (const std::string& line : mlvae::gemm_kernel_report()) std::printf("# %s\n", line.c_str());
  if (o.gemm_shapes) {
    tracing = true;
    step();
    tracing = false;
    std::exit(0);
  }
  std::vector<double> per_step;
  double best_cpu = 1e300;
  for (int r = 0; r < o.reps; ++r) {
    const auto t0 = Clock::now();
    const double c0 = process_cpu_seconds();
    for (int i = 0; i < o.steps; ++i) step();
    per_step.push_back(seconds_since(t0) / o.steps);
    best_cpu = std::min(best_cpu, (process_cpu_seconds() - c0) / o.steps);
  }
  std::sort(per_step.begin(), per_step.end());
  Timing t{per_step[per_step.size() / 2], per_step.front()};
  t.best_cpu_s = best_cpu;

  if (o.phases) {  // where the step's time goes, at the coarse level the public API allows
    auto best_of = [&](auto&& f) {
      double best = 1e300;
      for (int r = 0; r < o.reps; ++r) {
        const auto t0 = Clock::now();
        for (int i = 0; i < o.steps; ++i) f();
        best = std::min(best, seconds_since(t0) / o.steps);
      }
      return best;
    };
    t.forward_s = best_of([&] { sink += model.evaluate(x, offsets, rng).loss; });
    t.forward_backward_s = best_of([&] { sink += model.forward_backward(x, offsets, rng).loss; });
    t.adam_s = best_of([&] { adam.step(model.parameters().values, model.parameters().gradients); });
  }
  if (sink == 1e300) std::printf(" ");  // keep the losses alive
  return t;
}

void report(const std::string& arch, const Options& o, const Timing& t, double flop, double peak, Index params) {
  const double n = static_cast<double>(o.groups * o.group_size);
  const double gflops = flop / t.median_s * 1e-9;
  std::printf("# %s: %ld parameters, batch %ld = %ld groups x %ld, %.3f GFLOP (GEMM) per step\n", arch.c_str(),
              (long)params, (long)(o.groups * o.group_size), (long)o.groups, (long)o.group_size, flop * 1e-9);
  if (o.phases)
    std::printf("# phases (best of %d x %d): forward %.3f ms, forward+backward %.3f ms, adam %.3f ms, step %.3f ms\n",
                o.reps, o.steps, t.forward_s * 1e3, t.forward_backward_s * 1e3, t.adam_s * 1e3, t.best_s * 1e3);
  std::printf(
      "RESULT mlvae %s images_per_s=%.1f best_images_per_s=%.1f ms_per_step=%.4f threads=%d precision=%s "
      "gflop_per_step=%.4f gflops=%.2f peak_gflops=%.2f peak_fraction=%.3f cpu_ms_per_step=%.4f "
      "images_per_cpu_s=%.1f\n",
      arch.c_str(), n / t.median_s, n / t.best_s, t.median_s * 1e3, o.threads, o.precision.c_str(), flop * 1e-9,
      gflops, peak,
      gflops / peak, t.best_cpu_s * 1e3, n / t.best_cpu_s);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ML-VAE training step throughput (forward + backward + Adam), float"};
  Options o;
  app.add_option("--threads", o.threads, "Eigen / OpenMP threads")->check(CLI::PositiveNumber);
  app.add_option("--steps", o.steps, "timed steps per repetition")->check(CLI::PositiveNumber);
  app.add_option("--warmup", o.warmup, "untimed steps first")->check(CLI::NonNegativeNumber);
  app.add_option("--reps", o.reps, "timed repetitions (median and best reported)")->check(CLI::PositiveNumber);
  app.add_option("--groups", o.groups, "groups per minibatch")->check(CLI::PositiveNumber);
  app.add_option("--group-size", o.group_size, "observations per group")->check(CLI::PositiveNumber);
  app.add_option("--arch", o.arch, "model")->check(CLI::IsMember({"mlp", "conv28"}));
  app.add_option("--precision", o.precision,
                 "arithmetic of the products: float32, or bf16 (bfloat16 operands, float32 sums; needs AMX-BF16)")
      ->check(CLI::IsMember({"float32", "bf16"}));
  app.add_option("--peak-gflops", o.peak_gflops, "sgemm peak to compare with (0: measure 1024^3 now)");
  app.add_flag("--phases", o.phases, "also time forward, forward+backward and Adam separately");
  app.add_flag("--gemm-shapes", o.gemm_shapes,
               "print the shape of every product of one step (GEMM ta tb m n k accumulate) and exit; input of "
               "bench_gemm --shapes");
  CLI11_PARSE(app, argc, argv);

  Eigen::setNbThreads(o.threads);
#ifdef _OPENMP
  omp_set_num_threads(o.threads);
#endif
  std::printf("# Eigen %d.%d.%d, SIMD %s, threads %d (Eigen reports %d)\n", EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION,
              EIGEN_MINOR_VERSION, Eigen::SimdInstructionSetsInUse(), o.threads, Eigen::nbThreads());
  if (o.gemm_shapes) {  // one warm-up step, then list the products of one step
    o.warmup = 1;
    o.steps = 1;
    o.reps = 1;
    mlvae::gemm_shape_observer = [](mlvae::Transpose ta, mlvae::Transpose tb, Index m, Index n, Index k, bool acc) {
      if (!tracing) return;
      std::printf("GEMM %c %c %ld %ld %ld %d\n", ta == mlvae::Transpose::Yes ? 'T' : 'N',
                  tb == mlvae::Transpose::Yes ? 'T' : 'N', (long)m, (long)n, (long)k, acc ? 1 : 0);
    };
  }
  const double peak = o.gemm_shapes ? 1.0 : o.peak_gflops > 0 ? o.peak_gflops : measure_sgemm_peak();
  const double n = static_cast<double>(o.groups * o.group_size);

  if (o.arch == "mlp") {
    auto model = mlvae::make_mlp_mlvae<float>(784, 500, 10, 10);
    if (o.precision == "bf16") model.set_precision(mlvae::Precision::BFloat16);
    const std::vector<GemmLayer> layers{
        {500, 784, 1, true}, {20, 500, 1, false}, {20, 500, 1, false}, {500, 20, 1, false}, {784, 500, 1, false}};
    const Timing t = time_steps(model, o);
    report("mlp", o, t, step_flops(layers, n), peak, model.parameters().size());
    return 0;
  }
#if MLVAE_BENCH_HAVE_CONV
  auto model = mlvae::make_conv28_mlvae<float>(10, 10);
  if (o.precision == "bf16") model.set_precision(mlvae::Precision::BFloat16);
  // Convolutions as im2col GEMMs: (C_out x C_in·k²)·(C_in·k² x N·H_out·W_out); a transposed
  // convolution is the backward-data GEMM of the forward one, the same FLOPs with the roles of
  // the channel counts swapped (here counted on the input pixels it scatters from).
  const std::vector<GemmLayer> layers{
      {32, 1 * 16, 14 * 14, true},   // Conv2d(1->32, k4, s2, p1): 28x28 -> 14x14
      {64, 32 * 16, 7 * 7, false},   // Conv2d(32->64): 14x14 -> 7x7
      {256, 3136, 1, false},         // Dense(3136->256)
      {20, 256, 1, false},           // style head
      {20, 256, 1, false},           // content head
      {256, 20, 1, false},           // Dense(20->256)
      {3136, 256, 1, false},         // Dense(256->3136)
      {32 * 16, 64, 7 * 7, false},   // ConvTranspose2d(64->32): 7x7 -> 14x14
      {1 * 16, 32, 14 * 14, false},  // ConvTranspose2d(32->1): 14x14 -> 28x28
  };
  const Timing t = time_steps(model, o);
  report("conv28", o, t, step_flops(layers, n), peak, model.parameters().size());
  return 0;
#else
  std::printf("# conv28 is not available: include/mlvae/model/conv_architectures.hpp does not exist yet\n");
  std::printf("RESULT mlvae conv28 unavailable threads=%d\n", o.threads);
  return 0;
#endif
}
