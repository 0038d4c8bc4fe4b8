// examples/example_support.hpp — what train_mlvae and evaluate_mlvae share: the data options
// (Fashion-MNIST directory, IDX / .npy / CSV files, group keys from a file or a column, labels,
// train/test split, standardisation, image shape), checks that name the file and split, the
// likelihood choice, a progress display (a live bar on a terminal, plain lines otherwise), picking
// groups for image grids from any data set size, and running the matplotlib script.
#pragma once

#include <mlvae/mlvae.hpp>

#include <CLI/CLI.hpp>

#include "device_backend.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <unistd.h>  // isatty

#ifndef MLVAE_SCRIPTS_DIR
#define MLVAE_SCRIPTS_DIR "scripts"
#endif

namespace example {

using mlvae::Index;
using T = float;
using Data = mlvae::Dataset<T>;

/// Command-line options that say where the data come from.
struct DataOptions {
  std::string data = mlvae::fashion_mnist_default_dir();
  std::string test_data;
  std::string groups, test_groups, group_column;
  std::string labels, test_labels, label_column;
  double test_fraction = 0.2;
  std::string image_shape;  // "HxW"
  bool standardize = false;
  std::size_t train_limit = mlvae::idx_all_items;

  void add_to(CLI::App& app) {
    app.add_option("--data", data,
                   "observations: a directory in Fashion-MNIST's IDX layout (train + t10k files, grouped by label), "
                   "or a .npy file (N x D, or N x H x W images; uint8 is scaled by 1/255), a .csv file (one "
                   "observation per row, header optional) or an IDX file")
        ->capture_default_str();
    app.add_option("--test-data", test_data, "separate test observations (same format); default: split --data");
    app.add_option("--groups", groups, "file with one group key per observation (.npy, IDX, or one-column CSV/text)");
    app.add_option("--test-groups", test_groups, "group keys of --test-data");
    app.add_option("--group-column", group_column, "CSV column (name, or number without a header) holding the group key");
    app.add_option("--labels", labels, "file with one class label per observation (default: the group key)");
    app.add_option("--test-labels", test_labels, "class labels of --test-data");
    app.add_option("--label-column", label_column, "CSV column holding a class label (default: the group key)");
    app.add_option("--test-fraction", test_fraction, "share of --data held out for testing when no --test-data")
        ->check(CLI::Range(0.01, 0.99))
        ->capture_default_str();
    app.add_option("--image-shape", image_shape, "HxW: the observations are images of H x W pixels (grids are drawn)");
    app.add_flag("--standardize", standardize,
                 "scale every feature to mean 0 and standard deviation 1 (statistics of the training split)");
    app.add_option("--train-limit", train_limit,
                   "use only the first N training observations (before held-out keys are set aside)")
        ->check(CLI::PositiveNumber);
  }
};

/// The two splits, ready for training.
struct LoadedData {
  Data train, test;
  std::string description;  // one line: where from, sizes, keys
};

inline bool has_suffix(const std::string& s, const std::string& suffix) { return mlvae::detail::has_suffix(s, suffix); }
inline bool is_table_file(const std::string& p) {
  return has_suffix(p, ".npy") || has_suffix(p, ".csv") || has_suffix(p, ".tsv") || has_suffix(p, ".txt");
}

/// An IDX file as a Dataset: N x H x W images (or N x D) of bytes scaled by 1/255, keys from `groups`.
inline Data load_idx_dataset(const std::string& path, const std::string& groups, const std::string& labels) {
  const mlvae::IdxArray a = mlvae::read_idx(path);
  mlvae::require<mlvae::IoError>(a.dims.size() >= 2 && a.dims.size() <= 3, "IDX file '", path,
                                 "': expected N x D or N x H x W observations, found ", a.dims.size(), " dimensions");
  Data ds;
  ds.source = path;
  const auto n = static_cast<Index>(a.dims[0]);
  const auto d = static_cast<Index>(a.item_size());
  if (a.dims.size() == 3) {
    ds.height = static_cast<Index>(a.dims[1]);
    ds.width = static_cast<Index>(a.dims[2]);
  }
  ds.x.resize(d, n);
  for (Index j = 0; j < n; ++j)
    for (Index i = 0; i < d; ++i) ds.x(i, j) = T(a.data[static_cast<std::size_t>(j * d + i)]) / T(255);
  auto key_file = [&](const std::string& file, const char* what) {
    std::vector<std::string> text;
    if (file.empty()) return std::vector<std::string>(static_cast<std::size_t>(n), "0");
    if (is_table_file(file)) return mlvae::detail::read_key_file(file, what);
    const mlvae::IdxArray k = mlvae::read_idx(file);
    mlvae::require<mlvae::IoError>(k.dims.size() == 1, what, " file '", file, "': expected a 1-D IDX file");
    for (auto v : k.data) text.push_back(std::to_string(int{v}));
    return text;
  };
  const auto key_text = key_file(groups, "group key");
  mlvae::require<mlvae::IoError>(static_cast<Index>(key_text.size()) == n, "group keys from '", groups, "': ",
                                 key_text.size(), " keys for the ", n, " observations of '", path, "'");
  ds.keys = mlvae::detail::dense_ids(key_text, ds.key_names);
  if (!labels.empty()) {
    const auto label_text = key_file(labels, "label");
    mlvae::require<mlvae::IoError>(static_cast<Index>(label_text.size()) == n, "labels from '", labels, "': ",
                                   label_text.size(), " labels for the ", n, " observations of '", path, "'");
    ds.labels = mlvae::detail::dense_ids(label_text, ds.label_names);
  }
  return ds;
}

inline Data load_file(const DataOptions& o, const std::string& path, const std::string& groups,
                      const std::string& labels) {
  if (has_suffix(path, ".npy") || has_suffix(path, ".csv") || has_suffix(path, ".tsv") || has_suffix(path, ".txt")) {
    mlvae::DatasetSource src;
    src.data = path;
    src.groups = groups;
    src.group_column = o.group_column;
    src.labels = labels;
    src.label_column = o.label_column;
    if (has_suffix(path, ".tsv")) src.csv.delimiter = '\t';
    return mlvae::load_dataset<T>(src);
  }
  mlvae::require<mlvae::ArgumentError>(o.group_column.empty() && o.label_column.empty(),
                                       "--group-column and --label-column need a CSV file, '", path, "' is not one");
  return load_idx_dataset(path, groups, labels);
}

/// Fashion-MNIST (or any directory in its layout) as two Datasets grouped by label.
inline Data from_labelled(const mlvae::LabelledImages<T>& li, const std::string& source) {
  Data ds;
  ds.x = li.images;
  ds.source = source;
  ds.height = li.height;
  ds.width = li.width;
  std::vector<std::string> text;
  for (int l : li.labels) text.push_back(std::to_string(l));
  ds.keys = mlvae::detail::dense_ids(text, ds.key_names);
  ds.labels = ds.keys;
  ds.label_names = ds.key_names;
  return ds;
}

/// Loads, splits, limits, standardises and checks the data; `min_keys` distinct group keys are
/// required in the training split. Every message names the file and the split.
inline LoadedData load_data(const DataOptions& o, std::uint64_t seed, Index min_keys = 2) {
  namespace fs = std::filesystem;
  LoadedData d;
  std::error_code ec;
  std::string train_name, test_name;
  if (fs::is_directory(o.data, ec)) {
    mlvae::require<mlvae::ArgumentError>(o.test_data.empty() && o.groups.empty() && o.group_column.empty() &&
                                             o.labels.empty() && o.label_column.empty(),
                                         "--data '", o.data, "' is a directory in Fashion-MNIST's layout, grouped by "
                                         "its label files; --test-data, --groups, --group-column and --labels are "
                                         "for data files");
    d.train = from_labelled(mlvae::load_fashion_mnist<T>("train", o.data, o.train_limit), o.data);
    d.test = from_labelled(mlvae::load_fashion_mnist<T>("test", o.data), o.data);
    train_name = "training split (train-images-idx3-ubyte) of '" + o.data + "'";
    test_name = "test split (t10k-images-idx3-ubyte) of '" + o.data + "'";
  } else {
    Data all = load_file(o, o.data, o.groups, o.labels);
    if (!o.test_data.empty()) {
      d.train = std::move(all);
      d.test = load_file(o, o.test_data, o.test_groups, o.test_labels);
      train_name = "training data '" + o.data + "'";
      test_name = "test data '" + o.test_data + "'";
      // Keys and labels are matched by their text, not their position in each file.
      auto remap = [](std::vector<int>& ids, const std::vector<std::string>& from, std::vector<std::string>& to) {
        std::map<std::string, int> id;
        for (std::size_t i = 0; i < to.size(); ++i) id[to[i]] = static_cast<int>(i);
        for (int& v : ids) {
          const std::string& name = from[static_cast<std::size_t>(v)];
          if (!id.count(name)) {
            id[name] = static_cast<int>(to.size());
            to.push_back(name);
          }
          v = id[name];
        }
      };
      remap(d.test.keys, d.test.key_names, d.train.key_names);
      d.test.key_names = d.train.key_names;
      if (!d.test.labels.empty() && !d.train.labels.empty()) {
        remap(d.test.labels, d.test.label_names, d.train.label_names);
        d.test.label_names = d.train.label_names;
      }
    } else {
      mlvae::require<mlvae::ArgumentError>(o.test_groups.empty() && o.test_labels.empty(),
                                           "--test-groups and --test-labels need --test-data");
      mlvae::check_split(all, "data '" + o.data + "'", 1);
      auto parts = mlvae::split_dataset(all, o.test_fraction, seed);
      d.train = std::move(parts.first);
      d.test = std::move(parts.second);
      train_name = "training split of '" + o.data + "'";
      test_name = "test split (--test-fraction " + mlvae::detail::concat(o.test_fraction) + ") of '" + o.data + "'";
    }
    if (o.train_limit < static_cast<std::size_t>(d.train.size())) {
      std::vector<Index> first(o.train_limit);
      for (std::size_t i = 0; i < first.size(); ++i) first[i] = static_cast<Index>(i);
      d.train = mlvae::subset(d.train, first);
    }
  }
  if (!o.image_shape.empty()) {
    const auto x = o.image_shape.find_first_of("xX");
    Index h = 0, w = 0;
    try {
      if (x == std::string::npos) throw std::invalid_argument("no x");
      h = std::stol(o.image_shape.substr(0, x));
      w = std::stol(o.image_shape.substr(x + 1));
    } catch (const std::exception&) {
      throw mlvae::ArgumentError("--image-shape: expected HxW (e.g. 28x28), found '" + o.image_shape + "'");
    }
    mlvae::require<mlvae::ArgumentError>(h > 0 && w > 0 && h * w == d.train.x.rows(), "--image-shape ",
                                         o.image_shape, ": ", h * w, " pixels, but the observations of '", o.data,
                                         "' have ", d.train.x.rows(), " features");
    for (Data* s : {&d.train, &d.test}) {
      s->height = h;
      s->width = w;
    }
  }
  mlvae::require<mlvae::ShapeError>(d.test.x.rows() == d.train.x.rows(), "the ", test_name, " has ", d.test.x.rows(),
                                    " features per observation, the ", train_name, " ", d.train.x.rows());
  mlvae::check_split(d.train, train_name, min_keys);
  mlvae::check_split(d.test, test_name, 1);
  if (o.standardize) {
    const auto s = mlvae::Standardizer<T>::fit(d.train.x);
    s.apply(d.train.x);
    s.apply(d.test.x);
  }
  d.train.source = train_name;
  d.test.source = test_name;
  d.description = mlvae::detail::concat(d.train.size(), " training and ", d.test.size(), " test observations of ",
                                        d.train.x.rows(), " features, ", d.train.key_count(), " group keys",
                                        d.train.is_image() ? mlvae::detail::concat(", images ", d.train.height, "x",
                                                                                   d.train.width)
                                                           : std::string(", not images"),
                                        o.standardize ? ", standardised" : "", " (", o.data, ")");
  return d;
}

/// Adds --device (cpu, cuda or cuda:N; examples/device_backend.hpp), defined once for every example
/// whose Trainer can run its steps on a GPU; `note` says what runs there. A malformed value is
/// refused while parsing the command line.
inline void add_device_option(CLI::App& app, std::string& device, const std::string& note) {
  app.add_option("--device", device,
                 "cpu, or cuda / cuda:N to train " + note + " on an NVIDIA GPU (needs a build with "
                 "-DMLVAE_ENABLE_CUDA=ON; checkpoints are the same on every device)")
      ->check([](const std::string& text) {
        try {
          mlvae_examples::parse_device(text);
          return std::string();
        } catch (const std::exception& e) {
          return std::string(e.what());
        }
      })
      ->capture_default_str();
}

/// The model's sizes, observation model and the shared training settings of every example that
/// trains the MLP ML-VAE (train_mlvae, evaluate_mlvae): their option structs derive from it, and
/// add_model_options defines the command-line options once.
struct ModelOptions {
  Index hidden = 500, style = 10, content = 10;  ///< --hidden, --style, --content
  int layers = 1;                                ///< --layers
  std::string likelihood = "auto";               ///< --likelihood
  double variance = 1.0;                         ///< --variance
  double learning_rate = 1e-3;                   ///< --lr (defined by each example, its help differs)
  Index group_size = 16, groups_per_batch = 16;  ///< the sampler's shape (idem)
};

/// Adds the model's size and observation-model options (--hidden, --layers, --style, --content,
/// --likelihood, --variance), defined once for every example that trains the MLP ML-VAE.
/// `size_note` follows the size options' help (e.g. " (mlp)"), `content_note` --content's.
inline void add_model_options(CLI::App& app, ModelOptions& m, const std::string& size_note = "",
                              const std::string& content_note = "") {
  Index &hidden = m.hidden, &style = m.style, &content = m.content;
  int& layers = m.layers;
  std::string& likelihood = m.likelihood;
  double& variance = m.variance;
  app.add_option("--hidden", hidden, "hidden units per layer" + size_note)
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--layers", layers, "hidden layers in the encoder trunk and in the decoder" + size_note)
      ->check(CLI::Range(1, 2))->capture_default_str();
  app.add_option("--style", style, "style latent dimensions")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--content", content, "content latent dimensions" + content_note)
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--likelihood", likelihood,
                 "observation model: bernoulli (values in [0, 1]), gaussian (fixed --variance), gaussian-learned "
                 "(per-feature variance from the decoder), auto (bernoulli when the data lie in [0, 1], else gaussian)")
      ->check(CLI::IsMember({"auto", "bernoulli", "gaussian", "gaussian-learned"}))
      ->capture_default_str();
  app.add_option("--variance", variance, "variance of --likelihood gaussian")
      ->check(CLI::PositiveNumber)->capture_default_str();
}

