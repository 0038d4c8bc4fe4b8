/// @file
/// mlvae/model/architectures.hpp — ready-made model configurations, e.g. the MLP of the ML-VAE
/// paper's MNIST experiments: encoder 784-500-tanh with style and content heads, decoder
/// (style+content)-500-tanh-784 with a Bernoulli likelihood.
#pragma once

#include "mlvae/nn/activations.hpp"
#include "mlvae/nn/dense.hpp"
#include "mlvae/nn/sequential.hpp"
#include "mlvae/model/mlvae.hpp"
#include "mlvae/model/vae.hpp"

namespace mlvae {

/// Encoder trunk of the MLP ML-VAE: Dense(input->hidden) then tanh.
template <typename T> using MlpTrunk = Sequential<Dense<T>, Tanh<T>>;
/// A latent head of the MLP ML-VAE: one Dense(hidden->2·latent) to [mean; log-variance].
template <typename T> using MlpHead = Sequential<Dense<T>>;
/// MLP decoder: Dense(latent->hidden), tanh, Dense(hidden->output) (Bernoulli logits).
template <typename T> using MlpDecoder = Sequential<Dense<T>, Tanh<T>, Dense<T>>;
/// MLP VAE encoder: Dense(input->hidden), tanh, Dense(hidden->2·latent) to [mean; log-variance].
template <typename T> using MlpEncoder = Sequential<Dense<T>, Tanh<T>, Dense<T>>;

/// The paper's MLP ML-VAE.
template <typename T>
using MlpMLVAE = MLVAE<T, MlpTrunk<T>, MlpHead<T>, MlpHead<T>, MlpDecoder<T>>;

/// The matching plain VAE (latent = style + content dims).
template <typename T>
using MlpVAE = VAE<T, MlpEncoder<T>, MlpDecoder<T>>;

/// Builds the MLP ML-VAE: `input`-`hidden`-tanh trunk, heads to 2·style and 2·content, decoder
/// (style+content)-`hidden`-tanh-`input` logits. Paper setting: 784, 500, 10, 10.
template <typename T>
MlpMLVAE<T> make_mlp_mlvae(Index input = 784, Index hidden = 500, Index style = 10, Index content = 10,
                           MLVAEOptions<T> options = {}) {
  return MlpMLVAE<T>(MlpTrunk<T>(Dense<T>(input, hidden), Tanh<T>(hidden)), MlpHead<T>(Dense<T>(hidden, 2 * style)),
                     MlpHead<T>(Dense<T>(hidden, 2 * content)),
                     MlpDecoder<T>(Dense<T>(style + content, hidden), Tanh<T>(hidden), Dense<T>(hidden, input)),
                     BernoulliLikelihood<T>{}, options);
}

/// Builds the matching VAE with `latent` dims.
template <typename T>
MlpVAE<T> make_mlp_vae(Index input = 784, Index hidden = 500, Index latent = 20) {
  return MlpVAE<T>(MlpEncoder<T>(Dense<T>(input, hidden), Tanh<T>(hidden), Dense<T>(hidden, 2 * latent)),
                   MlpDecoder<T>(Dense<T>(latent, hidden), Tanh<T>(hidden), Dense<T>(hidden, input)));
}

}  // namespace mlvae
