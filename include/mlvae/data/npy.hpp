/// @file
/// mlvae/data/npy.hpp — reader and writer for NumPy `.npy` files (format versions 1.0, 2.0, 3.0),
/// standard library only. Reads uint8, float32 and float64 arrays (either byte order, C or Fortran
/// order) into row-major (C order) values of the caller's scalar type; validates the header
/// (magic, version, dictionary keys, dtype, shape) and the payload size, and throws IoError naming
/// the file and what was expected and found.
#pragma once

#include "mlvae/core/error.hpp"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <type_traits>
#include <vector>

namespace mlvae {

/// An array read from a `.npy` file.
template <typename T>
struct NpyArray {
  std::vector<std::size_t> shape;  ///< dimensions, first (slowest in C order) first; {} for a scalar
  std::vector<T> values;           ///< product(shape) values in C (row-major) order
  std::string dtype;               ///< the file's dtype descriptor, e.g. "<f4", "|u1"

  /// Number of values, the product of the shape (1 for a scalar).
  std::size_t size() const {
    std::size_t n = 1;
    for (std::size_t d : shape) n *= d;
    return n;
  }
};

namespace detail {

/// Value of `key` in a NumPy header dictionary such as {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }.
inline std::string npy_header_value(const std::string& header, const std::string& key, const std::string& path) {
  const std::string quoted = "'" + key + "'";
  const std::size_t at = header.find(quoted);
  require<IoError>(at != std::string::npos, ".npy file '", path, "': the header has no '", key, "' entry: ", header);
  std::size_t p = header.find(':', at + quoted.size());
  require<IoError>(p != std::string::npos, ".npy file '", path, "': malformed header entry '", key, "': ", header);
  ++p;
  while (p < header.size() && header[p] == ' ') ++p;
  std::size_t end = p;
  if (p < header.size() && header[p] == '(') {
    end = header.find(')', p);
    require<IoError>(end != std::string::npos, ".npy file '", path, "': unterminated shape tuple: ", header);
    return header.substr(p, end + 1 - p);
  }
  if (p < header.size() && header[p] == '\'') {
    end = header.find('\'', p + 1);
    require<IoError>(end != std::string::npos, ".npy file '", path, "': unterminated string in header: ", header);
    return header.substr(p + 1, end - p - 1);
  }
  while (end < header.size() && header[end] != ',' && header[end] != '}') ++end;
  std::string v = header.substr(p, end - p);
  while (!v.empty() && v.back() == ' ') v.pop_back();
  return v;
}

inline std::vector<std::size_t> npy_parse_shape(const std::string& tuple, const std::string& path) {
  std::vector<std::size_t> shape;
  std::size_t i = 1;  // after '('
  while (i < tuple.size()) {
    while (i < tuple.size() && (tuple[i] == ' ' || tuple[i] == ',')) ++i;
    if (i >= tuple.size() || tuple[i] == ')') break;
    require<IoError>(std::isdigit(static_cast<unsigned char>(tuple[i])) != 0, ".npy file '", path,
                     "': expected non-negative integers in the shape, found ", tuple);
    std::size_t v = 0;
    while (i < tuple.size() && std::isdigit(static_cast<unsigned char>(tuple[i])) != 0) {
      require<IoError>(v <= (std::size_t{1} << 40), ".npy file '", path, "': implausible dimension in shape ", tuple);
      v = v * 10 + static_cast<std::size_t>(tuple[i] - '0');
      ++i;
    }
    shape.push_back(v);
  }
  return shape;
}

inline bool host_is_little_endian() {
  const std::uint16_t one = 1;
  unsigned char first = 0;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

}  // namespace detail

/// Reads a `.npy` file of dtype uint8 ('|u1'), float32 ('<f4' or '>f4') or float64 ('<f8' or
/// '>f8'), C or Fortran order, any rank, converting each value to T. The values come back in C
/// order whatever the file's order.
/// @throws IoError when the file is missing, not a .npy file (magic), of an unsupported version or
///         dtype, has a malformed header, or a payload whose size differs from the shape's.
template <typename T = double>
NpyArray<T> read_npy(const std::string& path) {
  static_assert(std::is_floating_point_v<T>, "read_npy converts to a floating-point type");
  std::error_code ec;
  require<IoError>(std::filesystem::is_regular_file(path, ec), ".npy file '", path,
                   "' does not exist or is not a regular file");
  std::ifstream in(path, std::ios::binary);
  require<IoError>(static_cast<bool>(in), ".npy file '", path, "' could not be opened for reading");
  char magic[8] = {};
  in.read(magic, 8);
  require<IoError>(in.gcount() == 8 && std::memcmp(magic, "\x93NUMPY", 6) == 0, ".npy file '", path,
                   "': not a NumPy .npy file (expected the magic bytes \\x93NUMPY)");
  const int major = static_cast<unsigned char>(magic[6]);
  require<IoError>(major >= 1 && major <= 3, ".npy file '", path, "': unsupported format version ", major, ".",
                   static_cast<int>(static_cast<unsigned char>(magic[7])), " (this reader knows 1.0 to 3.0)");
  unsigned char len_bytes[4] = {};
  const int len_size = major == 1 ? 2 : 4;
  in.read(reinterpret_cast<char*>(len_bytes), len_size);
  require<IoError>(in.gcount() == len_size, ".npy file '", path, "': truncated header");
  std::size_t header_len = 0;
  for (int i = len_size - 1; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  require<IoError>(header_len <= (std::size_t{1} << 20), ".npy file '", path, "': implausible header length ",
                   header_len);
  std::string header(header_len, '\0');
  in.read(header.data(), static_cast<std::streamsize>(header_len));
  require<IoError>(static_cast<std::size_t>(in.gcount()) == header_len, ".npy file '", path,
                   "': truncated header (expected ", header_len, " bytes)");
  require<IoError>(header.find('{') != std::string::npos && header.find('}') != std::string::npos, ".npy file '",
                   path, "': the header is not a dictionary: ", header);

  NpyArray<T> out;
  out.dtype = detail::npy_header_value(header, "descr", path);
  const std::string order = detail::npy_header_value(header, "fortran_order", path);
  require<IoError>(order == "True" || order == "False", ".npy file '", path,
                   "': expected fortran_order True or False, found ", order);
  const std::string shape_text = detail::npy_header_value(header, "shape", path);
  require<IoError>(!shape_text.empty() && shape_text.front() == '(', ".npy file '", path,
                   "': expected a shape tuple, found ", shape_text);
  out.shape = detail::npy_parse_shape(shape_text, path);

  const std::string& d = out.dtype;
  const bool u8 = d == "|u1" || d == "<u1" || d == ">u1" || d == "u1";
  const bool f4 = d == "<f4" || d == ">f4";
  const bool f8 = d == "<f8" || d == ">f8";
  require<IoError>(u8 || f4 || f8, ".npy file '", path, "': unsupported dtype '", d,
                   "'; expected uint8 ('|u1'), float32 ('<f4') or float64 ('<f8')");
  const std::size_t item = u8 ? 1 : (f4 ? 4 : 8);
  const bool swap = item > 1 && ((d[0] == '>') == detail::host_is_little_endian());

  const std::size_t count = out.size();
  require<IoError>(count <= (std::size_t{1} << 36), ".npy file '", path, "': implausibly large shape ", shape_text);
  std::vector<char> payload(count * item);
  in.read(payload.data(), static_cast<std::streamsize>(payload.size()));
  const auto got = static_cast<std::size_t>(in.gcount());
  require<IoError>(got == payload.size(), ".npy file '", path, "': expected ", payload.size(),
                   " bytes of data for shape ", shape_text, " and dtype ", d, ", found ", got, " (truncated file?)");
  in.peek();
  require<IoError>(in.eof(), ".npy file '", path, "': more bytes than the shape ", shape_text, " and dtype ", d,
                   " describe (", payload.size(), " bytes of data)");

  std::vector<T> raw(count);
  for (std::size_t i = 0; i < count; ++i) {
    char* p = payload.data() + i * item;
    if (swap) std::reverse(p, p + item);
    if (u8) {
      raw[i] = static_cast<T>(static_cast<unsigned char>(*p));
    } else if (f4) {
      float v;
      std::memcpy(&v, p, 4);
      raw[i] = static_cast<T>(v);
    } else {
      double v;
      std::memcpy(&v, p, 8);
      raw[i] = static_cast<T>(v);
    }
  }
  if (order == "False" || out.shape.size() < 2) {
    out.values = std::move(raw);
    return out;
  }
  // Fortran order: the first index varies fastest. Reorder into C order.
  const std::size_t rank = out.shape.size();
  out.values.resize(count);
  std::vector<std::size_t> index(rank, 0);
  for (std::size_t f = 0; f < count; ++f) {
    std::size_t c = 0;
    for (std::size_t k = 0; k < rank; ++k) c = c * out.shape[k] + index[k];
    out.values[c] = raw[f];
    for (std::size_t k = 0; k < rank; ++k) {  // advance the Fortran-order index
      if (++index[k] < out.shape[k]) break;
      index[k] = 0;
    }
  }
  return out;
}

/// Writes `values` (C order, product(shape) of them) as a version-1.0 `.npy` file of dtype
/// '<f8' (double), '<f4' (float) or '|u1' (std::uint8_t), C order.
/// @throws ArgumentError when the sizes differ; IoError when the file cannot be written.
template <typename T>
void write_npy(const std::string& path, const std::vector<std::size_t>& shape, const std::vector<T>& values) {
  static_assert(std::is_same_v<T, double> || std::is_same_v<T, float> || std::is_same_v<T, std::uint8_t>,
                "write_npy writes double, float or uint8");
  std::size_t count = 1;
  for (std::size_t d : shape) count *= d;
  require<ArgumentError>(count == values.size(), "write_npy: the shape holds ", count, " values, found ",
                         values.size());
  require<IoError>(detail::host_is_little_endian(), "write_npy: only little-endian hosts are supported");
  const char* descr = std::is_same_v<T, double> ? "<f8" : (std::is_same_v<T, float> ? "<f4" : "|u1");
  std::string tuple = "(";
  for (std::size_t k = 0; k < shape.size(); ++k)
    tuple += std::to_string(shape[k]) + (shape.size() == 1 ? "," : (k + 1 < shape.size() ? ", " : ""));
  tuple += ")";
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + tuple + ", }";
  const std::size_t unpadded = 10 + header.size() + 1;  // magic+version+length, header, '\n'
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  require<IoError>(static_cast<bool>(out), "write_npy: cannot create '", path, "'");
  out.write("\x93NUMPY\x01\x00", 8);
  const auto len = static_cast<std::uint16_t>(header.size());
  const char len_bytes[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  out.write(len_bytes, 2);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(reinterpret_cast<const char*>(values.data()), static_cast<std::streamsize>(values.size() * sizeof(T)));
  require<IoError>(static_cast<bool>(out), "write_npy: writing '", path, "' failed");
}

}  // namespace mlvae
