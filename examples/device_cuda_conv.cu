// The examples' --device cuda backend for the conv ML-VAEs (conv28, conv64), and the device check.
// Compiled by nvcc only when MLVAE_ENABLE_CUDA=ON (cmake/mlvae_cuda.cmake).
#include "device_cuda.cuh"  // first: defines EIGEN_USE_GPU

#include <mlvae/model/conv_architectures.hpp>

#include <string>

namespace mlvae_examples {

std::string cuda_unavailable_reason(int index) {
  std::string reason = mlvae::device::cuda_unavailable_reason();
  if (reason.empty() && (index < 0 || index >= mlvae::device::cuda_device_count()))
    reason = "no CUDA device found with index " + std::to_string(index) + " (" +
             std::to_string(mlvae::device::cuda_device_count()) + " visible)";
  return reason;
}

template void put_on_cuda(mlvae::Trainer<mlvae::Conv28MLVAE<float>>&, int);
template void put_on_cuda(mlvae::Trainer<mlvae::Conv64MLVAE<float>>&, int);
template void put_on_cuda(mlvae::Trainer<mlvae::Conv28VAE<float>>&, int);  // evaluate_mlvae's conv28 baseline

}  // namespace mlvae_examples
