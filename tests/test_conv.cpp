// tests/test_conv.cpp — Conv2d, ConvTranspose2d, Reshape and the conv ML-VAE/VAE configurations:
// finite-difference gradient checks, a naive reference convolution, the adjoint identity
// ⟨conv(u), v⟩ = ⟨u, convT(v)⟩, chunked vs unchunked workspaces, shape errors, float builds.
#include <doctest/doctest.h>

#include "support.hpp"

#include "mlvae/model/conv_architectures.hpp"
#include "mlvae/nn/conv2d.hpp"
#include "mlvae/nn/conv_transpose2d.hpp"
#include "mlvae/nn/gradient_check.hpp"
#include "mlvae/nn/im2col.hpp"
#include "mlvae/nn/reshape.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

using namespace mlvae;

namespace {

using Mat = Matrix<double>;
using Vec = Vector<double>;

template <typename Layer>
void check_conv_layer(Layer layer, Index batch = 3) {
  Rng rng(42);
  const auto result = check_layer_gradients(layer, batch, rng);
  INFO(layer.describe(), " parameters: ", result.parameters.report());
  INFO(layer.describe(), " input: ", result.input.report());
  CHECK(result.passed());
  CHECK(result.parameters.checked == layer.parameter_count());
}

/// Direct convolution (test only): y(o, oh, ow) = b(o) + Σ W(o, (c·k+i)·k+j) x(c, oh·s−p+i, ow·s−p+j).
Mat naive_conv(const Mat& x, ImageShape in, const Mat& weight, const Vec& bias, Index k, Index s, Index p) {
  const Index oc = weight.rows();
  const Index oh_n = (in.height + 2 * p - k) / s + 1, ow_n = (in.width + 2 * p - k) / s + 1;
  Mat y(oc * oh_n * ow_n, x.cols());
  for (Index n = 0; n < x.cols(); ++n)
    for (Index o = 0; o < oc; ++o)
      for (Index oh = 0; oh < oh_n; ++oh)
        for (Index ow = 0; ow < ow_n; ++ow) {
          double sum = bias(o);
          for (Index c = 0; c < in.channels; ++c)
            for (Index i = 0; i < k; ++i)
              for (Index j = 0; j < k; ++j) {
                const Index ih = oh * s - p + i, iw = ow * s - p + j;
                if (ih < 0 || ih >= in.height || iw < 0 || iw >= in.width) continue;
                sum += weight(o, (c * k + i) * k + j) * x((c * in.height + ih) * in.width + iw, n);
              }
          y((o * oh_n + oh) * ow_n + ow, n) = sum;
        }
  return y;
}

/// Direct transposed convolution (test only), scattering each input pixel through the kernel.
Mat naive_conv_transpose(const Mat& x, ImageShape in, Index out_channels, const Mat& weight, const Vec& bias, Index k,
                         Index s, Index p, Index op) {
  const Index oh_n = (in.height - 1) * s - 2 * p + k + op, ow_n = (in.width - 1) * s - 2 * p + k + op;
  Mat y(out_channels * oh_n * ow_n, x.cols());
  for (Index n = 0; n < x.cols(); ++n) {
    for (Index o = 0; o < out_channels; ++o)
      for (Index q = 0; q < oh_n * ow_n; ++q) y(o * oh_n * ow_n + q, n) = bias(o);
    for (Index c = 0; c < in.channels; ++c)
      for (Index ih = 0; ih < in.height; ++ih)
        for (Index iw = 0; iw < in.width; ++iw)
          for (Index o = 0; o < out_channels; ++o)
            for (Index i = 0; i < k; ++i)
              for (Index j = 0; j < k; ++j) {
                const Index oh = ih * s - p + i, ow = iw * s - p + j;
                if (oh < 0 || oh >= oh_n || ow < 0 || ow >= ow_n) continue;
                y((o * oh_n + oh) * ow_n + ow, n) +=
                    weight(c, (o * k + i) * k + j) * x((c * in.height + ih) * in.width + iw, n);
              }
  }
  return y;
}

/// Binds `layer` to a fresh store with N(0, 1) parameters.
template <typename Layer>
ParameterStore<double> random_parameters(Layer& layer, Rng& rng) {
  ParameterStore<double> store;
  bind_layers(store, layer);
  rng.fill_normal(store.values);
  return store;
}

Mat random_matrix(Index rows, Index cols, Rng& rng) {
  Mat m(rows, cols);
  rng.fill_normal(m);
  return m;
}

/// Central-difference check of `loss` w.r.t. the parameters at `indices` against `analytic`.
template <typename Loss>
GradientCheckResult check_parameter_subset(Loss&& loss, Vec& values, const Vec& analytic,
                                           const std::vector<Index>& indices, GradientCheckOptions options) {
  Vec subset_analytic(static_cast<Index>(indices.size()));
  Vec subset_values(static_cast<Index>(indices.size()));
  for (std::size_t i = 0; i < indices.size(); ++i) {
    subset_analytic(static_cast<Index>(i)) = analytic(indices[i]);
    subset_values(static_cast<Index>(i)) = values(indices[i]);
  }
  // Write the perturbed subset back into the model before each evaluation.
  auto f = [&] {
    for (std::size_t i = 0; i < indices.size(); ++i) values(indices[i]) = subset_values(static_cast<Index>(i));
    return loss();
  };
  auto result = check_gradient(f, subset_values, subset_analytic, options);
  f();  // restore
  return result;
}

/// Grouped batch of `n` observations with uniform [0, 1) pixels.
Mat uniform_batch(Index rows, Index n, Rng& rng) {
  Mat x(rows, n);
  for (Index j = 0; j < n; ++j)
    for (Index i = 0; i < rows; ++i) x(i, j) = rng.uniform();
  return x;
}

}  // namespace

