// evaluate_mlvae — the ML-VAE paper's evaluation in one command. Trains the MLP ML-VAE and the
// matching VAE baseline (latent = style + content) on grouped data with the same budget (epochs,
// batches, seeds): Fashion-MNIST grouped by class by default, or your own .npy / CSV / IDX file
// (see --help), optionally leaving some group keys out of training (--held-out-classes). Measures
//   * how informative content and style are of the class (the labels, or the group key): softmax
//     regression (Adam) and k-NN fitted on training-set codes, test accuracy for strategy 1 and
//     strategy 2 with 1, 2, 4, 8, 16 accumulated observations (and on the held-out keys);
//   * importance-sampled test log-likelihood (K samples) per observation and per group, ML-VAE vs VAE;
//   * for non-image data, how much of each feature the content and the style codes explain (R² of a
//     linear fit on training codes, measured on the test split: feature_r2.csv);
// With --seeds 1,2,3 the whole run is repeated per seed (results_seed<N>.csv each) and results.csv holds
// every number as the mean over the seeds with its sample standard deviation (columns value, sd, n).
// Model options (issue 16): --model mlvae|gvae|ada-mlvae|ada-gvae, --beta-style, --content-sample,
// --min-group-size (variable group sizes), --cycle, --arch mlp|conv28, --preset disentangled.
// It writes results.csv (every number), figures drawn by scripts/plot_results.py with matplotlib
// when available, and, for images, swap / interpolation / generation grids.
#include "device_backend.hpp"
#include "example_support.hpp"

#include <Eigen/QR>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

namespace {

using example::Data;
using example::Index;
using example::T;
using Mat = mlvae::Matrix<T>;

struct Options : example::ModelOptions {  // sizes, likelihood, Adam rate, sampler shape
  int epochs = 10;
  std::uint64_t seed = 1;
  std::string seeds;  // e.g. "1,2,3": overrides --seed
  int threads = 0;
  std::string held_out;  // e.g. "7,8,9": group keys left out of training
  Index samples = 100;   // K
  Index ll_images = 1000;
  Index knn_k = 5;
  example::DataOptions data;
  std::string out_dir = "out/evaluate_mlvae";
  bool quiet = false;
  std::string python = "/usr/bin/python3";
  std::string device = "cpu";  // cpu | cuda | cuda:N: where both models train (examples/device_backend.hpp)
  // Model and study options (issue 16).
  std::string model = "mlvae";      // mlvae | gvae | ada-mlvae | ada-gvae
  std::string arch = "mlp";         // mlp | conv28
  double beta_style = 1.0, beta_content = 1.0, cycle = 0.0;
  std::string content_sample = "group";  // group | observation
  Index train_group_size = 0;            // 0: = --group-size; the largest training group
  Index min_group_size = 0;              // 0: = the training group size (fixed); else uniform in [min, max]
  std::string accumulate = "1,2,4,8,16";
  std::string baseline = "vae";  // vae | none
  bool grids = true;
  bool save_codes = false;  // write every split's codes and classes as .npy (scripts/code_probes.py)
  std::string preset;  // "" | disentangled
};

/// Comma-separated positive integers, e.g. "1,2,3".
template <typename Int>
std::vector<Int> parse_list(const std::string& text, const char* what) {
  std::vector<Int> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    try {
      std::size_t used = 0;
      const long long v = std::stoll(item, &used);
      if (used != item.size() || v < 0) throw std::invalid_argument(item);
      out.push_back(static_cast<Int>(v));
    } catch (const std::exception&) {
      throw mlvae::ArgumentError(std::string(what) + ": expected comma-separated non-negative integers, found '" +
                                 text + "'");
    }
  }
  mlvae::require<mlvae::ArgumentError>(!out.empty(), what, ": expected at least one value, found '", text, "'");
  return out;
}

/// The model options of the command line (validated).
mlvae::MLVAEOptions<T> model_options(const Options& opt) {
  mlvae::MLVAEOptions<T> o;
  o.style_kl_weight = static_cast<T>(opt.beta_style);
  o.content_kl_weight = static_cast<T>(opt.beta_content);
  o.cycle_weight = static_cast<T>(opt.cycle);
  o.content.aggregation = (opt.model == "gvae" || opt.model == "ada-gvae") ? mlvae::ContentAggregation::Mean
                                                                           : mlvae::ContentAggregation::Product;
  o.content.adaptive = opt.model == "ada-mlvae" || opt.model == "ada-gvae";
  o.content.sample_per_observation = opt.content_sample == "observation";
  return o;
}

/// One number of a run: its key (every column but the value) and the value.
struct Row {
  std::string key;
  double value;
};

class Csv {
public:
  static constexpr const char* header = "metric,model,split,latent,strategy,group_size,classifier,value";
  explicit Csv(const std::string& path) : out_(path) {
    mlvae::require<mlvae::IoError>(static_cast<bool>(out_), "cannot write '", path, "'");
    out_ << header << "\n";
  }
  void add(const std::string& metric, const std::string& model, const std::string& split, const std::string& latent,
           const std::string& strategy, Index group_size, const std::string& classifier, double value) {
    std::ostringstream key;
    key << metric << ',' << model << ',' << split << ',' << latent << ',' << strategy << ',' << group_size << ','
        << classifier;
    out_ << key.str() << ',' << value << '\n';
    out_.flush();
    rows_.push_back({key.str(), value});
  }
  const std::vector<Row>& rows() const { return rows_; }

private:
  std::ofstream out_;
  std::vector<Row> rows_;
};

