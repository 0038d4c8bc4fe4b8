// tests/mpi/nccl_worker.cu — compiled by nvcc when the CUDA toolkit is present (cmake/mlvae_mpi.cmake):
// under `mpirun -np N` every rank sums a host buffer with NCCL (communicator bootstrapped over MPI)
// and checks the sum. Exits 77 (CTest: skipped) when this machine has no GPU, or fewer GPUs than
// ranks (NCCL needs one device per rank).
#include "mlvae/mpi/nccl.hpp"

#include <cstdio>
#include <functional>
#include <vector>

namespace {
// Stands for DataParallel<Model> (whose set_allreduce takes the same function), so that this TU
// stays free of Eigen, which nvcc does not compile warning-free.
struct StrategyStub {
  using T = float;
  std::function<void(float*, std::ptrdiff_t)> sum;
  void set_allreduce(std::function<void(float*, std::ptrdiff_t)> f) { sum = std::move(f); }
};
}  // namespace

int main(int argc, char** argv) {
  mlvae::mpi::Environment env(argc, argv);
  return mlvae::mpi::run_or_abort([&] {
    mlvae::mpi::Communicator comm(MPI_COMM_WORLD, 120);
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess) devices = 0;
    int enough = devices >= comm.size() ? 1 : 0;
    MPI_Allreduce(MPI_IN_PLACE, &enough, 1, MPI_INT, MPI_MIN, comm.get());
    if (!enough) {
      if (comm.is_root()) std::printf("SKIPPED: %d GPU(s) for %d ranks\n", devices, comm.size());
      return 77;
    }
    mlvae::mpi::NcclCommunicator nccl(comm, comm.rank());
    std::vector<float> buffer(1000003);
    for (std::size_t i = 0; i < buffer.size(); ++i) buffer[i] = static_cast<float>((i % 7) + comm.rank());
    StrategyStub strategy;
    mlvae::mpi::reduce_with(strategy, nccl);
    strategy.sum(buffer.data(), static_cast<std::ptrdiff_t>(buffer.size()));
    const int n = comm.size();
    int bad = 0;
    for (std::size_t i = 0; i < buffer.size(); ++i)
      if (buffer[i] != static_cast<float>(n * static_cast<int>(i % 7) + n * (n - 1) / 2)) ++bad;
    MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_SUM, comm.get());
    if (comm.is_root()) std::printf(bad == 0 ? "PASSED: NCCL allreduce over %d ranks\n" : "FAILED: %d wrong sums\n", bad == 0 ? n : bad);
    return bad == 0 ? 0 : 1;
  });
}