TEST_CASE("conv: output shapes - parameter counts and descriptions") {
  Conv2d<double> conv(ImageShape{1, 28, 28}, 32, 4, 2, 1);
  CHECK(conv.output_shape() == ImageShape{32, 14, 14});
  CHECK(conv.input_size() == 784);
  CHECK(conv.output_size() == 32 * 14 * 14);
  CHECK(conv.parameter_count() == 32 * 16 + 32);
  CHECK(conv.describe() == "Conv2d(1x28x28->32x14x14,k4,s2,p1)");
  CHECK(Conv2d<double>(ImageShape{3, 7, 5}, 2, 3).output_shape() == ImageShape{2, 5, 3});
  CHECK(Conv2d<double>(ImageShape{3, 7, 5}, 2, 3, 2, 0).output_shape() == ImageShape{2, 3, 2});

  ConvTranspose2d<double> deconv(ImageShape{64, 7, 7}, 32, 4, 2, 1);
  CHECK(deconv.output_shape() == ImageShape{32, 14, 14});
  CHECK(deconv.parameter_count() == 64 * 32 * 16 + 32);
  CHECK(deconv.describe() == "ConvTranspose2d(64x7x7->32x14x14,k4,s2,p1)");
  // PyTorch: OH = (H − 1)·s − 2p + k + output_padding.
  ConvTranspose2d<double> odd(ImageShape{2, 4, 3}, 3, 3, 2, 1, 1);
  CHECK(odd.output_shape() == ImageShape{3, 8, 6});
  CHECK(odd.describe() == "ConvTranspose2d(2x4x3->3x8x6,k3,s2,p1,op1)");

  Reshape<double> reshape(ImageShape{32, 7, 7}, 32 * 7 * 7);
  CHECK(reshape.describe() == "Reshape(32x7x7->1568)");
  CHECK(Flatten<double>(ImageShape{2, 3, 4}).output_shape() == ImageShape{24, 1, 1});
  CHECK(Reshape<double>(ImageShape{12, 1, 1}, ImageShape{3, 2, 2}).describe() == "Reshape(12->3x2x2)");
}

