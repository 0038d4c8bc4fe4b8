/// @file
/// mlvae/io/png.hpp — PNG output (and read-back) via libpng's simplified API: atomic writes,
/// image grids of model samples/reconstructions, and a small RGB canvas with a built-in 5x7 font
/// for plots and legends.
#pragma once

#include <png.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "mlvae/core/error.hpp"
#include "mlvae/core/types.hpp"

namespace mlvae {

namespace detail {

/// A name for a temporary file next to `path`: `path.tmp-XXXXXXXX` (random hex).
inline std::string temporary_sibling(const std::string& path) {
  static std::atomic<std::uint64_t> counter{0};
  std::uint64_t bits = counter.fetch_add(1) * 0x9e3779b97f4a7c15ULL;
  try {
    std::random_device device;
    bits ^= (std::uint64_t{device()} << 32) ^ device();
  } catch (...) {
    bits ^= reinterpret_cast<std::uintptr_t>(&bits);
  }
  char suffix[17];
  std::snprintf(suffix, sizeof suffix, "%08x", static_cast<unsigned>(bits ^ (bits >> 32)));
  return path + ".tmp-" + suffix;
}

/// Writes `pixels` (row-major, `channels` bytes per pixel) through `image` to `path` atomically.
inline void write_png_image(const std::string& path, png_image& image, const std::uint8_t* pixels) {
  std::FILE* file = nullptr;
  std::string temporary;
  for (int attempt = 0; attempt < 8 && file == nullptr; ++attempt) {
    temporary = temporary_sibling(path);
    file = std::fopen(temporary.c_str(), "wbx");  // "x": fail if it exists
  }
  require<IoError>(file != nullptr, "write_png: cannot create temporary file '", temporary, "' for '",
                   path, "': ", std::strerror(errno));
  const int ok = png_image_write_to_stdio(&image, file, 0, pixels, 0, nullptr);
  const std::string libpng_message = image.message;
  png_image_free(&image);
  const bool stream_ok = ok != 0 && std::ferror(file) == 0;
  const bool closed = std::fclose(file) == 0;
  if (!stream_ok || !closed) {
    std::remove(temporary.c_str());
    throw IoError(detail::concat("write_png: writing '", path, "' failed: ",
                                 ok == 0 ? libpng_message : std::string("I/O error")));
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(temporary.c_str());
    throw IoError(detail::concat("write_png: cannot rename '", temporary, "' to '", path, "': ", reason));
  }
}

/// Reads a PNG, converted to `format` (PNG_FORMAT_GRAY or PNG_FORMAT_RGB).
inline std::vector<std::uint8_t> read_png_as(const std::string& path, png_uint_32 format, int& width,
                                             int& height) {
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  if (png_image_begin_read_from_file(&image, path.c_str()) == 0)
    throw IoError(detail::concat("read_png: cannot read '", path, "': ", image.message));
  image.format = format;
  std::vector<std::uint8_t> pixels(PNG_IMAGE_SIZE(image));
  if (png_image_finish_read(&image, nullptr, pixels.data(), 0, nullptr) == 0) {
    const std::string message = image.message;
    png_image_free(&image);
    throw IoError(detail::concat("read_png: cannot decode '", path, "': ", message));
  }
  width = static_cast<int>(image.width);
  height = static_cast<int>(image.height);
  png_image_free(&image);
  return pixels;
}

/// Maps a value in [0, 1] to a byte (clamped; NaN maps to 0).
inline std::uint8_t unit_to_byte(double v) {
  if (!(v > 0.0)) return 0;
  if (v >= 1.0) return 255;
  return static_cast<std::uint8_t>(std::lround(v * 255.0));
}

}  // namespace detail

/// Writes an 8-bit PNG (channels 1 = gray, 3 = RGB; `pixels` row-major, width*height*channels bytes).
/// Atomic: writes `path.tmp-XXXXXXXX` in the same directory, closes it, then renames it to `path`.
/// @throws ArgumentError for non-positive sizes, unsupported channel counts or null pixels.
/// @throws IoError naming the path when the file cannot be written.
inline void write_png(const std::string& path, int width, int height, int channels,
                      const std::uint8_t* pixels) {
  require<ArgumentError>(width > 0 && height > 0, "write_png('", path,
                         "'): expected positive width and height, found ", width, " x ", height);
  require<ArgumentError>(channels == 1 || channels == 3, "write_png('", path,
                         "'): expected 1 (gray) or 3 (RGB) channels, found ", channels);
  require<ArgumentError>(pixels != nullptr, "write_png('", path, "'): pixels is null");
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(width);
  image.height = static_cast<png_uint_32>(height);
  image.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  detail::write_png_image(path, image, pixels);
}

/// Reads a PNG file as 8-bit gray (colour images are converted); sets `width` and `height`.
/// @returns width*height bytes, row-major.
/// @throws IoError naming the path when it is missing or not a PNG.
inline std::vector<std::uint8_t> read_png_gray(const std::string& path, int& width, int& height) {
  return detail::read_png_as(path, PNG_FORMAT_GRAY, width, height);
}

/// Reads a PNG file as 8-bit RGB; sets `width` and `height`. @returns width*height*3 bytes, row-major.
inline std::vector<std::uint8_t> read_png_rgb(const std::string& path, int& width, int& height) {
  return detail::read_png_as(path, PNG_FORMAT_RGB, width, height);
}

/// Grey value of the padding between grid cells.
inline constexpr std::uint8_t image_grid_padding_gray = 128;

/// Writes a grid of gray images to a PNG.
///
/// Each column of `images` is one image of image_height*image_width values in [0, 1] (clamped),
/// row-major within the column as IDX stores them. Column r*grid_cols + c goes to cell (r, c).
/// Cells are separated, and surrounded, by `padding` mid-grey pixels; each image pixel becomes a
/// scale x scale block. The PNG is grid_cols*image_width*scale + (grid_cols+1)*padding wide and
/// grid_rows*image_height*scale + (grid_rows+1)*padding high.
/// @throws ShapeError when images.cols() != grid_rows*grid_cols or images.rows() != height*width.
/// @throws ArgumentError for non-positive sizes/scale or negative padding; IoError from write_png.
template <typename T>
void write_image_grid(const std::string& path, const Matrix<T>& images, Index image_height,
                      Index image_width, Index grid_rows, Index grid_cols, int padding = 2, int scale = 1) {
  require<ArgumentError>(image_height > 0 && image_width > 0 && grid_rows > 0 && grid_cols > 0,
                         "write_image_grid('", path, "'): expected positive sizes, found image ",
                         image_height, " x ", image_width, ", grid ", grid_rows, " x ", grid_cols);
  require<ArgumentError>(padding >= 0 && scale >= 1, "write_image_grid('", path,
                         "'): expected padding >= 0 and scale >= 1, found padding ", padding,
                         ", scale ", scale);
  require<ShapeError>(images.rows() == image_height * image_width, "write_image_grid('", path,
                      "'): expected ", image_height, " x ", image_width, " = ", image_height * image_width,
                      " rows (one image per column), found ", images.rows());
  require<ShapeError>(images.cols() == grid_rows * grid_cols, "write_image_grid('", path,
                      "'): expected ", grid_rows, " x ", grid_cols, " = ", grid_rows * grid_cols,
                      " images (columns), found ", images.cols());
  const Index cell_w = image_width * scale, cell_h = image_height * scale;
  const Index width = grid_cols * cell_w + (grid_cols + 1) * padding;
  const Index height = grid_rows * cell_h + (grid_rows + 1) * padding;
  std::vector<std::uint8_t> pixels(static_cast<std::size_t>(width * height), image_grid_padding_gray);
  for (Index r = 0; r < grid_rows; ++r) {
    for (Index c = 0; c < grid_cols; ++c) {
      const Index column = r * grid_cols + c;
      const Index x0 = padding + c * (cell_w + padding), y0 = padding + r * (cell_h + padding);
      for (Index y = 0; y < cell_h; ++y) {
        std::uint8_t* row = pixels.data() + (y0 + y) * width + x0;
        const Index source_row = (y / scale) * image_width;
        for (Index x = 0; x < cell_w; ++x)
          row[x] = detail::unit_to_byte(static_cast<double>(images(source_row + x / scale, column)));
      }
    }
  }
  write_png(path, static_cast<int>(width), static_cast<int>(height), 1, pixels.data());
}

/// An 8-bit RGB colour.
struct Rgb {
  /// Red, 0–255.
  std::uint8_t r = 0, g = 0, b = 0;
  /// @var g
  /// Green, 0–255.
  /// @var b
  /// Blue, 0–255.

