/// @file
/// mlvae/device/cuda.cuh — the CUDA device of the device layer (nvcc translation units only):
/// Eigen's GpuDevice on a stream of our own for every Tensor expression, cuBLAS bound to the same
/// stream for the matrix products, pinned host memory for staging, and a counting wrapper around
/// the device allocator (every device buffer, Eigen's scratchpad and cuBLAS's workspace go through
/// it). Include this header FIRST in a .cu file: it defines EIGEN_USE_GPU before Eigen is seen.
/// The CUDA path is float only (Eigen 3.4.0 reduces double on the GPU recursively per thread).
/// docs/architecture.md, "The device layer".
#pragma once

#ifndef __CUDACC__
#error "mlvae/device/cuda.cuh is for CUDA translation units compiled by nvcc (see cmake/mlvae_cuda.cmake)"
#endif
#ifndef EIGEN_USE_GPU
#define EIGEN_USE_GPU
#endif

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "mlvae/core/error.hpp"
#include "mlvae/device/context.hpp"

#include <memory>
#include <string>
#include <type_traits>

namespace mlvae::device {

/// Number of CUDA devices visible (0 when there is no device or no usable driver; never throws).
inline int cuda_device_count() noexcept {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky error
    return 0;
  }
  return count;
}

/// Why no CUDA device can be used, in one line ("" when one can).
inline std::string cuda_unavailable_reason() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return std::string("no CUDA device found (cudaGetDeviceCount: ") + cudaGetErrorString(e) + ")";
  }
  return count == 0 ? std::string("no CUDA device found") : std::string();
}

namespace detail {
inline void check_cuda(cudaError_t e, const char* what) {
  require<Error>(e == cudaSuccess, "CUDA: ", what, " failed: ", cudaGetErrorString(e));
}
inline void check_cublas(cublasStatus_t s, const char* what) {
  require<Error>(s == CUBLAS_STATUS_SUCCESS, "cuBLAS: ", what, " failed with status ", static_cast<int>(s));
}

/// Eigen's stream device with every allocation counted (the GPU's "counting allocator").
class CountingGpuStream : public Eigen::GpuStreamDevice {
public:
  CountingGpuStream(const cudaStream_t* stream, int device, long* counter)
      : Eigen::GpuStreamDevice(stream, device), counter_(counter) {}
  void* allocate(size_t bytes) const override {
    ++*counter_;
    return Eigen::GpuStreamDevice::allocate(bytes);
  }

private:
  long* counter_;
};
}  // namespace detail

/// One CUDA device: a non-blocking stream, Eigen's GpuDevice on it, a cuBLAS handle on it (FP32
/// math, no TF32), a counted allocator. Everything a step queues runs in order on that stream.
class CudaContext {
public:
  /// The Eigen device.
  using Device = Eigen::GpuDevice;
  /// cuBLAS keeps no per-call-site state.
  template <typename T>
  struct GemmSite {
    static_assert(std::is_same_v<T, float>, "mlvae::device::CudaContext: the CUDA path is float only");
  };
  /// The array a layer keeps and returns on this device.
  template <typename T>
  using Array = DeviceArray<T, CudaContext>;
  /// A model's parameters and gradients on this device.
  template <typename T>
  using Parameters = DeviceParameterStore<T, CudaContext>;

