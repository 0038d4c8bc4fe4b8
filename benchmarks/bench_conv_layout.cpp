// bench_conv_layout.cpp — measures the convolution layout choice (issue 11): the library's Conv2d
// (NCHW: each image one CHW column, patches (chunk·P) × (C·k·k), y = cols·Wᵀ then a copy into CHW)
// against an NHWC convolution written here for that layout (image = one HWC column, channels
// fastest; patches (k·k·C) × (chunk·P) with each kernel row one contiguous run of k·C inputs;
// Yᵀ = W'·patches IS the chunk's NHWC output, no copy; backward dW' += dYᵀ·patchesᵀ on the
// incoming gradient itself, db = row sums, dpatches = W'ᵀ·dYᵀ, col2im of contiguous runs).
// Both use mlvae::Gemm and the same workspace-bounded chunking (--workspace-mib, default
// mlvae::default_conv_workspace_bytes).
//
// 1. Correctness (always run first; exit code 1 on failure): NHWC output, dW (permuted), db and dx
//    equal Conv2d's after NCHW<->NHWC conversion (double to 1e-12, float to 1e-4 relative), and a
//    central finite-difference check of the NHWC backward in double (2 images, 3x5x5, k3 s2 p1).
// 2. Timing, float, --batch (256): conv28's two convolutions, conv1 1x28x28->32 (k4 s2 p1) and
//    conv2 32x14x14->64 (k4 s2 p1); forward, backward (with dx), forward+backward, and
//    forward+backward without dx (fwdbwd_nodx: how a model's first layer runs), at each of
//    --threads (1,2); median of --reps repetitions of --iters calls after --warmup calls. Phase
//    shares: NHWC from timers inside the layer; NCHW from the library's im2col/col2im run alone on
//    the same chunks (products = total − that).
//
// Run:  build/release/bin/bench_conv_layout [--threads 1,2] [--reps 9] [--iters 10] [--batch 256]
// Output: "RESULT conv_layout layer=conv2 layout=nhwc threads=2 pass=fwdbwd ms=.. gflops=.." lines,
//         "RESULT conv_layout_ratio layer=.. threads=.. pass=.. nchw_over_nhwc=.." and
//         "RESULT conv_layout_phases ..." lines. docs/conv_layout.md has the measured numbers.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "mlvae/core/threads.hpp"
#include "mlvae/nn/conv2d.hpp"
#include "mlvae/nn/gemm.hpp"
#include "mlvae/nn/im2col.hpp"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using mlvae::Index;
using mlvae::Matrix;
using mlvae::Transpose;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

/// NHWC convolution: x is (H·W·C) × batch, element (h, w, c) at row (h·W + w)·C + c; the weight W'
/// is OC × (k·k·C) column-major with column (i·k + j)·C + c; the output is (OH·OW·OC) × batch.
template <typename T>
class ConvNhwc {
public:
  ConvNhwc(mlvae::ImageShape in, Index out_channels, Index kernel, Index stride, Index padding)
      : g_(mlvae::make_conv_geometry(in, kernel, stride, padding, "ConvNhwc")),
        oc_(out_channels),
        weight_(Matrix<T>::Zero(out_channels, g_.patch_size())),
        bias_(mlvae::Vector<T>::Zero(out_channels)),
        weight_grad_(Matrix<T>::Zero(out_channels, g_.patch_size())),
        bias_grad_(mlvae::Vector<T>::Zero(out_channels)) {}

  Index input_size() const { return g_.input.size(); }
  Index output_size() const { return oc_ * g_.positions(); }
  Index chunk_size() const { return chunk_; }
  void set_workspace_limit(std::size_t bytes) {
    workspace_ = bytes;
    batch_ = -1;
  }
  Matrix<T>& weight() { return weight_; }
  mlvae::Vector<T>& bias() { return bias_; }
  Matrix<T>& weight_grad() { return weight_grad_; }
  mlvae::Vector<T>& bias_grad() { return bias_grad_; }

  // Phase timers (seconds, accumulated while `profile` is set).
  bool profile = false;
  double t_im2col = 0, t_gemm = 0, t_bias = 0, t_col2im = 0;