TEST_CASE("gradient check: Conv2d") {
  check_conv_layer(Conv2d<double>(ImageShape{1, 5, 5}, 2, 3));                 // stride 1, no padding
  check_conv_layer(Conv2d<double>(ImageShape{2, 5, 6}, 3, 3, 1, 1));          // padding 1, non-square
  check_conv_layer(Conv2d<double>(ImageShape{3, 7, 6}, 2, 4, 2, 1));          // k4 s2 p1
  check_conv_layer(Conv2d<double>(ImageShape{2, 6, 5}, 3, 3, 2, 0));          // stride 2, no padding
  check_conv_layer(Conv2d<double>(ImageShape{2, 4, 3}, 2, 2, 3, 2));          // stride > kernel, wide padding
  Conv2d<double> chunked(ImageShape{2, 5, 4}, 3, 3, 2, 1);
  chunked.set_workspace_limit(1);  // one observation per chunk: exercises the multi-chunk path
  check_conv_layer(chunked, 4);
}

TEST_CASE("gradient check: ConvTranspose2d") {
  check_conv_layer(ConvTranspose2d<double>(ImageShape{2, 3, 4}, 3, 3));               // stride 1
  check_conv_layer(ConvTranspose2d<double>(ImageShape{2, 3, 3}, 2, 4, 2, 1));         // k4 s2 p1
  check_conv_layer(ConvTranspose2d<double>(ImageShape{3, 4, 3}, 2, 3, 2, 1, 1));      // output_padding 1
  check_conv_layer(ConvTranspose2d<double>(ImageShape{1, 2, 3}, 2, 3, 3, 0, 2));      // stride 3, op 2
  check_conv_layer(ConvTranspose2d<double>(ImageShape{2, 3, 2}, 1, 4, 1, 2));         // padding 2
  ConvTranspose2d<double> chunked(ImageShape{2, 3, 4}, 2, 4, 2, 1);
  chunked.set_workspace_limit(1);
  check_conv_layer(chunked, 4);
}

TEST_CASE("gradient check: Reshape and Flatten") {
  check_conv_layer(Reshape<double>(ImageShape{2, 3, 4}, ImageShape{4, 3, 2}));
  check_conv_layer(Flatten<double>(ImageShape{3, 2, 2}));
  // Inside a stack between convolutions.
  using Stack = Sequential<Conv2d<double>, Reshape<double>, Dense<double>, Reshape<double>, ConvTranspose2d<double>>;
  check_conv_layer(Stack(Conv2d<double>(ImageShape{2, 6, 6}, 3, 4, 2, 1), Reshape<double>(ImageShape{3, 3, 3}, 27),
                         Dense<double>(27, 12), Reshape<double>(ImageShape{12, 1, 1}, ImageShape{3, 2, 2}),
                         ConvTranspose2d<double>(ImageShape{3, 2, 2}, 2, 4, 2, 1)));
}

TEST_CASE("Reshape forwards its input and its gradient unchanged") {
  Reshape<double> reshape(ImageShape{2, 2, 3}, ImageShape{3, 4, 1});
  Rng rng(1);
  const Mat x = random_matrix(12, 3, rng), dy = random_matrix(12, 3, rng);
  CHECK(&reshape.forward(x) == &x);
  CHECK(&reshape.backward(dy) == &dy);
  CHECK(reshape.backward(dy, false).size() == 0);
}

