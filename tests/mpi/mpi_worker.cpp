// tests/mpi/mpi_worker.cpp — the program CTest runs under `mpirun -np N` (cmake/mlvae_mpi.cmake) to
// test data-parallel training: one scenario per run, named by the first argument. Each check that
// fails prints "FAILED: ..." and makes the process exit non-zero; a passing run prints "PASSED".
//
//   equivalence   Allreduce mode == a plain single-process Trainer within a stated tolerance
//                 (float and double), and every rank holds bit-identical parameters and moments;
//                 the VAE in both modes
//   ordered       Ordered mode (6 shards) == ShardedGradient(6) in one process, bit for bit (==);
//                 Ordered with 1 shard == a plain Trainer, bit for bit
//   resume-write DIR     trains 7 steps (Ordered, 6 shards), rank 0 writes DIR/np.ckpt
//   resume-continue DIR  resumes DIR/np.ckpt (any rank count), 6 more steps, writes DIR/final.model
//   resume-check DIR     one process, no MPI at all: resuming DIR/np.ckpt with ShardedGradient(6)
//                        and training 13 steps from scratch both give DIR/final.model exactly; a
//                        plain-Trainer resume agrees within the tolerance
//   dead-rank DIR a long run whose ranks write DIR/rank<r>.pid after 5 steps; tests/mpi/kill_rank.sh
//                 kills one with SIGKILL and checks that the whole job ends
//   invalid-data  rank 1's data contain a NaN: it must end the whole job with the Trainer's error
//   different-data rank 1's data differ from rank 0's: every rank must stop with a clear error
//   stall         rank 1 sleeps past the collective timeout (2 s): rank 0's watchdog must end it
#include "mlvae/mlvae.hpp"
#include "mlvae/mpi/data_parallel.hpp"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

namespace {

using mlvae::Index;

int failures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAILED: %s\n", what.c_str());
    ++failures;
  }
}

/// Synthetic data in [0, 1], 12 features, 4 keys (as tests/support.hpp's toy data).
template <typename T>
mlvae::Matrix<T> toy_data(Index n) {
  mlvae::Rng rng(3);
  mlvae::Matrix<T> x(12, n);
  for (Index j = 0; j < n; ++j)
    for (Index i = 0; i < 12; ++i) x(i, j) = static_cast<T>(rng.uniform());
  return x;
}

