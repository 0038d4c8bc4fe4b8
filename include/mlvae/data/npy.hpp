/// @file
/// mlvae/data/npy.hpp — reader and writer for NumPy `.npy` files (format versions 1.0, 2.0, 3.0),
/// standard library only. Reads every dtype NumPy writes for plain arrays — bool, signed and
/// unsigned integers of 1 to 8 bytes, float16/32/64, fixed-width strings ('<U', '|S') — in either
/// byte order and C or Fortran order; numbers come back as the caller's floating-point type, any
/// dtype as text (for group keys and labels). The header is parsed as the Python dict literal it
/// is; every error is an IoError naming the file and what was expected and found.
#pragma once

#include "mlvae/core/error.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
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

/// A `.npy` dtype descriptor taken apart: '<i8' is {'<', 'i', 8, 1}, '<U3' is {'<', 'U', 12, 3}.
struct NpyDtype {
  char order = '|';        ///< '<' little-endian, '>' big-endian, '|' not applicable, '=' native
  char kind = 'f';         ///< 'b' bool, 'i' signed, 'u' unsigned, 'f' float, 'U' UTF-32 text, 'S' bytes
  std::size_t item = 0;    ///< bytes per value
  std::size_t chars = 1;   ///< characters per value ('U' and 'S'), else 1

  /// True for the kinds read as numbers (everything but text).
  bool numeric() const { return kind != 'U' && kind != 'S'; }
  /// True for uint8, the image byte that the data loaders scale by 1/255.
  bool is_uint8() const { return kind == 'u' && item == 1; }
};

namespace detail {

/// A value of a `.npy` header: the Python literal subset NumPy writes (dict, tuple or list,
/// string, integer, and the names True, False and None).
struct PyLiteral {
  enum class Kind { dict, tuple, string, integer, name } kind = Kind::name;
  std::string text;                                      ///< string contents, integer digits or name
  std::vector<PyLiteral> items;                          ///< tuple or list elements
  std::vector<std::pair<std::string, PyLiteral>> entries;  ///< dict entries (string keys)
};

/// Recursive-descent parser for the header's dict literal; throws IoError quoting the header.
class PyLiteralParser {
public:
  PyLiteralParser(const std::string& text, const std::string& path) : s_(text), path_(path) {}

