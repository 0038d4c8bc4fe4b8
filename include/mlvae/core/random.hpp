/// @file
/// mlvae/core/random.hpp — a small, seedable, serialisable random number generator.
/// xoshiro256++ with SplitMix64 seeding; normals by Box–Muller. Same numbers on every platform and
/// standard library (unlike std::normal_distribution), and the whole state is four words plus a cache.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include <Eigen/Core>

namespace mlvae {

/// Seedable xoshiro256++ generator with Box–Muller normals; identical streams on every platform.
/// Satisfies UniformRandomBitGenerator, so it can drive `<random>` distributions and std::shuffle.
class Rng {
public:
  /// Type of the raw 64-bit outputs.
  using result_type = std::uint64_t;

  /// Seeds the generator with `seed` (see reseed()).
  explicit Rng(std::uint64_t seed = 0x5eedULL) { reseed(seed); }

  /// Restarts the stream from `seed` (SplitMix64 expands it into the 256-bit state).
  void reseed(std::uint64_t seed) {
    std::uint64_t z = seed;
    for (auto& word : state_) {
      z += 0x9e3779b97f4a7c15ULL;
      std::uint64_t x = z;
      x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
      x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
      word = x ^ (x >> 31);
    }
    has_cached_normal_ = false;
    cached_normal_ = 0.0;
  }

  /// Smallest raw output (0).
  static constexpr result_type min() { return 0; }
  /// Largest raw output (2^64 − 1).
  static constexpr result_type max() { return std::numeric_limits<result_type>::max(); }

  /// Next 64 random bits (xoshiro256++).
  result_type operator()() {
    const std::uint64_t result = rotl(state_[0] + state_[3], 23) + state_[0];
    const std::uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  /// Uniform double in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>((*this)() >> 11) * 0x1.0p-53; }

  /// Uniform integer in [0, n) without modulo bias (n > 0).
  std::uint64_t uniform_index(std::uint64_t n) {
    const std::uint64_t limit = max() - max() % n;
    std::uint64_t r;
    do {
      r = (*this)();
    } while (r >= limit);
    return r % n;
  }

  /// Standard normal N(0, 1) (Box–Muller; the second value of each pair is cached).
  double normal() {
    if (has_cached_normal_) {
      has_cached_normal_ = false;
      return cached_normal_;
    }
    double u1 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    const double radius = std::sqrt(-2.0 * std::log(u1));
    const double angle = 6.283185307179586476925 * u2;
    cached_normal_ = radius * std::sin(angle);
    has_cached_normal_ = true;
    return radius * std::cos(angle);
  }

  /// Fills an Eigen object with independent N(0, 1) draws, column by column.
  template <typename Derived>
  void fill_normal(Derived&& m) {
    using Scalar = typename std::decay_t<Derived>::Scalar;
    for (Eigen::Index j = 0; j < m.cols(); ++j)
      for (Eigen::Index i = 0; i < m.rows(); ++i) m(i, j) = static_cast<Scalar>(normal());
  }

  /// The complete state, for checkpoints: four state words, the cache flag and the cached normal.
  const std::array<std::uint64_t, 4>& state() const { return state_; }
  /// Whether the second normal of the last Box–Muller pair is cached (part of the state).
  bool has_cached_normal() const { return has_cached_normal_; }
  /// The cached second normal (meaningful only when has_cached_normal()).
  double cached_normal() const { return cached_normal_; }
  /// Restores a state saved from state(), has_cached_normal() and cached_normal().
  void set_state(const std::array<std::uint64_t, 4>& s, bool has_cached, double cached) {
    state_ = s;
    has_cached_normal_ = has_cached;
    cached_normal_ = cached;
  }

  /// True when both generators will produce the same future stream.
  friend bool operator==(const Rng& a, const Rng& b) {
    return a.state_ == b.state_ && a.has_cached_normal_ == b.has_cached_normal_ &&
           (!a.has_cached_normal_ || a.cached_normal_ == b.cached_normal_);
  }

private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

  std::array<std::uint64_t, 4> state_{};
  bool has_cached_normal_ = false;
  double cached_normal_ = 0.0;
};

}  // namespace mlvae
