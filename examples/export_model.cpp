// export_model — converts a train_mlvae checkpoint (cereal) into a model file for inference with
// mlvae::core alone (docs/model_file.md; examples/encode reads it). It recognises the
// architecture (--arch mlp, conv28 or conv64 of train_mlvae) from the checkpoint. With
// --observations N it also writes the first N Fashion-MNIST test images as text (one per line,
// examples/encode's input) and their content and style means computed here, in encode's output
// format, so a deployment can check the file end to end.
#include <mlvae/mlvae.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

namespace {

struct Options {
  std::string checkpoint;
  std::string out;
  mlvae::Index observations = 0;
  std::string observations_out = "observations.txt";
  std::string expected_out = "expected.txt";
  std::string data_dir = mlvae::fashion_mnist_default_dir();
  int precision = 6;
};

void print_row(std::FILE* f, const char* label, const mlvae::Matrix<float>& m, mlvae::Index col, int precision) {
  std::fprintf(f, "%s", label);
  for (mlvae::Index i = 0; i < m.rows(); ++i) std::fprintf(f, " %.*f", precision, static_cast<double>(m(i, col)));
}

template <typename Model>
int export_from(const Options& opt, Model model) {
  mlvae::load_model(opt.checkpoint, model);  // reads the model part of a training checkpoint too
  mlvae::export_model(opt.out, model);
  const mlvae::ModelFileInfo info = mlvae::read_model_file_info(opt.out);
  std::cout << "export_model: wrote " << opt.out << " (" << info.file_size << " bytes, architecture '"
            << info.architecture_name << "', " << info.parameter_count << " float parameters, CRC-32 "
            << "0x" << mlvae::hex32(info.checksum) << ")\n";
  if (opt.observations <= 0) return 0;

  auto test = mlvae::load_fashion_mnist<float>("test", opt.data_dir, static_cast<std::size_t>(opt.observations));
  if (model.data_size() == 64 * 64 && test.images.rows() == 28 * 28)
    test.images = mlvae::resize_images(test.images, test.height, test.width, 64, 64);
  mlvae::Matrix<float> style_mean, style_logvar, content_mean, content_logvar;
  model.encode(test.images, style_mean, style_logvar, content_mean, content_logvar);
  std::FILE* obs = std::fopen(opt.observations_out.c_str(), "w");
  std::FILE* expected = std::fopen(opt.expected_out.c_str(), "w");
  mlvae::require<mlvae::IoError>(obs && expected, "cannot write '", opt.observations_out, "' or '", opt.expected_out,
                                 "'");
  for (mlvae::Index j = 0; j < test.images.cols(); ++j) {
    for (mlvae::Index i = 0; i < test.images.rows(); ++i)
      std::fprintf(obs, i ? " %.9g" : "%.9g", static_cast<double>(test.images(i, j)));
    std::fprintf(obs, "\n");
    print_row(expected, "content", content_mean, j, opt.precision);
    print_row(expected, " style", style_mean, j, opt.precision);
    std::fprintf(expected, "\n");
  }
  const bool ok = std::fclose(obs) == 0;
  mlvae::require<mlvae::IoError>((std::fclose(expected) == 0) && ok, "writing the observations failed");
  std::cout << "export_model: wrote " << test.images.cols() << " test images to " << opt.observations_out
            << " and their encodings to " << opt.expected_out << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"Convert a train_mlvae checkpoint into a model file for mlvae::core (docs/model_file.md)."};
  app.add_option("--checkpoint", opt.checkpoint, "checkpoint written by train_mlvae (or save_model)")
      ->required()->check(CLI::ExistingFile);
  app.add_option("--out", opt.out, "model file to write")->required();
  app.add_option("--observations", opt.observations,
                 "also write this many Fashion-MNIST test images and their encodings")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--observations-out", opt.observations_out, "text file of observations, one per line")
      ->capture_default_str();
  app.add_option("--expected-out", opt.expected_out, "their content and style means, as encode prints them")
      ->capture_default_str();
  app.add_option("--precision", opt.precision, "digits after the point in --expected-out")->capture_default_str();
  app.add_option("--data", opt.data_dir, "directory with the Fashion-MNIST IDX files")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    const mlvae::CheckpointInfo info = mlvae::read_checkpoint_info(opt.checkpoint);
    mlvae::require<mlvae::IoError>(info.model_kind == "MLVAE" && info.scalar_type == "float" &&
                                       info.latent_sizes.size() == 2,
                                   "expected a float ML-VAE checkpoint, found a ", info.scalar_type, " ",
                                   info.model_kind);
    const auto style = static_cast<mlvae::Index>(info.latent_sizes[0]);
    const auto content = static_cast<mlvae::Index>(info.latent_sizes[1]);
    long input = 0, hidden = 0;
    if (std::sscanf(info.architecture.c_str(), "MLVAE{trunk=Sequential[Dense(%ld->%ld), Tanh", &input, &hidden) == 2) {
      auto model = mlvae::make_mlp_mlvae<float>(input, hidden, style, content);
      if (model.describe() == info.architecture) return export_from(opt, std::move(model));
    }
    if (auto model = mlvae::make_conv28_mlvae<float>(style, content); model.describe() == info.architecture)
      return export_from(opt, std::move(model));
    if (auto model = mlvae::make_conv64_mlvae<float>(style, content); model.describe() == info.architecture)
      return export_from(opt, std::move(model));
    std::cerr << "export_model: the checkpoint holds an architecture train_mlvae does not build (mlp, conv28, "
                 "conv64): "
              << info.architecture << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "export_model: " << e.what() << "\n";
    return 1;
  }
}
