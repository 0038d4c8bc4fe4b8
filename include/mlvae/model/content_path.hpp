/// @file
/// mlvae/model/content_path.hpp — the content half of the group models on one machinery: how the
/// members' content estimates are aggregated (ML-VAE product of Gaussians, GVAE arithmetic mean),
/// which dimensions are shared (all, or per pair by the Ada threshold τ = ½(max_d KL_d + min_d KL_d)
/// of Locatello et al. 2020), and whether one content sample is drawn per group or per observation.
/// Written once for every device (kernels evaluated by a context's generate_at).
///
/// Per group g and dimension d the content of member i is the aggregate q_G,d when (d, g) is shared,
/// else the member's own estimate q_i,d. The KL of a shared dimension is counted once per group (the
/// ML-VAE group ELBO), of an unshared one once per member. Gradients (docs/elbo.md, "Related models"):
///   * mean (GVAE): μ_G = (1/n) Σ μ_i, σ²_G = (1/n) Σ σ²_i, so dμ_i = dμ_G / n and
///     dlogvar_i = dlogvar_G · σ²_i / (n σ²_G);
///   * product (ML-VAE): dist/group_posterior.hpp;
///   * the Ada mask is piecewise constant in the encodings: no gradient flows through τ.
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/random.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/model/batch_shard.hpp"
#include "mlvae/dist/group_posterior.hpp"
#include "mlvae/nn/gemm.hpp"

#include <cstdint>
#include <type_traits>
#include <vector>