TEST_CASE("Conv2d forward matches a direct convolution") {
  struct Case {
    ImageShape in;
    Index out, k, s, p;
  };
  const std::vector<Case> cases{{{1, 6, 6}, 2, 3, 1, 0}, {{3, 7, 5}, 4, 3, 1, 1}, {{2, 9, 8}, 3, 4, 2, 1},
                                {{2, 5, 7}, 2, 2, 2, 0}, {{1, 28, 28}, 5, 4, 2, 1}};
  Rng rng(5);
  for (const auto& c : cases) {
    for (const std::size_t limit : {std::size_t{1}, default_conv_workspace_bytes}) {
      Conv2d<double> conv(c.in, c.out, c.k, c.s, c.p);
      conv.set_workspace_limit(limit);
      auto store = random_parameters(conv, rng);
      const Mat x = random_matrix(conv.input_size(), 5, rng);
      const Mat expected = naive_conv(x, c.in, conv.weight(), conv.bias(), c.k, c.s, c.p);
      const Mat& y = conv.forward(x);
      INFO(conv.describe(), " chunk ", conv.chunk_size());
      REQUIRE(y.rows() == expected.rows());
      CHECK((y - expected).cwiseAbs().maxCoeff() < 1e-12);
    }
  }
  // A hand-computed case: a 3x3 image of 1..9, a 2x2 kernel of ones, bias 0.5.
  Conv2d<double> sum(ImageShape{1, 3, 3}, 1, 2);
  ParameterStore<double> store;
  bind_layers(store, sum);
  sum.weight().setOnes();
  sum.bias().setConstant(0.5);
  Mat x(9, 1);
  x << 1, 2, 3, 4, 5, 6, 7, 8, 9;
  Mat expected(4, 1);
  expected << 12.5, 16.5, 24.5, 28.5;
  CHECK((sum.forward(x) - expected).cwiseAbs().maxCoeff() < 1e-12);
}

TEST_CASE("ConvTranspose2d forward matches a direct transposed convolution") {
  struct Case {
    ImageShape in;
    Index out, k, s, p, op;
  };
  const std::vector<Case> cases{{{1, 3, 3}, 2, 3, 1, 0, 0}, {{3, 4, 5}, 2, 4, 2, 1, 0}, {{2, 3, 2}, 3, 3, 2, 1, 1},
                                {{2, 2, 3}, 1, 2, 3, 0, 2}};
  Rng rng(6);
  for (const auto& c : cases) {
    for (const std::size_t limit : {std::size_t{1}, default_conv_workspace_bytes}) {
      ConvTranspose2d<double> deconv(c.in, c.out, c.k, c.s, c.p, c.op);
      deconv.set_workspace_limit(limit);
      auto store = random_parameters(deconv, rng);
      const Mat x = random_matrix(deconv.input_size(), 4, rng);
      const Mat expected =
          naive_conv_transpose(x, c.in, c.out, deconv.weight(), deconv.bias(), c.k, c.s, c.p, c.op);
      const Mat& y = deconv.forward(x);
      INFO(deconv.describe(), " chunk ", deconv.chunk_size());
      REQUIRE(y.rows() == expected.rows());
      CHECK((y - expected).cwiseAbs().maxCoeff() < 1e-12);
    }
  }
}

TEST_CASE("ConvTranspose2d is the adjoint of Conv2d with the same weights") {
  struct Case {
    ImageShape small;  // ConvTranspose2d input = Conv2d output
    Index big_channels, k, s, p, op;
  };
  const std::vector<Case> cases{{{2, 4, 4}, 3, 3, 1, 1, 0}, {{3, 7, 7}, 2, 4, 2, 1, 0}, {{2, 3, 5}, 3, 3, 2, 1, 1},
                                {{1, 2, 3}, 2, 3, 3, 0, 2}, {{4, 3, 3}, 1, 4, 1, 0, 0}};
  Rng rng(7);
  for (const auto& c : cases) {
    ConvTranspose2d<double> deconv(c.small, c.big_channels, c.k, c.s, c.p, c.op);
    Conv2d<double> conv(deconv.output_shape(), c.small.channels, c.k, c.s, c.p);
    INFO(conv.describe(), " / ", deconv.describe());
    REQUIRE(conv.output_shape() == c.small);
    REQUIRE(conv.parameter_count() == deconv.parameter_count() - c.big_channels + c.small.channels);
    auto conv_store = random_parameters(conv, rng);
    auto deconv_store = random_parameters(deconv, rng);
    deconv.weight() = conv.weight();
    conv.bias().setZero();
    deconv.bias().setZero();
    const Mat u = random_matrix(conv.input_size(), 3, rng);    // big images
    const Mat v = random_matrix(deconv.input_size(), 3, rng);  // small images
    const double lhs = (conv.forward(u).array() * v.array()).sum();
    const double rhs = (u.array() * deconv.forward(v).array()).sum();
    CHECK(lhs == doctest::Approx(rhs).epsilon(1e-12));
    // And the backward-data paths are each other's forward: conv.backward(v) = convT(v).
    conv.forward(u);
    const Mat& dx = conv.backward(v);
    CHECK((dx - deconv.forward(v)).cwiseAbs().maxCoeff() < 1e-12);
  }
}

