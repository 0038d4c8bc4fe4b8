/// @file
/// mlvae/core/types.hpp — scalar-generic Eigen aliases used throughout mlvae.
/// Convention: observations are COLUMNS (features x batch), Eigen's default column-major layout,
/// so a dense layer over a batch is one GEMM.
#pragma once

#include <Eigen/Core>

#include <cstdint>
#include <type_traits>

namespace mlvae {

/// Signed index and size type (Eigen::Index, i.e. std::ptrdiff_t).
using Index = Eigen::Index;

template <typename T>
/// Dynamic column-major matrix; a batch is features x batch (one observation per column).
using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
template <typename T>
/// Dynamic column vector.
using Vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;
template <typename T>
/// Dynamic row vector (e.g. one value per observation of a batch).
using RowVector = Eigen::Matrix<T, 1, Eigen::Dynamic>;
template <typename T>
/// Matrix view over external memory (e.g. a layer's slice of a parameter store).
using MatrixMap = Eigen::Map<Matrix<T>>;
template <typename T>
/// Vector view over external memory.
using VectorMap = Eigen::Map<Vector<T>>;

#ifdef MLVAE_FLOAT_ONLY
/// True in float-only builds (MLVAE_FLOAT_ONLY defined; docs/architecture.md, "Build modes"): models,
/// parameter stores and Adam then refuse any scalar but float at compile time.
inline constexpr bool float_only = true;
#else
/// True in float-only builds (MLVAE_FLOAT_ONLY defined; docs/architecture.md, "Build modes").
inline constexpr bool float_only = false;
#endif

/// Whether `T` may be a model's scalar: float, or double unless the build is float-only.
template <typename T>
inline constexpr bool is_model_scalar_v = std::is_same_v<T, float> || (!float_only && std::is_same_v<T, double>);

/// Resizes `m` to rows x cols only when its shape differs, so a steady-state step never reallocates.
template <typename Derived>
void ensure_shape(Eigen::PlainObjectBase<Derived>& m, Index rows, Index cols) {
  if (m.rows() != rows || m.cols() != cols) m.resize(rows, cols);
}
/// A Map is a view of memory sized by its owner: it must already be rows x cols (not resized).
template <typename P, int Options, typename Stride>
void ensure_shape(Eigen::Map<P, Options, Stride>& m, Index rows, Index cols) {
  eigen_assert(m.rows() == rows && m.cols() == cols);
  (void)m, (void)rows, (void)cols;
}

}  // namespace mlvae