  const Matrix<T>& forward(const Matrix<T>& x) {
    input_ = &x;
    const Index n = x.cols(), P = g_.positions(), PK = g_.patch_size();
    plan(n);
    if (out_.rows() != output_size() || out_.cols() != n) out_.resize(output_size(), n);
    for (Index start = 0; start < n; start += chunk_) {
      const Index count = std::min(chunk_, n - start);
      auto t0 = Clock::now();
      im2col(x.data() + start * input_size(), count, patches_.data());
      if (profile) t_im2col += seconds_since(t0), t0 = Clock::now();
      T* y = out_.data() + start * output_size();  // OC × (count·P): the chunk's NHWC output
      fwd_gemm_.run(Transpose::No, Transpose::No, oc_, count * P, PK, weight_.data(), oc_, patches_.data(), PK, y, oc_,
                    false);
      if (profile) t_gemm += seconds_since(t0), t0 = Clock::now();
      mlvae::parallel_columns(count, P * oc_, [&](Index begin, Index end) {
        Eigen::Map<Matrix<T>> block(y + begin * P * oc_, oc_, (end - begin) * P);
        block.colwise() += bias_;
      });
      if (profile) t_bias += seconds_since(t0);
    }
    patches_hold_batch_ = chunk_ >= n;
    return out_;
  }

  const Matrix<T>& backward(const Matrix<T>& dy, bool need_input_gradient = true) {
    const Index n = input_->cols(), P = g_.positions(), PK = g_.patch_size();
    plan(n);
    if (need_input_gradient && (dx_.rows() != input_size() || dx_.cols() != n)) dx_.resize(input_size(), n);
    for (Index start = 0; start < n; start += chunk_) {
      const Index count = std::min(chunk_, n - start);
      auto t0 = Clock::now();
      if (!patches_hold_batch_) im2col(input_->data() + start * input_size(), count, patches_.data());
      if (profile) t_im2col += seconds_since(t0), t0 = Clock::now();
      const T* dyc = dy.data() + start * output_size();  // OC × (count·P), used in place
      grad_gemm_.run(Transpose::No, Transpose::Yes, oc_, PK, count * P, dyc, oc_, patches_.data(), PK,
                     weight_grad_.data(), oc_, true);
      if (profile) t_gemm += seconds_since(t0), t0 = Clock::now();
      bias_grad_ += Eigen::Map<const Matrix<T>>(dyc, oc_, count * P).rowwise().sum();
      if (profile) t_bias += seconds_since(t0), t0 = Clock::now();
      if (need_input_gradient) {
        input_gemm_.run(Transpose::Yes, Transpose::No, PK, count * P, oc_, weight_.data(), oc_, dyc, oc_,
                        dpatches_.data(), PK, false);
        if (profile) t_gemm += seconds_since(t0), t0 = Clock::now();
        col2im(dpatches_.data(), count, dx_.data() + start * input_size());
        if (profile) t_col2im += seconds_since(t0);
      }
    }
    return dx_;
  }

private:
  void plan(Index n) {
    if (n == batch_) return;
    const Index P = g_.positions(), PK = g_.patch_size();
    // Patches and their gradient; the output needs no workspace (the product writes it directly).
    const std::size_t per_observation = static_cast<std::size_t>(P * 2 * PK) * sizeof(T);
    chunk_ = mlvae::workspace_chunk(n, per_observation, workspace_);
    patches_.resize(chunk_ * P * PK);
    dpatches_.resize(chunk_ * P * PK);
    batch_ = n;
    patches_hold_batch_ = false;
  }

