/// @file
/// mlvae/eval/manipulation.hpp — latent manipulation with a trained ML-VAE, laid out as image grids:
/// content/style swaps (rows: style of one image, columns: content of one group) and
/// reconstructions from the posterior means. Content of a group is the mean of the product-of-
/// Gaussians posterior of its members (test-time strategy 2; a group of one is strategy 1).
/// Also: interpolation in content or in style between two images, and generation of new members
/// of a group (content fixed to the group's posterior mean, style drawn from the prior N(0, I)).
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/random.hpp"
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

/// Which latent an interpolation grid varies.
enum class InterpolatedLatent { Content, Style };

/// Interpolation grid: one row per pair (from.col(r), to.col(r)), `steps` + 2 columns: the source
/// image, `steps` decodings at t = 0 .. 1 (evenly spaced), the target image. For Content the style
/// stays the source's and the content moves from the source's to the target's; for Style the
/// reverse. Each image's codes are its own posterior means (strategy 1). Row-major cells.
template <typename Model>
Matrix<typename Model::Scalar> interpolation_grid(Model& model, const Matrix<typename Model::Scalar>& from,
                                                  const Matrix<typename Model::Scalar>& to, Index steps,
                                                  InterpolatedLatent latent) {
  using T = typename Model::Scalar;
  require<ArgumentError>(steps >= 2, "interpolation_grid: steps must be >= 2, found ", steps);
  require<ShapeError>(from.cols() > 0 && from.cols() == to.cols() && from.rows() == to.rows(),
                      "interpolation_grid: expected as many source as target images, found ", from.cols(), " and ",
                      to.cols());
  const Index R = from.cols(), cols = steps + 2;
  std::vector<Index> singles(static_cast<std::size_t>(R) + 1);
  for (Index i = 0; i <= R; ++i) singles[static_cast<std::size_t>(i)] = i;
  Matrix<T> s_from, c_from, s_to, c_to;
  infer_means(model, from, singles, s_from, c_from);
  infer_means(model, to, singles, s_to, c_to);
  Matrix<T> styles(model.style_size(), R * steps), contents(model.content_size(), R * steps), decoded;
  for (Index r = 0; r < R; ++r)
    for (Index k = 0; k < steps; ++k) {
      const T t = T(k) / T(steps - 1);
      const Index j = r * steps + k;
      if (latent == InterpolatedLatent::Content) {
        styles.col(j) = s_from.col(r);
        contents.col(j) = (T(1) - t) * c_from.col(r) + t * c_to.col(r);
      } else {
        styles.col(j) = (T(1) - t) * s_from.col(r) + t * s_to.col(r);
        contents.col(j) = c_from.col(r);
      }
    }
  model.decode_mean(styles, contents, decoded);
  Matrix<T> grid(from.rows(), R * cols);
  for (Index r = 0; r < R; ++r) {
    grid.col(r * cols) = from.col(r);
    grid.middleCols(r * cols + 1, steps) = decoded.middleCols(r * steps, steps);
    grid.col(r * cols + cols - 1) = to.col(r);
  }
  return grid;
}

/// New members of each group: one row per group, `count` + 1 columns: the group's first member,
/// then `count` decodings of [style ~ N(0, I); the group's content posterior mean] (strategy 2).
template <typename Model>
Matrix<typename Model::Scalar> generation_grid(Model& model, const Matrix<typename Model::Scalar>& x,
                                               const std::vector<Index>& offsets, Index count, Rng& rng) {
  using T = typename Model::Scalar;
  require<ArgumentError>(count >= 1, "generation_grid: count must be >= 1, found ", count);
  Matrix<T> unused, group_content, decoded;
  infer_means(model, x, offsets, unused, group_content);
  const Index G = group_content.cols(), cols = count + 1;
  Matrix<T> styles(model.style_size(), G * count), contents(model.content_size(), G * count);
  rng.fill_normal(styles);
  for (Index g = 0; g < G; ++g)
    for (Index k = 0; k < count; ++k) contents.col(g * count + k) = group_content.col(g);
  model.decode_mean(styles, contents, decoded);
  Matrix<T> grid(x.rows(), G * cols);
  for (Index g = 0; g < G; ++g) {
    grid.col(g * cols) = x.col(offsets[static_cast<std::size_t>(g)]);
    grid.middleCols(g * cols + 1, count) = decoded.middleCols(g * count, count);
  }
  return grid;
}

}  // namespace mlvae
