// A steady-state training step touches no heap: after warm-up, Trainer::step (batch gathering,
// forward, backward, Adam) on the MLP ML-VAE and forward_backward + Adam on the conv ML-VAE make
// zero calls to malloc/calloc/realloc, with 1 and with 2 threads; so do the same steps in bfloat16
// (nn/gemm_bf16.hpp), and DeviceTrainer::step on the device layer's CPU device (DefaultDevice).
// This executable replaces the C allocator entry points with counting wrappers around glibc's, so
// it is built on its own and not under the sanitizers (which interpose the same functions).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <mlvae/device/trainer.hpp>
#include <mlvae/mlvae.hpp>

#include <atomic>
#include <cstddef>

extern "C" void* __libc_malloc(std::size_t);
extern "C" void* __libc_calloc(std::size_t, std::size_t);
extern "C" void* __libc_realloc(void*, std::size_t);

namespace {
std::atomic<long> allocations{0};
std::atomic<bool> counting{false};
}  // namespace

extern "C" void* malloc(std::size_t n) {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_malloc(n);
}
extern "C" void* calloc(std::size_t count, std::size_t size) {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_calloc(count, size);
}
extern "C" void* realloc(void* p, std::size_t n) {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_realloc(p, n);
}

namespace {

template <typename F>
long allocations_during(F&& f) {
  allocations = 0;
  counting = true;
  f();
  counting = false;
  return allocations.load();
}

}  // namespace

TEST_CASE("no allocation: the counter sees allocations") {
  // Guards the test itself: if the wrappers were not in effect, the checks below would be empty.
  const long n = allocations_during([] {
    mlvae::Matrix<float> m(100, 100);
    m.setZero();
    CHECK(m.sum() == 0.0f);
  });
  CHECK(n >= 1);
}

// Allocations in 3 Trainer steps of the MLP ML-VAE with products in precision `p`, after 2 warm-up
// steps (the workspaces are sized there); `report` holds the last step's.
long mlp_trainer_allocations(const mlvae::Matrix<float>& images, const std::vector<int>& keys, mlvae::Precision p,
                             mlvae::StepReport& report) {
  auto model = mlvae::make_mlp_mlvae<float>();
  model.set_precision(p);
  mlvae::Rng rng(1);
  model.initialize(rng);
  mlvae::Trainer<decltype(model)> trainer(model, images, keys, {});
  for (int i = 0; i < 2; ++i) REQUIRE(trainer.step(report));  // warm-up: workspaces are sized here
  return allocations_during([&] {
    for (int i = 0; i < 3; ++i) trainer.step(report);
  });
}

// Allocations in 2 forward_backward + Adam steps of the conv28 ML-VAE with products in precision
// `p`, after 2 warm-up steps.
long conv_step_allocations(const mlvae::Matrix<float>& batch, const std::vector<mlvae::Index>& offsets,
                           mlvae::Precision p) {
  auto model = mlvae::make_conv28_mlvae<float>();
  model.set_precision(p);
  mlvae::Rng rng(2);
  model.initialize(rng);
  mlvae::Adam<float> adam(model.parameters().size());
  auto step = [&] {
    model.forward_backward(batch, offsets, rng);
    adam.step(model.parameters().values, model.parameters().gradients);
  };
  step();
  step();
  return allocations_during([&] { step(); step(); });
}

TEST_CASE("no allocation: steady-state MLP ML-VAE training steps") {
  const auto data = mlvae::load_fashion_mnist<float>("train", mlvae::fashion_mnist_default_dir(), 1280);
  std::vector<int> keys(1280);
  for (std::size_t i = 0; i < keys.size(); ++i) keys[i] = static_cast<int>(i % 10);  // 128 per key: whole groups
  for (int threads : {1, 2}) {
    mlvae::set_threads(threads);
    mlvae::StepReport report;
    const long n = mlp_trainer_allocations(data.images, keys, mlvae::Precision::Float32, report);
    INFO("threads = ", threads);
    CHECK(n == 0);
    CHECK(report.terms.images == 256);
  }
}

TEST_CASE("no allocation: steady-state conv ML-VAE steps") {
  const auto data = mlvae::load_fashion_mnist<float>("train", mlvae::fashion_mnist_default_dir(), 64);
  const std::vector<mlvae::Index> offsets{0, 16, 32, 48, 64};
  for (int threads : {1, 2}) {
    mlvae::set_threads(threads);
    const long n = conv_step_allocations(data.images, offsets, mlvae::Precision::Float32);
    INFO("threads = ", threads);
    CHECK(n == 0);
  }
}

TEST_CASE("no allocation: steady-state bf16 ML-VAE steps") {
  // The bfloat16 products (nn/gemm_bf16.hpp) keep their packing buffers: MLP steps through the
  // Trainer and conv steps, after warm-up, with 1 and 2 threads. Skipped without AMX-BF16.
  if (!mlvae::bfloat16_available()) {
    MESSAGE("skipped: ", mlvae::detail::bf16_support().missing);
    return;
  }
  const auto data = mlvae::load_fashion_mnist<float>("train", mlvae::fashion_mnist_default_dir(), 1280);
  std::vector<int> keys(1280);
  for (std::size_t i = 0; i < keys.size(); ++i) keys[i] = static_cast<int>(i % 10);
  const mlvae::Matrix<float> conv_batch = data.images.leftCols(64);
  const std::vector<mlvae::Index> offsets{0, 16, 32, 48, 64};
  for (int threads : {1, 2}) {
    mlvae::set_threads(threads);
    mlvae::StepReport report;
    const long n = mlp_trainer_allocations(data.images, keys, mlvae::Precision::BFloat16, report);
    const long n_conv = conv_step_allocations(conv_batch, offsets, mlvae::Precision::BFloat16);
    INFO("threads = ", threads);
    CHECK(n == 0);
    CHECK(n_conv == 0);
  }
}

TEST_CASE("no allocation: steady-state device-layer steps on the CPU device") {
  // The device layer (include/mlvae/device/) on Eigen's DefaultDevice: no device buffer and no heap
  // allocation at all (Eigen's Tensor evaluators included) once the workspaces are sized.
  const auto data = mlvae::load_fashion_mnist<float>("train", mlvae::fashion_mnist_default_dir(), 1280);
  std::vector<int> keys(1280);
  for (std::size_t i = 0; i < keys.size(); ++i) keys[i] = static_cast<int>(i % 10);
  mlvae::set_threads(1);
  auto model = mlvae::make_mlp_mlvae<float>();
  mlvae::Rng rng(1);
  model.initialize(rng);
  mlvae::Trainer<decltype(model)> host(model, data.images, keys, {});
  mlvae::device::CpuContext<> ctx;
  mlvae::device::DeviceTrainer<decltype(model), mlvae::device::CpuContext<>> trainer(host, ctx);
  mlvae::StepReport report;
  for (int i = 0; i < 2; ++i) REQUIRE(trainer.step(report));
  const long device_before = ctx.allocations().device;
  const long n = allocations_during([&] {
    for (int i = 0; i < 3; ++i) trainer.step(report);
  });
  CHECK(n == 0);
  CHECK(ctx.allocations().device == device_before);
  CHECK(report.terms.images == 256);
}
