// tests/test_png.cpp — PNG writing/reading, image grids, and the RGB canvas with its bitmap font.
#include <doctest/doctest.h>

#include "support.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "mlvae/io/png.hpp"

namespace {

using mlvae_test::TempDir;
using mlvae_test::contains;

namespace fs = std::filesystem;

/// Only `expected` remains in the directory: no temporary files left behind.
void check_no_temporaries(const TempDir& tmp, std::size_t expected) {
  std::size_t n = 0;
  for (const auto& entry : fs::directory_iterator(tmp.path)) {
    CHECK(entry.path().string().find(".tmp-") == std::string::npos);
    ++n;
  }
  CHECK(n == expected);
}

}  // namespace

TEST_CASE("png: write_png round-trips gray and RGB pixels atomically") {
  TempDir tmp;
  std::vector<std::uint8_t> gray(7 * 3);
  for (std::size_t i = 0; i < gray.size(); ++i) gray[i] = static_cast<std::uint8_t>(i * 12);
  const std::string path = tmp.file("gray.png");
  mlvae::write_png(path, 7, 3, 1, gray.data());
  int w = 0, h = 0;
  CHECK(mlvae::read_png_gray(path, w, h) == gray);
  CHECK(w == 7);
  CHECK(h == 3);
  mlvae::write_png(path, 7, 3, 1, gray.data());  // overwriting an existing file works

  std::vector<std::uint8_t> rgb = {255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30};
  mlvae::write_png(tmp.file("rgb.png"), 2, 2, 3, rgb.data());
  CHECK(mlvae::read_png_rgb(tmp.file("rgb.png"), w, h) == rgb);
  check_no_temporaries(tmp, 2);

  CHECK_THROWS_WITH_AS(mlvae::write_png(path, 2, 2, 4, rgb.data()),
                       contains("expected 1 (gray) or 3 (RGB) channels, found 4"), mlvae::ArgumentError);
  CHECK_THROWS_AS(mlvae::write_png(path, 0, 2, 1, rgb.data()), mlvae::ArgumentError);
  const std::string unwritable = tmp.file("no-such-dir/x.png");
  CHECK_THROWS_WITH_AS(mlvae::write_png(unwritable, 2, 2, 1, rgb.data()), contains(unwritable), mlvae::IoError);
  CHECK_THROWS_WITH_AS(mlvae::read_png_gray(tmp.file("missing.png"), w, h), contains("missing.png"), mlvae::IoError);
}

TEST_CASE("png: write_image_grid tiles - clamps - pads and scales") {
  TempDir tmp;
  const mlvae::Index ih = 2, iw = 3, rows = 2, cols = 3;
  mlvae::Matrix<float> images(ih * iw, rows * cols);
  for (mlvae::Index j = 0; j < images.cols(); ++j)
    for (mlvae::Index p = 0; p < images.rows(); ++p)
      images(p, j) = static_cast<float>(j) / 5.0f + static_cast<float>(p) * 0.01f;
  images(0, 5) = 1.7f;   // clamped to 255
  images(1, 5) = -0.5f;  // clamped to 0
  const int padding = 1, scale = 2;
  const std::string path = tmp.file("grid.png");
  mlvae::write_image_grid(path, images, ih, iw, rows, cols, padding, scale);
  int w = 0, h = 0;
  const auto pixels = mlvae::read_png_gray(path, w, h);
  REQUIRE(w == static_cast<int>(cols * iw * scale + (cols + 1) * padding));
  REQUIRE(h == static_cast<int>(rows * ih * scale + (rows + 1) * padding));
  const auto at = [&](int x, int y) { return static_cast<int>(pixels[static_cast<std::size_t>(y * w + x)]); };
  CHECK(at(0, 0) == 128);  // padding is mid-grey
  CHECK(at(padding + iw * scale, padding) == 128);
  for (mlvae::Index r = 0; r < rows; ++r)
    for (mlvae::Index c = 0; c < cols; ++c)
      for (mlvae::Index y = 0; y < ih * scale; ++y)
        for (mlvae::Index x = 0; x < iw * scale; ++x) {
          const double v = std::min(1.0, std::max(0.0, static_cast<double>(images((y / scale) * iw + x / scale, r * cols + c))));
          const int px = static_cast<int>(padding + c * (iw * scale + padding) + x);
          const int py = static_cast<int>(padding + r * (ih * scale + padding) + y);
          CHECK(at(px, py) == static_cast<int>(std::lround(v * 255.0)));
        }
  // Cell (1, 2) holds column 5: its first pixel is clamped to white, its second to black.
  const int x5 = static_cast<int>(padding + 2 * (iw * scale + padding)), y5 = static_cast<int>(padding + (ih * scale + padding));
  CHECK(at(x5, y5) == 255);
  CHECK(at(x5 + scale, y5) == 0);
  check_no_temporaries(tmp, 1);

  CHECK_THROWS_WITH_AS(mlvae::write_image_grid(path, images, ih, iw, 2, 2),
                       contains("expected 2 x 2 = 4 images (columns), found 6"), mlvae::ShapeError);
  CHECK_THROWS_WITH_AS(mlvae::write_image_grid(path, images, 3, 3, 2, 3),
                       contains("expected 3 x 3 = 9 rows (one image per column), found 6"), mlvae::ShapeError);
}

