// The mlvae ML-VAE training step on a CUDA GPU (device layer, include/mlvae/device/): the paper's
// MLP (784-500-tanh, style 10, content 10, Bernoulli) or conv28 in float32, one step = forward,
// backward, the loss terms and Adam, all on one stream. Also measures the cuBLAS sgemm rate on the
// same GPU in the same run, so the step's GEMM FLOP rate can be given as a fraction of it. Run by
// scripts/run_gpu.sh and scripts/run_benchmarks.sh (GPU section) next to
// benchmarks/pytorch_mlvae.py --device cuda. Without a GPU it prints why and exits 77.
//
//   bench_cuda_step [--arch mlp|conv28] [--groups 16] [--group-size 16] [--steps 50] [--reps 5]
//                   [--warmup 10] [--device 0] [--resident] [--step sync|async|graph] [--no-sgemm]
//
// Where the batch comes from:
//   default     every step copies the batch on the host into pinned staging memory and uploads it
//               (what DeviceEngine does for a training set above its resident limit);
//   --resident  the batch is uploaded once and stays on the GPU, so a timed step is forward,
//               backward and Adam only: what PyTorch's benchmark times (its batch is a tensor on
//               the GPU). The configuration to compare with PyTorch.
// How a step is driven (async and graph need --resident):
//   sync   (default) DeviceMLVAE::forward_backward + DeviceAdam::step: the loss terms and the
//          gradient norm come back to the host every step (one synchronisation per step), which
//          computes Adam's coefficients;
//   async  queue_forward_backward + DeviceAdam::queue_step: the noise key, the norm, clipping,
//          step count and bias corrections stay on the device; no synchronisation per step;
//   graph  the async step captured once in a CUDA graph (cudaStreamBeginCapture on the context's
//          stream) and replayed: one launch per step. Before timing, async and graph check their
//          parameters after 3 and 6 steps against the sync path's (same noise keys):
//          check_rel = max relative difference (float rounding of ‖g‖² and c₁, c₂ only).
//
// Prints: # <device, CUDA runtime/driver, cuBLAS versions, sgemm rate>
//         RESULT mlvae_cuda <arch> groups=G group_size=K batch=host|resident step=sync|async|graph
//                images_per_s=<median> best_images_per_s=.. ms_per_step=.. gflops=.. sgemm_gflops=..
//                peak_fraction=.. loss=.. [graph_nodes=.. check_rel=..]
#include "mlvae/device/cuda.cuh"  // first: defines EIGEN_USE_GPU

#include "mlvae/device/mlvae.hpp"
#include "mlvae/device/trainer.hpp"
#include "mlvae/model/architectures.hpp"
#include "mlvae/model/conv_architectures.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace {

long arg(int argc, char** argv, const char* name, long fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::atol(argv[i + 1]);
  return fallback;
}
std::string text_arg(int argc, char** argv, const char* name, const char* fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  return fallback;
}
bool flag(int argc, char** argv, const char* name) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return true;
  return false;
}

/// cuBLAS sgemm rate (GFLOP/s) on n x n x n products, best of `reps`.
double sgemm_gflops(mlvae::device::CudaContext& ctx, int n, int reps) {
  using namespace mlvae::device;
  DeviceArray<float, CudaContext> a(ctx, n, n), b(ctx, n, n), c(ctx, n, n);
  fill_normal(ctx.device(), 1, a.tensor());
  fill_normal(ctx.device(), 2, b.tensor());
  CudaContext::GemmSite<float> site;
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    cudaEventRecord(start, ctx.stream());
    for (int i = 0; i < 10; ++i)
      ctx.gemm(site, mlvae::Transpose::No, mlvae::Transpose::No, n, n, n, a.data(), n, b.data(), n, c.data(), n, false);
    cudaEventRecord(stop, ctx.stream());
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    best = std::max(best, 10 * 2.0 * n * double(n) * n / (ms * 1e-3) / 1e9);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return best;
}

/// FLOPs of the products of one training step per image: a product m x n x k costs 2mnk; each layer
/// does its forward product, its weight-gradient product and (except the trunk's first layer,
/// whose input gradient nobody needs) its input-gradient product, all of the same size.
double dense_flops(double in, double out, bool dx) { return 2 * in * out * (dx ? 3 : 2); }
/// A conv (or transposed conv) as im2col + GEMM: positions P x patch PK x channels C.
double conv_flops(double positions, double patch, double channels, bool dx) {
  return 2 * positions * patch * channels * (dx ? 3 : 2);
}
double mlp_flops_per_image() {
  return dense_flops(784, 500, false) + 2 * dense_flops(500, 20, true) + dense_flops(20, 500, true) +
         dense_flops(500, 784, true);
}
/// conv28 (model/conv_architectures.hpp): Conv(1→32, 28→14), Conv(32→64, 14→7), Dense 3136→256,
/// heads 256→20 (x2), Dense 20→256, Dense 256→3136, ConvT(64→32, 7→14), ConvT(32→1, 14→28).
double conv28_flops_per_image() {
  return conv_flops(196, 1 * 16, 32, false) + conv_flops(49, 32 * 16, 64, true) + dense_flops(3136, 256, true) +
         2 * dense_flops(256, 20, true) + dense_flops(20, 256, true) + dense_flops(256, 3136, true) +
         conv_flops(49, 32 * 16, 64, true) + conv_flops(196, 1 * 16, 32, true);
}