namespace mlvae {

/// How a group's content posterior is formed from its members' Gaussian estimates.
enum class ContentAggregation {
  Product,  ///< ML-VAE (Bouchacourt et al. 2018): normalised product of Gaussians
  Mean      ///< GVAE (Hosoya 2019): arithmetic mean of the members' means and variances
};

/// Options of the content path (defaults: the ML-VAE of the paper).
struct ContentPathOptions {
  /// Product (ML-VAE) or arithmetic mean (GVAE).
  ContentAggregation aggregation = ContentAggregation::Product;
  /// Ada-ML-VAE / Ada-GVAE: groups must be pairs (a lone observation, e.g. a key's leftover, is its own
  /// group); a dimension is shared when the symmetric KL between the two members' estimates is below
  /// τ = ½(max_d + min_d) of that pair.
  bool adaptive = false;
  /// Draw one content sample per observation (true) or one per group, shared by the members (false).
  bool sample_per_observation = false;
};

/// KL(N(m1, e^l1) ‖ N(m2, e^l2)) of one dimension.
template <typename T>
EIGEN_DEVICE_FUNC T gaussian_kl(T m1, T l1, T m2, T l2) {
  using Eigen::numext::exp;
  return T(0.5) * (l2 - l1 + (exp(l1) + (m1 - m2) * (m1 - m2)) / exp(l2) - T(1));
}

/// The same value at every element (e.g. a zero row of per-column terms).
template <typename T>
struct ConstantKernel {
  T value;  ///< the value
  /// Element (r, c).
  EIGEN_DEVICE_FUNC T operator()(Index, Index) const { return value; }
};

// The content path's kernels: functors of plain values and pointers into one device's memory, each
// computing one element from what it reads, evaluated by generate_at (nn/gemm.hpp on the host,
// device/layers.hpp on a device). Written once: the CPU model and every device run these.

/// Whether dimension d of group g is shared (1) or not (0): always without Ada; with Ada, for a
/// pair, when its symmetric KL is below τ = ½(max_d + min_d) of that pair (a lone observation
/// shares all: its aggregate is its own estimate).
template <typename T>
struct ContentShared {
  ColumnsView<T> mean, logvar;  ///< the members' estimates (dims x N)
  const Index* offsets;         ///< CSR group offsets
  Index dims;                   ///< C
  bool adaptive;                ///< Ada threshold, else share every dimension
  /// The symmetric KL between a pair's two members (columns b, b + 1) in dimension d.
  EIGEN_DEVICE_FUNC T symmetric_kl(Index d, Index b) const {
    return T(0.5) * (gaussian_kl<T>(mean(d, b), logvar(d, b), mean(d, b + 1), logvar(d, b + 1)) +
                     gaussian_kl<T>(mean(d, b + 1), logvar(d, b + 1), mean(d, b), logvar(d, b)));
  }
  /// Element (d, g).
  EIGEN_DEVICE_FUNC T operator()(Index d, Index g) const {
    const Index b = offsets[g];
    if (!adaptive || offsets[g + 1] - b == 1) return T(1);
    T lo = symmetric_kl(0, b), hi = lo;
    for (Index j = 1; j < dims; ++j) {
      const T k = symmetric_kl(j, b);
      lo = Eigen::numext::mini(lo, k);
      hi = Eigen::numext::maxi(hi, k);
    }
    return symmetric_kl(d, b) < T(0.5) * (hi + lo) ? T(1) : T(0);
  }
};

/// The standard normal that element (d, i) of the content sample uses: its group's (one sample per
/// group), its group's first member's (a shared dimension under Ada), or its own.
template <typename T>
struct ContentNoise {
  ColumnsView<T> eps;       ///< C x G when per_group, else C x N
  ColumnsView<T> shared;    ///< C x G
  const Index* offsets;     ///< CSR group offsets
  const Index* group_of;    ///< the group of every column
  bool per_group;           ///< one sample per group (no Ada, not per observation)
  bool per_observation;     ///< one sample per observation
  /// The noise of (d, i).
  EIGEN_DEVICE_FUNC T operator()(Index d, Index i) const {
    const Index g = group_of[i];
    if (per_group) return eps(d, g);
    return (shared(d, g) > T(0) && !per_observation) ? eps(d, offsets[g]) : eps(d, i);
  }
};

/// Element (d, i) of the content sample: the group's posterior in a shared dimension, the member's
/// own estimate otherwise, reparameterised with ContentNoise.
template <typename T>
struct ContentSample {
  ColumnsView<T> mean, logvar, group_mean, group_logvar, shared;  ///< C x N, C x N, then C x G
  ContentNoise<T> noise;                                          ///< the noise of each element
  /// Element (d, i).
  EIGEN_DEVICE_FUNC T operator()(Index d, Index i) const {
    const Index g = noise.group_of[i];
    const bool sh = shared(d, g) > T(0);
    const T m = sh ? group_mean(d, g) : mean(d, i), l = sh ? group_logvar(d, g) : logvar(d, i);
    return gaussian::sample(m, l, noise(d, i));
  }
};

/// The content KL of column i (a 1 x N kernel): a shared dimension's KL is counted once per group
/// (at its first member), an unshared one once per member; KL(N(m, e^l) ‖ N(0, 1)) = ½(m² + e^l − 1 − l).
template <typename T>
struct ContentKl {
  ColumnsView<T> mean, logvar, group_mean, group_logvar, shared;  ///< C x N, C x N, then C x G
  const Index* offsets;                                           ///< CSR group offsets
  const Index* group_of;                                          ///< the group of every column
  Index dims;                                                     ///< C
  /// Element (0, i).
  EIGEN_DEVICE_FUNC T operator()(Index, Index i) const {
    const Index g = group_of[i];
    const bool first = offsets[g] == i;
    T sum = 0;
    for (Index d = 0; d < dims; ++d) {
      if (shared(d, g) > T(0)) {
        if (first) sum += gaussian::kl(group_mean(d, g), group_logvar(d, g));
      } else {
        sum += gaussian::kl(mean(d, i), logvar(d, i));
      }
    }
    return sum;
  }
};

/// dLoss/d(group mean) (or, with `log_variance`, d(group log-variance)) of element (d, g): the sum
/// over the members of the sample's gradient `dz`, plus the weighted KL's; 0 in an unshared dimension.
template <typename T>
struct ContentGroupGradient {
  ColumnsView<T> dz, group_mean, group_logvar, shared;  ///< C x N, then C x G
  ContentNoise<T> noise;                                ///< the noise of each element
  T kl_weight;                                          ///< β_c / G
  bool log_variance;                                    ///< which output
  /// Element (d, g).
  EIGEN_DEVICE_FUNC T operator()(Index d, Index g) const {
    if (!(shared(d, g) > T(0))) return T(0);
    const Index b = noise.offsets[g], e = noise.offsets[g + 1];
    T acc = 0;
    if (!log_variance) {
      for (Index i = b; i < e; ++i) acc += dz(d, i);
      return acc + kl_weight * group_mean(d, g);
    }
    // The members' samples share the group's log-variance: their terms, then the KL's.
    const T l = group_logvar(d, g);
    for (Index i = b; i < e; ++i) acc += gaussian::logvar_gradient(l, noise(d, i), dz(d, i), T(0));
    return acc + gaussian::logvar_gradient(l, T(0), T(0), kl_weight);
  }
};

/// dLoss/d(member mean) (or d(member log-variance)) of element (d, i): through the aggregate in a
/// shared dimension (GroupAggregateBackward), else through the member's own sample and KL.
template <typename T>
struct ContentMemberGradient {
  ColumnsView<T> mean, logvar, dz, shared;  ///< C x N, then C x G
  ContentNoise<T> noise;                    ///< the noise of each element
  GroupAggregateBackward<T> aggregate;      ///< the aggregation's backward (same output)
  T kl_weight;                              ///< β_c / G
  bool log_variance;                        ///< which output
  /// Element (d, i).
  EIGEN_DEVICE_FUNC T operator()(Index d, Index i) const {
    if (shared(d, noise.group_of[i]) > T(0)) return aggregate(d, i);
    return gaussian::sample_gradient(mean(d, i), logvar(d, i), noise(d, i), dz(d, i), kl_weight, log_variance);
  }
};

/// The content path of a group model: forward (aggregate, select shared dimensions, sample, KL) and
/// backward (to the members' content means and log-variances), written once for every device: the
/// work is the kernels above, evaluated by the context `Ctx` (HostContext on the CPU; a device
/// context, device/). Holds its workspaces. ContentPath<T> is the CPU's.
template <typename T, typename Ctx = HostContext>
class BasicContentPath {
public:
  /// The context's array of T.
  using Array = typename Ctx::template Array<T>;
  /// The context's array of indices.
  using IndexArray = typename Ctx::template Array<Index>;