  /// True when all three channels are equal.
  friend bool operator==(const Rgb& a, const Rgb& b) { return a.r == b.r && a.g == b.g && a.b == b.b; }
  /// True when any channel differs.
  friend bool operator!=(const Rgb& a, const Rgb& b) { return !(a == b); }
};

namespace detail {

struct Glyph {
  char c;
  std::uint8_t rows[7];  // 5 bits each, bit 4 = leftmost column
};

/// 5x7 bitmap for `c` (lowercase maps to uppercase; unknown characters to '?').
inline const std::uint8_t* glyph_rows(char c) {
  static constexpr Glyph font[] = {
      {' ', {0, 0, 0, 0, 0, 0, 0}},
      {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}},
      {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
      {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}},
      {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
      {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}},
      {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
      {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}},
      {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
      {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}},
      {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
      {'A', {0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11}},
      {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
      {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}},
      {'D', {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C}},
      {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}},
      {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
      {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}},
      {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
      {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}},
      {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
      {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}},
      {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
      {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}},
      {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
      {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
      {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}},
      {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}},
      {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
      {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}},
      {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
      {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
      {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
      {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}},
      {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}},
      {'Y', {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}},
      {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
      {'.', {0, 0, 0, 0, 0, 0x0C, 0x0C}},
      {',', {0, 0, 0, 0, 0x0C, 0x04, 0x08}},
      {'-', {0, 0, 0, 0x1F, 0, 0, 0}},
      {':', {0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0}},
      {'=', {0, 0, 0x1F, 0, 0x1F, 0, 0}},
      {'/', {0, 0x01, 0x02, 0x04, 0x08, 0x10, 0}},
      {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}},
      {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
      {'%', {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}},
      {'_', {0, 0, 0, 0, 0, 0, 0x1F}},
      {'+', {0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0}},
      {'?', {0x0E, 0x11, 0x01, 0x02, 0x04, 0, 0x04}},
  };
  if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  for (const Glyph& g : font)
    if (g.c == c) return g.rows;
  return glyph_rows('?');
}

}  // namespace detail

/// A small RGB raster for plots and legends. Coordinates are pixels, (0, 0) top-left; drawing
/// outside the canvas is clipped silently.
class Canvas {
public:
  /// Character cell of the built-in font at scale 1: 5x7 glyphs advanced by 6 pixels, lines by 9.
  static constexpr int glyph_width = 5, glyph_height = 7, glyph_advance = 6, line_advance = 9;
  /// @var glyph_height
  /// Glyph height in pixels at scale 1 (7).
  /// @var glyph_advance
  /// Horizontal advance per character in pixels at scale 1 (6).
  /// @var line_advance
  /// Vertical advance per text line in pixels at scale 1 (9).

