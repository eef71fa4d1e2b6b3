// The learned operator against the reference solver on held-out random
// initial densities (never seen in training): mean relative L1 error per frame.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

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

/// A stepper under test: one step of rho (shape of the grid) on `grid`,
/// returning the next density.
using SuiteStepper = std::function<at::Tensor(const at::Tensor& rho, const Grid& grid)>;

struct WildSuiteOptions {
  int64_t grid = 64;
  int dim = 2;
  int steps = 20;
  int densitiesPerFamily = 2;
  uint64_t seed = 20261204;
  std::vector<std::string> families;  ///< empty: every wild family
  /// Where reference trajectories are kept between runs (keyed by energy,
  /// tau, grid, family, seed, scale and steps); empty: not kept.
  std::string cacheDirectory;
};

/// The wild suite (evaluation/WildDensities.h): densities of families that
/// training never uses, scaled to a peak log-uniform in [0.05, 0.6] (porous
/// medium) or a mass uniform in [0.5, 1.5] (the same for every operator of
/// an energy), rolled out by `solver` and by the reference
/// solver for `steps` frames. JSON: "mean_error" (relative L1, over
/// densities and frames), "worst_density_error" (the largest mean over
/// frames of one density), "worst_frame_error", "energy_increase_frames"
/// (frames whose energy exceeds the previous frame's), "per_family"
/// (mean_error, worst_density_error, per density: errors per frame).
nlohmann::json compareOnWildSuite(const LearnedOperator& op, const SuiteStepper& solver,
                                  const WildSuiteOptions& options, const ProgressCallback& progress = {});

}  // namespace jko
