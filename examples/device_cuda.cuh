// The CUDA backend of the examples' --device switch (examples/device_backend.hpp), shared by the
// two nvcc translation units that instantiate it (device_cuda_mlp.cu, device_cuda_conv.cu; two, so
// that a parallel build compiles them side by side): a mlvae::device::DeviceTrainer on a
// CudaContext behind the DeviceSteps interface.
#pragma once

#include <mlvae/device/cuda.cuh>  // first: defines EIGEN_USE_GPU

#include <mlvae/device/trainer.hpp>

#include "device_backend.hpp"

#include <memory>

namespace mlvae_examples {

namespace detail {
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
}  // namespace detail

template <typename Model>
std::unique_ptr<DeviceSteps<Model>> make_cuda_steps(mlvae::Trainer<Model>& trainer, int index) {
  return std::make_unique<detail::CudaSteps<Model>>(trainer, index);
}

}  // namespace mlvae_examples
