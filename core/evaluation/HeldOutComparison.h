// The learned operator against the reference solver on held-out random
// initial densities (never seen in training): mean relative L1 error per frame.
#pragma once

#include <nlohmann/json.hpp>

#include "numerics/Progress.h"
#include "operator/LearnedOperator.h"

namespace jko {

struct HeldOutOptions {
  int densities = 8;
  int steps = 20;
  int64_t grid = 64;
  uint64_t seed = 20261122;  ///< distinct from training seeds
};

/// Rolls out the operator and the reference solver from the same generated
/// densities (the operator's energy, tau and training ranges) and returns
/// per-frame errors: "rel_l1_per_frame" (mean over densities), "rel_l1_mean"
/// (over densities and frames), "rel_l1_per_density".
nlohmann::json compareWithReference(const LearnedOperator& op, const HeldOutOptions& options,
                                    const ProgressCallback& progress = {});

}  // namespace jko
