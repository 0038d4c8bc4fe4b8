/// @file
/// mlvae/mpi/nccl.hpp — GPU ranks: gradients summed with NCCL (ncclAllReduce), the NCCL
/// communicator bootstrapped through MPI (rank 0 creates the ncclUniqueId and broadcasts it).
/// Self-contained (MPI, NCCL and the CUDA runtime; no Eigen), needs MLVAE_ENABLE_MPI and a CUDA
/// toolkit with NCCL; compiled by nvcc in the test build when nvcc exists (tests/mpi/nccl_worker.cu).
/// Each rank drives one GPU (NCCL refuses two ranks on one device).
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/mpi/communicator.hpp"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstddef>
#include <utility>
#include <type_traits>

namespace mlvae::mpi {

/// Throws MpiError naming `what` and NCCL's message when `rc` is not ncclSuccess.
inline void check_nccl(ncclResult_t rc, const char* what) {
  if (rc != ncclSuccess) throw MpiError(detail::concat(what, " failed: ", ncclGetErrorString(rc)));
}

/// Throws MpiError naming `what` and the CUDA runtime's message when `rc` is not cudaSuccess.
inline void check_cuda(cudaError_t rc, const char* what) {
  if (rc != cudaSuccess) throw MpiError(detail::concat(what, " failed: ", cudaGetErrorString(rc)));
}

/// The NCCL datatype of `T` (float or double).
template <typename T>
ncclDataType_t nccl_datatype() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "NCCL gradients are float or double");
  return std::is_same_v<T, float> ? ncclFloat32 : ncclFloat64;
}

/// An NCCL communicator over the ranks of an MPI Communicator, one GPU per rank.
class NcclCommunicator {
public:
  /// Collective over `mpi`: selects `device` on this rank, creates the NCCL communicator from a
  /// unique id that rank 0 broadcasts over MPI, and a stream for the reductions.
  /// @throws MpiError on any CUDA, NCCL or MPI failure.
  NcclCommunicator(Communicator& mpi, int device) : device_(device) {
    check_cuda(cudaSetDevice(device), "cudaSetDevice");
    ncclUniqueId id;
    if (mpi.is_root()) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    mpi.broadcast(reinterpret_cast<char*>(&id), static_cast<std::ptrdiff_t>(sizeof(id)));
    check_nccl(ncclCommInitRank(&comm_, mpi.size(), id, mpi.rank()), "ncclCommInitRank");
    check_cuda(cudaStreamCreate(&stream_), "cudaStreamCreate");
  }
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;
  /// Frees the staging buffer, the stream and the NCCL communicator.
  ~NcclCommunicator() {
    if (staging_) cudaFree(staging_);
    if (stream_) cudaStreamDestroy(stream_);
    if (comm_) ncclCommDestroy(comm_);
  }

  /// The GPU this rank uses.
  int device() const { return device_; }
  /// The stream the reductions run on.
  cudaStream_t stream() const { return stream_; }

  /// Sums `data[0..n)` (DEVICE memory) over all ranks in place, on stream(), and waits for it.
  template <typename T>
  void allreduce_sum_device(T* data, std::ptrdiff_t n) {
    check_nccl(ncclAllReduce(data, data, static_cast<std::size_t>(n), nccl_datatype<T>(), ncclSum, comm_, stream_),
               "ncclAllReduce");
    check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize after ncclAllReduce");
  }

  /// Sums `data[0..n)` (HOST memory) over all ranks in place, staged through a device buffer:
  /// for gradients that still live on the host (the CPU model); a device-resident model passes its
  /// device buffer to allreduce_sum_device() instead.
  template <typename T>
  void allreduce_sum(T* data, std::ptrdiff_t n) {
    const std::size_t bytes = static_cast<std::size_t>(n) * sizeof(T);
    if (bytes > staging_bytes_) {
      if (staging_) check_cuda(cudaFree(staging_), "cudaFree");
      staging_ = nullptr;
      check_cuda(cudaMalloc(&staging_, bytes), "cudaMalloc of the NCCL staging buffer");
      staging_bytes_ = bytes;
    }
    check_cuda(cudaMemcpyAsync(staging_, data, bytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync to device");
    allreduce_sum_device(static_cast<T*>(staging_), n);
    check_cuda(cudaMemcpy(data, staging_, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy to host");
  }

private:
  int device_ = 0;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  void* staging_ = nullptr;
  std::size_t staging_bytes_ = 0;
};

/// Makes a data-parallel strategy (DataParallel<Model>, mpi/data_parallel.hpp) sum its gradients
/// with `nccl` instead of MPI_Allreduce (through DataParallel::set_allreduce); `nccl` must outlive
/// it. A template, so this header stays free of Eigen and the models.
template <typename Strategy>
void reduce_with(Strategy& strategy, NcclCommunicator& nccl) {
  using T = typename Strategy::T;
  strategy.set_allreduce([&nccl](T* data, std::ptrdiff_t n) { nccl.allreduce_sum(data, n); });
}

}  // namespace mlvae::mpi
