// train_mlvae — trains an ML-VAE on grouped data: Fashion-MNIST grouped by class by default (the
// paper's MNIST setup: MLP 784-500-tanh, content 10 + style 10, decoder 20-500-784, Adam 1e-3), or
// your own observations from a .npy, CSV or IDX file with group keys from a file or a column.
// Shows progress (a live bar on a terminal), prints one line per epoch, writes train_log.csv and,
// for image data, a content/style swap grid and reconstructions; draws training_curves.png with
// matplotlib when /usr/bin/python3 has it. Writes a training checkpoint (atomically) at the end of
// every epoch and, with --checkpoint-every N, every N optimiser steps; --resume PATH continues a run
// exactly where its checkpoint left it (conflicting options are errors, see --help).
// Built with MLVAE_ENABLE_MPI it also runs under `mpirun -np N`: each minibatch's groups are split
// across the ranks (mlvae/mpi/data_parallel.hpp); rank 0 prints, evaluates and writes every file.
#include "device_backend.hpp"
#include "example_support.hpp"

#ifdef MLVAE_WITH_MPI
#include "mlvae/mpi/data_parallel.hpp"
#endif

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using example::Index;
using example::T;

struct Options : example::ModelOptions {  // sizes, likelihood, Adam rate, sampler shape
  int epochs = 10;
  Index max_group_size = 0;  // 0: fixed size
  std::uint64_t seed = 1;
  int threads = 0;
  example::DataOptions data;
  std::string out_dir = "out/train_mlvae";
  bool quiet = false;
  bool verbose = false;  // print the kernel of each matrix product after the first step
  std::string arch = "mlp";
  long long checkpoint_every = 0;  // steps; 0: only at the end of each epoch
  std::string checkpoint;          // default <out>/checkpoint.bin (or .json)
  std::string checkpoint_format = "binary";
  std::string resume;
  std::string on_divergence = "throw";
  std::string python = "/usr/bin/python3";
  std::string device = "cpu";      // cpu | cuda | cuda:N (examples/device_backend.hpp)
  std::string precision = "float32";  // float32 | bf16 (mlvae/nn/gemm_bf16.hpp)
  long long stop_after_steps = 0;  // 0: run to --epochs
  Index shards = 0;                // --deterministic-shards; 0: plain step / MPI_Allreduce
  double mpi_timeout = 300;        // seconds a collective may take before the rank gives up
  std::map<std::string, bool> given;  // options named on the command line
};

/// Thrown by the step callback to end a run early (--stop-after-steps); the checkpoint is written first.
struct StopRequested {};

/// The processes of this run: one, or the ranks of an MPI job (built with MLVAE_ENABLE_MPI and
/// started by mpirun). Every rank trains on its share of each batch; rank 0 prints, evaluates and
/// writes the files; checkpoints (written by rank 0) resume on any rank count or on one process.
struct Job {
  int rank = 0, size = 1;
#ifdef MLVAE_WITH_MPI
  std::unique_ptr<mlvae::mpi::Communicator> comm;  // set when size > 1
#endif
  bool root() const { return rank == 0; }

  /// Resumes `trainer` from `path` (MPI: rank 0 reads it and broadcasts the state).
  template <typename M>
  void load(const std::string& path, mlvae::Trainer<M>& trainer) {
#ifdef MLVAE_WITH_MPI
    if (comm) return mlvae::mpi::load_checkpoint(*comm, path, trainer);
#endif
    mlvae::load_checkpoint(path, trainer);
  }
  /// Writes the checkpoint (MPI: rank 0 writes, every rank learns of a failure).
  template <typename M>
  void save(const std::string& path, mlvae::Trainer<M>& trainer, mlvae::CheckpointFormat format) {
#ifdef MLVAE_WITH_MPI
    if (comm) return mlvae::mpi::save_checkpoint(*comm, path, trainer, format);
#endif
    mlvae::save_checkpoint(path, trainer, format);
  }
  /// How steps compute the gradient: MPI ranks split each batch (summed by MPI_Allreduce, or with
  /// --deterministic-shards S in a fixed order, bit-identical to one process with the same S);
  /// one process with S shards accumulates them in the same order (ShardedGradient).
  template <typename M>
  void distribute(mlvae::Trainer<M>& trainer, Index shards) {
#ifdef MLVAE_WITH_MPI
    if (comm) {
      mlvae::mpi::enable_data_parallel(
          *comm, trainer,
          {shards > 0 ? mlvae::mpi::Reduction::Ordered : mlvae::mpi::Reduction::Allreduce, shards});
      return;
    }
#endif
    if (shards > 0) trainer.set_gradient_strategy(std::make_shared<mlvae::ShardedGradient<M>>(shards));
  }
};

