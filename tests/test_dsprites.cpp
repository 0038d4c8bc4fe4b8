// The procedural dSprites generator (data/dsprites.hpp): the factor grid and its index arithmetic,
// and invariants of the rendered images that a wrong generator would break.
#include <doctest/doctest.h>

#include "support.hpp"

#include "mlvae/data/dsprites.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

using namespace mlvae;

namespace {

using Image = Vector<double>;

Image render(int shape, int scale, int orientation, int x, int y) {
  Image img(DSprites::pixels);
  DSprites::render(std::vector<int>{shape, scale, orientation, x, y}, img);
  return img;
}

struct Moments {
  double area = 0, row = 0, col = 0, rr = 0, cc = 0, rc = 0;
};

Moments moments(const Image& img) {
  Moments m;
  for (int r = 0; r < DSprites::image_size; ++r)
    for (int c = 0; c < DSprites::image_size; ++c) {
      const double v = img(r * DSprites::image_size + c);
      m.area += v;
      m.row += v * r;
      m.col += v * c;
    }
  m.row /= m.area;
  m.col /= m.area;
  for (int r = 0; r < DSprites::image_size; ++r)
    for (int c = 0; c < DSprites::image_size; ++c) {
      const double v = img(r * DSprites::image_size + c);
      m.rr += v * (r - m.row) * (r - m.row);
      m.cc += v * (c - m.col) * (c - m.col);
      m.rc += v * (r - m.row) * (c - m.col);
    }
  return m;
}

// Largest overlap (intersection over union) of the image with its 180° rotation about any point
// (searching half-pixel centres near the centroid): 1 for a point-symmetric sprite.
double best_point_symmetry(const Image& img) {
  const Moments m = moments(img);
  const int n = DSprites::image_size;
  double best = 0;
  for (int sr = -3; sr <= 3; ++sr)
    for (int sc = -3; sc <= 3; ++sc) {
      // Reflection r -> R - r with R = 2·centre, an integer near 2·centroid.
      const int R = static_cast<int>(std::lround(2 * m.row)) + sr, C = static_cast<int>(std::lround(2 * m.col)) + sc;
      double inter = 0, uni = 0;
      for (int r = 0; r < n; ++r)
        for (int c = 0; c < n; ++c) {
          const double a = img(r * n + c);
          const int r2 = R - r, c2 = C - c;
          const double b = (r2 >= 0 && r2 < n && c2 >= 0 && c2 < n) ? img(r2 * n + c2) : 0.0;
          inter += std::min(a, b);
          uni += std::max(a, b);
        }
      best = std::max(best, inter / uni);
    }
  return best;
}

}  // namespace

TEST_CASE("dSprites factor grid: sizes and index round trip") {
  const FactorGrid& g = DSprites::grid();
  CHECK(g.size() == 737280);
  CHECK(g.sizes() == std::vector<int>{3, 6, 40, 32, 32});
  CHECK(g.factors_of(0) == std::vector<int>{0, 0, 0, 0, 0});
  CHECK(g.factors_of(737279) == std::vector<int>{2, 5, 39, 31, 31});
  CHECK(g.factors_of(1) == std::vector<int>{0, 0, 0, 0, 1});  // y varies fastest, as in the original
  Rng rng(5);
  for (int i = 0; i < 200; ++i) {
    const Index index = g.sample_index(rng);
    CHECK(g.index_of(g.factors_of(index)) == index);
  }
  CHECK(DSprites::scale_value(0) == doctest::Approx(0.5));
  CHECK(DSprites::scale_value(5) == doctest::Approx(1.0));
  CHECK(DSprites::orientation_value(39) == doctest::Approx(2 * M_PI));
  CHECK_THROWS_WITH_AS(g.index_of({3, 0, 0, 0, 0}), mlvae_test::contains("[0, 3)"), ArgumentError);
  CHECK_THROWS_AS(g.index_of({0, 0, 0}), ShapeError);
  CHECK_THROWS_AS(g.factors_of(737280), ArgumentError);
}

TEST_CASE("dSprites: the same index always gives the same binary image") {
  Rng rng(9);
  Matrix<float> a, b;
  std::vector<Index> indices;
  for (int i = 0; i < 16; ++i) indices.push_back(DSprites::grid().sample_index(rng));
  DSprites::render_batch(indices, a);
  DSprites::render_batch(indices, b);
  CHECK(a.rows() == 4096);
  CHECK(a == b);
  CHECK((a.array() * (1 - a.array())).abs().maxCoeff() == 0);  // every pixel 0 or 1
  for (Index j = 0; j < a.cols(); ++j) CHECK(a.col(j).sum() > 20);  // a visible sprite in frame
  // Different shapes at the same pose differ.
  CHECK((render(0, 3, 5, 10, 10) - render(1, 3, 5, 10, 10)).cwiseAbs().sum() > 20);
  CHECK((render(1, 3, 5, 10, 10) - render(2, 3, 5, 10, 10)).cwiseAbs().sum() > 20);
}

TEST_CASE("dSprites: the area grows with the scale") {
  for (int shape = 0; shape < 3; ++shape) {
    double previous = 0;
    for (int scale = 0; scale < 6; ++scale) {
      const double area = render(shape, scale, 7, 16, 16).sum();
      CHECK(area > previous * 1.1);  // scale² grows by at least (0.6/0.5)² = 1.44 between steps
      previous = area;
    }
  }
}