/// Mean and sample standard deviation (n − 1; 0 for one value) of every key over the seeds' rows, in the
/// order the keys first appear; written as results.csv with columns value (the mean), sd and n.
void write_aggregate(const std::string& path, const std::vector<std::vector<Row>>& runs) {
  std::vector<std::string> order;
  std::map<std::string, std::vector<double>> values;
  for (const auto& run : runs)
    for (const Row& r : run) {
      if (!values.count(r.key)) order.push_back(r.key);
      values[r.key].push_back(r.value);
    }
  std::ofstream out(path);
  mlvae::require<mlvae::IoError>(static_cast<bool>(out), "cannot write '", path, "'");
  out << Csv::header << ",sd,n\n";
  for (const std::string& key : order) {
    const auto& v = values[key];
    double mean = 0, ss = 0;
    for (double x : v) mean += x;
    mean /= static_cast<double>(v.size());
    for (double x : v) ss += (x - mean) * (x - mean);
    const double sd = v.size() > 1 ? std::sqrt(ss / static_cast<double>(v.size() - 1)) : 0.0;
    out << key << ',' << mean << ',' << sd << ',' << v.size() << '\n';
  }
}

/// The aggregated table printed at the end: the rows of `metrics`, mean ± sd over the seeds.
void print_aggregate(const std::vector<std::vector<Row>>& runs) {
  std::vector<std::string> order;
  std::map<std::string, std::vector<double>> values;
  for (const auto& run : runs)
    for (const Row& r : run) {
      if (r.key.rfind("train_elbo", 0) == 0 || r.key.rfind("test_elbo_per_image", 0) == 0) continue;
      if (!values.count(r.key)) order.push_back(r.key);
      values[r.key].push_back(r.value);
    }
  std::printf("\nOver %zu seed(s): mean ± sd (sample standard deviation)\n%-72s %12s %10s\n", runs.size(),
              "metric,model,split,latent,strategy,group_size,classifier", "mean", "sd");
  for (const std::string& key : order) {
    const auto& v = values[key];
    double mean = 0, ss = 0;
    for (double x : v) mean += x;
    mean /= static_cast<double>(v.size());
    for (double x : v) ss += (x - mean) * (x - mean);
    const double sd = v.size() > 1 ? std::sqrt(ss / static_cast<double>(v.size() - 1)) : 0.0;
    std::printf("%-72s %12.4f %10.4f\n", key.c_str(), mean, sd);
  }
}

struct Accuracy {
  double lr = 0, knn = 0;
};

Accuracy classify(const Mat& train_codes, const std::vector<int>& train_labels, const Mat& test_codes,
                  const std::vector<int>& test_labels, Index classes, Index k, std::uint64_t seed) {
  mlvae::SoftmaxRegressionOptions o;
  o.epochs = 300;
  o.learning_rate = 0.05;
  o.seed = seed;
  mlvae::SoftmaxRegression lr(o);
  lr.fit(train_codes, train_labels, classes);
  mlvae::KNearestNeighbors knn(k);
  knn.fit(train_codes, train_labels);
  return {mlvae::accuracy(lr.predict(test_codes), test_labels), mlvae::accuracy(knn.predict(test_codes), test_labels)};
}

/// What the classifiers predict: the class labels when given, else the group key.
const std::vector<int>& targets(const Data& d) { return d.labels.empty() ? d.keys : d.labels; }

// Content codes of every observation when the data are cut into groups of `size` members of one key
// (strategy 2: each member gets its group's posterior mean), in the layout's order; `out_targets`
// gets the members' classes in the same order.
Mat grouped_content(const mlvae::MLVAECodes<T>& codes, const std::vector<int>& keys, const std::vector<int>& classes,
                    Index size, std::uint64_t seed, std::vector<int>& out_targets) {
  const mlvae::GroupLayout layout = mlvae::make_key_groups(keys, size, seed);
  const auto laid = mlvae::gather_codes(codes, layout.indices);
  Mat gm, gl;
  mlvae::infer_group_content(laid, layout.offsets, mlvae::InferenceStrategy::AccumulatedGroup, gm, gl);
  out_targets.resize(layout.indices.size());
  for (std::size_t j = 0; j < layout.indices.size(); ++j)
    out_targets[j] = classes[static_cast<std::size_t>(layout.indices[j])];
  return mlvae::expand_to_members(gm, layout.offsets);
}

std::string fmt(double v, int decimals = 3) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

