// The device layer (include/mlvae/device/) on Eigen's CPU devices, DefaultDevice and
// ThreadPoolDevice: the device-generic code that CUDA builds run on a GpuDevice is checked here
// against the CPU implementation (the reference) on layers (Dense, activations, conv), the group
// posterior, complete MLP and conv ML-VAE steps and Adam, by finite differences in double, for
// device allocations in steady state, and for the CPU -> device -> CPU checkpoint round trip; and
// the examples' --device parsing and message.
#define EIGEN_USE_THREADS  // ThreadPoolDevice (before the first include of Eigen's Tensor module)

#include <doctest/doctest.h>

#include "mlvae/device/trainer.hpp"
#include "mlvae/io/checkpoint.hpp"
#include "mlvae/mlvae.hpp"
#include "support.hpp"
#include "../examples/device_backend.hpp"

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

using namespace mlvae;
using mlvae::device::CpuContext;

namespace {

using DefaultContext = CpuContext<Eigen::DefaultDevice>;
using PoolContext = CpuContext<Eigen::ThreadPoolDevice>;

/// max |a − b| / (1 + max |b|): a relative distance that tolerates entries near zero.
template <typename A, typename B>
double relative_distance(const A& a, const B& b) {
  return static_cast<double>((a - b).cwiseAbs().maxCoeff()) / (1.0 + static_cast<double>(b.cwiseAbs().maxCoeff()));
}

template <typename T>
Matrix<T> random_matrix(Index rows, Index cols, std::uint64_t seed, double scale = 1.0) {
  Rng rng(seed);
  Matrix<T> m(rows, cols);
  for (Index j = 0; j < cols; ++j)
    for (Index i = 0; i < rows; ++i) m(i, j) = static_cast<T>(scale * rng.normal());
  return m;
}

/// The noise a CPU MLVAE draws from `rng` for N observations in G groups (style first).
template <typename T>
void cpu_noise(const Rng& rng, Index style, Index content, Index n, Index groups, Matrix<T>& eps_style,
               Matrix<T>& eps_content, Matrix<T>* eps_cycle = nullptr, Index cycle_columns = 0) {
  Rng r = rng;
  eps_style.resize(style, n);
  eps_content.resize(content, groups);
  r.fill_normal(eps_style);
  r.fill_normal(eps_content);
  if (eps_cycle != nullptr) {  // the reverse cycle's styles come last (MLVAE's host driver)
    eps_cycle->resize(style, cycle_columns);
    r.fill_normal(*eps_cycle);
  }
}

template <typename Ctx, typename Layer>
void check_activation_matches(Ctx& ctx, Layer cpu) {
  using T = float;
  const Matrix<T> x = random_matrix<T>(cpu.input_size(), 7, 3, 2.0);
  const Matrix<T> dy = random_matrix<T>(cpu.input_size(), 7, 4);
  const Matrix<T> y = cpu.forward(x);
  const Matrix<T> dx = cpu.backward(dy);
  device::device_layer_t<Layer, Ctx> dev(ctx, cpu);
  device::DeviceArray<T, Ctx> xd(ctx), dyd(ctx);
  xd.upload(x);
  dyd.upload(dy);
  Matrix<T> y_dev, dx_dev;
  dev.forward(xd).download(y_dev);
  dev.backward(dyd).download(dx_dev);
  INFO(cpu.describe());
  CHECK(relative_distance(y_dev, y) < 1e-6);
  CHECK(relative_distance(dx_dev, dx) < 1e-6);
}

}  // namespace

TEST_CASE("device: every activation and Dense match the CPU layers") {
  DefaultContext ctx;
  check_activation_matches(ctx, Tanh<float>(5));
  check_activation_matches(ctx, Relu<float>(5));
  check_activation_matches(ctx, LeakyRelu<float>(5, 0.2));
  check_activation_matches(ctx, Sigmoid<float>(5));
  check_activation_matches(ctx, Softplus<float>(5));
  check_activation_matches(ctx, Identity<float>(5));

  Dense<float> dense(6, 4);
  ParameterStore<float> store;
  bind_layers(store, dense);
  Rng rng(2);
  dense.initialize(rng);
  store.values.tail(4).setConstant(0.3f);
  const Matrix<float> x = random_matrix<float>(6, 9, 5);
  const Matrix<float> dy = random_matrix<float>(4, 9, 6);
  const Matrix<float> y = dense.forward(x);
  const Matrix<float> dx = dense.backward(dy);
  device::device_layer_t<Dense<float>, DefaultContext> dev(ctx, dense);  // the same Dense on the device
  device::DeviceArray<float, DefaultContext> values(ctx), grads(ctx), xd(ctx), dyd(ctx);
  values.upload(store.values);
  grads.resize(store.size(), 1);
  device::set_zero(ctx.device(), grads.data(), grads.size());
  dev.bind(values.data(), grads.data());
  xd.upload(x);
  dyd.upload(dy);
  Matrix<float> y_dev, dx_dev, g_dev;
  dev.forward(xd).download(y_dev);
  dev.backward(dyd).download(dx_dev);
  grads.download(g_dev);
  CHECK(relative_distance(y_dev, y) < 1e-6);
  CHECK(relative_distance(dx_dev, dx) < 1e-6);
  CHECK(relative_distance(g_dev, Matrix<float>(store.gradients)) < 1e-6);
}

namespace {

/// A layer with parameters on the CPU and its device mirror, in double: output, input gradient and
/// parameter gradients must agree to rounding.
template <typename Layer, typename AfterDevice = void (*)(device::device_layer_t<Layer, DefaultContext>&)>
void check_parametric_layer_matches(Layer cpu, Index batch, AfterDevice after_device = nullptr) {
  DefaultContext ctx;
  ParameterStore<double> store;
  bind_layers(store, cpu);
  Rng rng(4);
  cpu.initialize(rng);
  for (Index k = 0; k < store.size(); ++k) store.values(k) += 0.1 * rng.normal();  // non-zero biases
  const Matrix<double> x = random_matrix<double>(cpu.input_size(), batch, 5);
  const Matrix<double> dy = random_matrix<double>(cpu.output_size(), batch, 6);
  const Matrix<double> y = cpu.forward(x);
  const Matrix<double> dx = cpu.backward(dy);
  device::device_layer_t<Layer, DefaultContext> dev(ctx, cpu);
  device::DeviceArray<double, DefaultContext> values(ctx), grads(ctx), xd(ctx), dyd(ctx);
  values.upload(store.values);
  grads.resize(store.size(), 1);
  device::set_zero(ctx.device(), grads.data(), grads.size());
  dev.bind(values.data(), grads.data());
  xd.upload(x);
  dyd.upload(dy);
  Matrix<double> y_dev, dx_dev, g_dev;
  dev.forward(xd).download(y_dev);
  dev.backward(dyd).download(dx_dev);
  grads.download(g_dev);
  if constexpr (!std::is_pointer_v<AfterDevice>) after_device(dev);
  INFO(cpu.describe());
  CHECK(dev.describe() == cpu.describe());
  CHECK(relative_distance(y_dev, y) < 1e-12);
  CHECK(relative_distance(dx_dev, dx) < 1e-12);
  CHECK(relative_distance(g_dev, Matrix<double>(store.gradients)) < 1e-12);
}

}  // namespace

