// Threading does not change results: products split the columns of their result and element-wise
// passes split columns, so training with a fixed seed gives bit-identical parameters with 1 and 2
// threads (docs/architecture.md, "Threading"); and the Gemm engine agrees with Eigen's product.
#include <doctest/doctest.h>

#include "mlvae/mlvae.hpp"

using namespace mlvae;

namespace {

template <typename MakeModel>
Vector<float> train_with_threads(int threads, MakeModel make, const LabelledImages<float>& data,
                                 const std::vector<int>& keys, GroupedSamplerOptions sampler, int steps) {
  set_threads(threads);
  auto model = make();
  Rng init(5);
  model.initialize(init);
  TrainerOptions options;
  options.sampler = sampler;
  Trainer<decltype(model)> trainer(model, data.images, keys, options);
  StepReport report;
  for (int i = 0; i < steps; ++i) REQUIRE(trainer.step(report));
  return model.parameters().values;
}

}  // namespace

TEST_CASE("threads: training gives bit-identical parameters with 1 and 2 threads") {
  const auto data = load_fashion_mnist<float>("train", fashion_mnist_default_dir(), 1024);
  SUBCASE("MLP ML-VAE of the paper") {
    auto make = [] { return make_mlp_mlvae<float>(); };
    const auto one = train_with_threads(1, make, data, data.labels, {16, 16, 16, 9}, 3);
    const auto two = train_with_threads(2, make, data, data.labels, {16, 16, 16, 9}, 3);
    CHECK(one.size() == two.size());
    CHECK(one == two);
  }
  SUBCASE("conv ML-VAE") {
    auto make = [] { return make_conv28_mlvae<float>(); };
    const auto one = train_with_threads(1, make, data, data.labels, {4, 8, 8, 9}, 2);
    const auto two = train_with_threads(2, make, data, data.labels, {4, 8, 8, 9}, 2);
    CHECK(one == two);
  }
  set_threads(1);
}

TEST_CASE("threads: Gemm agrees with Eigen's product for every transpose combination") {
  Rng rng(3);
  for (int threads : {1, 2}) {
    set_threads(threads);
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        const Index m = 67, n = 301, k = 129;  // odd sizes: remainders in every blocking direction
        Matrix<double> a(ta ? k : m, ta ? m : k), b(tb ? n : k, tb ? k : n), c(m, n);
        rng.fill_normal(a);
        rng.fill_normal(b);
        rng.fill_normal(c);
        const Matrix<double> opa = ta ? Matrix<double>(a.transpose()) : a;
        const Matrix<double> opb = tb ? Matrix<double>(b.transpose()) : b;
        const Matrix<double> expected_add = c + opa * opb;
        Gemm<double> gemm;
        gemm.run(ta ? Transpose::Yes : Transpose::No, tb ? Transpose::Yes : Transpose::No, a, b, c, true);
        CHECK((c - expected_add).cwiseAbs().maxCoeff() < 1e-10);
        gemm.run(ta ? Transpose::Yes : Transpose::No, tb ? Transpose::Yes : Transpose::No, a, b, c, false);
        CHECK((c - opa * opb).cwiseAbs().maxCoeff() < 1e-10);
      }
    Gemm<double> gemm;
    Matrix<double> a(3, 4), b(5, 6), c(3, 6);
    CHECK_THROWS_AS(gemm.run(Transpose::No, Transpose::No, a, b, c, false), ShapeError);
  }
  set_threads(1);
}

TEST_CASE("threads: tall and wide products give bit-identical results with 1 and 2 threads") {
  // Tall C (m >= 4n) is split by rows, others by columns; both splits must leave every element
  // computed exactly as on one thread, remainders included (m, n not multiples of GEBP's panels).
  Rng rng(5);
  struct Shape { Index m, n, k; };
  for (const Shape s : {Shape{1001, 37, 129}, Shape{4803, 32, 16}, Shape{97, 611, 70}, Shape{500, 256, 784}})
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        Matrix<float> a(ta ? s.k : s.m, ta ? s.m : s.k), b(tb ? s.n : s.k, tb ? s.k : s.n);
        rng.fill_normal(a);
        rng.fill_normal(b);
        Matrix<float> c1(s.m, s.n), c2(s.m, s.n);
        rng.fill_normal(c1);
        c2 = c1;
        const Transpose opa = ta ? Transpose::Yes : Transpose::No, opb = tb ? Transpose::Yes : Transpose::No;
        Gemm<float> one, two;
        set_threads(1);
        one.run(opa, opb, a, b, c1, true);
        set_threads(2);
        two.run(opa, opb, a, b, c2, true);
        INFO("m=", s.m, " n=", s.n, " k=", s.k, " ta=", ta, " tb=", tb);
        CHECK(c1 == c2);
        const Matrix<float> expected = (ta ? Matrix<float>(a.transpose()) : a) * (tb ? Matrix<float>(b.transpose()) : b);
        set_threads(2);
        two.run(opa, opb, a, b, c2, false);
        CHECK((c2 - expected).cwiseAbs().maxCoeff() < 1e-3f * static_cast<float>(s.k));
      }
  set_threads(1);
}
