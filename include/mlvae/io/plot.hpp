/// @file
/// mlvae/io/plot.hpp — a small line-plot renderer on io/png.hpp's Canvas: axes with numbered
/// ticks ("nice" 1-2-5 steps), several series (lines with square markers) and a legend, e.g. for
/// accuracy vs. number of accumulated images, or training curves. Text uses the Canvas's 5x7 font
/// (upper case, digits and .,-:=/()%_+ only; other characters draw as '?').
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/io/png.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

namespace mlvae {

/// One series: points (x[i], y[i]) joined by lines, in `color`, named in the legend.
struct PlotSeries {
  /// Legend label.
  std::string name;
  /// x coordinates of the points.
  std::vector<double> x, y;
  /// @var y
  /// y coordinates of the points (same length as x).

  /// Line and marker colour.
  Rgb color{31, 119, 180};
  /// Draw the joining lines dashed instead of solid.
  bool dashed = false;
};

/// Layout of a line plot: titles, image size and axis ranges.
struct PlotOptions {
  /// Title, drawn centred above the axes at double size.
  std::string title, x_label, y_label;
  /// @var x_label
  /// Label centred below the x axis.
  /// @var y_label
  /// Label above the y axis, at the top left.

  /// Image width in pixels.
  int width = 640, height = 420;
  /// @var height
  /// Image height in pixels.
  bool log2_x = false;  ///< x axis in log2 scale (ticks at powers of two)
  double y_min = std::numeric_limits<double>::quiet_NaN();  ///< NaN: from the data
  /// Top of the y axis; NaN: from the data (rounded up to a tick).
  double y_max = std::numeric_limits<double>::quiet_NaN();
  bool legend_bottom = false;  ///< legend in the bottom-right corner of the axes instead of the top-right
};

/// A qualitative palette (tab10).
inline Rgb plot_color(std::size_t i) {
  static const Rgb palette[] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},  {148, 103, 189},
                                {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
  return palette[i % 10];
}

namespace detail {
inline double nice_step(double range, int target_ticks) {
  const double raw = range / std::max(target_ticks, 1);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  return (f < 1.5 ? 1.0 : f < 3.0 ? 2.0 : f < 7.0 ? 5.0 : 10.0) * mag;
}
inline std::string tick_label(double v, double step) {
  char buf[32];
  const int decimals = step >= 1 ? 0 : std::min(6, static_cast<int>(std::ceil(-std::log10(step) - 1e-9)));
  std::snprintf(buf, sizeof buf, "%.*f", decimals, std::abs(v) < step * 1e-9 ? 0.0 : v);
  return buf;
}
}  // namespace detail

/// Draws the plot on `canvas` (whole canvas).
/// @throws ArgumentError when there is no series, a series has x and y of different lengths or
///         no point, or log2_x is set with a non-positive x.
inline void draw_line_plot(Canvas& canvas, const std::vector<PlotSeries>& series, const PlotOptions& options = {}) {
  require<ArgumentError>(!series.empty(), "draw_line_plot: expected at least one series");
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const auto& s : series) {
    require<ArgumentError>(s.x.size() == s.y.size() && !s.x.empty(), "draw_line_plot: series '", s.name, "' has ",
                           s.x.size(), " x and ", s.y.size(), " y values");
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      require<ArgumentError>(!options.log2_x || s.x[i] > 0, "draw_line_plot: log2 x axis needs x > 0, series '",
                             s.name, "' has ", s.x[i]);
      const double xv = options.log2_x ? std::log2(s.x[i]) : s.x[i];
      if (!std::isfinite(xv) || !std::isfinite(s.y[i])) continue;
      x0 = std::min(x0, xv), x1 = std::max(x1, xv), y0 = std::min(y0, s.y[i]), y1 = std::max(y1, s.y[i]);
    }
  }
  if (!std::isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (!std::isnan(options.y_min)) y0 = options.y_min;
  if (!std::isnan(options.y_max)) y1 = options.y_max;
  if (x1 <= x0) x0 -= 0.5, x1 += 0.5;
  if (y1 <= y0) y0 -= 0.5, y1 += 0.5;
  const double ystep = detail::nice_step(y1 - y0, 6);
  if (std::isnan(options.y_min)) y0 = std::floor(y0 / ystep) * ystep;
  if (std::isnan(options.y_max)) y1 = std::ceil(y1 / ystep) * ystep;

  const Rgb black{0, 0, 0}, grid{225, 225, 225};
  const int W = canvas.width(), H = canvas.height();
  int ylabel_w = 0;
  for (double v = y0; v <= y1 + ystep * 1e-6; v += ystep)
    ylabel_w = std::max(ylabel_w, Canvas::text_width(detail::tick_label(v, ystep)));
  const int left = 14 + ylabel_w + 8, right = W - 12, top = 40, bottom = H - 34;
  require<ArgumentError>(right - left > 20 && bottom - top > 20, "draw_line_plot: canvas ", W, " x ", H,
                         " too small");
  auto px = [&](double xv) { return left + static_cast<int>(std::lround((xv - x0) / (x1 - x0) * (right - left))); };
  auto py = [&](double yv) { return bottom - static_cast<int>(std::lround((yv - y0) / (y1 - y0) * (bottom - top))); };

  // Ticks, grid lines and labels.
  for (double v = y0; v <= y1 + ystep * 1e-6; v += ystep) {
    const int y = py(v);
    canvas.line(left, y, right, y, grid);
    canvas.line(left - 4, y, left, y, black);
    const std::string label = detail::tick_label(v, ystep);
    canvas.draw_text(left - 7 - Canvas::text_width(label), y - 3, label, black);
  }
  std::vector<double> xticks;
  double xstep = 1;
  if (options.log2_x) {
    for (double e = std::ceil(x0 - 1e-9); e <= x1 + 1e-9; e += 1) xticks.push_back(e);
  } else {
    xstep = detail::nice_step(x1 - x0, 8);
    for (double v = std::ceil(x0 / xstep - 1e-9) * xstep; v <= x1 + xstep * 1e-6; v += xstep) xticks.push_back(v);
  }
  for (double v : xticks) {
    const int x = px(v);
    canvas.line(x, top, x, bottom, grid);
    canvas.line(x, bottom, x, bottom + 4, black);
    const std::string label =
        options.log2_x ? detail::tick_label(std::exp2(v), 1.0) : detail::tick_label(v, xstep);
    canvas.draw_text(x - Canvas::text_width(label) / 2, bottom + 8, label, black);
  }
  canvas.line(left, top, left, bottom, black);
  canvas.line(left, bottom, right, bottom, black);
  canvas.draw_text(std::max(2, (W - Canvas::text_width(options.title, 2)) / 2), 4, options.title, black, 2);
  canvas.draw_text((left + right - Canvas::text_width(options.x_label)) / 2, H - 12, options.x_label, black);
  canvas.draw_text(4, top - 13, options.y_label, black);

  // Series.
  for (const auto& s : series) {
    int prev_x = 0, prev_y = 0;
    bool have_prev = false;
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      const double xv = options.log2_x ? std::log2(s.x[i]) : s.x[i];
      if (!std::isfinite(xv) || !std::isfinite(s.y[i])) {
        have_prev = false;
        continue;
      }
      const int x = px(xv), y = py(std::clamp(s.y[i], y0, y1));
      if (have_prev) {
        if (!s.dashed) {
          canvas.line(prev_x, prev_y, x, y, s.color);
          canvas.line(prev_x, prev_y + 1, x, y + 1, s.color);
        } else {
          const int n = std::max(std::abs(x - prev_x), std::abs(y - prev_y));
          for (int t = 0; t < n; ++t)
            if ((t / 5) % 2 == 0) {
              const int xa = prev_x + (x - prev_x) * t / std::max(n, 1), ya = prev_y + (y - prev_y) * t / std::max(n, 1);
              canvas.fill_rect(xa, ya, 2, 2, s.color);
            }
        }
      }
      canvas.fill_rect(x - 2, y - 2, 5, 5, s.color);
      prev_x = x, prev_y = y, have_prev = true;
    }
  }

  // Legend, top-right (or bottom-right) inside the axes.
  int legend_w = 0;
  for (const auto& s : series) legend_w = std::max(legend_w, Canvas::text_width(s.name));
  legend_w += 30;
  const int legend_h = static_cast<int>(series.size()) * 12 + 6;
  const int lx = right - legend_w - 6, ly = options.legend_bottom ? bottom - legend_h - 6 : top + 6;
  canvas.fill_rect(lx, ly, legend_w, legend_h, Rgb{255, 255, 255});
  canvas.draw_rect(lx, ly, legend_w, legend_h, Rgb{160, 160, 160});
  for (std::size_t i = 0; i < series.size(); ++i) {
    const int y = ly + 6 + static_cast<int>(i) * 12;
    canvas.fill_rect(lx + 5, y + 2, 16, 3, series[i].color);
    canvas.draw_text(lx + 25, y, series[i].name, black);
  }
}

/// Renders the plot to a PNG at `path` (atomically).
inline void save_line_plot(const std::string& path, const std::vector<PlotSeries>& series,
                           const PlotOptions& options = {}) {
  Canvas canvas(options.width, options.height);
  draw_line_plot(canvas, series, options);
  canvas.save_png(path);
}

}  // namespace mlvae
