// Finite-difference gradient checks (double precision) of every layer, distribution term, and the
// complete ML-VAE and VAE losses, all through the one checker in mlvae/nn/gradient_check.hpp.
#include <doctest/doctest.h>

#include "support.hpp"

#include "mlvae/dist/gaussian.hpp"
#include "mlvae/dist/group_posterior.hpp"
#include "mlvae/dist/likelihood.hpp"
#include "mlvae/model/architectures.hpp"
#include "mlvae/nn/activations.hpp"
#include "mlvae/nn/dense.hpp"
#include "mlvae/nn/gradient_check.hpp"
#include "mlvae/nn/sequential.hpp"
#include "mlvae/core/threads.hpp"

using namespace mlvae;
using Mat = Matrix<double>;
using Vec = Vector<double>;

namespace {

Vec flatten(const Mat& m) { return Eigen::Map<const Vec>(m.data(), m.size()); }

template <typename Layer>
void check_layer(Layer layer, const Mat* input = nullptr) {
  Rng rng(42);
  const auto result = check_layer_gradients(layer, 5, rng, {}, input);
  INFO(layer.describe(), " parameters: ", result.parameters.report());
  INFO(layer.describe(), " input: ", result.input.report());
  CHECK(result.passed());
}

// Checks gradients of a scalar function of one matrix argument.
template <typename F>
GradientCheckResult check_matrix_function(F&& f, Mat& x, const Mat& analytic) {
  Eigen::Map<Vec> flat(x.data(), x.size());
  return check_gradient([&] { return f(); }, flat, flatten(analytic));
}

}  // namespace

TEST_CASE("gradient check: dense layer") {
  check_layer(Dense<double>(7, 4));
  check_layer(Dense<double>(3, 9, Init::HeNormal));
}

TEST_CASE("stacked dense heads equal the two layers run one after the other") {
  // StackedDense (the ML-VAE's style + content heads as one product): same output, same dW, db and dx.
  Rng rng(3);
  Dense<double> a(6, 4), b(6, 2);
  ParameterStore<double> store;
  bind_layers(store, a, b);
  a.initialize(rng);
  b.initialize(rng);
  Mat x(6, 5), dy(6, 5);
  rng.fill_normal(x);
  rng.fill_normal(dy);
  StackedDense<double> stacked;
  const Mat y = stacked.forward(a, b, x);
  store.zero_gradients();
  const Mat dx = stacked.backward(a, b, dy);
  const Vec grads = store.gradients;
  store.zero_gradients();
  CHECK((y.topRows(4) - a.forward(x)).cwiseAbs().maxCoeff() <= 1e-12);
  CHECK((y.bottomRows(2) - b.forward(x)).cwiseAbs().maxCoeff() <= 1e-12);
  Mat dx_separate = a.backward(dy.topRows(4));
  dx_separate += b.backward(dy.bottomRows(2));
  CHECK((dx - dx_separate).cwiseAbs().maxCoeff() <= 1e-12);
  CHECK((grads - store.gradients).cwiseAbs().maxCoeff() <= 1e-12);
  CHECK(grads.cwiseAbs().minCoeff() > 0);
}

namespace {
// Sequential<Dense, A> runs Dense::forward_activation / backward_activation (bias and f in one pass,
// f' and db in one pass); compared with the two layers run one after the other, over several
// thread counts, and through finite differences as a layer of its own.
template <typename Act>
void check_fused_dense(Act fused_act, Act act) {
  static_assert(detail::fuses_with_v<Dense<double>, Act>, "Dense fuses this activation");
  Rng rng(21);
  Sequential<Dense<double>, Act> fused(Dense<double>(300, 200), fused_act);  // large enough for 2 threads
  Dense<double> dense(300, 200);
  ParameterStore<double> sf, su;
  bind_layers(sf, fused);
  bind_layers(su, dense);
  fused.initialize(rng);
  rng.fill_normal(sf.values);  // a nonzero bias too
  su.values = sf.values;
  Mat x(300, 130), dy(200, 130);
  rng.fill_normal(x);
  rng.fill_normal(dy);
  const int threads_before = Eigen::nbThreads();
  for (const int threads : {1, 2}) {
    set_threads(threads);
    sf.zero_gradients();
    su.zero_gradients();
    const Mat yf = fused.forward(x);
    const Mat& yu = act.forward(dense.forward(x));
    CHECK((yf - yu).cwiseAbs().maxCoeff() <= 1e-12 * (1 + yu.cwiseAbs().maxCoeff()));
    CHECK(fused.output().data() == fused.template layer<1>().output().data());
    const Mat dxf = fused.backward(dy);
    const Mat& dxu = dense.backward(act.backward(dy));
    CHECK((dxf - dxu).cwiseAbs().maxCoeff() <= 1e-12 * (1 + dxu.cwiseAbs().maxCoeff()));
    CHECK((sf.gradients - su.gradients).cwiseAbs().maxCoeff() <= 1e-12 * (1 + su.gradients.cwiseAbs().maxCoeff()));
  }
  set_threads(threads_before);
  Sequential<Dense<double>, Act> small(Dense<double>(5, 4), Act(4));
  check_layer(small);
}
}  // namespace

