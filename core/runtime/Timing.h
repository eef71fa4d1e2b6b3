// Wall-clock intervals for the figures the solvers report (CertifiedStep's
// learnedMs, certificateMs, refineMs).
#pragma once

#include <chrono>

namespace jko {

using Clock = std::chrono::steady_clock;

/// Milliseconds from `start` to now.
inline double millisecondsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

}  // namespace jko
