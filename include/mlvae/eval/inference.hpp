/// @file
/// mlvae/eval/inference.hpp — test-time inference with a trained ML-VAE (Bouchacourt et al. 2018,
/// section "Inference at test time"; docs/elbo.md, "The group posterior"), for groups of any size,
/// including groups never seen in training:
///   strategy 1: the content of a group is q(c | x_i) of ONE observation (its first member);
///   strategy 2: the content of a group is the product-of-Gaussians posterior q(c_G | X_G) of ALL
///               its members (dist/group_posterior.hpp); on a group of one it equals strategy 1.
/// Style is always per observation, q(s_i | x_i).
///
/// Encode-only: these functions call only the models' `encode()`, i.e. the encoder stacks' forward
/// passes, in chunks of `chunk` observations. No decoder, no noise, no gradient or backward
/// workspace is touched or allocated. Honest caveat: the layers keep their own forward output
/// buffers (nn/layer.hpp), so encoding reuses (overwrites) those buffers — do not interleave it
/// with a training step between that step's forward and backward.
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/random.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/dist/group_posterior.hpp"

#include <algorithm>
#include <map>
#include <vector>

namespace mlvae {

/// The two test-time content inference strategies of the ML-VAE paper.
enum class InferenceStrategy {
  SingleObservation = 1,  ///< strategy 1: content from one observation (the group's first member)
  AccumulatedGroup = 2    ///< strategy 2: product of the posteriors of all members of the group
};

/// Per-observation posterior parameters of an ML-VAE (each column one observation).
template <typename T>
struct MLVAECodes {
  /// Style posterior means (S x N).
  Matrix<T> style_mean, style_logvar;      ///< S x N
  /// Per-observation content means (C x N).
  Matrix<T> content_mean, content_logvar;  ///< C x N (each observation alone, before grouping)
  /// Number of observations N.
  Index size() const { return style_mean.cols(); }
};

/// Encodes every column of `x` with an ML-VAE, `chunk` columns at a time (bounds memory).
template <typename Model>
MLVAECodes<typename Model::Scalar> encode_mlvae(Model& model, const Matrix<typename Model::Scalar>& x,
                                                Index chunk = 2048) {
  using T = typename Model::Scalar;
  require<ArgumentError>(chunk > 0, "encode_mlvae: chunk must be positive, found ", chunk);
  require<ShapeError>(x.cols() > 0, "encode_mlvae: no observations to encode");
  MLVAECodes<T> codes;
  const Index n = x.cols(), S = model.style_size(), C = model.content_size();
  codes.style_mean.resize(S, n);
  codes.style_logvar.resize(S, n);
  codes.content_mean.resize(C, n);
  codes.content_logvar.resize(C, n);
  Matrix<T> xb, sm, sl, cm, cl;
  for (Index begin = 0; begin < n; begin += chunk) {
    const Index m = std::min(chunk, n - begin);
    xb = x.middleCols(begin, m);
    model.encode(xb, sm, sl, cm, cl);
    codes.style_mean.middleCols(begin, m) = sm;
    codes.style_logvar.middleCols(begin, m) = sl;
    codes.content_mean.middleCols(begin, m) = cm;
    codes.content_logvar.middleCols(begin, m) = cl;
  }
  return codes;
}

/// Encodes every column of `x` with a VAE (posterior mean and log-variance, latent x N).
template <typename Model>
void encode_vae(Model& model, const Matrix<typename Model::Scalar>& x, Matrix<typename Model::Scalar>& mean,
                Matrix<typename Model::Scalar>& logvar, Index chunk = 2048) {
  using T = typename Model::Scalar;
  require<ArgumentError>(chunk > 0, "encode_vae: chunk must be positive, found ", chunk);
  const Index n = x.cols(), L = model.latent_size();
  mean.resize(L, n);
  logvar.resize(L, n);
  Matrix<T> xb, m_, l_;
  for (Index begin = 0; begin < n; begin += chunk) {
    const Index m = std::min(chunk, n - begin);
    xb = x.middleCols(begin, m);
    model.encode(xb, m_, l_);
    mean.middleCols(begin, m) = m_;
    logvar.middleCols(begin, m) = l_;
  }
}

/// Content posterior of each group (C x G) from per-observation codes laid out by `offsets`
/// (CSR: group g is columns [offsets[g], offsets[g+1])), with the given strategy.
template <typename T>
void infer_group_content(const MLVAECodes<T>& codes, const std::vector<Index>& offsets, InferenceStrategy strategy,
                         Matrix<T>& group_mean, Matrix<T>& group_logvar) {
  check_group_offsets(offsets, codes.size(), "infer_group_content");
  if (strategy == InferenceStrategy::AccumulatedGroup) {
    group_posterior(codes.content_mean, codes.content_logvar, offsets, group_mean, group_logvar);
    return;
  }
  const Index groups = static_cast<Index>(offsets.size()) - 1;
  group_mean.resize(codes.content_mean.rows(), groups);
  group_logvar.resize(codes.content_mean.rows(), groups);
  for (Index g = 0; g < groups; ++g) {
    group_mean.col(g) = codes.content_mean.col(offsets[static_cast<std::size_t>(g)]);
    group_logvar.col(g) = codes.content_logvar.col(offsets[static_cast<std::size_t>(g)]);
  }
}

/// Encodes `x` and infers each group's content posterior in one call (encode-only).
template <typename Model>
void infer_group_content(Model& model, const Matrix<typename Model::Scalar>& x, const std::vector<Index>& offsets,
                         InferenceStrategy strategy, Matrix<typename Model::Scalar>& group_mean,
                         Matrix<typename Model::Scalar>& group_logvar) {
  check_group_offsets(offsets, x.cols(), "infer_group_content");
  infer_group_content(encode_mlvae(model, x), offsets, strategy, group_mean, group_logvar);
}

/// Expands per-group columns (dims x G) to per-observation columns (dims x N): each member of
/// group g gets column g.
template <typename T>
Matrix<T> expand_to_members(const Matrix<T>& per_group, const std::vector<Index>& offsets) {
  require<ShapeError>(static_cast<Index>(offsets.size()) == per_group.cols() + 1, "expand_to_members: ",
                      per_group.cols(), " group columns but ", offsets.size(), " offsets");
  Matrix<T> out(per_group.rows(), offsets.back());
  for (Index g = 0; g < per_group.cols(); ++g)
    for (Index i = offsets[static_cast<std::size_t>(g)]; i < offsets[static_cast<std::size_t>(g) + 1]; ++i)
      out.col(i) = per_group.col(g);
  return out;
}

/// A partition of observations into groups of one key each, as gathered indices plus offsets.
struct GroupLayout {
  std::vector<Index> indices;  ///< source column of each laid-out observation
  std::vector<Index> offsets;  ///< CSR offsets into `indices`
  std::vector<int> keys;       ///< key of each group
  /// Number of groups (offsets.size() − 1).
  Index group_count() const { return static_cast<Index>(offsets.size()) - 1; }
};

/// Cuts the observations of every key into groups of `group_size` (members shuffled with `seed`;
/// a key's leftover members form one smaller group, so every observation is used exactly once).
inline GroupLayout make_key_groups(const std::vector<int>& keys, Index group_size, std::uint64_t seed) {
  require<ArgumentError>(group_size >= 1, "make_key_groups: group_size must be >= 1, found ", group_size);
  require<ArgumentError>(!keys.empty(), "make_key_groups: no observations");
  std::map<int, std::vector<Index>> by_key;
  for (std::size_t i = 0; i < keys.size(); ++i) by_key[keys[i]].push_back(static_cast<Index>(i));
  Rng rng(seed);
  GroupLayout layout;
  layout.offsets.push_back(0);
  for (auto& entry : by_key) {
    auto& members = entry.second;
    for (std::size_t i = members.size(); i > 1; --i)  // Fisher–Yates
      std::swap(members[i - 1], members[static_cast<std::size_t>(rng.uniform_index(i))]);
    for (std::size_t begin = 0; begin < members.size(); begin += static_cast<std::size_t>(group_size)) {
      const std::size_t end = std::min(members.size(), begin + static_cast<std::size_t>(group_size));
      layout.indices.insert(layout.indices.end(), members.begin() + static_cast<std::ptrdiff_t>(begin),
                            members.begin() + static_cast<std::ptrdiff_t>(end));
      layout.offsets.push_back(static_cast<Index>(layout.indices.size()));
      layout.keys.push_back(entry.first);
    }
  }
  return layout;
}

/// Gathers columns `indices` of per-observation codes (e.g. to lay them out as groups).
template <typename T>
MLVAECodes<T> gather_codes(const MLVAECodes<T>& codes, const std::vector<Index>& indices) {
  MLVAECodes<T> out;
  const Index n = static_cast<Index>(indices.size());
  out.style_mean.resize(codes.style_mean.rows(), n);
  out.style_logvar.resize(codes.style_logvar.rows(), n);
  out.content_mean.resize(codes.content_mean.rows(), n);
  out.content_logvar.resize(codes.content_logvar.rows(), n);
  for (Index j = 0; j < n; ++j) {
    const Index i = indices[static_cast<std::size_t>(j)];
    require<ShapeError>(i >= 0 && i < codes.size(), "gather_codes: index ", i, " outside [0, ", codes.size(), ")");
    out.style_mean.col(j) = codes.style_mean.col(i);
    out.style_logvar.col(j) = codes.style_logvar.col(i);
    out.content_mean.col(j) = codes.content_mean.col(i);
    out.content_logvar.col(j) = codes.content_logvar.col(i);
  }
  return out;
}

}  // namespace mlvae
