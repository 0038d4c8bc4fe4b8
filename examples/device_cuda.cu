// The CUDA backend of the examples' --device switch (examples/device_backend.hpp): a
// mlvae::device::DeviceTrainer on a CudaContext behind the DeviceSteps interface, instantiated for
// the examples' architectures. Compiled by nvcc only when MLVAE_ENABLE_CUDA=ON.
#include <mlvae/device/cuda.cuh>  // first: defines EIGEN_USE_GPU

#include <mlvae/device/trainer.hpp>
#include <mlvae/model/architectures.hpp>
#include <mlvae/model/conv_architectures.hpp>

#include "device_backend.hpp"

#include <string>

namespace mlvae_examples {

namespace {
template <typename Model>
class CudaSteps final : public DeviceSteps<Model> {
public:
  CudaSteps(mlvae::Trainer<Model>& trainer, int index) : context_(index), device_(trainer, context_) {}
  bool step(mlvae::StepReport& report) override { return device_.step(report); }
  void sync_to_host() override { device_.sync_to_host(); }
  std::string describe() const override { return context_.describe(); }

private:
  mlvae::device::CudaContext context_;
  mlvae::device::DeviceTrainer<Model, mlvae::device::CudaContext> device_;
};
}  // namespace

std::string cuda_unavailable_reason(int index) {
  std::string reason = mlvae::device::cuda_unavailable_reason();
  if (reason.empty() && (index < 0 || index >= mlvae::device::cuda_device_count()))
    reason = "no CUDA device found with index " + std::to_string(index) + " (" +
             std::to_string(mlvae::device::cuda_device_count()) + " visible)";
  return reason;
}

template <typename Model>
std::unique_ptr<DeviceSteps<Model>> make_cuda_steps(mlvae::Trainer<Model>& trainer, int index) {
  return std::make_unique<CudaSteps<Model>>(trainer, index);
}

template std::unique_ptr<DeviceSteps<mlvae::MlpMLVAE<float>>> make_cuda_steps(mlvae::Trainer<mlvae::MlpMLVAE<float>>&,
                                                                               int);
template std::unique_ptr<DeviceSteps<mlvae::Conv28MLVAE<float>>> make_cuda_steps(
    mlvae::Trainer<mlvae::Conv28MLVAE<float>>&, int);
template std::unique_ptr<DeviceSteps<mlvae::Conv64MLVAE<float>>> make_cuda_steps(
    mlvae::Trainer<mlvae::Conv64MLVAE<float>>&, int);

}  // namespace mlvae_examples
