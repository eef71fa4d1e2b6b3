// A number for the JSON that `jko` and the evaluations write: NaN and
// infinities (a certificate of a failed step, a ratio of nothing) have no
// JSON form and are written as null.
#pragma once

#include <cmath>
#include <nlohmann/json.hpp>

namespace jko {

inline nlohmann::json finiteOrNull(double value) {
  return std::isfinite(value) ? nlohmann::json(value) : nlohmann::json();
}

}  // namespace jko