TEST_CASE("conv layers: chunked and whole-batch workspaces give the same gradients") {
  Rng rng(8);
  Conv2d<double> a(ImageShape{3, 9, 7}, 4, 3, 2, 1), b(ImageShape{3, 9, 7}, 4, 3, 2, 1);
  ConvTranspose2d<double> c(ImageShape{3, 5, 4}, 2, 4, 2, 1), d(ImageShape{3, 5, 4}, 2, 4, 2, 1);
  auto sa = random_parameters(a, rng);
  auto sc = random_parameters(c, rng);
  ParameterStore<double> sb, sd;
  bind_layers(sb, b);
  bind_layers(sd, d);
  sb.values = sa.values;
  sd.values = sc.values;
  const std::size_t per_obs_conv = static_cast<std::size_t>(a.geometry().positions()) *
                                   static_cast<std::size_t>(2 * a.geometry().patch_size() + 4) * sizeof(double);
  b.set_workspace_limit(3 * per_obs_conv);  // chunks of 3, 3, 1 for a batch of 7
  d.set_workspace_limit(1);
  const Mat x = random_matrix(a.input_size(), 7, rng), dy = random_matrix(a.output_size(), 7, rng);
  const Mat xt = random_matrix(c.input_size(), 7, rng), dyt = random_matrix(c.output_size(), 7, rng);
  CHECK((a.forward(x) - b.forward(x)).cwiseAbs().maxCoeff() < 1e-12);
  CHECK(b.chunk_size() == 3);
  CHECK((a.backward(dy) - b.backward(dy)).cwiseAbs().maxCoeff() < 1e-12);
  CHECK((sa.gradients - sb.gradients).cwiseAbs().maxCoeff() < 1e-12);
  CHECK((c.forward(xt) - d.forward(xt)).cwiseAbs().maxCoeff() < 1e-12);
  CHECK(d.chunk_size() == 1);
  CHECK((c.backward(dyt) - d.backward(dyt)).cwiseAbs().maxCoeff() < 1e-12);
  CHECK((sc.gradients - sd.gradients).cwiseAbs().maxCoeff() < 1e-12);
  // A second step of another batch size re-plans the workspaces.
  const Mat x2 = random_matrix(a.input_size(), 2, rng);
  CHECK((a.forward(x2) - b.forward(x2)).cwiseAbs().maxCoeff() < 1e-12);
}

