/// @file
/// mlvae/train/semisupervised_trainer.hpp — semi-supervised training by the one Trainer
/// (train/trainer.hpp) with a SemiSupervisedSampler: mixed minibatches of labelled and unlabelled
/// examples, the same Adam, divergence policy and step report; and the classification error of q(y|x).
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/data/semisupervised_sampler.hpp"
#include "mlvae/model/semisupervised.hpp"
#include "mlvae/train/trainer.hpp"

#include <algorithm>
#include <vector>

namespace mlvae {

/// The Trainer of a SemiSupervisedVAE (or M2): Trainer(model, data, labelled, labels, unlabelled, options).
template <typename Model>
using SemiSupervisedTrainer = Trainer<Model, SemiSupervisedSampler>;

/// Progress of one semi-supervised training step.
using SemiSupervisedStepReport = BasicStepReport<SemiSupervisedTerms>;

/// Fraction of columns of `x` whose argmax q(y|x) differs from `labels`.
template <typename Model>
double classification_error(Model& model, const Matrix<typename Model::Scalar>& x, const std::vector<int>& labels) {
  require<ShapeError>(static_cast<Index>(labels.size()) == x.cols(), "classification_error: expected one label per ",
                      "column (", x.cols(), "), found ", labels.size());
  const std::vector<int> predicted = model.predict(x);
  Index wrong = 0;
  for (std::size_t j = 0; j < labels.size(); ++j) wrong += predicted[j] != labels[j] ? 1 : 0;
  return static_cast<double>(wrong) / static_cast<double>(std::max<Index>(1, x.cols()));
}

}  // namespace mlvae
