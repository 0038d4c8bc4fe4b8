/// @file
/// mlvae/model/conv_architectures.hpp — convolutional ML-VAE and VAE configurations (train_mlvae
/// --arch conv28|conv64). Every conv is k4, s2, p1, so each halves the image: OH = (H + 2 − 4)/2 + 1 = H/2,
/// and each transposed conv doubles it: OH = (H − 1)·2 − 2 + 4 = 2H. Bernoulli logits out.
#pragma once

#include "mlvae/dist/likelihood.hpp"
#include "mlvae/model/architectures.hpp"
#include "mlvae/model/mlvae.hpp"
#include "mlvae/model/vae.hpp"
#include "mlvae/nn/activations.hpp"
#include "mlvae/nn/conv2d.hpp"
#include "mlvae/nn/conv_transpose2d.hpp"
#include "mlvae/nn/dense.hpp"
#include "mlvae/nn/reshape.hpp"
#include "mlvae/nn/sequential.hpp"

#include <tuple>
#include <utility>

namespace mlvae {

// ---- conv28: 1×28×28 (MNIST / Fashion-MNIST) --------------------------------------------------

/// 1x28x28 → Conv(32,k4,s2,p1)+ReLU → 32x14x14 → Conv(64)+ReLU → 64x7x7 → flatten 3136 → 256+ReLU.
template <typename T>
using Conv28Trunk = Sequential<Conv2d<T>, Relu<T>, Conv2d<T>, Relu<T>, Reshape<T>, Dense<T>, Relu<T>>;
/// The trunk followed by Dense(256 → 2·latent): the plain VAE's encoder.
template <typename T>
using Conv28Encoder = Sequential<Conv2d<T>, Relu<T>, Conv2d<T>, Relu<T>, Reshape<T>, Dense<T>, Relu<T>, Dense<T>>;
/// latent → 256+ReLU → 3136+ReLU → 64x7x7 → ConvT(32)+ReLU → 32x14x14 → ConvT(1) → 1x28x28 logits.
template <typename T>
using Conv28Decoder = Sequential<Dense<T>, Relu<T>, Dense<T>, Relu<T>, Reshape<T>, ConvTranspose2d<T>, Relu<T>,
                                 ConvTranspose2d<T>>;

/// Convolutional ML-VAE for 28×28 grey images.
template <typename T>
using Conv28MLVAE = MLVAE<T, Conv28Trunk<T>, MlpHead<T>, MlpHead<T>, Conv28Decoder<T>>;
/// The matching plain VAE.
template <typename T>
using Conv28VAE = VAE<T, Conv28Encoder<T>, Conv28Decoder<T>>;

namespace detail {
template <typename T>
Conv28Decoder<T> conv28_decoder(Index latent, Index hidden) {
  return Conv28Decoder<T>(Dense<T>(latent, hidden, Init::HeNormal), Relu<T>(hidden),
                          Dense<T>(hidden, 64 * 7 * 7, Init::HeNormal), Relu<T>(64 * 7 * 7),
                          Reshape<T>(ImageShape{64 * 7 * 7, 1, 1}, ImageShape{64, 7, 7}),
                          ConvTranspose2d<T>(ImageShape{64, 7, 7}, 32, 4, 2, 1), Relu<T>(32 * 14 * 14),
                          ConvTranspose2d<T>(ImageShape{32, 14, 14}, 1, 4, 2, 1, 0, Init::GlorotUniform));
}
}  // namespace detail

/// Builds the conv28 ML-VAE: trunk as Conv28Trunk (256 features), heads Dense(256 → 2·style) and
/// Dense(256 → 2·content), decoder Conv28Decoder, Bernoulli likelihood over 784 pixels.
template <typename T>
Conv28MLVAE<T> make_conv28_mlvae(Index style = 10, Index content = 10, MLVAEOptions<T> options = {}) {
  const Index hidden = 256;
  return Conv28MLVAE<T>(
      Conv28Trunk<T>(Conv2d<T>(ImageShape{1, 28, 28}, 32, 4, 2, 1), Relu<T>(32 * 14 * 14),
                     Conv2d<T>(ImageShape{32, 14, 14}, 64, 4, 2, 1), Relu<T>(64 * 7 * 7),
                     Reshape<T>(ImageShape{64, 7, 7}, 64 * 7 * 7), Dense<T>(64 * 7 * 7, hidden, Init::HeNormal),
                     Relu<T>(hidden)),
      MlpHead<T>(Dense<T>(hidden, 2 * style)), MlpHead<T>(Dense<T>(hidden, 2 * content)),
      detail::conv28_decoder<T>(style + content, hidden), BernoulliLikelihood<T>{}, options);
}

/// Builds the conv28 VAE with `latent` dims (encoder = the conv28 trunk + Dense(256 → 2·latent)).
template <typename T>
Conv28VAE<T> make_conv28_vae(Index latent = 20) {
  const Index hidden = 256;
  return Conv28VAE<T>(
      Conv28Encoder<T>(Conv2d<T>(ImageShape{1, 28, 28}, 32, 4, 2, 1), Relu<T>(32 * 14 * 14),
                       Conv2d<T>(ImageShape{32, 14, 14}, 64, 4, 2, 1), Relu<T>(64 * 7 * 7),
                       Reshape<T>(ImageShape{64, 7, 7}, 64 * 7 * 7), Dense<T>(64 * 7 * 7, hidden, Init::HeNormal),
                       Relu<T>(hidden), Dense<T>(hidden, 2 * latent)),
      detail::conv28_decoder<T>(latent, hidden));
}

// ---- conv64: 1×64×64 (dSprites-like) ----------------------------------------------------------

/// 1x64x64 → four Conv(k4,s2,p1)+ReLU, channels 32, 32, 64, 64 (64 → 32 → 16 → 8 → 4) → flatten 1024
/// → 256+ReLU.
template <typename T>
using Conv64Trunk = Sequential<Conv2d<T>, Relu<T>, Conv2d<T>, Relu<T>, Conv2d<T>, Relu<T>, Conv2d<T>, Relu<T>,
                               Reshape<T>, Dense<T>, Relu<T>>;
/// The trunk followed by Dense(256 → 2·latent).
template <typename T>
using Conv64Encoder = Sequential<Conv2d<T>, Relu<T>, Conv2d<T>, Relu<T>, Conv2d<T>, Relu<T>, Conv2d<T>, Relu<T>,
                                 Reshape<T>, Dense<T>, Relu<T>, Dense<T>>;
/// Mirror: latent → 256+ReLU → 1024+ReLU → 64x4x4 → ConvT(64)+ReLU → 8 → ConvT(32)+ReLU → 16
/// → ConvT(32)+ReLU → 32 → ConvT(1) → 1x64x64 logits.
template <typename T>
using Conv64Decoder = Sequential<Dense<T>, Relu<T>, Dense<T>, Relu<T>, Reshape<T>, ConvTranspose2d<T>, Relu<T>,
                                 ConvTranspose2d<T>, Relu<T>, ConvTranspose2d<T>, Relu<T>, ConvTranspose2d<T>>;

/// Convolutional ML-VAE for 64×64 grey images.
template <typename T>
using Conv64MLVAE = MLVAE<T, Conv64Trunk<T>, MlpHead<T>, MlpHead<T>, Conv64Decoder<T>>;
/// The matching plain VAE.
template <typename T>
using Conv64VAE = VAE<T, Conv64Encoder<T>, Conv64Decoder<T>>;

namespace detail {
template <typename T>
Conv64Decoder<T> conv64_decoder(Index latent, Index hidden) {
  return Conv64Decoder<T>(Dense<T>(latent, hidden, Init::HeNormal), Relu<T>(hidden),
                          Dense<T>(hidden, 64 * 4 * 4, Init::HeNormal), Relu<T>(64 * 4 * 4),
                          Reshape<T>(ImageShape{64 * 4 * 4, 1, 1}, ImageShape{64, 4, 4}),
                          ConvTranspose2d<T>(ImageShape{64, 4, 4}, 64, 4, 2, 1), Relu<T>(64 * 8 * 8),
                          ConvTranspose2d<T>(ImageShape{64, 8, 8}, 32, 4, 2, 1), Relu<T>(32 * 16 * 16),
                          ConvTranspose2d<T>(ImageShape{32, 16, 16}, 32, 4, 2, 1), Relu<T>(32 * 32 * 32),
                          ConvTranspose2d<T>(ImageShape{32, 32, 32}, 1, 4, 2, 1, 0, Init::GlorotUniform));
}
template <typename T>
auto conv64_convs() {
  return std::make_tuple(Conv2d<T>(ImageShape{1, 64, 64}, 32, 4, 2, 1), Relu<T>(32 * 32 * 32),
                         Conv2d<T>(ImageShape{32, 32, 32}, 32, 4, 2, 1), Relu<T>(32 * 16 * 16),
                         Conv2d<T>(ImageShape{32, 16, 16}, 64, 4, 2, 1), Relu<T>(64 * 8 * 8),
                         Conv2d<T>(ImageShape{64, 8, 8}, 64, 4, 2, 1), Relu<T>(64 * 4 * 4),
                         Reshape<T>(ImageShape{64, 4, 4}, 64 * 4 * 4));
}
}  // namespace detail

/// Builds the conv64 ML-VAE: Conv64Trunk (256 features), Dense heads, Conv64Decoder, Bernoulli
/// likelihood over 4096 pixels.
template <typename T>
Conv64MLVAE<T> make_conv64_mlvae(Index style = 10, Index content = 10, MLVAEOptions<T> options = {}) {
  const Index hidden = 256;
  auto trunk = std::make_from_tuple<Conv64Trunk<T>>(std::tuple_cat(
      detail::conv64_convs<T>(), std::make_tuple(Dense<T>(64 * 4 * 4, hidden, Init::HeNormal), Relu<T>(hidden))));
  return Conv64MLVAE<T>(std::move(trunk), MlpHead<T>(Dense<T>(hidden, 2 * style)),
                        MlpHead<T>(Dense<T>(hidden, 2 * content)), detail::conv64_decoder<T>(style + content, hidden),
                        BernoulliLikelihood<T>{}, options);
}

/// Builds the conv64 VAE with `latent` dims.
template <typename T>
Conv64VAE<T> make_conv64_vae(Index latent = 10) {
  const Index hidden = 256;
  auto encoder = std::make_from_tuple<Conv64Encoder<T>>(
      std::tuple_cat(detail::conv64_convs<T>(), std::make_tuple(Dense<T>(64 * 4 * 4, hidden, Init::HeNormal),
                                                                Relu<T>(hidden), Dense<T>(hidden, 2 * latent))));
  return Conv64VAE<T>(std::move(encoder), detail::conv64_decoder<T>(latent, hidden));
}

}  // namespace mlvae
