/// @file
/// mlvae/device/context.hpp — the device layer's handle on one compute device: the Eigen device
/// that evaluates Tensor expressions (`.device(d)`, through assign()), a counting wrapper around its allocator, host
/// staging memory, host↔device copies and the matrix products. `CpuContext<EigenDevice>` runs on
/// Eigen's DefaultDevice or ThreadPoolDevice with mlvae's CPU Gemm; `CudaContext`
/// (device/cuda.cuh, nvcc only) runs on Eigen's GpuDevice with cuBLAS on the same stream.
/// Every device buffer (DeviceArray) is allocated through its context, so a test can prove that a
/// steady-state step allocates nothing. docs/architecture.md, "The device layer".
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/nn/gemm.hpp"

#include <unsupported/Eigen/CXX11/Tensor>

#include <cstddef>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>

namespace mlvae::device {

/// A device matrix view for Eigen Tensor expressions: rows x cols, column-major, like mlvae::Matrix.
template <typename T>
using TensorMatrix = Eigen::TensorMap<Eigen::Tensor<T, 2, Eigen::ColMajor, Index>>;
/// A device vector view for Eigen Tensor expressions.
template <typename T>
using TensorVector = Eigen::TensorMap<Eigen::Tensor<T, 1, Eigen::ColMajor, Index>>;

/// Evaluates `lhs = rhs` on Eigen device `d`, like `lhs.device(d) = rhs`, but always with Eigen's
/// element-wise (non-tiled) executor: Eigen 3.4's tiled CPU executor, which it picks for slices and
/// broadcasts, allocates a scratch buffer on every assignment, and a steady-state step must not
/// allocate. (On the GPU Eigen has only the element-wise executor.) Every Tensor expression of the
/// device layer is evaluated through this function.
template <typename D, typename L, typename R>
void assign(const D& d, L&& lhs, const R& rhs) {
  using Lhs = std::remove_reference_t<L>;
  using Assign = const Eigen::TensorAssignOp<Lhs, const R>;
  Assign op(lhs, rhs);
  Eigen::internal::TensorExecutor<Assign, D, Eigen::internal::IsVectorizable<D, Assign>::value,
                                  Eigen::internal::TiledEvaluation::Off>::run(op, d);
}

template <typename T, typename Ctx>
class DeviceArray;
template <typename T, typename Ctx>
struct DeviceParameterStore;

/// Allocation counts of a context (each call to the wrapped allocator counts once).
struct AllocationCounts {
  long device = 0;  ///< device buffers allocated (DeviceArray storage, and on the GPU Eigen's scratchpad)
  long host = 0;    ///< host staging buffers allocated (pinned memory on the GPU)
};

/// The CPU device of the device layer: Tensor expressions on `EigenDevice`
/// (Eigen::DefaultDevice, or Eigen::ThreadPoolDevice with EIGEN_USE_THREADS defined before the
/// first Eigen include), products on mlvae's Gemm (nn/gemm.hpp, OpenMP threads). "Device memory"
/// is host memory, so uploads and downloads are plain copies; the code above it is the same as on
/// the GPU, which is what the tests check against the CPU model.
template <typename EigenDevice = Eigen::DefaultDevice>
class CpuContext {
public:
  /// The Eigen device that evaluates the element-wise passes and reductions.
  using Device = EigenDevice;
  /// Per call site state of a matrix product (packing buffers kept from call to call).
  template <typename T>
  using GemmSite = Gemm<T>;
  /// The array a layer keeps and returns on this device.
  template <typename T>
  using Array = DeviceArray<T, CpuContext>;
  /// A model's parameters and gradients on this device.
  template <typename T>
  using Parameters = DeviceParameterStore<T, CpuContext>;

  /// A context on a default-constructed device (Eigen::DefaultDevice).
  CpuContext() = default;
  /// A context on `device` (e.g. an Eigen::ThreadPoolDevice; the pool must outlive the context).
  explicit CpuContext(const EigenDevice& device) : device_(device) {}
  CpuContext(const CpuContext&) = delete;
  CpuContext& operator=(const CpuContext&) = delete;

  /// The Eigen device for `.device(d)`.
  const Device& device() const { return device_; }
  /// "cpu", for logs.
  std::string describe() const { return "cpu"; }
  /// Device memory free now: host memory, not limited here.
  std::size_t free_memory() const { return static_cast<std::size_t>(-1); }

