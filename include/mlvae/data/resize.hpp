/// @file
/// @brief mlvae/data/resize.hpp — bilinear resizing of a batch of single-channel images (one image
/// per column, row-major pixels), e.g. to feed 28×28 Fashion-MNIST to the 64×64 conv architecture.
/// Pixel centres are aligned (the convention of PyTorch's `align_corners=False`).
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/threads.hpp"
#include "mlvae/core/types.hpp"

#include <algorithm>
#include <cmath>

namespace mlvae {

/// Resizes every column of `images` (height × width pixels, row-major within the column) to
/// out_height × out_width by bilinear interpolation; returns the resized images as columns.
/// Throws ShapeError when a size is not positive or the row count is not height · width.
template <typename T>
Matrix<T> resize_images(const Matrix<T>& images, Index height, Index width, Index out_height, Index out_width) {
  require<ShapeError>(height > 0 && width > 0 && out_height > 0 && out_width > 0,
                      "resize_images: sizes must be positive, found ", height, "x", width, " -> ", out_height, "x",
                      out_width);
  require<ShapeError>(images.rows() == height * width, "resize_images: expected ", height, "x", width, " = ",
                      height * width, " pixels per column, found ", images.rows());
  Matrix<T> out(out_height * out_width, images.cols());
  const double sy = static_cast<double>(height) / static_cast<double>(out_height);
  const double sx = static_cast<double>(width) / static_cast<double>(out_width);
  parallel_columns(images.cols(), out.rows(), [&](Index begin, Index end) {
    for (Index n = begin; n < end; ++n) {
      const T* src = images.col(n).data();
      T* dst = out.col(n).data();
      for (Index oy = 0; oy < out_height; ++oy) {
        const double fy = std::clamp((static_cast<double>(oy) + 0.5) * sy - 0.5, 0.0, static_cast<double>(height - 1));
        const Index y0 = static_cast<Index>(fy), y1 = std::min(y0 + 1, height - 1);
        const T wy = static_cast<T>(fy - static_cast<double>(y0));
        for (Index ox = 0; ox < out_width; ++ox) {
          const double fx =
              std::clamp((static_cast<double>(ox) + 0.5) * sx - 0.5, 0.0, static_cast<double>(width - 1));
          const Index x0 = static_cast<Index>(fx), x1 = std::min(x0 + 1, width - 1);
          const T wx = static_cast<T>(fx - static_cast<double>(x0));
          const T top = src[y0 * width + x0] * (T(1) - wx) + src[y0 * width + x1] * wx;
          const T bottom = src[y1 * width + x0] * (T(1) - wx) + src[y1 * width + x1] * wx;
          dst[oy * out_width + ox] = top * (T(1) - wy) + bottom * wy;
        }
      }
    }
  });
  return out;
}

}  // namespace mlvae