  /// @throws ArgumentError unless width, height >= 1.
  Canvas(int width, int height, Rgb background = Rgb{255, 255, 255}) : width_(width), height_(height) {
    require<ArgumentError>(width > 0 && height > 0, "Canvas: expected positive size, found ", width,
                           " x ", height);
    pixels_.resize(static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * 3);
    fill_rect(0, 0, width, height, background);
  }

  /// Width in pixels.
  int width() const { return width_; }
  /// Height in pixels.
  int height() const { return height_; }
  /// Row-major RGB bytes, width*height*3.
  const std::vector<std::uint8_t>& pixels() const { return pixels_; }

  /// Colour at (x, y). @throws ArgumentError outside the canvas.
  Rgb get(int x, int y) const {
    require<ArgumentError>(inside(x, y), "Canvas::get: (", x, ", ", y, ") is outside ", width_, " x ", height_);
    const std::uint8_t* p = &pixels_[offset(x, y)];
    return Rgb{p[0], p[1], p[2]};
  }

  /// Sets one pixel (ignored outside the canvas).
  void set(int x, int y, Rgb color) {
    if (!inside(x, y)) return;
    std::uint8_t* p = &pixels_[offset(x, y)];
    p[0] = color.r;
    p[1] = color.g;
    p[2] = color.b;
  }

  /// One-pixel line from (x0, y0) to (x1, y1), both ends included (Bresenham).
  void line(int x0, int y0, int x1, int y1, Rgb color) {
    const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
    const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (;;) {
      set(x0, y0, color);
      if (x0 == x1 && y0 == y1) break;
      const int e2 = 2 * err;
      if (e2 >= dy) {
        err += dy;
        x0 += sx;
      }
      if (e2 <= dx) {
        err += dx;
        y0 += sy;
      }
    }
  }