  /// Device memory for `bytes` bytes, through the Eigen device's allocator; counted.
  void* allocate(std::size_t bytes) {
    ++counts_.device;
    return device_.allocate(bytes);
  }
  /// Frees memory from allocate().
  void deallocate(void* p) { device_.deallocate(p); }
  /// Host staging memory (pinned on the GPU; plain here); counted.
  void* allocate_host(std::size_t bytes) {
    ++counts_.host;
    return Eigen::internal::aligned_malloc(bytes);
  }
  /// Frees memory from allocate_host().
  void deallocate_host(void* p) { Eigen::internal::aligned_free(p); }
  /// Copies host → device (asynchronous on the GPU; a memcpy here).
  void upload(void* device_dst, const void* host_src, std::size_t bytes) { std::memcpy(device_dst, host_src, bytes); }
  /// Copies device → host (asynchronous on the GPU: call synchronize() before reading).
  void download(void* host_dst, const void* device_src, std::size_t bytes) {
    std::memcpy(host_dst, device_src, bytes);
  }
  /// Waits for all queued work (nothing to wait for on the CPU).
  void synchronize() {}

  /// C (m x n, leading dimension ldc) = op(A)·op(B), or += when `accumulate`; column-major
  /// operands in device memory, the same convention as Gemm::run.
  template <typename T>
  void gemm(GemmSite<T>& site, Transpose ta, Transpose tb, Index m, Index n, Index k, const T* a, Index lda, const T* b,
            Index ldb, T* c, Index ldc, bool accumulate) {
    site.run(ta, tb, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
  }

  /// Allocations made through this context so far.
  const AllocationCounts& allocations() const { return counts_; }

private:
  EigenDevice device_{};
  AllocationCounts counts_;
};

/// An owning rows x cols column-major array in a context's device memory. Storage is reallocated
/// only when a shape needs more elements than it holds, so a steady-state step does not allocate.
template <typename T, typename Ctx>
class DeviceArray {
public:
  /// An empty array bound to `ctx` (which must outlive it).
  explicit DeviceArray(Ctx& ctx) : ctx_(&ctx) {}
  /// rows x cols elements (uninitialised).
  DeviceArray(Ctx& ctx, Index rows, Index cols) : ctx_(&ctx) { resize(rows, cols); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  /// Takes the storage of `other`.
  DeviceArray(DeviceArray&& other) noexcept
      : ctx_(other.ctx_), data_(std::exchange(other.data_, nullptr)), capacity_(std::exchange(other.capacity_, 0)),
        rows_(std::exchange(other.rows_, 0)), cols_(std::exchange(other.cols_, 0)) {}
  /// Takes the storage of `other`, freeing this one's.
  DeviceArray& operator=(DeviceArray&& other) noexcept {
    if (this != &other) {
      release();
      ctx_ = other.ctx_;
      data_ = std::exchange(other.data_, nullptr);
      capacity_ = std::exchange(other.capacity_, 0);
      rows_ = std::exchange(other.rows_, 0);
      cols_ = std::exchange(other.cols_, 0);
    }
    return *this;
  }
  ~DeviceArray() { release(); }

  /// Sets the shape; allocates (through the context) only when rows·cols exceeds the capacity.
  void resize(Index rows, Index cols) {
    require<ShapeError>(rows >= 0 && cols >= 0, "DeviceArray: negative shape ", rows, "x", cols);
    if (rows * cols > capacity_) {
      release();
      data_ = static_cast<T*>(ctx_->allocate(static_cast<std::size_t>(rows * cols) * sizeof(T)));
      capacity_ = rows * cols;
    }
    rows_ = rows;
    cols_ = cols;
  }

  /// Rows.
  Index rows() const { return rows_; }
  /// Columns.
  Index cols() const { return cols_; }
  /// rows·cols.
  Index size() const { return rows_ * cols_; }
  /// Device pointer to the first element.
  T* data() { return data_; }
  /// Device pointer to the first element.
  const T* data() const { return data_; }
  /// The context owning the memory.
  Ctx& context() const { return *ctx_; }
  /// A Tensor view of the whole array (rows x cols).
  TensorMatrix<T> tensor() { return TensorMatrix<T>(data_, rows_, cols_); }
  /// A read-only Tensor view of the whole array.
  TensorMatrix<const T> tensor() const { return TensorMatrix<const T>(data_, rows_, cols_); }

  /// Copies `host` into the array (resizing it to the host's shape).
  template <typename Derived>
  void upload(const Eigen::PlainObjectBase<Derived>& host) {
    resize(host.rows(), host.cols());
    if (size() > 0) ctx_->upload(data_, host.data(), static_cast<std::size_t>(size()) * sizeof(T));
  }
  /// Copies the array into `host` (resized to rows x cols) and waits for the copy.
  template <typename Derived>
  void download(Eigen::PlainObjectBase<Derived>& host) const {
    host.resize(rows_, cols_);
    if (size() > 0) ctx_->download(host.data(), data_, static_cast<std::size_t>(size()) * sizeof(T));
    ctx_->synchronize();
  }

private:
  void release() {
    if (data_) ctx_->deallocate(data_);
    data_ = nullptr;
    capacity_ = 0;
  }

  Ctx* ctx_;
  T* data_ = nullptr;
  Index capacity_ = 0;
  Index rows_ = 0, cols_ = 0;
};

/// Sizes `a` to rows x cols (allocating only when it needs more elements than it holds): the
/// device's ensure_shape (core/types.hpp), so a layer written once sizes either array the same way.
template <typename T, typename Ctx>
void ensure_shape(DeviceArray<T, Ctx>& a, Index rows, Index cols) {
  a.resize(rows, cols);
}

/// A model's parameters and their gradients in device memory: nn/layer.hpp's ParameterStore on a
/// device (the same members, so bind_layers and a model written once use either).
template <typename T, typename Ctx>
struct DeviceParameterStore {
  /// An empty store on `ctx` (which must outlive it).
  explicit DeviceParameterStore(Ctx& ctx) : values(ctx), gradients(ctx), ctx_(&ctx) {}
  DeviceArray<T, Ctx> values;     ///< the parameters (n x 1), each layer's slice contiguous
  DeviceArray<T, Ctx> gradients;  ///< dLoss/dvalues, same layout