TEST_CASE("device: Conv2d and ConvTranspose2d match the CPU layers") {
  check_parametric_layer_matches(Conv2d<double>(ImageShape{2, 7, 6}, 3, 3, 2, 1), 4);
  check_parametric_layer_matches(Conv2d<double>(ImageShape{1, 5, 5}, 2, 2, 1, 0), 3);
  check_parametric_layer_matches(ConvTranspose2d<double>(ImageShape{3, 4, 3}, 2, 4, 2, 1), 4);
  check_parametric_layer_matches(ConvTranspose2d<double>(ImageShape{2, 3, 3}, 2, 3, 2, 1, 1), 3);  // output_padding
  check_parametric_layer_matches(Dense<double>(5, 4), 3);
}

TEST_CASE("device: Conv2d fused with its ReLU and a CPU layer working in chunks match the one-chunk device stack") {
  // On the CPU the conv layer works in chunks of observations (here 1 per chunk: a 1-byte bound)
  // and writes the ReLU itself; the device runs the same layer definition on the whole batch, also
  // fused (Sequential fuses Conv2d with a ReLU on every context).
  using Stack = Sequential<Conv2d<double>, Relu<double>, ConvTranspose2d<double>>;
  Stack cpu(Conv2d<double>(ImageShape{2, 6, 5}, 3, 3, 2, 1), Relu<double>(3 * 3 * 3),
            ConvTranspose2d<double>(ImageShape{3, 3, 3}, 2, 3, 2, 1));
  cpu.layer<0>().set_workspace_limit(1);
  cpu.layer<2>().set_workspace_limit(1);
  check_parametric_layer_matches(std::move(cpu), 5, [](auto& dev) {
    CHECK(dev.template layer<0>().chunk_size() == 5);  // the device's chunk is the batch
  });
  CHECK(detail::fuses_with_v<BasicConv2d<float, DefaultContext>, BasicElementwise<float, activation::ReluOp, DefaultContext>>);
}

TEST_CASE("device: the content path (product and mean - Ada - per-observation samples) equals the CPU's") {
  // One definition (model/content_path.hpp's kernels) evaluated on the host and on a device context:
  // samples, per-column KLs and both gradients agree to rounding for every content option.
  const Index dims = 3, n = 7;
  const std::vector<Index> offsets{0, 2, 3, 5, 7};  // pairs and a lone observation (Ada needs pairs)
  const Matrix<double> mean = random_matrix<double>(dims, n, 7);
  const Matrix<double> logvar = random_matrix<double>(dims, n, 8, 3.0);  // a wide range of precisions
  const Matrix<double> dz = random_matrix<double>(dims, n, 9);
  Eigen::ThreadPool pool(2);
  for (const bool product : {true, false})
    for (const bool adaptive : {false, true})
      for (const bool per_observation : {false, true}) {
        ContentPathOptions o;
        o.aggregation = product ? ContentAggregation::Product : ContentAggregation::Mean;
        o.adaptive = adaptive;
        o.sample_per_observation = per_observation;
        INFO("product ", product, " adaptive ", adaptive, " per observation ", per_observation);
        // The CPU's path (HostContext) and the devices' read the same standard normals.
        Rng rng(5);
        Matrix<double> eps(dims, ContentPath<double>::per_group_noise(o) ? Index(offsets.size()) - 1 : n);
        rng.fill_normal(eps);
        ContentPath<double> cpu;
        Matrix<double> z(dims, n), kls(1, n), dmean(dims, n), dlogvar(dims, n);
        cpu.forward({mean.data(), dims}, {logvar.data(), dims}, dims, offsets, o, eps.data(), z.data(), dims,
                    kls.data());
        const double kl = kls.sum();
        cpu.backward({mean.data(), dims}, {logvar.data(), dims}, {dz.data(), dims}, 0.3, dmean.data(), dlogvar.data(),
                     dims);
        auto on_device = [&](auto& ctx) {
          using Ctx = std::decay_t<decltype(ctx)>;
          device::DeviceArray<double, Ctx> m(ctx), l(ctx), e(ctx), g(ctx), zd(ctx), kld(ctx), dm(ctx), dl(ctx);
          m.upload(mean);
          l.upload(logvar);
          e.upload(eps);
          g.upload(dz);
          zd.resize(dims, n);
          kld.resize(1, n);
          dm.resize(dims, n);
          dl.resize(dims, n);
          BasicContentPath<double, Ctx> path(ctx);
          path.forward({m.data(), dims}, {l.data(), dims}, dims, offsets, o, e.data(), zd.data(), dims, kld.data());
          path.backward({m.data(), dims}, {l.data(), dims}, {g.data(), dims}, 0.3, dm.data(), dl.data(), dims);
          Matrix<double> z_dev, kl_dev, dm_dev, dl_dev;
          zd.download(z_dev);
          kld.download(kl_dev);
          dm.download(dm_dev);
          dl.download(dl_dev);
          CHECK(relative_distance(z_dev, z) < 1e-12);
          CHECK(kl_dev.sum() == doctest::Approx(kl).epsilon(1e-12));
          CHECK(relative_distance(dm_dev, dmean) < 1e-12);
          CHECK(relative_distance(dl_dev, dlogvar) < 1e-12);
        };
        DefaultContext plain;
        on_device(plain);
        PoolContext threaded(Eigen::ThreadPoolDevice(&pool, 2));
        on_device(threaded);
      }
}

TEST_CASE("device: counter-based normals are standard normal and depend only on key and index") {
  DefaultContext ctx;
  device::DeviceArray<double, DefaultContext> a(ctx, 200, 500), b(ctx, 100000, 1), c(ctx, 200, 500);
  device::fill_normal(ctx.device(), 42, a.tensor());
  device::fill_normal(ctx.device(), 42, b.tensor());
  device::fill_normal(ctx.device(), 43, c.tensor());
  Matrix<double> ha, hb, hc;
  a.download(ha);
  b.download(hb);
  c.download(hc);
  CHECK(Eigen::Map<const Vector<double>>(ha.data(), ha.size()) == hb.col(0));  // shape-independent
  CHECK((ha.array() != hc.array()).count() == ha.size());                           // another key, other numbers
  const double mean = ha.mean();
  const double var = (ha.array() - mean).square().mean();
  CHECK(std::abs(mean) < 0.01);         // sd of the mean of 1e5 draws: 0.003
  CHECK(std::abs(var - 1.0) < 0.02);    // sd of the variance: 0.0045
  CHECK(ha.cwiseAbs().maxCoeff() < 7.0);
}

