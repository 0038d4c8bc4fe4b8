// The optional bfloat16-input / float32-accumulate products (nn/gemm_bf16.hpp): rounding to
// bfloat16, the AMX kernel against a double reference of the rounded operands for every transpose
// combination and awkward sizes, thread-count independence, a whole ML-VAE step against float32,
// and the errors when bf16 is selected for double or on a CPU without AMX-BF16. The kernel tests
// skip (with a message) on CPUs without AMX-BF16, so they pass on any CI machine.
#include <doctest/doctest.h>

#include "mlvae/mlvae.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

using namespace mlvae;

namespace {

bool skip_without_amx() {
  if (bfloat16_available()) return false;
  MESSAGE("skipped: ", detail::bf16_support().missing);
  return true;
}

float bits_to_float(std::uint32_t bits) {
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

// One product C = op(A)·op(B) (+ C) through Gemm<float> in BFloat16 with leading dimensions
// `pad` larger than the rows, checked against a double reference of the bf16-rounded operands.
// Returns the largest error relative to the float32-accumulation bound.
double check_product(Gemm<float>& gemm, bool ta, bool tb, Index m, Index n, Index k, bool accumulate, Index pad,
                     Rng& rng) {
  const Index a_rows = ta ? k : m, a_cols = ta ? m : k, b_rows = tb ? n : k, b_cols = tb ? k : n;
  const Index lda = a_rows + pad, ldb = b_rows + pad, ldc = m + pad;
  Matrix<float> a(lda, a_cols), b(ldb, b_cols), c(ldc, n);
  rng.fill_normal(a);
  rng.fill_normal(b);
  rng.fill_normal(c);
  const Matrix<float> c0 = c;
  gemm.run(ta ? Transpose::Yes : Transpose::No, tb ? Transpose::Yes : Transpose::No, m, n, k, a.data(), lda,
           b.data(), ldb, c.data(), ldc, accumulate);
  auto op_a = [&](Index i, Index kk) { return static_cast<double>(round_to_bfloat16(ta ? a(kk, i) : a(i, kk))); };
  auto op_b = [&](Index kk, Index j) { return static_cast<double>(round_to_bfloat16(tb ? b(j, kk) : b(kk, j))); };
  double worst = 0;
  const double unit = std::ldexp(1.0, -24);  // float32 unit roundoff
  for (Index j = 0; j < n; ++j)
    for (Index i = 0; i < m; ++i) {
      double sum = accumulate ? c0(i, j) : 0.0, magnitude = accumulate ? std::abs(c0(i, j)) : 0.0;
      for (Index kk = 0; kk < k; ++kk) {
        sum += op_a(i, kk) * op_b(kk, j);
        magnitude += std::abs(op_a(i, kk) * op_b(kk, j));
      }
      const double bound = 2.0 * static_cast<double>(k + 2) * unit * magnitude + 1e-30;
      worst = std::max(worst, std::abs(static_cast<double>(c(i, j)) - sum) / bound);
    }
  // The padding rows of C are untouched.
  for (Index j = 0; j < n; ++j)
    for (Index i = m; i < ldc; ++i) REQUIRE(c(i, j) == c0(i, j));
  return worst;
}

}  // namespace

TEST_CASE("bf16: rounding to bfloat16 is to nearest even and exact on bfloat16 values") {
  CHECK(to_bfloat16(1.0f) == 0x3f80);
  CHECK(to_bfloat16(-2.0f) == 0xc000);
  CHECK(to_bfloat16(0.0f) == 0x0000);
  CHECK(to_bfloat16(-0.0f) == 0x8000);
  // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
  CHECK(to_bfloat16(1.0f + std::ldexp(1.0f, -8)) == 0x3f80);
  // 1 + 3·2^-8 lies halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even): up.
  CHECK(to_bfloat16(1.0f + 3 * std::ldexp(1.0f, -8)) == 0x3f82);
  // Just above a tie rounds up, just below rounds down.
  CHECK(to_bfloat16(bits_to_float(0x3f808001u)) == 0x3f81);
  CHECK(to_bfloat16(bits_to_float(0x3f807fffu)) == 0x3f80);
  // Every finite bfloat16 value (subnormals aside) is exact.
  for (std::uint32_t h = 0; h < 0x10000u; ++h) {
    const auto bf = static_cast<std::uint16_t>(h);
    const bool nan = (h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0;
    const bool subnormal = (h & 0x7f80u) == 0 && (h & 0x7fu) != 0;
    if (nan || subnormal) continue;
    REQUIRE(to_bfloat16(from_bfloat16(bf)) == bf);
  }
  // Infinities stay, NaN stays NaN (quiet), overflow goes to infinity, subnormals to signed zero.
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(to_bfloat16(inf) == 0x7f80);
  CHECK(to_bfloat16(-inf) == 0xff80);
  CHECK(std::isnan(round_to_bfloat16(std::numeric_limits<float>::quiet_NaN())));
  CHECK(std::isnan(round_to_bfloat16(bits_to_float(0x7f800001u))));  // a signalling NaN whose payload is low bits
  CHECK(std::isinf(round_to_bfloat16(std::numeric_limits<float>::max())));
  CHECK(to_bfloat16(std::numeric_limits<float>::denorm_min()) == 0x0000);
  CHECK(to_bfloat16(-std::numeric_limits<float>::denorm_min()) == 0x8000);
  CHECK(round_to_bfloat16(3.14159265f) == 3.140625f);
}

#if MLVAE_BF16_AMX
TEST_CASE("bf16: the vector conversion of the kernel equals to_bfloat16") {
  if (skip_without_amx()) return;
  Rng rng(11);
  std::vector<float> x(4096);
  std::vector<std::uint16_t> got(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    std::uint32_t bits = static_cast<std::uint32_t>(rng() >> 32);
    if (i % 8 == 1) bits &= 0x807fffffu;  // subnormals and zeros
    if (i % 8 == 2) bits |= 0x7f800000u;  // infinities and NaNs
    if (i % 8 == 3) bits = (bits & 0xffff0000u) | 0x8000u;  // exact ties
    x[i] = bits_to_float(bits);
  }
  detail::bf16_convert_vector(x.data(), got.data(), static_cast<Index>(x.size()));
  for (std::size_t i = 0; i < x.size(); ++i) {
    const std::uint16_t want = to_bfloat16(x[i]);
    if (std::isnan(x[i])) {
      REQUIRE(std::isnan(from_bfloat16(got[i])));
      continue;
    }
    INFO("input bits ", std::hex, [&] { std::uint32_t b; std::memcpy(&b, &x[i], 4); return b; }());
    REQUIRE(got[i] == want);
  }
}
#endif

TEST_CASE("bf16: products equal a double reference of the rounded operands") {
  if (skip_without_amx()) return;
  Rng rng(7);
  Gemm<float> gemm;
  gemm.set_precision(Precision::BFloat16);
  CHECK(gemm.precision() == Precision::BFloat16);
  struct Shape {
    Index m, n, k;
  };
  const Shape shapes[] = {{1, 1, 1},    {3, 5, 1},     {16, 16, 32},  {17, 33, 31}, {32, 32, 64},
                          {20, 256, 500}, {67, 301, 129}, {200, 130, 784}, {5, 3, 1000}};
  for (const Shape& s : shapes)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (int acc = 0; acc < 2; ++acc)
          for (Index pad : {Index{0}, Index{3}}) {
            INFO("m=", s.m, " n=", s.n, " k=", s.k, " ta=", ta, " tb=", tb, " accumulate=", acc, " pad=", pad);
            CHECK(check_product(gemm, ta, tb, s.m, s.n, s.k, acc, pad, rng) <= 1.0);
          }
  // The operands really are rounded: 1 + 2^-10 is 1 in bfloat16, so (1 + 2^-10)² gives exactly 1.
  Matrix<float> a = Matrix<float>::Constant(1, 1, 1.0f + std::ldexp(1.0f, -10)), c(1, 1);
  gemm.run(Transpose::No, Transpose::No, a, a, c, false);
  CHECK(c(0, 0) == 1.0f);
  // k = 0 and empty shapes follow the float path's rules.
  Matrix<float> e(3, 0), f(0, 4), g = Matrix<float>::Constant(3, 4, 2.0f);
  gemm.run(Transpose::No, Transpose::No, e, f, g, true);
  CHECK(g.isApproxToConstant(2.0f));
  gemm.run(Transpose::No, Transpose::No, e, f, g, false);
  CHECK(g.isZero());
}

TEST_CASE("bf16: products are bit-identical with 1 and 2 threads") {
  if (skip_without_amx()) return;
  Rng rng(9);
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      const Index m = 211, n = 333, k = 517;  // above the parallel threshold
      Matrix<float> a(ta ? k : m, ta ? m : k), b(tb ? n : k, tb ? k : n), c0(m, n);
      rng.fill_normal(a);
      rng.fill_normal(b);
      rng.fill_normal(c0);
      std::vector<Matrix<float>> results;
      for (int threads : {1, 2}) {
        set_threads(threads);
        Gemm<float> gemm;
        gemm.set_precision(Precision::BFloat16);
        Matrix<float> c = c0;
        gemm.run(ta ? Transpose::Yes : Transpose::No, tb ? Transpose::Yes : Transpose::No, a, b, c, true);
        results.push_back(c);
      }
      CHECK(results[0] == results[1]);
    }
  set_threads(1);
}

TEST_CASE("bf16: an MLP ML-VAE step in bf16 is close to float32") {
  if (skip_without_amx()) return;
  const auto data = load_fashion_mnist<float>("train", fashion_mnist_default_dir(), 256);
  std::vector<Index> offsets;
  for (Index g = 0; g <= 16; ++g) offsets.push_back(g * 16);
  auto run = [&](Precision p, Vector<float>& gradient) {
    auto model = make_mlp_mlvae<float>();
    CHECK(model.precision() == Precision::Float32);
    model.set_precision(p);
    CHECK(model.precision() == p);
    Rng init(3), noise(4);
    model.initialize(init);
    const LossTerms terms = model.forward_backward(data.images, offsets, noise);
    gradient = model.parameters().gradients;
    return terms.loss;
  };
  Vector<float> g32, g16;
  const double loss32 = run(Precision::Float32, g32), loss16 = run(Precision::BFloat16, g16);
  MESSAGE("loss float32 ", loss32, ", bf16 ", loss16, "; relative gradient difference ",
          (g16 - g32).norm() / g32.norm());
  // Stated tolerance: the loss within 0.2 % and the gradient within 2 % (relative 2-norm); the
  // operands carry 8 significant bits (relative rounding 2^-9).
  CHECK(std::abs(loss16 - loss32) <= 2e-3 * std::abs(loss32));
  CHECK((g16 - g32).norm() <= 2e-2 * g32.norm());
}

TEST_CASE("bf16: a conv ML-VAE step in bf16 is close to float32") {
  if (skip_without_amx()) return;
  const auto data = load_fashion_mnist<float>("train", fashion_mnist_default_dir(), 32);
  const std::vector<Index> offsets{0, 8, 16, 24, 32};
  auto run = [&](Precision p) {
    auto model = make_conv28_mlvae<float>();
    model.set_precision(p);
    Rng init(3), noise(4);
    model.initialize(init);
    return model.forward_backward(data.images, offsets, noise).loss;
  };
  const double loss32 = run(Precision::Float32), loss16 = run(Precision::BFloat16);
  MESSAGE("conv loss float32 ", loss32, ", bf16 ", loss16);
  CHECK(std::abs(loss16 - loss32) <= 2e-3 * std::abs(loss32));
}

TEST_CASE("bf16: selecting bf16 for double or without AMX-BF16 is a clear error") {
  Gemm<double> gemm_double;
  CHECK_THROWS_WITH_AS(gemm_double.set_precision(Precision::BFloat16), doctest::Contains("float models only"),
                       ArgumentError);
  gemm_double.set_precision(Precision::Float32);  // float32 is always fine
  auto model = make_mlp_mlvae<double>(20, 8, 2, 2);
  CHECK_THROWS_WITH_AS(model.set_precision(Precision::BFloat16), doctest::Contains("float models only"),
                       ArgumentError);
  CHECK(model.precision() == Precision::Float32);
  // The CPU without AMX, real or simulated by the test hook.
  const bool real = !bfloat16_available();
  if (!real) detail::bf16_hide_amx_for_testing() = true;
  Gemm<float> gemm;
  CHECK_THROWS_WITH_AS(gemm.set_precision(Precision::BFloat16), doctest::Contains("bfloat16 products need AMX"),
                       ArgumentError);
  CHECK(gemm.precision() == Precision::Float32);
  auto float_model = make_mlp_mlvae<float>(20, 8, 2, 2);
  CHECK_THROWS_WITH_AS(float_model.set_precision(Precision::BFloat16), doctest::Contains("bfloat16 products need"), ArgumentError);
  CHECK(float_model.precision() == Precision::Float32);
  detail::bf16_hide_amx_for_testing() = false;
  CHECK(bfloat16_available() == !real);
}
