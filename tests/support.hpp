// Helpers shared by the test files: a self-deleting temporary directory, byte-level file access
// for corrupting files on purpose, and doctest's substring matcher for std::string messages.
#pragma once

#include <doctest/doctest.h>

#include "mlvae/core/random.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/train/trainer.hpp"
#include "mlvae/nn/gradient_check.hpp"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <system_error>
#include <vector>

namespace mlvae_test {

/// A fresh directory under the system temp dir, removed with everything in it on destruction.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::random_device device;
    path = std::filesystem::temp_directory_path() /
           ("mlvae-test-" + std::to_string(device()) + "-" + std::to_string(device()));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path / name).string(); }
};

/// The whole file as bytes ("" when it cannot be read).
inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

/// Replaces the file's contents with `bytes`.
inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// doctest's substring matcher from a std::string (doctest 2.4.9 takes only const char*).
inline doctest::Contains contains(const std::string& s) { return doctest::Contains(s.c_str()); }

/// Synthetic data in [0, 1]: 12 features x n observations.
template <typename T = double>
mlvae::Matrix<T> toy_data(mlvae::Index n, std::uint64_t seed = 3) {
  mlvae::Rng rng(seed);
  mlvae::Matrix<T> x(12, n);
  for (mlvae::Index j = 0; j < n; ++j)
    for (mlvae::Index i = 0; i < 12; ++i) x(i, j) = static_cast<T>(rng.uniform());
  return x;
}

/// Keys 0, 1, 2, 3, 0, 1, ... for n observations.
inline std::vector<int> toy_keys(mlvae::Index n) {
  std::vector<int> k(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<int>(i % 4);
  return k;
}

/// n optimisation steps, starting a new epoch whenever one ends (as run_epoch does). `Report` is
/// the trainer's step report type (SemiSupervisedStepReport for a SemiSupervisedTrainer).
template <typename Trainer, typename Report = mlvae::StepReport>
void train_steps(Trainer& trainer, int n) {
  Report report;
  for (int done = 0; done < n;) {
    if (trainer.step(report))
      ++done;
    else
      trainer.start_epoch();
  }
}

/// A complete model loss checked against finite differences: the analytic gradient from
/// `forward_backward(batch..., noise)`, the numeric one from `evaluate(batch..., noise)`, both
/// with the same noise (a fresh copy of `noise` for every evaluation). `batch` is (x, offsets)
/// for an ML-VAE and (x) for a VAE.
struct ModelGradientCheck {
  mlvae::GradientCheckResult result;
  mlvae::Vector<double> analytic;
};

/// The same with the check's settings (e.g. a larger step for a loss of large magnitude).
template <typename Model, typename... Batch>
ModelGradientCheck check_model_gradient(const mlvae::GradientCheckOptions& options, Model& model,
                                        const mlvae::Rng& noise, const Batch&... batch);

template <typename Model, typename... Batch>
ModelGradientCheck check_model_gradient(Model& model, const mlvae::Rng& noise, const Batch&... batch) {
  return check_model_gradient(mlvae::GradientCheckOptions{}, model, noise, batch...);
}

/// Rounding in a loss of magnitude |L| puts about ε|L|/h of noise into a central difference of step
/// h: for |L| ≈ 80 (the conv models' checks) that is ~1e-8 at the default h = 1e-6, the size of the
/// tolerance on a gradient of 1e-3, while the truncation error at h = 1e-5 is still below 1e-12.
inline mlvae::GradientCheckOptions large_loss_check() {
  mlvae::GradientCheckOptions o;
  o.step = 1e-5;
  return o;
}

template <typename Model, typename... Batch>
ModelGradientCheck check_model_gradient(const mlvae::GradientCheckOptions& options, Model& model,
                                        const mlvae::Rng& noise, const Batch&... batch) {
  auto loss = [&] {
    mlvae::Rng r = noise;
    return model.evaluate(batch..., r).loss;
  };
  mlvae::Rng r = noise;
  model.forward_backward(batch..., r);
  ModelGradientCheck out;
  out.analytic = model.parameters().gradients;
  out.result = mlvae::check_gradient(loss, model.parameters().values, out.analytic, options);
  return out;
}

}  // namespace mlvae_test