  /// Fills the w x h rectangle whose top-left corner is (x, y).
  void fill_rect(int x, int y, int w, int h, Rgb color) {
    const int xa = std::max(x, 0), xb = std::min(x + w, width_);
    const int ya = std::max(y, 0), yb = std::min(y + h, height_);
    for (int yy = ya; yy < yb; ++yy)
      for (int xx = xa; xx < xb; ++xx) set(xx, yy, color);
  }

  /// Outline of the w x h rectangle whose top-left corner is (x, y).
  void draw_rect(int x, int y, int w, int h, Rgb color) {
    if (w <= 0 || h <= 0) return;
    line(x, y, x + w - 1, y, color);
    line(x, y + h - 1, x + w - 1, y + h - 1, color);
    line(x, y, x, y + h - 1, color);
    line(x + w - 1, y, x + w - 1, y + h - 1, color);
  }

  /// Draws `text` with the built-in 5x7 font, top-left of the first glyph at (x, y), each font
  /// pixel a scale x scale block. Covers digits, A-Z (lowercase drawn as uppercase), space and
  /// .,-:=/()%_+?; other characters draw as '?'. '\n' starts a new line.
  void draw_text(int x, int y, const std::string& text, Rgb color, int scale = 1) {
    scale = std::max(scale, 1);
    int cx = x, cy = y;
    for (char c : text) {
      if (c == '\n') {
        cx = x;
        cy += line_advance * scale;
        continue;
      }
      const std::uint8_t* rows = detail::glyph_rows(c);
      for (int r = 0; r < glyph_height; ++r)
        for (int col = 0; col < glyph_width; ++col)
          if ((rows[r] >> (glyph_width - 1 - col)) & 1u)
            fill_rect(cx + col * scale, cy + r * scale, scale, scale, color);
      cx += glyph_advance * scale;
    }
  }

  /// Width in pixels of the longest line of `text` drawn at `scale` (without trailing spacing).
  static int text_width(const std::string& text, int scale = 1) {
    scale = std::max(scale, 1);
    int longest = 0, current = 0;
    for (char c : text) {
      if (c == '\n') {
        current = 0;
        continue;
      }
      ++current;
      longest = std::max(longest, current);
    }
    return longest == 0 ? 0 : (longest * glyph_advance - (glyph_advance - glyph_width)) * scale;
  }

  /// Pastes a gray image (`pixels` row-major, w*h bytes) with its top-left at (x, y), each pixel a
  /// scale x scale block.
  void paste_gray(int x, int y, int w, int h, const std::uint8_t* pixels, int scale = 1) {
    scale = std::max(scale, 1);
    for (int yy = 0; yy < h; ++yy)
      for (int xx = 0; xx < w; ++xx) {
        const std::uint8_t v = pixels[static_cast<std::size_t>(yy) * static_cast<std::size_t>(w) + xx];
        fill_rect(x + xx * scale, y + yy * scale, scale, scale, Rgb{v, v, v});
      }
  }

  /// Pastes one image stored as a column vector of height*width values in [0, 1] (row-major
  /// pixels, as IDX stores them; clamped), top-left at (x, y).
  /// @throws ShapeError when image.size() != height*width.
  template <typename Derived>
  void paste_gray(int x, int y, const Eigen::DenseBase<Derived>& image, Index height, Index width,
                  int scale = 1) {
    require<ShapeError>(image.size() == height * width, "Canvas::paste_gray: expected ", height, " x ",
                        width, " = ", height * width, " values, found ", image.size());
    scale = std::max(scale, 1);
    for (Index yy = 0; yy < height; ++yy)
      for (Index xx = 0; xx < width; ++xx) {
        const std::uint8_t v = detail::unit_to_byte(static_cast<double>(image(yy * width + xx)));
        fill_rect(x + static_cast<int>(xx) * scale, y + static_cast<int>(yy) * scale, scale, scale,
                  Rgb{v, v, v});
      }
  }

  /// Writes the canvas as an RGB PNG (atomically; see write_png).
  void save_png(const std::string& path) const { write_png(path, width_, height_, 3, pixels_.data()); }

private:
  bool inside(int x, int y) const { return x >= 0 && y >= 0 && x < width_ && y < height_; }
  std::size_t offset(int x, int y) const {
    return (static_cast<std::size_t>(y) * static_cast<std::size_t>(width_) + static_cast<std::size_t>(x)) * 3;
  }

  int width_, height_;
  std::vector<std::uint8_t> pixels_;
};

}  // namespace mlvae