  PyLiteral parse_all() {
    PyLiteral v = value(0);
    skip();
    if (p_ < s_.size()) fail("unexpected text after the dictionary");
    return v;
  }

private:
  [[noreturn]] void fail(const char* what) const {
    raise_error<IoError>(concat(".npy file '", path_, "': the header is not a Python dict literal (", what,
                                " at character ", p_, "): ", s_));
  }
  void skip() {
    while (p_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[p_])) != 0) ++p_;
  }
  PyLiteral value(int depth) {
    if (depth > 8) fail("nested too deeply");
    skip();
    if (p_ >= s_.size()) fail("the text ends where a value was expected");
    const char c = s_[p_];
    if (c == '{') return sequence(depth, '}', true);
    if (c == '(') return sequence(depth, ')', false);
    if (c == '[') return sequence(depth, ']', false);
    if (c == '\'' || c == '"') return string();
    PyLiteral v;
    if (c == '-' || c == '+' || std::isdigit(static_cast<unsigned char>(c)) != 0) {
      v.kind = PyLiteral::Kind::integer;
      if (c == '-' || c == '+') v.text.push_back(s_[p_++]);
      while (p_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[p_])) != 0) v.text.push_back(s_[p_++]);
      if (v.text.empty() || !std::isdigit(static_cast<unsigned char>(v.text.back()))) fail("a sign without digits");
      if (p_ < s_.size() && (s_[p_] == 'L' || s_[p_] == 'l')) ++p_;  // Python 2 NumPy wrote (3L, 4L)
      return v;
    }
    if (std::isalpha(static_cast<unsigned char>(c)) != 0 || c == '_') {
      v.kind = PyLiteral::Kind::name;
      while (p_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[p_])) != 0 || s_[p_] == '_'))
        v.text.push_back(s_[p_++]);
      return v;
    }
    fail("unexpected character");
  }
  PyLiteral string() {
    PyLiteral v;
    v.kind = PyLiteral::Kind::string;
    const char quote = s_[p_++];
    while (p_ < s_.size() && s_[p_] != quote) {
      if (s_[p_] == '\\' && p_ + 1 < s_.size()) ++p_;
      v.text.push_back(s_[p_++]);
    }
    if (p_ >= s_.size()) fail("unterminated string");
    ++p_;
    return v;
  }
  PyLiteral sequence(int depth, char close, bool dict) {
    PyLiteral v;
    v.kind = dict ? PyLiteral::Kind::dict : PyLiteral::Kind::tuple;
    ++p_;
    for (;;) {
      skip();
      if (p_ < s_.size() && s_[p_] == close) {
        ++p_;
        return v;
      }
      if (dict) {
        skip();
        if (p_ >= s_.size() || (s_[p_] != '\'' && s_[p_] != '"')) fail("expected a quoted key");
        std::string key = string().text;
        skip();
        if (p_ >= s_.size() || s_[p_] != ':') fail("expected ':' after a key");
        ++p_;
        v.entries.emplace_back(std::move(key), value(depth + 1));
      } else {
        v.items.push_back(value(depth + 1));
      }
      skip();
      if (p_ < s_.size() && s_[p_] == ',') {
        ++p_;
        continue;
      }
      skip();
      if (p_ < s_.size() && s_[p_] == close) continue;
      fail(dict ? "expected ',' or '}'" : "expected ',' or a closing bracket");
    }
  }

  const std::string& s_;
  const std::string& path_;
  std::size_t p_ = 0;
};

/// The entry `key` of a parsed header dict; throws IoError naming the missing key and quoting the header.
inline const PyLiteral& npy_header_entry(const PyLiteral& dict, const std::string& key, const std::string& header,
                                         const std::string& path) {
  for (const auto& [k, v] : dict.entries)
    if (k == key) return v;
  raise_error<IoError>(concat(".npy file '", path, "': the header has no '", key, "' entry: ", header));
}

/// Parses a dtype descriptor such as '<f4', '|u1', '|b1', '<U12', '|S3'.
inline NpyDtype npy_parse_dtype(const std::string& d, const std::string& path) {
  NpyDtype t;
  std::size_t p = 0;
  if (p < d.size() && (d[p] == '<' || d[p] == '>' || d[p] == '|' || d[p] == '=')) t.order = d[p++];
  const char* expected = "; expected bool ('|b1'), an integer ('|i1' to '<i8', '|u1' to '<u8'), a float "
                         "('<f2', '<f4', '<f8') or fixed-width text ('<U<n>', '|S<n>')";
  require<IoError>(p < d.size(), ".npy file '", path, "': unsupported dtype '", d, "'", expected);
  char kind = d[p++];
  if (kind == '?') kind = 'b';
  if (kind == 'a') kind = 'S';
  std::size_t n = 0;
  bool digits = false;
  for (; p < d.size() && std::isdigit(static_cast<unsigned char>(d[p])) != 0 && n < 100000; ++p, digits = true)
    n = n * 10 + static_cast<std::size_t>(d[p] - '0');
  if (!digits && kind == 'b') n = 1;
  t.kind = kind;
  const bool ok = p == d.size() && ((kind == 'b' && n == 1) ||
                                    ((kind == 'i' || kind == 'u') && (n == 1 || n == 2 || n == 4 || n == 8)) ||
                                    (kind == 'f' && (n == 2 || n == 4 || n == 8)) ||
                                    ((kind == 'U' || kind == 'S') && n >= 1 && n < 100000));
  require<IoError>(ok, ".npy file '", path, "': unsupported dtype '", d, "'", expected);
  t.chars = (kind == 'U' || kind == 'S') ? n : 1;
  t.item = kind == 'U' ? 4 * n : n;
  if (t.order == '=') {
    const std::uint16_t one = 1;
    unsigned char first = 0;
    std::memcpy(&first, &one, 1);
    t.order = first == 1 ? '<' : '>';
  }
  return t;
}

