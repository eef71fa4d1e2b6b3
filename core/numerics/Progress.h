// Progress reporting and cancellation shared by every long-running routine
// (reference solver rollouts, training, learned rollouts).
#pragma once

#include <functional>
#include <limits>
#include <string>

#include "numerics/Errors.h"

namespace jko {

struct ProgressEvent {
  std::string stage;    ///< "reference step", "training", "rollout", ...
  double fraction = 0;  ///< overall completion in [0, 1]
  int step = -1;        ///< JKO step (frame) index, when relevant
  int round = -1;       ///< Learn-to-Evolve round, when relevant
  int epoch = -1;       ///< epoch within the round, when relevant
  double loss = std::numeric_limits<double>::quiet_NaN();
  std::string message;  ///< one human-readable line
};

/// Called with each progress event; returning false asks the routine to stop
/// (it then throws jko::Cancelled after leaving its state consistent).
using ProgressCallback = std::function<bool(const ProgressEvent&)>;

/// Reports `event` and throws Cancelled when the callback asks to stop.
inline void reportProgress(const ProgressCallback& callback, const ProgressEvent& event) {
  if (callback && !callback(event)) throw Cancelled();
}

}  // namespace jko