namespace {

/// One complete ML-VAE step (forward, backward, Adam) on the CPU model and on its device copy
/// with the same noise and the same batch; compares terms, gradients and updated parameters.
template <typename Ctx, typename Model>
void check_step_matches(Ctx& ctx, Model& model, const Matrix<float>& x, const std::vector<Index>& offsets) {
  Rng init(11);
  model.initialize(init);
  Vector<float>& values = model.parameters().values;
  for (Index k = 0; k < values.size(); ++k) values(k) += 0.05f * static_cast<float>(init.normal());
  auto dev = device::to_device(model, ctx);
  Adam<float> adam(model.parameters().size(), {});
  adam.options().clip_norm = 0.01;  // below every gradient norm here: clipping is exercised on both paths
  device::DeviceAdam<float, Ctx> dev_adam(ctx, adam);

  const Rng noise(21);
  for (int step = 0; step < 2; ++step) {
    Matrix<float> es, ec, ey;
    const bool per_group = ContentPath<float>::per_group_noise(model.options().content);
    cpu_noise(noise, model.style_size(), model.content_size(), x.cols(),
              per_group ? static_cast<Index>(offsets.size()) - 1 : x.cols(), es, ec, &ey,
              model.noise_columns(2, offsets));
    Rng r = noise;
    const LossTerms cpu_terms = model.forward_backward(x, offsets, r);
    const double cpu_norm = adam.step(model.parameters().values, model.parameters().gradients);

    dev.upload_batch(x);
    const device::StepResult result = dev.forward_backward(offsets, es, ec, ey);
    Vector<float> g_dev;
    dev.download_gradients(g_dev);
    dev_adam.step(dev.parameters(), dev.gradients(), result.gradient_norm);
    Vector<float> v_dev;
    dev.download_parameters(v_dev);

    INFO("step ", step, " loss cpu ", cpu_terms.loss, " device ", result.terms.loss);
    CHECK(result.terms.loss == doctest::Approx(cpu_terms.loss).epsilon(1e-5));
    CHECK(result.terms.reconstruction == doctest::Approx(cpu_terms.reconstruction).epsilon(1e-5));
    CHECK(result.terms.style_kl == doctest::Approx(cpu_terms.style_kl).epsilon(1e-5));
    CHECK(result.terms.content_kl == doctest::Approx(cpu_terms.content_kl).epsilon(1e-5));
    CHECK(result.gradient_norm == doctest::Approx(cpu_norm).epsilon(1e-5));
    CHECK(cpu_norm > adam.options().clip_norm);
    CHECK(relative_distance(g_dev, model.parameters().gradients) < 2e-5);
    CHECK(relative_distance(v_dev, model.parameters().values) < 1e-5);
  }
}

// The MLP ML-VAE (12 -> 16 -> style 3, content 4) with options `o` steps as the CPU model on
// DefaultDevice and on a two-thread ThreadPoolDevice.
void check_mlp_step_on_cpu_devices(const MLVAEOptions<float>& o, const Matrix<float>& x,
                                   const std::vector<Index>& offsets) {
  Eigen::ThreadPool pool(2);
  {
    DefaultContext ctx;
    auto model = make_mlp_mlvae<float>(12, 16, 3, 4, o);
    check_step_matches(ctx, model, x, offsets);
  }
  {
    PoolContext ctx(Eigen::ThreadPoolDevice(&pool, 2));
    auto model = make_mlp_mlvae<float>(12, 16, 3, 4, o);
    check_step_matches(ctx, model, x, offsets);
  }
}

}  // namespace

TEST_CASE("device: a complete MLP ML-VAE step matches the CPU model on DefaultDevice and ThreadPoolDevice") {
  const Matrix<float> x = mlvae_test::toy_data<float>(24, 5);
  for (const std::vector<Index>& offsets : {std::vector<Index>{0, 8, 16, 24}, std::vector<Index>{0, 5, 6, 24}}) {
    INFO("groups of ", offsets[1], " then ", offsets[2] - offsets[1]);
    check_mlp_step_on_cpu_devices({}, x, offsets);
  }
  // A different likelihood and activation through the same code path.
  DefaultContext ctx;
  using Trunk = Sequential<Dense<float>, Relu<float>>;
  using Head = Sequential<Dense<float>>;
  using Decoder = Sequential<Dense<float>, Softplus<float>, Dense<float>>;
  MLVAE<float, Trunk, Head, Head, Decoder, GaussianLearnedVarianceLikelihood<float>> gaussian(
      Trunk(Dense<float>(12, 10), Relu<float>(10)), Head(Dense<float>(10, 4)), Head(Dense<float>(10, 6)),
      Decoder(Dense<float>(5, 10), Softplus<float>(10), Dense<float>(10, 24)), {}, {0.5f, 2.0f});
  check_step_matches(ctx, gaussian, x, {0, 6, 12, 18, 24});
}

namespace {

/// A small conv ML-VAE on 1x8x8 images (both conv layer kinds, Reshape, ReLU).
template <typename T>
auto make_small_conv_mlvae() {
  using Trunk = Sequential<Conv2d<T>, Relu<T>, Reshape<T>, Dense<T>, Tanh<T>>;
  using Head = Sequential<Dense<T>>;
  using Decoder = Sequential<Dense<T>, Relu<T>, Reshape<T>, ConvTranspose2d<T>>;
  using Model = MLVAE<T, Trunk, Head, Head, Decoder>;
  return Model(Trunk(Conv2d<T>(ImageShape{1, 8, 8}, 3, 4, 2, 1), Relu<T>(3 * 4 * 4),
                     Reshape<T>(ImageShape{3, 4, 4}, 48), Dense<T>(48, 10), Tanh<T>(10)),
               Head(Dense<T>(10, 4)), Head(Dense<T>(10, 6)),
               Decoder(Dense<T>(5, 32), Relu<T>(32), Reshape<T>(ImageShape{32, 1, 1}, ImageShape{2, 4, 4}),
                       ConvTranspose2d<T>(ImageShape{2, 4, 4}, 1, 4, 2, 1, 0, Init::GlorotUniform)));
}

}  // namespace

TEST_CASE("device: a complete conv ML-VAE step matches the CPU model") {
  const Matrix<float> x = random_matrix<float>(64, 12, 3).cwiseAbs().cwiseMin(1.0f);
  DefaultContext ctx;
  auto small = make_small_conv_mlvae<float>();
  check_step_matches(ctx, small, x, {0, 4, 8, 12});
  Eigen::ThreadPool pool(2);
  PoolContext pool_ctx(Eigen::ThreadPoolDevice(&pool, 2));
  auto small2 = make_small_conv_mlvae<float>();
  check_step_matches(pool_ctx, small2, x, {0, 3, 12});
  // The conv28 architecture of the paper's experiments (784 pixels), one batch of 2 groups of 4.
  auto conv28 = make_conv28_mlvae<float>(4, 4);
  const Matrix<float> images = random_matrix<float>(784, 8, 4).cwiseAbs().cwiseMin(1.0f);
  check_step_matches(ctx, conv28, images, {0, 4, 8});
}

