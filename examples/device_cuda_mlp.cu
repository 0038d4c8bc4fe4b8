// The examples' --device cuda backend for the MLP ML-VAEs of train_mlvae and the MLP VAE baselines of
// evaluate_mlvae (one or two hidden layers;
// Bernoulli, Gaussian and learned-variance Gaussian likelihoods). Compiled by nvcc only when
// MLVAE_ENABLE_CUDA=ON (cmake/mlvae_cuda.cmake).
#include "device_cuda.cuh"  // first: defines EIGEN_USE_GPU

#include <mlvae/model/architectures.hpp>

namespace mlvae_examples {

#define MLVAE_EXAMPLES_INSTANTIATE(...) \
  template void put_on_cuda(mlvae::Trainer<__VA_ARGS__>&, int);
MLVAE_EXAMPLES_INSTANTIATE(mlvae::MlpMLVAEWith<float, mlvae::BernoulliLikelihood<float>>)
MLVAE_EXAMPLES_INSTANTIATE(mlvae::MlpMLVAEWith<float, mlvae::GaussianLikelihood<float>>)
MLVAE_EXAMPLES_INSTANTIATE(mlvae::MlpMLVAEWith<float, mlvae::GaussianLearnedVarianceLikelihood<float>>)
MLVAE_EXAMPLES_INSTANTIATE(mlvae::Mlp2MLVAE<float, mlvae::BernoulliLikelihood<float>>)
MLVAE_EXAMPLES_INSTANTIATE(mlvae::Mlp2MLVAE<float, mlvae::GaussianLikelihood<float>>)
MLVAE_EXAMPLES_INSTANTIATE(mlvae::Mlp2MLVAE<float, mlvae::GaussianLearnedVarianceLikelihood<float>>)
// evaluate_mlvae's VAE baselines
MLVAE_EXAMPLES_INSTANTIATE(mlvae::MlpVAEWith<float, mlvae::BernoulliLikelihood<float>>)
MLVAE_EXAMPLES_INSTANTIATE(mlvae::MlpVAEWith<float, mlvae::GaussianLikelihood<float>>)
MLVAE_EXAMPLES_INSTANTIATE(mlvae::MlpVAEWith<float, mlvae::GaussianLearnedVarianceLikelihood<float>>)
MLVAE_EXAMPLES_INSTANTIATE(mlvae::Mlp2VAE<float, mlvae::BernoulliLikelihood<float>>)
MLVAE_EXAMPLES_INSTANTIATE(mlvae::Mlp2VAE<float, mlvae::GaussianLikelihood<float>>)
MLVAE_EXAMPLES_INSTANTIATE(mlvae::Mlp2VAE<float, mlvae::GaussianLearnedVarianceLikelihood<float>>)
#undef MLVAE_EXAMPLES_INSTANTIATE

}  // namespace mlvae_examples
