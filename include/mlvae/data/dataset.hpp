/// @file
/// mlvae/data/dataset.hpp — a user's own data for training: observations as columns, one group
/// key per observation (what the ML-VAE's content is shared by), optional class labels, from
/// `.npy` and CSV files (data/npy.hpp, data/csv.hpp); a seeded train/test split, feature
/// standardisation with the training split's statistics, and checks that name the file and split.
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/random.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/data/csv.hpp"
#include "mlvae/data/npy.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstddef>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace mlvae {

/// Observations (features x N, one column each), their group keys and optional labels.
template <typename T>
struct Dataset {
  Matrix<T> x;                          ///< features x N
  std::vector<int> keys;                ///< group key of each observation (dense ids 0..K-1)
  std::vector<std::string> key_names;   ///< the key's text in the source, by id
  std::vector<int> labels;              ///< class label of each observation, or empty
  std::vector<std::string> label_names; ///< the label's text in the source, by id
  std::vector<std::string> feature_names;  ///< one per feature (CSV header or "0", "1", ...)
  Index height = 0;                     ///< image height when the observations are images, else 0
  Index width = 0;                      ///< image width when the observations are images, else 0
  std::string source;                   ///< where the observations came from (for messages)

  /// Number of observations N.
  Index size() const { return x.cols(); }
  /// True when height*width == features (the observations can be drawn as images).
  bool is_image() const { return height > 0 && width > 0 && height * width == x.rows(); }
  /// Number of distinct group keys.
  Index key_count() const { return static_cast<Index>(key_names.size()); }
};

/// Where a Dataset comes from: a `.npy` or CSV file and, optionally, the keys and labels.
struct DatasetSource {
  std::string data;          ///< observations: .npy (N x D, or N x H x W images) or CSV (rows = observations)
  std::string groups;        ///< file with one group key per observation (.npy, or CSV/text with one column)
  std::string group_column;  ///< the CSV column holding the group key (removed from the features)
  std::string labels;        ///< file with one class label per observation (optional)
  std::string label_column;  ///< the CSV column holding the class label (removed from the features)
  CsvOptions csv;            ///< delimiter and header detection for CSV files
};

namespace detail {

inline bool has_suffix(const std::string& s, const std::string& suffix) {
  if (s.size() < suffix.size()) return false;
  for (std::size_t i = 0; i < suffix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[s.size() - suffix.size() + i])) != suffix[i]) return false;
  return true;
}

/// Maps text keys to dense ids: by numeric value when every key is an integer, else by text.
inline std::vector<int> dense_ids(const std::vector<std::string>& text, std::vector<std::string>& names) {
  bool numeric = true;
  std::vector<double> values(text.size());
  for (std::size_t i = 0; i < text.size() && numeric; ++i)
    numeric = CsvTable::parse_number(text[i], values[i]) && values[i] == std::floor(values[i]);
  std::vector<int> ids(text.size());
  names.clear();
  if (numeric) {
    std::map<double, int> id;
    for (double v : values) id.emplace(v, 0);
    for (auto& [v, i] : id) {
      i = static_cast<int>(names.size());
      names.push_back(concat(static_cast<long long>(v)));
    }
    for (std::size_t i = 0; i < text.size(); ++i) ids[i] = id[values[i]];
  } else {
    std::map<std::string, int> id;
    for (const auto& s : text) id.emplace(s, 0);
    for (auto& [s, i] : id) {
      i = static_cast<int>(names.size());
      names.push_back(s);
    }
    for (std::size_t i = 0; i < text.size(); ++i) ids[i] = id[text[i]];
  }
  return ids;
}

/// One key per row from a file: a 1-D (or N x 1) .npy of any dtype NumPy writes for keys (integers
/// of any width, bool, floats, fixed-width strings; read as text, see read_npy_text, so they mean
/// what the same keys mean in a CSV file), or a CSV/text file with one column.
inline std::vector<std::string> read_key_file(const std::string& path, const char* what) {
  if (has_suffix(path, ".npy")) {
    auto a = read_npy_text(path);
    require<IoError>(a.shape.size() == 1 || (a.shape.size() == 2 && a.shape[1] == 1), what, " file '", path,
                     "': expected one value per observation (shape (N,) or (N, 1)), found rank ", a.shape.size());
    return std::move(a.values);
  }
  std::vector<std::string> out;
  CsvOptions o;
  const CsvTable t = read_csv(path, o);
  require<IoError>(t.columns() == 1, what, " file '", path, "': expected one column (one ", what,
                   " per line), found ", t.columns());
  for (std::size_t r = 0; r < t.rows(); ++r) out.push_back(t.cell(r, 0));
  return out;
}

}  // namespace detail