/// The likelihood named on the command line ("auto": Bernoulli when the training data all lie in
/// [0, 1], Gaussian with unit variance otherwise).
inline std::string choose_likelihood(const std::string& requested, const Data& train) {
  if (requested != "auto") return requested;
  const bool unit = train.x.size() > 0 && train.x.minCoeff() >= T(0) && train.x.maxCoeff() <= T(1);
  return unit ? "bernoulli" : "gaussian";
}

/// Checks both splits against the likelihood (e.g. Bernoulli needs values in [0, 1]).
template <typename Likelihood>
void check_likelihood(const LoadedData& d) {
  Likelihood::check_data(d.train.x, d.train.source);
  Likelihood::check_data(d.test.x, d.test.source);
}

inline std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e7) return "--:--";
  const long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%02ld:%02ld", s / 60, s % 60);
  return buf;
}

/// Progress of a run: on a terminal a bar redrawn in place (at most 10 times a second), otherwise
/// one plain line per tenth of an epoch. Shows steps, loss, images/s and time left for the run.
class Progress {
public:
  Progress(long long total_steps, bool quiet)
      : total_(total_steps), quiet_(quiet), tty_(::isatty(::fileno(stdout)) != 0),
        start_(std::chrono::steady_clock::now()) {}

  void step(const mlvae::StepReport& r, const std::string& label) {
    ++done_;
    images_ += r.terms.images;
    if (quiet_) return;
    const auto now = std::chrono::steady_clock::now();
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const double rate = elapsed > 0 ? static_cast<double>(images_) / elapsed : 0;
    const double left = done_ > 0 ? elapsed / static_cast<double>(done_) * static_cast<double>(total_ - done_) : 0;
    const bool last = r.step_in_epoch == r.steps_per_epoch;
    if (tty_) {
      if (!last && std::chrono::duration<double>(now - last_draw_).count() < 0.1) return;
      last_draw_ = now;
      const int width = 24;
      const int filled = static_cast<int>(width * r.step_in_epoch / std::max<Index>(1, r.steps_per_epoch));
      std::printf("\r%s [%s%s] step %lld/%lld  loss %.4g  %.0f img/s  ETA %s   ", label.c_str(),
                  std::string(static_cast<std::size_t>(filled), '#').c_str(),
                  std::string(static_cast<std::size_t>(width - filled), '.').c_str(),
                  static_cast<long long>(r.step_in_epoch), static_cast<long long>(r.steps_per_epoch), r.terms.loss,
                  rate, format_duration(left).c_str());
      std::fflush(stdout);
      drawn_ = true;
    } else {
      const Index every = std::max<Index>(1, r.steps_per_epoch / 10);
      if (r.step_in_epoch % every != 0 && !last) return;
      std::printf("  %s step %lld/%lld  loss %.4g  %.0f img/s  ETA %s\n", label.c_str(),
                  static_cast<long long>(r.step_in_epoch), static_cast<long long>(r.steps_per_epoch), r.terms.loss,
                  rate, format_duration(left).c_str());
      std::fflush(stdout);
    }
  }
  /// Clears the bar before a normal line is printed.
  void clear_line() {
    if (tty_ && drawn_) std::printf("\r%*s\r", 110, "");
    drawn_ = false;
  }
  double seconds_left() const {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    return done_ > 0 ? elapsed / static_cast<double>(done_) * static_cast<double>(total_ - done_) : 0;
  }

private:
  long long total_, done_ = 0, images_ = 0;
  bool quiet_, tty_, drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_{};
};