struct Config {
  std::string arch = "mlp";
  std::string step = "sync";
  mlvae::Index groups = 16, size = 16;
  int steps = 50, reps = 5, warmup = 10;
  bool resident = false;
  double peak = 0;  // sgemm GFLOP/s, 0 when not measured
};

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw mlvae::Error(std::string(what) + ": " + cudaGetErrorString(e));
}

/// max |a − b| / (1 + max |b|).
double relative_distance(const mlvae::Vector<float>& a, const mlvae::Vector<float>& b) {
  return static_cast<double>((a - b).cwiseAbs().maxCoeff()) / (1.0 + static_cast<double>(b.cwiseAbs().maxCoeff()));
}

/// A CUDA graph of one queued step, captured on the context's stream.
struct CapturedStep {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  std::size_t nodes = 0;
  ~CapturedStep() {
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
  }
  template <typename F>
  void capture(mlvae::device::CudaContext& ctx, F&& queue_step) {
    const long allocations = ctx.allocations().device;
    check_cuda(cudaStreamBeginCapture(ctx.stream(), cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    try {
      queue_step();
    } catch (...) {
      cudaStreamEndCapture(ctx.stream(), &graph);
      throw;
    }
    check_cuda(cudaStreamEndCapture(ctx.stream(), &graph), "cudaStreamEndCapture (the step did something a graph "
                                                            "cannot hold: a synchronisation or an allocation)");
    mlvae::require<mlvae::Error>(ctx.allocations().device == allocations,
                                 "the step allocated device memory while it was captured");
    check_cuda(cudaGraphGetNodes(graph, nullptr, &nodes), "cudaGraphGetNodes");
    check_cuda(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
  }
  void launch(mlvae::device::CudaContext& ctx) { check_cuda(cudaGraphLaunch(exec, ctx.stream()), "cudaGraphLaunch"); }
};

template <typename Model>
int run(mlvae::device::CudaContext& ctx, Model model, double flops_per_image, const Config& c) {
  using namespace mlvae;
  using Ctx = device::CudaContext;
  Rng init(1);
  model.initialize(init);
  const Index n = c.groups * c.size;
  Matrix<float> data(model.data_size(), n);
  for (Index j = 0; j < n; ++j)
    for (Index i = 0; i < data.rows(); ++i) data(i, j) = static_cast<float>(init.uniform());
  std::vector<Index> offsets(static_cast<std::size_t>(c.groups) + 1);
  for (Index g = 0; g <= c.groups; ++g) offsets[static_cast<std::size_t>(g)] = g * c.size;
  auto gpu = device::to_device(model, ctx);
  Adam<float> host_adam(model.parameters().size());
  device::DeviceAdam<float, Ctx> adam(ctx, host_adam);
  Rng noise(2);
  if (c.resident) gpu.upload_batch(data);  // once: the batch lives on the GPU from here on
  device::StepResult last{};
  std::function<void()> step;
  CapturedStep graph;
  double check_rel = -1;
  device::DeviceArray<std::uint64_t, Ctx> key(ctx, 1, 1);  // async, graph: the step key, advanced on the device

  if (c.step == "sync") {
    step = [&] {
      if (!c.resident) {
        gpu.batch_staging(n) = data;  // the host side of a real step: gather into pinned memory
        gpu.commit_batch();
      }
      last = gpu.forward_backward(offsets, noise());
      adam.step(gpu.parameters(), gpu.gradients(), last.gradient_norm);
    };
  } else {
    std::uint64_t host_key = noise();
    ctx.upload(key.data(), &host_key, sizeof host_key);
    ctx.synchronize();
    auto queued = [&gpu, &adam, &offsets, &ctx, k = key.data()] {
      device::advance_key(ctx.device(), k);
      gpu.queue_forward_backward(offsets, k);
      adam.queue_step(gpu.parameters(), gpu.gradients(), gpu.gradient_norm_partials(),
                      gpu.gradient_norm_partial_count());
    };
    {
      // The reference: the sync path from the same parameters with the same keys.
      auto ref = device::to_device(model, ctx);
      device::DeviceAdam<float, Ctx> ref_adam(ctx, host_adam);
      ref.upload_batch(data);
      auto ref_steps = [&](int count) {
        for (int i = 0; i < count; ++i) {
          host_key = device::NextKey{}(host_key);
          const device::StepResult r = ref.forward_backward(offsets, host_key);
          ref_adam.step(ref.parameters(), ref.gradients(), r.gradient_norm);
        }
      };
      auto compare = [&] {
        Vector<float> a, b;
        ref.download_parameters(a);
        gpu.download_parameters(b);
        check_rel = std::max(check_rel, relative_distance(b, a));
      };
      for (int i = 0; i < 3; ++i) queued();  // also the warm-up that sizes every workspace
      ref_steps(3);
      compare();
      if (c.step == "graph") {
        graph.capture(ctx, queued);
        for (int i = 0; i < 3; ++i) graph.launch(ctx);
      } else {
        for (int i = 0; i < 3; ++i) queued();
      }
      ref_steps(3);
      compare();
    }  // the reference's memory goes back
    if (c.step == "graph") step = [&] { graph.launch(ctx); };
    else step = queued;
  }
  for (int i = 0; i < c.warmup; ++i) step();
  ctx.synchronize();
  std::vector<double> per_step;
  for (int r = 0; r < c.reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < c.steps; ++i) step();
    ctx.synchronize();
    per_step.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / c.steps);
  }
  if (c.step != "sync") {
    last = gpu.read_step_result();
    adam.sync_step_count();
  }
  std::sort(per_step.begin(), per_step.end());
  const double median = per_step[per_step.size() / 2], best = per_step.front();
  const double N = static_cast<double>(n);
  const double gflops = flops_per_image * N / median / 1e9;
  std::printf("RESULT mlvae_cuda %s groups=%ld group_size=%ld batch=%s step=%s images_per_s=%.1f "
              "best_images_per_s=%.1f ms_per_step=%.4f gflops=%.1f sgemm_gflops=%.1f peak_fraction=%.4f loss=%.4f",
              c.arch.c_str(), static_cast<long>(c.groups), static_cast<long>(c.size),
              c.resident ? "resident" : "host", c.step.c_str(), N / median, N / best, median * 1e3, gflops, c.peak,
              c.peak > 0 ? gflops / c.peak : 0.0, last.terms.loss);
  if (c.step == "graph") std::printf(" graph_nodes=%zu", graph.nodes);
  if (check_rel >= 0) std::printf(" check_rel=%.2e", check_rel);
  std::printf(" adam_steps=%lld\n", adam.step_count());
  std::fflush(stdout);
  if (!std::isfinite(last.terms.loss)) return 1;
  if (check_rel > 1e-4) {
    std::printf("RESULT mlvae_cuda %s groups=%ld failed: the %s step's parameters differ from the sync step's by %.2e "
                "(relative) after 6 steps\n",
                c.arch.c_str(), static_cast<long>(c.groups), c.step.c_str(), check_rel);
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace mlvae;
  Config c;
  c.arch = text_arg(argc, argv, "--arch", "mlp");
  c.groups = arg(argc, argv, "--groups", 16);
  c.size = arg(argc, argv, "--group-size", 16);
  c.steps = static_cast<int>(arg(argc, argv, "--steps", 50));
  c.reps = static_cast<int>(arg(argc, argv, "--reps", 5));
  c.warmup = static_cast<int>(arg(argc, argv, "--warmup", 10));
  c.resident = flag(argc, argv, "--resident");
  c.step = text_arg(argc, argv, "--step", "sync");
  const int index = static_cast<int>(arg(argc, argv, "--device", 0));
  if ((c.arch != "mlp" && c.arch != "conv28") || c.groups < 1 || c.size < 1 || c.steps < 1 || c.reps < 1 ||
      c.warmup < 0 || (c.step != "sync" && c.step != "async" && c.step != "graph") ||
      (c.step != "sync" && !c.resident)) {
    std::printf("usage: bench_cuda_step [--arch mlp|conv28] [--groups G>=1] [--group-size K>=1] [--steps S>=1] "
                "[--reps R>=1] [--warmup W>=0] [--device I] [--resident] [--step sync|async|graph (these two with "
                "--resident)] [--no-sgemm]\n");
    return 2;
  }
  const std::string reason = device::cuda_unavailable_reason();
  if (!reason.empty()) {
    std::printf("RESULT mlvae_cuda unavailable: %s\n", reason.c_str());
    return 77;
  }
  try {
    device::CudaContext ctx(index);
    if (!flag(argc, argv, "--no-sgemm")) c.peak = sgemm_gflops(ctx, 4096, 5);
    int runtime = 0, driver = 0, cublas = 0;
    cudaRuntimeGetVersion(&runtime);
    cudaDriverGetVersion(&driver);
    cublasGetVersion(ctx.cublas(), &cublas);
    std::printf("# %s, CUDA runtime %d, driver %d, cuBLAS %d, sgemm 4096^3 %.0f GFLOP/s (FP32, no TF32)\n",
                ctx.describe().c_str(), runtime, driver, cublas, c.peak);
    if (c.arch == "mlp") return run(ctx, make_mlp_mlvae<float>(), mlp_flops_per_image(), c);
    return run(ctx, make_conv28_mlvae<float>(), conv28_flops_per_image(), c);
  } catch (const std::exception& e) {
    std::printf("RESULT mlvae_cuda %s groups=%ld group_size=%ld batch=%s step=%s failed: %s\n", c.arch.c_str(),
                static_cast<long>(c.groups), static_cast<long>(c.size), c.resident ? "resident" : "host",
                c.step.c_str(), e.what());
    return 1;
  }
}
