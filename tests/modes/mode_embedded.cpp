// The embedded build mode (docs/architecture.md, "Build modes"): compiled with Eigen alone, with
// -fno-exceptions -fno-openmp and MLVAE_FLOAT_ONLY. `mlvae_mode_embedded run` trains a small float
// ML-VAE, exports it to a model file in memory, rebuilds it from the file and checks the encodings
// are identical; the other modes make the core report an error, which must reach the error handler
// (core/error.hpp) and never return to the caller:
//   custom-handler     a handler that prints and exits with status 3
//   default-handler    the default handler: prints "mlvae: ShapeError: ..." and aborts
//   returning-handler  a handler that returns: mlvae aborts after it
//   corrupt-file       a model file with one flipped byte: IoError (checksum mismatch) to the handler
#include <mlvae/core/error.hpp>
#include <mlvae/core/random.hpp>
#include <mlvae/model/architectures.hpp>
#include <mlvae/model/model_file.hpp>
#include <mlvae/train/trainer.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#if defined(__cpp_exceptions) || defined(_OPENMP) || MLVAE_HAS_EXCEPTIONS
#error "mode_embedded.cpp must be compiled with -fno-exceptions -fno-openmp"
#endif

namespace {

void exiting_handler(const char* kind, const char* message) {
  std::printf("custom handler: %s: %s\n", kind, message);
  std::fflush(stdout);
  std::exit(3);
}

void returning_handler(const char* kind, const char*) {
  std::printf("returning handler called with %s\n", kind);
  std::fflush(stdout);
}

using Model = mlvae::MlpMLVAE<float>;

Model make_model() { return mlvae::make_mlp_mlvae<float>(64, 32, 4, 4); }

// 256 observations of 64 features in [0, 1] with 8 keys.
void toy_data(mlvae::Matrix<float>& x, std::vector<int>& keys) {
  mlvae::Rng rng(11);
  x.resize(64, 256);
  for (mlvae::Index j = 0; j < x.cols(); ++j)
    for (mlvae::Index i = 0; i < x.rows(); ++i) x(i, j) = static_cast<float>(rng.uniform());
  keys.resize(256);
  for (std::size_t j = 0; j < keys.size(); ++j) keys[j] = static_cast<int>(j % 8);
}

int run() {
  Model model = make_model();
  mlvae::Rng init(3);
  model.initialize(init);
  mlvae::Matrix<float> x;
  std::vector<int> keys;
  toy_data(x, keys);
  mlvae::TrainerOptions options;
  options.sampler = {4, 8, 8, 5};
  mlvae::Trainer<Model> trainer(model, x, keys, options);
  const mlvae::LossTerms terms = trainer.run_epoch();

  const std::string bytes = mlvae::model_file_bytes(model);
  mlvae::Matrix<float> sm, sl, cm, cl, sm2, sl2, cm2, cl2;
  model.encode(x, sm, sl, cm, cl);
  bool identical = false;
  mlvae::with_model_file<float>(bytes.data(), bytes.size(), [&](auto& loaded) {
    loaded.encode(x, sm2, sl2, cm2, cl2);
    identical = sm == sm2 && sl == sl2 && cm == cm2 && cl == cl2;
  });
  std::printf("embedded: trained %lld steps (loss %.3f), model file %zu bytes, encodings %s\n",
              static_cast<long long>(trainer.optimizer().step_count()), terms.loss, bytes.size(),
              identical ? "identical" : "DIFFER");
  if (!identical) return 1;
  std::printf("embedded: OK\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "run";
  if (mode == "run") return run();
  Model model = make_model();
  mlvae::Rng init(3);
  model.initialize(init);
  mlvae::Matrix<float> wrong(10, 2), sm, sl, cm, cl;
  wrong.setZero();
  if (mode == "custom-handler" || mode == "corrupt-file") mlvae::set_error_handler(&exiting_handler);
  if (mode == "returning-handler") mlvae::set_error_handler(&returning_handler);
  if (mode == "corrupt-file") {
    std::string bytes = mlvae::model_file_bytes(model);
    bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x10);
    mlvae::load_model_file(bytes.data(), bytes.size(), model, "flipped.mlvae");
  } else {
    model.encode(wrong, sm, sl, cm, cl);  // 10 rows where the model expects 64: ShapeError
  }
  std::printf("continued after the error\n");
  return 0;
}