TEST_CASE("Conv2d fused with a following ReLU equals the two layers run one after the other") {
  // Sequential<Conv2d, Relu> runs Conv2d::forward_activation / backward_activation (one pass instead of three);
  // outputs, parameter gradients and input gradients must be bit-identical to the unfused layers.
  Rng rng(12);
  for (const Index limit : {Index{0}, Index{1}}) {  // whole batch in one chunk, and one image per chunk
    using Fused = Sequential<Conv2d<double>, Relu<double>>;
    Fused fused(Conv2d<double>(ImageShape{3, 9, 7}, 4, 3, 2, 1), Relu<double>(4 * 5 * 4));
    Conv2d<double> conv(ImageShape{3, 9, 7}, 4, 3, 2, 1);
    Relu<double> relu(4 * 5 * 4);
    if (limit == 1) {
      fused.layer<0>().set_workspace_limit(1);
      conv.set_workspace_limit(1);
    }
    auto sf = random_parameters(fused, rng);
    ParameterStore<double> su;
    bind_layers(su, conv);
    su.values = sf.values;
    const Mat x = random_matrix(conv.input_size(), 5, rng), dy = random_matrix(conv.output_size(), 5, rng);
    const Mat& yf = fused.forward(x);
    const Mat& yu = relu.forward(conv.forward(x));
    CHECK(yf == yu);
    CHECK((yf.array() == 0.0).count() > 0);  // some units are cut, so the mask matters
    const Mat& dxf = fused.backward(dy);
    const Mat& dxu = conv.backward(relu.backward(dy));
    CHECK(dxf == dxu);
    CHECK(sf.gradients == su.gradients);
    CHECK(fused.output().data() == fused.layer<1>().output().data());
  }
  // And through finite differences, as a layer of its own.
  Rng rng2(13);
  Sequential<Conv2d<double>, Relu<double>> pair(Conv2d<double>(ImageShape{2, 6, 5}, 3, 3, 2, 1), Relu<double>(3 * 3 * 3));
  const auto result = check_layer_gradients(pair, 3, rng2);
  INFO("parameters: ", result.parameters.report(), " input: ", result.input.report());
  CHECK(result.passed());
}

TEST_CASE("conv layers: shape errors") {
  CHECK_THROWS_AS(Conv2d<double>(ImageShape{1, 3, 3}, 2, 5), ShapeError);        // kernel larger than image
  CHECK_NOTHROW(Conv2d<double>(ImageShape{1, 3, 3}, 2, 5, 1, 1));                // ...fits with padding
  CHECK_THROWS_AS(Conv2d<double>(ImageShape{0, 3, 3}, 2, 3), ShapeError);
  CHECK_THROWS_AS(Conv2d<double>(ImageShape{1, 3, 3}, 0, 3), ShapeError);
  CHECK_THROWS_AS(Conv2d<double>(ImageShape{1, 3, 3}, 2, 3, 0), ShapeError);     // stride 0
  CHECK_THROWS_AS(Conv2d<double>(ImageShape{1, 3, 3}, 2, 3, 1, -1), ShapeError);
  CHECK_THROWS_AS(ConvTranspose2d<double>(ImageShape{1, 3, 3}, 2, 3, 2, 0, 2), ShapeError);  // op >= stride
  CHECK_THROWS_AS(ConvTranspose2d<double>(ImageShape{1, 1, 1}, 2, 2, 1, 1), ShapeError);     // empty output
  CHECK_THROWS_AS(ConvTranspose2d<double>(ImageShape{1, 3, 3}, 0, 3), ShapeError);
  CHECK_THROWS_AS(Reshape<double>(ImageShape{2, 3, 4}, ImageShape{5, 5, 1}), ShapeError);
  CHECK_THROWS_AS(Reshape<double>(ImageShape{2, 3, 4}, 23), ShapeError);

  Conv2d<double> conv(ImageShape{2, 4, 4}, 3, 3, 1, 1);
  ParameterStore<double> store;
  bind_layers(store, conv);
  CHECK_THROWS_AS(conv.backward(Mat::Zero(conv.output_size(), 2)), ShapeError);  // before forward
  CHECK_THROWS_AS(conv.forward(Mat::Zero(31, 2)), ShapeError);
  try {
    conv.forward(Mat::Zero(31, 2));
  } catch (const ShapeError& e) {
    CHECK(std::string(e.what()).find("Conv2d(2x4x4->3x4x4,k3,s1,p1): expected input with 32 rows (2x4x4)") !=
          std::string::npos);
  }
  const Mat x = Mat::Zero(32, 2);
  conv.forward(x);
  CHECK_THROWS_AS(conv.backward(Mat::Zero(conv.output_size(), 3)), ShapeError);
  // Stacks check that shapes chain.
  using Stack = Sequential<Conv2d<double>, ConvTranspose2d<double>>;
  CHECK_THROWS_AS(Stack(Conv2d<double>(ImageShape{1, 8, 8}, 4, 4, 2, 1),
                        ConvTranspose2d<double>(ImageShape{4, 3, 3}, 1, 4, 2, 1)),
                  ShapeError);
}

