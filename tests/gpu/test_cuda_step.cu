// GPU tests of the device layer (CTest label `gpu`): the CUDA context runs the same device code
// that tests/test_device.cpp checks on Eigen's CPU devices. On a machine without a usable GPU this
// program prints one line saying so and exits 77 (CTest: skipped). With a GPU it checks complete MLP
// and conv28 ML-VAE steps (and the GVAE, Ada and per-observation content paths and the reverse
// cycle) and MLP and conv28 β-VAE steps against the CPU model, counter-based noise against the
// host, no device allocation in steady-state training, the CPU -> GPU -> CPU round trip of the
// training state, and the host-free step captured in a CUDA graph against the synchronising step.
// `--quick` trains 1 steady-state epoch instead of 5: the same code paths in a fifth of the steps,
// for the runs under compute-sanitizer (scripts/run_gpu.sh), which are 10-100x slower.
#include "mlvae/device/cuda.cuh"  // first: defines EIGEN_USE_GPU

#include "mlvae/device/trainer.hpp"
#include "mlvae/model/architectures.hpp"
#include "mlvae/model/conv_architectures.hpp"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  std::printf("%s: %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

template <typename A, typename B>
double relative_distance(const A& a, const B& b) {
  return static_cast<double>((a - b).cwiseAbs().maxCoeff()) / (1.0 + static_cast<double>(b.cwiseAbs().maxCoeff()));
}

mlvae::Matrix<float> uniform_data(mlvae::Index rows, mlvae::Index cols, std::uint64_t seed) {
  mlvae::Rng rng(seed);
  mlvae::Matrix<float> x(rows, cols);
  for (mlvae::Index j = 0; j < cols; ++j)
    for (mlvae::Index i = 0; i < rows; ++i) x(i, j) = static_cast<float>(rng.uniform());
  return x;
}

template <typename Model>
void step_matches_cpu(mlvae::device::CudaContext& ctx, Model model, const std::vector<mlvae::Index>& offsets,
                      const std::string& name) {
  using namespace mlvae;
  Rng init(3);
  model.initialize(init);
  const Matrix<float> x = uniform_data(model.data_size(), offsets.back(), 4);
  const Index groups = static_cast<Index>(offsets.size()) - 1;
  Rng noise(9);
  Rng copy = noise;
  const bool per_group = ContentPath<float>::per_group_noise(model.options().content);
  Matrix<float> es(model.style_size(), x.cols()), ec(model.content_size(), per_group ? groups : x.cols());
  Matrix<float> ey(model.noise_rows(2), model.noise_columns(2, offsets));  // the reverse cycle's, when on
  copy.fill_normal(es);
  copy.fill_normal(ec);
  copy.fill_normal(ey);
  auto gpu = device::to_device(model, ctx);
  const LossTerms cpu = model.forward_backward(x, offsets, noise);
  gpu.upload_batch(x);
  const device::StepResult dev = gpu.forward_backward(offsets, es, ec, ey);
  Vector<float> g;
  gpu.download_gradients(g);
  const std::string what = name + ", groups of " + std::to_string(offsets[1]) + ".. (" + std::to_string(groups) + ")";
  expect(std::abs(dev.terms.loss - cpu.loss) <= 1e-4 * std::abs(cpu.loss),
         "GPU step loss matches the CPU model, " + what);
  expect(relative_distance(g, model.parameters().gradients) < 1e-4, "GPU step gradients match the CPU model, " + what);
  Matrix<float> cpu_codes[4], gpu_codes[4], cpu_mean, gpu_mean;
  model.encode(x, cpu_codes[0], cpu_codes[1], cpu_codes[2], cpu_codes[3]);
  gpu.encode(x, gpu_codes[0], gpu_codes[1], gpu_codes[2], gpu_codes[3]);
  expect(relative_distance(gpu_codes[2], cpu_codes[2]) < 1e-4, "GPU encoding matches the CPU model, " + name);
  model.decode_mean(cpu_codes[0], cpu_codes[2], cpu_mean);
  gpu.decode_mean(cpu_codes[0], cpu_codes[2], gpu_mean);
  expect(relative_distance(gpu_mean, cpu_mean) < 1e-4, "GPU decoding matches the CPU model, " + name);
}

