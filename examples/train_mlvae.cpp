// train_mlvae — trains an ML-VAE on Fashion-MNIST grouped by class (the paper's MNIST setup:
// MLP 784-500-tanh, content 10 + style 10, decoder 20-500-784, Adam 1e-3), prints one progress
// line per epoch, and writes a content/style swap grid, reconstructions and a CSV training log.
// Writes a training checkpoint (atomically) at the end of every epoch and, with --checkpoint-every N,
// every N optimiser steps; --resume PATH continues a run exactly where its checkpoint left it.
#include <mlvae/mlvae.hpp>

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <type_traits>
#include <vector>

namespace {

struct Options {
  int epochs = 10;
  mlvae::Index groups_per_batch = 16;
  mlvae::Index group_size = 16;
  mlvae::Index max_group_size = 0;  // 0: fixed size
  std::uint64_t seed = 1;
  int threads = 0;
  double learning_rate = 1e-3;
  mlvae::Index hidden = 500, style = 10, content = 10;
  std::size_t train_limit = mlvae::idx_all_items;
  std::string data_dir = mlvae::fashion_mnist_default_dir();
  std::string out_dir = "out/train_mlvae";
  bool quiet = false;
  std::string arch = "mlp";
  long long checkpoint_every = 0;  // steps; 0: only at the end of each epoch
  std::string checkpoint;          // default <out>/checkpoint.bin (or .json)
  std::string checkpoint_format = "binary";
  std::string resume;
  std::string on_divergence = "throw";
};

// Picks `per_group` test images of each class (first occurrences), as consecutive groups.
template <typename T>
void class_groups(const mlvae::LabelledImages<T>& data, mlvae::Index per_group, mlvae::Matrix<T>& x,
                  std::vector<mlvae::Index>& offsets) {
  std::vector<std::vector<mlvae::Index>> members(10);
  for (std::size_t i = 0; i < data.labels.size(); ++i) {
    auto& m = members[static_cast<std::size_t>(data.labels[i])];
    if (static_cast<mlvae::Index>(m.size()) < per_group) m.push_back(static_cast<mlvae::Index>(i));
  }
  std::vector<mlvae::Index> indices;
  offsets.assign(1, 0);
  for (const auto& m : members) {
    if (m.empty()) continue;
    indices.insert(indices.end(), m.begin(), m.end());
    offsets.push_back(static_cast<mlvae::Index>(indices.size()));
  }
  mlvae::gather_columns(data.images, indices, x);
}

std::string format_duration(double seconds) {
  const long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  return buf;
}

template <typename Model>
int run(const Options& opt, Model&& model) {
  using T = typename std::decay_t<Model>::Scalar;
  namespace fs = std::filesystem;
  const int threads = mlvae::set_threads(opt.threads);
  fs::create_directories(opt.out_dir);

  auto train = mlvae::load_fashion_mnist<T>("train", opt.data_dir, opt.train_limit);
  auto test = mlvae::load_fashion_mnist<T>("test", opt.data_dir);
  if (model.data_size() == 64 * 64 && train.images.rows() == 28 * 28) {
    // The 64×64 architecture: Fashion-MNIST upscaled bilinearly to 64×64.
    for (auto* split : {&train, &test}) {
      split->images = mlvae::resize_images(split->images, split->height, split->width, 64, 64);
      split->height = split->width = 64;
    }
  }
  std::cout << "train_mlvae: " << train.size() << " training and " << test.size()
            << " test images from " << opt.data_dir << ", " << threads << " thread(s)\n";

  mlvae::require<mlvae::ShapeError>(train.images.rows() == model.data_size(), "--arch ", opt.arch, " expects images of ",
                                    model.data_size(), " pixels, the data have ", train.images.rows());
  mlvae::Rng init(opt.seed);
  model.initialize(init);
  std::cout << model.describe() << "\n  " << model.parameters().size() << " parameters\n";

  mlvae::TrainerOptions topt;
  topt.adam.learning_rate = opt.learning_rate;
  topt.sampler = {opt.groups_per_batch, opt.group_size, opt.max_group_size > 0 ? opt.max_group_size : opt.group_size,
                  opt.seed + 1};
  topt.noise_seed = opt.seed + 2;
  // A resumed run takes the sampler, noise and Adam options from its checkpoint.
  if (!opt.resume.empty()) topt = mlvae::read_checkpoint_options(opt.resume);
  topt.on_divergence =
      opt.on_divergence == "skip" ? mlvae::DivergencePolicy::SkipStep : mlvae::DivergencePolicy::Throw;
  mlvae::Trainer<std::decay_t<Model>> trainer(model, train.images, train.labels, topt);

  const auto format = opt.checkpoint_format == "json" ? mlvae::CheckpointFormat::Json : mlvae::CheckpointFormat::Binary;
  const std::string checkpoint_path =
      !opt.checkpoint.empty() ? opt.checkpoint
                              : opt.out_dir + (format == mlvae::CheckpointFormat::Json ? "/checkpoint.json"
                                                                                       : "/checkpoint.bin");
  int first_epoch = 1;
  bool continue_current = false;
  if (!opt.resume.empty()) {
    mlvae::load_checkpoint(opt.resume, trainer);
    continue_current = trainer.epoch_in_progress();
    first_epoch = static_cast<int>(trainer.sampler().epoch()) + (continue_current ? 0 : 1);
    std::cout << "resumed from " << opt.resume << ": " << trainer.optimizer().step_count() << " steps done, "
              << (continue_current ? "continuing" : "starting") << " epoch " << first_epoch << " at step "
              << (continue_current ? trainer.step_in_epoch() + 1 : 1) << "\n";
  }

  std::ofstream log(opt.out_dir + "/train_log.csv", opt.resume.empty() ? std::ios::trunc : std::ios::app);
  if (opt.resume.empty())
    log << "epoch,train_elbo_per_group,train_reconstruction,train_style_kl,train_content_kl,test_elbo_per_group,"
           "test_elbo_per_image,test_reconstruction,test_style_kl,test_content_kl,images_per_s,seconds\n";

  const auto start = std::chrono::steady_clock::now();
  for (int epoch = first_epoch; epoch <= opt.epochs; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto on_step = [&](const mlvae::StepReport& r) {
      if (opt.checkpoint_every > 0 && !r.skipped && r.global_step % opt.checkpoint_every == 0)
        mlvae::save_checkpoint(checkpoint_path, trainer, format);
      if (opt.quiet || r.step_in_epoch % 50 != 0) return;
      const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::cout << "\r  epoch " << epoch << " step " << r.step_in_epoch << "/" << r.steps_per_epoch
                << "  elbo/group " << r.terms.elbo_per_group << "  "
                << static_cast<long>(static_cast<double>(r.step_in_epoch) * static_cast<double>(r.terms.images) / el)
                << " img/s   " << std::flush;
    };
    const mlvae::LossTerms tr =
        (epoch == first_epoch && continue_current) ? trainer.continue_epoch(on_step) : trainer.run_epoch(on_step);
    mlvae::save_checkpoint(checkpoint_path, trainer, format);  // atomically; refuses non-finite state
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const mlvae::LossTerms te = mlvae::evaluate_dataset(model, test.images, test.labels, opt.group_size);
    const double images_per_s = static_cast<double>(tr.images) / seconds;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double left = elapsed / (epoch - first_epoch + 1) * (opt.epochs - epoch);
    std::printf("\repoch %3d/%d  train elbo/group %9.2f (rec %9.2f  kl style %7.2f  kl content %6.2f)  "
                "test elbo/group %9.2f  elbo/image %8.2f  %7.0f img/s  left %s\n",
                epoch, opt.epochs, tr.elbo_per_group, tr.reconstruction, tr.style_kl, tr.content_kl,
                te.elbo_per_group, te.elbo_per_image, images_per_s, format_duration(left).c_str());
    if (trainer.skipped_steps() > 0)
      std::printf("  %lld step(s) skipped so far (non-finite loss or gradient)\n", trainer.skipped_steps());
    std::fflush(stdout);
    log << epoch << ',' << tr.elbo_per_group << ',' << tr.reconstruction << ',' << tr.style_kl << ','
        << tr.content_kl << ',' << te.elbo_per_group << ',' << te.elbo_per_image << ',' << te.reconstruction << ','
        << te.style_kl << ',' << te.content_kl << ',' << images_per_s << ',' << seconds << '\n';
    log.flush();
  }

  // Swap grid: rows take the style of one test image each, columns the content of one test
  // group (16 images of one class); header row/column show the sources.
  mlvae::Matrix<T> groups_x, style_x;
  std::vector<mlvae::Index> offsets;
  class_groups(test, 16, groups_x, offsets);
  std::vector<mlvae::Index> style_indices;
  for (mlvae::Index i = 0; i < 10; ++i) style_indices.push_back(1000 + 37 * i);
  mlvae::gather_columns(test.images, style_indices, style_x);
  const auto grid = mlvae::swap_grid(model, style_x, groups_x, offsets);
  const std::string swap_path = opt.out_dir + "/swap_grid.png";
  mlvae::write_image_grid(swap_path, grid, test.height, test.width, style_x.cols() + 1,
                          static_cast<mlvae::Index>(offsets.size()), 2, 2);

  // Reconstructions: for each of the 10 class groups, 8 originals (odd rows) over their
  // reconstructions (even rows).
  const auto recon = mlvae::reconstruct(model, groups_x, offsets);
  const mlvae::Index per_row = 8, rows = static_cast<mlvae::Index>(offsets.size()) - 1;
  mlvae::Matrix<T> pairs(groups_x.rows(), 2 * rows * per_row);
  for (mlvae::Index g = 0; g < rows; ++g)
    for (mlvae::Index k = 0; k < per_row; ++k) {
      pairs.col((2 * g) * per_row + k) = groups_x.col(offsets[static_cast<std::size_t>(g)] + k);
      pairs.col((2 * g + 1) * per_row + k) = recon.col(offsets[static_cast<std::size_t>(g)] + k);
    }
  const std::string recon_path = opt.out_dir + "/reconstructions.png";
  mlvae::write_image_grid(recon_path, pairs, test.height, test.width, 2 * rows, per_row, 2, 2);
  std::cout << "wrote " << swap_path << " (rows: style of one test image; columns: content of one test class "
            << "group), " << recon_path << " (originals above reconstructions) and " << opt.out_dir
            << "/train_log.csv\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"Train an ML-VAE on Fashion-MNIST grouped by class; writes a swap grid and reconstructions."};
  app.add_option("--epochs", opt.epochs, "training epochs")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--groups-per-batch", opt.groups_per_batch, "groups in each minibatch")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--group-size", opt.group_size, "observations per group (minimum when --max-group-size is set)")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--max-group-size", opt.max_group_size, "draw each group's size uniformly in [group-size, this]")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--seed", opt.seed, "seed of initialisation, batches and noise")->capture_default_str();
  app.add_option("--threads", opt.threads, "threads (0: OMP_NUM_THREADS or all cores)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--lr", opt.learning_rate, "Adam learning rate")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--arch", opt.arch,
                 "model: mlp (the paper's 784-500-tanh MLP), conv28 (conv encoder, transposed-conv decoder) or "
                 "conv64 (the 64x64 conv architecture, on Fashion-MNIST upscaled to 64x64)")
      ->check(CLI::IsMember({"mlp", "conv28", "conv64"}))
      ->capture_default_str();
  app.add_option("--hidden", opt.hidden, "hidden units")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--style", opt.style, "style latent dimensions")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--content", opt.content, "content latent dimensions")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--train-limit", opt.train_limit, "use only the first N training images")
      ->check(CLI::PositiveNumber);
  app.add_option("--data", opt.data_dir, "directory with the Fashion-MNIST IDX files")->capture_default_str();
  app.add_option("--out", opt.out_dir, "output directory")->capture_default_str();
  app.add_flag("--quiet", opt.quiet, "no per-step progress");
  app.add_option("--checkpoint-every", opt.checkpoint_every,
                 "also write the checkpoint every N optimiser steps (0: only at the end of each epoch)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--checkpoint", opt.checkpoint,
                 "checkpoint file, written atomically (default: <out>/checkpoint.bin or .json)");
  app.add_option("--checkpoint-format", opt.checkpoint_format, "checkpoint archive format")
      ->check(CLI::IsMember({"binary", "json"}))->capture_default_str();
  app.add_option("--resume", opt.resume,
                 "continue the run saved in this checkpoint up to --epochs epochs in total (sampler, noise and "
                 "Adam options come from the checkpoint; model options and --threads must match)")
      ->check(CLI::ExistingFile);
  app.add_option("--on-divergence", opt.on_divergence,
                 "on a non-finite loss or gradient: stop with an error, or skip the step and count it")
      ->check(CLI::IsMember({"throw", "skip"}))->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (opt.max_group_size > 0 && opt.max_group_size < opt.group_size) {
    std::cerr << "--max-group-size (" << opt.max_group_size << ") must be >= --group-size (" << opt.group_size
              << ")\n";
    return 2;
  }
  try {
    if (opt.arch == "conv28") return run(opt, mlvae::make_conv28_mlvae<float>(opt.style, opt.content));
    if (opt.arch == "conv64") return run(opt, mlvae::make_conv64_mlvae<float>(opt.style, opt.content));
    return run(opt, mlvae::make_mlp_mlvae<float>(784, opt.hidden, opt.style, opt.content));
  } catch (const std::exception& e) {
    std::cerr << "train_mlvae: " << e.what() << "\n";
    return 1;
  }
}
