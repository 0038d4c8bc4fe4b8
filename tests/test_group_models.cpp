// The related group models on the ML-VAE machinery (issue 16): GVAE (mean aggregation), Ada-ML-VAE /
// Ada-GVAE (shared dimensions per pair by the KL threshold), one content sample per observation, and the
// reverse-cycle loss — each complete loss checked against finite differences in double precision.
#include <doctest/doctest.h>

#include "support.hpp"

#include "mlvae/model/architectures.hpp"
#include "mlvae/model/content_path.hpp"
#include "mlvae/nn/gradient_check.hpp"

using namespace mlvae;
using Mat = Matrix<double>;
using Vec = Vector<double>;

namespace {

Mat uniform_data(Index rows, Index cols, std::uint64_t seed) {
  Rng rng(seed);
  Mat x(rows, cols);
  for (Index j = 0; j < cols; ++j)
    for (Index i = 0; i < rows; ++i) x(i, j) = rng.uniform();
  return x;
}

MLVAEOptions<double> with_content(ContentAggregation aggregation, bool adaptive, bool per_observation) {
  MLVAEOptions<double> o;
  o.style_kl_weight = 2.0;  // β_s ≠ 1 on every variant
  o.content.aggregation = aggregation;
  o.content.adaptive = adaptive;
  o.content.sample_per_observation = per_observation;
  return o;
}

}  // namespace

TEST_CASE("group mean posterior: values and gradient") {
  Mat mean(2, 3), logvar(2, 3);
  mean << 1, 2, 6, -1, 0, 4;
  logvar << 0, std::log(3.0), -1, 0.5, 0.5, 0.5;
  const std::vector<Index> offsets{0, 2, 3};
  Mat gm, gl;
  group_mean_posterior(mean, logvar, offsets, gm, gl);
  CHECK(gm(0, 0) == doctest::Approx(1.5));
  CHECK(gl(0, 0) == doctest::Approx(std::log(2.0)));  // (1 + 3) / 2
  CHECK(gm(1, 1) == doctest::Approx(4.0));
  CHECK(gl(0, 1) == doctest::Approx(-1.0));

  Rng rng(3);
  Mat wm(2, 2), wl(2, 2);
  rng.fill_normal(wm);
  rng.fill_normal(wl);
  Vec params(12);
  params << Eigen::Map<const Vec>(mean.data(), 6), Eigen::Map<const Vec>(logvar.data(), 6);
  auto loss = [&] {
    const Mat m = Eigen::Map<const Mat>(params.data(), 2, 3), l = Eigen::Map<const Mat>(params.data() + 6, 2, 3);
    Mat a, b;
    group_mean_posterior(m, l, offsets, a, b);
    return (a.array() * wm.array()).sum() + (b.array() * wl.array()).sum();
  };
  Mat dm = Mat::Zero(2, 3), dl = Mat::Zero(2, 3);
  group_mean_posterior_backward(logvar, offsets, gl, wm, wl, dm, dl);
  Vec analytic(12);
  analytic << Eigen::Map<const Vec>(dm.data(), 6), Eigen::Map<const Vec>(dl.data(), 6);
  const auto result = check_gradient(loss, params, analytic);
  INFO(result.report());
  CHECK(result.passed);
}

TEST_CASE("Ada threshold shares the dimensions on which a pair agrees") {
  Mat mean = Mat::Zero(4, 4), logvar = Mat::Zero(4, 4);
  mean(2, 1) = 3.0;   // pair 0 disagrees on dimension 2
  mean(0, 3) = -2.0;  // pair 1 on dimension 0
  mean(3, 3) = 2.5;   // and on dimension 3
  ContentPath<double> path;
  ContentPathOptions o;
  o.adaptive = true;
  Rng rng(1);
  Mat z(4, 4), eps(4, 4), kl(1, 4);
  rng.fill_normal(eps);  // Ada reads one noise column per observation
  const auto forward = [&](const std::vector<Index>& offsets) {
    path.forward({mean.data(), 4}, {logvar.data(), 4}, 4, offsets, o, eps.data(), z.data(), 4, kl.data());
  };
  forward({0, 2, 4});
  Mat expected(4, 2);
  expected << 1, 0, 1, 1, 0, 1, 1, 0;
  CHECK(path.shared() == expected);
  // Shared dimensions of a pair get one sample; unshared ones one per member.
  CHECK(z(0, 0) == z(0, 1));
  CHECK(z(2, 0) != z(2, 1));
  CHECK_THROWS_WITH_AS(forward({0, 3, 4}), mlvae_test::contains("must be a pair"), ArgumentError);
  // A lone observation (a key's leftover) is a group of one: its content is its own estimate.
  forward({0, 2, 3, 4});
  CHECK(path.shared().col(1).minCoeff() == 1.0);
  CHECK(path.group_mean().col(1) == mean.col(2));
}

