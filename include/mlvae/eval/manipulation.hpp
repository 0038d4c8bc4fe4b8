// mlvae/eval/manipulation.hpp — latent manipulation with a trained ML-VAE, laid out as image grids:
// content/style swaps (rows: style of one image, columns: content of one group) and
// reconstructions from the posterior means. Content of a group is the mean of the product-of-
// Gaussians posterior of its members (test-time strategy 2; a group of one is strategy 1).
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/dist/group_posterior.hpp"

#include <vector>

namespace mlvae {

/// Posterior means of each observation's style (S x N) and of each group's content (C x G).
template <typename Model>
void infer_means(Model& model, const Matrix<typename Model::Scalar>& x, const std::vector<Index>& offsets,
                 Matrix<typename Model::Scalar>& style_mean, Matrix<typename Model::Scalar>& group_content_mean) {
  using T = typename Model::Scalar;
  Matrix<T> style_logvar, content_mean, content_logvar, group_logvar;
  model.encode(x, style_mean, style_logvar, content_mean, content_logvar);
  group_posterior(content_mean, content_logvar, offsets, group_content_mean, group_logvar);
}

/// A swap grid of (R+1) x (C+1) images as columns, row-major: cell (0,0) blank, row 0 shows one
/// member of each content group, column 0 shows each style image, and cell (r, c) decodes
/// [style of style_images.col(r-1); content of group c-1]. Returns images as columns.
template <typename Model>
Matrix<typename Model::Scalar> swap_grid(Model& model, const Matrix<typename Model::Scalar>& style_images,
                                         const Matrix<typename Model::Scalar>& content_images,
                                         const std::vector<Index>& content_offsets) {
  using T = typename Model::Scalar;
  require<ArgumentError>(style_images.cols() > 0, "swap_grid: expected at least one style image");
  const Index R = style_images.cols();
  const Index G = static_cast<Index>(content_offsets.size()) - 1;
  Matrix<T> style_mean, group_content, unused;
  {
    std::vector<Index> singles(static_cast<std::size_t>(R) + 1);
    for (Index i = 0; i <= R; ++i) singles[static_cast<std::size_t>(i)] = i;
    infer_means(model, style_images, singles, style_mean, unused);
  }
  infer_means(model, content_images, content_offsets, unused, group_content);

  Matrix<T> styles(model.style_size(), R * G), contents(model.content_size(), R * G), decoded;
  for (Index r = 0; r < R; ++r)
    for (Index c = 0; c < G; ++c) {
      styles.col(r * G + c) = style_mean.col(r);
      contents.col(r * G + c) = group_content.col(c);
    }
  model.decode_mean(styles, contents, decoded);

  const Index cols = G + 1;
  Matrix<T> grid = Matrix<T>::Zero(style_images.rows(), (R + 1) * cols);
  for (Index c = 0; c < G; ++c) grid.col(c + 1) = content_images.col(content_offsets[static_cast<std::size_t>(c)]);
  for (Index r = 0; r < R; ++r) {
    grid.col((r + 1) * cols) = style_images.col(r);
    for (Index c = 0; c < G; ++c) grid.col((r + 1) * cols + c + 1) = decoded.col(r * G + c);
  }
  return grid;
}

/// Reconstructions of `x` from the posterior means: each observation decoded from its own style
/// mean and its group's content mean.
template <typename Model>
Matrix<typename Model::Scalar> reconstruct(Model& model, const Matrix<typename Model::Scalar>& x,
                                           const std::vector<Index>& offsets) {
  using T = typename Model::Scalar;
  Matrix<T> style_mean, group_content, out;
  infer_means(model, x, offsets, style_mean, group_content);
  Matrix<T> contents(model.content_size(), x.cols());
  for (std::size_t g = 0; g + 1 < offsets.size(); ++g)
    for (Index i = offsets[g]; i < offsets[g + 1]; ++i) contents.col(i) = group_content.col(static_cast<Index>(g));
  model.decode_mean(style_mean, contents, out);
  return out;
}

}  // namespace mlvae