  // Patch column of position (oh, ow): k blocks (one per kernel row i) of k·C values, each the
  // contiguous input run (ih, iw0 .. iw0+k−1, all channels) when it lies inside the image.
  void im2col(const T* images, Index count, T* patches) const {
    const Index H = g_.input.height, W = g_.input.width, C = g_.input.channels, K = g_.kernel, s = g_.stride,
                p = g_.padding, OH = g_.out_height, OW = g_.out_width, KC = K * C, PK = g_.patch_size();
    mlvae::parallel_columns(count, g_.positions() * PK, [&](Index begin, Index end) {
      for (Index n = begin; n < end; ++n) {
        const T* img = images + n * input_size();
        T* col = patches + n * g_.positions() * PK;
        for (Index oh = 0; oh < OH; ++oh) {
          for (Index ow = 0; ow < OW; ++ow, col += PK) {
            const Index iw0 = ow * s - p;
            const bool inside_w = iw0 >= 0 && iw0 + K <= W;
            for (Index i = 0; i < K; ++i) {
              T* dst = col + i * KC;
              const Index ih = oh * s - p + i;
              if (ih < 0 || ih >= H) {
                for (Index e = 0; e < KC; ++e) dst[e] = T(0);
              } else if (inside_w) {
                const T* src = img + (ih * W + iw0) * C;
                for (Index e = 0; e < KC; ++e) dst[e] = src[e];
              } else {
                for (Index j = 0; j < K; ++j) {
                  const Index iw = iw0 + j;
                  T* d = dst + j * C;
                  if (iw < 0 || iw >= W) {
                    for (Index c = 0; c < C; ++c) d[c] = T(0);
                  } else {
                    const T* src = img + (ih * W + iw) * C;
                    for (Index c = 0; c < C; ++c) d[c] = src[c];
                  }
                }
              }
            }
          }
        }
      }
    });
  }

  // Adjoint of im2col: each image is zeroed, then every in-image run is added back.
  void col2im(const T* patches, Index count, T* images) const {
    const Index H = g_.input.height, W = g_.input.width, C = g_.input.channels, K = g_.kernel, s = g_.stride,
                p = g_.padding, OH = g_.out_height, OW = g_.out_width, KC = K * C, PK = g_.patch_size();
    mlvae::parallel_columns(count, g_.positions() * PK, [&](Index begin, Index end) {
      for (Index n = begin; n < end; ++n) {
        T* img = images + n * input_size();
        std::fill_n(img, input_size(), T(0));
        const T* col = patches + n * g_.positions() * PK;
        for (Index oh = 0; oh < OH; ++oh) {
          for (Index ow = 0; ow < OW; ++ow, col += PK) {
            const Index iw0 = ow * s - p;
            const bool inside_w = iw0 >= 0 && iw0 + K <= W;
            for (Index i = 0; i < K; ++i) {
              const T* src = col + i * KC;
              const Index ih = oh * s - p + i;
              if (ih < 0 || ih >= H) continue;
              if (inside_w) {
                T* dst = img + (ih * W + iw0) * C;
                for (Index e = 0; e < KC; ++e) dst[e] += src[e];
              } else {
                for (Index j = 0; j < K; ++j) {
                  const Index iw = iw0 + j;
                  if (iw < 0 || iw >= W) continue;
                  T* dst = img + (ih * W + iw) * C;
                  const T* sj = src + j * C;
                  for (Index c = 0; c < C; ++c) dst[c] += sj[c];
                }
              }
            }
          }
        }
      }
    });
  }

  mlvae::ConvGeometry g_;
  Index oc_;
  Matrix<T> weight_;
  mlvae::Vector<T> bias_;
  Matrix<T> weight_grad_;
  mlvae::Vector<T> bias_grad_;
  const Matrix<T>* input_ = nullptr;
  mlvae::Gemm<T> fwd_gemm_, grad_gemm_, input_gemm_;
  Matrix<T> out_, dx_;
  std::size_t workspace_ = mlvae::default_conv_workspace_bytes;
  Index batch_ = -1, chunk_ = 0;
  bool patches_hold_batch_ = false;
  mlvae::Vector<T> patches_, dpatches_;
};

// ---- layout conversions ----------------------------------------------------------------------

template <typename T>
Matrix<T> nchw_to_nhwc(const Matrix<T>& x, Index C, Index H, Index W) {
  Matrix<T> y(x.rows(), x.cols());
  for (Index n = 0; n < x.cols(); ++n)
    for (Index c = 0; c < C; ++c)
      for (Index hw = 0; hw < H * W; ++hw) y(hw * C + c, n) = x(c * H * W + hw, n);
  return y;
}