TEST_CASE("Dense fused with a following activation equals the two layers run one after the other") {
  check_fused_dense(Tanh<double>(200), Tanh<double>(200));
  check_fused_dense(Sigmoid<double>(200), Sigmoid<double>(200));
  check_fused_dense(Relu<double>(200), Relu<double>(200));
  check_fused_dense(Identity<double>(200), Identity<double>(200));
  // Activations whose derivative needs the input are not fused.
  static_assert(!detail::fuses_with_v<Dense<double>, Softplus<double>>);
  static_assert(!detail::fuses_with_v<Dense<double>, LeakyRelu<double>>);
}

TEST_CASE("gradient check: activations") {
  check_layer(Identity<double>(6));
  check_layer(Tanh<double>(6));
  check_layer(Sigmoid<double>(6));
  check_layer(Softplus<double>(6));
  // Keep ReLU inputs away from the kink at 0, where the derivative does not exist.
  Rng rng(3);
  Mat x(6, 5);
  rng.fill_normal(x);
  x.array() += x.array().sign() * 0.05;
  check_layer(Relu<double>(6), &x);
  check_layer(LeakyRelu<double>(6, 0.2), &x);
}

TEST_CASE("gradient check: sequential stack") {
  check_layer(Sequential<Dense<double>, Tanh<double>, Dense<double>, Softplus<double>>(
      Dense<double>(5, 8), Tanh<double>(8), Dense<double>(8, 3), Softplus<double>(3)));
}

TEST_CASE("the gradient checker catches a wrong factor and a wrong sign") {
  Vec x(3);
  x << 0.3, -1.2, 2.0;
  auto f = [&] { return x.squaredNorm(); };
  CHECK(check_gradient(f, x, Vec(2 * x)).passed);
  CHECK_FALSE(check_gradient(f, x, Vec(x)).passed);       // missing factor 2
  CHECK_FALSE(check_gradient(f, x, Vec(-2 * x)).passed);  // wrong sign
  CHECK_FALSE(check_gradient(f, x, Vec(2.0001 * x)).passed);  // 5e-5 relative error
}

TEST_CASE("gradient check: KL to the standard normal") {
  Rng rng(7);
  Mat mean(4, 3), logvar(4, 3);
  rng.fill_normal(mean);
  rng.fill_normal(logvar);
  const double weight = 0.7;
  RowVector<double> kl;
  auto loss = [&] {
    kl_to_standard_normal<double>(mean, logvar, kl);
    return weight * kl.sum();
  };
  Mat dmean = Mat::Zero(4, 3), dlogvar = Mat::Zero(4, 3);
  kl_to_standard_normal_backward(mean, logvar, weight, dmean, dlogvar);
  CHECK(check_matrix_function(loss, mean, dmean).passed);
  CHECK(check_matrix_function(loss, logvar, dlogvar).passed);

  // Closed form: KL(N(μ, σ²) ‖ N(0, 1)) = ½(μ² + σ² − 1 − log σ²), and zero at the prior.
  Mat m(1, 2), lv(1, 2);
  m << 0.0, 1.5;
  lv << 0.0, std::log(0.25);
  kl_to_standard_normal<double>(m, lv, kl);
  CHECK(kl(0) == doctest::Approx(0.0));
  CHECK(kl(1) == doctest::Approx(0.5 * (2.25 + 0.25 - 1 - std::log(0.25))));
}

TEST_CASE("gradient check: reparameterisation") {
  Rng rng(8);
  Mat mean(3, 4), logvar(3, 4), eps(3, 4), weights(3, 4), z(3, 4);
  rng.fill_normal(mean);
  rng.fill_normal(logvar);
  rng.fill_normal(eps);
  rng.fill_normal(weights);
  auto loss = [&] {
    reparameterize(mean, logvar, eps, z);
    return (z.array() * weights.array()).sum();
  };
  Mat dmean = Mat::Zero(3, 4), dlogvar = Mat::Zero(3, 4);
  reparameterize_backward(logvar, eps, weights, dmean, dlogvar);
  CHECK(check_matrix_function(loss, mean, dmean).passed);
  CHECK(check_matrix_function(loss, logvar, dlogvar).passed);
}