  /// A content path on the host.
  BasicContentPath() : BasicContentPath(HostContext::instance()) {}
  /// A content path on `ctx` (which must outlive it).
  explicit BasicContentPath(Ctx& ctx)
      : ctx_(&ctx), group_mean_(detail::make_array<Array>(ctx)), group_logvar_(detail::make_array<Array>(ctx)),
        shared_(detail::make_array<Array>(ctx)), d_group_mean_(detail::make_array<Array>(ctx)),
        d_group_logvar_(detail::make_array<Array>(ctx)), layout_(detail::make_array<IndexArray>(ctx)) {}

  /// Whether the forward pass reads one noise column per group (one sample per group, no Ada)
  /// rather than one per observation.
  static bool per_group_noise(const ContentPathOptions& o) { return !o.sample_per_observation && !o.adaptive; }

  /// Forward on the context's memory. `mean`, `logvar`: the members' content estimates (C x N);
  /// `offsets`: the groups (checked here: Ada needs pairs or single observations); `eps`: standard
  /// normals, C x G when per_group_noise(options), else C x N (contiguous). Writes the content sample
  /// of every observation into `z` (C x N, leading dimension z_ld) and the content KL of every
  /// column into `kl` (N, contiguous; a shared dimension's once per group, at its first member).
  void forward(ColumnsView<T> mean, ColumnsView<T> logvar, Index dims, const std::vector<Index>& offsets,
               const ContentPathOptions& options, const T* eps, T* z, Index z_ld, T* kl) {
    options_ = options;
    dims_ = dims;
    set_layout(offsets, options.adaptive);
    const Index n = offsets.back(), groups = static_cast<Index>(offsets.size()) - 1;
    const bool product = options.aggregation == ContentAggregation::Product;
    ensure_shape(group_mean_, dims, groups);
    ensure_shape(group_logvar_, dims, groups);
    ensure_shape(shared_, dims, groups);
    GroupAggregate<T> aggregate{mean, logvar, offsets_on_context(), product, false};
    generate_at(*ctx_, group_mean_.data(), dims, groups, dims, aggregate);
    aggregate.log_variance = true;
    generate_at(*ctx_, group_logvar_.data(), dims, groups, dims, aggregate);
    generate_at(*ctx_, shared_.data(), dims, groups, dims,
                ContentShared<T>{mean, logvar, offsets_on_context(), dims, options.adaptive});
    eps_ = {eps, dims};
    generate_at(*ctx_, z, dims, n, z_ld,
                ContentSample<T>{mean, logvar, view(group_mean_), view(group_logvar_), view(shared_), noise()});
    generate_at(*ctx_, kl, 1, n, 1,
                ContentKl<T>{mean, logvar, view(group_mean_), view(group_logvar_), view(shared_),
                             offsets_on_context(), group_of_on_context(), dims});
  }