template <typename T>
Matrix<T> nhwc_to_nchw(const Matrix<T>& x, Index C, Index H, Index W) {
  Matrix<T> y(x.rows(), x.cols());
  for (Index n = 0; n < x.cols(); ++n)
    for (Index c = 0; c < C; ++c)
      for (Index hw = 0; hw < H * W; ++hw) y(c * H * W + hw, n) = x(hw * C + c, n);
  return y;
}

// Library W(o, (c·k + i)·k + j)  <->  W'(o, (i·k + j)·C + c).
template <typename M>
Matrix<typename M::Scalar> weight_to_nhwc(const M& w, Index C, Index K) {
  Matrix<typename M::Scalar> out(w.rows(), w.cols());
  for (Index c = 0; c < C; ++c)
    for (Index ij = 0; ij < K * K; ++ij) out.col(ij * C + c) = w.col(c * K * K + ij);
  return out;
}

template <typename T>
Matrix<T> random_matrix(Index rows, Index cols, std::mt19937_64& gen) {
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  Matrix<T> m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<T>(u(gen));
  return m;
}

template <typename A, typename B>
double rel_err(const A& a, const B& b) {
  const double scale = std::max(1.0, static_cast<double>(b.cwiseAbs().maxCoeff()));
  return static_cast<double>((a - b).cwiseAbs().maxCoeff()) / scale;
}

struct Case {
  const char* name;
  Index C, H, W, OC, K, s, p;
};

// The library's Conv2d (bound to its own parameter and gradient buffers, random weights) and the
// NHWC layer with the same weights, both with the given workspace bound.
template <typename T>
struct LayerPair {
  LayerPair(const Case& c, std::size_t workspace, std::mt19937_64& gen)
      : lib({c.C, c.H, c.W}, c.OC, c.K, c.s, c.p),
        values(static_cast<std::size_t>(lib.parameter_count())),
        grads(static_cast<std::size_t>(lib.parameter_count()), T(0)),
        mine({c.C, c.H, c.W}, c.OC, c.K, c.s, c.p) {
    lib.bind(values.data(), grads.data());
    lib.weight() = random_matrix<T>(lib.weight().rows(), lib.weight().cols(), gen);
    lib.bias() = random_matrix<T>(c.OC, 1, gen);
    lib.set_workspace_limit(workspace);
    mine.weight() = weight_to_nhwc(lib.weight(), c.C, c.K);
    mine.bias() = lib.bias();
    mine.set_workspace_limit(workspace);
  }
  mlvae::Conv2d<T> lib;
  std::vector<T> values, grads;  // lib's parameters and gradients
  ConvNhwc<T> mine;
};

// Compares the NHWC layer with the library's Conv2d on one geometry; small workspace forces chunks.
template <typename T>
bool compare_with_library(const Case& c, Index batch, std::size_t workspace, double tol, std::mt19937_64& gen) {
  LayerPair<T> pair(c, workspace, gen);
  mlvae::Conv2d<T>& lib = pair.lib;
  ConvNhwc<T>& mine = pair.mine;
  std::vector<T>& grads = pair.grads;

  const Matrix<T> x = random_matrix<T>(lib.input_size(), batch, gen);
  const Matrix<T> dy = random_matrix<T>(lib.output_size(), batch, gen);
  const Index OH = lib.output_shape().height, OW = lib.output_shape().width;

  const Matrix<T>& y_lib = lib.forward(x);
  const Matrix<T> x_nhwc = nchw_to_nhwc(x, c.C, c.H, c.W);
  const Matrix<T>& y_mine = mine.forward(x_nhwc);
  const double e_y = rel_err(nhwc_to_nchw(y_mine, c.OC, OH, OW), y_lib);

  const Matrix<T>& dx_lib = lib.backward(dy);
  const Matrix<T>& dx_mine = mine.backward(nchw_to_nhwc(dy, c.OC, OH, OW));
  const double e_dx = rel_err(nhwc_to_nchw(dx_mine, c.C, c.H, c.W), dx_lib);
  const mlvae::MatrixMap<T> dw_lib(grads.data(), c.OC, lib.weight().cols());
  const double e_dw = rel_err(mine.weight_grad(), weight_to_nhwc(dw_lib, c.C, c.K));
  const mlvae::VectorMap<T> db_lib(grads.data() + c.OC * lib.weight().cols(), c.OC);
  const double e_db = rel_err(mine.bias_grad(), db_lib);
  const bool ok = e_y <= tol && e_dx <= tol && e_dw <= tol && e_db <= tol;
  std::printf("CHECK vs Conv2d %-6s %s batch=%ld chunk=%ld/%ld  y %.2e  dx %.2e  dW %.2e  db %.2e  %s\n",
              sizeof(T) == 8 ? "double" : "float", c.name, static_cast<long>(batch),
              static_cast<long>(mine.chunk_size()), static_cast<long>(lib.chunk_size()), e_y, e_dx, e_dw, e_db,
              ok ? "ok" : "FAIL");
  return ok;
}

