// Built twice (tests/modes/CMakeLists.txt): with OpenMP (mlvae_mode_threads) and with -fno-openmp
// and Eigen alone (mlvae_mode_no_openmp). `<exe> THREADS` trains an MLP and a conv28 ML-VAE for a
// few steps with fixed seeds and prints the CRC-32 of their final parameters and losses; test
// mode_no_openmp_matches_threads checks the no-OpenMP build prints what the OpenMP build prints on
// 1 and on 2 threads.
#include <mlvae/core/crc32.hpp>
#include <mlvae/core/random.hpp>
#include <mlvae/core/threads.hpp>
#include <mlvae/model/architectures.hpp>
#include <mlvae/model/conv_architectures.hpp>
#include <mlvae/train/trainer.hpp>

#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

template <typename Model>
void train_and_print(const char* name, Model model, mlvae::Index groups, mlvae::Index group_size, int steps) {
  mlvae::Rng rng(21);
  model.initialize(rng);
  mlvae::Matrix<float> x(model.data_size(), 512);
  for (mlvae::Index j = 0; j < x.cols(); ++j)
    for (mlvae::Index i = 0; i < x.rows(); ++i) x(i, j) = static_cast<float>(rng.uniform());
  std::vector<int> keys(static_cast<std::size_t>(x.cols()));
  for (std::size_t j = 0; j < keys.size(); ++j) keys[j] = static_cast<int>(j % 16);
  mlvae::TrainerOptions options;
  options.sampler = {groups, group_size, group_size, 9};
  mlvae::Trainer<Model> trainer(model, x, keys, options);
  trainer.start_epoch();
  mlvae::StepReport report;
  double loss_sum = 0;
  for (int s = 0; s < steps && trainer.step(report); ++s) loss_sum += report.terms.loss;
  const auto& v = model.parameters().values;
  std::printf("%s: %lld steps, loss sum %.9g, parameters crc32 %08x\n", name,
              static_cast<long long>(trainer.optimizer().step_count()), loss_sum,
              static_cast<unsigned>(mlvae::crc32(v.data(), static_cast<std::size_t>(v.size()) * sizeof(float))));
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = mlvae::set_threads(argc > 1 ? std::atoi(argv[1]) : 1);
  std::printf("threads %d\n", threads);
  // Large enough that the products and Adam take the threaded paths on 2 threads.
  train_and_print("mlp", mlvae::make_mlp_mlvae<float>(784, 256, 10, 10), 16, 16, 4);
  train_and_print("conv28", mlvae::make_conv28_mlvae<float>(10, 10), 4, 8, 2);
  return 0;
}
