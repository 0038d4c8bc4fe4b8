/// @file
/// mlvae/core/error.hpp — the exception types mlvae throws.
/// Every message says what was expected, what was found, and where (file, shape, index).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace mlvae {

/// Base of every exception mlvae throws; catch this to handle them all.
class Error : public std::runtime_error {
public:
  /// Creates the exception with message `what`.
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

/// A shape (rows, columns, sizes, counts) differs from what an API requires.
class ShapeError : public Error {
public:
  /// Creates the exception with message `what`.
  explicit ShapeError(const std::string& what) : Error(what) {}
};

/// An argument has an invalid value (empty group, non-finite number, bad option).
class ArgumentError : public Error {
public:
  /// Creates the exception with message `what`.
  explicit ArgumentError(const std::string& what) : Error(what) {}
};

/// A file is missing, unreadable, truncated or has the wrong format.
class IoError : public Error {
public:
  /// Creates the exception with message `what`.
  explicit IoError(const std::string& what) : Error(what) {}
};

/// Training produced a non-finite loss or gradient.
class DivergenceError : public Error {
public:
  /// Creates the exception with message `what`.
  explicit DivergenceError(const std::string& what) : Error(what) {}
};

namespace detail {
/// Concatenates its arguments with operator<< into one string.
template <typename... Args>
std::string concat(Args&&... args) {
  std::ostringstream out;
  (out << ... << std::forward<Args>(args));
  return out.str();
}
}  // namespace detail

/// Throws `E` when `condition` is false; the message is the concatenated args.
template <typename E = ArgumentError, typename... Args>
void require(bool condition, Args&&... args) {
  if (!condition) throw E(detail::concat(std::forward<Args>(args)...));
}

}  // namespace mlvae
