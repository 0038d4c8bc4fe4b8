/// @file
/// mlvae/model/semisupervised_architectures.hpp — ready-made semi-supervised VAEs (Siddharth et al. 2017 /
/// M2): the MLP of the authors' MNIST example (encoder 784-256-ReLU, classifier Dense(256→K), style head
/// Dense(256+K→2·50), decoder (K+50)-256-ReLU-784, Bernoulli) and a conv28 variant on the conv ML-VAE's parts.
#pragma once

#include "mlvae/dist/likelihood.hpp"
#include "mlvae/model/architectures.hpp"
#include "mlvae/model/conv_architectures.hpp"
#include "mlvae/model/semisupervised.hpp"
#include "mlvae/nn/activations.hpp"
#include "mlvae/nn/dense.hpp"
#include "mlvae/nn/sequential.hpp"

namespace mlvae {

/// MLP encoder trunk: Dense(input→hidden) then ReLU.
template <typename T> using SemiMlpTrunk = Sequential<Dense<T>, Relu<T>>;
/// MLP decoder: Dense(K+latent→hidden), ReLU, Dense(hidden→output) (Bernoulli logits).
template <typename T> using SemiMlpDecoder = Sequential<Dense<T>, Relu<T>, Dense<T>>;

/// The MLP semi-supervised VAE (trunk, classifier head, style head, decoder).
template <typename T>
using MlpSemiSupervisedVAE = SemiSupervisedVAE<T, SemiMlpTrunk<T>, MlpHead<T>, MlpHead<T>, SemiMlpDecoder<T>>;

/// The conv28 semi-supervised VAE: the conv ML-VAE's trunk (256 features) and decoder.
template <typename T>
using Conv28SemiSupervisedVAE = SemiSupervisedVAE<T, Conv28Trunk<T>, MlpHead<T>, MlpHead<T>, Conv28Decoder<T>>;

/// Builds the MLP model: `input`-`hidden`-ReLU trunk, Dense(hidden→classes) logits, Dense(hidden+classes→2·latent)
/// style head, decoder (classes+latent)-`hidden`-ReLU-`input`. The authors' MNIST setting: 784, 256, 10, 50.
template <typename T>
MlpSemiSupervisedVAE<T> make_mlp_semisupervised(Index input = 784, Index hidden = 256, Index classes = 10,
                                                Index latent = 50, SemiSupervisedOptions<T> options = {}) {
  return MlpSemiSupervisedVAE<T>(
      SemiMlpTrunk<T>(Dense<T>(input, hidden, Init::HeNormal), Relu<T>(hidden)),
      MlpHead<T>(Dense<T>(hidden, classes)), MlpHead<T>(Dense<T>(hidden + classes, 2 * latent)),
      SemiMlpDecoder<T>(Dense<T>(classes + latent, hidden, Init::HeNormal), Relu<T>(hidden), Dense<T>(hidden, input)),
      BernoulliLikelihood<T>{}, options);
}

/// Builds the conv28 model (1×28×28 images): Conv28Trunk, Dense(256→classes), Dense(256+classes→2·latent),
/// the conv28 decoder from classes+latent inputs.
template <typename T>
Conv28SemiSupervisedVAE<T> make_conv28_semisupervised(Index classes = 10, Index latent = 50,
                                                      SemiSupervisedOptions<T> options = {}) {
  const Index hidden = 256;
  return Conv28SemiSupervisedVAE<T>(
      Conv28Trunk<T>(Conv2d<T>(ImageShape{1, 28, 28}, 32, 4, 2, 1), Relu<T>(32 * 14 * 14),
                     Conv2d<T>(ImageShape{32, 14, 14}, 64, 4, 2, 1), Relu<T>(64 * 7 * 7),
                     Reshape<T>(ImageShape{64, 7, 7}, 64 * 7 * 7), Dense<T>(64 * 7 * 7, hidden, Init::HeNormal),
                     Relu<T>(hidden)),
      MlpHead<T>(Dense<T>(hidden, classes)), MlpHead<T>(Dense<T>(hidden + classes, 2 * latent)),
      detail::conv28_decoder<T>(classes + latent, hidden), BernoulliLikelihood<T>{}, options);
}

}  // namespace mlvae