TEST_CASE("gradient check: complete conv ML-VAE loss") {
  const std::vector<Index> offsets{0, 2, 3, 5};  // groups of 2, 1 and 2

  SUBCASE("tiny conv28-shaped model, every parameter") {
    // The conv28 layer types at 1x8x8: 8 → 4 → 2 and back.
    Conv28MLVAE<double> model(
        Conv28Trunk<double>(Conv2d<double>(ImageShape{1, 8, 8}, 2, 4, 2, 1), Relu<double>(32),
                            Conv2d<double>(ImageShape{2, 4, 4}, 3, 4, 2, 1), Relu<double>(12),
                            Reshape<double>(ImageShape{3, 2, 2}, 12), Dense<double>(12, 6), Relu<double>(6)),
        MlpHead<double>(Dense<double>(6, 2 * 2)), MlpHead<double>(Dense<double>(6, 2 * 2)),
        Conv28Decoder<double>(Dense<double>(4, 6), Relu<double>(6), Dense<double>(6, 12), Relu<double>(12),
                              Reshape<double>(ImageShape{12, 1, 1}, ImageShape{3, 2, 2}),
                              ConvTranspose2d<double>(ImageShape{3, 2, 2}, 2, 4, 2, 1), Relu<double>(32),
                              ConvTranspose2d<double>(ImageShape{2, 4, 4}, 1, 4, 2, 1)));
    Rng init(1);
    model.initialize(init);
    auto& values = model.parameters().values;
    for (Index k = 0; k < values.size(); ++k) values(k) += 0.05 * init.normal();  // no zero biases
    Rng data(2);
    const Mat x = uniform_batch(64, 5, data);
    const auto [result, analytic] =
        mlvae_test::check_model_gradient(mlvae_test::large_loss_check(), model, Rng(3), x, offsets);
    INFO(result.report());
    CHECK(result.passed);
    CHECK(result.checked == model.parameters().size());
    // The first conv layer's weights receive gradient.
    CHECK(analytic.head(32).cwiseAbs().maxCoeff() > 1e-8);
  }

  SUBCASE("full conv28 model, a random subset of 300 parameters") {
    auto model = make_conv28_mlvae<double>(4, 3);
    Rng init(4);
    model.initialize(init);
    auto& values = model.parameters().values;
    for (Index k = 0; k < values.size(); ++k) values(k) += 0.01 * init.normal();
    Rng data(5);
    const Mat x = uniform_batch(784, 5, data);
    const Rng noise(6);
    auto loss = [&] {
      Rng r = noise;
      return model.evaluate(x, offsets, r).loss;
    };
    Rng r = noise;
    model.forward_backward(x, offsets, r);
    const Vec analytic = model.parameters().gradients;
    // 100 from the first conv + 200 anywhere, so the smallest layer is covered too.
    std::vector<Index> indices;  // distinct indices
    auto draw = [&](Index range, std::size_t until) {
      while (indices.size() < until) {
        const Index k = static_cast<Index>(init.uniform_index(static_cast<std::uint64_t>(range)));
        if (std::find(indices.begin(), indices.end(), k) == indices.end()) indices.push_back(k);
      }
    };
    draw(model.trunk().layer<0>().parameter_count(), 100);
    draw(values.size(), 300);
    GradientCheckOptions options;
    options.step = 1e-5;
    options.rtol = 1e-4;
    options.atol = 1e-6;
    const auto result = check_parameter_subset(loss, values, analytic, indices, options);
    INFO(result.report());
    CHECK(result.passed);
    CHECK(result.checked == 300);
  }
}

