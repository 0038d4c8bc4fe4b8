/// @file
/// mlvae/device/mlvae.hpp — a model on a device (device/context.hpp): model/mlvae.hpp's MLVAE or
/// model/vae.hpp's VAE on the device's context, with the device's driver of its step. Parameters, gradients and every
/// workspace live on the device; a step uploads the minibatch (through host staging memory, pinned
/// on the GPU) or gathers it there, and downloads one small block: the per-column loss terms and
/// the per-chunk squared gradient norms, from which the host forms LossTerms and the gradient norm
/// in a fixed order.
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/core/types.hpp"
#include "mlvae/device/context.hpp"
#include "mlvae/device/conv.hpp"
#include "mlvae/device/layers.hpp"
#include "mlvae/device/ops.hpp"
#include "mlvae/device/support.hpp"
#include "mlvae/dist/group_posterior.hpp"
#include "mlvae/model/loss_terms.hpp"
#include "mlvae/model/content_path.hpp"
#include "mlvae/model/mlvae.hpp"
#include "mlvae/model/vae.hpp"
#include "mlvae/nn/gemm_bf16.hpp"

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace mlvae::device {

/// What a device step reports: the loss terms and (after a backward pass) the gradient's L2 norm.
struct StepResult {
  LossTerms terms;            ///< as MLVAE::forward_backward returns them
  double gradient_norm = 0;   ///< ‖∇‖₂ of the whole parameter vector (0 after evaluate())
};

/// Refuses, with an error naming the option and the device, every ML-VAE option the device step
/// does not compute: the device layer runs the ML-VAE family (every content path of
/// model/content_path.hpp: product or mean, Ada, one content sample per group or per observation;
/// the reverse-cycle loss) in float32. Called when a model is put on a device and at every step, so
/// a model is never trained as something other than what was asked for.
/// @throws ArgumentError "<option> is not supported on <device>: ...".
inline void require_device_supports(Precision precision, const std::string& device) {
  if (precision != Precision::Float32)
    raise_error<ArgumentError>(mlvae::detail::concat(
        "bfloat16 products (--precision bf16) is not supported on ", device,
        ": the device step computes the ML-VAE family (ML-VAE, GVAE, Ada, content samples per group or per "
        "observation, the reverse-cycle loss) in float32; train this model on the CPU (--device cpu)"));
}

/// Column j of a gathered batch is column index[j] of the data (both in device memory).
template <typename T>
struct ColumnGather {
  const T* data;       ///< the data set, rows x M, column-major
  const Index* index;  ///< the batch's column indices
  Index rows;          ///< features per observation
  /// The batch element at (row, column).
  EIGEN_DEVICE_FUNC T operator()(const Eigen::array<Index, 2>& at) const { return data[index[at[1]] * rows + at[0]]; }
};

/// CPU layer `layer` built on context `ctx` (same sizes, same place in the parameter vector).
template <typename Ctx, typename Layer>
device_layer_t<Layer, Ctx> layer_on(Ctx& ctx, Layer& layer) {
  return device_layer_t<Layer, Ctx>(ctx, layer);
}

/// How a CPU model is built on a device, per model family: `type` is the same model class on
/// context Ctx (its layers device_layer_t of the CPU's); make() builds it from the CPU model (same
/// parameter layout, same options) after check(), which refuses by name what the device step does
/// not compute. The ML-VAE family and the VAE have one.
template <typename CpuModel, typename Ctx, ModelFamily = detail::family_of<CpuModel>::value>
struct DeviceForm {
  static_assert(sizeof(CpuModel) == 0,
                "mlvae::device: this model family has no device form (the ML-VAE family and the VAE have one)");
};

/// The type on context Ctx of a CPU model's part, given as the type its accessor returns.
template <typename Part, typename Ctx>
using device_part_t = device_layer_t<std::decay_t<Part>, Ctx>;

/// The ML-VAE family (MLVAE: every content path and the cycle loss; bf16 is refused).
template <typename CpuModel, typename Ctx>
struct DeviceForm<CpuModel, Ctx, ModelFamily::GroupModel> {
  /// The model on the device.
  using type = MLVAE<typename CpuModel::Scalar, device_part_t<decltype(std::declval<CpuModel&>().trunk()), Ctx>,
                     device_part_t<decltype(std::declval<CpuModel&>().style_head()), Ctx>,
                     device_part_t<decltype(std::declval<CpuModel&>().content_head()), Ctx>,
                     device_part_t<decltype(std::declval<CpuModel&>().decoder()), Ctx>,
                     std::decay_t<decltype(std::declval<const CpuModel&>().likelihood())>, Ctx>;
  /// Refuses the options the device step does not compute (require_device_supports).
  template <typename Model>
  static void check(const Model& /*model*/, Precision precision, const std::string& device) {
    require_device_supports(precision, device);
  }
  /// The model of `cpu` on `ctx`.
  static type make(Ctx& ctx, CpuModel& cpu) {
    check(cpu, cpu.precision(), ctx.describe());
    return type(ctx, layer_on(ctx, cpu.trunk()), layer_on(ctx, cpu.style_head()), layer_on(ctx, cpu.content_head()),
                layer_on(ctx, cpu.decoder()), cpu.likelihood(), cpu.options());
  }
};

/// The VAE (β-VAE; the KL decomposition of β-TCVAE / HFVAE and bf16 are refused).
template <typename CpuModel, typename Ctx>
struct DeviceForm<CpuModel, Ctx, ModelFamily::VAE> {
  /// The model on the device.
  using type = VAE<typename CpuModel::Scalar, device_part_t<decltype(std::declval<CpuModel&>().encoder()), Ctx>,
                   device_part_t<decltype(std::declval<CpuModel&>().decoder()), Ctx>,
                   std::decay_t<decltype(std::declval<const CpuModel&>().likelihood())>, Ctx>;
  /// Refuses the KL decomposition and bf16 products, naming them and the device.
  template <typename Model>
  static void check(const Model& model, Precision precision, const std::string& device) {
    const char* refused = model.uses_kl_decomposition() ? "the KL decomposition (beta-TCVAE / HFVAE, --model beta-tcvae | hfvae)"
                          : precision != Precision::Float32 ? "bfloat16 products (--precision bf16)"
                                                             : nullptr;
    if (refused != nullptr)
      raise_error<ArgumentError>(mlvae::detail::concat(refused, " is not supported on ", device,
                                                       ": the device step computes the VAE with its closed-form KL "
                                                       "(beta-VAE) in float32; train this model on the CPU"));
  }
  /// The model of `cpu` on `ctx`.
  static type make(Ctx& ctx, CpuModel& cpu) {
    check(cpu, cpu.precision(), ctx.describe());
    return type(ctx, layer_on(ctx, cpu.encoder()), layer_on(ctx, cpu.decoder()), cpu.likelihood(), cpu.kl_weight());
  }
};

/// A model on a device: the model's own class on context `Ctx` (DeviceForm: MLVAE or VAE, whose
/// step, compute_step, is written once), built from a CPU model, with the device's driver around
/// that step: the batch uploaded through staging memory or gathered on the device, counter-based
/// noise, and one readback per step (the per-column terms and the gradient-norm partial sums).
template <typename CpuModel, typename Ctx>
class DeviceModel {
public:
  /// The floating-point type.
  using Scalar = typename CpuModel::Scalar;
  /// Shorthand.
  using T = Scalar;
  /// The CPU model type this copies.
  using Cpu = CpuModel;
  /// How the model is built on the device.
  using Form = DeviceForm<CpuModel, Ctx>;
  /// The model on the device (MLVAE or VAE on context Ctx).
  using Model = typename Form::type;

  /// Builds the model of `cpu` in `ctx` (which must outlive this) and uploads its parameters.
  /// Throws ArgumentError naming the option when the device cannot compute one (DeviceForm::check).
  DeviceModel(Ctx& ctx, CpuModel& cpu)
      : model_(Form::make(ctx, cpu)), x_(ctx), eps0_(ctx), eps1_(ctx), eps2_(ctx), z_(ctx), mean_(ctx), readback_(ctx),
        staging_(ctx), readback_host_(ctx), index_staging_(ctx), index_dev_(ctx) {
    require<ShapeError>(model_.parameters().size() == cpu.parameters().size(), "DeviceModel: the device layers hold ",
                        model_.parameters().size(), " parameters, the model ", cpu.parameters().size());
    upload_parameters(cpu.parameters().values);
  }

  DeviceModel(const DeviceModel&) = delete;
  DeviceModel& operator=(const DeviceModel&) = delete;

  /// The context the model lives in.
  Ctx& context() { return model_.context(); }
  /// The context (device) the model lives on.
  const Ctx& context() const { return model_.context(); }
  /// The model on the device.
  Model& model() { return model_; }
  /// Features per observation.
  Index data_size() const { return model_.data_size(); }
  /// The ML-VAE's style dimensions.
  auto style_size() const { return model_.style_size(); }
  /// The ML-VAE's content dimensions.
  auto content_size() const { return model_.content_size(); }
  /// The VAE's latent dimensions.
  auto latent_size() const { return model_.latent_size(); }
  /// Number of parameters.
  Index parameter_count() const { return model_.parameters().size(); }
  /// Parameters on the device (parameter_count() x 1), in the CPU model's order.
  DeviceArray<T, Ctx>& parameters() { return model_.parameters().values; }
  /// Gradients on the device, same layout.
  DeviceArray<T, Ctx>& gradients() { return model_.parameters().gradients; }
  /// The ML-VAE's options (copied from the CPU model at construction). The KL weights may be
  /// changed; an option this device does not run is refused at the next step.
  auto& options() { return model_.options(); }

  /// Copies host parameter values (the CPU model's layout) to the device.
  void upload_parameters(const Vector<T>& values) {
    require<ShapeError>(values.size() == parameter_count(), "DeviceModel: expected ", parameter_count(),
                        " parameter values, found ", values.size());
    context().upload(parameters().data(), values.data(), static_cast<std::size_t>(values.size()) * sizeof(T));
    context().synchronize();
  }
  /// Copies the device parameters into `values` (resized), e.g. the CPU model's parameters().values.
  void download_parameters(Vector<T>& values) { parameters().download(values); }
  /// Copies the device gradients of the last backward pass into `gradients` (resized).
  void download_gradients(Vector<T>& gradients) { this->gradients().download(gradients); }

  /// Host staging memory for a rows x cols minibatch: fill it, then commit_batch().
  MatrixMap<T> batch_staging(Index cols) {
    staging_.resize(data_size(), cols);
    return staging_.matrix();
  }
  /// Checks the staged minibatch (finite values) and queues its copy to the device.
  void commit_batch() {
    const auto x = staging_.matrix();
    require<ShapeError>(x.cols() > 0, "DeviceModel: the batch is empty");
    require<ArgumentError>(std::isfinite(static_cast<double>(x.sum())) || x.allFinite(),
                           "DeviceModel: the input batch contains NaN or infinite values");
    x_.resize(x.rows(), x.cols());
    context().upload(x_.data(), staging_.data(), static_cast<std::size_t>(x_.size()) * sizeof(T));
  }
  /// Stages and uploads a host minibatch (data_size() x N).
  void upload_batch(const Matrix<T>& x) {
    require<ShapeError>(x.rows() == data_size(), "DeviceModel: expected observations with ", data_size(),
                        " features (rows), found ", x.rows());
    batch_staging(x.cols()) = x;
    commit_batch();
  }

  /// The minibatch gathered on the device: columns `indices` of `data` (data_size() x M in device
  /// memory, e.g. the whole training set uploaded once), so only the indices (8 bytes each) cross
  /// the bus, not the observations. The data's values were checked when they were uploaded.
  void gather_batch(const DeviceArray<T, Ctx>& data, const std::vector<Index>& indices) {
    require<ShapeError>(data.rows() == data_size() && !indices.empty(), "DeviceModel::gather_batch: expected data ",
                        "with ", data_size(), " rows and a non-empty batch, found ", data.rows(), " rows and ",
                        indices.size(), " indices");
    const Index n = static_cast<Index>(indices.size());
    index_staging_.resize(n, 1);
    Index* staged = index_staging_.data();
    for (Index j = 0; j < n; ++j) {
      const Index c = indices[static_cast<std::size_t>(j)];
      require<ShapeError>(c >= 0 && c < data.cols(), "DeviceModel::gather_batch: column ", c, " outside the ",
                          data.cols(), " columns of the data");
      staged[j] = c;
    }
    index_dev_.resize(n, 1);
    context().upload(index_dev_.data(), staged, static_cast<std::size_t>(n) * sizeof(Index));
    x_.resize(data_size(), n);
    assign(context().device(), x_.tensor(),
           x_.tensor().generate(ColumnGather<T>{data.data(), index_dev_.data(), data_size()}));
  }

  /// Forward and backward pass on the uploaded batch (groups `offsets`; one image per group for the
  /// VAE) with counter-based noise of key `noise_key` (device/ops.hpp, CounterNormal: noise stream 0
  /// from stream key 0 — the style or the VAE's latent —, stream 1 — the content — from key 1, the
  /// reverse cycle's styles from key 2).
  /// Overwrites gradients(); returns the loss terms and the gradient norm.
  StepResult forward_backward(const std::vector<Index>& offsets, std::uint64_t noise_key) {
    draw_noise(offsets, noise_key);
    return run(offsets, true);
  }
  /// Forward and backward pass with given noise (the model's noise_rows x noise_columns of streams 0,
  /// 1 and 2: style S x N, content C x G, or C x N with Ada or one sample per observation, and the
  /// cycle's S x G when it runs; the VAE's latent L x N and empty matrices), e.g. the noise a CPU
  /// model draws from its Rng.
  StepResult forward_backward(const std::vector<Index>& offsets, const Matrix<T>& eps0, const Matrix<T>& eps1,
                              const Matrix<T>& eps2 = {}) {
    set_noise(offsets, eps0, eps1, eps2);
    return run(offsets, true);
  }
  /// Forward pass only (gradients untouched), counter-based noise.
  LossTerms evaluate(const std::vector<Index>& offsets, std::uint64_t noise_key) {
    draw_noise(offsets, noise_key);
    return run(offsets, false).terms;
  }
  /// Forward pass only, given noise.
  LossTerms evaluate(const std::vector<Index>& offsets, const Matrix<T>& eps0, const Matrix<T>& eps1,
                     const Matrix<T>& eps2 = {}) {
    set_noise(offsets, eps0, eps1, eps2);
    return run(offsets, false).terms;
  }

  /// A step without the host (for capture in a CUDA graph): queues forward and backward on the
  /// uploaded batch with the noise of the step key held at `device_key` (one std::uint64_t in
  /// device memory, read when the step runs), the per-column loss terms and the gradient-norm
  /// partial sums into the readback block, and returns at once: no host synchronisation, no
  /// download, and no allocation once a step of the same shape has run. Its result equals
  /// forward_backward(offsets, key) for key = *device_key; read it with read_step_result().
  void queue_forward_backward(const std::vector<Index>& offsets, const std::uint64_t* device_key) {
    shape_noise(offsets);
    if (eps0_.size() > 0) fill_normal_at(context().device(), device_key, 0, eps0_.tensor());
    if (eps1_.size() > 0) fill_normal_at(context().device(), device_key, 1, eps1_.tensor());
    if (eps2_.size() > 0) fill_normal_at(context().device(), device_key, 2, eps2_.tensor());
    queue_run(offsets, true);
  }
  /// Waits for the device and returns the loss terms and gradient norm of the last queued step.
  StepResult read_step_result() {
    require<ShapeError>(!last_offsets_.empty(), "DeviceModel::read_step_result: no step queued yet");
    return finish();
  }
  /// The squared-gradient-norm partial sums of the last queued step (device memory), for
  /// DeviceAdam::queue_step; gradient_norm_partial_count() of them.
  const T* gradient_norm_partials() const { return readback_.data() + 3 * last_n_ + last_cycle_; }
  /// How many partial sums gradient_norm_partials() holds (0 before a backward pass).
  Index gradient_norm_partial_count() const { return last_chunks_; }

  /// Per-observation encodings of host images x (data_size() x N), computed on the device: style
  /// and content means and log-variances (each dims x N, host). The signature of MLVAE::encode,
  /// so eval/inference.hpp's strategies and eval/manipulation.hpp's grids take a device ML-VAE too.
  void encode(const Matrix<T>& x, Matrix<T>& style_mean, Matrix<T>& style_logvar, Matrix<T>& content_mean,
              Matrix<T>& content_logvar) {
    upload_batch(x);
    const auto& h = model_.trunk().forward(x_);
    split_rows(model_.style_head().forward(h), style_mean, style_logvar);
    split_rows(model_.content_head().forward(h), content_mean, content_logvar);
  }
  /// The VAE's encodings (VAE::encode's signature): posterior means and log-variances (latent x N).
  void encode(const Matrix<T>& x, Matrix<T>& mean, Matrix<T>& logvar) {
    upload_batch(x);
    split_rows(model_.encoder().forward(x_), mean, logvar);
  }

  /// The likelihood's mean (e.g. pixel probabilities) for host codes style (S x N) and content
  /// (C x N), decoded on the device (MLVAE::decode_mean's signature).
  void decode_mean(const Matrix<T>& style, const Matrix<T>& content, Matrix<T>& mean) {
    mlvae::detail::stack_codes(style, content, model_.style_size(), model_.content_size(), host_out_,
                               "DeviceModel::decode_mean");
    decode_mean(host_out_, mean);
  }
  /// The likelihood's mean for host latent codes z (the decoder's inputs x N; VAE::decode_mean's signature).
  void decode_mean(const Matrix<T>& z, Matrix<T>& mean) {
    const auto& out = decode(z);
    mean_.resize(data_size(), z.cols());
    TensorLikelihood<Likelihood>::mean(context().device(), likelihood(), out.tensor(), mean_.tensor());
    mean_.download(mean);
  }

  /// The decoder as the evaluation code uses it (eval/likelihood.hpp): forward(z) of host codes
  /// runs the device decoder and returns its raw output (the likelihood's parameters) on the host.
  class HostDecoder {
  public:
    /// A view of `model`'s decoder.
    explicit HostDecoder(DeviceModel& model) : model_(&model) {}
    /// Decoder output for host codes z (the decoder's inputs x N), downloaded to the host.
    const Matrix<T>& forward(const Matrix<T>& z) {
      model_->decode(z).download(model_->decoded_);
      return model_->decoded_;
    }

  private:
    DeviceModel* model_;
  };
  /// The decoder, host-facing (see HostDecoder): with encode() and likelihood() this lets
  /// eval/likelihood.hpp's importance-sampled log-likelihood run its decoder passes on the device.
  HostDecoder decoder() { return HostDecoder(*this); }
  /// The observation model (evaluated on the host by the evaluation code).
  const auto& likelihood() const { return model_.likelihood(); }

private:
  using Likelihood = std::decay_t<decltype(std::declval<const Model&>().likelihood())>;

  // The decoder's output (device memory) for host codes z.
  const DeviceArray<T, Ctx>& decode(const Matrix<T>& z) {
    auto& decoder = model_.decoder();
    require<ShapeError>(z.rows() == decoder.input_size(), "DeviceModel decoder: expected ", decoder.input_size(),
                        " latent rows, found ", z.rows());
    z_.upload(z);
    return decoder.forward(z_);
  }

  // The two row blocks [mean; log-variance] of a head's device output, downloaded.
  void split_rows(const DeviceArray<T, Ctx>& out, Matrix<T>& mean, Matrix<T>& logvar) {
    out.download(host_out_);
    const Index half = host_out_.rows() / 2;
    mean = host_out_.topRows(half);
    logvar = host_out_.bottomRows(half);
  }

  // Checks the batch and sizes the noise arrays of the two streams.
  void shape_noise(const std::vector<Index>& offsets) {
    require<ShapeError>(x_.cols() > 0, "DeviceModel: no batch uploaded (call upload_batch or commit_batch first)");
    check_group_offsets(offsets, x_.cols(), "DeviceModel");
    eps0_.resize(model_.noise_rows(0), model_.noise_columns(0, offsets));
    eps1_.resize(model_.noise_rows(1), model_.noise_columns(1, offsets));
    eps2_.resize(model_.noise_rows(2), model_.noise_columns(2, offsets));
  }

  void draw_noise(const std::vector<Index>& offsets, std::uint64_t key) {
    shape_noise(offsets);
    if (eps0_.size() > 0) fill_normal(context().device(), stream_key(key, 0), eps0_.tensor());
    if (eps1_.size() > 0) fill_normal(context().device(), stream_key(key, 1), eps1_.tensor());
    if (eps2_.size() > 0) fill_normal(context().device(), stream_key(key, 2), eps2_.tensor());
  }

  void set_noise(const std::vector<Index>& offsets, const Matrix<T>& eps0, const Matrix<T>& eps1,
                 const Matrix<T>& eps2) {
    shape_noise(offsets);
    require<ShapeError>(eps0.rows() == eps0_.rows() && eps0.cols() == eps0_.cols() && eps1.rows() == eps1_.rows() &&
                            eps1.cols() == eps1_.cols() && eps2.size() == eps2_.size(),
                        "DeviceModel: expected noise ", eps0_.rows(), "x", eps0_.cols(), ", ", eps1_.rows(), "x",
                        eps1_.cols(), " and ", eps2_.rows(), "x", eps2_.cols(), ", found ", eps0.rows(), "x",
                        eps0.cols(), ", ", eps1.rows(), "x", eps1.cols(), " and ", eps2.rows(), "x", eps2.cols());
    if (eps0_.size() > 0) eps0_.upload(eps0);
    if (eps1_.size() > 0) eps1_.upload(eps1);
    if (eps2_.size() > 0) eps2_.upload(eps2);
  }

  StepResult run(const std::vector<Index>& offsets, bool backward) {
    queue_run(offsets, backward);
    return finish();
  }

  // Queues the model's step (noise already drawn) and the gradient-norm partial sums into the
  // readback block [log p (N) | KL (N) | content KL (N) | cycle (G, when it runs) | norm partials];
  // no host synchronisation.
  void queue_run(const std::vector<Index>& offsets, bool backward) {
    Form::check(model_, Precision::Float32, context().describe());
    const Index n = x_.cols(), cycle = eps2_.cols();
    const Index chunks = backward ? norm_partial_count(parameter_count()) : 0;
    readback_.resize(3 * n + cycle + chunks, 1);
    model_.compute_step(x_, offsets, eps0_.data(), eps1_.data(), eps2_.data(), model_.normaliser(offsets), backward,
                        readback_.data());
    if (backward)
      squared_norm_partials(context().device(), gradients().data(), parameter_count(),
                            readback_.data() + 3 * n + cycle);
    last_offsets_ = offsets;
    last_n_ = n;
    last_cycle_ = cycle;
    last_chunks_ = chunks;
  }

  // The one download of the step, then the totals on the host in a fixed order.
  StepResult finish() {
    const Index n = last_n_, cycle = last_cycle_, chunks = last_chunks_;
    readback_host_.resize(readback_.rows(), 1);
    context().download(readback_host_.data(), readback_.data(), static_cast<std::size_t>(readback_.rows()) * sizeof(T));
    context().synchronize();
    const T* host = readback_host_.data();
    double sums[3] = {0, 0, 0}, cycle_sum = 0, norm2 = 0;
    for (int k = 0; k < 3; ++k)
      for (Index j = 0; j < n; ++j) sums[k] += static_cast<double>(host[k * n + j]);
    for (Index g = 0; g < cycle; ++g) cycle_sum += static_cast<double>(host[3 * n + g]);
    for (Index c = 0; c < chunks; ++c) norm2 += static_cast<double>(host[3 * n + cycle + c]);
    StepResult result;
    result.terms = model_.loss_terms(sums, last_offsets_);
    result.terms.loss += cycle_sum;
    result.gradient_norm = std::sqrt(norm2);
    return result;
  }

  Model model_;
  DeviceArray<T, Ctx> x_, eps0_, eps1_, eps2_, z_, mean_, readback_;  // mean_: decode_mean's, not the step's noise
  HostStaging<T, Ctx> staging_, readback_host_;
  HostStaging<Index, Ctx> index_staging_;  // gather_batch's column indices on their way to the device
  DeviceArray<Index, Ctx> index_dev_;
  std::vector<Index> last_offsets_;      // the groups of the last queued step
  Index last_n_ = 0, last_cycle_ = 0, last_chunks_ = 0;  // the shape of its readback
  Matrix<T> host_out_, decoded_;         // results on their way to the caller
};

/// The ML-VAE on a device (the name of the ML-VAE family's DeviceModel).
template <typename CpuModel, typename Ctx>
using DeviceMLVAE = DeviceModel<CpuModel, Ctx>;

/// The device copy of `model` in `ctx`: `auto gpu = to_device(model, ctx);` (the one line a CPU
/// program changes). Parameters are uploaded; copy them back with download_parameters().
template <typename Model, typename Ctx>
DeviceModel<Model, Ctx> to_device(Model& model, Ctx& ctx) {
  return DeviceModel<Model, Ctx>(ctx, model);
}

}  // namespace mlvae::device
