// train_semisupervised — trains the semi-supervised VAE of Siddharth et al. (NIPS 2017) or M2 (Kingma et al.
// 2014) on Fashion-MNIST with N labelled training images (balanced over the classes, chosen from --seed) and
// the others unlabelled. One progress line per epoch with the loss terms and the test classification error of
// q(y|x); writes results.csv, an analogy grid (rows: the style z inferred from one test image; columns: that
// style decoded with every class) and a training checkpoint (atomically) after every epoch; --resume continues
// a run exactly. docs/semisupervised.md derives the objective; docs/results.md has the measured numbers.
#include <mlvae/mlvae.hpp>

#include <CLI/CLI.hpp>

#include "device_backend.hpp"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

namespace {

struct Options {
  mlvae::Index labels = 100;
  double alpha = -1;  // < 0: the objective's default
  std::string model = "siddharth";
  std::string arch = "mlp";
  std::string unlabelled = "enumerate";
  double temperature = 0.66;
  int epochs = 10;
  int threads = 1;
  std::uint64_t seed = 1;
  std::string data_dir = mlvae::fashion_mnist_default_dir();
  std::string out_dir = "out/train_semisupervised";
  std::string device = "cpu";  // cpu | cuda | cuda:N (examples/device_backend.hpp): refused for this model
  mlvae::Index labelled_per_batch = 32;
  mlvae::Index unlabelled_per_batch = 96;
  mlvae::Index hidden = 256;
  mlvae::Index latent = 50;
  double learning_rate = 1e-3;
  mlvae::Index unlabelled_limit = 0;  // 0: every training image not in the labelled subset
  mlvae::Index validation = 0;        // training images held out (with labels) to choose settings on
  std::string checkpoint_format = "binary";
  std::string resume;
  bool quiet = false;
};

template <typename Model>
int run(const Options& opt, Model&& model) {
  using M = std::decay_t<Model>;
  using T = typename M::Scalar;
  namespace fs = std::filesystem;
  // The device step has no semi-supervised model yet: --device cuda is refused by name before any work,
  // never run on the CPU instead.
  if (mlvae_examples::parse_device(opt.device).cuda) mlvae::device::refuse_device(model, opt.device);
  const int threads = mlvae::set_threads(opt.threads);
  fs::create_directories(opt.out_dir);

  const auto train = mlvae::load_fashion_mnist<T>("train", opt.data_dir);
  const auto test = mlvae::load_fashion_mnist<T>("test", opt.data_dir);
  const int classes = static_cast<int>(model.classes());

  // The labelled subset (balanced, from the seed) and the unlabelled pool (the rest, optionally the first
  // --unlabelled-limit of a seeded permutation).
  const std::vector<mlvae::Index> labelled = mlvae::balanced_labelled_subset(train.labels, opt.labels, classes, opt.seed);
  std::vector<int> labels;
  for (mlvae::Index i : labelled) labels.push_back(train.labels[static_cast<std::size_t>(i)]);
  std::vector<char> is_labelled(static_cast<std::size_t>(train.size()), 0);
  for (mlvae::Index i : labelled) is_labelled[static_cast<std::size_t>(i)] = 1;
  std::vector<mlvae::Index> unlabelled;
  for (mlvae::Index i = 0; i < train.size(); ++i)
    if (!is_labelled[static_cast<std::size_t>(i)]) unlabelled.push_back(i);
  mlvae::Rng pick(opt.seed + 3);
  std::shuffle(unlabelled.begin(), unlabelled.end(), pick);
  mlvae::require<mlvae::ArgumentError>(opt.validation < static_cast<mlvae::Index>(unlabelled.size()),
                                       "--validation ", opt.validation, " leaves no unlabelled images");
  std::vector<mlvae::Index> held_out(unlabelled.end() - opt.validation, unlabelled.end());
  unlabelled.resize(unlabelled.size() - static_cast<std::size_t>(opt.validation));
  if (opt.unlabelled_limit > 0 && opt.unlabelled_limit < static_cast<mlvae::Index>(unlabelled.size()))
    unlabelled.resize(static_cast<std::size_t>(opt.unlabelled_limit));
  std::sort(unlabelled.begin(), unlabelled.end());
  mlvae::Matrix<T> validation_x;
  std::vector<int> validation_labels;
  mlvae::gather_columns(train.images, held_out, validation_x);
  for (mlvae::Index i : held_out) validation_labels.push_back(train.labels[static_cast<std::size_t>(i)]);

  std::cout << "train_semisupervised: " << labelled.size() << " labelled and " << unlabelled.size()
            << " unlabelled training images, " << test.size() << " test images from " << opt.data_dir << ", "
            << threads << " thread(s)\n"
            << model.describe() << "\n  " << model.parameters().size() << " parameters\n";

  // The floor: softmax regression on the pixels of the labelled images alone (eval/classifier.hpp defaults:
  // standardised pixels, L2 1e-4, 200 full-batch Adam epochs).
  mlvae::Matrix<T> labelled_x;
  mlvae::gather_columns(train.images, labelled, labelled_x);
  mlvae::SoftmaxRegression floor_classifier;
  floor_classifier.fit(labelled_x, labels, classes);
  const double floor_error = 1.0 - mlvae::accuracy(floor_classifier.predict(test.images), test.labels);
  std::printf("floor: softmax regression on the pixels of the %zu labelled images, test error %.2f%%\n",
              labelled.size(), 100 * floor_error);

  mlvae::Rng init(opt.seed);
  model.initialize(init);

  mlvae::SemiSupervisedTrainerOptions topt;
  topt.adam.learning_rate = opt.learning_rate;
  topt.sampler = {opt.labelled_per_batch, opt.unlabelled_per_batch, opt.seed + 1};
  topt.noise_seed = opt.seed + 2;
  if (!opt.resume.empty()) topt = mlvae::read_semisupervised_checkpoint_options(opt.resume);
  mlvae::SemiSupervisedTrainer<M> trainer(model, train.images, labelled, labels, unlabelled, topt);

  const auto format = opt.checkpoint_format == "json" ? mlvae::CheckpointFormat::Json : mlvae::CheckpointFormat::Binary;
  const std::string checkpoint_path =
      opt.out_dir + (format == mlvae::CheckpointFormat::Json ? "/checkpoint.json" : "/checkpoint.bin");
  int first_epoch = 1;
  bool continue_current = false;
  if (!opt.resume.empty()) {
    mlvae::load_semisupervised_checkpoint(opt.resume, trainer);
    continue_current = trainer.epoch_in_progress();
    first_epoch = static_cast<int>(trainer.sampler().epoch()) + (continue_current ? 0 : 1);
    std::cout << "resumed from " << opt.resume << ": " << trainer.optimizer().step_count() << " steps done, "
              << (continue_current ? "continuing" : "starting") << " epoch " << first_epoch << "\n";
  }

  std::ofstream csv(opt.out_dir + "/results.csv", opt.resume.empty() ? std::ios::trunc : std::ios::app);
  if (opt.resume.empty())
    csv << "model,arch,labels,alpha,unlabelled,seed,epoch,steps,loss,labelled_elbo,classifier_log_q,"
           "unlabelled_bound,entropy,reconstruction,kl_z,train_labelled_accuracy,validation_error,test_error,floor_test_error,seconds\n";

  double total_seconds = 0;
  for (int epoch = first_epoch; epoch <= opt.epochs; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto on_step = [&](const mlvae::SemiSupervisedStepReport& r) {
      if (opt.quiet || r.step_in_epoch % 50 != 0) return;
      std::cout << "\r  epoch " << epoch << " step " << r.step_in_epoch << "/" << r.steps_per_epoch << "  loss "
                << r.terms.loss << "   " << std::flush;
    };
    const mlvae::SemiSupervisedTerms tr =
        (epoch == first_epoch && continue_current) ? trainer.continue_epoch(on_step) : trainer.run_epoch(on_step);
    mlvae::save_semisupervised_checkpoint(checkpoint_path, trainer, format);
    const double test_error = mlvae::classification_error(model, test.images, test.labels);
    const double validation_error =
        opt.validation > 0 ? mlvae::classification_error(model, validation_x, validation_labels) : -1.0;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    total_seconds += seconds;
    // The validation error is printed only when --validation held images out (nothing is measured otherwise).
    char validation_text[48] = "";
    if (opt.validation > 0)
      std::snprintf(validation_text, sizeof validation_text, "  validation error %6.2f%%", 100 * validation_error);
    std::printf("\repoch %3d/%d  loss %8.2f  labelled: elbo %8.2f log q(y|x) %6.3f acc %5.3f  unlabelled: bound "
                "%8.2f H %5.3f  rec %8.2f kl_z %6.2f  test error %6.2f%%%s  %5.0f s\n",
                epoch, opt.epochs, tr.loss, tr.labelled_elbo, tr.classifier_log_q, tr.labelled_accuracy,
                tr.unlabelled_bound, tr.entropy, tr.reconstruction, tr.kl_z, 100 * test_error, validation_text,
                seconds);
    std::fflush(stdout);
    csv << opt.model << ',' << opt.arch << ',' << opt.labels << ',' << model.options().alpha << ',' << opt.unlabelled
        << ',' << opt.seed << ',' << epoch << ',' << trainer.optimizer().step_count() << ',' << tr.loss << ','
        << tr.labelled_elbo << ',' << tr.classifier_log_q << ',' << tr.unlabelled_bound << ',' << tr.entropy << ','
        << tr.reconstruction << ',' << tr.kl_z << ',' << tr.labelled_accuracy << ','
        << (opt.validation > 0 ? mlvae::detail::concat(validation_error) : std::string()) << ',' << test_error << ',' << floor_error << ',' << seconds
        << '\n';
    csv.flush();
  }

  // Analogy grid: row r takes the first test image of class r; column 0 shows it, column 1 + k decodes the
  // mean of q(z | x, ŷ) (ŷ = argmax q(y|x), the model's own inference) with class k.
  std::vector<mlvae::Index> rows;
  for (int c = 0; c < classes; ++c)
    for (std::size_t i = 0; i < test.labels.size(); ++i)
      if (test.labels[i] == c) {
        rows.push_back(static_cast<mlvae::Index>(i));
        break;
      }
  mlvae::Matrix<T> x, mean, logvar, decoded;
  mlvae::gather_columns(test.images, rows, x);
  const std::vector<int> predicted = model.predict(x);
  model.encode_style(x, predicted, mean, logvar);
  const mlvae::Index R = x.cols(), K = model.classes();
  mlvae::Matrix<T> grid(x.rows(), R * (K + 1)), z(mean.rows(), K);
  std::vector<int> each(static_cast<std::size_t>(K));
  std::iota(each.begin(), each.end(), 0);
  for (mlvae::Index r = 0; r < R; ++r) {
    for (mlvae::Index k = 0; k < K; ++k) z.col(k) = mean.col(r);
    model.decode_mean(each, z, decoded);
    grid.col(r * (K + 1)) = x.col(r);
    grid.middleCols(r * (K + 1) + 1, K) = decoded;
  }
  const std::string grid_path = opt.out_dir + "/analogy_grid.png";
  mlvae::write_image_grid(grid_path, grid, test.height, test.width, R, K + 1, 2, 2);
  std::cout << "wrote " << grid_path << " (rows: style of one test image, shown in column 0; columns 1..K: each "
            << "class), " << opt.out_dir << "/results.csv and " << checkpoint_path << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"Train the semi-supervised VAE of Siddharth et al. 2017 (or M2) on Fashion-MNIST with a few labels; "
               "reports the test error of q(y|x) and writes an analogy grid."};
  app.add_option("--labels", opt.labels, "labelled training images (balanced over the classes, chosen from --seed)")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--alpha", opt.alpha,
                 "weight of log q(y|x) per labelled example (default: 0.1 for siddharth; for m2 Kingma's 0.1*N "
                 "in per-example units, 0.1*batch/labelled-per-batch)");
  app.add_option("--model", opt.model, "objective: siddharth (Siddharth et al. 2017) or m2 (Kingma et al. 2014)")
      ->check(CLI::IsMember({"siddharth", "m2"}))->capture_default_str();
  app.add_option("--arch", opt.arch, "architecture: mlp (784-256-ReLU, the authors' MNIST example) or conv28")
      ->check(CLI::IsMember({"mlp", "conv28"}))->capture_default_str();
  app.add_option("--unlabelled", opt.unlabelled,
                 "estimator for unlabelled images: enumerate (exact sum over the classes) or relaxed (one "
                 "Concrete sample; siddharth only)")
      ->check(CLI::IsMember({"enumerate", "relaxed"}))->capture_default_str();
  app.add_option("--temperature", opt.temperature, "temperature of the relaxed estimator")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--epochs", opt.epochs, "epochs (passes over the unlabelled pool)")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--threads", opt.threads, "threads (0: OMP_NUM_THREADS or all cores)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--seed", opt.seed, "seed of the labelled subset, initialisation, batches and noise")
      ->capture_default_str();
  app.add_option("--data", opt.data_dir, "directory with the Fashion-MNIST IDX files")->capture_default_str();
  app.add_option("--out", opt.out_dir, "output directory")->capture_default_str();
  app.add_option("--device", opt.device,
                 "cpu (cuda / cuda:N is refused: the device layer has no semi-supervised model yet)")
      ->capture_default_str();
  app.add_option("--labelled-per-batch", opt.labelled_per_batch, "labelled images in each minibatch")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--unlabelled-per-batch", opt.unlabelled_per_batch, "unlabelled images in each minibatch")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--hidden", opt.hidden, "hidden units of the MLP")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--latent", opt.latent, "dimensions of the style z")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--lr", opt.learning_rate, "Adam learning rate")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--unlabelled-limit", opt.unlabelled_limit,
                 "use only this many unlabelled images (a seeded random subset; 0: all the others)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--validation", opt.validation,
                 "hold out this many training images (seeded, with their labels) and report their error each epoch, "
                 "to choose settings without the test set (printed and written to results.csv only when > 0)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--checkpoint-format", opt.checkpoint_format, "checkpoint archive format")
      ->check(CLI::IsMember({"binary", "json"}))->capture_default_str();
  app.add_option("--resume", opt.resume,
                 "continue the run saved in this checkpoint up to --epochs epochs in total (model options, "
                 "--labels, --seed and the batch composition must match)")
      ->check(CLI::ExistingFile);
  app.add_flag("--quiet", opt.quiet, "no per-step progress");
  CLI11_PARSE(app, argc, argv);
  try {
    mlvae::SemiSupervisedOptions<float> so;
    so.objective = opt.model == "m2" ? mlvae::SemiSupervisedObjective::M2 : mlvae::SemiSupervisedObjective::Siddharth;
    const double batch = static_cast<double>(opt.labelled_per_batch + opt.unlabelled_per_batch);
    so.alpha = static_cast<float>(opt.alpha >= 0 ? opt.alpha
                                  : opt.model == "m2"
                                      ? mlvae::m2_alpha(static_cast<mlvae::Index>(batch), opt.labelled_per_batch)
                                      : 0.1);
    so.unlabelled = opt.unlabelled == "relaxed" ? mlvae::UnlabelledEstimator::Relaxed
                                                : mlvae::UnlabelledEstimator::Enumerate;
    so.temperature = static_cast<float>(opt.temperature);
    if (opt.arch == "conv28") return run(opt, mlvae::make_conv28_semisupervised<float>(10, opt.latent, so));
    return run(opt, mlvae::make_mlp_semisupervised<float>(784, opt.hidden, 10, opt.latent, so));
  } catch (const std::exception& e) {
    std::cerr << "train_semisupervised: " << e.what() << "\n";
    return 1;
  }
}
