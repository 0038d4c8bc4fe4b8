// The mlvae ML-VAE training step on a CUDA GPU (device layer, include/mlvae/device/): the paper's
// MLP (784-500-tanh, style 10, content 10, Bernoulli) in float32, one step = pinned upload of the
// minibatch, forward, backward, the loss-term readback and Adam, all on one stream. Also measures
// the cuBLAS sgemm rate on the same GPU in the same run, so the step's GEMM FLOP rate can be given
// as a fraction of it. Run by scripts/run_benchmarks.sh (GPU section) next to
// benchmarks/pytorch_mlvae.py --device cuda. Without a GPU it prints why and exits 77.
//
//   bench_cuda_step [--groups 16] [--group-size 16] [--steps 50] [--reps 5] [--warmup 10] [--device 0]
// Prints: RESULT mlvae_cuda mlp groups=G group_size=K images_per_s=.. ms_per_step=.. gflops=..
//         sgemm_gflops=.. peak_fraction=..
#include "mlvae/device/cuda.cuh"  // first: defines EIGEN_USE_GPU

#include "mlvae/device/mlvae.hpp"
#include "mlvae/device/trainer.hpp"
#include "mlvae/model/architectures.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

long arg(int argc, char** argv, const char* name, long fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::atol(argv[i + 1]);
  return fallback;
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

}  // namespace

int main(int argc, char** argv) {
  using namespace mlvae;
  const std::string reason = device::cuda_unavailable_reason();
  if (!reason.empty()) {
    std::printf("RESULT mlvae_cuda unavailable: %s\n", reason.c_str());
    return 77;
  }
  const Index groups = arg(argc, argv, "--groups", 16), size = arg(argc, argv, "--group-size", 16);
  const int steps = static_cast<int>(arg(argc, argv, "--steps", 50)),
            reps = static_cast<int>(arg(argc, argv, "--reps", 5));
  const int warmup = static_cast<int>(arg(argc, argv, "--warmup", 10));
  const int index = static_cast<int>(arg(argc, argv, "--device", 0));
  try {
    device::CudaContext ctx(index);
    const double peak = sgemm_gflops(ctx, 4096, 5);

    auto model = make_mlp_mlvae<float>();
    Rng init(1);
    model.initialize(init);
    const Index n = groups * size;
    Matrix<float> data(784, n);
    for (Index j = 0; j < n; ++j)
      for (Index i = 0; i < 784; ++i) data(i, j) = static_cast<float>(init.uniform());
    std::vector<Index> offsets(static_cast<std::size_t>(groups) + 1);
    for (Index g = 0; g <= groups; ++g) offsets[static_cast<std::size_t>(g)] = g * size;
    auto gpu = device::to_device(model, ctx);
    Adam<float> host_adam(model.parameters().size());
    device::DeviceAdam<float, device::CudaContext> adam(ctx, host_adam);
    Rng noise(2);
    auto step = [&] {
      gpu.batch_staging(n) = data;  // the host side of a real step: gather into pinned memory
      gpu.commit_batch();
      const device::StepResult r = gpu.forward_backward(offsets, noise());
      adam.step(gpu.parameters(), gpu.gradients(), r.gradient_norm);
    };
    for (int i = 0; i < warmup; ++i) step();
    ctx.synchronize();
    std::vector<double> per_step;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < steps; ++i) step();
      ctx.synchronize();
      per_step.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / steps);
    }
    std::sort(per_step.begin(), per_step.end());
    const double median = per_step[per_step.size() / 2];
    // GEMM FLOPs of one step: each Dense layer in->out over N columns does 2·in·out·N for y = Wx,
    // the same for dW, and again for dx except the first layer of the trunk.
    const double N = static_cast<double>(n);
    auto dense = [&](double in, double out, bool dx) { return 2 * in * out * N * (dx ? 3 : 2); };
    const double flops =
        dense(784, 500, false) + 2 * dense(500, 20, true) + dense(20, 500, true) + dense(500, 784, true);
    const double gflops = flops / median / 1e9;
    std::printf("# %s, sgemm 4096^3 %.0f GFLOP/s (cuBLAS, FP32, no TF32)\n", ctx.describe().c_str(), peak);
    std::printf("RESULT mlvae_cuda mlp groups=%ld group_size=%ld images_per_s=%.1f ms_per_step=%.4f gflops=%.1f "
                "sgemm_gflops=%.1f peak_fraction=%.4f\n",
                static_cast<long>(groups), static_cast<long>(size), N / median, median * 1e3, gflops, peak,
                gflops / peak);
  } catch (const std::exception& e) {
    std::printf("RESULT mlvae_cuda failed: %s\n", e.what());
    return 1;
  }
  return 0;
}
