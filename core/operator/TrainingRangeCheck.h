// Whether a learned operator is asked to work inside what it was trained on
// (DESIGN.md §2.3, §6 "Mass and parameters"): every quantity an operator
// file records (box, grid, mass, peak density, time step, energy parameters)
// against the user's. Outside, a warning names the quantity, its value, the
// trained range and what to do; where an exact symmetry of the JKO step
// relates the user's problem to the trained one it says so.
#pragma once

#include <ATen/ATen.h>

#include <limits>
#include <string>
#include <vector>

#include "numerics/Energy.h"
#include "numerics/Grid.h"
#include "operator/OperatorMetadata.h"

namespace jko {

struct RangeWarning {
  static constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  /// "box length", "grid nodes", "mass", "peak density", "time step",
  /// "energy" (with the axis where there is one).
  std::string quantity;
  double value = kNaN, trainedMin = kNaN, trainedMax = kNaN;
  /// One sentence or three: what is out of range, why it matters, what to do.
  std::string message;
};

/// Masses and peak densities within this relative margin of the trained
/// range count as inside (the range is the extremes of the training sample).
constexpr double kTrainingRangeMargin = 0.1;

/// The box and the grid (nodes per axis) against the training box and grids.
/// The network works on at most NetworkConfig::grid nodes per axis, so grids
/// from half the smallest to four times the largest training grid are taken
/// as supported.
std::vector<RangeWarning> checkGridAgainstTraining(const OperatorMetadata& metadata, const Grid& grid);

/// The mass and the peak density of rho (shape of the grid) against the
/// trained ranges. Files without ranges (zeros) are not checked.
std::vector<RangeWarning> checkDensityAgainstTraining(const OperatorMetadata& metadata, const Grid& grid,
                                                      const at::Tensor& rho);

/// The time step and the energy of a problem that uses the operator as a
/// first guess only (the Auto solver): different values are warned about,
/// not refused (the learned solver refuses them, LearnedOperator::checkCompatible).
std::vector<RangeWarning> checkProblemAgainstTraining(const OperatorMetadata& metadata, const EnergySpec& energy,
                                                      double tau, int dim);

/// The degree p of an energy homogeneous in the density, E(c rho) = c^p E(rho)
/// (+ a constant times the mass): 1 for entropy and potential energies, m
/// for the porous medium, 2 for any interaction (bilinear in rho), where
/// all present parts share it; NaN otherwise (entropy with an interaction,
/// porous medium with a potential, ...). For such an energy the JKO step
/// has the exact symmetry
///   step_tau(c rho) = c step_{tau c^(p-1)}(rho),  with the same map,
/// so for p = 1 the map does not depend on the mass at all.
double homogeneityDegree(const EnergySpec& energy);

/// How a learned operator can serve a step it was not trained for, by the
/// symmetry above: the step of rho at `tau` is (1/c) times the operator's
/// step of c rho at its own tau, with the operator's map.
struct StepSymmetry {
  double densityFactor = 1;  ///< c (1: the density as it is)
  std::string note;          ///< what was mapped, for the user ("" when c = 1)
};
/// p = 1 (entropy and potential energies), same tau: c brings the mass into
/// the trained range. p != 1: c = (tau / tau_op)^(1/(p-1)), used when tau
/// differs from the operator's and c rho lands in the trained mass range.
/// Otherwise c = 1. The energy must be the operator's (else c = 1).
StepSymmetry symmetryIntoTrainingRange(const OperatorMetadata& metadata, const EnergySpec& energy, double tau, int dim,
                                       double mass);

/// The messages of a list of warnings.
std::vector<std::string> messagesOf(const std::vector<RangeWarning>& warnings);

/// Reports each quantity once over a rollout: the first frame whose mass or
/// peak leaves the trained range.
class TrainingRangeWatch {
 public:
  TrainingRangeWatch(OperatorMetadata metadata, Grid grid) : metadata_(std::move(metadata)), grid_(grid) {}
  /// Warnings for quantities of rho not reported before; `frame` is named in them.
  std::vector<RangeWarning> check(const at::Tensor& rho, int frame);

 private:
  OperatorMetadata metadata_;
  Grid grid_;
  std::vector<std::string> reported_;
};

}  // namespace jko