TEST_CASE("gradient check: the device conv ML-VAE loss in double precision") {
  DefaultContext ctx;
  auto model = make_small_conv_mlvae<double>();
  Rng init(5);
  model.initialize(init);
  for (Index k = 0; k < model.parameters().size(); ++k) model.parameters().values(k) += 0.05 * init.normal();
  auto dev = device::to_device(model, ctx);
  const Matrix<double> x = random_matrix<double>(64, 5, 9).cwiseAbs().cwiseMin(1.0);
  const std::vector<Index> offsets{0, 2, 5};
  Matrix<double> es, ec;
  cpu_noise(Rng(8), 2, 3, 5, 2, es, ec);
  dev.upload_batch(x);
  dev.forward_backward(offsets, es, ec);
  Vector<double> analytic;
  dev.download_gradients(analytic);
  Vector<double> theta = model.parameters().values;
  auto loss = [&] {
    dev.upload_parameters(theta);
    return dev.evaluate(offsets, es, ec).loss;
  };
  const GradientCheckResult result = check_gradient(loss, theta, analytic, mlvae_test::large_loss_check());
  INFO(result.report());
  CHECK(result.passed);
}

TEST_CASE("gradient check: the device ML-VAE loss in double precision") {
  DefaultContext ctx;
  auto model = make_mlp_mlvae<double>(12, 6, 2, 3, {0.7, 1.3});
  Rng init(5);
  model.initialize(init);
  auto dev = device::to_device(model, ctx);
  const Matrix<double> x = mlvae_test::toy_data<double>(7, 9);
  const std::vector<Index> offsets{0, 3, 4, 7};
  Matrix<double> es, ec;
  cpu_noise(Rng(8), 2, 3, 7, 3, es, ec);
  dev.upload_batch(x);
  dev.forward_backward(offsets, es, ec);
  Vector<double> analytic;
  dev.download_gradients(analytic);
  Vector<double> theta = model.parameters().values;
  auto loss = [&] {
    dev.upload_parameters(theta);
    return dev.evaluate(offsets, es, ec).loss;
  };
  const GradientCheckResult result = check_gradient(loss, theta, analytic);
  INFO(result.report());
  CHECK(result.passed);
  CHECK(analytic.norm() > 0);
}

TEST_CASE("device: a complete VAE step matches the CPU model on DefaultDevice and ThreadPoolDevice") {
  const Matrix<float> x = mlvae_test::toy_data<float>(24, 7);
  const std::vector<Index> offsets{0, 24};  // the VAE's batch: every image its own unit
  Eigen::ThreadPool pool(2);
  PoolContext threaded(Eigen::ThreadPoolDevice(&pool, 2));
  DefaultContext plain;
  const auto check = [&](auto& ctx) {
    auto model = make_mlp_vae<float>(12, 16, 4);
    model.set_kl_weight(2.5f);  // β-VAE
    Rng init(3);
    model.initialize(init);
    auto dev = device::to_device(model, ctx);
    Adam<float> adam(model.parameters().size(), {});
    device::DeviceAdam<float, std::decay_t<decltype(ctx)>> dev_adam(ctx, adam);
    const Rng noise(12);
    for (int step = 0; step < 2; ++step) {
      Matrix<float> eps(4, x.cols());
      Rng replay = noise;
      replay.fill_normal(eps);  // the CPU VAE's noise: latent x N from its Rng
      Rng r = noise;
      const LossTerms cpu_terms = model.forward_backward(x, r);
      const double cpu_norm = adam.step(model.parameters().values, model.parameters().gradients);
      dev.upload_batch(x);
      const device::StepResult result = dev.forward_backward(offsets, eps, Matrix<float>());
      Vector<float> g_dev, v_dev;
      dev.download_gradients(g_dev);
      dev_adam.step(dev.parameters(), dev.gradients(), result.gradient_norm);
      dev.download_parameters(v_dev);
      INFO("step ", step, " loss cpu ", cpu_terms.loss, " device ", result.terms.loss);
      CHECK(result.terms.loss == doctest::Approx(cpu_terms.loss).epsilon(1e-5));
      CHECK(result.terms.reconstruction == doctest::Approx(cpu_terms.reconstruction).epsilon(1e-5));
      CHECK(result.terms.style_kl == doctest::Approx(cpu_terms.style_kl).epsilon(1e-5));
      CHECK(result.terms.groups == cpu_terms.groups);
      CHECK(result.gradient_norm == doctest::Approx(cpu_norm).epsilon(1e-5));
      CHECK(relative_distance(g_dev, model.parameters().gradients) < 2e-5);
      CHECK(relative_distance(v_dev, model.parameters().values) < 1e-5);
    }
    // Encodings and decodings as the CPU VAE's (the evaluation code takes either).
    Matrix<float> m_cpu, l_cpu, m_dev, l_dev, d_cpu, d_dev;
    model.encode(x, m_cpu, l_cpu);
    dev.encode(x, m_dev, l_dev);
    CHECK(relative_distance(m_dev, m_cpu) < 1e-5);
    CHECK(relative_distance(l_dev, l_cpu) < 1e-5);
    model.decode_mean(m_cpu, d_cpu);
    dev.decode_mean(m_cpu, d_dev);
    CHECK(relative_distance(d_dev, d_cpu) < 1e-5);
  };
  check(plain);
  check(threaded);
}

TEST_CASE("gradient check: the device VAE loss in double precision") {
  DefaultContext ctx;
  auto model = make_mlp_vae<double>(12, 6, 3);
  model.set_kl_weight(0.5);
  Rng init(6);
  model.initialize(init);
  auto dev = device::to_device(model, ctx);
  const Matrix<double> x = mlvae_test::toy_data<double>(5, 9);
  const std::vector<Index> offsets{0, 5};
  const Matrix<double> eps = random_matrix<double>(3, 5, 10);
  dev.upload_batch(x);
  dev.forward_backward(offsets, eps, Matrix<double>());
  Vector<double> analytic;
  dev.download_gradients(analytic);
  Vector<double> theta = model.parameters().values;
  auto loss = [&] {
    dev.upload_parameters(theta);
    return dev.evaluate(offsets, eps, Matrix<double>()).loss;
  };
  const GradientCheckResult result = check_gradient(loss, theta, analytic);
  INFO(result.report());
  CHECK(result.passed);
  CHECK(analytic.norm() > 0);
}