Job job;

const char* const log_header =
    "epoch,first_step,last_step,steps_per_epoch,train_elbo_per_group,train_reconstruction,train_style_kl,"
    "train_content_kl,test_elbo_per_group,test_elbo_per_image,test_reconstruction,test_style_kl,test_content_kl,"
    "images_per_s,seconds";

// A resumed run keeps the sampler, noise and Adam options of its checkpoint: an option named on
// the command line that differs from the stored value is an error, not silently ignored.
void check_resume_options(const Options& opt, const mlvae::TrainerOptions& stored) {
  auto conflict = [&](const char* name, auto mine, auto theirs) {
    if (opt.given.count(name) && opt.given.at(name) && mine != theirs)
      throw mlvae::ArgumentError(mlvae::detail::concat(
          name, " ", mine, " differs from the checkpoint's ", theirs, " ('", opt.resume,
          "'): a resumed run keeps the sampler, noise and Adam options of its checkpoint; omit ", name,
          " to continue it, or start a new run"));
  };
  conflict("--groups-per-batch", opt.groups_per_batch, stored.sampler.groups_per_batch);
  conflict("--group-size", opt.group_size, stored.sampler.min_group_size);
  conflict("--max-group-size", opt.max_group_size > 0 ? opt.max_group_size : opt.group_size,
           stored.sampler.max_group_size);
  conflict("--seed", opt.seed, stored.sampler.seed - 1);  // the sampler seed is --seed + 1
  conflict("--lr", opt.learning_rate, stored.adam.learning_rate);
}

