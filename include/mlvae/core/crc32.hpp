/// @file
/// mlvae/core/crc32.hpp — CRC-32 (IEEE 802.3 / zlib / PNG: reflected polynomial 0xEDB88320, initial
/// value and final XOR 0xFFFFFFFF) in the standard library alone: the checksum of model files (docs/model_file.md) and
/// checkpoints (io/checkpoint.hpp). Check value: crc32("123456789") == 0xCBF43926.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace mlvae {

namespace detail {
/// The 256-entry table of the byte-at-a-time CRC-32, built at compile time.
constexpr std::array<std::uint32_t, 256> make_crc32_table() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int bit = 0; bit < 8; ++bit) c = (c & 1u) ? (0xEDB88320u ^ (c >> 1)) : (c >> 1);
    table[i] = c;
  }
  return table;
}
inline constexpr std::array<std::uint32_t, 256> crc32_table = make_crc32_table();
}  // namespace detail

/// Continues a CRC-32 over `size` more bytes at `data`: start with `crc = 0` and feed the bytes in
/// any number of pieces; the result after the last piece is the CRC-32 of all of them.
inline std::uint32_t crc32_update(std::uint32_t crc, const void* data, std::size_t size) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (std::size_t i = 0; i < size; ++i) crc = detail::crc32_table[(crc ^ bytes[i]) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}

/// The CRC-32 of `size` bytes at `data`.
inline std::uint32_t crc32(const void* data, std::size_t size) { return crc32_update(0, data, size); }

/// `v` as 8 lower-case hex digits, as checksums are printed in messages and stored in JSON checkpoints.
inline std::string hex32(std::uint32_t v) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", static_cast<unsigned>(v));
  return buf;
}

}  // namespace mlvae
