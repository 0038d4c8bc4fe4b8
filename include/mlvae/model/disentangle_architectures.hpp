/// @file
/// mlvae/model/disentangle_architectures.hpp — the MLP of the β-TCVAE paper (Chen et al. 2018) for
/// 64×64 binary images: encoder 4096-1200-1200 (ReLU) to [mean; log-variance], decoder
/// latent-1200-1200-1200 (tanh)-4096 Bernoulli logits; as a VAE (β-VAE, β-TCVAE, HFVAE through
/// VAE::set_kl_decomposition) and as an ML-VAE with style and content heads on the same trunk.
/// The conv64 stack is in model/conv_architectures.hpp.
#pragma once

#include "mlvae/dist/likelihood.hpp"
#include "mlvae/model/architectures.hpp"
#include "mlvae/model/mlvae.hpp"
#include "mlvae/model/vae.hpp"
#include "mlvae/nn/activations.hpp"
#include "mlvae/nn/dense.hpp"
#include "mlvae/nn/sequential.hpp"

namespace mlvae {

/// Encoder trunk: Dense(input → hidden)+ReLU, Dense(hidden → hidden)+ReLU.
template <typename T> using ChenMlpTrunk = Sequential<Dense<T>, Relu<T>, Dense<T>, Relu<T>>;
/// VAE encoder: the trunk then Dense(hidden → 2·latent).
template <typename T> using ChenMlpEncoder = Sequential<Dense<T>, Relu<T>, Dense<T>, Relu<T>, Dense<T>>;
/// Decoder: Dense(latent → hidden)+tanh, twice Dense(hidden → hidden)+tanh, Dense(hidden → output).
template <typename T>
using ChenMlpDecoder = Sequential<Dense<T>, Tanh<T>, Dense<T>, Tanh<T>, Dense<T>, Tanh<T>, Dense<T>>;

/// The β-TCVAE paper's MLP VAE.
template <typename T> using ChenMlpVAE = VAE<T, ChenMlpEncoder<T>, ChenMlpDecoder<T>>;
/// The same layers as an ML-VAE (style and content heads on the trunk).
template <typename T> using ChenMlpMLVAE = MLVAE<T, ChenMlpTrunk<T>, MlpHead<T>, MlpHead<T>, ChenMlpDecoder<T>>;

namespace detail {
template <typename T>
ChenMlpDecoder<T> chen_mlp_decoder(Index latent, Index hidden, Index output) {
  return ChenMlpDecoder<T>(Dense<T>(latent, hidden), Tanh<T>(hidden), Dense<T>(hidden, hidden), Tanh<T>(hidden),
                           Dense<T>(hidden, hidden), Tanh<T>(hidden), Dense<T>(hidden, output));
}
}  // namespace detail

/// Builds the MLP VAE: paper setting latent 10, hidden 1200, input 4096 (64×64).
template <typename T>
ChenMlpVAE<T> make_chen_mlp_vae(Index latent = 10, Index hidden = 1200, Index input = 4096, T kl_weight = T(1)) {
  return ChenMlpVAE<T>(ChenMlpEncoder<T>(Dense<T>(input, hidden, Init::HeNormal), Relu<T>(hidden),
                                         Dense<T>(hidden, hidden, Init::HeNormal), Relu<T>(hidden),
                                         Dense<T>(hidden, 2 * latent)),
                       detail::chen_mlp_decoder<T>(latent, hidden, input), BernoulliLikelihood<T>{}, kl_weight);
}

/// Builds the MLP ML-VAE with `style` + `content` latent dimensions.
template <typename T>
ChenMlpMLVAE<T> make_chen_mlp_mlvae(Index style = 5, Index content = 5, Index hidden = 1200, Index input = 4096,
                                    MLVAEOptions<T> options = {}) {
  return ChenMlpMLVAE<T>(ChenMlpTrunk<T>(Dense<T>(input, hidden, Init::HeNormal), Relu<T>(hidden),
                                         Dense<T>(hidden, hidden, Init::HeNormal), Relu<T>(hidden)),
                         MlpHead<T>(Dense<T>(hidden, 2 * style)), MlpHead<T>(Dense<T>(hidden, 2 * content)),
                         detail::chen_mlp_decoder<T>(style + content, hidden, input), BernoulliLikelihood<T>{},
                         options);
}

}  // namespace mlvae