TEST_CASE("one content sample per observation draws different samples within a group") {
  auto model = make_mlp_mlvae<double>(12, 7, 3, 2,
                                      with_content(ContentAggregation::Product, false, true));
  Rng init(1);
  model.initialize(init);
  const Mat x = uniform_data(12, 6, 11);
  Rng noise(4);
  const LossTerms per_obs = model.evaluate(x, {0, 3, 4, 6}, noise);
  model.options().content.sample_per_observation = false;
  Rng noise2(4);
  const LossTerms per_group = model.evaluate(x, {0, 3, 4, 6}, noise2);
  // Same posterior, hence the same KLs; different samples, hence a different reconstruction estimate.
  CHECK(per_obs.content_kl == doctest::Approx(per_group.content_kl));
  CHECK(per_obs.style_kl == doctest::Approx(per_group.style_kl));
  CHECK(per_obs.reconstruction != doctest::Approx(per_group.reconstruction));
}

TEST_CASE("gradient check: ML-VAE GVAE Ada-ML-VAE and Ada-GVAE complete losses") {
  const Index input = 12, hidden = 7, style = 3, content = 4;
  const Mat x = uniform_data(input, 6, 11);
  struct Variant {
    const char* name;
    ContentAggregation aggregation;
    bool adaptive, per_observation;
  };
  for (const Variant& v : {Variant{"ML-VAE per observation", ContentAggregation::Product, false, true},
                           Variant{"GVAE per group", ContentAggregation::Mean, false, false},
                           Variant{"GVAE per observation", ContentAggregation::Mean, false, true},
                           Variant{"Ada-ML-VAE", ContentAggregation::Product, true, false},
                           Variant{"Ada-GVAE", ContentAggregation::Mean, true, false},
                           Variant{"Ada-GVAE per observation", ContentAggregation::Mean, true, true}}) {
    CAPTURE(v.name);
    const std::vector<Index> offsets =
        v.adaptive ? std::vector<Index>{0, 2, 4, 6} : std::vector<Index>{0, 3, 4, 6};
    auto model = make_mlp_mlvae<double>(input, hidden, style, content,
                                        with_content(v.aggregation, v.adaptive, v.per_observation));
    Rng init(7);
    model.initialize(init);
    const auto [result, analytic] = mlvae_test::check_model_gradient(model, Rng(99), x, offsets);
    INFO(result.report());
    CHECK(result.passed);
    const Index content_head_begin = model.trunk().parameter_count() + model.style_head().parameter_count();
    CHECK(analytic.segment(content_head_begin, model.content_head().parameter_count()).cwiseAbs().maxCoeff() > 1e-6);
  }
}

TEST_CASE("gradient check: reverse-cycle loss updates the encoder through the decoder") {
  const Index input = 12, hidden = 7, style = 3, content = 2;
  const Mat x = uniform_data(input, 6, 12);
  const std::vector<Index> offsets{0, 3, 4, 6};
  MLVAEOptions<double> o;
  o.cycle_weight = 5.0;
  auto model = make_mlp_mlvae<double>(input, hidden, style, content, o);
  Rng init(8);
  model.initialize(init);
  const Rng noise(21);
  Rng r = noise;
  const LossTerms with_cycle = model.forward_backward(x, offsets, r);
  const Vec analytic = model.parameters().gradients;
  const Index decoder = model.decoder().parameter_count(), encoder = model.parameters().size() - decoder;
  // The cycle term is there (the loss exceeds the negative weighted ELBO).
  CHECK(with_cycle.loss > -with_cycle.elbo_per_group + 1e-9);

  // Encoder parameters: the full loss, cycle included.
  auto full = [&] {
    Rng n = noise;
    return model.evaluate(x, offsets, n).loss;
  };
  const auto enc = check_gradient(full, model.parameters().values.head(encoder), analytic.head(encoder));
  INFO(enc.report());
  CHECK(enc.passed);
  // Decoder parameters: the loss without the cycle term (it does not train the decoder).
  auto without = [&] {
    model.options().cycle_weight = 0.0;
    Rng n = noise;
    const double l = model.evaluate(x, offsets, n).loss;
    model.options().cycle_weight = 5.0;
    return l;
  };
  const auto dec = check_gradient(without, model.parameters().values.tail(decoder), analytic.tail(decoder));
  INFO(dec.report());
  CHECK(dec.passed);
  // And the cycle term does move the encoder's gradient.
  model.options().cycle_weight = 0.0;
  Rng r2 = noise;
  model.forward_backward(x, offsets, r2);
  CHECK((model.parameters().gradients.head(encoder) - analytic.head(encoder)).cwiseAbs().maxCoeff() > 1e-6);
}

TEST_CASE("reverse-cycle loss refuses non-Bernoulli likelihoods") {
  MLVAEOptions<double> o;
  o.cycle_weight = 1.0;
  auto model = make_mlp_mlvae_with<double>(12, 5, 2, 2, GaussianLikelihood<double>(1.0), o);
  Rng init(1);
  model.initialize(init);
  Rng r(2);
  CHECK_THROWS_WITH_AS(model.evaluate(uniform_data(12, 4, 1), {0, 2, 4}, r), mlvae_test::contains("Bernoulli"),
                       ArgumentError);
}