template <typename Model>
int run(const Options& opt, example::LoadedData& data, Model&& model) {
  using M = std::decay_t<Model>;
  namespace fs = std::filesystem;
  const int threads = mlvae::set_threads(opt.threads);
  if (job.root()) fs::create_directories(opt.out_dir);
  const auto& train = data.train;
  const auto& test = data.test;
  std::cout << "train_mlvae: " << data.description << "; " << threads << " thread(s); precision " << opt.precision;
  if (job.size > 1)
    std::cout << " per rank x " << job.size << " MPI ranks (each batch's groups split across them; "
              << (opt.shards > 0 ? "ordered reduction of " + std::to_string(opt.shards) + " shards" : std::string("MPI_Allreduce"))
              << "; images/s of the whole job)";
  else if (opt.shards > 0)
    std::cout << "; gradient of " << opt.shards << " ordered shards";
  std::cout << "\n";
  mlvae::require<mlvae::ShapeError>(train.x.rows() == model.data_size(), "the model expects ", model.data_size(),
                                    " features, the data have ", train.x.rows());
  if (opt.precision == "bf16") {
    mlvae::require<mlvae::ArgumentError>(opt.device == "cpu", "--precision bf16 runs on the CPU's AMX units; ",
                                         "--device ", opt.device, " is not supported with it");
    model.set_precision(mlvae::Precision::BFloat16);  // ArgumentError naming what the CPU lacks
  }
  mlvae::Rng init(opt.seed);
  model.initialize(init);
  std::cout << model.describe() << "\n  " << model.parameters().size() << " parameters\n";

  mlvae::TrainerOptions topt;
  topt.adam.learning_rate = opt.learning_rate;
  topt.sampler = {opt.groups_per_batch, opt.group_size, opt.max_group_size > 0 ? opt.max_group_size : opt.group_size,
                  opt.seed + 1};
  topt.noise_seed = opt.seed + 2;
  if (!opt.resume.empty()) {
    topt = mlvae::read_checkpoint_options(opt.resume);
    check_resume_options(opt, topt);
  }
  topt.on_divergence =
      opt.on_divergence == "skip" ? mlvae::DivergencePolicy::SkipStep : mlvae::DivergencePolicy::Throw;
  mlvae::Trainer<M> trainer(model, train.x, train.keys, topt);
  // The test ELBO uses the training group size (the checkpoint's when resuming).
  const Index eval_group_size = topt.sampler.min_group_size;

  const auto format = opt.checkpoint_format == "json" ? mlvae::CheckpointFormat::Json : mlvae::CheckpointFormat::Binary;
  const std::string checkpoint_path =
      !opt.checkpoint.empty() ? opt.checkpoint
                              : opt.out_dir + (format == mlvae::CheckpointFormat::Json ? "/checkpoint.json"
                                                                                       : "/checkpoint.bin");
  int first_epoch = 1;
  bool continue_current = false;
  if (!opt.resume.empty()) {
    job.load(opt.resume, trainer);
    continue_current = trainer.epoch_in_progress();
    const auto started = static_cast<int>(trainer.sampler().epoch());
    const int completed = continue_current ? started - 1 : started;
    first_epoch = completed + 1;
    std::cout << "resumed from " << opt.resume << ": " << trainer.optimizer().step_count() << " steps done, "
              << completed << " epoch(s) completed; sampler, noise and Adam options from the checkpoint ("
              << topt.sampler.groups_per_batch << " groups of " << topt.sampler.min_group_size
              << (topt.sampler.max_group_size != topt.sampler.min_group_size
                      ? ".." + std::to_string(topt.sampler.max_group_size)
                      : std::string())
              << " per batch, lr " << topt.adam.learning_rate << "); " << threads
              << " thread(s) (results do not depend on the thread count)\n";
    if (opt.verbose) {  // the kernels the checkpoint was written with (this run prints its own after a step)
      const std::string kernels = mlvae::read_checkpoint_info(opt.resume).gemm_kernels;
      std::cout << "  the checkpoint's GEMM kernels: "
                << (kernels.empty() ? std::string("not recorded (an older checkpoint)\n") : "\n" + kernels);
    }
    mlvae::require<mlvae::ArgumentError>(opt.epochs >= first_epoch || (!continue_current && opt.epochs == completed),
                                         "--epochs ", opt.epochs, " is below the ",
                                         continue_current ? started : completed, " epoch(s) the checkpoint '",
                                         opt.resume, "' has ", continue_current ? "started" : "completed",
                                         "; --epochs counts all epochs of the run, so ask for more to continue");
    if (continue_current)
      std::cout << "  continuing epoch " << first_epoch << " at step " << trainer.step_in_epoch() + 1 << " of "
                << trainer.sampler().batches_per_epoch()
                << "; that epoch's train numbers average the remaining steps only (marked in the log)\n";
    else if (opt.epochs == completed)
      std::cout << "  nothing to train: the checkpoint has completed all " << completed
                << " epoch(s) of --epochs; writing the outputs of the stored model\n";
  }
  // --device cuda: the trainer's steps run on the GPU; it keeps sampler, noise and counters, and
  // checkpoints copy parameters and Adam state back; evaluation runs on the CPU model after that.
  const mlvae_examples::DeviceChoice device = mlvae_examples::parse_device(opt.device);
  mlvae::require(!device.cuda || job.size == 1, "train_mlvae: --device ", opt.device, " under mpirun (", job.size,
                 " ranks) is not supported: the device steps do not go through the MPI gradient reduction; run one "
                 "process per GPU without mpirun, or train on the CPU under mpirun");
  mlvae_examples::open_device(device, trainer);
  if (device.cuda) std::cout << "training on " << trainer.device() << " (the device layer; evaluation on the CPU)\n";
  const auto save = [&] { job.save(checkpoint_path, trainer, format); };

  job.distribute(trainer, opt.shards);

  // The log: a new run starts it; a resumed run appends, and starts it (with its header) in a new --out.
  // Rank 0 alone writes it (the other ranks' stream stays closed and ignores writes).
  const std::string log_path = opt.out_dir + "/train_log.csv";
  bool write_header = opt.resume.empty();
  if (!opt.resume.empty() && job.root()) {
    std::ifstream existing(log_path);
    std::string first_line;
    if (!existing || !std::getline(existing, first_line) || first_line.empty()) {
      write_header = true;
      std::cout << "  " << log_path << " is new: it starts at epoch " << first_epoch << "\n";
    } else {
      mlvae::require<mlvae::ArgumentError>(first_line == log_header, "'", log_path,
                                           "' has other columns than this train_mlvae writes (an older version?); "
                                           "move it away or resume into a new --out");
    }
  }
  std::ofstream log;
  if (job.root()) {
    log.open(log_path, write_header ? std::ios::trunc : std::ios::app);
    mlvae::require<mlvae::IoError>(static_cast<bool>(log), "cannot write '", log_path, "'");
    if (write_header) log << log_header << '\n';
  }

  const long long steps_per_epoch = trainer.sampler().batches_per_epoch();
  const long long total_steps = std::max<long long>(
      0, (opt.epochs - first_epoch + 1) * steps_per_epoch - (continue_current ? trainer.step_in_epoch() : 0));
  example::Progress progress(total_steps, opt.quiet);
  long long steps_this_run = 0;
  bool kernels_printed = !opt.verbose;
  for (int epoch = first_epoch; epoch <= opt.epochs; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    const bool partial = epoch == first_epoch && continue_current;
    const long long first_step = partial ? trainer.step_in_epoch() + 1 : 1;
    const std::string label = "epoch " + std::to_string(epoch) + "/" + std::to_string(opt.epochs);
    const auto on_step = [&](const mlvae::StepReport& r) {
      if (opt.checkpoint_every > 0 && !r.skipped && r.global_step % opt.checkpoint_every == 0) save();
      progress.step(r, label);
      if (!kernels_printed) {  // the products' kernels are chosen (measured or cached) in the first step
        kernels_printed = true;
        progress.clear_line();
        for (const std::string& line : mlvae::gemm_kernel_report()) std::cout << "  " << line << '\n';
      }
      if (opt.stop_after_steps > 0 && ++steps_this_run == opt.stop_after_steps) {
        save();
        throw StopRequested{};
      }
    };
    mlvae::LossTerms tr;
    try {
      tr = partial ? trainer.continue_epoch(on_step) : trainer.run_epoch(on_step);
    } catch (const StopRequested&) {
      progress.clear_line();
      std::cout << "stopped after " << steps_this_run << " step(s) (--stop-after-steps), in epoch " << epoch
                << " at step " << trainer.step_in_epoch() << " of " << steps_per_epoch << "; wrote " << checkpoint_path
                << " (continue with --resume " << checkpoint_path << ")\n";
      return 0;
    }
    save();  // atomically; refuses non-finite state
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!job.root()) continue;  // rank 0 evaluates and reports; the others go on to the next epoch
    const mlvae::LossTerms te =
        mlvae::evaluate_dataset(model, test.x, test.keys, eval_group_size, topt.sampler.groups_per_batch);
    const double images_per_s = static_cast<double>(tr.images) / seconds;
    const long long last_step = trainer.step_in_epoch();
    progress.clear_line();
    std::printf("epoch %3d/%d  train elbo/group %9.2f (rec %9.2f  kl style %7.2f  kl content %6.2f)  "
                "test elbo/group %9.2f  elbo/image %8.2f  %7.0f img/s  left %s%s\n",
                epoch, opt.epochs, tr.elbo_per_group, tr.reconstruction, tr.style_kl, tr.content_kl,
                te.elbo_per_group, te.elbo_per_image, images_per_s,
                example::format_duration(progress.seconds_left()).c_str(),
                partial ? mlvae::detail::concat("  [train: steps ", first_step, "-", last_step,
                                                " only, resumed mid-epoch]").c_str()
                        : "");
    if (trainer.skipped_steps() > 0)
      std::printf("  %lld step(s) skipped so far (non-finite loss or gradient)\n", trainer.skipped_steps());
    std::fflush(stdout);
    log << epoch << ',' << first_step << ',' << last_step << ',' << steps_per_epoch << ',' << tr.elbo_per_group << ','
        << tr.reconstruction << ',' << tr.style_kl << ',' << tr.content_kl << ',' << te.elbo_per_group << ','
        << te.elbo_per_image << ',' << te.reconstruction << ',' << te.style_kl << ',' << te.content_kl << ','
        << images_per_s << ',' << seconds << '\n';
    log.flush();
  }

  if (!job.root()) return 0;  // the figures are rank 0's (every rank holds the same model)
  if (test.is_image()) {
    // Swap grid: rows take the style of one test image each, columns the content of one test
    // group (up to 16 images of one key); header row/column show the sources.
    mlvae::Matrix<T> groups_x, style_x;
    std::vector<Index> offsets;
    example::key_groups(test, 16, 10, groups_x, offsets);
    mlvae::gather_columns(test.x, example::spread_indices(test.size(), 10), style_x);
    const auto grid = mlvae::swap_grid(model, style_x, groups_x, offsets);
    const std::string swap_path = opt.out_dir + "/swap_grid.png";
    mlvae::write_image_grid(swap_path, grid, test.height, test.width, style_x.cols() + 1,
                            static_cast<Index>(offsets.size()), 2, 2);
    // Reconstructions: for each group, up to 8 originals (odd rows) over their reconstructions.
    const auto recon = mlvae::reconstruct(model, groups_x, offsets);
    const Index rows = static_cast<Index>(offsets.size()) - 1;
    Index per_row = 8;
    for (Index g = 0; g < rows; ++g) per_row = std::min(per_row, offsets[g + 1] - offsets[g]);
    mlvae::Matrix<T> pairs(groups_x.rows(), 2 * rows * per_row);
    for (Index g = 0; g < rows; ++g)
      for (Index k = 0; k < per_row; ++k) {
        pairs.col((2 * g) * per_row + k) = groups_x.col(offsets[static_cast<std::size_t>(g)] + k);
        pairs.col((2 * g + 1) * per_row + k) = recon.col(offsets[static_cast<std::size_t>(g)] + k);
      }
    const std::string recon_path = opt.out_dir + "/reconstructions.png";
    mlvae::write_image_grid(recon_path, pairs, test.height, test.width, 2 * rows, per_row, 2, 2);
    std::cout << "wrote " << swap_path << " (rows: style of one test image; columns: content of one test group), "
              << recon_path << " (originals above reconstructions) and " << log_path << "\n";
  } else {
    std::cout << "wrote " << log_path << " (no image grids: the observations are not images; pass --image-shape HxW "
              << "if they are)\n";
  }
  if (example::run_plot_script(opt.python, "plot_training.py",
                               "'" + log_path + "' '" + opt.out_dir + "/training_curves.png'"))
    std::cout << "wrote " << opt.out_dir << "/training_curves.png\n";
  return 0;
}