template <typename Model>
std::vector<mlvae::LossTerms> train_model(const char* name, Model& model, const Data& train, const Data& test,
                                          const Options& opt, std::vector<mlvae::LossTerms>& test_terms) {
  mlvae::TrainerOptions topt;
  topt.adam.learning_rate = opt.learning_rate;
  topt.sampler = {opt.groups_per_batch, opt.min_group_size, opt.train_group_size, opt.seed + 1};
  topt.noise_seed = opt.seed + 2;
  mlvae::Trainer<Model> trainer(model, train.x, train.keys, topt);
  // --device cuda: the ML-VAE's and the VAE's steps run on the GPU; the evaluation below runs on the
  // CPU model after sync_to_host().
  mlvae_examples::open_device(mlvae_examples::parse_device(opt.device), trainer);
  if (opt.device != "cpu") std::printf("%s: training on %s\n", name, trainer.device().c_str());
  example::Progress progress(static_cast<long long>(opt.epochs) * trainer.sampler().batches_per_epoch(), opt.quiet);
  std::vector<mlvae::LossTerms> train_terms;
  for (int epoch = 1; epoch <= opt.epochs; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::string label = std::string(name) + " epoch " + std::to_string(epoch) + "/" + std::to_string(opt.epochs);
    const auto on_step = [&](const mlvae::StepReport& r) { progress.step(r, label); };
    const mlvae::LossTerms tr = trainer.run_epoch(on_step);
    trainer.sync_to_host();  // the model's parameters back from the device, if the steps run on one
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const mlvae::LossTerms te = mlvae::evaluate_dataset(model, test.x, test.keys, opt.train_group_size);
    train_terms.push_back(tr);
    test_terms.push_back(te);
    progress.clear_line();
    std::printf("%-6s epoch %3d/%d  train elbo/obs %9.3f  test elbo/obs %9.3f  (rec %9.3f kl style %7.3f kl "
                "content/group %7.3f)  %5.1f s\n",
                name, epoch, opt.epochs, tr.elbo_per_image, te.elbo_per_image, te.reconstruction, te.style_kl,
                te.content_kl, seconds);
    std::fflush(stdout);
  }
  return train_terms;
}

template <typename Model>
void write_grids(Model& model, const Data& data, const std::string& tag, const Options& opt) {
  Mat groups_x;
  std::vector<Index> offsets;
  example::key_groups(data, opt.group_size, 10, groups_x, offsets);
  const Index G = static_cast<Index>(offsets.size()) - 1;
  const Index h = data.height, w = data.width;
  // Swap grid: rows = style of one image, columns = content of one group (strategy 2).
  Mat style_x;
  mlvae::gather_columns(data.x, example::spread_indices(data.size(), 8), style_x);
  const Mat swap = mlvae::swap_grid(model, style_x, groups_x, offsets);
  mlvae::write_image_grid(opt.out_dir + "/swap_grid_" + tag + "_rows-style_cols-content.png", swap, h, w,
                          style_x.cols() + 1, G + 1, 2, 1);
  // Interpolations between the first member of group g and the last member of group g+1.
  const Index pairs = std::min<Index>(G, 6);
  Mat from(groups_x.rows(), pairs), to(groups_x.rows(), pairs);
  for (Index g = 0; g < pairs; ++g) {
    from.col(g) = groups_x.col(offsets[static_cast<std::size_t>(g)]);
    to.col(g) = groups_x.col(offsets[static_cast<std::size_t>((g + 1) % G) + 1] - 1);
  }
  const Index steps = 8;
  mlvae::write_image_grid(opt.out_dir + "/interpolate_content_" + tag + "_style-fixed.png",
                          mlvae::interpolation_grid(model, from, to, steps, mlvae::InterpolatedLatent::Content), h, w,
                          pairs, steps + 2, 2, 1);
  mlvae::write_image_grid(opt.out_dir + "/interpolate_style_" + tag + "_content-fixed.png",
                          mlvae::interpolation_grid(model, from, to, steps, mlvae::InterpolatedLatent::Style), h, w,
                          pairs, steps + 2, 2, 1);
  // New members: column 0 one real member, then content of the group + style from the prior.
  mlvae::Rng rng(opt.seed + 99);
  const Index count = 10;
  mlvae::write_image_grid(opt.out_dir + "/generate_" + tag + "_col0-real_rest-prior-style.png",
                          mlvae::generation_grid(model, groups_x, offsets, count, rng), h, w, G, count + 1, 2, 1);
}

/// R² on `y_test` (1 x N) of a least-squares linear fit [codes; 1] -> y on the training codes.
double linear_r2(const Mat& train_codes, const Eigen::RowVectorXd& y_train, const Mat& test_codes,
                 const Eigen::RowVectorXd& y_test) {
  Eigen::MatrixXd a(train_codes.cols(), train_codes.rows() + 1);
  a.leftCols(train_codes.rows()) = train_codes.transpose().cast<double>();
  a.col(train_codes.rows()).setOnes();
  const Eigen::VectorXd coef = a.colPivHouseholderQr().solve(y_train.transpose());
  Eigen::MatrixXd b(test_codes.cols(), test_codes.rows() + 1);
  b.leftCols(test_codes.rows()) = test_codes.transpose().cast<double>();
  b.col(test_codes.rows()).setOnes();
  const Eigen::VectorXd pred = b * coef;
  const double mean = y_test.mean();
  const double total = (y_test.array() - mean).square().sum();
  const double residual = (y_test.transpose() - pred).array().square().sum();
  return total > 0 ? 1.0 - residual / total : 0.0;
}

