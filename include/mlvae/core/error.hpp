/// @file
/// mlvae/core/error.hpp — the exception types mlvae throws, and the error handler that replaces
/// them when the code is compiled without exceptions (-fno-exceptions; docs/architecture.md,
/// "Build modes"). Every message says what was expected, what was found, and where.
#pragma once

#include <cstdio>
#include <cstdlib>
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
  /// The class name, e.g. for the error handler of builds without exceptions.
  static const char* kind() { return "Error"; }
};

/// A shape (rows, columns, sizes, counts) differs from what an API requires.
class ShapeError : public Error {
public:
  /// Creates the exception with message `what`.
  explicit ShapeError(const std::string& what) : Error(what) {}
  /// The class name, e.g. for the error handler of builds without exceptions.
  static const char* kind() { return "ShapeError"; }
};

/// An argument has an invalid value (empty group, non-finite number, bad option).
class ArgumentError : public Error {
public:
  /// Creates the exception with message `what`.
  explicit ArgumentError(const std::string& what) : Error(what) {}
  /// The class name, e.g. for the error handler of builds without exceptions.
  static const char* kind() { return "ArgumentError"; }
};

/// A file is missing, unreadable, truncated or has the wrong format.
class IoError : public Error {
public:
  /// Creates the exception with message `what`.
  explicit IoError(const std::string& what) : Error(what) {}
  /// The class name, e.g. for the error handler of builds without exceptions.
  static const char* kind() { return "IoError"; }
};

/// Training produced a non-finite loss or gradient.
class DivergenceError : public Error {
public:
  /// Creates the exception with message `what`.
  explicit DivergenceError(const std::string& what) : Error(what) {}
  /// The class name, e.g. for the error handler of builds without exceptions.
  static const char* kind() { return "DivergenceError"; }
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

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
/// 1 when mlvae reports errors by throwing (the default), 0 in builds without exceptions
/// (-fno-exceptions), where errors go to the ErrorHandler instead.
#define MLVAE_HAS_EXCEPTIONS 1
#else
#define MLVAE_HAS_EXCEPTIONS 0
#endif

/// Receives every error of a build without exceptions: `kind` is the class name mlvae would have
/// thrown ("ShapeError", "IoError", ...), `message` its what(). It must not return (exit, abort,
/// reset the device, longjmp out of C code): when it does return, mlvae calls std::abort().
using ErrorHandler = void (*)(const char* kind, const char* message);

namespace detail {
/// The default handler: prints "mlvae: <kind>: <message>" to stderr and aborts.
[[noreturn]] inline void default_error_handler(const char* kind, const char* message) {
  std::fprintf(stderr, "mlvae: %s: %s\n", kind, message);
  std::fflush(stderr);
  std::abort();
}
inline ErrorHandler& error_handler_slot() {
  static ErrorHandler handler = &default_error_handler;
  return handler;
}
}  // namespace detail

/// Installs `handler` for errors in builds without exceptions (nullptr restores the default, which
/// prints the message and aborts); returns the previous one. Builds with exceptions throw and never
/// call it. Not thread-safe: set it once at start-up.
inline ErrorHandler set_error_handler(ErrorHandler handler) {
  ErrorHandler previous = detail::error_handler_slot();
  detail::error_handler_slot() = handler ? handler : &detail::default_error_handler;
  return previous;
}

/// The handler in force (see set_error_handler).
inline ErrorHandler error_handler() { return detail::error_handler_slot(); }

/// Reports an error of type `E` with `message`: throws `E(message)`, or, without exceptions, calls
/// the error handler and aborts should it return.
template <typename E>
[[noreturn]] void raise_error(const std::string& message) {
#if MLVAE_HAS_EXCEPTIONS
  throw E(message);
#else
  error_handler()(E::kind(), message.c_str());
  std::abort();
#endif
}

/// Throws `E` when `condition` is false; the message is the concatenated args. Without exceptions
/// the error goes to the error handler (see raise_error).
template <typename E = ArgumentError, typename... Args>
void require(bool condition, Args&&... args) {
  if (!condition) raise_error<E>(detail::concat(std::forward<Args>(args)...));
}

}  // namespace mlvae
