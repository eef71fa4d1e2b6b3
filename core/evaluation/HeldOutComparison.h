// The learned operator against the reference solver on held-out random
// initial densities (never seen in training): mean relative L1 error per frame.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "numerics/Progress.h"
#include "operator/AutoSolver.h"
#include "operator/LearnedOperator.h"

namespace jko {

/// The problem a comparison runs: the operator's own (default), or one the
/// step's symmetries relate to it (operator/StepSymmetry.h), which the
/// learned operator serves by stepping c rho.
struct ComparisonProblem {
  std::optional<EnergySpec> energy;  ///< empty: the operator's
  double tau = 0;                    ///< 0: the operator's
};

struct HeldOutOptions {
  ComparisonProblem problem;
  int densities = 8;
  int steps = 20;
  int64_t grid = 64;
  uint64_t seed = 20261122;  ///< distinct from training seeds
};

/// One step of a stepper under test: the next density and the displacement
/// (dim, n...) of the map that made it.
struct SuiteStep {
  at::Tensor next, displacement;
};
/// A stepper under test: one step of rho (shape of the grid) on `grid`.
using SuiteStepper = std::function<SuiteStep(const at::Tensor& rho, const Grid& grid)>;

/// Rolls out `stepper` (the learned operator's step when empty) and the
/// reference solver from the same generated densities (the operator's
/// training ranges; the operator's energy and tau unless options.problem
/// names others, served through the step's symmetries: refused when none
/// relates them) and returns per-frame errors: "rel_l1_per_frame" (mean over
/// densities), "rel_l1_mean" (over densities and frames),
/// "rel_l1_per_density", "held_out_densities" (per density: kind, mass,
/// peak, minimum, its mean error, the range warnings), and the time:
/// "solver_seconds" (the stepper's steps alone), "reference_seconds" (the
/// reference solver's rollouts, each step warm-started from the previous
/// one's map) and "solver_over_reference_time".
nlohmann::json compareWithReference(const LearnedOperator& op, const HeldOutOptions& options,
                                    const ProgressCallback& progress = {}, const SuiteStepper& stepper = {});

/// The learned operator's step of the comparison's problem: through the
/// step's symmetries (c from each density's mass). Throws OperatorFileError
/// when no symmetry relates the problem to the operator's.
SuiteStepper learnedSuiteStepper(std::shared_ptr<const LearnedOperator> op, const ComparisonProblem& problem);
/// A solver of the comparison's problem by name: "learned"
/// (learnedSuiteStepper), "linearized" (the network-free linearised step,
/// numerics/LinearizedStep.h) or "auto" (operator/AutoSolver.h: the learned
/// step, refined where its certificate fails; `tally`, when given, counts
/// the refined frames; `linearizedCorrections`: the linearised step's
/// Gauss-Newton corrections). Throws InvalidParameter for other names.
SuiteStepper suiteStepper(std::shared_ptr<const LearnedOperator> op, const ComparisonProblem& problem,
                          const std::string& solver, std::shared_ptr<RefinementTally> tally = nullptr,
                          int linearizedCorrections = 0);
/// The problem's energy and tau, the operator's where not given.
EnergySpec problemEnergy(const LearnedOperator& op, const ComparisonProblem& problem);
double problemTau(const LearnedOperator& op, const ComparisonProblem& problem);

struct WildSuiteOptions {
  ComparisonProblem problem;
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
/// solver (on options.problem) for `steps` frames. JSON: "mean_error" (relative L1, over
/// densities and frames), "worst_density_error" (the largest mean over
/// frames of one density), "worst_frame_error", "energy_increase_frames"
/// (frames whose energy exceeds the previous frame's), "per_family"
/// (mean_error, worst_density_error, per density: errors per frame), and
/// the time as for the held-out comparison ("reference_seconds" and the
/// ratio null when a reference trajectory came from the cache).
nlohmann::json compareOnWildSuite(const LearnedOperator& op, const SuiteStepper& solver,
                                  const WildSuiteOptions& options, const ProgressCallback& progress = {});

}  // namespace jko