// Central finite differences of L = Σ r ⊙ y against the NHWC backward, every W', b and x entry.
bool finite_difference_check(std::mt19937_64& gen) {
  const Index C = 3, H = 5, W = 5, OC = 4, K = 3, s = 2, p = 1, n = 2;
  ConvNhwc<double> conv({C, H, W}, OC, K, s, p);
  conv.weight() = random_matrix<double>(OC, K * K * C, gen);
  conv.bias() = random_matrix<double>(OC, 1, gen);
  Matrix<double> x = random_matrix<double>(C * H * W, n, gen);
  const Matrix<double> r = random_matrix<double>(conv.output_size(), n, gen);
  auto loss = [&]() { return conv.forward(x).cwiseProduct(r).sum(); };
  loss();
  const Matrix<double> dx = conv.backward(r);
  const Matrix<double> dw = conv.weight_grad();
  const mlvae::Vector<double> db = conv.bias_grad();
  const double h = 1e-6;
  double worst = 0;
  auto probe = [&](double& v, double analytic) {
    const double saved = v;
    v = saved + h;
    const double lp = loss();
    v = saved - h;
    const double lm = loss();
    v = saved;
    const double numeric = (lp - lm) / (2 * h);
    worst = std::max(worst, std::abs(numeric - analytic) / std::max(1.0, std::abs(analytic)));
  };
  for (Index i = 0; i < conv.weight().size(); ++i) probe(conv.weight().data()[i], dw.data()[i]);
  for (Index i = 0; i < conv.bias().size(); ++i) probe(conv.bias()[i], db[i]);
  for (Index i = 0; i < x.size(); ++i) probe(x.data()[i], dx.data()[i]);
  const bool ok = worst < 1e-7;
  std::printf("CHECK finite differences (NHWC backward, double, 2x3x5x5 k3 s2 p1 -> 4 ch): max rel err %.2e  %s\n",
              worst, ok ? "ok" : "FAIL");
  return ok;
}

// ---- timing ----------------------------------------------------------------------------------

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Timing {
  double fwd = 0, bwd = 0, fwdbwd = 0, fwdbwd_nodx = 0;  // ms per call, median
};

template <typename Layer>
Timing time_layer(Layer& layer, const Matrix<float>& x, const Matrix<float>& dy, int warmup, int reps, int iters) {
  for (int i = 0; i < warmup; ++i) {
    layer.forward(x);
    layer.backward(dy);
  }
  std::vector<double> f, b, fb, fbn;
  for (int r = 0; r < reps; ++r) {
    auto t0 = Clock::now();
    for (int i = 0; i < iters; ++i) layer.forward(x);
    f.push_back(seconds_since(t0) * 1e3 / iters);
    t0 = Clock::now();
    for (int i = 0; i < iters; ++i) layer.backward(dy);
    b.push_back(seconds_since(t0) * 1e3 / iters);
    t0 = Clock::now();
    for (int i = 0; i < iters; ++i) {
      layer.forward(x);
      layer.backward(dy);
    }
    fb.push_back(seconds_since(t0) * 1e3 / iters);
    t0 = Clock::now();
    for (int i = 0; i < iters; ++i) {  // as for a model's first layer: no input gradient
      layer.forward(x);
      layer.backward(dy, false);
    }
    fbn.push_back(seconds_since(t0) * 1e3 / iters);
  }
  return {median(f), median(b), median(fb), median(fbn)};
}

