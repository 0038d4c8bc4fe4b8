/// @file
/// mlvae/data/dsprites.hpp — dSprites (Matthey et al. 2017) generated procedurally, never downloaded:
/// the full factor grid shape 3 × scale 6 × orientation 40 × x 32 × y 32 = 737 280 binary 64×64
/// images, each rendered from its index on demand. FactorGrid is the generic ground-truth factor
/// space the disentanglement metrics (eval/disentanglement.hpp) sample from; docs/disentanglement.md,
/// section "dSprites".
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/random.hpp"
#include "mlvae/core/types.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace mlvae {

/// A grid of discrete ground-truth factors, factor k taking sizes[k] values; every combination is
/// one observation, numbered in row-major order (the last factor varies fastest), as dSprites is.
class FactorGrid {
public:
  /// A grid with the given number of values per factor. Throws ArgumentError unless every size is
  /// at least 1 and there is at least one factor.
  explicit FactorGrid(std::vector<int> sizes, std::vector<std::string> names = {})
      : sizes_(std::move(sizes)), names_(std::move(names)) {
    require<ArgumentError>(!sizes_.empty(), "FactorGrid: expected at least one factor, found none");
    total_ = 1;
    for (std::size_t k = 0; k < sizes_.size(); ++k) {
      require<ArgumentError>(sizes_[k] >= 1, "FactorGrid: factor ", k, " must take at least one value, found ",
                             sizes_[k]);
      total_ *= sizes_[k];
    }
    if (names_.empty())
      for (std::size_t k = 0; k < sizes_.size(); ++k) names_.push_back("factor" + std::to_string(k));
    require<ArgumentError>(names_.size() == sizes_.size(), "FactorGrid: expected ", sizes_.size(),
                           " factor names, found ", names_.size());
  }

  /// Number of factors.
  int num_factors() const { return static_cast<int>(sizes_.size()); }
  /// Number of values of factor k.
  int factor_size(int k) const { return sizes_[static_cast<std::size_t>(k)]; }
  /// Number of values of every factor.
  const std::vector<int>& sizes() const { return sizes_; }
  /// Factor names (for CSV headers and tables).
  const std::vector<std::string>& names() const { return names_; }
  /// Number of observations (the product of the sizes).
  Index size() const { return total_; }

  /// The index of the observation with factor values `f` (one per factor).
  /// @throws ShapeError on a wrong count, ArgumentError on a value out of range.
  Index index_of(const std::vector<int>& f) const {
    require<ShapeError>(f.size() == sizes_.size(), "FactorGrid::index_of: expected ", sizes_.size(),
                        " factor values, found ", f.size());
    Index index = 0;
    for (std::size_t k = 0; k < sizes_.size(); ++k) {
      require<ArgumentError>(f[k] >= 0 && f[k] < sizes_[k], "FactorGrid::index_of: factor ", k, " (", names_[k],
                             ") must be in [0, ", sizes_[k], "), found ", f[k]);
      index = index * sizes_[k] + f[k];
    }
    return index;
  }

  /// The factor values of observation `index` (written into `f`).
  /// @throws ArgumentError when index is outside [0, size()).
  void factors_of(Index index, std::vector<int>& f) const {
    require<ArgumentError>(index >= 0 && index < total_, "FactorGrid::factors_of: index must be in [0, ", total_,
                           "), found ", index);
    f.resize(sizes_.size());
    for (std::size_t k = sizes_.size(); k-- > 0;) {
      f[k] = static_cast<int>(index % sizes_[k]);
      index /= sizes_[k];
    }
  }

  /// The factor values of observation `index`.
  std::vector<int> factors_of(Index index) const {
    std::vector<int> f;
    factors_of(index, f);
    return f;
  }

  /// Factor values drawn uniformly (each factor independently), as disentanglement_lib samples.
  void sample_factors(Rng& rng, std::vector<int>& f) const {
    f.resize(sizes_.size());
    for (std::size_t k = 0; k < sizes_.size(); ++k) f[k] = static_cast<int>(rng.uniform() * sizes_[k]);
  }

  /// A uniformly drawn observation index.
  Index sample_index(Rng& rng) const {
    return std::min<Index>(static_cast<Index>(rng.uniform() * static_cast<double>(total_)), total_ - 1);
  }

private:
  std::vector<int> sizes_;
  std::vector<std::string> names_;
  Index total_ = 0;
};

