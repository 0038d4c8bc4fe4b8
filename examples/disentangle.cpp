// disentangle — trains a VAE, β-VAE, β-TCVAE, HFVAE or ML-VAE on dSprites generated on the fly
// (data/dsprites.hpp), then measures disentanglement with the metrics of disentanglement_lib
// (eval/disentanglement.hpp). Prints progress and the metrics; writes metrics.csv, the codes and
// factors the metrics used (codes.csv), reconstructions, and latent traversal grids (one row per
// latent dimension, values −2 … 2 around the posterior mean of one image). docs/disentanglement.md
// explains the objectives; docs/results.md has measured numbers and the commands behind them.
#include <mlvae/mlvae.hpp>
#include <mlvae/data/dsprites.hpp>
#include <mlvae/eval/disentanglement.hpp>
#include <mlvae/model/disentangle_architectures.hpp>

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using mlvae::Index;
using Mat = mlvae::Matrix<float>;

struct Options {
  std::string model = "beta-tcvae";
  std::string arch = "mlp";
  Index hidden = 1200;
  Index latent = 10;
  Index style = 5, content = 5;
  double beta = -1;  // <0: the model's default (β-VAE 4, β-TCVAE 6, HFVAE 6)
  double alpha = 1, gamma = -1, delta = 1;  // gamma < 0: HFVAE default 3 (β-TCVAE: unused)
  std::string blocks = "2,2,2,2,2";
  std::string estimator = "mss";
  long long steps = 3000;
  double epochs = 0;  // > 0 overrides steps: epochs × 737 280 / batch
  Index batch = 64;
  double learning_rate = 1e-3;
  int threads = 1;
  std::uint64_t seed = 1;
  std::string out_dir = "out/disentangle";
  std::string grouping = "shape";  // mlvae: shape | shape-scale | paired
  Index group_size = 8;
  int k = 1;                       // paired: factors that differ (0: random 1..4)
  long long log_every = 250;
  Index bvae_points = 10000, fvae_votes = 10000, sample_points = 10000;
  int traversals = 3;
};

std::vector<Index> parse_blocks(const std::string& text) {
  std::vector<Index> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(std::stoll(item));
  return out;
}

std::string format_duration(double seconds) {
  const long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  return buf;
}

template <typename Model>
constexpr bool is_mlvae = mlvae::detail::is_grouped_model<Model>::value;

// Posterior means of the observations `indices`: z (VAE) or [style; content] from each image alone.
template <typename Model>
void encode_means(Model& model, const std::vector<Index>& indices, Mat& x, mlvae::Matrix<double>& codes) {
  mlvae::DSprites::render_batch(indices, x);
  Mat a, b, c, d;
  if constexpr (is_mlvae<Model>) {
    model.encode(x, a, b, c, d);
    codes.resize(a.rows() + c.rows(), a.cols());
    codes.topRows(a.rows()) = a.template cast<double>();
    codes.bottomRows(c.rows()) = c.template cast<double>();
  } else {
    model.encode(x, a, b);
    codes = a.template cast<double>();
  }
}

template <typename Model>
void decode_codes(Model& model, const Mat& z, Mat& images) {
  if constexpr (is_mlvae<Model>) {
    const Index s = model.style_size();
    model.decode_mean(Mat(z.topRows(s)), Mat(z.bottomRows(z.rows() - s)), images);
  } else {
    model.decode_mean(z, images);
  }
}

void write_metric_rows(std::ostream& csv, const Options& opt, const std::string& representation,
                       const mlvae::MigScore& mig, const mlvae::DciScore& dci, const mlvae::SapScore& sap) {
  auto row = [&](const char* name, double v) {
    csv << opt.model << ',' << opt.seed << ',' << representation << ',' << name << ',' << v << '\n';
  };
  row("mig", mig.mig);
  row("dci_disentanglement", dci.disentanglement);
  row("dci_completeness", dci.completeness);
  row("dci_informativeness_test", dci.informativeness_test);
  row("sap", sap.sap);
}

