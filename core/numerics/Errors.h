// Typed errors of the JKO engine. Every message names the parameter, the
// value that was given and what is allowed, so a user can act on it.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace jko {

/// Base class of every error the engine raises on purpose.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A parameter outside its allowed range (tau <= 0, m <= 1, D < 0, ...).
class InvalidParameter : public Error {
 public:
  InvalidParameter(std::string parameter, const std::string& value, const std::string& allowed)
      : Error("invalid " + parameter + " = " + value + ": " + allowed), parameter_(std::move(parameter)) {}
  const std::string& parameter() const { return parameter_; }

 private:
  std::string parameter_;
};

/// A density that cannot be a JKO state (negative or NaN values, zero mass,
/// wrong shape).
class InvalidDensity : public Error {
 public:
  using Error::Error;
};

/// An operator file that cannot be read, or one that does not fit the data
/// or energy it is asked to run on.
class OperatorFileError : public Error {
 public:
  using Error::Error;
};

/// Raised when a progress callback asks a long-running routine to stop.
class Cancelled : public Error {
 public:
  Cancelled() : Error("cancelled by the caller") {}
};

/// Formats a number the way error messages print it.
template <typename T>
std::string formatValue(const T& value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

/// The same with this many significant digits (warnings that quote ranges).
inline std::string formatValue(double value, int significantDigits) {
  std::ostringstream out;
  out.precision(significantDigits);
  out << value;
  return out.str();
}

}  // namespace jko