/// Up to `max_groups` groups of up to `per_group` members of one key each (first occurrences in
/// the data, keys in ascending order), as consecutive columns of `x`; works for any data size.
inline void key_groups(const Data& data, Index per_group, Index max_groups, mlvae::Matrix<T>& x,
                       std::vector<Index>& offsets, std::vector<int>* group_keys = nullptr) {
  std::map<int, std::vector<Index>> members;
  for (std::size_t i = 0; i < data.keys.size(); ++i) {
    auto& m = members[data.keys[i]];
    if (static_cast<Index>(m.size()) < per_group) m.push_back(static_cast<Index>(i));
  }
  std::vector<Index> indices;
  offsets.assign(1, 0);
  if (group_keys) group_keys->clear();
  for (const auto& [key, m] : members) {
    if (static_cast<Index>(offsets.size()) > max_groups) break;
    indices.insert(indices.end(), m.begin(), m.end());
    offsets.push_back(static_cast<Index>(indices.size()));
    if (group_keys) group_keys->push_back(key);
  }
  mlvae::gather_columns(data.x, indices, x);
}

/// `count` observations spread evenly over the data (all of them when there are fewer).
inline std::vector<Index> spread_indices(Index size, Index count) {
  std::vector<Index> out;
  const Index n = std::min(size, count);
  for (Index i = 0; i < n; ++i) out.push_back(i * size / n);
  return out;
}

/// Runs `scripts/<script>` with /usr/bin/python3 (or `python`) on `args` when it and matplotlib
/// are available; returns true when the figures were drawn. Otherwise says that the CSV files
/// hold the numbers.
inline bool run_plot_script(const std::string& python, const std::string& script, const std::string& args) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string path = std::string(MLVAE_SCRIPTS_DIR) + "/" + script;
  if (python.empty() || python == "none") return false;
  if (!fs::exists(python, ec) || !fs::exists(path, ec)) {
    std::cout << "figures: skipped (" << (fs::exists(python, ec) ? path : python)
              << " not found); the numbers are in the CSV files\n";
    return false;
  }
  const std::string probe = "'" + python + "' -c 'import matplotlib' >/dev/null 2>&1";
  if (std::system(probe.c_str()) != 0) {
    std::cout << "figures: skipped (matplotlib is not installed for " << python
              << "; Debian: apt-get install python3-matplotlib); the numbers are in the CSV files\n";
    return false;
  }
  const std::string command = "'" + python + "' '" + path + "' " + args;
  const int rc = std::system(command.c_str());
  if (rc != 0) std::cout << "figures: " << script << " failed (exit status " << rc << ")\n";
  return rc == 0;
}

}  // namespace example