TEST_CASE("device: encoding and decoding match the CPU model so the evaluation tools run on a device") {
  DefaultContext ctx;
  auto model = make_mlp_mlvae<float>(12, 16, 3, 4);
  Rng init(2);
  model.initialize(init);
  auto dev = device::to_device(model, ctx);
  const Matrix<float> x = mlvae_test::toy_data<float>(10, 3);
  Matrix<float> cpu[4], on_device[4];
  model.encode(x, cpu[0], cpu[1], cpu[2], cpu[3]);
  dev.encode(x, on_device[0], on_device[1], on_device[2], on_device[3]);
  for (int i = 0; i < 4; ++i) CHECK(relative_distance(on_device[i], cpu[i]) < 1e-6);
  // eval/ takes either model: strategy-2 codes and a swap grid decoded on the device.
  const MLVAECodes<float> codes_cpu = encode_mlvae(model, x), codes_dev = encode_mlvae(dev, x);
  CHECK(relative_distance(codes_dev.content_mean, codes_cpu.content_mean) < 1e-6);
  const Matrix<float> grid_cpu = swap_grid(model, x.leftCols(2), x, {0, 5, 10});
  const Matrix<float> grid_dev = swap_grid(dev, x.leftCols(2), x, {0, 5, 10});
  REQUIRE(grid_dev.cols() == grid_cpu.cols());
  CHECK(relative_distance(grid_dev, grid_cpu) < 1e-6);
  // The importance-sampled log-likelihood, its decoder passes on the device (same seed, same draws).
  ImportanceSamplingOptions is;
  is.samples = 20;
  const LogLikelihoodEstimate ll_cpu = mlvae_log_likelihood(model, x, {0, 4, 10}, is);
  const LogLikelihoodEstimate ll_dev = mlvae_log_likelihood(dev, x, {0, 4, 10}, is);
  REQUIRE(ll_dev.log_likelihood.size() == 2);
  CHECK(ll_dev.mean_log_likelihood() == doctest::Approx(ll_cpu.mean_log_likelihood()).epsilon(1e-5));
  CHECK(ll_dev.mean_elbo() == doctest::Approx(ll_cpu.mean_elbo()).epsilon(1e-5));
}

TEST_CASE("device trainer: the Trainer's steps on a device with its sampler and divergence guard") {
  const Matrix<float> data = mlvae_test::toy_data<float>(64, 4);
  auto model = make_mlp_mlvae<float>(12, 16, 3, 3);
  Rng init(1);
  model.initialize(init);
  TrainerOptions options;
  options.sampler = {2, 4, 4, 9};
  options.adam.learning_rate = 1e-2;
  Trainer<decltype(model)> trainer(model, data, mlvae_test::toy_keys(64), options);
  DefaultContext ctx;
  const auto engine = device::put_on(trainer, ctx);
  CHECK(trainer.device() == "cpu");  // the CPU context's name
  CHECK(trainer.step_engine() == engine);
  const LossTerms first = trainer.run_epoch();
  LossTerms last;
  for (int e = 0; e < 15; ++e) last = trainer.run_epoch();
  INFO("loss first epoch ", first.loss, " last ", last.loss);
  CHECK(last.loss < first.loss - 1.0);
  CHECK(engine->optimizer().step_count() == 16 * 8);
  CHECK(trainer.optimizer().step_count() == 0);  // the host optimiser is stale until sync_to_host
  trainer.sync_to_host();
  CHECK(trainer.optimizer().step_count() == 16 * 8);

  // A device and a gradient strategy do not combine: refused, naming the device.
  CHECK_THROWS_WITH_AS(trainer.set_gradient_strategy(std::make_shared<ShardedGradient<decltype(model)>>(2)),
                       doctest::Contains("the steps run on cpu"), ArgumentError);

  // A non-finite parameter: Throw leaves everything unchanged, SkipStep counts the step.
  Vector<float> poisoned = model.parameters().values;
  poisoned(0) = std::numeric_limits<float>::quiet_NaN();
  engine->model().upload_parameters(poisoned);
  StepReport report;
  trainer.start_epoch();
  CHECK_THROWS_AS(trainer.step(report), DivergenceError);
  CHECK(engine->step_count() == 16 * 8);
  trainer.set_divergence_policy(DivergencePolicy::SkipStep);
  REQUIRE(trainer.step(report));
  CHECK(report.skipped);
  CHECK(trainer.skipped_steps() == 1);
  Vector<float> after;
  engine->model().download_parameters(after);
  CHECK(after.tail(after.size() - 1) == poisoned.tail(poisoned.size() - 1));

  // Back to the host model: the engine's state comes back with it.
  engine->model().upload_parameters(model.parameters().values);
  StepReport on_device;
  trainer.set_divergence_policy(DivergencePolicy::Throw);
  REQUIRE(trainer.step(on_device));
  Vector<float> device_values;
  engine->model().download_parameters(device_values);
  trainer.set_step_engine(nullptr);
  CHECK(trainer.device() == "cpu");
  CHECK(model.parameters().values == device_values);
  CHECK(trainer.optimizer().step_count() == 16 * 8 + 1);
}

TEST_CASE("device trainer: checkpoints round-trip CPU to device to CPU") {
  mlvae_test::TempDir dir;
  const Matrix<float> data = mlvae_test::toy_data<float>(64, 4);
  auto model = make_mlp_mlvae<float>(12, 16, 3, 3);
  Rng init(1);
  model.initialize(init);
  TrainerOptions options;
  options.sampler = {2, 4, 4, 9};
  Trainer<decltype(model)> trainer(model, data, mlvae_test::toy_keys(64), options);
  mlvae_test::train_steps(trainer, 3);  // CPU steps: non-zero moments
  const Vector<float> cpu_values = model.parameters().values;
  const Vector<float> cpu_m = trainer.optimizer().first_moment();

  DefaultContext ctx;
  const auto engine = device::put_on(trainer, ctx);
  trainer.sync_to_host();  // CPU -> device -> CPU: the same bits
  CHECK(model.parameters().values == cpu_values);
  CHECK(trainer.optimizer().first_moment() == cpu_m);
  CHECK(trainer.optimizer().step_count() == 3);

  StepReport report;
  for (int i = 0; i < 2; ++i) REQUIRE(trainer.step(report));
  save_checkpoint(dir.file("device.ckpt"), trainer);  // copies the device's state back itself
  CHECK(trainer.optimizer().step_count() == 5);

  auto resumed_model = make_mlp_mlvae<float>(12, 16, 3, 3);
  Trainer<decltype(resumed_model)> resumed(resumed_model, data, mlvae_test::toy_keys(64), options);
  load_checkpoint(dir.file("device.ckpt"), resumed);
  CHECK(resumed_model.parameters().values == model.parameters().values);
  CHECK(resumed.optimizer().second_moment() == trainer.optimizer().second_moment());
  CHECK(resumed.optimizer().step_count() == 5);
  CHECK(resumed.noise() == trainer.noise());
  CHECK(resumed.step_in_epoch() == trainer.step_in_epoch());

  // The resumed run continues on a device exactly as the original one does.
  const auto again = device::put_on(resumed, ctx);
  StepReport a, b;
  REQUIRE(trainer.step(a));
  REQUIRE(resumed.step(b));
  CHECK(a.terms.loss == b.terms.loss);
  Vector<float> va, vb;
  engine->model().download_parameters(va);
  again->model().download_parameters(vb);
  CHECK(va == vb);

  // A checkpoint loaded into a trainer that runs on a device goes onto the device.
  load_checkpoint(dir.file("device.ckpt"), resumed);
  Vector<float> loaded;
  again->model().download_parameters(loaded);
  CHECK(loaded == model.parameters().values);  // the checkpoint's (step 5), not the device's step 6
  CHECK(again->step_count() == 5);
}