  /// Number of scalar parameters.
  Index size() const { return values.rows(); }
  /// Resizes both arrays to `n` and sets them to zero (invalidates bound layer views).
  void resize(Index n) {
    values.resize(n, 1);
    gradients.resize(n, 1);
    ctx_->device().memset(values.data(), 0, static_cast<std::size_t>(n) * sizeof(T));
    zero_gradients();
  }
  /// Sets every gradient to zero (queued on the device).
  void zero_gradients() { ctx_->device().memset(gradients.data(), 0, static_cast<std::size_t>(size()) * sizeof(T)); }

private:
  Ctx* ctx_;
};

/// An owning host staging buffer from a context (pinned memory on the GPU, so uploads from it are
/// asynchronous), with a Matrix view. Reallocated only when a shape needs more elements.
template <typename T, typename Ctx>
class HostStaging {
public:
  /// An empty buffer bound to `ctx` (which must outlive it).
  explicit HostStaging(Ctx& ctx) : ctx_(&ctx) {}
  HostStaging(const HostStaging&) = delete;
  HostStaging& operator=(const HostStaging&) = delete;
  /// Takes the storage of `other`.
  HostStaging(HostStaging&& other) noexcept
      : ctx_(other.ctx_), data_(std::exchange(other.data_, nullptr)), capacity_(std::exchange(other.capacity_, 0)),
        rows_(std::exchange(other.rows_, 0)), cols_(std::exchange(other.cols_, 0)) {}
  HostStaging& operator=(HostStaging&&) = delete;
  ~HostStaging() {
    if (data_) ctx_->deallocate_host(data_);
  }

  /// Sets the shape; allocates only when rows·cols exceeds the capacity.
  void resize(Index rows, Index cols) {
    if (rows * cols > capacity_) {
      if (data_) ctx_->deallocate_host(data_);
      data_ = static_cast<T*>(ctx_->allocate_host(static_cast<std::size_t>(rows * cols) * sizeof(T)));
      capacity_ = rows * cols;
    }
    rows_ = rows;
    cols_ = cols;
  }
  /// The buffer as a rows x cols host matrix.
  MatrixMap<T> matrix() { return MatrixMap<T>(data_, rows_, cols_); }
  /// Host pointer to the first element.
  T* data() { return data_; }
  /// Rows.
  Index rows() const { return rows_; }
  /// Columns.
  Index cols() const { return cols_; }

private:
  Ctx* ctx_;
  T* data_ = nullptr;
  Index capacity_ = 0;
  Index rows_ = 0, cols_ = 0;
};

}  // namespace mlvae::device
