// evaluate_mlvae — the ML-VAE paper's evaluation in one command. Trains the MLP ML-VAE (style 10,
// content 10) and the matching VAE baseline (latent 20) on Fashion-MNIST grouped by class with the
// same budget (epochs, batches, seeds), optionally on a subset of the classes (--held-out-classes),
// then measures:
//   * how informative content and style are of the class: softmax regression (Adam) and k-NN fitted
//     on training-set codes, test accuracy for strategy 1 and strategy 2 with 1, 2, 4, 8, 16
//     accumulated images (and the same on the held-out, never-trained classes);
//   * importance-sampled test log-likelihood (K samples) per image and per group, ML-VAE vs VAE;
// and writes results.csv (every number), accuracy_vs_group_size.png, training_curves.png and
// swap / interpolation / generation grids for the test split and the unseen classes.
#include <mlvae/mlvae.hpp>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

namespace {

using T = float;
using mlvae::Index;
using Mat = mlvae::Matrix<T>;

struct Options {
  int epochs = 10;
  std::uint64_t seed = 1;
  int threads = 0;
  std::string held_out;  // e.g. "7,8,9"
  Index samples = 100;   // K
  Index ll_images = 1000;
  Index group_size = 16, groups_per_batch = 16;
  Index knn_k = 5;
  double learning_rate = 1e-3;
  std::size_t train_limit = mlvae::idx_all_items;
  std::string data_dir = mlvae::fashion_mnist_default_dir();
  std::string out_dir = "out/evaluate_mlvae";
};

struct Subset {
  Mat images;
  std::vector<int> labels;
  Index size() const { return images.cols(); }
};

Subset select(const mlvae::LabelledImages<T>& data, const std::set<int>& classes, bool keep, std::size_t limit = ~0ul) {
  std::vector<Index> idx;
  Subset s;
  for (std::size_t i = 0; i < data.labels.size() && idx.size() < limit; ++i)
    if ((classes.count(data.labels[i]) > 0) == keep) {
      idx.push_back(static_cast<Index>(i));
      s.labels.push_back(data.labels[i]);
    }
  mlvae::gather_columns(data.images, idx, s.images);
  return s;
}

// Relabels to 0..k-1 (classifiers need dense labels).
std::vector<int> dense_labels(const std::vector<int>& labels, const std::vector<int>& classes) {
  std::vector<int> out(labels.size());
  for (std::size_t i = 0; i < labels.size(); ++i)
    out[i] = static_cast<int>(std::find(classes.begin(), classes.end(), labels[i]) - classes.begin());
  return out;
}

class Csv {
public:
  explicit Csv(const std::string& path) : out_(path) {
    out_ << "metric,model,split,latent,strategy,group_size,classifier,value\n";
  }
  void add(const std::string& metric, const std::string& model, const std::string& split, const std::string& latent,
           const std::string& strategy, Index group_size, const std::string& classifier, double value) {
    out_ << metric << ',' << model << ',' << split << ',' << latent << ',' << strategy << ',' << group_size << ','
         << classifier << ',' << value << '\n';
    out_.flush();
  }

private:
  std::ofstream out_;
};

struct Accuracy {
  double lr = 0, knn = 0;
};

Accuracy classify(const mlvae::Matrix<T>& train_codes, const std::vector<int>& train_labels,
                  const mlvae::Matrix<T>& test_codes, const std::vector<int>& test_labels, Index classes, Index k,
                  std::uint64_t seed) {
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

// Content codes of every observation when the data are cut into class groups of `size`
// (strategy 2: each member gets its group's posterior mean), in the layout's order.
Mat grouped_content(const mlvae::MLVAECodes<T>& codes, const std::vector<int>& labels, Index size, std::uint64_t seed,
                    std::vector<int>& out_labels) {
  const mlvae::GroupLayout layout = mlvae::make_key_groups(labels, size, seed);
  const auto laid = mlvae::gather_codes(codes, layout.indices);
  Mat gm, gl;
  mlvae::infer_group_content(laid, layout.offsets, mlvae::InferenceStrategy::AccumulatedGroup, gm, gl);
  out_labels.resize(layout.indices.size());
  for (std::size_t j = 0; j < layout.indices.size(); ++j)
    out_labels[j] = labels[static_cast<std::size_t>(layout.indices[j])];
  return mlvae::expand_to_members(gm, layout.offsets);
}

std::string fmt(double v, int decimals = 3) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

template <typename Model>
std::vector<mlvae::LossTerms> train_model(const char* name, Model& model, const Subset& train, const Subset& test,
                                          const Options& opt, std::vector<mlvae::LossTerms>& test_terms) {
  mlvae::TrainerOptions topt;
  topt.adam.learning_rate = opt.learning_rate;
  topt.sampler = {opt.groups_per_batch, opt.group_size, opt.group_size, opt.seed + 1};
  topt.noise_seed = opt.seed + 2;
  mlvae::Trainer<Model> trainer(model, train.images, train.labels, topt);
  std::vector<mlvae::LossTerms> train_terms;
  for (int epoch = 1; epoch <= opt.epochs; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    const mlvae::LossTerms tr = trainer.run_epoch();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const mlvae::LossTerms te = mlvae::evaluate_dataset(model, test.images, test.labels, opt.group_size);
    train_terms.push_back(tr);
    test_terms.push_back(te);
    std::printf("%-6s epoch %3d/%d  train elbo/image %8.2f  test elbo/image %8.2f  (rec %8.2f kl style %6.2f kl "
                "content/group %6.2f)  %5.1f s\n",
                name, epoch, opt.epochs, tr.elbo_per_image, te.elbo_per_image, te.reconstruction, te.style_kl,
                te.content_kl, seconds);
    std::fflush(stdout);
  }
  return train_terms;
}

// Picks `per_group` images of each class present (first occurrences) as consecutive groups.
void class_groups(const Subset& data, Index per_group, Mat& x, std::vector<Index>& offsets) {
  std::vector<std::vector<Index>> members(10);
  for (std::size_t i = 0; i < data.labels.size(); ++i) {
    auto& m = members[static_cast<std::size_t>(data.labels[i])];
    if (static_cast<Index>(m.size()) < per_group) m.push_back(static_cast<Index>(i));
  }
  std::vector<Index> indices;
  offsets.assign(1, 0);
  for (const auto& m : members) {
    if (m.empty()) continue;
    indices.insert(indices.end(), m.begin(), m.end());
    offsets.push_back(static_cast<Index>(indices.size()));
  }
  mlvae::gather_columns(data.images, indices, x);
}

template <typename Model>
void write_grids(Model& model, const Subset& data, const std::string& tag, const Options& opt, Index h, Index w) {
  Mat groups_x;
  std::vector<Index> offsets;
  class_groups(data, opt.group_size, groups_x, offsets);
  const Index G = static_cast<Index>(offsets.size()) - 1;
  // Swap grid: rows = style of one image, columns = content of one class group (strategy 2).
  std::vector<Index> style_idx;
  for (Index i = 0; i < 8; ++i) style_idx.push_back((97 * i + 13) % data.size());
  Mat style_x;
  mlvae::gather_columns(data.images, style_idx, style_x);
  const Mat swap = mlvae::swap_grid(model, style_x, groups_x, offsets);
  mlvae::write_image_grid(opt.out_dir + "/swap_grid_" + tag + "_rows-style_cols-content.png", swap, h, w,
                          style_x.cols() + 1, G + 1, 2, 1);
  // Interpolations between the first member of group g and of group g+1.
  const Index pairs = std::min<Index>(G, 6);
  Mat from(groups_x.rows(), pairs), to(groups_x.rows(), pairs);
  for (Index g = 0; g < pairs; ++g) {
    from.col(g) = groups_x.col(offsets[static_cast<std::size_t>(g)] + 1);
    to.col(g) = groups_x.col(offsets[static_cast<std::size_t>((g + 1) % G)] + 2);
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

int run(const Options& opt) {
  namespace fs = std::filesystem;
  const int threads = mlvae::set_threads(opt.threads);
  fs::create_directories(opt.out_dir);
  const auto start = std::chrono::steady_clock::now();

  std::set<int> held;
  {
    std::stringstream ss(opt.held_out);
    std::string item;
    while (std::getline(ss, item, ','))
      if (!item.empty()) {
        const int c = std::stoi(item);
        if (c < 0 || c > 9) throw mlvae::ArgumentError("--held-out-classes: class " + item + " is not in 0..9");
        held.insert(c);
      }
  }
  const auto train_all = mlvae::load_fashion_mnist<T>("train", opt.data_dir);
  const auto test_all = mlvae::load_fashion_mnist<T>("test", opt.data_dir);
  const Subset train = select(train_all, held, false, opt.train_limit);
  const Subset test = select(test_all, held, false);
  Subset unseen_train, unseen_test;
  if (!held.empty()) {
    unseen_train = select(train_all, held, true, opt.train_limit == mlvae::idx_all_items ? ~0ul : opt.train_limit / 2);
    unseen_test = select(test_all, held, true);
  }
  std::vector<int> seen_classes, unseen_classes(held.begin(), held.end());
  for (int c = 0; c < 10; ++c)
    if (!held.count(c)) seen_classes.push_back(c);
  std::cout << "evaluate_mlvae: " << train.size() << " training images of " << seen_classes.size() << " classes, "
            << test.size() << " test images; " << (held.empty() ? std::string("no held-out classes")
                                                                 : std::to_string(unseen_test.size()) +
                                                                       " test images of held-out classes " + opt.held_out)
            << "; " << threads << " thread(s), " << opt.epochs << " epochs per model\n";

  auto mlvae_model = mlvae::make_mlp_mlvae<T>(784, 500, 10, 10);
  auto vae_model = mlvae::make_mlp_vae<T>(784, 500, 20);
  mlvae::Rng init(opt.seed);
  mlvae_model.initialize(init);
  mlvae::Rng init2(opt.seed);
  vae_model.initialize(init2);

  std::vector<mlvae::LossTerms> ml_test, vae_test;
  const auto ml_train = train_model("ML-VAE", mlvae_model, train, test, opt, ml_test);
  const auto vae_train = train_model("VAE", vae_model, train, test, opt, vae_test);

  Csv csv(opt.out_dir + "/results.csv");
  for (int e = 0; e < opt.epochs; ++e) {
    const auto ee = static_cast<std::size_t>(e);
    csv.add("train_elbo_per_image", "mlvae", "train", "", "", e + 1, "epoch", ml_train[ee].elbo_per_image);
    csv.add("test_elbo_per_image", "mlvae", "test", "", "", e + 1, "epoch", ml_test[ee].elbo_per_image);
    csv.add("train_elbo_per_image", "vae", "train", "", "", e + 1, "epoch", vae_train[ee].elbo_per_image);
    csv.add("test_elbo_per_image", "vae", "test", "", "", e + 1, "epoch", vae_test[ee].elbo_per_image);
  }
  {
    std::vector<double> epochs;
    std::vector<double> a, b, c, d;
    for (int e = 0; e < opt.epochs; ++e) {
      const auto ee = static_cast<std::size_t>(e);
      epochs.push_back(e + 1);
      a.push_back(ml_train[ee].elbo_per_image);
      b.push_back(ml_test[ee].elbo_per_image);
      c.push_back(vae_train[ee].elbo_per_image);
      d.push_back(vae_test[ee].elbo_per_image);
    }
    mlvae::PlotOptions po;
    po.title = "TRAINING CURVES";
    po.x_label = "EPOCH";
    po.y_label = "ELBO PER IMAGE, NATS (ML-VAE: GROUP ELBO / GROUP SIZE)";
    po.legend_bottom = true;
    mlvae::save_line_plot(opt.out_dir + "/training_curves.png",
                          {{"ML-VAE TRAIN", epochs, a, mlvae::plot_color(0), true},
                           {"ML-VAE TEST", epochs, b, mlvae::plot_color(0)},
                           {"VAE TRAIN", epochs, c, mlvae::plot_color(1), true},
                           {"VAE TEST", epochs, d, mlvae::plot_color(1)}},
                          po);
  }

  // ---- Latent informativeness --------------------------------------------------------------
  const std::vector<Index> sizes{1, 2, 4, 8, 16};
  struct Split {
    std::string name;
    const Subset* fit;
    const Subset* eval;
    std::vector<int> classes;
  };
  std::vector<Split> splits{{"test", &train, &test, seen_classes}};
  if (!held.empty()) splits.push_back({"unseen", &unseen_train, &unseen_test, unseen_classes});
  std::vector<mlvae::PlotSeries> acc_series;
  std::printf("\n%-7s %-8s %-10s %-5s %8s %8s\n", "split", "latent", "strategy", "k", "logreg", "knn");
  for (std::size_t si = 0; si < splits.size(); ++si) {
    const Split& sp = splits[si];
    const Index classes = static_cast<Index>(sp.classes.size());
    const auto fit_labels = dense_labels(sp.fit->labels, sp.classes);
    const auto eval_labels = dense_labels(sp.eval->labels, sp.classes);
    const auto fit_codes = mlvae::encode_mlvae(mlvae_model, sp.fit->images);
    const auto eval_codes = mlvae::encode_mlvae(mlvae_model, sp.eval->images);
    mlvae::PlotSeries lr_series{"CONTENT LOGREG " + sp.name, {}, {}, mlvae::plot_color(2 * si)};
    mlvae::PlotSeries knn_series{"CONTENT KNN " + sp.name, {}, {}, mlvae::plot_color(2 * si), true};
    for (Index k : sizes) {
      std::vector<int> fl, el;
      const Mat fc = grouped_content(fit_codes, fit_labels, k, opt.seed + 10 + static_cast<std::uint64_t>(k), fl);
      const Mat ec = grouped_content(eval_codes, eval_labels, k, opt.seed + 20 + static_cast<std::uint64_t>(k), el);
      const Accuracy a = classify(fc, fl, ec, el, classes, opt.knn_k, opt.seed);
      const std::string strategy = k == 1 ? "1" : "2";
      csv.add("accuracy", "mlvae", sp.name, "content", strategy, k, "logreg", a.lr);
      csv.add("accuracy", "mlvae", sp.name, "content", strategy, k, "knn", a.knn);
      std::printf("%-7s %-8s %-10s %-5ld %8.4f %8.4f\n", sp.name.c_str(), "content", k == 1 ? "1" : "2",
                  static_cast<long>(k), a.lr, a.knn);
      lr_series.x.push_back(static_cast<double>(k));
      lr_series.y.push_back(a.lr);
      knn_series.x.push_back(static_cast<double>(k));
      knn_series.y.push_back(a.knn);
    }
    // Style is per image: the same under both strategies.
    const Accuracy st = classify(fit_codes.style_mean, fit_labels, eval_codes.style_mean, eval_labels, classes,
                                 opt.knn_k, opt.seed);
    csv.add("accuracy", "mlvae", sp.name, "style", "1_and_2", 1, "logreg", st.lr);
    csv.add("accuracy", "mlvae", sp.name, "style", "1_and_2", 1, "knn", st.knn);
    std::printf("%-7s %-8s %-10s %-5s %8.4f %8.4f\n", sp.name.c_str(), "style", "1 and 2", "-", st.lr, st.knn);
    Mat vm, vl, em, el_;
    mlvae::encode_vae(vae_model, sp.fit->images, vm, vl);
    mlvae::encode_vae(vae_model, sp.eval->images, em, el_);
    const Accuracy va = classify(vm, fit_labels, em, eval_labels, classes, opt.knn_k, opt.seed);
    csv.add("accuracy", "vae", sp.name, "z", "1", 1, "logreg", va.lr);
    csv.add("accuracy", "vae", sp.name, "z", "1", 1, "knn", va.knn);
    std::printf("%-7s %-8s %-10s %-5s %8.4f %8.4f\n", sp.name.c_str(), "VAE z", "1", "-", va.lr, va.knn);
    const double chance = 1.0 / static_cast<double>(classes);
    csv.add("accuracy_chance", "", sp.name, "", "", 0, "", chance);
    acc_series.push_back(lr_series);
    acc_series.push_back(knn_series);
    acc_series.push_back({"STYLE LOGREG " + sp.name, {1, 16}, {st.lr, st.lr}, mlvae::plot_color(2 * si + 1), true});
    acc_series.push_back({"CHANCE " + sp.name, {1, 16}, {chance, chance}, mlvae::plot_color(7 + si), true});
  }
  {
    mlvae::PlotOptions po;
    po.title = "CLASS ACCURACY FROM LATENT CODES";
    po.x_label = "IMAGES ACCUMULATED IN THE GROUP (STRATEGY 2, 1 = STRATEGY 1)";
    po.y_label = "TEST ACCURACY";
    po.log2_x = true;
    po.y_min = 0;
    po.y_max = 1;
    po.height = 460;
    po.legend_bottom = true;
    mlvae::save_line_plot(opt.out_dir + "/accuracy_vs_group_size.png", acc_series, po);
  }

  // ---- Importance-sampled log-likelihood ---------------------------------------------------
  std::printf("\n%-7s %-7s %14s %14s %16s %16s\n", "split", "model", "IS ll/image", "ELBO/image",
              "IS ll/group(16)", "per image in grp");
  for (const Split& sp : splits) {
    const Subset& ev = *sp.eval;
    const Index n = std::min(opt.ll_images, ev.size());
    // Class groups of up to 16 among the first n images (group g: members of one class).
    std::vector<int> labels(ev.labels.begin(), ev.labels.begin() + n);
    const mlvae::GroupLayout layout = mlvae::make_key_groups(labels, opt.group_size, opt.seed + 30);
    Mat x;
    mlvae::gather_columns(ev.images, layout.indices, x);
    mlvae::ImportanceSamplingOptions io;
    io.samples = opt.samples;
    io.seed = opt.seed + 40;
    const auto ml_img = mlvae::mlvae_log_likelihood(mlvae_model, x, mlvae::singleton_offsets(n), io);
    const auto ml_grp = mlvae::mlvae_log_likelihood(mlvae_model, x, layout.offsets, io);
    const auto vae_img = mlvae::vae_log_likelihood(vae_model, x, io);
    // VAE treats images independently: log p(X_G) = Σ_i log p(x_i).
    double vae_group = 0;
    for (Index g = 0; g < layout.group_count(); ++g)
      for (Index i = layout.offsets[static_cast<std::size_t>(g)]; i < layout.offsets[static_cast<std::size_t>(g) + 1];
           ++i)
        vae_group += vae_img.log_likelihood[static_cast<std::size_t>(i)];
    const double groups = static_cast<double>(layout.group_count());
    vae_group /= groups;
    const double per_img_grp_ml = ml_grp.mean_log_likelihood() * groups / static_cast<double>(n);
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

  // ---- Manipulation grids ------------------------------------------------------------------
  write_grids(mlvae_model, test, "test", opt, test_all.height, test_all.width);
  if (!held.empty()) write_grids(mlvae_model, unseen_test, "unseen", opt, test_all.height, test_all.width);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  csv.add("wall_seconds", "", "", "", "", 0, "", seconds);
  std::cout << "\nwrote " << opt.out_dir << "/results.csv, accuracy_vs_group_size.png, training_curves.png and "
            << "swap/interpolation/generation grids (" << fmt(seconds, 0) << " s)\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"Train ML-VAE and a VAE baseline on Fashion-MNIST with the same budget and evaluate them as the "
               "ML-VAE paper does."};
  app.add_option("--epochs", opt.epochs, "training epochs of EACH model")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--seed", opt.seed, "seed of initialisation, batches, noise and evaluation")->capture_default_str();
  app.add_option("--threads", opt.threads, "threads (0: OMP_NUM_THREADS or all cores)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--held-out-classes", opt.held_out,
                 "comma-separated classes left out of training and evaluated as unseen groups, e.g. 7,8,9");
  app.add_option("--k", opt.samples, "importance samples K")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--ll-images", opt.ll_images, "test images for the log-likelihood estimates")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--group-size", opt.group_size, "training and evaluation group size")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--groups-per-batch", opt.groups_per_batch, "groups per minibatch")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--knn", opt.knn_k, "neighbours of the k-NN classifier")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--lr", opt.learning_rate, "Adam learning rate")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--train-limit", opt.train_limit, "use only the first N training images (quick runs)")
      ->check(CLI::PositiveNumber);
  app.add_option("--data", opt.data_dir, "directory with the Fashion-MNIST IDX files")->capture_default_str();
  app.add_option("--out", opt.out_dir, "output directory")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    return run(opt);
  } catch (const std::exception& e) {
    std::cerr << "evaluate_mlvae: " << e.what() << "\n";
    return 1;
  }
}