TEST_CASE("png: canvas draws text - lines - rectangles and pasted images") {
  TempDir tmp;
  const mlvae::Rgb white{255, 255, 255}, red{200, 0, 0}, blue{0, 0, 255};
  mlvae::Canvas canvas(120, 40, white);
  const std::string text = "Epoch 12: kl=3.5% (a_b+c/d-e,f)";
  CHECK(mlvae::Canvas::text_width("ab", 2) == 22);
  canvas.draw_text(2, 2, "Loss 0.25", red, 2);
  int inked = 0;
  for (int y = 0; y < canvas.height(); ++y)
    for (int x = 0; x < canvas.width(); ++x) inked += canvas.get(x, y) != white;
  CHECK(inked > 50);
  CHECK(canvas.get(0, 0) == white);

  canvas.line(0, 39, 119, 20, blue);
  CHECK(canvas.get(0, 39) == blue);
  CHECK(canvas.get(119, 20) == blue);
  canvas.fill_rect(100, 0, 500, 5, blue);  // clipped at the border
  CHECK(canvas.get(119, 4) == blue);
  canvas.set(-1, 500, red);  // ignored

  mlvae::Vector<double> image(6);
  image << 0.0, 0.5, 1.0, 1.0, 0.5, 0.0;
  canvas.paste_gray(60, 25, image, 2, 3, 2);
  CHECK(canvas.get(60, 25) == mlvae::Rgb{0, 0, 0});
  CHECK(canvas.get(65, 25) == white);
  CHECK(canvas.get(65, 27) == mlvae::Rgb{0, 0, 0});
  CHECK_THROWS_AS(canvas.paste_gray(0, 0, image, 3, 3), mlvae::ShapeError);

  // Every character of the documented set renders something (space excepted).
  mlvae::Canvas glyphs(400, 10, white);
  const std::string charset = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcxyz.,-:=/()%_+";
  glyphs.draw_text(0, 0, charset, red);
  for (std::size_t i = 0; i < charset.size(); ++i) {
    CAPTURE(charset[i]);
    int ink = 0;
    for (int y = 0; y < 7; ++y)
      for (int x = 0; x < 5; ++x) ink += glyphs.get(static_cast<int>(i) * 6 + x, y) != white;
    CHECK(ink > 0);
  }
  mlvae::Canvas label(60, 12, white);
  label.draw_text(1, 1, text, red);

  const std::string path = tmp.file("canvas.png");
  canvas.save_png(path);
  int w = 0, h = 0;
  const auto rgb = mlvae::read_png_rgb(path, w, h);
  REQUIRE(w == 120);
  REQUIRE(h == 40);
  CHECK(rgb == canvas.pixels());
  const auto gray = mlvae::read_png_gray(path, w, h);
  int dark = 0;
  for (auto v : gray) dark += v < 200;
  CHECK(dark > 50);
  CHECK_THROWS_AS(mlvae::Canvas(0, 5), mlvae::ArgumentError);
}
