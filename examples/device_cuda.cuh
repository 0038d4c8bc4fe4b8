// The CUDA backend of the examples' --device switch (examples/device_backend.hpp), shared by the
// two nvcc translation units that instantiate it (device_cuda_mlp.cu, device_cuda_conv.cu; two, so
// that a parallel build compiles them side by side): the Trainer's steps on a CudaContext.
#pragma once

#include <mlvae/device/cuda.cuh>  // first: defines EIGEN_USE_GPU

#include <mlvae/device/trainer.hpp>

#include "device_backend.hpp"

#include <memory>

namespace mlvae_examples {

template <typename Model>
void put_on_cuda(mlvae::Trainer<Model>& trainer, int index) {
  mlvae::device::put_on(trainer, std::make_shared<mlvae::device::CudaContext>(index));
}

}  // namespace mlvae_examples
