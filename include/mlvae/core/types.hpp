// mlvae/core/types.hpp — scalar-generic Eigen aliases used throughout mlvae.
// Convention: observations are COLUMNS (features x batch), Eigen's default column-major layout,
// so a dense layer over a batch is one GEMM.
#pragma once

#include <Eigen/Core>

#include <cstdint>

namespace mlvae {

using Index = Eigen::Index;

template <typename T>
using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
template <typename T>
using Vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;
template <typename T>
using RowVector = Eigen::Matrix<T, 1, Eigen::Dynamic>;
template <typename T>
using MatrixMap = Eigen::Map<Matrix<T>>;
template <typename T>
using VectorMap = Eigen::Map<Vector<T>>;

/// Resizes `m` to rows x cols only when its shape differs, so a steady-state step never reallocates.
template <typename Derived>
void ensure_shape(Eigen::PlainObjectBase<Derived>& m, Index rows, Index cols) {
  if (m.rows() != rows || m.cols() != cols) m.resize(rows, cols);
}

}  // namespace mlvae
