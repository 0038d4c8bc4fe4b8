/// @file
/// mlvae/device/support.hpp — which model families the device step computes (device_runs_v), and the
/// refusal of the others naming the family and the device (refuse_device). Light: no Tensor module,
/// so a CPU program can refuse `--device` for such a model without including the device layer.
#pragma once

#include "mlvae/core/error.hpp"
#include "mlvae/data/grouped_sampler.hpp"

#include <string>
#include <type_traits>
#include <utility>

namespace mlvae::device {

/// The model families of the device layer: the ML-VAE family (a trunk, two heads and a decoder), the
/// VAE (an encoder and a decoder), and the others (no device form yet).
enum class ModelFamily { GroupModel, VAE, Other };

namespace detail {
/// Whether the device step computes `Model` trained with `Sampler`: the ML-VAE family (a model with a
/// trunk, two heads and a decoder) and the VAE (an encoder and a decoder) on grouped batches
/// (device/mlvae.hpp, DeviceForm).
template <typename Model, typename = void>
struct has_content_head : std::false_type {};
template <typename Model>
struct has_content_head<Model, std::void_t<decltype(std::declval<Model&>().content_head())>> : std::true_type {};
template <typename Model, typename = void>
struct has_encoder : std::false_type {};
template <typename Model>
struct has_encoder<Model, std::void_t<decltype(std::declval<Model&>().encoder())>> : std::true_type {};
/// The family of a model type (ModelFamily): by the parts it has.
template <typename Model>
struct family_of
    : std::integral_constant<ModelFamily, has_content_head<Model>::value ? ModelFamily::GroupModel
                                          : has_encoder<Model>::value    ? ModelFamily::VAE
                                                                         : ModelFamily::Other> {};
template <typename Model, typename Sampler>
struct device_runs : std::false_type {};
template <typename Model>
struct device_runs<Model, GroupedSampler> : std::bool_constant<family_of<Model>::value != ModelFamily::Other> {};
template <typename Model, typename Sampler>
inline constexpr bool device_runs_v = device_runs<Model, Sampler>::value;

/// The model family's name in a refusal: its model_kind() when it has one (the semi-supervised
/// model, M2), else "VAE".
template <typename Model, typename = void>
struct family_name {
  static std::string of(const Model&) { return "VAE"; }
};
template <typename Model>
struct family_name<Model, std::void_t<decltype(std::declval<const Model&>().model_kind())>> {
  static std::string of(const Model& m) { return m.model_kind(); }
};
}  // namespace detail

/// Raises ArgumentError for a model family the device step does not compute yet (the semi-supervised
/// model and M2), naming it and
/// `device` (what put_on does for it, callable where no device context exists, e.g. a CPU-only build).
template <typename Model>
[[noreturn]] void refuse_device(const Model& model, const std::string& device) {
  raise_error<ArgumentError>(mlvae::detail::concat(
      "the device layer has no ", detail::family_name<Model>::of(model), " yet: ", device,
      " runs the ML-VAE family and the VAE only; train this model on the CPU"));
}

}  // namespace mlvae::device