  /// Opens CUDA device `index`; throws mlvae::Error "no CUDA device found" when there is none, and
  /// ArgumentError when `index` is not a visible device.
  explicit CudaContext(int index = 0) : index_(index) {
    const std::string reason = cuda_unavailable_reason();
    require<Error>(reason.empty(), reason);
    const int count = cuda_device_count();
    require<ArgumentError>(index >= 0 && index < count, "CudaContext: CUDA device ", index, " requested but ", count,
                           " visible");
    detail::check_cuda(cudaSetDevice(index), "cudaSetDevice");
    detail::check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    eigen_stream_ = std::make_unique<detail::CountingGpuStream>(&stream_, index, &counts_.device);
    device_ = std::make_unique<Eigen::GpuDevice>(eigen_stream_.get());
    detail::check_cublas(cublasCreate(&handle_), "cublasCreate");
    detail::check_cublas(cublasSetStream(handle_, stream_), "cublasSetStream");
    detail::check_cublas(cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
    // cuBLAS would otherwise allocate its workspace itself, out of the counter's sight.
    workspace_ = allocate(workspace_bytes);
    detail::check_cublas(cublasSetWorkspace(handle_, workspace_, workspace_bytes), "cublasSetWorkspace");
    cudaDeviceProp prop{};
    detail::check_cuda(cudaGetDeviceProperties(&prop, index), "cudaGetDeviceProperties");
    name_ = prop.name;
  }
  CudaContext(const CudaContext&) = delete;
  CudaContext& operator=(const CudaContext&) = delete;
  ~CudaContext() {
    cudaStreamSynchronize(stream_);
    cublasDestroy(handle_);
    deallocate(workspace_);
    device_.reset();
    eigen_stream_.reset();
    cudaStreamDestroy(stream_);
  }

  /// The Eigen device for `.device(d)`.
  const Device& device() const { return *device_; }
  /// "cuda:<index> (<name>)".
  std::string describe() const { return "cuda:" + std::to_string(index_) + " (" + name_ + ")"; }
  /// Device memory free now (cudaMemGetInfo), e.g. to decide whether a training set fits.
  std::size_t free_memory() const {
    std::size_t free_bytes = 0, total_bytes = 0;
    detail::check_cuda(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
    return free_bytes;
  }
  /// The stream every operation of this context is queued on.
  cudaStream_t stream() const { return stream_; }
  /// The cuBLAS handle (bound to stream()).
  cublasHandle_t cublas() const { return handle_; }

  /// Device memory (cudaMalloc through Eigen's stream device); counted.
  void* allocate(std::size_t bytes) { return eigen_stream_->allocate(bytes); }
  /// Frees memory from allocate().
  void deallocate(void* p) { eigen_stream_->deallocate(p); }
  /// Pinned host memory (cudaHostAlloc), so uploads from it are asynchronous; counted.
  void* allocate_host(std::size_t bytes) {
    ++counts_.host;
    void* p = nullptr;
    detail::check_cuda(cudaHostAlloc(&p, bytes, cudaHostAllocDefault), "cudaHostAlloc");
    return p;
  }
  /// Frees memory from allocate_host().
  void deallocate_host(void* p) { cudaFreeHost(p); }
  /// Queues a host → device copy on the stream.
  void upload(void* dst, const void* src, std::size_t bytes) {
    detail::check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync H2D");
  }
  /// Queues a device → host copy on the stream (read it after synchronize()).
  void download(void* dst, const void* src, std::size_t bytes) {
    detail::check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync D2H");
  }
  /// Waits for the stream; throws mlvae::Error on an asynchronous CUDA error.
  void synchronize() { detail::check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

  /// C = op(A)·op(B) (+ C when accumulate), column-major, through cuBLAS on the stream.
  template <typename T>
  void gemm(GemmSite<T>&, Transpose ta, Transpose tb, Index m, Index n, Index k, const T* a, Index lda, const T* b,
            Index ldb, T* c, Index ldc, bool accumulate) {
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    detail::check_cublas(
        cublasSgemm(handle_, ta == Transpose::Yes ? CUBLAS_OP_T : CUBLAS_OP_N,
                    tb == Transpose::Yes ? CUBLAS_OP_T : CUBLAS_OP_N, static_cast<int>(m), static_cast<int>(n),
                    static_cast<int>(k), &alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), &beta, c,
                    static_cast<int>(ldc)),
        "cublasSgemm");
  }

  /// Allocations made through this context so far (device: cudaMalloc calls, host: pinned).
  const AllocationCounts& allocations() const { return counts_; }

  /// Bytes of the cuBLAS workspace (the size cuBLAS recommends for Hopper).
  static constexpr std::size_t workspace_bytes = std::size_t{32} << 20;

private:
  int index_;
  std::string name_;
  cudaStream_t stream_{};
  AllocationCounts counts_;
  std::unique_ptr<detail::CountingGpuStream> eigen_stream_;
  std::unique_ptr<Eigen::GpuDevice> device_;
  cublasHandle_t handle_{};
  void* workspace_ = nullptr;
};

}  // namespace mlvae::device