template <typename Model>
void vae_step_matches_cpu(mlvae::device::CudaContext& ctx, Model model, mlvae::Index n, const std::string& name) {
  using namespace mlvae;
  model.set_kl_weight(2.0f);
  Rng init(3);
  model.initialize(init);
  const Matrix<float> x = uniform_data(model.data_size(), n, 4);
  Rng noise(9);
  Rng copy = noise;
  Matrix<float> eps(model.latent_size(), n);
  copy.fill_normal(eps);
  auto gpu = device::to_device(model, ctx);
  const LossTerms cpu = model.forward_backward(x, noise);
  gpu.upload_batch(x);
  const device::StepResult dev = gpu.forward_backward({0, n}, eps, Matrix<float>());
  Vector<float> g;
  gpu.download_gradients(g);
  expect(std::abs(dev.terms.loss - cpu.loss) <= 1e-4 * std::abs(cpu.loss), "GPU step loss matches the CPU model, " + name);
  expect(relative_distance(g, model.parameters().gradients) < 1e-4, "GPU step gradients match the CPU model, " + name);
  Matrix<float> m_cpu, l_cpu, m_gpu, l_gpu, d_cpu, d_gpu;
  model.encode(x, m_cpu, l_cpu);
  gpu.encode(x, m_gpu, l_gpu);
  expect(relative_distance(m_gpu, m_cpu) < 1e-4, "GPU encoding matches the CPU model, " + name);
  model.decode_mean(m_cpu, d_cpu);
  gpu.decode_mean(m_cpu, d_gpu);
  expect(relative_distance(d_gpu, d_cpu) < 1e-4, "GPU decoding matches the CPU model, " + name);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace mlvae;
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const int steady_epochs = quick ? 1 : 5;
  const std::string reason = device::cuda_unavailable_reason();
  if (!reason.empty()) {
    std::printf("SKIPPED: mlvae GPU tests need a visible NVIDIA GPU: %s\n", reason.c_str());
    return 77;
  }
  try {
    device::CudaContext ctx(0);
    std::printf("device: %s\n", ctx.describe().c_str());

    step_matches_cpu(ctx, make_mlp_mlvae<float>(64, 48, 4, 5), {0, 8, 16, 24, 32}, "MLP");
    step_matches_cpu(ctx, make_mlp_mlvae<float>(64, 48, 4, 5), {0, 3, 16, 17, 32}, "MLP");
    step_matches_cpu(ctx, make_conv28_mlvae<float>(4, 5), {0, 8, 16}, "conv28");
    vae_step_matches_cpu(ctx, make_mlp_vae<float>(64, 48, 6), 32, "MLP beta-VAE");
    vae_step_matches_cpu(ctx, make_conv28_vae<float>(6), 16, "conv28 beta-VAE");
    // The other content paths of the ML-VAE family (model/content_path.hpp's kernels on the GPU).
    {
      MLVAEOptions<float> gvae, ada, per_observation, cycle;
      gvae.content.aggregation = ContentAggregation::Mean;
      ada.content.adaptive = true;
      per_observation.content.sample_per_observation = true;
      cycle.cycle_weight = 0.7f;
      step_matches_cpu(ctx, make_mlp_mlvae<float>(64, 48, 4, 5, cycle), {0, 3, 16, 17, 32}, "MLP reverse cycle");
      step_matches_cpu(ctx, make_mlp_mlvae<float>(64, 48, 4, 5, gvae), {0, 3, 16, 17, 32}, "MLP GVAE");
      step_matches_cpu(ctx, make_mlp_mlvae<float>(64, 48, 4, 5, ada), {0, 2, 4, 5, 7, 9, 11, 13, 15, 16}, "MLP Ada");
      step_matches_cpu(ctx, make_mlp_mlvae<float>(64, 48, 4, 5, per_observation), {0, 8, 16, 24, 32},
                       "MLP content per observation");
    }

    // Counter-based normals: the same numbers as on the host, up to libm vs CUDA math.
    {
      device::DeviceArray<float, device::CudaContext> a(ctx, 100, 300);
      device::fill_normal(ctx.device(), device::stream_key(77, 0), a.tensor());
      Matrix<float> gpu_normals;
      a.download(gpu_normals);
      // The host evaluates the same functor the CPU device does (tests/test_device.cpp).
      const device::CounterNormal<float> normal{device::stream_key(77, 0)};
      Matrix<float> cpu_normals(100, 300);
      for (Index i = 0; i < cpu_normals.size(); ++i) cpu_normals.data()[i] = normal(i);
      expect(relative_distance(gpu_normals, cpu_normals) < 1e-6, "GPU counter normals equal the host's");
    }

    // The host-free step (noise key and Adam on the device) captured in a CUDA graph: no allocation
    // while capturing, and 1 queued step + 4 replays land where 5 synchronising steps do.
    {
      auto model = make_mlp_mlvae<float>(64, 48, 4, 5);
      Rng init(7);
      model.initialize(init);
      const Matrix<float> x = uniform_data(64, 32, 8);
      const std::vector<Index> offsets{0, 8, 16, 24, 32};
      Adam<float> host_adam(model.parameters().size());
      host_adam.options().clip_norm = 0.01;  // clipping on both paths
      auto sync_model = device::to_device(model, ctx);
      auto graph_model = device::to_device(model, ctx);
      device::DeviceAdam<float, device::CudaContext> sync_adam(ctx, host_adam), graph_adam(ctx, host_adam);
      sync_model.upload_batch(x);
      graph_model.upload_batch(x);
      device::DeviceArray<std::uint64_t, device::CudaContext> key(ctx, 1, 1);
      std::uint64_t host_key = 99;
      ctx.upload(key.data(), &host_key, sizeof host_key);
      auto queued = [&] {
        device::advance_key(ctx.device(), key.data());
        graph_model.queue_forward_backward(offsets, key.data());
        graph_adam.queue_step(graph_model.parameters(), graph_model.gradients(),
                              graph_model.gradient_norm_partials(), graph_model.gradient_norm_partial_count());
      };
      queued();  // sizes every workspace
      ctx.synchronize();
      const long allocations = ctx.allocations().device;
      cudaGraph_t graph = nullptr;
      cudaGraphExec_t exec = nullptr;
      bool captured = cudaStreamBeginCapture(ctx.stream(), cudaStreamCaptureModeThreadLocal) == cudaSuccess;
      queued();
      const cudaError_t end = cudaStreamEndCapture(ctx.stream(), &graph);
      captured = captured && end == cudaSuccess && cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess;
      expect(captured, std::string("the host-free step is captured in a CUDA graph (") + cudaGetErrorString(end) + ")");
      expect(ctx.allocations().device == allocations, "no device allocation while the step is captured");
      if (captured) {
        for (int i = 0; i < 4; ++i) cudaGraphLaunch(exec, ctx.stream());
        const device::StepResult replayed = graph_model.read_step_result();
        graph_adam.sync_step_count();
        device::StepResult reference;
        for (int i = 0; i < 5; ++i) {
          host_key = device::NextKey{}(host_key);
          reference = sync_model.forward_backward(offsets, host_key);
          sync_adam.step(sync_model.parameters(), sync_model.gradients(), reference.gradient_norm);
        }
        Vector<float> a, b;
        sync_model.download_parameters(a);
        graph_model.download_parameters(b);
        expect(relative_distance(b, a) < 1e-5, "5 graph-driven steps land where 5 synchronising steps do (" +
                                                   std::to_string(relative_distance(b, a)) + ")");
        expect(std::abs(replayed.terms.loss - reference.terms.loss) <= 1e-4 * std::abs(reference.terms.loss),
               "the replayed step's loss terms equal the synchronising step's");
        expect(graph_adam.step_count() == sync_adam.step_count(), "the device step count advanced once per replay");
      }
      if (exec) cudaGraphExecDestroy(exec);
      if (graph) cudaGraphDestroy(graph);
    }

    // Training: steady state allocates nothing; the state round-trips CPU -> GPU -> CPU.
    {
      auto model = make_mlp_mlvae<float>(64, 48, 4, 5);
      Rng init(5);
      model.initialize(init);
      const Matrix<float> data = uniform_data(64, 512, 6);
      std::vector<int> keys(512);
      for (std::size_t i = 0; i < keys.size(); ++i) keys[i] = static_cast<int>(i % 8);
      TrainerOptions options;
      options.sampler = {4, 8, 8, 2};
      Trainer<decltype(model)> trainer(model, data, keys, options);
      const Vector<float> before = model.parameters().values;
      const auto engine = device::put_on(trainer, ctx);
      trainer.sync_to_host();
      expect(model.parameters().values == before, "parameters round-trip CPU -> GPU -> CPU bit for bit");
      const LossTerms first = trainer.run_epoch();
      const long allocations = ctx.allocations().device, pinned = ctx.allocations().host;
      LossTerms last;
      for (int e = 0; e < steady_epochs; ++e) last = trainer.run_epoch();
      expect(ctx.allocations().device == allocations && ctx.allocations().host == pinned,
             "no device or pinned allocation in " + std::to_string(steady_epochs) + " steady-state epoch(s)");
      expect(last.loss < first.loss, "the GPU training loss decreases (" + std::to_string(first.loss) + " -> " +
                                         std::to_string(last.loss) + ")");
      trainer.sync_to_host();
      expect(trainer.optimizer().step_count() == engine->step_count(), "Adam state copied back to the host");
    }
  } catch (const std::exception& e) {
    std::printf("FAIL: exception: %s\n", e.what());
    return 1;
  }
  std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "passed", failures);
  return failures ? 1 : 0;
}