TEST_CASE("gradient check: likelihoods") {
  Rng rng(9);
  Mat x(5, 4), out(5, 4);
  for (Index j = 0; j < x.cols(); ++j)
    for (Index i = 0; i < x.rows(); ++i) x(i, j) = rng.uniform();
  rng.fill_normal(out);
  out *= 3.0;  // logits of both signs and some size
  RowVector<double> ll;
  const double w = -0.4;
  Mat grad;

  SUBCASE("Bernoulli with logits") {
    BernoulliLikelihood<double> lik;
    auto loss = [&] {
      lik.log_likelihood(x, out, ll);
      return w * ll.sum();
    };
    lik.gradient(x, out, w, grad);
    CHECK(check_matrix_function(loss, out, grad).passed);
    // Stable at extreme logits and equal to the naive form where that is finite.
    Mat big(1, 2), xb(1, 2);
    big << 800.0, -800.0;
    xb << 1.0, 0.0;
    lik.log_likelihood(xb, big, ll);
    CHECK(std::isfinite(ll(0)));
    CHECK(ll.sum() == doctest::Approx(0.0));
    Mat l1(1, 1), x1(1, 1);
    l1 << 0.3;
    x1 << 0.25;
    lik.log_likelihood(x1, l1, ll);
    const double p = 1 / (1 + std::exp(-0.3));
    CHECK(ll(0) == doctest::Approx(0.25 * std::log(p) + 0.75 * std::log(1 - p)));
  }
  SUBCASE("Bernoulli fused log-likelihood and gradient") {
    // The one-pass kernel the training step uses: its log-likelihood equals the separate pass and its
    // gradient passes the finite-difference check on its own (logits of both signs, incl. ±800).
    BernoulliLikelihood<double> lik;
    Mat xs = x, ls = out;
    ls(0, 0) = 800.0;
    ls(1, 0) = -800.0;
    RowVector<double> fused_ll, separate_ll;
    Mat fused_grad;
    lik.log_likelihood_and_gradient(xs, ls, w, fused_ll, fused_grad);
    lik.log_likelihood(xs, ls, separate_ll);
    CHECK((fused_ll - separate_ll).cwiseAbs().maxCoeff() <= 1e-12);
    CHECK(std::isfinite(fused_ll.sum()));
    auto loss = [&] {
      lik.log_likelihood(xs, out, ll);
      return w * ll.sum();
    };
    lik.log_likelihood_and_gradient(xs, out, w, fused_ll, fused_grad);
    CHECK(check_matrix_function(loss, out, fused_grad).passed);
    // The dispatcher picks the fused kernel for Bernoulli and the two passes for a Gaussian.
    Mat g2;
    log_likelihood_and_gradient(lik, xs, out, w, separate_ll, g2);
    CHECK((g2 - fused_grad).cwiseAbs().maxCoeff() == 0.0);
    GaussianLikelihood<double> gauss(0.3);
    log_likelihood_and_gradient(gauss, xs, out, w, separate_ll, g2);
    gauss.gradient(xs, out, w, fused_grad);
    CHECK((g2 - fused_grad).cwiseAbs().maxCoeff() == 0.0);
  }
  SUBCASE("Gaussian, fixed variance") {
    GaussianLikelihood<double> lik(0.3);
    auto loss = [&] {
      lik.log_likelihood(x, out, ll);
      return w * ll.sum();
    };
    lik.gradient(x, out, w, grad);
    CHECK(check_matrix_function(loss, out, grad).passed);
  }
  SUBCASE("Gaussian, learned variance") {
    GaussianLearnedVarianceLikelihood<double> lik;
    Mat out2(10, 4);
    rng.fill_normal(out2);
    auto loss = [&] {
      lik.log_likelihood(x, out2, ll);
      return w * ll.sum();
    };
    lik.gradient(x, out2, w, grad);
    CHECK(check_matrix_function(loss, out2, grad).passed);
    // Matches the normal density when the variance rows say log σ² = log 0.3.
    GaussianLikelihood<double> fixed(0.3);
    Mat out3(10, 4);
    out3.topRows(5) = out;
    out3.bottomRows(5).setConstant(std::log(0.3));
    RowVector<double> a, b;
    lik.log_likelihood(x, out3, a);
    fixed.log_likelihood(x, out, b);
    CHECK((a - b).cwiseAbs().maxCoeff() < 1e-12);
  }
}

