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
#include "operator/StepSymmetry.h"

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
/// A box whose length along an axis is within this share of the trained
/// one is not warned about.
constexpr double kBoxLengthTolerance = 0.1;
/// Whether `value` lies outside [lo, hi] widened by that margin.
bool outsideTrainingRange(double value, double lo, double hi);

/// The box and the grid (nodes per axis) against the training box and grids.
/// The network works on at most NetworkConfig::grid nodes per axis, so grids
/// from half the smallest to four times the largest training grid are taken
/// as supported.
std::vector<RangeWarning> checkGridAgainstTraining(const OperatorMetadata& metadata, const Grid& grid);

/// What the range checks read of a density: its mass and its largest value
/// (a density split over ranks gives its sum and maximum over them).
struct DensitySummary {
  double mass = 0, peak = 0;
  static DensitySummary of(const Grid& grid, const at::Tensor& rho);
};

/// The mass and the peak density of what the operator steps, c rho (c =
/// `densityFactor`, StepSymmetry::densityFactor), against the trained
/// ranges. Files without ranges (zeros) are not checked.
std::vector<RangeWarning> checkDensityAgainstTraining(const OperatorMetadata& metadata, const Grid& grid,
                                                      const at::Tensor& rho, double densityFactor = 1);
/// The same for the density as `symmetry` maps it (c its densityFactor);
/// where the operator's conditioning takes up the density's scale
/// (StepSymmetry::reach), the mass warning names the values of the
/// conditioned parameter and the masses that it serves.
std::vector<RangeWarning> checkDensityAgainstTraining(const OperatorMetadata& metadata, const Grid& grid,
                                                      const at::Tensor& rho, const StepSymmetry& symmetry);
std::vector<RangeWarning> checkDensityAgainstTraining(const OperatorMetadata& metadata, const DensitySummary& density,
                                                      const StepSymmetry& symmetry);

/// The time step and the energy of a problem (on a density of mass `mass`)
/// that uses the operator as a first guess only (the Auto solver): nothing
/// when the step's symmetries relate it to the operator's problem
/// (StepSymmetry.h), else the differences, warned about, not refused (the
/// learned solver refuses them, LearnedOperator::checkCompatible).
std::vector<RangeWarning> checkProblemAgainstTraining(const OperatorMetadata& metadata, const EnergySpec& energy,
                                                      double tau, int dim, double mass);

/// The messages of a list of warnings.
std::vector<std::string> messagesOf(const std::vector<RangeWarning>& warnings);

/// Reports each quantity once over a rollout: the first frame whose mass or
/// peak leaves the trained range.
class TrainingRangeWatch {
 public:
  /// `densityFactor`: the operator steps c rho (StepSymmetry::densityFactor).
  TrainingRangeWatch(OperatorMetadata metadata, Grid grid, double densityFactor = 1)
      : metadata_(std::move(metadata)), grid_(grid) {
    symmetry_.densityFactor = densityFactor;
  }
  /// The operator steps the density as `symmetry` maps it.
  TrainingRangeWatch(OperatorMetadata metadata, Grid grid, StepSymmetry symmetry)
      : metadata_(std::move(metadata)), grid_(grid), symmetry_(std::move(symmetry)) {}
  /// Warnings for quantities of rho not reported before; `frame` is named in them.
  std::vector<RangeWarning> check(const at::Tensor& rho, int frame);
  std::vector<RangeWarning> check(const DensitySummary& density, int frame);

 private:
  OperatorMetadata metadata_;
  Grid grid_;
  StepSymmetry symmetry_;
  std::vector<std::string> reported_;
};

}  // namespace jko