/// The dSprites data set, rendered on demand. Factors in the original order: shape (square,
/// ellipse, heart), scale (6 values 0.5 … 1), orientation (40 values 0 … 2π, both ends included
/// as in the original), position x and y (32 values 0 … 1 each). Images are 64×64, row-major, 1 on
/// the sprite and 0 elsewhere; a pixel is on when its centre lies inside the shape.
class DSprites {
public:
  static constexpr int image_size = 64;                           ///< height and width in pixels
  static constexpr Index pixels = image_size * image_size;        ///< 4096 values per image
  /// Factor numbers, in the order of FactorGrid::sizes().
  enum Factor : int { Shape = 0, Scale = 1, Orientation = 2, PositionX = 3, PositionY = 4 };

  /// The factor grid {3, 6, 40, 32, 32} (737 280 images).
  static const FactorGrid& grid() {
    static const FactorGrid g({3, 6, 40, 32, 32}, {"shape", "scale", "orientation", "pos_x", "pos_y"});
    return g;
  }
  /// Number of images, 737 280.
  static Index size() { return grid().size(); }

  /// The scale of value i in [0, 6): 0.5 + 0.1·i.
  static double scale_value(int i) { return 0.5 + 0.5 * i / 5.0; }
  /// The orientation of value i in [0, 40): 2π·i/39 (radians).
  static double orientation_value(int i) { return 2.0 * kPi * i / 39.0; }
  /// The position of value i in [0, 32): i/31.
  static double position_value(int i) { return i / 31.0; }

  /// Renders the image with factor values `f` (shape, scale, orientation, x, y) into `out`
  /// (4096 entries, row-major: pixel (row r, column c) at r·64 + c; x moves along columns, y
  /// along rows). `out` may be a temporary block such as `m.col(j)` (Eigen's const-cast idiom for
  /// writable expressions).
  /// @throws ShapeError / ArgumentError on a wrong count or a value out of range.
  template <typename Derived>
  static void render(const std::vector<int>& f, const Eigen::DenseBase<Derived>& out_) {
    auto& out = const_cast<Eigen::DenseBase<Derived>&>(out_);
    require<ShapeError>(out.size() == pixels, "DSprites::render: expected an output of ", pixels, " values, found ",
                        out.size());
    (void)grid().index_of(f);  // validates the values
    using T = typename Derived::Scalar;
    const double s = scale_value(f[Scale]);
    const double angle = orientation_value(f[Orientation]);
    const double cx = kMargin + kSpan * position_value(f[PositionX]);
    const double cy = kMargin + kSpan * position_value(f[PositionY]);
    const double radius = kBaseRadius * s;
    const double c = std::cos(angle), sn = std::sin(angle);
    for (int r = 0; r < image_size; ++r) {
      for (int col = 0; col < image_size; ++col) {
        const double dx = (col + 0.5 - cx) / radius, dy = (r + 0.5 - cy) / radius;
        // Rotate the pixel back into the shape's own frame (v points up the image).
        const double u = c * dx + sn * dy;
        const double v = -(-sn * dx + c * dy);
        out(r * image_size + col) = inside(f[Shape], u, v) ? T(1) : T(0);
      }
    }
  }

  /// Renders observation `index` into `out` (see render()).
  template <typename Derived>
  static void render(Index index, const Eigen::DenseBase<Derived>& out) {
    std::vector<int> f;
    grid().factors_of(index, f);
    render(f, out);
  }

  /// Renders the observations `indices` as the columns of `out` (4096 x indices.size()).
  template <typename T>
  static void render_batch(const std::vector<Index>& indices, Matrix<T>& out) {
    ensure_shape(out, pixels, static_cast<Index>(indices.size()));
    for (std::size_t j = 0; j < indices.size(); ++j) render(indices[j], out.col(static_cast<Index>(j)));
  }

  /// Whether the canonical shape `shape` (0 square, 1 ellipse, 2 heart) contains the point (u, v)
  /// in its own frame, unit = the scaled radius, v upwards.
  static bool inside(int shape, double u, double v) {
    switch (shape) {
      case 0:  // square of half side 0.75
        return std::abs(u) <= 0.75 && std::abs(v) <= 0.75;
      case 1:  // ellipse with semi-axes 1 (along u) and 0.5
        return u * u + 4.0 * v * v <= 1.0;
      default: {  // heart (x² + y² − 1)³ − x² y³ ≤ 0, scaled so it spans about [−1, 1]; tip at the bottom
        const double x = u * 1.15, y = v * 1.15 + 0.15;
        const double a = x * x + y * y - 1.0;
        return a * a * a - x * x * y * y * y <= 0.0;
      }
    }
  }

private:
  static constexpr double kPi = 3.14159265358979323846;
  static constexpr double kBaseRadius = 11.0;  // pixels at scale 1
  static constexpr double kMargin = 16.0;      // centre range [16, 48]: a rotated sprite stays inside
  static constexpr double kSpan = 32.0;
};