TEST_CASE("gradient check: tiny conv VAE loss") {
  Conv28VAE<double> model(
      Conv28Encoder<double>(Conv2d<double>(ImageShape{1, 6, 6}, 2, 4, 2, 1), Relu<double>(18),
                            Conv2d<double>(ImageShape{2, 3, 3}, 2, 3, 1, 0), Relu<double>(2),
                            Reshape<double>(ImageShape{2, 1, 1}, 2), Dense<double>(2, 5), Relu<double>(5),
                            Dense<double>(5, 2 * 2)),
      Conv28Decoder<double>(Dense<double>(2, 5), Relu<double>(5), Dense<double>(5, 8), Relu<double>(8),
                            Reshape<double>(ImageShape{8, 1, 1}, ImageShape{2, 2, 2}),
                            ConvTranspose2d<double>(ImageShape{2, 2, 2}, 2, 3, 2, 1, 1), Relu<double>(32),
                            ConvTranspose2d<double>(ImageShape{2, 4, 4}, 1, 3, 2, 2, 1)));
  REQUIRE(model.decoder().output_size() == 36);
  Rng init(9);
  model.initialize(init);
  auto& values = model.parameters().values;
  for (Index k = 0; k < values.size(); ++k) values(k) += 0.05 * init.normal();
  const Mat x = uniform_batch(36, 4, init);
  const auto [result, analytic] = mlvae_test::check_model_gradient(model, Rng(10), x);
  INFO(result.report());
  CHECK(result.passed);
}

TEST_CASE("conv architectures build and run in float") {
  const std::vector<Index> offsets{0, 3, 6};
  Rng rng(11);

  auto conv28 = make_conv28_mlvae<float>(10, 10);
  CHECK(conv28.data_size() == 784);
  CHECK(conv28.describe().find("Conv2d(1x28x28->32x14x14,k4,s2,p1)") != std::string::npos);
  CHECK(conv28.describe().find("ConvTranspose2d(32x14x14->1x28x28,k4,s2,p1)") != std::string::npos);
  conv28.initialize(rng);
  Matrix<float> x28(784, 6);
  for (Index j = 0; j < x28.cols(); ++j)
    for (Index i = 0; i < x28.rows(); ++i) x28(i, j) = static_cast<float>(rng.uniform());
  const auto terms = conv28.forward_backward(x28, offsets, rng);
  CHECK(std::isfinite(terms.loss));
  CHECK(terms.loss > 0);
  CHECK(conv28.parameters().gradients.allFinite());
  CHECK(conv28.parameters().gradients.cwiseAbs().maxCoeff() > 0);

  auto vae28 = make_conv28_vae<float>(8);
  vae28.initialize(rng);
  CHECK(std::isfinite(vae28.forward_backward(x28, rng).loss));
  CHECK(vae28.parameters().gradients.allFinite());

  auto conv64 = make_conv64_mlvae<float>(6, 4);
  CHECK(conv64.data_size() == 4096);
  conv64.initialize(rng);
  Matrix<float> x64(4096, 6);
  for (Index j = 0; j < x64.cols(); ++j)
    for (Index i = 0; i < x64.rows(); ++i) x64(i, j) = rng.uniform() < 0.2 ? 1.0f : 0.0f;
  const auto terms64 = conv64.forward_backward(x64, offsets, rng);
  CHECK(std::isfinite(terms64.loss));
  CHECK(conv64.parameters().gradients.allFinite());

  auto vae64 = make_conv64_vae<float>(10);
  vae64.initialize(rng);
  CHECK(std::isfinite(vae64.forward_backward(x64, rng).loss));

  // Decoding gives probabilities of the right shape.
  Matrix<float> style = Matrix<float>::Zero(10, 2), content = Matrix<float>::Zero(10, 2), mean;
  conv28.decode_mean(style, content, mean);
  CHECK(mean.rows() == 784);
  CHECK(mean.minCoeff() >= 0.0f);
  CHECK(mean.maxCoeff() <= 1.0f);
}