template <typename Likelihood>
int run_mlp(const Options& opt, example::LoadedData& data, Likelihood likelihood) {
  example::check_likelihood<Likelihood>(data);
  const Index d = data.train.x.rows();
  if (opt.layers == 2)
    return run(opt, data, mlvae::make_mlp2_mlvae<T>(d, opt.hidden, opt.style, opt.content, likelihood));
  return run(opt, data, mlvae::make_mlp_mlvae_with<T>(d, opt.hidden, opt.style, opt.content, likelihood));
}

int dispatch(const Options& opt) {
  mlvae_examples::check_device(mlvae_examples::parse_device(opt.device));  // "no CUDA device found" before any work
  // The train/test split of a single file depends on the run's seed: a resumed run takes it from
  // the checkpoint (its sampler seed is --seed + 1), so it trains on the same observations.
  std::uint64_t seed = opt.seed;
  if (!opt.resume.empty()) seed = mlvae::read_checkpoint_options(opt.resume).sampler.seed - 1;
  example::LoadedData data = example::load_data(opt.data, seed + 3);
  const std::string lik = example::choose_likelihood(opt.likelihood, data.train);
  if (opt.arch != "mlp") {
    mlvae::require<mlvae::ArgumentError>(lik == "bernoulli" && data.train.height == 28 && data.train.width == 28,
                                         "--arch ", opt.arch, " needs 28x28 images with a Bernoulli likelihood; the "
                                         "data are ", data.description, " with likelihood ", lik);
    example::check_likelihood<mlvae::BernoulliLikelihood<T>>(data);
    if (opt.arch == "conv28") return run(opt, data, mlvae::make_conv28_mlvae<T>(opt.style, opt.content));
    for (auto* split : {&data.train, &data.test}) {  // the 64x64 architecture: images upscaled bilinearly
      split->x = mlvae::resize_images(split->x, split->height, split->width, 64, 64);
      split->height = split->width = 64;
    }
    return run(opt, data, mlvae::make_conv64_mlvae<T>(opt.style, opt.content));
  }
  if (lik == "bernoulli") return run_mlp(opt, data, mlvae::BernoulliLikelihood<T>{});
  if (lik == "gaussian") return run_mlp(opt, data, mlvae::GaussianLikelihood<T>(static_cast<T>(opt.variance)));
  return run_mlp(opt, data, mlvae::GaussianLearnedVarianceLikelihood<T>{});
}

}  // namespace