/// Loads observations, group keys and labels from `.npy` / CSV files (see DatasetSource).
/// uint8 `.npy` data are scaled by 1/255 (image bytes to [0, 1]); every other numeric dtype (bool,
/// other integers, float16/32/64) is taken as it is; a 3-D `.npy` (N x H x W) sets
/// the image shape. Without a group key source every observation gets key 0 (a VAE-like run;
/// callers that need groups check key_count()). Labels default to nothing.
/// @throws IoError naming the file for unreadable or malformed files, non-numeric cells, or key and
///         label files whose length differs from the number of observations.
template <typename T>
Dataset<T> load_dataset(const DatasetSource& src) {
  Dataset<T> ds;
  ds.source = src.data;
  std::vector<std::string> key_text, label_text;
  if (detail::has_suffix(src.data, ".npy")) {
    require<ArgumentError>(src.group_column.empty() && src.label_column.empty(), "'", src.data,
                           "': --group-column and --label-column need a CSV file; give the keys of a .npy file "
                           "with --groups FILE");
    const auto a = read_npy<T>(src.data);
    require<IoError>(a.shape.size() >= 1 && a.shape.size() <= 3, ".npy file '", src.data,
                     "': expected shape (N,), (N, D) or (N, H, W), found rank ", a.shape.size());
    const auto n = static_cast<Index>(a.shape[0]);
    Index d = 1;
    for (std::size_t k = 1; k < a.shape.size(); ++k) d *= static_cast<Index>(a.shape[k]);
    if (a.shape.size() == 3) {
      ds.height = static_cast<Index>(a.shape[1]);
      ds.width = static_cast<Index>(a.shape[2]);
    }
    const bool bytes = npy_dtype(a.dtype).is_uint8();  // image bytes: scaled by 1/255; other types as they are
    ds.x.resize(d, n);
    for (Index j = 0; j < n; ++j)
      for (Index i = 0; i < d; ++i) {
        const T v = a.values[static_cast<std::size_t>(j * d + i)];
        ds.x(i, j) = bytes ? v / T(255) : v;
      }
    for (Index i = 0; i < d; ++i) ds.feature_names.push_back(std::to_string(i));
  } else {
    const CsvTable t = read_csv(src.data, src.csv);
    std::size_t key_col = t.columns(), label_col = t.columns();
    if (!src.group_column.empty()) key_col = t.column_index(src.group_column);
    if (!src.label_column.empty()) label_col = t.column_index(src.label_column);
    std::vector<std::size_t> features;
    for (std::size_t c = 0; c < t.columns(); ++c)
      if (c != key_col && c != label_col) features.push_back(c);
    require<IoError>(!features.empty(), "CSV file '", src.data, "': no feature columns left besides the key/label");
    ds.x.resize(static_cast<Index>(features.size()), static_cast<Index>(t.rows()));
    for (std::size_t r = 0; r < t.rows(); ++r)
      for (std::size_t k = 0; k < features.size(); ++k)
        ds.x(static_cast<Index>(k), static_cast<Index>(r)) = static_cast<T>(t.to_number(r, features[k]));
    for (std::size_t c : features) ds.feature_names.push_back(t.names[c]);
    for (std::size_t r = 0; r < t.rows() && key_col < t.columns(); ++r) key_text.push_back(t.cell(r, key_col));
    for (std::size_t r = 0; r < t.rows() && label_col < t.columns(); ++r) label_text.push_back(t.cell(r, label_col));
  }
  const auto n = static_cast<std::size_t>(ds.x.cols());
  if (!src.groups.empty()) key_text = detail::read_key_file(src.groups, "group key");
  if (!src.labels.empty()) label_text = detail::read_key_file(src.labels, "label");
  if (key_text.empty() && src.groups.empty() && src.group_column.empty()) key_text.assign(n, "0");
  require<IoError>(key_text.size() == n, "group keys from '", src.groups.empty() ? src.data : src.groups, "': ",
                   key_text.size(), " keys for the ", n, " observations of '", src.data, "'");
  ds.keys = detail::dense_ids(key_text, ds.key_names);
  if (!label_text.empty() || !src.labels.empty() || !src.label_column.empty()) {
    require<IoError>(label_text.size() == n, "labels from '", src.labels.empty() ? src.data : src.labels, "': ",
                     label_text.size(), " labels for the ", n, " observations of '", src.data, "'");
    ds.labels = detail::dense_ids(label_text, ds.label_names);
  }
  return ds;
}