template <typename Model>
int run(const Options& opt, Model&& model) {
  using M = std::decay_t<Model>;
  namespace fs = std::filesystem;
  const int threads = mlvae::set_threads(opt.threads);
  fs::create_directories(opt.out_dir);
  const mlvae::FactorGrid& grid = mlvae::DSprites::grid();
  mlvae::Rng init(opt.seed);
  model.initialize(init);
  std::cout << "disentangle: --model " << opt.model << " --arch " << opt.arch << ", " << model.parameters().size()
            << " parameters, " << threads << " thread(s)\n  " << model.describe() << "\n";

  // A fixed held-out set of 512 images: the trainer's own data (for its checks) and the validation ELBO.
  mlvae::Rng data_rng(opt.seed * 1000003ULL + 11);
  std::vector<Index> held_out(512);
  std::vector<int> keys(held_out.size());
  for (std::size_t i = 0; i < held_out.size(); ++i) {
    held_out[i] = grid.sample_index(data_rng);
    keys[i] = grid.factors_of(held_out[i])[0];
  }
  Mat validation;
  mlvae::DSprites::render_batch(held_out, validation);
  mlvae::TrainerOptions topt;
  topt.adam.learning_rate = opt.learning_rate;
  topt.noise_seed = opt.seed + 2;
  topt.sampler = {8, 8, 8, opt.seed + 3};
  mlvae::Trainer<M> trainer(model, validation, keys, topt);

  const long long steps =
      opt.epochs > 0 ? static_cast<long long>(opt.epochs * static_cast<double>(grid.size()) / opt.batch) : opt.steps;
  std::vector<int> shared;
  if (opt.grouping == "shape") shared = {mlvae::DSprites::Shape};
  else if (opt.grouping == "shape-scale") shared = {mlvae::DSprites::Shape, mlvae::DSprites::Scale};
  if constexpr (is_mlvae<M>)
    std::cout << "  groups: " << (opt.grouping == "paired" ? "pairs differing in k = " + std::to_string(opt.k) +
                                                                 (opt.k == 0 ? " (random)" : "") + " factors"
                                                           : opt.grouping + " shared, " +
                                                                 std::to_string(opt.group_size) + " per group")
              << "\n";
  std::cout << "  " << steps << " steps of " << opt.batch << " images (" << steps * opt.batch / double(grid.size())
            << " epochs of dSprites)\n";

  std::vector<Index> indices, offsets;
  Mat x;
  mlvae::StepReport report;
  mlvae::LossTerms window;
  mlvae::KLDecompositionTerms window_kl;
  long long window_steps = 0;
  const auto start = std::chrono::steady_clock::now();
  for (long long step = 1; step <= steps; ++step) {
    if constexpr (is_mlvae<M>) {
      if (opt.grouping == "paired")
        mlvae::sample_pairs_differing_in(grid, opt.k, opt.batch / 2, data_rng, indices, offsets);
      else
        mlvae::sample_shared_factor_groups(grid, shared, opt.batch / opt.group_size, opt.group_size, data_rng, indices,
                                           offsets);
    } else {
      indices.resize(static_cast<std::size_t>(opt.batch));
      for (auto& i : indices) i = grid.sample_index(data_rng);
      offsets = {0, opt.batch};
    }
    mlvae::DSprites::render_batch(indices, x);
    trainer.step_on_batch(x, offsets, report);
    window.accumulate(report.terms);
    if constexpr (!is_mlvae<M>) {
      const auto& t = model.last_kl_decomposition();
      window_kl.mutual_information += t.mutual_information;
      window_kl.between_tc += t.between_tc;
      window_kl.within_tc += t.within_tc;
      window_kl.dimension_kl += t.dimension_kl;
    }
    ++window_steps;
    if (step % opt.log_every == 0 || step == steps) {
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::printf("step %6lld/%lld  loss %9.3f  ELBO/image %9.3f  rec %9.3f  KL %7.3f", step, steps, window.loss,
                  window.elbo_per_image, window.reconstruction * window.groups / double(window.images),
                  (window.style_kl * window.groups + window.content_kl * window.groups) / double(window.images));
      if constexpr (!is_mlvae<M>)
        if (model.uses_kl_decomposition())
          std::printf("  MI %.2f TCb %.2f TCw %.2f dimKL %.2f", window_kl.mutual_information / window_steps,
                      window_kl.between_tc / window_steps, window_kl.within_tc / window_steps,
                      window_kl.dimension_kl / window_steps);
      std::printf("  %.0f img/s  left %s\n", step * opt.batch / elapsed,
                  format_duration(elapsed / step * (steps - step)).c_str());
      std::fflush(stdout);
      window = {};
      window_kl = {};
      window_steps = 0;
    }
  }
  const double train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const mlvae::LossTerms held = mlvae::evaluate_dataset(model, validation, keys, 8, 8);
  std::printf("held-out ELBO per image %.3f (512 images); training took %s\n", held.elbo_per_image,
              format_duration(train_seconds).c_str());

  // ---- metrics ------------------------------------------------------------------------------
  Mat scratch;
  const mlvae::RepresentationFunction representation = [&](const std::vector<Index>& idx,
                                                           mlvae::Matrix<double>& codes) {
    encode_means(model, idx, scratch, codes);
  };
  mlvae::DisentanglementOptions mo;
  mo.beta_vae_train = opt.bvae_points;
  mo.beta_vae_eval = std::max<Index>(1, opt.bvae_points / 2);
  mo.factor_vae_train = opt.fvae_votes;
  mo.factor_vae_eval = std::max<Index>(1, opt.fvae_votes / 2);
  mo.sample_train = opt.sample_points;
  mo.sample_test = std::max<Index>(1, opt.sample_points / 2);
  mlvae::Rng metric_rng(opt.seed + 17);
  const auto metric_start = std::chrono::steady_clock::now();
  const mlvae::DisentanglementReport r = mlvae::evaluate_disentanglement(grid, representation, metric_rng, mo);
  const double metric_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - metric_start).count();
  mlvae::write_factor_codes_csv(opt.out_dir + "/codes.csv", grid, r.train_sample);

  std::ofstream csv(opt.out_dir + "/metrics.csv");
  csv << "model,seed,representation,metric,value\n";
  csv.precision(6);
  auto row = [&](const char* name, double v) {
    csv << opt.model << ',' << opt.seed << ",full," << name << ',' << v << '\n';
  };
  row("beta_vae", r.beta_vae.eval_accuracy);
  row("factor_vae", r.factor_vae.eval_accuracy);
  write_metric_rows(csv, opt, "full", r.mig, r.dci, r.sap);
  row("elbo_per_image_heldout", held.elbo_per_image);
  row("train_seconds", train_seconds);
  std::printf("metrics (%s): beta-VAE %.3f  FactorVAE %.3f (%ld active)  MIG %.3f  DCI D %.3f C %.3f I %.3f  SAP %.3f"
              "  [%.0f s]\n",
              opt.model.c_str(), r.beta_vae.eval_accuracy, r.factor_vae.eval_accuracy,
              static_cast<long>(r.factor_vae.active_dims), r.mig.mig, r.dci.disentanglement, r.dci.completeness,
              r.dci.informativeness_test, r.sap.sap, metric_seconds);
  std::printf("  MI(code; factor) / H(factor), rows = code dims, columns = %s:\n", "shape scale orient x y");
  for (Index d = 0; d < r.mig.mutual_information.rows(); ++d) {
    std::printf("    z%-2ld", static_cast<long>(d));
    for (Index f = 0; f < r.mig.mutual_information.cols(); ++f)
      std::printf(" %5.2f", r.mig.mutual_information(d, f) / r.mig.factor_entropy(f));
    std::printf("\n");
  }
  if constexpr (is_mlvae<M>) {
    // The same sample-based metrics on the style and the content block alone.
    const Index s = model.style_size(), c = model.content_size();
    for (const bool content : {false, true}) {
      const Index first = content ? s : 0, rows = content ? c : s;
      if (rows < 2) continue;
      const mlvae::Matrix<double> train = r.train_sample.codes.middleRows(first, rows);
      const mlvae::Matrix<double> test = r.test_sample.codes.middleRows(first, rows);
      const auto mig = mlvae::mig_score(train, r.train_sample.factors, mo.bins);
      const auto dci = mlvae::dci_score(train, r.train_sample.factors, test, r.test_sample.factors);
      const auto sap = mlvae::sap_score(train, r.train_sample.factors, test, r.test_sample.factors, mo.bins);
      write_metric_rows(csv, opt, content ? "content" : "style", mig, dci, sap);
      std::printf("  %-7s block: MIG %.3f  DCI D %.3f C %.3f I %.3f  SAP %.3f; per-factor MI/H:", content ? "content" : "style",
                  mig.mig, dci.disentanglement, dci.completeness, dci.informativeness_test, sap.sap);
      for (Index f = 0; f < mig.mutual_information.cols(); ++f)
        std::printf(" %.2f", mig.mutual_information.col(f).maxCoeff() / mig.factor_entropy(f));
      std::printf("\n");
    }
  }

  // ---- latent traversals ----------------------------------------------------------------------
  mlvae::Rng traversal_rng(opt.seed + 29);
  for (int t = 0; t < opt.traversals; ++t) {
    mlvae::Matrix<double> base;
    encode_means(model, {grid.sample_index(traversal_rng)}, scratch, base);
    const Index L = base.rows(), columns = 10;
    Mat z(L, L * columns), images;
    for (Index d = 0; d < L; ++d)
      for (Index j = 0; j < columns; ++j) {
        z.col(d * columns + j) = base.col(0).cast<float>();
        z(d, d * columns + j) = static_cast<float>(-2.0 + 4.0 * j / (columns - 1));
      }
    decode_codes(model, z, images);
    const std::string path = opt.out_dir + "/traversal_" + std::to_string(t) + ".png";
    mlvae::write_image_grid(path, images, 64, 64, L, columns, 2, 1);
  }
  // Reconstructions: 8 random images (top row) and the decoded posterior means (bottom row).
  {
    std::vector<Index> shown(8);
    for (auto& i : shown) i = grid.sample_index(traversal_rng);
    mlvae::Matrix<double> codes;
    encode_means(model, shown, scratch, codes);
    Mat decoded, both(mlvae::DSprites::pixels, 16);
    decode_codes(model, Mat(codes.cast<float>()), decoded);
    both.leftCols(8) = scratch;
    both.rightCols(8) = decoded;
    mlvae::write_image_grid(opt.out_dir + "/reconstructions.png", both, 64, 64, 2, 8, 2, 1);
  }
  std::cout << "wrote " << opt.out_dir << "/metrics.csv, codes.csv, reconstructions.png and " << opt.traversals
            << " traversal grid(s)\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"Train a VAE / beta-VAE / beta-TCVAE / HFVAE / ML-VAE on procedurally generated dSprites and "
               "measure disentanglement (beta-VAE, FactorVAE, MIG, DCI, SAP)."};
  app.add_option("--model", opt.model, "vae | beta-vae | beta-tcvae | hfvae | mlvae")
      ->check(CLI::IsMember({"vae", "beta-vae", "beta-tcvae", "hfvae", "mlvae"}))
      ->capture_default_str();
  app.add_option("--arch", opt.arch, "mlp (beta-TCVAE paper: 4096-1200-1200 / 1200-1200-1200-4096) | conv64")
      ->check(CLI::IsMember({"mlp", "conv64"}))
      ->capture_default_str();
  app.add_option("--hidden", opt.hidden, "MLP width (the paper: 1200)")->capture_default_str();
  app.add_option("--latent", opt.latent, "latent dimensions (VAE family)")->capture_default_str();
  app.add_option("--style", opt.style, "ML-VAE style dimensions")->capture_default_str();
  app.add_option("--content", opt.content, "ML-VAE content dimensions")->capture_default_str();
  app.add_option("--beta", opt.beta,
                 "beta-VAE: weight on the KL (default 4); beta-TCVAE: on the TC (default 6); HFVAE: on the TC "
                 "between blocks (default 6)");
  app.add_option("--alpha", opt.alpha, "weight on the index-code mutual information")->capture_default_str();
  app.add_option("--gamma", opt.gamma, "HFVAE: weight on the TC within blocks (default 3)");
  app.add_option("--delta", opt.delta, "weight on the dimension-wise KL")->capture_default_str();
  app.add_option("--blocks", opt.blocks, "HFVAE latent block sizes, comma-separated (sum = --latent)")
      ->capture_default_str();
  app.add_option("--estimator", opt.estimator, "log q(z) estimator: mws (minibatch weighted) | mss (stratified)")
      ->check(CLI::IsMember({"mws", "mss"}))
      ->capture_default_str();
  app.add_option("--steps", opt.steps, "optimiser steps")->capture_default_str();
  app.add_option("--epochs", opt.epochs, "epochs of the 737 280 images (overrides --steps when > 0)");
  app.add_option("--batch", opt.batch, "images per step")->capture_default_str();
  app.add_option("--lr", opt.learning_rate, "Adam learning rate")->capture_default_str();
  app.add_option("--threads", opt.threads, "threads (0: all cores)")->capture_default_str();
  app.add_option("--seed", opt.seed, "seed of initialisation, data and noise")->capture_default_str();
  app.add_option("--out", opt.out_dir, "output directory")->capture_default_str();
  app.add_option("--grouping", opt.grouping,
                 "ML-VAE groups: shape | shape-scale (shared factors) | paired (pairs differing in --k factors)")
      ->check(CLI::IsMember({"shape", "shape-scale", "paired"}))
      ->capture_default_str();
  app.add_option("--group-size", opt.group_size, "ML-VAE images per group (shape, shape-scale)")->capture_default_str();
  app.add_option("--k", opt.k, "paired: number of factors that differ (0: random 1..4)")->capture_default_str();
  app.add_option("--log-every", opt.log_every, "steps between progress lines")->capture_default_str();
  app.add_option("--bvae-points", opt.bvae_points, "beta-VAE score training points (evaluation: half)")
      ->capture_default_str();
  app.add_option("--fvae-votes", opt.fvae_votes, "FactorVAE score training votes (evaluation: half)")
      ->capture_default_str();
  app.add_option("--sample-points", opt.sample_points, "MIG/DCI/SAP training sample (test: half)")
      ->capture_default_str();
  app.add_option("--traversals", opt.traversals, "latent traversal grids to write")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    mlvae::require<mlvae::ArgumentError>(opt.batch >= 2 && opt.steps >= 1 && opt.log_every >= 1,
                                         "--batch must be >= 2, --steps and --log-every >= 1");
    if (opt.model == "mlvae") {
      mlvae::require<mlvae::ArgumentError>(opt.grouping == "paired" || opt.batch % opt.group_size == 0,
                                           "--batch (", opt.batch, ") must be a multiple of --group-size (",
                                           opt.group_size, ")");
      if (opt.arch == "mlp") return run(opt, mlvae::make_chen_mlp_mlvae<float>(opt.style, opt.content, opt.hidden));
      return run(opt, mlvae::make_conv64_mlvae<float>(opt.style, opt.content));
    }
    auto configure = [&](auto&& model) {
      const double dataset = static_cast<double>(mlvae::DSprites::size());
      const auto estimator = opt.estimator == "mws" ? mlvae::MarginalEstimator::MinibatchWeighted
                                                    : mlvae::MarginalEstimator::MinibatchStratified;
      if (opt.model == "beta-vae") {
        model.set_kl_weight(static_cast<float>(opt.beta >= 0 ? opt.beta : 4.0));
      } else if (opt.model == "beta-tcvae") {
        mlvae::KLDecompositionOptions o;
        o.weights = {opt.alpha, opt.beta >= 0 ? opt.beta : 6.0, 1.0, opt.delta};
        o.dataset_size = dataset;
        o.estimator = estimator;
        model.set_kl_decomposition(o);
      } else if (opt.model == "hfvae") {
        mlvae::KLDecompositionOptions o;
        o.weights = {opt.alpha, opt.beta >= 0 ? opt.beta : 6.0, opt.gamma >= 0 ? opt.gamma : 3.0, opt.delta};
        o.block_sizes = parse_blocks(opt.blocks);
        o.dataset_size = dataset;
        o.estimator = estimator;
        model.set_kl_decomposition(o);
      }
      return run(opt, model);
    };
    if (opt.arch == "mlp") {
      auto model = mlvae::make_chen_mlp_vae<float>(opt.latent, opt.hidden);
      return configure(model);
    }
    auto model = mlvae::make_conv64_vae<float>(opt.latent);
    return configure(model);
  } catch (const std::exception& e) {
    std::cerr << "disentangle: " << e.what() << "\n";
    return 1;
  }
}
