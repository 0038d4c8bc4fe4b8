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

/// Encoder trunk with two hidden layers: Dense, tanh, Dense, tanh.
template <typename T> using MlpTrunk2 = Sequential<Dense<T>, Tanh<T>, Dense<T>, Tanh<T>>;
/// Decoder with two hidden layers: Dense, tanh, Dense, tanh, Dense (to the likelihood's parameters).
template <typename T> using MlpDecoder2 = Sequential<Dense<T>, Tanh<T>, Dense<T>, Tanh<T>, Dense<T>>;
/// VAE encoder with two hidden layers, to [mean; log-variance].
template <typename T> using MlpEncoder2 = Sequential<Dense<T>, Tanh<T>, Dense<T>, Tanh<T>, Dense<T>>;

/// MLP ML-VAE with one hidden layer (trunk and decoder) and any likelihood.
template <typename T, typename Likelihood>
using MlpMLVAEWith = MLVAE<T, MlpTrunk<T>, MlpHead<T>, MlpHead<T>, MlpDecoder<T>, Likelihood>;
/// MLP ML-VAE with two hidden layers (trunk and decoder) and any likelihood.
template <typename T, typename Likelihood>
using Mlp2MLVAE = MLVAE<T, MlpTrunk2<T>, MlpHead<T>, MlpHead<T>, MlpDecoder2<T>, Likelihood>;
/// MLP VAE with one hidden layer and any likelihood.
template <typename T, typename Likelihood>
using MlpVAEWith = VAE<T, MlpEncoder<T>, MlpDecoder<T>, Likelihood>;
/// MLP VAE with two hidden layers and any likelihood.
template <typename T, typename Likelihood>
using Mlp2VAE = VAE<T, MlpEncoder2<T>, MlpDecoder2<T>, Likelihood>;

/// The MLP ML-VAE for `input` features with one hidden layer of `hidden` tanh units and the
/// given likelihood; the decoder outputs Likelihood::output_rows(input) rows (2·input for
/// GaussianLearnedVarianceLikelihood).
template <typename T, typename Likelihood>
MlpMLVAEWith<T, Likelihood> make_mlp_mlvae_with(Index input, Index hidden, Index style, Index content,
                                                Likelihood likelihood, MLVAEOptions<T> options = {}) {
  const Index out = Likelihood::output_rows(input);
  return MlpMLVAEWith<T, Likelihood>(
      MlpTrunk<T>(Dense<T>(input, hidden), Tanh<T>(hidden)), MlpHead<T>(Dense<T>(hidden, 2 * style)),
      MlpHead<T>(Dense<T>(hidden, 2 * content)),
      MlpDecoder<T>(Dense<T>(style + content, hidden), Tanh<T>(hidden), Dense<T>(hidden, out)), likelihood, options);
}

/// The MLP ML-VAE with two hidden layers of `hidden` tanh units in the trunk and in the decoder.
template <typename T, typename Likelihood>
Mlp2MLVAE<T, Likelihood> make_mlp2_mlvae(Index input, Index hidden, Index style, Index content, Likelihood likelihood,
                                         MLVAEOptions<T> options = {}) {
  const Index out = Likelihood::output_rows(input);
  return Mlp2MLVAE<T, Likelihood>(
      MlpTrunk2<T>(Dense<T>(input, hidden), Tanh<T>(hidden), Dense<T>(hidden, hidden), Tanh<T>(hidden)),
      MlpHead<T>(Dense<T>(hidden, 2 * style)), MlpHead<T>(Dense<T>(hidden, 2 * content)),
      MlpDecoder2<T>(Dense<T>(style + content, hidden), Tanh<T>(hidden), Dense<T>(hidden, hidden), Tanh<T>(hidden),
                     Dense<T>(hidden, out)),
      likelihood, options);
}

/// The matching MLP VAE (one hidden layer) with `latent` dims and the given likelihood.
template <typename T, typename Likelihood>
MlpVAEWith<T, Likelihood> make_mlp_vae_with(Index input, Index hidden, Index latent, Likelihood likelihood) {
  return MlpVAEWith<T, Likelihood>(
      MlpEncoder<T>(Dense<T>(input, hidden), Tanh<T>(hidden), Dense<T>(hidden, 2 * latent)),
      MlpDecoder<T>(Dense<T>(latent, hidden), Tanh<T>(hidden), Dense<T>(hidden, Likelihood::output_rows(input))),
      likelihood);
}

/// The matching MLP VAE with two hidden layers.
template <typename T, typename Likelihood>
Mlp2VAE<T, Likelihood> make_mlp2_vae(Index input, Index hidden, Index latent, Likelihood likelihood) {
  return Mlp2VAE<T, Likelihood>(
      MlpEncoder2<T>(Dense<T>(input, hidden), Tanh<T>(hidden), Dense<T>(hidden, hidden), Tanh<T>(hidden),
                     Dense<T>(hidden, 2 * latent)),
      MlpDecoder2<T>(Dense<T>(latent, hidden), Tanh<T>(hidden), Dense<T>(hidden, hidden), Tanh<T>(hidden),
                     Dense<T>(hidden, Likelihood::output_rows(input))),
      likelihood);
}

/// Builds the matching VAE with `latent` dims.
template <typename T>
MlpVAE<T> make_mlp_vae(Index input = 784, Index hidden = 500, Index latent = 20) {
  return MlpVAE<T>(MlpEncoder<T>(Dense<T>(input, hidden), Tanh<T>(hidden), Dense<T>(hidden, 2 * latent)),
                   MlpDecoder<T>(Dense<T>(latent, hidden), Tanh<T>(hidden), Dense<T>(hidden, input)));
}

}  // namespace mlvae