  /// Backward of the last forward (same `mean`, `logvar`): `dz` = dLoss/dz (C x N), `kl_weight`
  /// multiplies the KL sum in the loss. WRITES dLoss/dmean and dLoss/dlogvar of the members'
  /// estimates (C x N at `dmean` / `dlogvar`, leading dimension d_ld).
  void backward(ColumnsView<T> mean, ColumnsView<T> logvar, ColumnsView<T> dz, T kl_weight, T* dmean, T* dlogvar,
                Index d_ld) {
    const Index C = dims_, n = group_of_count_, groups = group_count_;
    ensure_shape(d_group_mean_, C, groups);
    ensure_shape(d_group_logvar_, C, groups);
    ContentGroupGradient<T> group{dz, view(group_mean_), view(group_logvar_), view(shared_), noise(), kl_weight, false};
    generate_at(*ctx_, d_group_mean_.data(), C, groups, C, group);
    group.log_variance = true;
    generate_at(*ctx_, d_group_logvar_.data(), C, groups, C, group);
    const bool product = options_.aggregation == ContentAggregation::Product;
    GroupAggregateBackward<T> aggregate{mean,
                                        logvar,
                                        view(group_mean_),
                                        view(group_logvar_),
                                        view(d_group_mean_),
                                        view(d_group_logvar_),
                                        offsets_on_context(),
                                        group_of_on_context(),
                                        product,
                                        false};
    ContentMemberGradient<T> member{mean, logvar, dz, view(shared_), noise(), aggregate, kl_weight, false};
    generate_at(*ctx_, dmean, C, n, d_ld, member);
    member.log_variance = member.aggregate.log_variance = true;
    generate_at(*ctx_, dlogvar, C, n, d_ld, member);
  }

  /// The group posteriors of the last forward (C x G, context memory).
  const Array& group_mean() const { return group_mean_; }
  /// Log-variances of the group posteriors of the last forward (C x G).
  const Array& group_logvar() const { return group_logvar_; }
  /// 1 where dimension d of group g was shared in the last forward, else 0 (C x G).
  const Array& shared() const { return shared_; }

  /// The last forward's group offsets (G + 1) in the context's memory, for kernels over the groups.
  const Index* offsets_on_context() const { return layout_.data(); }
  /// The group of every column of the last forward (N) in the context's memory.
  const Index* group_of_on_context() const { return layout_.data() + group_count_ + 1; }

private:
  static ColumnsView<T> view(const Array& a) { return {a.data(), a.rows()}; }
  ContentNoise<T> noise() const {
    return {eps_, view(shared_), offsets_on_context(), group_of_on_context(), per_group_noise(options_),
            options_.sample_per_observation};
  }

  // The batch's offsets and every column's group, in the context's memory (copied only when they change).
  void set_layout(const std::vector<Index>& offsets, bool adaptive) {
    const Index groups = static_cast<Index>(offsets.size()) - 1;
    if (adaptive)
      for (Index g = 0; g < groups; ++g) {
        const Index size = offsets[static_cast<std::size_t>(g) + 1] - offsets[static_cast<std::size_t>(g)];
        require<ArgumentError>(size <= 2, "ContentPath (adaptive, Ada-ML-VAE / Ada-GVAE): every group must be a pair ",
                               "(or a single observation), group ", g, " has ", size, " members");
      }
    if (offsets == offsets_) return;
    offsets_ = offsets;
    group_count_ = groups;
    group_of_count_ = offsets.back();
    layout_host_.resize(groups + 1 + group_of_count_, 1);
    for (Index g = 0; g <= groups; ++g) layout_host_(g) = offsets[static_cast<std::size_t>(g)];
    const std::vector<Index> group_of = detail::group_of_columns(offsets);
    for (Index i = 0; i < group_of_count_; ++i) layout_host_(groups + 1 + i) = group_of[static_cast<std::size_t>(i)];
    if constexpr (std::is_same_v<Ctx, HostContext>)
      layout_ = layout_host_;
    else
      layout_.upload(layout_host_);
  }

  Ctx* ctx_;
  ContentPathOptions options_;
  Index dims_ = 0, group_count_ = 0, group_of_count_ = 0;
  ColumnsView<T> eps_;
  Array group_mean_, group_logvar_, shared_, d_group_mean_, d_group_logvar_;
  std::vector<Index> offsets_;
  Matrix<Index> layout_host_;  // [offsets (G + 1) | group of every column (N)]
  IndexArray layout_;          // the same in the context's memory
};

/// The CPU's content path.
template <typename T>
using ContentPath = BasicContentPath<T, HostContext>;

}  // namespace mlvae