// The library's im2col + col2im alone on Conv2d's chunks: its data-movement share.
double time_library_im2col_col2im(const Case& c, Index batch, std::size_t workspace, const Matrix<float>& x, int reps,
                                  int iters) {
  const mlvae::ConvGeometry g = mlvae::make_conv_geometry({c.C, c.H, c.W}, c.K, c.s, c.p, "bench");
  const Index P = g.positions(), PK = g.patch_size();
  const std::size_t per_observation = static_cast<std::size_t>(P * (2 * PK + c.OC)) * sizeof(float);
  const Index chunk = mlvae::workspace_chunk(batch, per_observation, workspace);
  std::vector<float> cols(static_cast<std::size_t>(chunk * P * PK)), dcols(cols.size(), 0.5f);
  Matrix<float> dx(x.rows(), x.cols());
  std::vector<double> t;
  for (int r = 0; r < reps + 1; ++r) {
    const auto t0 = Clock::now();
    for (int i = 0; i < iters; ++i)
      for (Index start = 0; start < batch; start += chunk) {
        const Index count = std::min(chunk, batch - start);
        mlvae::im2col(g, x.data() + start * x.rows(), count, cols.data());
        // forward builds the patches; backward rebuilds them unless one chunk holds the batch
        if (chunk < batch) mlvae::im2col(g, x.data() + start * x.rows(), count, cols.data());
        mlvae::col2im(g, dcols.data(), count, dx.data() + start * x.rows(), true);
      }
    if (r > 0) t.push_back(seconds_since(t0) * 1e3 / iters);  // first repetition is warm-up
  }
  return median(t);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Convolution layout: the library's NCHW Conv2d vs an NHWC im2col+GEMM convolution (float timing)"};
  std::vector<int> threads{1, 2};
  int reps = 9, iters = 10, warmup = 5;
  long batch = 256;
  double workspace_mib = static_cast<double>(mlvae::default_conv_workspace_bytes) / (1 << 20);
  bool check_only = false;
  app.add_option("--threads", threads, "thread counts to time")->delimiter(',');
  app.add_option("--reps", reps, "timed repetitions (median reported)")->check(CLI::PositiveNumber);
  app.add_option("--iters", iters, "calls per repetition")->check(CLI::PositiveNumber);
  app.add_option("--warmup", warmup, "untimed forward+backward calls first")->check(CLI::NonNegativeNumber);
  app.add_option("--batch", batch, "images per call")->check(CLI::PositiveNumber);
  app.add_option("--workspace-mib", workspace_mib, "workspace bound per layer (MiB)")->check(CLI::PositiveNumber);
  app.add_flag("--check-only", check_only, "run the correctness checks only");
  CLI11_PARSE(app, argc, argv);
  const auto workspace = static_cast<std::size_t>(workspace_mib * (1 << 20));

  const Case conv1{"conv1", 1, 28, 28, 32, 4, 2, 1};
  const Case conv2{"conv2", 32, 14, 14, 64, 4, 2, 1};

  // 1. Correctness.
  std::mt19937_64 gen(20261124);
  bool ok = finite_difference_check(gen);
  const Case odd{"odd", 3, 9, 7, 5, 3, 2, 1};  // non-square, edges on both sides
  const Case wide{"wide", 2, 6, 6, 3, 3, 1, 2};
  for (const Case& c : {conv1, conv2, odd, wide}) {
    ok = compare_with_library<double>(c, 7, std::size_t{64} << 10, 1e-12, gen) && ok;  // several chunks
    ok = compare_with_library<double>(c, 7, std::size_t{1} << 30, 1e-12, gen) && ok;   // one chunk
    ok = compare_with_library<float>(c, 7, std::size_t{64} << 10, 1e-4, gen) && ok;
  }
  if (!ok) {
    std::printf("CHECK FAILED\n");
    return 1;
  }
  if (check_only) return 0;

  // 2. Timing.
  std::printf("# batch=%ld workspace=%.2f MiB reps=%d iters=%d warmup=%d\n", batch, workspace_mib, reps, iters, warmup);
  for (const Case& c : {conv1, conv2}) {
    LayerPair<float> pair(c, workspace, gen);
    mlvae::Conv2d<float>& lib = pair.lib;
    ConvNhwc<float>& mine = pair.mine;
    const Matrix<float> x = random_matrix<float>(lib.input_size(), batch, gen);
    const Matrix<float> dy = random_matrix<float>(lib.output_size(), batch, gen);
    const Matrix<float> x_nhwc = nchw_to_nhwc(x, c.C, c.H, c.W);
    const Matrix<float> dy_nhwc = nchw_to_nhwc(dy, c.OC, lib.output_shape().height, lib.output_shape().width);
    const double flop_product = 2.0 * static_cast<double>(c.OC * lib.geometry().patch_size() *
                                                          lib.geometry().positions() * batch);
    for (int t : threads) {
      mlvae::set_threads(t);
      const Timing a = time_layer(lib, x, dy, warmup, reps, iters);
      const Timing b = time_layer(mine, x_nhwc, dy_nhwc, warmup, reps, iters);
      struct Row {
        const char* pass;
        double flop, nchw, nhwc;
      };
      for (const Row& r : {Row{"fwd", flop_product, a.fwd, b.fwd}, Row{"bwd", 2 * flop_product, a.bwd, b.bwd},
                           Row{"fwdbwd", 3 * flop_product, a.fwdbwd, b.fwdbwd},
                           Row{"fwdbwd_nodx", 2 * flop_product, a.fwdbwd_nodx, b.fwdbwd_nodx}}) {
        std::printf("RESULT conv_layout layer=%s layout=nchw threads=%d pass=%s ms=%.3f gflops=%.1f chunk=%ld\n",
                    c.name, t, r.pass, r.nchw, r.flop / r.nchw * 1e-6, static_cast<long>(lib.chunk_size()));
        std::printf("RESULT conv_layout layer=%s layout=nhwc threads=%d pass=%s ms=%.3f gflops=%.1f chunk=%ld\n",
                    c.name, t, r.pass, r.nhwc, r.flop / r.nhwc * 1e-6, static_cast<long>(mine.chunk_size()));
        std::printf("RESULT conv_layout_ratio layer=%s threads=%d pass=%s nchw_over_nhwc=%.3f\n", c.name, t, r.pass,
                    r.nchw / r.nhwc);
      }
      // Phases, NHWC: timers inside the layer over `iters` forward+backward calls.
      mine.profile = true;
      mine.t_im2col = mine.t_gemm = mine.t_bias = mine.t_col2im = 0;
      const auto t0 = Clock::now();
      for (int i = 0; i < iters; ++i) {
        mine.forward(x_nhwc);
        mine.backward(dy_nhwc);
      }
      const double total = seconds_since(t0) * 1e3 / iters;
      mine.profile = false;
      const double k = 1e3 / iters;
      std::printf("RESULT conv_layout_phases layer=%s layout=nhwc threads=%d fwdbwd_ms=%.3f im2col_ms=%.3f "
                  "col2im_ms=%.3f gemm_ms=%.3f bias_ms=%.3f\n",
                  c.name, t, total, mine.t_im2col * k, mine.t_col2im * k, mine.t_gemm * k, mine.t_bias * k);
      // Phases, NCHW: the library's im2col + col2im alone on the same chunks; the rest is products
      // plus Conv2d's two copies (y -> CHW output with bias, dy -> rows) and the bias sum.
      const double data = time_library_im2col_col2im(c, batch, workspace, x, reps, iters);
      std::printf("RESULT conv_layout_phases layer=%s layout=nchw threads=%d fwdbwd_ms=%.3f im2col_col2im_ms=%.3f "
                  "rest_ms=%.3f\n",
                  c.name, t, a.fwdbwd, data, a.fwdbwd - data);
    }
  }
  return 0;
}
