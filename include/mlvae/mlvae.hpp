// mlvae/mlvae.hpp — the whole public API of mlvae in one include.
// Header-only C++17 on Eigen: layers with hand-derived backprop, Gaussian/group-posterior
// distributions, ML-VAE and VAE models, Adam, grouped minibatches, IDX data, PNG output.
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/random.hpp"
#include "mlvae/core/threads.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/data/grouped_sampler.hpp"
#include "mlvae/data/idx.hpp"
#include "mlvae/dist/gaussian.hpp"
#include "mlvae/dist/group_posterior.hpp"
#include "mlvae/dist/likelihood.hpp"
#include "mlvae/eval/manipulation.hpp"
#include "mlvae/io/png.hpp"
#include "mlvae/model/architectures.hpp"
#include "mlvae/model/loss_terms.hpp"
#include "mlvae/model/mlvae.hpp"
#include "mlvae/model/vae.hpp"
#include "mlvae/nn/activations.hpp"
#include "mlvae/nn/dense.hpp"
#include "mlvae/nn/gradient_check.hpp"
#include "mlvae/nn/layer.hpp"
#include "mlvae/nn/sequential.hpp"
#include "mlvae/optim/adam.hpp"
#include "mlvae/train/trainer.hpp"