std::vector<int> toy_keys(Index n) {
  std::vector<int> k(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<int>(i % 4);
  return k;
}

constexpr Index observations = 150;

template <typename T>
using Model = mlvae::MlpMLVAE<T>;

template <typename T>
Model<T> fresh_model(std::uint64_t seed = 1) {
  Model<T> model = mlvae::make_mlp_mlvae<T>(12, 16, 3, 3);
  mlvae::Rng init(seed);
  model.initialize(init);
  return model;
}

mlvae::TrainerOptions options() {
  mlvae::TrainerOptions o;
  o.sampler = {7, 3, 6, 21};  // 7 groups of 3..6 images: uneven shards, ~5 batches per epoch
  o.noise_seed = 22;
  o.adam.learning_rate = 3e-3;
  return o;
}

template <typename Trainer>
void train_steps(Trainer& trainer, int n) {
  mlvae::StepReport report;
  for (int done = 0; done < n;) {
    if (trainer.step(report))
      ++done;
    else
      trainer.start_epoch();
  }
}

template <typename T>
double max_abs_diff(const mlvae::Vector<T>& a, const mlvae::Vector<T>& b) {
  return static_cast<double>((a - b).cwiseAbs().maxCoeff());
}

// ---- scenarios ----------------------------------------------------------------------------

/// Allreduce mode against a plain single-process Trainer; `tolerance` bounds max |Δθ| after 12 steps.
/// With `groups_per_batch` below the rank count some ranks get no group and contribute zeros.
template <typename T>
void equivalence(mlvae::mpi::Communicator& comm, double tolerance, Index groups_per_batch = 7) {
  const auto data = toy_data<T>(observations);
  mlvae::TrainerOptions opt = options();
  opt.sampler.groups_per_batch = groups_per_batch;
  Model<T> model = fresh_model<T>();
  mlvae::Trainer<Model<T>> trainer(model, data, toy_keys(observations), opt);
  mlvae::mpi::enable_data_parallel(comm, trainer, {mlvae::mpi::Reduction::Allreduce, 0});
  train_steps(trainer, 12);
  expect(mlvae::mpi::states_identical(comm, trainer), "Allreduce: the ranks' parameters or moments differ");
  if (comm.is_root()) {
    Model<T> ref_model = fresh_model<T>();
    mlvae::Trainer<Model<T>> ref(ref_model, data, toy_keys(observations), opt);
    train_steps(ref, 12);
    const double d = max_abs_diff(model.parameters().values, ref_model.parameters().values);
    std::printf("Allreduce on %d ranks (%s, %d groups per batch): max |theta - theta_single| = %.3g (tolerance %.1g)\n",
                comm.size(), sizeof(T) == 4 ? "float" : "double", static_cast<int>(groups_per_batch), d, tolerance);
    expect(d <= tolerance, "Allreduce: parameters differ from the single-process run beyond the tolerance");
    expect(trainer.optimizer().step_count() == ref.optimizer().step_count(), "Allreduce: step counts differ");
    expect(trainer.sampler().state().cursor == ref.sampler().state().cursor, "Allreduce: sampler positions differ");
    expect(trainer.noise() == ref.noise(), "Allreduce: the noise Rng differs from the single-process run");
  }
}

/// The VAE through the same strategies (every image its own group in the objective; the batches
/// are still made of whole groups): Allreduce within the float tolerance, Ordered bit-identical.
void vae(mlvae::mpi::Communicator& comm) {
  using V = mlvae::MlpVAE<float>;
  const auto data = toy_data<float>(observations);
  auto make = [] {
    V m = mlvae::make_mlp_vae<float>(12, 16, 4);
    mlvae::Rng init(2);
    m.initialize(init);
    return m;
  };
  for (const auto reduction : {mlvae::mpi::Reduction::Allreduce, mlvae::mpi::Reduction::Ordered}) {
    V model = make();
    mlvae::Trainer<V> trainer(model, data, toy_keys(observations), options());
    mlvae::mpi::enable_data_parallel(comm, trainer, {reduction, 5});
    train_steps(trainer, 9);
    expect(mlvae::mpi::states_identical(comm, trainer), "VAE: the ranks' parameters or moments differ");
    if (!comm.is_root()) continue;
    V ref_model = make();
    mlvae::Trainer<V> ref(ref_model, data, toy_keys(observations), options());
    if (reduction == mlvae::mpi::Reduction::Ordered)
      ref.set_gradient_strategy(std::make_shared<mlvae::ShardedGradient<V>>(5));
    train_steps(ref, 9);
    const double d = max_abs_diff(model.parameters().values, ref_model.parameters().values);
    std::printf("VAE, %s on %d ranks: max |theta - theta_single| = %.3g\n",
                reduction == mlvae::mpi::Reduction::Ordered ? "Ordered (5 shards)" : "Allreduce", comm.size(), d);
    if (reduction == mlvae::mpi::Reduction::Ordered)
      expect(d == 0, "VAE: Ordered mode is not bit-identical to ShardedGradient(5)");
    else
      expect(d <= 1e-5, "VAE: Allreduce mode differs from one process beyond the tolerance");
  }
}

/// Ordered mode: bit-identical to the single-process references.
template <typename T>
void ordered(mlvae::mpi::Communicator& comm) {
  const auto data = toy_data<T>(observations);
  for (const Index shards : {Index{6}, Index{1}}) {
    Model<T> model = fresh_model<T>();
    mlvae::Trainer<Model<T>> trainer(model, data, toy_keys(observations), options());
    mlvae::mpi::enable_data_parallel(comm, trainer, {mlvae::mpi::Reduction::Ordered, shards});
    train_steps(trainer, 12);
    expect(mlvae::mpi::states_identical(comm, trainer), "Ordered: the ranks' parameters or moments differ");
    if (!comm.is_root()) continue;
    Model<T> ref_model = fresh_model<T>();
    mlvae::Trainer<Model<T>> ref(ref_model, data, toy_keys(observations), options());
    if (shards > 1) ref.set_gradient_strategy(std::make_shared<mlvae::ShardedGradient<Model<T>>>(shards));
    train_steps(ref, 12);
    const bool same = model.parameters().values == ref_model.parameters().values &&
                      trainer.optimizer().first_moment() == ref.optimizer().first_moment() &&
                      trainer.optimizer().second_moment() == ref.optimizer().second_moment() &&
                      trainer.noise() == ref.noise();
    std::printf("Ordered, %d shard(s), %d ranks (%s): bit-identical to the single process: %s\n",
                static_cast<int>(shards), comm.size(), sizeof(T) == 4 ? "float" : "double", same ? "yes" : "NO");
    expect(same, "Ordered mode is not bit-identical to the single-process reference");
  }
}

constexpr Index resume_shards = 6;
constexpr int resume_first = 7, resume_more = 6;

void resume_write(mlvae::mpi::Communicator& comm, const std::string& dir) {
  const auto data = toy_data<float>(observations);
  Model<float> model = fresh_model<float>();
  mlvae::Trainer<Model<float>> trainer(model, data, toy_keys(observations), options());
  mlvae::mpi::enable_data_parallel(comm, trainer, {mlvae::mpi::Reduction::Ordered, resume_shards});
  train_steps(trainer, resume_first);
  if (comm.is_root()) std::filesystem::create_directories(dir);
  mlvae::mpi::save_checkpoint(comm, dir + "/np.ckpt", trainer);
  if (comm.is_root()) std::printf("%d ranks wrote %s/np.ckpt after %d steps\n", comm.size(), dir.c_str(), resume_first);
}

void resume_continue(mlvae::mpi::Communicator& comm, const std::string& dir) {
  const auto data = toy_data<float>(observations);
  Model<float> model = fresh_model<float>(999);  // different initial values: all must come from the checkpoint
  mlvae::Trainer<Model<float>> trainer(model, data, toy_keys(observations), options());
  mlvae::mpi::load_checkpoint(comm, dir + "/np.ckpt", trainer);
  mlvae::mpi::enable_data_parallel(comm, trainer, {mlvae::mpi::Reduction::Ordered, resume_shards});
  train_steps(trainer, resume_more);
  expect(mlvae::mpi::states_identical(comm, trainer), "resume: the ranks' states differ");
  if (comm.is_root()) {
    mlvae::save_model(dir + "/final.model", model);
    std::printf("%d ranks resumed and wrote %s/final.model\n", comm.size(), dir.c_str());
  }
}

/// One process, no MPI.
void resume_check(const std::string& dir) {
  const auto data = toy_data<float>(observations);
  Model<float> final_model = fresh_model<float>(5);
  mlvae::load_model(dir + "/final.model", final_model);

  Model<float> resumed = fresh_model<float>(7);
  mlvae::Trainer<Model<float>> a(resumed, data, toy_keys(observations), mlvae::read_checkpoint_options(dir + "/np.ckpt"));
  mlvae::load_checkpoint(dir + "/np.ckpt", a);
  a.set_gradient_strategy(std::make_shared<mlvae::ShardedGradient<Model<float>>>(resume_shards));
  train_steps(a, resume_more);
  expect(resumed.parameters().values == final_model.parameters().values,
         "resume on one process (ShardedGradient) differs from the multi-rank continuation");

  Model<float> straight = fresh_model<float>();
  mlvae::Trainer<Model<float>> b(straight, data, toy_keys(observations), options());
  b.set_gradient_strategy(std::make_shared<mlvae::ShardedGradient<Model<float>>>(resume_shards));
  train_steps(b, resume_first + resume_more);
  expect(straight.parameters().values == final_model.parameters().values,
         "the N-rank then M-rank run differs from one process straight through");

  Model<float> plain = fresh_model<float>(7);
  mlvae::Trainer<Model<float>> c(plain, data, toy_keys(observations), options());
  mlvae::load_checkpoint(dir + "/np.ckpt", c);
  train_steps(c, resume_more);
  const double d = max_abs_diff(plain.parameters().values, final_model.parameters().values);
  std::printf("resume on one process: ShardedGradient(6) bit-identical: %s; plain Trainer max |dtheta| = %.3g\n",
              resumed.parameters().values == final_model.parameters().values ? "yes" : "NO", d);
  expect(d <= 1e-4, "a plain-Trainer resume is not within 1e-4 of the multi-rank continuation");
}

/// Trains "forever"; after 5 steps each rank writes DIR/rank<r>.pid, for tests/mpi/kill_rank.sh to
/// kill one of them from outside with SIGKILL. The survivors must be ended, not finish.
void dead_rank(mlvae::mpi::Communicator& comm, const std::string& dir) {
  const auto data = toy_data<float>(observations);
  Model<float> model = fresh_model<float>();
  mlvae::Trainer<Model<float>> trainer(model, data, toy_keys(observations), options());
  mlvae::mpi::enable_data_parallel(comm, trainer);
  mlvae::StepReport report;
  for (int step = 0; step < 2000000; ++step) {
    if (step == 5) {
      const std::string path = dir + "/rank" + std::to_string(comm.rank()) + ".pid";
      if (std::FILE* f = std::fopen((path + ".tmp").c_str(), "w")) {
        std::fprintf(f, "%d\n", static_cast<int>(getpid()));
        std::fclose(f);
        std::filesystem::rename(path + ".tmp", path);
      }
    }
    if (!trainer.step(report)) trainer.start_epoch();
  }
  std::printf("training finished on rank %d (a survivor did not notice the dead rank)\n", comm.rank());
  ++failures;
}

void bad_data(mlvae::mpi::Communicator& comm, bool nan) {
  auto data = toy_data<float>(observations);
  if (comm.rank() == 1) data(3, 17) = nan ? std::numeric_limits<float>::quiet_NaN() : 0.5f + data(3, 17) / 4;
  Model<float> model = fresh_model<float>();
  mlvae::Trainer<Model<float>> trainer(model, data, toy_keys(observations), options());  // throws on NaN
  mlvae::mpi::enable_data_parallel(comm, trainer);  // throws on every rank when the data differ
  train_steps(trainer, 3);
  std::printf("training finished on rank %d despite bad data\n", comm.rank());
  ++failures;
}

void stall(mlvae::mpi::Communicator& comm) {
  const auto data = toy_data<float>(observations);
  Model<float> model = fresh_model<float>();
  mlvae::Trainer<Model<float>> trainer(model, data, toy_keys(observations), options());
  if (comm.rank() == 1) std::this_thread::sleep_for(std::chrono::seconds(60));
  mlvae::mpi::enable_data_parallel(comm, trainer);
  train_steps(trainer, 3);
  std::printf("training finished on rank %d despite the stalled rank\n", comm.rank());
  ++failures;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string scenario = argc > 1 ? argv[1] : "";
  const std::string dir = argc > 2 ? argv[2] : ".";
  if (scenario == "resume-check") {  // one plain process: no MPI
    try {
      resume_check(dir);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "FAILED: %s\n", e.what());
      return 1;
    }
    if (failures == 0) std::printf("PASSED\n");
    return failures == 0 ? 0 : 1;
  }
  mlvae::mpi::Environment env(argc, argv);
  const int status = mlvae::mpi::run_or_abort([&] {
    mlvae::mpi::Communicator comm(MPI_COMM_WORLD, scenario == "stall" ? 2.0 : 60.0);
    if (scenario == "equivalence") {
      equivalence<double>(comm, 1e-10);
      equivalence<float>(comm, 1e-5);
      equivalence<float>(comm, 1e-5, 2);  // 3 ranks: one rank idle every step
      vae(comm);
    } else if (scenario == "ordered") {
      ordered<float>(comm);
      ordered<double>(comm);
    } else if (scenario == "resume-write") {
      resume_write(comm, dir);
    } else if (scenario == "resume-continue") {
      resume_continue(comm, dir);
    } else if (scenario == "dead-rank") {
      dead_rank(comm, dir);
    } else if (scenario == "invalid-data") {
      bad_data(comm, true);
    } else if (scenario == "different-data") {
      bad_data(comm, false);
    } else if (scenario == "stall") {
      stall(comm);
    } else {
      std::fprintf(stderr, "unknown scenario '%s'\n", scenario.c_str());
      return 2;
    }
    int all_failures = failures;
    MPI_Allreduce(MPI_IN_PLACE, &all_failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (comm.is_root() && all_failures == 0) std::printf("PASSED\n");
    return all_failures == 0 ? 0 : 1;
  });
  return status;
}