/// The observations `indices` of `ds` (keys, labels and names kept).
template <typename T>
Dataset<T> subset(const Dataset<T>& ds, const std::vector<Index>& indices) {
  Dataset<T> out;
  out.x.resize(ds.x.rows(), static_cast<Index>(indices.size()));
  for (std::size_t j = 0; j < indices.size(); ++j) {
    const Index i = indices[j];
    require<ShapeError>(i >= 0 && i < ds.size(), "subset: index ", i, " outside [0, ", ds.size(), ")");
    out.x.col(static_cast<Index>(j)) = ds.x.col(i);
    out.keys.push_back(ds.keys[static_cast<std::size_t>(i)]);
    if (!ds.labels.empty()) out.labels.push_back(ds.labels[static_cast<std::size_t>(i)]);
  }
  out.key_names = ds.key_names;
  out.label_names = ds.label_names;
  out.feature_names = ds.feature_names;
  out.height = ds.height;
  out.width = ds.width;
  out.source = ds.source;
  return out;
}

/// Splits `ds` at random (seeded) into a training and a test part; the test part gets
/// round(fraction·N) observations, at least 1, and the training part at least 1.
/// @throws ArgumentError when fraction is outside (0, 1) or N < 2.
template <typename T>
std::pair<Dataset<T>, Dataset<T>> split_dataset(const Dataset<T>& ds, double test_fraction, std::uint64_t seed) {
  require<ArgumentError>(test_fraction > 0 && test_fraction < 1, "split_dataset: the test fraction must be in (0, 1), "
                         "found ", test_fraction);
  const Index n = ds.size();
  require<ArgumentError>(n >= 2, "split_dataset: '", ds.source, "' holds ", n,
                         " observation(s); a train/test split needs at least 2");
  std::vector<Index> order(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
  Rng rng(seed);
  for (std::size_t i = order.size(); i > 1; --i)
    std::swap(order[i - 1], order[static_cast<std::size_t>(rng.uniform_index(i))]);
  auto test_n = static_cast<Index>(std::llround(test_fraction * static_cast<double>(n)));
  test_n = std::min(std::max<Index>(test_n, 1), n - 1);
  std::vector<Index> test(order.begin(), order.begin() + test_n), train(order.begin() + test_n, order.end());
  std::sort(test.begin(), test.end());
  std::sort(train.begin(), train.end());
  return {subset(ds, train), subset(ds, test)};
}

/// Per-feature mean and standard deviation of a training split.
template <typename T>
struct Standardizer {
  Vector<T> mean;   ///< per feature
  Vector<T> scale;  ///< per-feature standard deviation (1 for a constant feature)

  /// Fits the statistics on `x` (features x N).
  static Standardizer fit(const Matrix<T>& x) {
    require<ArgumentError>(x.cols() > 0, "Standardizer: no observations");
    Standardizer s;
    s.mean = x.rowwise().mean();
    s.scale = ((x.colwise() - s.mean).array().square().rowwise().sum() / T(x.cols())).sqrt().matrix();
    for (Index i = 0; i < s.scale.size(); ++i)
      if (!(s.scale[i] > T(0))) s.scale[i] = T(1);
    return s;
  }
  /// x ← (x − mean) / scale, column by column.
  void apply(Matrix<T>& x) const {
    require<ShapeError>(x.rows() == mean.size(), "Standardizer: fitted on ", mean.size(), " features, found ",
                        x.rows());
    x = ((x.colwise() - mean).array().colwise() / scale.array()).matrix();
  }
};

/// Checks a split before training or evaluation: at least one observation, finite values, and, with
/// `min_keys` > 1, that many distinct group keys. `what` names it, e.g. "training split of 'x.csv'".
/// @throws ArgumentError naming `what` and what was found.
template <typename T>
void check_split(const Dataset<T>& ds, const std::string& what, Index min_keys = 1) {
  require<ArgumentError>(ds.size() > 0, "the ", what, " holds 0 observations");
  if (!ds.x.allFinite())
    for (Index j = 0; j < ds.x.cols(); ++j)
      for (Index i = 0; i < ds.x.rows(); ++i)
        require<ArgumentError>(std::isfinite(static_cast<double>(ds.x(i, j))), "the ", what,
                               " holds a non-finite value at observation ", j, ", feature ", i);
  const std::set<int> distinct(ds.keys.begin(), ds.keys.end());
  require<ArgumentError>(static_cast<Index>(distinct.size()) >= min_keys, "the ", what, " holds ", distinct.size(),
                         " distinct group key(s) among its ", ds.size(), " observations; at least ", min_keys,
                         " are needed (content is what the members of a group share, and it is measured by telling "
                         "groups apart)");
}

}  // namespace mlvae