TEST_CASE("device allocation: steady-state device steps allocate no device memory") {
  const Matrix<float> data = mlvae_test::toy_data<float>(64, 4);
  auto model = make_mlp_mlvae<float>(12, 16, 3, 3);
  Rng init(1);
  model.initialize(init);
  TrainerOptions options;
  options.sampler = {3, 4, 4, 9};  // the last batch of an epoch is smaller: a shape change on the way
  Eigen::ThreadPool pool(2);
  PoolContext pool_ctx(Eigen::ThreadPoolDevice(&pool, 2));
  DefaultContext default_ctx;
  auto check = [&](auto& ctx) {
    Trainer<decltype(model)> trainer(model, data, mlvae_test::toy_keys(64), options);
    device::put_on(trainer, ctx);
    trainer.run_epoch();  // warm-up: every workspace sized for the largest batch
    const long device_before = ctx.allocations().device, host_before = ctx.allocations().host;
    CHECK(device_before > 0);  // the counter sees the allocations
    for (int e = 0; e < 3; ++e) trainer.run_epoch();
    CHECK(ctx.allocations().device == device_before);
    CHECK(ctx.allocations().host == host_before);
  };
  check(default_ctx);
  check(pool_ctx);
}

TEST_CASE("device: a step without the host (noise key and Adam on the device) equals the host-driven step") {
  // The pieces a CUDA graph captures (bench_cuda_step --graph): the noise key read from device
  // memory and advanced there, the loss terms left on the device, Adam's norm, clipping, step count
  // and bias corrections computed there. Same model and noise as forward_backward + try_step.
  for (const std::vector<Index>& offsets : {std::vector<Index>{0, 8, 16, 24, 32}, std::vector<Index>{0, 3, 16, 17, 32}}) {
    auto model = make_mlp_mlvae<float>(64, 48, 4, 5);
    Rng init(5);
    model.initialize(init);
    const Matrix<float> x = random_matrix<float>(64, 32, 6, 0.5).cwiseAbs().cwiseMin(1.0f);
    Adam<float> adam(model.parameters().size());
    adam.options().clip_norm = 0.01;  // below the gradient norms here: clipping on both paths
    DefaultContext ctx;
    auto host_driven = device::to_device(model, ctx);
    auto host_free = device::to_device(model, ctx);
    device::DeviceAdam<float, DefaultContext> adam_a(ctx, adam), adam_b(ctx, adam);
    host_driven.upload_batch(x);
    host_free.upload_batch(x);
    device::DeviceArray<std::uint64_t, DefaultContext> key(ctx, 1, 1);
    std::uint64_t host_key = 0x1234abcdULL;
    ctx.upload(key.data(), &host_key, sizeof host_key);
    long allocations = 0;
    for (int step = 0; step < 4; ++step) {
      host_key = device::NextKey{}(host_key);
      device::advance_key(ctx.device(), key.data());
      const device::StepResult a = host_driven.forward_backward(offsets, host_key);
      adam_a.step(host_driven.parameters(), host_driven.gradients(), a.gradient_norm);
      host_free.queue_forward_backward(offsets, key.data());
      adam_b.queue_step(host_free.parameters(), host_free.gradients(), host_free.gradient_norm_partials(),
                        host_free.gradient_norm_partial_count());
      const device::StepResult b = host_free.read_step_result();
      INFO("step ", step, " loss ", a.terms.loss, " vs ", b.terms.loss);
      if (step == 0) {  // the same kernels on the same numbers
        CHECK(b.terms.loss == a.terms.loss);
        CHECK(b.gradient_norm == a.gradient_norm);
      } else {  // after the first update the parameters differ in their last bits (see below)
        CHECK(b.terms.loss == doctest::Approx(a.terms.loss).epsilon(1e-6));
        CHECK(b.gradient_norm == doctest::Approx(a.gradient_norm).epsilon(1e-5));
      }
      CHECK(b.gradient_norm > adam.options().clip_norm);
      Vector<float> va, vb;
      host_driven.download_parameters(va);
      host_free.download_parameters(vb);
      CHECK(relative_distance(vb, va) < 1e-6);  // ‖g‖² summed in float on the device, in double on the host
      if (step == 1) allocations = ctx.allocations().device;
      if (step > 1) CHECK(ctx.allocations().device == allocations);  // steady state: no allocation
    }
    CHECK_THROWS_AS(adam_b.try_step(host_free.parameters(), host_free.gradients(), 1.0), Error);
    adam_b.sync_step_count();
    CHECK(adam_b.step_count() == adam_a.step_count());

    // A non-finite norm changes nothing, the step count included (try_step's contract).
    Vector<float> before, after;
    host_free.download_parameters(before);
    device::DeviceArray<float, DefaultContext> nan_partial(ctx, 1, 1);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    ctx.upload(nan_partial.data(), &nan, sizeof nan);
    adam_b.queue_step(host_free.parameters(), host_free.gradients(), nan_partial.data(), 1);
    adam_b.sync_step_count();
    host_free.download_parameters(after);
    CHECK(after == before);
    CHECK(adam_b.step_count() == adam_a.step_count());
  }
}

TEST_CASE("examples --device: parsing and a clear message when CUDA is not available") {
  using mlvae_examples::parse_device;
  CHECK_FALSE(parse_device("cpu").cuda);
  CHECK(parse_device("cuda").cuda);
  CHECK(parse_device("cuda").index == 0);
  CHECK(parse_device("cuda:3").index == 3);
  for (const char* bad : {"gpu", "cuda:", "cuda:x", "cuda:-1", "CPU", "cuda:12345"})
    CHECK_THROWS_WITH_AS(parse_device(bad), doctest::Contains("--device: expected cpu, cuda or cuda:N"),
                         ArgumentError);
  mlvae_examples::check_device(parse_device("cpu"));  // never throws
  // The test suite is built without the examples' CUDA backend: asking for a GPU says so.
  CHECK_THROWS_WITH_AS(mlvae_examples::check_device(parse_device("cuda")), doctest::Contains("no CUDA device found"),
                       Error);
}