inline bool host_is_little_endian() {
  const std::uint16_t one = 1;
  unsigned char first = 0;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

/// IEEE binary16 bits to float (subnormals, infinities and NaN included).
inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1fu;
  std::uint32_t mantissa = h & 0x3ffu;
  std::uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    std::uint32_t e = 113;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --e;
    }
    bits = sign | (e << 23) | ((mantissa & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

/// A `.npy` file's shape, dtype and values as bytes in C order, each value in the host's byte
/// order (for text, UTF-32 code units in the host's order).
struct NpyRaw {
  std::vector<std::size_t> shape;
  std::string descr;
  NpyDtype dtype;
  std::vector<char> bytes;
  std::string shape_text;  ///< the shape as the header wrote it, for messages

  std::size_t size() const {
    std::size_t n = 1;
    for (std::size_t d : shape) n *= d;
    return n;
  }
  const char* item(std::size_t i) const { return bytes.data() + i * dtype.item; }

  /// Calls f with value i (numeric dtypes only) in its own type: bool, the integer of the file's
  /// width and signedness, float (for float16 and float32) or double.
  template <typename F>
  auto visit(std::size_t i, F&& f) const {
    const char* p = item(i);
    auto as = [&](auto v) {
      std::memcpy(&v, p, sizeof(v));
      return f(v);
    };
    const std::size_t w = dtype.item;
    switch (dtype.kind) {
      case 'b': return f(*p != 0);
      case 'i': return w == 1 ? as(std::int8_t{}) : w == 2 ? as(std::int16_t{}) : w == 4 ? as(std::int32_t{})
                                                                                : as(std::int64_t{});
      case 'u': return w == 1 ? as(std::uint8_t{}) : w == 2 ? as(std::uint16_t{}) : w == 4 ? as(std::uint32_t{})
                                                                                 : as(std::uint64_t{});
      default: {
        if (w == 2) {
          std::uint16_t h;
          std::memcpy(&h, p, 2);
          return f(half_to_float(h));
        }
        return w == 4 ? as(float{}) : as(double{});
      }
    }
  }

  /// Value i as a double (numeric dtypes only).
  double number(std::size_t i) const {
    return visit(i, [](auto v) { return static_cast<double>(v); });
  }

  /// Value i as text: integers exactly in decimal, bool as False/True, floats in their shortest
  /// round-trip form (3.0 is "3"), strings as UTF-8 without NumPy's trailing NUL padding.
  std::string text(std::size_t i) const {
    const char* p = item(i);
    switch (dtype.kind) {
      case 'b':
      case 'i':
      case 'u':
      case 'f':
        return visit(i, [](auto v) -> std::string {
          using V = decltype(v);
          char buf[64];
          if constexpr (std::is_same_v<V, bool>) {
            return v ? "True" : "False";
          } else {
            if constexpr (std::is_floating_point_v<V>) {
              if (std::isnan(v)) return "nan";
              if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
            }
            return std::string(buf, std::to_chars(buf, buf + sizeof(buf), v).ptr);
          }
        });
      case 'S': {
        std::string s(p, dtype.item);
        while (!s.empty() && s.back() == '\0') s.pop_back();
        return s;
      }
      default: {  // 'U': UTF-32 code points to UTF-8
        std::string s;
        for (std::size_t c = 0; c < dtype.chars; ++c) {
          std::uint32_t cp;
          std::memcpy(&cp, p + 4 * c, 4);
          if (cp > 0x10ffffu || (cp >= 0xd800u && cp <= 0xdfffu)) cp = 0xfffdu;
          if (cp < 0x80u) {
            s.push_back(static_cast<char>(cp));
          } else if (cp < 0x800u) {
            s.push_back(static_cast<char>(0xc0u | (cp >> 6)));
            s.push_back(static_cast<char>(0x80u | (cp & 0x3fu)));
          } else if (cp < 0x10000u) {
            s.push_back(static_cast<char>(0xe0u | (cp >> 12)));
            s.push_back(static_cast<char>(0x80u | ((cp >> 6) & 0x3fu)));
            s.push_back(static_cast<char>(0x80u | (cp & 0x3fu)));
          } else {
            s.push_back(static_cast<char>(0xf0u | (cp >> 18)));
            s.push_back(static_cast<char>(0x80u | ((cp >> 12) & 0x3fu)));
            s.push_back(static_cast<char>(0x80u | ((cp >> 6) & 0x3fu)));
            s.push_back(static_cast<char>(0x80u | (cp & 0x3fu)));
          }
        }
        while (!s.empty() && s.back() == '\0') s.pop_back();
        return s;
      }
    }
  }
};

/// Reads a `.npy` file: header (parsed as a dict literal), dtype, shape and payload; swaps each
/// value into the host's byte order and reorders a Fortran-order array into C order.
inline NpyRaw read_npy_raw(const std::string& path) {
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
  while (!header.empty() && (header.back() == '\n' || header.back() == ' ' || header.back() == '\0'))
    header.pop_back();

  const PyLiteral dict = PyLiteralParser(header, path).parse_all();
  require<IoError>(dict.kind == PyLiteral::Kind::dict, ".npy file '", path,
                   "': the header is not a dictionary: ", header);
  NpyRaw out;
  const PyLiteral& descr = npy_header_entry(dict, "descr", header, path);
  require<IoError>(descr.kind == PyLiteral::Kind::string, ".npy file '", path,
                   "': unsupported dtype (a structured or nested 'descr'; expected a string such as '<f4'): ",
                   header);
  out.descr = descr.text;
  out.dtype = npy_parse_dtype(out.descr, path);
  const PyLiteral& order = npy_header_entry(dict, "fortran_order", header, path);
  require<IoError>(order.kind == PyLiteral::Kind::name && (order.text == "True" || order.text == "False"),
                   ".npy file '", path, "': expected fortran_order True or False, found ",
                   order.text.empty() ? std::string("a ") + (order.kind == PyLiteral::Kind::string ? "string" : "value")
                                      : order.text);
  const PyLiteral& shape = npy_header_entry(dict, "shape", header, path);
  require<IoError>(shape.kind == PyLiteral::Kind::tuple, ".npy file '", path,
                   "': expected a shape tuple, found ", shape.text.empty() ? header : shape.text);
  out.shape_text = "(";
  for (const PyLiteral& d : shape.items) {
    require<IoError>(d.kind == PyLiteral::Kind::integer && d.text[0] != '-', ".npy file '", path,
                     "': expected non-negative integers in the shape, found ", header);
    std::size_t v = 0;
    for (char c : d.text) {
      if (c == '+') continue;
      require<IoError>(v <= (std::size_t{1} << 40), ".npy file '", path, "': implausible dimension in shape ",
                       header);
      v = v * 10 + static_cast<std::size_t>(c - '0');
    }
    out.shape.push_back(v);
    out.shape_text += (out.shape.size() > 1 ? ", " : "") + std::to_string(v);
  }
  out.shape_text += out.shape.size() == 1 ? ",)" : ")";

  const std::size_t count = out.size();
  const std::size_t item = out.dtype.item;
  require<IoError>(count <= (std::size_t{1} << 36) && count * item <= (std::size_t{1} << 40), ".npy file '", path,
                   "': implausibly large shape ", out.shape_text);
  std::vector<char> payload(count * item);
  in.read(payload.data(), static_cast<std::streamsize>(payload.size()));
  const auto got = static_cast<std::size_t>(in.gcount());
  require<IoError>(got == payload.size(), ".npy file '", path, "': expected ", payload.size(),
                   " bytes of data for shape ", out.shape_text, " and dtype ", out.descr, ", found ", got,
                   " (truncated file?)");
  in.peek();
  require<IoError>(in.eof(), ".npy file '", path, "': more bytes than the shape ", out.shape_text, " and dtype ",
                   out.descr, " describe (", payload.size(), " bytes of data)");

  // Byte order: swap each scalar (each UTF-32 unit for text) when the file's order is not the host's.
  const std::size_t unit = out.dtype.kind == 'U' ? 4 : (out.dtype.kind == 'S' ? 1 : item);
  if (unit > 1 && out.dtype.order != '|' && ((out.dtype.order == '>') == host_is_little_endian()))
    for (std::size_t b = 0; b + unit <= payload.size(); b += unit)
      std::reverse(payload.begin() + static_cast<std::ptrdiff_t>(b),
                   payload.begin() + static_cast<std::ptrdiff_t>(b + unit));

  if (order.text == "False" || out.shape.size() < 2) {
    out.bytes = std::move(payload);
    return out;
  }
  // Fortran order: the first index varies fastest. Reorder the values into C order.
  const std::size_t rank = out.shape.size();
  out.bytes.resize(payload.size());
  std::vector<std::size_t> index(rank, 0);
  for (std::size_t f = 0; f < count; ++f) {
    std::size_t c = 0;
    for (std::size_t k = 0; k < rank; ++k) c = c * out.shape[k] + index[k];
    std::memcpy(out.bytes.data() + c * item, payload.data() + f * item, item);
    for (std::size_t k = 0; k < rank; ++k) {  // advance the Fortran-order index
      if (++index[k] < out.shape[k]) break;
      index[k] = 0;
    }
  }
  return out;
}

}  // namespace detail

/// Reads a numeric `.npy` file — bool, any integer width, float16, float32 or float64, either byte
/// order, C or Fortran order, any rank — converting each value to T as it is (no scaling). The
/// values come back in C order whatever the file's order.
/// @throws IoError when the file is missing, not a .npy file (magic), of an unsupported version or
///         dtype (text is refused here: see read_npy_text), has a header that is not a dict
///         literal (quoted in the message), or a payload whose size differs from the shape's.
template <typename T = double>
NpyArray<T> read_npy(const std::string& path) {
  static_assert(std::is_floating_point_v<T>, "read_npy converts to a floating-point type");
  detail::NpyRaw raw = detail::read_npy_raw(path);
  require<IoError>(raw.dtype.numeric(), ".npy file '", path, "': holds text (dtype '", raw.descr,
                   "'); expected numbers (text is read as group keys or labels, not as observations)");
  NpyArray<T> out;
  out.shape = std::move(raw.shape);
  out.dtype = raw.descr;
  out.values.resize(out.size());
  for (std::size_t i = 0; i < out.values.size(); ++i) out.values[i] = static_cast<T>(raw.number(i));
  return out;
}

/// Reads any `.npy` file as text, one string per value in C order: integers exactly in decimal,
/// bool as "False"/"True", floats in their shortest round-trip form ("3", "1.5"), fixed-width
/// strings ('<U', '|S') as UTF-8 without NumPy's NUL padding. For group keys and labels.
/// @throws IoError as read_npy.
inline NpyArray<std::string> read_npy_text(const std::string& path) {
  detail::NpyRaw raw = detail::read_npy_raw(path);
  NpyArray<std::string> out;
  out.shape = raw.shape;
  out.dtype = raw.descr;
  out.values.resize(out.size());
  for (std::size_t i = 0; i < out.values.size(); ++i) out.values[i] = raw.text(i);
  return out;
}

/// The dtype of a descriptor such as '<f4' (throws IoError for one this reader does not know).
inline NpyDtype npy_dtype(const std::string& descr) { return detail::npy_parse_dtype(descr, "(descriptor)"); }

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
