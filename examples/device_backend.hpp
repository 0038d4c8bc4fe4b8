// The --device switch of the examples: `cpu` trains with mlvae's Trainer on the CPU model (the fast
// CPU path); `cuda` or `cuda:N` runs the same Trainer's steps on an NVIDIA GPU through the device layer
// (include/mlvae/device/), whose CUDA part lives in examples/device_cuda_*.cu and is compiled by nvcc
// only when the build has MLVAE_ENABLE_CUDA=ON (cmake/mlvae_cuda.cmake). Without a usable GPU,
// or in a build without CUDA, opening `cuda` throws mlvae::Error starting "no CUDA device found".
#pragma once

#include <mlvae/core/error.hpp>
#include <mlvae/device/support.hpp>
#include <mlvae/train/trainer.hpp>

#include <cctype>
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

#ifdef MLVAE_EXAMPLES_WITH_CUDA
/// Runs `trainer`'s steps on CUDA device `index` from now on (mlvae::device::put_on with a CudaContext
/// the trainer keeps alive); defined in examples/device_cuda_*.cu for train_mlvae's ML-VAEs (MLP with
/// each likelihood, conv28, conv64).
template <typename Model>
void put_on_cuda(mlvae::Trainer<Model>& trainer, int index);
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

/// Runs `trainer`'s steps on the device `choice` names (nothing changes for the CPU), uploading the
/// trainer's current state; trainer.device() names it afterwards. Throws mlvae::Error "no CUDA device
/// found ..." when CUDA was asked for and cannot be used, and ArgumentError naming the option when
/// the device step cannot compute one of the model's options.
template <typename Model, typename Sampler>
void open_device(const DeviceChoice& choice, mlvae::Trainer<Model, Sampler>& trainer) {
  if (!choice.cuda) return;
  if constexpr (!mlvae::device::detail::device_runs_v<Model, Sampler>) {
    mlvae::device::refuse_device(trainer.model(), choice.text);  // before looking for a GPU: not a GPU problem
  } else {
    check_device(choice);
#ifdef MLVAE_EXAMPLES_WITH_CUDA
    put_on_cuda(trainer, choice.index);
#else
    (void)trainer;
#endif
  }
}

}  // namespace mlvae_examples