TEST_CASE("device: options the device step does not compute are refused by name when the model is put on it") {
  // bf16 products are the one ML-VAE option the device step does not compute: the message names
  // the option first, then the device.
  std::string message;
  try {
    device::require_device_supports(Precision::BFloat16, "cpu");
  } catch (const ArgumentError& e) {
    message = e.what();
  }
  CAPTURE(message);
  CHECK(message.rfind("bfloat16 products", 0) == 0);
  CHECK(message.find(") is not supported on cpu: ") != std::string::npos);
  CHECK_NOTHROW(device::require_device_supports(Precision::Float32, "cpu"));
  DefaultContext ctx;
  if (bfloat16_available()) {  // a bf16 model is refused when put on the device
    auto model = make_mlp_mlvae<float>(12, 16, 3, 4);
    model.set_precision(Precision::BFloat16);
    CHECK_THROWS_WITH_AS(device::to_device(model, ctx), mlvae_test::contains("bfloat16 products"), ArgumentError);
  }
  // The reverse cycle needs the Bernoulli likelihood, on the device as on the CPU.
  using Trunk = Sequential<Dense<float>, Tanh<float>>;
  using Head = Sequential<Dense<float>>;
  using Decoder = Sequential<Dense<float>, Tanh<float>, Dense<float>>;
  MLVAEOptions<float> o;
  o.cycle_weight = 0.5f;
  MLVAE<float, Trunk, Head, Head, Decoder, GaussianLearnedVarianceLikelihood<float>> gaussian(
      Trunk(Dense<float>(12, 10), Tanh<float>(10)), Head(Dense<float>(10, 4)), Head(Dense<float>(10, 6)),
      Decoder(Dense<float>(5, 10), Tanh<float>(10), Dense<float>(10, 24)), {}, o);
  Rng rng(1);
  gaussian.initialize(rng);
  auto dev = device::to_device(gaussian, ctx);
  dev.upload_batch(mlvae_test::toy_data<float>(8, 2));
  CHECK_THROWS_WITH_AS(dev.forward_backward({0, 4, 8}, 1), mlvae_test::contains("needs the Bernoulli likelihood"),
                       ArgumentError);
}

TEST_CASE("device: the reverse-cycle loss steps as the CPU model") {
  // The cycle (MLVAE::cycle_step) is one definition run by both: two complete steps with Adam on
  // DefaultDevice and ThreadPoolDevice equal the CPU model's, for equal and unequal groups and the
  // GVAE's content path.
  const Matrix<float> x = mlvae_test::toy_data<float>(12, 5);
  for (const bool mean : {false, true}) {
    for (const std::vector<Index>& offsets : {std::vector<Index>{0, 4, 8, 12}, std::vector<Index>{0, 5, 6, 12}}) {
      INFO((mean ? "GVAE" : "ML-VAE"), ", groups of ", offsets[1], " then ", offsets[2] - offsets[1]);
      MLVAEOptions<float> o;
      o.cycle_weight = 0.7f;
      if (mean) o.content.aggregation = ContentAggregation::Mean;
      check_mlp_step_on_cpu_devices(o, x, offsets);
    }
  }
}

TEST_CASE("gradient check: the device ML-VAE loss with the reverse cycle in double precision") {
  // As on the CPU (test_group_models.cpp): the cycle trains the encoder through the decoder, so the
  // encoder's gradient is the full loss's and the decoder's is the loss's without the cycle term.
  DefaultContext ctx;
  MLVAEOptions<double> o{0.7, 1.3};
  o.cycle_weight = 5.0;
  auto model = make_mlp_mlvae<double>(12, 6, 2, 3, o);
  Rng init(5);
  model.initialize(init);
  auto dev = device::to_device(model, ctx);
  const Matrix<double> x = mlvae_test::toy_data<double>(7, 9);
  const std::vector<Index> offsets{0, 3, 4, 7};
  Matrix<double> es, ec, ey;
  cpu_noise(Rng(8), 2, 3, 7, 3, es, ec, &ey, 3);
  dev.upload_batch(x);
  const device::StepResult with = dev.forward_backward(offsets, es, ec, ey);
  Vector<double> analytic;
  dev.download_gradients(analytic);
  const Index decoder = model.decoder().parameter_count(), encoder = model.parameters().size() - decoder;
  Vector<double> theta = model.parameters().values;
  auto loss = [&](double cycle) {
    dev.upload_parameters(theta);
    dev.options().cycle_weight = cycle;
    return dev.evaluate(offsets, es, ec, cycle > 0 ? ey : Matrix<double>()).loss;
  };
  Eigen::Ref<Vector<double>> enc_theta = theta.head(encoder), dec_theta = theta.tail(decoder);
  const GradientCheckResult enc = check_gradient([&] { return loss(5.0); }, enc_theta, analytic.head(encoder));
  INFO("encoder: ", enc.report());
  CHECK(enc.passed);
  const GradientCheckResult dec = check_gradient([&] { return loss(0.0); }, dec_theta, analytic.tail(decoder));
  INFO("decoder: ", dec.report());
  CHECK(dec.passed);
  // The cycle's term is in the loss: the same step without it is lower.
  CHECK(loss(0.0) < with.terms.loss - 1e-6);
}

TEST_CASE("device: GVAE - Ada-ML-VAE - Ada-GVAE and per-observation content samples step as the CPU model") {
  // The content path is one definition (model/content_path.hpp) run by both: one complete step of
  // each variant on DefaultDevice and ThreadPoolDevice equals the CPU model's.
  const Matrix<float> x = mlvae_test::toy_data<float>(12, 5);
  struct Variant {
    const char* name;
    ContentAggregation aggregation;
    bool adaptive, per_observation;
  };
  for (const Variant v : {Variant{"GVAE", ContentAggregation::Mean, false, false},
                          Variant{"Ada-ML-VAE", ContentAggregation::Product, true, false},
                          Variant{"Ada-GVAE", ContentAggregation::Mean, true, false},
                          Variant{"ML-VAE, a content sample per observation", ContentAggregation::Product, false, true},
                          Variant{"GVAE, a content sample per observation", ContentAggregation::Mean, false, true}}) {
    INFO(v.name);
    MLVAEOptions<float> o;
    o.content.aggregation = v.aggregation;
    o.content.adaptive = v.adaptive;
    o.content.sample_per_observation = v.per_observation;
    // Pairs and one lone observation for Ada; groups of 4 and 3 otherwise.
    const std::vector<Index> offsets = v.adaptive ? std::vector<Index>{0, 2, 4, 5, 7, 9, 11, 12}
                                                  : std::vector<Index>{0, 4, 8, 12};
    check_mlp_step_on_cpu_devices(o, x, offsets);
  }
}

