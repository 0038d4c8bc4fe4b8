/// @file
/// mlvae/nn/im2col.hpp — image shapes, convolution geometry and the im2col / col2im kernels shared by
/// Conv2d and ConvTranspose2d. Output size of a convolution: OH = ⌊(H + 2p − k) / s⌋ + 1 (same for W);
/// im2col lays out patches so a convolution is one GEMM, col2im is its adjoint (scatter-add).
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/threads.hpp"
#include "mlvae/core/types.hpp"

#include <algorithm>
#include <cstddef>
#include <string>

namespace mlvae {

/// The shape of one image, C × H × W. An observation (one matrix column) holds it flattened in CHW
/// order: element (c, h, w) is row (c·H + h)·W + w. For C = 1 this is the row-major pixel order of
/// IDX files. A flat feature vector of n entries is written {n, 1, 1}.
struct ImageShape {
  Index channels = 0;  ///< C
  Index height = 0;    ///< H
  Index width = 0;     ///< W

  /// C·H·W, the rows of an observation.
  Index size() const { return channels * height * width; }
  /// H·W, the pixels of one channel plane.
  Index plane() const { return height * width; }
  /// "CxHxW", or just "n" for a flat {n, 1, 1} shape.
  std::string describe() const {
    if (height == 1 && width == 1) return detail::concat(channels);
    return detail::concat(channels, "x", height, "x", width);
  }
  /// True when C, H and W are all equal.
  friend bool operator==(const ImageShape& a, const ImageShape& b) {
    return a.channels == b.channels && a.height == b.height && a.width == b.width;
  }
  /// True when any of C, H, W differ.
  friend bool operator!=(const ImageShape& a, const ImageShape& b) { return !(a == b); }
};

/// Geometry of a square-kernel convolution over an `input` image: kernel k, stride s, zero padding p.
/// `out_height`/`out_width` follow OH = ⌊(H + 2p − k) / s⌋ + 1. The patch matrix of one image has
/// `positions()` = OH·OW rows and `patch_size()` = C·k·k columns, column (c·k + i)·k + j holding
/// input pixel (c, oh·s − p + i, ow·s − p + j) at row oh·OW + ow (zero where that lies in the padding).
struct ConvGeometry {
  /// Shape of one input image.
  ImageShape input;
  /// Kernel side k (pixels).
  Index kernel = 1, stride = 1, padding = 0;
  /// @var stride
  /// Stride s (pixels).
  /// @var padding
  /// Zero padding p on each side (pixels).

  /// Output height OH.
  Index out_height = 0, out_width = 0;
  /// @var out_width
  /// Output width OW.

