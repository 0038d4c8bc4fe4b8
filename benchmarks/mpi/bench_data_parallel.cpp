// benchmarks/mpi/bench_data_parallel.cpp — data-parallel training speed under `mpirun -np N`:
// the whole job's images/s, each rank's compute and reduction time per step, the bytes reduced
// per step, and a bare MPI_Allreduce of the gradient's size. Built by cmake/mlvae_mpi.cmake
// (target mlvae_bench_data_parallel, not part of ALL); docs/performance.md has the numbers.
//
//   mpirun -np 2 build/release/bin/mlvae_bench_data_parallel --arch mlp --threads 1 --steps 60
//
// Batch: --groups x --group-size images of uniform [0,1) data (one key per group of 16), float.
#include "mlvae/core/threads.hpp"
#include "mlvae/model/architectures.hpp"
#include "mlvae/model/conv_architectures.hpp"
#include "mlvae/mpi/data_parallel.hpp"
#include "mlvae/train/trainer.hpp"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include <time.h>

namespace {

double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

struct Options {
  std::string arch = "mlp";
  int threads = 1, steps = 60, warmup = 10, groups = 16, group_size = 16, reps = 3;
  bool ordered = false;
};

template <typename Model>
int run(mlvae::mpi::Communicator& comm, Model& model, const Options& o) {
  using mlvae::Index;
  const Index n = static_cast<Index>(o.groups) * o.group_size * 8;  // 8 batches per epoch
  mlvae::Rng rng(5);
  model.initialize(rng);
  mlvae::Matrix<float> data(model.data_size(), n);
  for (Index j = 0; j < n; ++j)
    for (Index i = 0; i < data.rows(); ++i) data(i, j) = static_cast<float>(rng.uniform());
  std::vector<int> keys(static_cast<std::size_t>(n));
  for (Index j = 0; j < n; ++j) keys[static_cast<std::size_t>(j)] = static_cast<int>((j / o.group_size) % 10);
  mlvae::TrainerOptions options;
  options.sampler = {o.groups, o.group_size, o.group_size, 3};
  mlvae::Trainer<Model> trainer(model, data, keys, options);
  auto dp = mlvae::mpi::enable_data_parallel(
      comm, trainer, {o.ordered ? mlvae::mpi::Reduction::Ordered : mlvae::mpi::Reduction::Allreduce, 0});
  mlvae::StepReport report;
  auto steps = [&](int k) {
    for (int s = 0; s < k;)
      if (trainer.step(report)) ++s;
      else trainer.start_epoch();
  };
  steps(o.warmup);
  double best = 1e300, best_compute = 0, best_reduce = 0, best_cpu = 0;
  for (int r = 0; r < o.reps; ++r) {
    const mlvae::mpi::ReductionStats before = dp->stats();
    MPI_Barrier(comm.get());
    const double t0 = MPI_Wtime(), c0 = cpu_seconds();
    steps(o.steps);
    const double cpu = cpu_seconds() - c0;
    MPI_Barrier(comm.get());
    const double seconds = MPI_Wtime() - t0;
    if (seconds < best) {
      best = seconds;
      best_cpu = cpu;
      best_compute = (dp->stats().compute_seconds - before.compute_seconds) / o.steps;
      best_reduce = (dp->stats().reduce_seconds - before.reduce_seconds) / o.steps;
    }
  }
  // Bare allreduce of the same buffer size (no compute around it).
  std::vector<float> buffer(static_cast<std::size_t>(dp->stats().elements_per_step), 1.0f);
  const int bare = 50;
  MPI_Barrier(comm.get());
  const double b0 = MPI_Wtime();
  for (int i = 0; i < bare; ++i) comm.allreduce_sum(buffer.data(), static_cast<Index>(buffer.size()));
  const double bare_seconds = (MPI_Wtime() - b0) / bare;

  // Rank 0 prints its own and the slowest rank's shares.
  double mine[2] = {best_compute, best_reduce}, worst[2];
  MPI_Reduce(mine, worst, 2, MPI_DOUBLE, MPI_MAX, 0, comm.get());
  double job_cpu = 0;  // CPU seconds of all ranks (all threads) in the fastest repetition
  MPI_Reduce(&best_cpu, &job_cpu, 1, MPI_DOUBLE, MPI_SUM, 0, comm.get());
  if (comm.is_root()) {
    const double images = static_cast<double>(o.steps) * o.groups * o.group_size;
    std::printf("RESULT arch=%s ranks=%d threads=%d batch=%d images_per_s=%.0f ms_per_step=%.3f "
                "compute_ms=%.3f (max over ranks %.3f) reduce_ms=%.3f (max %.3f) reduce_share=%.1f%% "
                "bytes_per_step=%lld params=%lld bare_allreduce_ms=%.3f img_per_cpu_s=%.0f mode=%s\n",
                o.arch.c_str(), comm.size(), o.threads, o.groups * o.group_size, images / best, 1e3 * best / o.steps,
                1e3 * best_compute, 1e3 * worst[0], 1e3 * best_reduce, 1e3 * worst[1],
                100.0 * best_reduce / (best / o.steps), static_cast<long long>(dp->stats().bytes_per_step),
                static_cast<long long>(model.parameters().size()), 1e3 * bare_seconds,
                images / job_cpu, o.ordered ? "ordered" : "allreduce");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  mlvae::mpi::Environment env(argc, argv);
  Options o;
  CLI::App app("mlvae data-parallel training benchmark (run under mpirun)");
  app.add_option("--arch", o.arch, "mlp or conv28")->check(CLI::IsMember({"mlp", "conv28"}));
  app.add_option("--threads", o.threads, "OpenMP threads per rank");
  app.add_option("--steps", o.steps, "timed steps per repetition");
  app.add_option("--warmup", o.warmup, "untimed steps first");
  app.add_option("--reps", o.reps, "repetitions (the fastest is reported)");
  app.add_option("--groups", o.groups, "groups in the global batch");
  app.add_option("--group-size", o.group_size, "images per group");
  app.add_flag("--ordered", o.ordered, "deterministic ordered reduction instead of MPI_Allreduce");
  CLI11_PARSE(app, argc, argv);
  return mlvae::mpi::run_or_abort([&] {
    mlvae::set_threads(o.threads);
    mlvae::mpi::Communicator comm(MPI_COMM_WORLD, 600);
    if (o.arch == "mlp") {
      auto model = mlvae::make_mlp_mlvae<float>();
      return run(comm, model, o);
    }
    auto model = mlvae::make_conv28_mlvae<float>();
    return run(comm, model, o);
  });
}