TEST_CASE("device matrix: each model family on each CPU device context runs the step or is refused by name") {
  // The ML-VAE family and the VAE run (their steps against the CPU model: the tests above); the
  // semi-supervised model and M2 are refused when put on the device, naming the family and the
  // device, and the trainer goes on on the CPU unchanged; so is a VAE with the KL decomposition.
  Eigen::ThreadPool pool(2);
  PoolContext pool_ctx(Eigen::ThreadPoolDevice(&pool, 2));
  DefaultContext default_ctx;
  const Matrix<float> data = mlvae_test::toy_data<float>(64, 4);
  const auto on_each = [&](auto&& check) {
    check(default_ctx);
    check(pool_ctx);
  };
  on_each([&](auto& ctx) {  // ML-VAE: accepted, and a step runs on the device
    auto model = make_mlp_mlvae<float>(12, 16, 3, 3);
    Rng init(1);
    model.initialize(init);
    TrainerOptions options;
    options.sampler = {2, 4, 4, 9};
    Trainer<decltype(model)> trainer(model, data, mlvae_test::toy_keys(64), options);
    const auto engine = device::put_on(trainer, ctx);
    StepReport report;
    REQUIRE(trainer.step(report));
    CHECK(std::isfinite(report.terms.loss));
    CHECK(engine->step_count() == 1);
  });
  const auto refused = [](auto& trainer, auto& ctx, const std::string& family) {
    const Vector<float> before = trainer.model().parameters().values;
    std::string message;
    try {
      device::put_on(trainer, ctx);
    } catch (const ArgumentError& e) {
      message = e.what();
    }
    CAPTURE(message);
    CHECK(message.rfind("the device layer has no " + family + " yet: cpu runs the ML-VAE family and the VAE only",
                        0) == 0);
    CHECK(trainer.step_engine() == nullptr);
    typename std::decay_t<decltype(trainer)>::Report report;
    trainer.start_epoch();
    REQUIRE(trainer.step(report));  // still trains, on the CPU
    CHECK(trainer.model().parameters().values != before);
  };
  on_each([&](auto& ctx) {  // the β-VAE: accepted, and a step runs on the device
    auto vae = make_mlp_vae<float>(12, 16, 4);
    Rng init(2);
    vae.initialize(init);
    vae.set_kl_weight(4.0f);
    TrainerOptions options;
    options.sampler = {2, 4, 4, 9};
    Trainer<decltype(vae)> trainer(vae, data, mlvae_test::toy_keys(64), options);
    const auto engine = device::put_on(trainer, ctx);
    StepReport report;
    REQUIRE(trainer.step(report));
    CHECK(std::isfinite(report.terms.loss));
    CHECK(engine->step_count() == 1);
  });
  on_each([&](auto& ctx) {  // β-TCVAE / HFVAE (the KL decomposition): refused by name, the CPU trains on
    auto vae = make_mlp_vae<float>(12, 16, 4);
    Rng init(2);
    vae.initialize(init);
    KLDecompositionOptions tc;
    tc.weights.between_tc = 6;
    tc.dataset_size = 64;
    vae.set_kl_decomposition(tc);
    TrainerOptions options;
    options.sampler = {2, 4, 4, 9};
    Trainer<decltype(vae)> trainer(vae, data, mlvae_test::toy_keys(64), options);
    const Vector<float> before = trainer.model().parameters().values;
    CHECK_THROWS_WITH_AS(device::put_on(trainer, ctx),
                         mlvae_test::contains("the KL decomposition (beta-TCVAE / HFVAE, --model beta-tcvae | hfvae) "
                                              "is not supported on cpu"),
                         ArgumentError);
    CHECK(trainer.step_engine() == nullptr);
    StepReport report;
    REQUIRE(trainer.step(report));
    CHECK(trainer.model().parameters().values != before);
  });
  for (const auto objective : {SemiSupervisedObjective::Siddharth, SemiSupervisedObjective::M2}) {
    on_each([&](auto& ctx) {  // the semi-supervised model and M2
      SemiSupervisedOptions<float> o;
      o.objective = objective;
      auto model = make_mlp_semisupervised<float>(12, 16, 4, 3, o);
      Rng init(3);
      model.initialize(init);
      SemiSupervisedTrainerOptions options;
      options.sampler.labelled_per_batch = 4;
      options.sampler.unlabelled_per_batch = 8;
      std::vector<Index> labelled, unlabelled;
      std::vector<int> labels;
      for (Index i = 0; i < 64; ++i) {
        if (i < 16) {
          labelled.push_back(i);
          labels.push_back(static_cast<int>(i % 4));
        } else {
          unlabelled.push_back(i);
        }
      }
      SemiSupervisedTrainer<decltype(model)> trainer(model, data, labelled, labels, unlabelled, options);
      refused(trainer, ctx, objective == SemiSupervisedObjective::M2 ? "SemiSupervisedVAE/m2"
                                                                     : "SemiSupervisedVAE/siddharth");
    });
  }
}

TEST_CASE("device trainer: the training set uploaded once and each batch gathered on the device equals the staged batch") {
  const Matrix<float> data = mlvae_test::toy_data<float>(64, 4);
  TrainerOptions options;
  options.sampler = {3, 4, 4, 9};  // the last batch of an epoch is smaller
  auto train = [&](std::size_t resident_limit, bool& resident) {
    auto model = make_mlp_mlvae<float>(12, 16, 3, 3);
    Rng init(1);
    model.initialize(init);
    Trainer<decltype(model)> trainer(model, data, mlvae_test::toy_keys(64), options);
    DefaultContext ctx;
    const auto engine = device::put_on(trainer, ctx);
    engine->set_resident_limit(resident_limit);
    trainer.run_epoch();
    trainer.run_epoch();
    resident = engine->data_resident();
    trainer.sync_to_host();
    return Vector<float>(model.parameters().values);
  };
  bool resident = false, staged = true;
  const Vector<float> gathered = train(std::size_t{1} << 30, resident);
  const Vector<float> uploaded = train(0, staged);
  CHECK(resident);
  CHECK(!staged);
  CHECK(gathered == uploaded);  // the same batches, bit for bit

  // A batch index outside the data is refused, naming it.
  auto model = make_mlp_mlvae<float>(12, 16, 3, 3);
  DefaultContext ctx;
  device::DeviceMLVAE<decltype(model), DefaultContext> dev(ctx, model);
  device::DeviceArray<float, DefaultContext> on_device(ctx);
  on_device.upload(data);
  CHECK_THROWS_WITH_AS(dev.gather_batch(on_device, {0, 64}), mlvae_test::contains("column 64 outside the 64 columns"),
                       ShapeError);
}