  /// C·k·k, the columns of the patch matrix (one kernel application).
  Index patch_size() const { return input.channels * kernel * kernel; }
  /// OH·OW, the rows of one image's patch matrix (output positions).
  Index positions() const { return out_height * out_width; }
};

/// Builds and validates the geometry; `who` names the layer in error messages.
inline ConvGeometry make_conv_geometry(ImageShape input, Index kernel, Index stride, Index padding,
                                       const std::string& who) {
  require<ShapeError>(input.channels > 0 && input.height > 0 && input.width > 0, who,
                      ": the input image shape must be positive, found ", input.channels, "x", input.height, "x",
                      input.width);
  require<ShapeError>(kernel > 0 && stride > 0 && padding >= 0, who,
                      ": expected kernel > 0, stride > 0, padding >= 0, found kernel=", kernel, " stride=", stride,
                      " padding=", padding);
  require<ShapeError>(input.height + 2 * padding >= kernel && input.width + 2 * padding >= kernel, who,
                      ": kernel ", kernel, " does not fit the ", input.height, "x", input.width,
                      " image with padding ", padding, " (the output size would be empty)");
  ConvGeometry g;
  g.input = input;
  g.kernel = kernel;
  g.stride = stride;
  g.padding = padding;
  g.out_height = (input.height + 2 * padding - kernel) / stride + 1;
  g.out_width = (input.width + 2 * padding - kernel) / stride + 1;
  return g;
}

namespace detail {

/// ⌈a / b⌉ for b > 0 and any sign of a.
inline Index ceil_div(Index a, Index b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

/// Output columns ow with 0 ≤ ow·s − p + j < W: [lo, hi), clamped to [0, OW].
inline void valid_range(Index width, Index out_width, Index stride, Index offset, Index& lo, Index& hi) {
  // offset = j − p; need 0 ≤ ow·s + offset < width.
  lo = std::clamp<Index>(ceil_div(-offset, stride), 0, out_width);
  hi = std::clamp<Index>(ceil_div(width - offset, stride), lo, out_width);
}

template <typename T>
void im2col_range(const ConvGeometry& g, const T* images, Index count, T* cols, Index begin, Index end);
template <typename T>
void col2im_range(const ConvGeometry& g, const T* cols, Index count, T* images, Index begin, Index end,
                  bool assign = false);
}  // namespace detail

/// im2col for `count` images stored back to back at `images` (each g.input.size() scalars, CHW).
/// Writes the column-major matrix `cols` of (count·OH·OW) rows × (C·k·k) columns: image n's patch
/// rows are rows [n·OH·OW, (n+1)·OH·OW). Every column is written contiguously, so one GEMM with the
/// (C·k·k)-wide weight matrix convolves the whole chunk.
template <typename T>
void im2col(const ConvGeometry& g, const T* images, Index count, T* cols) {
  // Observations are independent (each writes its own rows), so threads split them.
  parallel_columns(count, g.positions() * g.patch_size(),
                   [&](Index begin, Index end) { detail::im2col_range(g, images, count, cols, begin, end); });
}

namespace detail {
/// im2col for observations [begin, end) of a chunk of `count`.
template <typename T>
void im2col_range(const ConvGeometry& g, const T* images, Index count, T* cols, Index begin, Index end) {
  const Index H = g.input.height, W = g.input.width, K = g.kernel, s = g.stride, p = g.padding;
  const Index OH = g.out_height, OW = g.out_width, P = g.positions(), image_size = g.input.size();
  const Index ld = count * P;
  for (Index c = 0; c < g.input.channels; ++c) {
    for (Index ki = 0; ki < K; ++ki) {
      for (Index kj = 0; kj < K; ++kj) {
        T* col = cols + ((c * K + ki) * K + kj) * ld;
        Index lo, hi;
        detail::valid_range(W, OW, s, kj - p, lo, hi);
        // Rows are short (OW = 7 or 14 here): one plain loop per row writes every entry, zeros
        // included, instead of up to three fill/copy calls (which GCC turns into memset/memcpy
        // calls costing more than the row itself).
        for (Index n = begin; n < end; ++n) {
          const T* plane = images + n * image_size + c * H * W;
          T* dst = col + n * P;
          for (Index oh = 0; oh < OH; ++oh, dst += OW) {
            const Index ih = oh * s - p + ki;
            if (ih < 0 || ih >= H) {
              for (Index ow = 0; ow < OW; ++ow) dst[ow] = T(0);
              continue;
            }
            const T* line = plane + ih * W;
            const Index offset = kj - p;  // line[ow·s + offset] is pixel (ih, ow·s − p + kj), read only inside [lo, hi)
            for (Index ow = 0; ow < OW; ++ow) dst[ow] = (ow >= lo && ow < hi) ? line[ow * s + offset] : T(0);
          }
        }
      }
    }
  }
}

}  // namespace detail

/// col2im, the adjoint of im2col: ADDS every entry of `cols` ((count·OH·OW) × (C·k·k), laid out as
/// im2col writes it) into the pixel it was read from, for `count` images stored back to back at
/// `images` (which the caller zeroes first when it wants a plain result), or, with `assign`, WRITES
/// the sum (each channel plane is zeroed just before its entries arrive, while it is in cache,
/// instead of a separate pass over the whole batch). Padding entries are dropped.
template <typename T>
void col2im(const ConvGeometry& g, const T* cols, Index count, T* images, bool assign = false) {
  // Each observation's entries go only into its own image, so threads split observations.
  parallel_columns(count, g.positions() * g.patch_size(),
                   [&](Index begin, Index end) { detail::col2im_range(g, cols, count, images, begin, end, assign); });
}

namespace detail {
/// col2im for observations [begin, end) of a chunk of `count`.
template <typename T>
void col2im_range(const ConvGeometry& g, const T* cols, Index count, T* images, Index begin, Index end, bool assign) {
  const Index H = g.input.height, W = g.input.width, K = g.kernel, s = g.stride, p = g.padding;
  const Index OH = g.out_height, OW = g.out_width, P = g.positions(), image_size = g.input.size();
  const Index ld = count * P;
  for (Index c = 0; c < g.input.channels; ++c) {
    if (assign)
      for (Index n = begin; n < end; ++n) std::fill_n(images + n * image_size + c * H * W, H * W, T(0));
    for (Index ki = 0; ki < K; ++ki) {
      for (Index kj = 0; kj < K; ++kj) {
        const T* col = cols + ((c * K + ki) * K + kj) * ld;
        Index lo, hi;
        detail::valid_range(W, OW, s, kj - p, lo, hi);
        for (Index n = begin; n < end; ++n) {
          T* plane = images + n * image_size + c * H * W;
          const T* src = col + n * P;
          for (Index oh = 0; oh < OH; ++oh, src += OW) {
            const Index ih = oh * s - p + ki;
            if (ih < 0 || ih >= H) continue;
            T* dst = plane + ih * W + (lo * s - p + kj);
            if (s == 1) {
              for (Index ow = lo; ow < hi; ++ow, ++dst) *dst += src[ow];
            } else {
              for (Index ow = lo; ow < hi; ++ow, dst += s) *dst += src[ow];
            }
          }
        }
      }
    }
  }
}

}  // namespace detail

/// How many observations one workspace chunk holds: the most whose `bytes_per_observation` fit in
/// `limit_bytes`, at least 1 and at most `batch`.
inline Index workspace_chunk(Index batch, std::size_t bytes_per_observation, std::size_t limit_bytes) {
  const std::size_t fit = bytes_per_observation == 0 ? static_cast<std::size_t>(batch)
                                                     : limit_bytes / bytes_per_observation;
  return std::clamp<Index>(static_cast<Index>(std::min<std::size_t>(fit, static_cast<std::size_t>(batch))), 1,
                           std::max<Index>(batch, 1));
}

/// Default bound on a convolution layer's im2col workspace (bytes): small enough that a chunk's
/// patch matrix, its product and col2im stay in the L2 cache (a few MiB per core), large enough
/// for efficient products. Measured on the conv28 step (docs/performance.md): 4 MiB ran 12 %
/// faster at 1 thread and 4 % at 2 than one 64 MiB chunk holding the whole batch (whose patches
/// backward could reuse), 512 KiB 9 % slower.
inline constexpr std::size_t default_conv_workspace_bytes = std::size_t{4} << 20;

}  // namespace mlvae