/// Groups for weakly supervised training (ML-VAE): `groups` groups of `group_size` observations;
/// within a group the factors listed in `shared` take one common value, the others are drawn
/// independently for each member. Writes the members' grid indices (a group's members contiguous)
/// and CSR `offsets` (groups + 1 entries), as GroupedBatch lays them out.
/// @throws ArgumentError on a factor number outside the grid or non-positive sizes.
inline void sample_shared_factor_groups(const FactorGrid& grid, const std::vector<int>& shared, Index groups,
                                        Index group_size, Rng& rng, std::vector<Index>& indices,
                                        std::vector<Index>& offsets) {
  require<ArgumentError>(groups >= 1 && group_size >= 1, "sample_shared_factor_groups: expected positive sizes, found ",
                         groups, " groups of ", group_size);
  for (const int k : shared)
    require<ArgumentError>(k >= 0 && k < grid.num_factors(), "sample_shared_factor_groups: factor ", k,
                           " is not in [0, ", grid.num_factors(), ")");
  indices.clear();
  offsets.assign(1, 0);
  std::vector<int> common, f;
  for (Index g = 0; g < groups; ++g) {
    grid.sample_factors(rng, common);
    for (Index i = 0; i < group_size; ++i) {
      grid.sample_factors(rng, f);
      for (const int k : shared) f[static_cast<std::size_t>(k)] = common[static_cast<std::size_t>(k)];
      indices.push_back(grid.index_of(f));
    }
    offsets.push_back(static_cast<Index>(indices.size()));
  }
}

/// Pairs as in Locatello et al. 2020 (weakly supervised disentanglement): the second observation
/// of a pair shares every factor of the first but `k`, which are chosen uniformly among the
/// factors and redrawn to a different value (factors of a single value are never chosen). `k` = 0
/// draws k uniformly from 1 … (varying factors − 1) for each pair, as their "k = rnd" setting.
/// Output layout as sample_shared_factor_groups() with groups of two.
/// @throws ArgumentError unless 0 ≤ k < the number of factors with more than one value.
inline void sample_pairs_differing_in(const FactorGrid& grid, int k, Index pairs, Rng& rng,
                                      std::vector<Index>& indices, std::vector<Index>& offsets) {
  std::vector<int> varying;
  for (int j = 0; j < grid.num_factors(); ++j)
    if (grid.factor_size(j) > 1) varying.push_back(j);
  const int count = static_cast<int>(varying.size());
  require<ArgumentError>(k >= 0 && k < count && pairs >= 1, "sample_pairs_differing_in: expected 0 <= k < ", count,
                         " (the factors that vary) and pairs >= 1, found k = ", k, ", pairs = ", pairs);
  indices.clear();
  offsets.assign(1, 0);
  std::vector<int> f, order = varying;
  for (Index p = 0; p < pairs; ++p) {
    grid.sample_factors(rng, f);
    indices.push_back(grid.index_of(f));
    const int changed = k > 0 ? k : 1 + static_cast<int>(rng.uniform_index(static_cast<std::uint64_t>(count - 1)));
    for (int i = 0; i < changed; ++i)  // partial Fisher–Yates: the first `changed` entries of a permutation
      std::swap(order[static_cast<std::size_t>(i)],
                order[static_cast<std::size_t>(i) + rng.uniform_index(static_cast<std::uint64_t>(count - i))]);
    for (int i = 0; i < changed; ++i) {
      const std::size_t j = static_cast<std::size_t>(order[static_cast<std::size_t>(i)]);
      const int size = grid.factor_size(static_cast<int>(j));
      f[j] = (f[j] + 1 + static_cast<int>(rng.uniform_index(static_cast<std::uint64_t>(size - 1)))) % size;
    }
    indices.push_back(grid.index_of(f));
    offsets.push_back(static_cast<Index>(indices.size()));
  }
}

}  // namespace mlvae
