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

namespace detail {
/// Whether the device step computes `Model` trained with `Sampler`: the ML-VAE family (a model with a
/// trunk, two heads and a decoder: DeviceMLVAE) on grouped batches.
template <typename Model, typename Sampler, typename = void>
struct device_runs : std::false_type {};
template <typename Model>
struct device_runs<Model, GroupedSampler,
                   std::void_t<decltype(std::declval<Model&>().trunk()), decltype(std::declval<Model&>().style_head()),
                               decltype(std::declval<Model&>().content_head())>> : std::true_type {};
template <typename Model, typename Sampler>
inline constexpr bool device_runs_v = device_runs<Model, Sampler>::value;

/// The model family's name in a refusal: its model_kind() when it has one (the semi-supervised
/// model, M2), else "VAE" (the β-VAE family).
template <typename Model, typename = void>
struct family_name {
  static std::string of(const Model&) { return "VAE"; }
};
template <typename Model>
struct family_name<Model, std::void_t<decltype(std::declval<const Model&>().model_kind())>> {
  static std::string of(const Model& m) { return m.model_kind(); }
};
}  // namespace detail

/// Raises ArgumentError for a model family the device step does not compute yet, naming it and
/// `device` (what put_on does for it, callable where no device context exists, e.g. a CPU-only build).
template <typename Model>
[[noreturn]] void refuse_device(const Model& model, const std::string& device) {
  raise_error<ArgumentError>(mlvae::detail::concat(
      "the device layer has no ", detail::family_name<Model>::of(model), " yet: ", device,
      " runs the ML-VAE family only (MLVAE with its product-of-Gaussians content); train this model on the CPU"));
}

}  // namespace mlvae::device