template <typename MLModel, typename VAEModel>
std::vector<Row> run_seed(const Options& opt, example::LoadedData& all, MLModel& mlvae_model, VAEModel& vae_model,
                          const std::string& csv_path) {
  namespace fs = std::filesystem;
  const int threads = mlvae::set_threads(opt.threads);
  fs::create_directories(opt.out_dir);
  const auto start = std::chrono::steady_clock::now();
  const bool with_vae = opt.baseline == "vae";

  // Held-out group keys, by their names in the data.
  std::set<int> held;
  {
    std::stringstream ss(opt.held_out);
    std::string item;
    while (std::getline(ss, item, ','))
      if (!item.empty()) {
        const auto& names = all.train.key_names;
        const auto it = std::find(names.begin(), names.end(), item);
        mlvae::require<mlvae::ArgumentError>(it != names.end(), "--held-out-classes: no group key '", item, "' in the ",
                                             all.train.source);
        held.insert(static_cast<int>(it - names.begin()));
      }
  }
  auto select = [&](const Data& d, bool keep_held) {
    std::vector<Index> idx;
    for (std::size_t i = 0; i < d.keys.size(); ++i)
      if ((held.count(d.keys[i]) > 0) == keep_held) idx.push_back(static_cast<Index>(i));
    Data s = mlvae::subset(d, idx);
    s.source = d.source;
    return s;
  };
  const Data train = select(all.train, false), test = select(all.test, false);
  Data unseen_train, unseen_test;
  if (!held.empty()) {
    unseen_train = select(all.train, true);
    unseen_test = select(all.test, true);
    mlvae::check_split(unseen_train, "held-out part of the " + all.train.source, 1);
    mlvae::check_split(unseen_test, "held-out part of the " + all.test.source, 1);
  }
  mlvae::check_split(train, "trained part of the " + all.train.source, 2);
  mlvae::check_split(test, "trained part of the " + all.test.source, 1);
  std::cout << "evaluate_mlvae: " << all.description << "; " << train.size() << " training and " << test.size()
            << " test observations used for training and testing"
            << (held.empty() ? std::string("")
                             : "; " + std::to_string(unseen_test.size()) + " test observations of held-out keys " +
                                   opt.held_out)
            << "; " << threads << " thread(s), " << opt.epochs << " epochs per model, seed " << opt.seed << "\n";
  std::cout << "ML-VAE: " << mlvae_model.describe() << "\nVAE:    " << vae_model.describe() << "\n";

  mlvae::Rng init(opt.seed);
  mlvae_model.initialize(init);
  mlvae::Rng init2(opt.seed);
  vae_model.initialize(init2);

  std::vector<mlvae::LossTerms> ml_test, vae_test, vae_train;
  const auto ml_train = train_model("ML-VAE", mlvae_model, train, test, opt, ml_test);
  const double train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (with_vae) vae_train = train_model("VAE", vae_model, train, test, opt, vae_test);

  Csv csv(csv_path);
  for (int e = 0; e < opt.epochs; ++e) {
    const auto ee = static_cast<std::size_t>(e);
    csv.add("train_elbo_per_image", "mlvae", "train", "", "", e + 1, "epoch", ml_train[ee].elbo_per_image);
    csv.add("test_elbo_per_image", "mlvae", "test", "", "", e + 1, "epoch", ml_test[ee].elbo_per_image);
    if (!with_vae) continue;
    csv.add("train_elbo_per_image", "vae", "train", "", "", e + 1, "epoch", vae_train[ee].elbo_per_image);
    csv.add("test_elbo_per_image", "vae", "test", "", "", e + 1, "epoch", vae_test[ee].elbo_per_image);
  }
  csv.add("test_elbo_per_image_final", "mlvae", "test", "", "", opt.train_group_size, "", ml_test.back().elbo_per_image);
  csv.add("test_style_kl_per_group_final", "mlvae", "test", "", "", opt.train_group_size, "", ml_test.back().style_kl);
  csv.add("test_content_kl_per_group_final", "mlvae", "test", "", "", opt.train_group_size, "",
          ml_test.back().content_kl);
  csv.add("train_seconds_mlvae", "", "", "", "", 0, "", train_seconds);

  // ---- Latent informativeness --------------------------------------------------------------
  const std::vector<Index> sizes = parse_list<Index>(opt.accumulate, "--accumulate");
  struct Split {
    std::string name;
    const Data* fit;
    const Data* eval;
  };
  std::vector<Split> splits{{"test", &train, &test}};
  if (!held.empty()) splits.push_back({"unseen", &unseen_train, &unseen_test});
  std::printf("\n%-7s %-8s %-10s %-5s %8s %8s   (predicting %s)\n", "split", "latent", "strategy", "k", "logreg", "knn",
              train.labels.empty() ? "the group key" : "the labels");
  for (const Split& sp : splits) {
    // Dense class ids over the classes present in the fitting set (others count as errors).
    std::vector<int> present(targets(*sp.fit).begin(), targets(*sp.fit).end());
    std::sort(present.begin(), present.end());
    present.erase(std::unique(present.begin(), present.end()), present.end());
    mlvae::require<mlvae::ArgumentError>(present.size() >= 2, "the ", sp.fit->source, " (", sp.name,
                                         ") holds one class only: a classifier of one class is always right, so "
                                         "there is nothing to measure; give data with at least two classes");
    const auto classes = static_cast<Index>(present.size());
    auto dense = [&](const std::vector<int>& t) {
      std::vector<int> out(t.size());
      for (std::size_t i = 0; i < t.size(); ++i) {
        const auto it = std::lower_bound(present.begin(), present.end(), t[i]);
        out[i] = (it != present.end() && *it == t[i]) ? static_cast<int>(it - present.begin()) : -1;
      }
      return out;
    };
    const auto fit_classes = dense(targets(*sp.fit)), eval_classes = dense(targets(*sp.eval));
    // Observations of classes absent from the fitting set are kept (and counted wrong).
    auto eval_truth = eval_classes;
    for (int& c : eval_truth)
      if (c < 0) c = static_cast<int>(classes);
    const auto fit_codes = mlvae::encode_mlvae(mlvae_model, sp.fit->x);
    const auto eval_codes = mlvae::encode_mlvae(mlvae_model, sp.eval->x);
    if (opt.save_codes) {  // one observation per row: a dims x N column-major matrix is N x dims row-major
      const auto save = [&](const std::string& name, const Mat& m) {
        mlvae::write_npy(opt.out_dir + "/codes_seed" + std::to_string(opt.seed) + "_" + sp.name + "_" + name + ".npy",
                         {static_cast<std::size_t>(m.cols()), static_cast<std::size_t>(m.rows())},
                         std::vector<T>(m.data(), m.data() + m.size()));
      };
      const auto save_classes = [&](const std::string& name, const std::vector<int>& c) {
        mlvae::write_npy(opt.out_dir + "/codes_seed" + std::to_string(opt.seed) + "_" + sp.name + "_" + name + ".npy",
                         {c.size()},
                         std::vector<std::uint8_t>(c.begin(), c.end()));
      };
      save("fit_style", fit_codes.style_mean);
      save("fit_content", fit_codes.content_mean);
      save("eval_style", eval_codes.style_mean);
      save("eval_content", eval_codes.content_mean);
      save_classes("fit_classes", fit_classes);
      save_classes("eval_classes", eval_truth);  // `classes` marks a class absent from the fitting set
      if (with_vae) {
        Mat vm, vl;
        mlvae::encode_vae(vae_model, sp.fit->x, vm, vl);
        save("fit_vae", vm);
        mlvae::encode_vae(vae_model, sp.eval->x, vm, vl);
        save("eval_vae", vm);
      }
    }
    const Index knn = std::min<Index>(opt.knn_k, sp.fit->size());
    for (Index k : sizes) {
      std::vector<int> fl, el;
      const Mat fc = grouped_content(fit_codes, sp.fit->keys, fit_classes, k, opt.seed + 10 + static_cast<std::uint64_t>(k), fl);
      const Mat ec = grouped_content(eval_codes, sp.eval->keys, eval_truth, k, opt.seed + 20 + static_cast<std::uint64_t>(k), el);
      const Accuracy a = classify(fc, fl, ec, el, classes, knn, opt.seed);
      const std::string strategy = k == 1 ? "1" : "2";
      csv.add("accuracy", "mlvae", sp.name, "content", strategy, k, "logreg", a.lr);
      csv.add("accuracy", "mlvae", sp.name, "content", strategy, k, "knn", a.knn);
      std::printf("%-7s %-8s %-10s %-5ld %8.4f %8.4f\n", sp.name.c_str(), "content", strategy.c_str(),
                  static_cast<long>(k), a.lr, a.knn);
    }
    // Style is per observation: the same under both strategies.
    const Accuracy st = classify(fit_codes.style_mean, fit_classes, eval_codes.style_mean, eval_truth, classes, knn,
                                 opt.seed);
    csv.add("accuracy", "mlvae", sp.name, "style", "1_and_2", 1, "logreg", st.lr);
    csv.add("accuracy", "mlvae", sp.name, "style", "1_and_2", 1, "knn", st.knn);
    std::printf("%-7s %-8s %-10s %-5s %8.4f %8.4f\n", sp.name.c_str(), "style", "1 and 2", "-", st.lr, st.knn);
    if (with_vae) {
      Mat vm, vl, em, el_;
      mlvae::encode_vae(vae_model, sp.fit->x, vm, vl);
      mlvae::encode_vae(vae_model, sp.eval->x, em, el_);
      const Accuracy va = classify(vm, fit_classes, em, eval_truth, classes, knn, opt.seed);
      csv.add("accuracy", "vae", sp.name, "z", "1", 1, "logreg", va.lr);
      csv.add("accuracy", "vae", sp.name, "z", "1", 1, "knn", va.knn);
      std::printf("%-7s %-8s %-10s %-5s %8.4f %8.4f\n", sp.name.c_str(), "VAE z", "1", "-", va.lr, va.knn);
    }
    // Chance: always guessing the most frequent class of the fitting set.
    std::vector<int> counts(static_cast<std::size_t>(classes), 0);
    for (int c : fit_classes) ++counts[static_cast<std::size_t>(c)];
    const int majority = static_cast<int>(std::max_element(counts.begin(), counts.end()) - counts.begin());
    const double chance = static_cast<double>(std::count(eval_truth.begin(), eval_truth.end(), majority)) /
                          static_cast<double>(eval_truth.size());
    csv.add("accuracy_chance", "", sp.name, "", "", 0, "majority", chance);
    std::printf("%-7s %-8s %-10s %-5s %8.4f %8s\n", sp.name.c_str(), "chance", "majority", "-", chance, "");
  }

  // ---- What content and style explain of each feature (non-image data) ---------------------
  if (!test.is_image() && train.x.rows() <= 200) {
    const auto fit_codes = mlvae::encode_mlvae(mlvae_model, train.x);
    const auto eval_codes = mlvae::encode_mlvae(mlvae_model, test.x);
    std::ofstream r2(opt.out_dir + "/feature_r2.csv");
    r2 << "feature,r2_content,r2_style\n";
    std::printf("\nR^2 of each feature from a linear fit on the codes (fit: training split, measured: test split)\n"
                "%-28s %10s %10s\n", "feature", "content", "style");
    for (Index f = 0; f < train.x.rows(); ++f) {
      const Eigen::RowVectorXd yt = train.x.row(f).cast<double>(), ye = test.x.row(f).cast<double>();
      const double rc = linear_r2(fit_codes.content_mean, yt, eval_codes.content_mean, ye);
      const double rs = linear_r2(fit_codes.style_mean, yt, eval_codes.style_mean, ye);
      const std::string& name = train.feature_names[static_cast<std::size_t>(f)];
      r2 << name << ',' << rc << ',' << rs << '\n';
      csv.add("feature_r2", "mlvae", "test", "content", "1", 1, name, rc);
      csv.add("feature_r2", "mlvae", "test", "style", "1", 1, name, rs);
      std::printf("%-28s %10.3f %10.3f\n", name.c_str(), rc, rs);
    }
  }

  // ---- Importance-sampled log-likelihood ---------------------------------------------------
  std::printf("\n%-7s %-7s %14s %14s %16s %16s\n", "split", "model", "IS ll/obs", "ELBO/obs",
              "IS ll/group", "per obs in grp");
  for (const Split& sp : splits) {
    const Data& ev = *sp.eval;
    const Index n = std::min(opt.ll_images, ev.size());
    std::vector<int> keys(ev.keys.begin(), ev.keys.begin() + n);
    const mlvae::GroupLayout layout = mlvae::make_key_groups(keys, opt.group_size, opt.seed + 30);
    Mat x;
    mlvae::gather_columns(ev.x, layout.indices, x);
    mlvae::ImportanceSamplingOptions io;
    io.samples = opt.samples;
    io.seed = opt.seed + 40;
    const auto ml_img = mlvae::mlvae_log_likelihood(mlvae_model, x, mlvae::singleton_offsets(n), io);
    const auto ml_grp = mlvae::mlvae_log_likelihood(mlvae_model, x, layout.offsets, io);
    const double groups = static_cast<double>(layout.group_count());
    const double per_img_grp_ml = ml_grp.mean_log_likelihood() * groups / static_cast<double>(n);
    if (!with_vae) {
      csv.add("is_log_likelihood_per_image", "mlvae", sp.name, "", "", 1, "K=" + std::to_string(opt.samples),
              ml_img.mean_log_likelihood());
      csv.add("elbo_per_image_K_sample_mean", "mlvae", sp.name, "", "", 1, "K=" + std::to_string(opt.samples),
              ml_img.mean_elbo());
      csv.add("is_log_likelihood_per_group", "mlvae", sp.name, "", "", opt.group_size,
              "K=" + std::to_string(opt.samples), ml_grp.mean_log_likelihood());
      csv.add("is_log_likelihood_per_group_per_image", "mlvae", sp.name, "", "", opt.group_size,
              "K=" + std::to_string(opt.samples), per_img_grp_ml);
      std::printf("%-7s %-7s %14.2f %14.2f %16.2f %16.2f\n", sp.name.c_str(), "mlvae", ml_img.mean_log_likelihood(),
                  ml_img.mean_elbo(), ml_grp.mean_log_likelihood(), per_img_grp_ml);
      continue;
    }
    const auto vae_img = mlvae::vae_log_likelihood(vae_model, x, io);
    // VAE treats observations independently: log p(X_G) = Σ_i log p(x_i).
    double vae_group = 0;
    for (Index g = 0; g < layout.group_count(); ++g)
      for (Index i = layout.offsets[static_cast<std::size_t>(g)]; i < layout.offsets[static_cast<std::size_t>(g) + 1];
           ++i)
        vae_group += vae_img.log_likelihood[static_cast<std::size_t>(i)];
    vae_group /= groups;
    const double per_img_grp_vae = vae_group * groups / static_cast<double>(n);
    for (const auto& [model, img, grp, pig] :
         std::vector<std::tuple<std::string, const mlvae::LogLikelihoodEstimate*, double, double>>{
             {"mlvae", &ml_img, ml_grp.mean_log_likelihood(), per_img_grp_ml},
             {"vae", &vae_img, vae_group, per_img_grp_vae}}) {
      csv.add("is_log_likelihood_per_image", model, sp.name, "", "", 1, "K=" + std::to_string(opt.samples),
              img->mean_log_likelihood());
      csv.add("elbo_per_image_K_sample_mean", model, sp.name, "", "", 1, "K=" + std::to_string(opt.samples),
              img->mean_elbo());
      csv.add("is_log_likelihood_per_group", model, sp.name, "", "", opt.group_size,
              "K=" + std::to_string(opt.samples), grp);
      csv.add("is_log_likelihood_per_group_per_image", model, sp.name, "", "", opt.group_size,
              "K=" + std::to_string(opt.samples), pig);
      std::printf("%-7s %-7s %14.2f %14.2f %16.2f %16.2f\n", sp.name.c_str(), model.c_str(),
                  img->mean_log_likelihood(), img->mean_elbo(), grp, pig);
    }
    csv.add("is_images", "", sp.name, "", "", 0, "", static_cast<double>(n));
    csv.add("is_groups", "", sp.name, "", "", 0, "", groups);
  }

  // ---- Manipulation grids (images only) ----------------------------------------------------
  if (test.is_image() && opt.grids) {
    write_grids(mlvae_model, test, "test", opt);
    if (!held.empty()) write_grids(mlvae_model, unseen_test, "unseen", opt);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  csv.add("wall_seconds", "", "", "", "", 0, "", seconds);
  std::cout << "seed " << opt.seed << ": " << fmt(seconds, 0) << " s\n";
  return csv.rows();
}

/// Every seed of --seeds (or --seed), then results.csv as mean ± sd over the seeds and the figures.
template <typename MLModel, typename VAEModel>
int run(const Options& opt, example::LoadedData& all, MLModel&& mlvae_model, VAEModel&& vae_model) {
  const auto start = std::chrono::steady_clock::now();
  const std::vector<std::uint64_t> seeds =
      opt.seeds.empty() ? std::vector<std::uint64_t>{opt.seed} : parse_list<std::uint64_t>(opt.seeds, "--seeds");
  std::filesystem::create_directories(opt.out_dir);
  std::vector<std::vector<Row>> runs;
  for (std::uint64_t seed : seeds) {
    Options o = opt;
    o.seed = seed;
    const std::string path = seeds.size() == 1 ? opt.out_dir + "/results.csv"
                                               : opt.out_dir + "/results_seed" + std::to_string(seed) + ".csv";
    runs.push_back(run_seed(o, all, mlvae_model, vae_model, path));
  }
  if (seeds.size() > 1) {
    write_aggregate(opt.out_dir + "/results.csv", runs);
    print_aggregate(runs);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const bool figures = example::run_plot_script(opt.python, "plot_results.py",
                                                "'" + opt.out_dir + "/results.csv' '" + opt.out_dir + "'");
  std::cout << "\nwrote " << opt.out_dir << "/results.csv"
            << (seeds.size() > 1 ? " (mean, sd over " + std::to_string(seeds.size()) + " seeds; per seed: results_seed<N>.csv)"
                                 : std::string(""))
            << (figures ? std::string(", accuracy_vs_group_size.png, training_curves.png") +
                              (all.test.is_image() ? "" : ", feature_r2.png")
                        : std::string())
            << (all.test.is_image() && opt.grids ? ", swap/interpolation/generation grids (last seed)"
                                                 : (all.test.is_image() ? "" : ", feature_r2.csv"))
            << " (" << fmt(seconds, 0) << " s)\n";
  return 0;
}

template <typename Likelihood>
int run_with(const Options& opt, example::LoadedData& data, Likelihood lik) {
  example::check_likelihood<Likelihood>(data);
  const Index d = data.train.x.rows();
  const auto mo = model_options(opt);
  if constexpr (std::is_same_v<Likelihood, mlvae::BernoulliLikelihood<T>>) {
    if (opt.arch == "conv28") {
      mlvae::require<mlvae::ArgumentError>(data.train.height == 28 && data.train.width == 28, "--arch conv28 needs ",
                                           "28x28 images, the data are ", data.train.height, "x", data.train.width);
      return run(opt, data, mlvae::make_conv28_mlvae<T>(opt.style, opt.content, mo),
                 mlvae::make_conv28_vae<T>(opt.style + opt.content));
    }
  }
  mlvae::require<mlvae::ArgumentError>(opt.arch == "mlp", "--arch ", opt.arch,
                                       " needs 28x28 images with a Bernoulli likelihood");
  if (opt.layers == 2)
    return run(opt, data, mlvae::make_mlp2_mlvae<T>(d, opt.hidden, opt.style, opt.content, lik, mo),
               mlvae::make_mlp2_vae<T>(d, opt.hidden, opt.style + opt.content, lik));
  return run(opt, data, mlvae::make_mlp_mlvae_with<T>(d, opt.hidden, opt.style, opt.content, lik, mo),
             mlvae::make_mlp_vae_with<T>(d, opt.hidden, opt.style + opt.content, lik));
}

/// --preset disentangled: the recommended setting of docs/results.md ("Recommended setting"): a 2-d style
/// with KL weight 16, an 18-d content, training groups of 8 (the MLP ML-VAE otherwise unchanged).
constexpr double kPresetBetaStyle = 16.0;
constexpr Index kPresetStyle = 2, kPresetContent = 18, kPresetTrainGroupSize = 8;

/// Checks the combination of model options and applies --preset.
Options resolve(Options opt) {
  if (opt.preset == "disentangled") {
    // The recommended setting of docs/results.md ("Recommended setting"), measured with 3 seeds; it
    // overrides --beta-style, --style, --content and --train-group-size.
    opt.beta_style = kPresetBetaStyle;
    opt.style = kPresetStyle;
    opt.content = kPresetContent;
    opt.train_group_size = kPresetTrainGroupSize;
  }
  const bool ada = opt.model == "ada-mlvae" || opt.model == "ada-gvae";
  if (ada) {
    mlvae::require<mlvae::ArgumentError>(opt.min_group_size == 0 || opt.min_group_size == 2,
                                         "--model ", opt.model, " trains on pairs; --min-group-size must be 2 or unset");
    opt.min_group_size = 2;
  }
  if (ada) opt.train_group_size = 2;  // pairs in training; --group-size stays the evaluation group size
  if (opt.train_group_size == 0) opt.train_group_size = opt.group_size;
  if (opt.min_group_size == 0) opt.min_group_size = opt.train_group_size;
  mlvae::require<mlvae::ArgumentError>(opt.min_group_size <= opt.train_group_size, "--min-group-size ",
                                       opt.min_group_size, " exceeds the training group size ", opt.train_group_size);
  return opt;
}

int dispatch(const Options& given) {
  const Options opt = resolve(given);
  mlvae_examples::check_device(mlvae_examples::parse_device(opt.device));  // "no CUDA device found" before any work
  example::LoadedData data = example::load_data(opt.data, opt.seed + 3);
  const std::string lik = example::choose_likelihood(opt.likelihood, data.train);
  if (lik == "bernoulli") return run_with(opt, data, mlvae::BernoulliLikelihood<T>{});
  if (lik == "gaussian") return run_with(opt, data, mlvae::GaussianLikelihood<T>(static_cast<T>(opt.variance)));
  return run_with(opt, data, mlvae::GaussianLearnedVarianceLikelihood<T>{});
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"Train an ML-VAE and a VAE baseline with the same budget on grouped data (default: Fashion-MNIST "
               "grouped by class, or your own .npy / CSV / IDX file) and evaluate them as the ML-VAE paper does."};
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // a later option wins
  app.add_option("--epochs", opt.epochs, "training epochs of EACH model")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--seed", opt.seed, "seed of initialisation, split, batches, noise and evaluation")->capture_default_str();
  app.add_option("--threads", opt.threads, "threads (0: OMP_NUM_THREADS or all cores)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--held-out-classes", opt.held_out,
                 "comma-separated group keys left out of training and evaluated as unseen groups, e.g. 7,8,9");
  app.add_option("--k", opt.samples, "importance samples K")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--ll-images", opt.ll_images, "test observations for the log-likelihood estimates")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--group-size", opt.group_size, "training and evaluation group size")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--groups-per-batch", opt.groups_per_batch, "groups per minibatch")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--knn", opt.knn_k, "neighbours of the k-NN classifier")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--lr", opt.learning_rate, "Adam learning rate")->check(CLI::PositiveNumber)->capture_default_str();
  example::add_model_options(app, opt, "",
                    " (the VAE gets style + content)");
  opt.data.add_to(app);
  app.add_option("--out", opt.out_dir, "output directory")->capture_default_str();
  app.add_flag("--quiet", opt.quiet, "no per-step progress");
  app.add_option("--python", opt.python, "Python with matplotlib for the figures ('none': CSV only)")
      ->capture_default_str();
  example::add_device_option(app, opt.device, "the ML-VAE and the VAE baseline (the evaluation runs on the CPU)");
  app.add_option("--seeds", opt.seeds,
                 "comma-separated seeds, e.g. 1,2,3: the whole run once per seed (results_seed<N>.csv), then "
                 "results.csv and the printed table as mean and standard deviation over the seeds");
  app.add_option("--model", opt.model,
                 "group model: mlvae (product of Gaussians), gvae (arithmetic mean, Hosoya 2019), ada-mlvae / "
                 "ada-gvae (pairs, shared dimensions by the KL threshold, Locatello et al. 2020)")
      ->check(CLI::IsMember({"mlvae", "gvae", "ada-mlvae", "ada-gvae"}))->capture_default_str();
  app.add_option("--arch", opt.arch, "architecture: mlp (--hidden, --layers) or conv28 (28x28 images, Bernoulli)")
      ->check(CLI::IsMember({"mlp", "conv28"}))->capture_default_str();
  app.add_option("--beta-style", opt.beta_style, "weight of the style KL term")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--beta-content", opt.beta_content, "weight of the content KL term")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--cycle", opt.cycle, "weight of the reverse-cycle loss (Jha et al. 2018; 0: off)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--content-sample", opt.content_sample, "one content sample per group or per observation")
      ->check(CLI::IsMember({"group", "observation"}))->capture_default_str();
  app.add_option("--train-group-size", opt.train_group_size,
                 "largest training group (default: --group-size, which stays the evaluation group size)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--min-group-size", opt.min_group_size,
                 "smallest training group: sizes are drawn uniformly in [min, training group size] (variable groups)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--accumulate", opt.accumulate, "strategy-2 group sizes k for the content accuracy")
      ->capture_default_str();
  app.add_option("--baseline", opt.baseline, "train the VAE baseline (vae) or not (none)")
      ->check(CLI::IsMember({"vae", "none"}))->capture_default_str();
  app.add_flag("!--no-grids", opt.grids, "skip the swap / interpolation / generation grids");
  app.add_flag("--save-codes", opt.save_codes,
               "also write each split's posterior means (style, content, the VAE's z) and classes as .npy "
               "(codes_seed<S>_<split>_<fit|eval>_<part>.npy in --out; scripts/code_probes.py fits probes on them)");
  app.add_option("--preset", opt.preset,
                 "disentangled: the recommended setting of docs/results.md (style 2 dimensions with KL weight 16, "
                 "content 18, training groups of 8; overrides --beta-style, --style, --content, --train-group-size)")
      ->check(CLI::IsMember({"disentangled"}));
  CLI11_PARSE(app, argc, argv);
  try {
    return dispatch(opt);
  } catch (const std::exception& e) {
    std::cerr << "evaluate_mlvae: " << e.what() << "\n";
    return 1;
  }
}