int main(int argc, char** argv) {
#ifdef MLVAE_WITH_MPI
  mlvae::mpi::Environment mpi(argc, argv);  // a plain start (no mpirun) is a job of one rank
  MPI_Comm_rank(MPI_COMM_WORLD, &job.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &job.size);
  if (!job.root() && !std::freopen("/dev/null", "w", stdout)) return 1;  // progress from rank 0 only
#endif
  Options opt;
  CLI::App app{"Train an ML-VAE on grouped data (default: Fashion-MNIST grouped by class, or your own .npy / CSV / "
               "IDX file); writes train_log.csv, checkpoints and, for images, a swap grid and reconstructions."};
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // a later option wins
  app.add_option("--epochs", opt.epochs, "training epochs (of the whole run, when resuming)")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--groups-per-batch", opt.groups_per_batch, "groups in each minibatch")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--group-size", opt.group_size, "observations per group (minimum when --max-group-size is set)")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--max-group-size", opt.max_group_size, "draw each group's size uniformly in [group-size, this]")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--seed", opt.seed, "seed of initialisation, split, batches and noise")->capture_default_str();
  app.add_option("--threads", opt.threads, "threads (0: OMP_NUM_THREADS or all cores); results do not depend on it")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--lr", opt.learning_rate, "Adam learning rate")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--precision", opt.precision,
                 "arithmetic of the matrix products: float32, or bf16 (operands rounded to bfloat16, float32 sums, "
                 "on Intel AMX; parameters and Adam stay float32)")
      ->check(CLI::IsMember({"float32", "bf16"}))
      ->capture_default_str();
  app.add_option("--arch", opt.arch,
                 "model: mlp (tanh MLP, sizes from --hidden/--layers/--style/--content), conv28 (conv encoder, "
                 "transposed-conv decoder, 28x28 images) or conv64 (the 64x64 conv architecture, on 28x28 images "
                 "upscaled to 64x64)")
      ->check(CLI::IsMember({"mlp", "conv28", "conv64"}))
      ->capture_default_str();
  example::add_model_options(app, opt, " (mlp)");
  opt.data.add_to(app);
  app.add_option("--out", opt.out_dir, "output directory")->capture_default_str();
  app.add_flag("--quiet", opt.quiet, "no per-step progress");
  app.add_flag("--verbose", opt.verbose,
               "after the first step, print the kernel that runs each matrix product (Eigen, OpenBLAS or BLIS, "
               "chosen by measurement; MLVAE_GEMM_KERNEL overrides)");
  app.add_option("--checkpoint-every", opt.checkpoint_every,
                 "also write the checkpoint every N optimiser steps (0: only at the end of each epoch)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--checkpoint", opt.checkpoint,
                 "checkpoint file, written atomically (default: <out>/checkpoint.bin or .json)");
  app.add_option("--checkpoint-format", opt.checkpoint_format, "checkpoint archive format")
      ->check(CLI::IsMember({"binary", "json"}))->capture_default_str();
  app.add_option("--resume", opt.resume,
                 "continue the run saved in this checkpoint up to --epochs epochs in total. Sampler, noise and Adam "
                 "options come from the checkpoint (--group-size, --groups-per-batch, --max-group-size, --seed or "
                 "--lr that differ are errors; a single --data file is split as in the first run); model options "
                 "must match (checked) and so must the data options (only the number of training observations is "
                 "checked); --threads may differ (results do not depend on it)")
      ->check(CLI::ExistingFile);
  app.add_option("--on-divergence", opt.on_divergence,
                 "on a non-finite loss or gradient: stop with an error, or skip the step and count it")
      ->check(CLI::IsMember({"throw", "skip"}))->capture_default_str();
  app.add_option("--stop-after-steps", opt.stop_after_steps,
                 "stop after N optimiser steps of this invocation and write the checkpoint (for time-limited jobs; "
                 "continue with --resume)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--deterministic-shards", opt.shards,
                 "compute each batch's gradient as S shards of whole groups summed in a fixed order: bit-identical "
                 "results on any number of MPI ranks and on one process with the same S (0: one plain step, or "
                 "MPI_Allreduce under mpirun)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--mpi-timeout", opt.mpi_timeout,
                 "under mpirun: seconds a collective may wait (for a dead, stuck or much slower rank) before this "
                 "rank ends the job (0: wait forever)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--python", opt.python, "Python with matplotlib for the figures ('none': CSV only)")
      ->capture_default_str();
  example::add_device_option(app, opt.device, "the model");
  CLI11_PARSE(app, argc, argv);
  for (const char* name : {"--groups-per-batch", "--group-size", "--max-group-size", "--seed", "--lr"})
    opt.given[name] = app.count(name) > 0;
  if (opt.max_group_size > 0 && opt.max_group_size < opt.group_size) {
    std::cerr << "--max-group-size (" << opt.max_group_size << ") must be >= --group-size (" << opt.group_size
              << ")\n";
    return 2;
  }
  try {
#ifdef MLVAE_WITH_MPI
    if (job.size > 1) job.comm = std::make_unique<mlvae::mpi::Communicator>(MPI_COMM_WORLD, opt.mpi_timeout);
#endif
    const int status = dispatch(opt);
#ifdef MLVAE_WITH_MPI
    job.comm.reset();
#endif
    return status;
  } catch (const std::exception& e) {
    std::cerr << "train_mlvae" << (job.size > 1 ? " rank " + std::to_string(job.rank) + "/" + std::to_string(job.size) : "")
              << ": " << e.what() << "\n";
#ifdef MLVAE_WITH_MPI
    if (job.size > 1) MPI_Abort(MPI_COMM_WORLD, 1);  // the other ranks must not wait in a collective
#endif
    return 1;
  }
}