TEST_CASE("gradient check: product-of-Gaussians group posterior") {
  Rng rng(10);
  const std::vector<Index> offsets{0, 3, 4, 6};  // groups of 3, 1 and 2
  Mat mean(2, 6), logvar(2, 6), wm(2, 3), wl(2, 3);
  rng.fill_normal(mean);
  rng.fill_normal(logvar);
  rng.fill_normal(wm);
  rng.fill_normal(wl);
  Mat gm, gl;
  auto loss = [&] {
    group_posterior(mean, logvar, offsets, gm, gl);
    return (gm.array() * wm.array()).sum() + (gl.array() * wl.array()).sum();
  };
  loss();
  Mat dmean = Mat::Zero(2, 6), dlogvar = Mat::Zero(2, 6);
  group_posterior_backward(mean, logvar, offsets, gm, gl, wm, wl, dmean, dlogvar);
  const auto r1 = check_matrix_function(loss, mean, dmean);
  const auto r2 = check_matrix_function(loss, logvar, dlogvar);
  INFO(r1.report(), " / ", r2.report());
  CHECK(r1.passed);
  CHECK(r2.passed);

  // Precision weighting by hand for the first group, first dimension.
  group_posterior(mean, logvar, offsets, gm, gl);
  double lambda = 0, weighted = 0;
  for (Index i = 0; i < 3; ++i) {
    lambda += std::exp(-logvar(0, i));
    weighted += std::exp(-logvar(0, i)) * mean(0, i);
  }
  CHECK(gl(0, 0) == doctest::Approx(-std::log(lambda)));
  CHECK(gm(0, 0) == doctest::Approx(weighted / lambda));
  // A group of one is that member's own Gaussian.
  CHECK(gm(1, 1) == doctest::Approx(mean(1, 3)));
  CHECK(gl(1, 1) == doctest::Approx(logvar(1, 3)));
}

TEST_CASE("gradient check: complete ML-VAE loss with respect to every parameter") {
  const Index input = 12, hidden = 7, style = 3, content = 2;
  const std::vector<Index> offsets{0, 3, 4, 6};  // variable group sizes
  Rng data_rng(11);
  Mat x(input, 6);
  for (Index j = 0; j < x.cols(); ++j)
    for (Index i = 0; i < x.rows(); ++i) x(i, j) = data_rng.uniform();

  SUBCASE("MLP, Bernoulli likelihood, unit KL weights") {
    auto model = make_mlp_mlvae<double>(input, hidden, style, content);
    Rng init(1);
    model.initialize(init);
    const auto [result, analytic] = mlvae_test::check_model_gradient(model, Rng(99), x, offsets);
    INFO(result.report());
    CHECK(result.passed);
    CHECK(result.checked == model.parameters().size());
    // Every parameter group (incl. the content head) receives gradient.
    CHECK(analytic.cwiseAbs().maxCoeff() > 0);
    const Index content_head_begin = model.trunk().parameter_count() + model.style_head().parameter_count();
    CHECK(analytic.segment(content_head_begin, model.content_head().parameter_count()).cwiseAbs().maxCoeff() > 1e-6);
  }
  SUBCASE("heads that are not one Dense layer each (the unstacked path)") {
    using Head = Sequential<Dense<double>, Tanh<double>>;
    using Model = MLVAE<double, MlpTrunk<double>, Head, Head, MlpDecoder<double>>;
    Model model(MlpTrunk<double>(Dense<double>(input, hidden), Tanh<double>(hidden)),
                Head(Dense<double>(hidden, 2 * style), Tanh<double>(2 * style)),
                Head(Dense<double>(hidden, 2 * content), Tanh<double>(2 * content)),
                MlpDecoder<double>(Dense<double>(style + content, hidden), Tanh<double>(hidden),
                                   Dense<double>(hidden, input)));
    Rng init(3);
    model.initialize(init);
    const auto [result, analytic] = mlvae_test::check_model_gradient(model, Rng(7), x, offsets);
    INFO(result.report());
    CHECK(result.passed);
  }
  SUBCASE("learned-variance Gaussian likelihood and KL weights") {
    using Model = MLVAE<double, MlpTrunk<double>, MlpHead<double>, MlpHead<double>, MlpDecoder<double>,
                        GaussianLearnedVarianceLikelihood<double>>;
    Model model(MlpTrunk<double>(Dense<double>(input, hidden), Tanh<double>(hidden)),
                MlpHead<double>(Dense<double>(hidden, 2 * style)), MlpHead<double>(Dense<double>(hidden, 2 * content)),
                MlpDecoder<double>(Dense<double>(style + content, hidden), Tanh<double>(hidden),
                                   Dense<double>(hidden, 2 * input)),
                {}, MLVAEOptions<double>{0.5, 2.0});
    Rng init(2);
    model.initialize(init);
    const auto [result, analytic] = mlvae_test::check_model_gradient(model, Rng(5), x, offsets);
    INFO(result.report());
    CHECK(result.passed);
  }
}

TEST_CASE("gradient check: complete VAE loss") {
  auto model = make_mlp_vae<double>(10, 6, 3);
  Rng init(4);
  model.initialize(init);
  Mat x(10, 5);
  for (Index j = 0; j < x.cols(); ++j)
    for (Index i = 0; i < x.rows(); ++i) x(i, j) = init.uniform();
  const auto [result, analytic] = mlvae_test::check_model_gradient(model, Rng(6), x);
  INFO(result.report());
  CHECK(result.passed);
}