TEST_CASE("dSprites: the position moves the centroid") {
  for (int shape = 0; shape < 3; ++shape) {
    const Moments left = moments(render(shape, 2, 0, 0, 16)), right = moments(render(shape, 2, 0, 31, 16));
    CHECK(right.col - left.col == doctest::Approx(32).epsilon(0.05));  // x spans 32 pixels
    CHECK(std::abs(right.row - left.row) < 0.5);                        // and leaves the rows alone
    const Moments top = moments(render(shape, 2, 0, 16, 0)), bottom = moments(render(shape, 2, 0, 16, 31));
    CHECK(bottom.row - top.row == doctest::Approx(32).epsilon(0.05));
    CHECK(std::abs(bottom.col - top.col) < 0.5);
  }
}

TEST_CASE("dSprites: the orientation rotates the second moments") {
  // The ellipse's principal axis (in column, row coordinates) follows the orientation angle mod π.
  for (int o = 0; o < 40; o += 3) {
    const Moments m = moments(render(1, 5, o, 16, 16));
    const double axis = 0.5 * std::atan2(2 * m.rc, m.cc - m.rr);
    double diff = std::fmod(axis - DSprites::orientation_value(o), M_PI);
    if (diff > M_PI / 2) diff -= M_PI;
    if (diff < -M_PI / 2) diff += M_PI;
    INFO("orientation ", o);
    CHECK(std::abs(diff) < 0.05);
    // The moments' trace is rotation invariant (area and spread do not depend on the angle).
    const Moments m0 = moments(render(1, 5, 0, 16, 16));
    CHECK((m.rr + m.cc) / m.area == doctest::Approx((m0.rr + m0.cc) / m0.area).epsilon(0.03));
  }
}

TEST_CASE("dSprites: the heart is not symmetric under a 180 degree rotation") {
  for (const int o : {0, 10, 25}) {
    CHECK(best_point_symmetry(render(0, 5, o, 16, 16)) > 0.97);  // square
    CHECK(best_point_symmetry(render(1, 5, o, 16, 16)) > 0.97);  // ellipse
    CHECK(best_point_symmetry(render(2, 5, o, 16, 16)) < 0.85);  // heart
  }
  // In its own frame as well: points of the heart whose reflection is outside.
  int asymmetric = 0;
  for (int i = -30; i <= 30; ++i)
    for (int j = -30; j <= 30; ++j)
      asymmetric += DSprites::inside(2, i / 20.0, j / 20.0) != DSprites::inside(2, -i / 20.0, -j / 20.0);
  CHECK(asymmetric > 100);
}

TEST_CASE("dSprites groups share their factors and pairs differ in exactly k") {
  const FactorGrid& g = DSprites::grid();
  Rng rng(4);
  std::vector<Index> indices, offsets;
  sample_shared_factor_groups(g, {DSprites::Shape, DSprites::Scale}, 5, 8, rng, indices, offsets);
  REQUIRE(offsets == std::vector<Index>{0, 8, 16, 24, 32, 40});
  int other_differs = 0;
  for (std::size_t grp = 0; grp + 1 < offsets.size(); ++grp) {
    const auto first = g.factors_of(indices[static_cast<std::size_t>(offsets[grp])]);
    for (Index i = offsets[grp] + 1; i < offsets[grp + 1]; ++i) {
      const auto f = g.factors_of(indices[static_cast<std::size_t>(i)]);
      CHECK(f[0] == first[0]);
      CHECK(f[1] == first[1]);
      other_differs += f[3] != first[3];
    }
  }
  CHECK(other_differs > 20);  // the unshared factors do vary
  for (const int k : {1, 3, 4}) {
    sample_pairs_differing_in(g, k, 50, rng, indices, offsets);
    REQUIRE(indices.size() == 100);
    for (std::size_t p = 0; p < 50; ++p) {
      const auto a = g.factors_of(indices[2 * p]), b = g.factors_of(indices[2 * p + 1]);
      int differ = 0;
      for (int j = 0; j < 5; ++j) differ += a[static_cast<std::size_t>(j)] != b[static_cast<std::size_t>(j)];
      CHECK(differ == k);
    }
  }
  sample_pairs_differing_in(g, 0, 200, rng, indices, offsets);  // k drawn per pair from 1..4
  std::vector<int> seen(6, 0);
  for (std::size_t p = 0; p < 200; ++p) {
    const auto a = g.factors_of(indices[2 * p]), b = g.factors_of(indices[2 * p + 1]);
    int differ = 0;
    for (int j = 0; j < 5; ++j) differ += a[static_cast<std::size_t>(j)] != b[static_cast<std::size_t>(j)];
    ++seen[static_cast<std::size_t>(differ)];
  }
  CHECK(seen[0] == 0);
  CHECK(seen[5] == 0);
  for (int d = 1; d <= 4; ++d) CHECK(seen[static_cast<std::size_t>(d)] > 20);
  CHECK_THROWS_AS(sample_pairs_differing_in(g, 5, 1, rng, indices, offsets), ArgumentError);
  CHECK_THROWS_AS(sample_shared_factor_groups(g, {7}, 1, 2, rng, indices, offsets), ArgumentError);
}
