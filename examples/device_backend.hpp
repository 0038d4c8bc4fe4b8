// The --device switch of the examples: `cpu` trains with mlvae's CPU Trainer (the fast CPU path);
// `cuda` or `cuda:N` runs the same Trainer's steps on an NVIDIA GPU through the device layer
// (include/mlvae/device/), whose CUDA part lives in examples/device_cuda_*.cu and is compiled by nvcc
// only when the build has MLVAE_ENABLE_CUDA=ON (cmake/mlvae_cuda.cmake). Without a usable GPU,
// or in a build without CUDA, opening `cuda` throws mlvae::Error starting "no CUDA device found".
#pragma once

#include <mlvae/core/error.hpp>
#include <mlvae/train/trainer.hpp>

#include <cctype>
#include <functional>
#include <memory>
#include <string>

namespace mlvae_examples {

/// A parsed --device value.
struct DeviceChoice {
  bool cuda = false;        ///< false: the CPU
  int index = 0;            ///< the CUDA device number (cuda:N)
  std::string text = "cpu"; ///< as given
};

/// Parses "cpu", "cuda" or "cuda:N"; throws mlvae::ArgumentError otherwise.
inline DeviceChoice parse_device(const std::string& text) {
  DeviceChoice c;
  c.text = text;
  if (text == "cpu") return c;
  c.cuda = true;
  if (text == "cuda") return c;
  const std::string prefix = "cuda:";
  bool ok = text.size() > prefix.size() && text.size() <= prefix.size() + 4 &&
            text.compare(0, prefix.size(), prefix) == 0;
  for (std::size_t i = prefix.size(); ok && i < text.size(); ++i)
    ok = std::isdigit(static_cast<unsigned char>(text[i])) != 0;
  mlvae::require<mlvae::ArgumentError>(ok, "--device: expected cpu, cuda or cuda:N, found '", text, "'");
  c.index = std::stoi(text.substr(prefix.size()));
  return c;
}

/// A host Trainer's steps on a device (mlvae::device::DeviceTrainer behind a virtual interface, so
/// that the example's .cpp needs no CUDA header). The host Trainer keeps sampler, noise and
/// counters; call sync_to_host() before a checkpoint or a CPU evaluation.
template <typename Model>
class DeviceSteps : public mlvae::EpochLoop<DeviceSteps<Model>, mlvae::StepReport, mlvae::LossTerms> {
public:
  virtual ~DeviceSteps() = default;
  /// One step (mlvae::Trainer::step's semantics); false at the end of the epoch.
  virtual bool step(mlvae::StepReport& report) = 0;
  /// Parameters and Adam state back into the host Trainer.
  virtual void sync_to_host() = 0;
  /// "cuda:0 (NVIDIA ...)".
  virtual std::string describe() const = 0;
  // continue_epoch(): the rest of the epoch, from mlvae::EpochLoop (train/training_loop.hpp).
};

#ifdef MLVAE_EXAMPLES_WITH_CUDA
/// Defined in examples/device_cuda_*.cu for train_mlvae's ML-VAEs (MLP with each likelihood, conv28, conv64).
template <typename Model>
std::unique_ptr<DeviceSteps<Model>> make_cuda_steps(mlvae::Trainer<Model>& trainer, int index);
/// Why CUDA device `index` cannot be used ("" when it can); defined in examples/device_cuda_conv.cu.
std::string cuda_unavailable_reason(int index);
#endif

/// Throws mlvae::Error "no CUDA device found ..." when `choice` asks for a GPU this program cannot
/// use (call it before loading data, so the user hears at once).
inline void check_device(const DeviceChoice& choice) {
  if (!choice.cuda) return;
#ifdef MLVAE_EXAMPLES_WITH_CUDA
  const std::string reason = cuda_unavailable_reason(choice.index);
  if (!reason.empty()) mlvae::raise_error<mlvae::Error>(reason);
#else
  mlvae::raise_error<mlvae::Error>(
      "no CUDA device found: this program was built without CUDA support (configure with "
      "-DMLVAE_ENABLE_CUDA=ON on a machine with the CUDA toolkit)");
#endif
}

/// The device steps for `choice` (nullptr for the CPU), uploading the trainer's current state.
/// Throws mlvae::Error "no CUDA device found ..." when CUDA was asked for and cannot be used.
template <typename Model>
std::unique_ptr<DeviceSteps<Model>> open_device(const DeviceChoice& choice, mlvae::Trainer<Model>& trainer) {
  check_device(choice);
#ifdef MLVAE_EXAMPLES_WITH_CUDA
  if (choice.cuda) return make_cuda_steps(trainer, choice.index);
#else
  (void)trainer;
#endif
  return nullptr;
}

}  // namespace mlvae_examples
