#include "operator/TrainingRangeCheck.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "numerics/Errors.h"

namespace jko {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string number(double value) { return formatValue(value, 3); }

std::string range(double lo, double hi) { return "[" + number(lo) + ", " + number(hi) + "]"; }

// What to do, with the command that trains an operator like this one on the
// user's data (at time step tau).
std::string remedy(const OperatorMetadata& m, const std::string& extra, double tau = 0) {
  std::string preset = m.energy.preset;
  if (preset.empty() || preset == "custom") preset = "PRESET";
  return " Use the Auto solver (it refines every frame that fails its certificate) or the reference solver, or "
         "retrain on such data: jko train --energy " +
         preset + " --tau " + number(tau > 0 ? tau : m.tau) + extra + " --out NEW.jko.";
}

double massOf(const Grid& grid, const at::Tensor& rho) {
  return rho.to(at::kDouble).sum().item<double>() * grid.cellVolume();
}

}  // namespace

bool outsideTrainingRange(double value, double lo, double hi) {
  return value < lo / (1 + kTrainingRangeMargin) || value > hi * (1 + kTrainingRangeMargin);
}

std::vector<RangeWarning> checkGridAgainstTraining(const OperatorMetadata& m, const Grid& grid) {
  std::vector<RangeWarning> warnings;
  const TrainingRanges& r = m.ranges;
  for (int a = 0; a < grid.dim; ++a) {
    // Within 10%: an image with spacing L / (n - 1) instead of L / n is 1.6%
    // longer at 64 nodes, and boxes 0.9-1.1 times the trained one gave first
    // learned steps within 1.3% of the reference solver's (the trained box:
    // 0.06-1.1%; docs/design.md, "Box length").
    if (!(r.boxLength[a] > 0) || std::abs(grid.boxLength(a) - r.boxLength[a]) <= kBoxLengthTolerance * r.boxLength[a])
      continue;
    RangeWarning w;
    w.quantity = "box length along axis " + std::to_string(a);
    w.value = grid.boxLength(a);
    w.trainedMin = w.trainedMax = r.boxLength[a];
    w.message = "the box length along axis " + std::to_string(a) + " is " + number(w.value) +
                ", the operator was trained on " + number(r.boxLength[a]) +
                ": a step then moves the mass by another number of cells than in training, and the learned "
                "frames may be wrong." +
                remedy(m, " (on a box of this size)");
    warnings.push_back(w);
  }
  for (int a = 0; a < grid.dim; ++a) {
    if (r.gridMax <= 0 || (grid.n[a] >= r.gridMin / 2 && grid.n[a] <= 4 * r.gridMax)) continue;
    RangeWarning w;
    w.quantity = "grid nodes along axis " + std::to_string(a);
    w.value = static_cast<double>(grid.n[a]);
    w.trainedMin = static_cast<double>(r.gridMin);
    w.trainedMax = static_cast<double>(r.gridMax);
    w.message = "the grid has " + std::to_string(grid.n[a]) + " nodes along axis " + std::to_string(a) +
                ", the operator was trained on " + std::to_string(r.gridMin) + "-" + std::to_string(r.gridMax) +
                " (supported: " + std::to_string(r.gridMin / 2) + "-" + std::to_string(4 * r.gridMax) +
                "): the learned frames may be wrong." + remedy(m, " --grid " + std::to_string(grid.n[a]));
    warnings.push_back(w);
  }
  return warnings;
}

std::vector<RangeWarning> checkDensityAgainstTraining(const OperatorMetadata& m, const Grid& grid,
                                                      const at::Tensor& rho, double densityFactor) {
  StepSymmetry symmetry;
  symmetry.densityFactor = densityFactor;
  return checkDensityAgainstTraining(m, grid, rho, symmetry);
}

DensitySummary DensitySummary::of(const Grid& grid, const at::Tensor& rho) {
  DensitySummary summary;
  summary.mass = massOf(grid, rho);
  summary.peak = rho.max().item<double>();
  return summary;
}

std::vector<RangeWarning> checkDensityAgainstTraining(const OperatorMetadata& m, const Grid& grid,
                                                      const at::Tensor& rho, const StepSymmetry& symmetry) {
  return checkDensityAgainstTraining(m, DensitySummary::of(grid, rho), symmetry);
}

std::vector<RangeWarning> checkDensityAgainstTraining(const OperatorMetadata& m, const DensitySummary& density,
                                                      const StepSymmetry& symmetry) {
  std::vector<RangeWarning> warnings;
  const TrainingRanges& r = m.ranges;
  const double p = homogeneityDegree(m.energy), c = symmetry.densityFactor;
  const StepSymmetry::Reach& reach = symmetry.reach;
  // What the operator steps: c rho (StepSymmetry.h).
  const std::string subject =
      c == 1 ? "the density's"
             : "the density as the operator steps it (c rho, c = " + number(c) + ", by the step's symmetry) has a";
  if (r.hasMasses()) {
    const double mass = c * density.mass;
    if (outsideTrainingRange(mass, r.massMin, r.massMax)) {
      RangeWarning w;
      w.quantity = "mass";
      w.value = mass;
      w.trainedMin = r.massMin;
      w.trainedMax = r.massMax;
      w.message = subject + " mass " + (c == 1 ? "is " : "") + number(mass) +
                  ", outside the range the operator was trained on " + range(r.massMin, r.massMax) + ".";
      const double target = std::clamp(mass, r.massMin, r.massMax);
      if (reach.any()) {
        // A conditioned operator: c already puts the parameter at the end of
        // its range nearest the trained masses, so no single factor helps;
        // name the intervals that are served (StepSymmetry::Reach).
        w.message += " The operator is conditioned on " + reach.parameter +
                     ", which takes up the density's scale: at this Time Step it serves this density for " +
                     reach.parameter + " in " + range(reach.low, reach.high) + " (now " + number(reach.value) +
                     "), and at this " + reach.parameter + " densities of mass in " +
                     range(reach.massLow, reach.massHigh) + " (now " + number(mass / c) +
                     "); with these values the frames may be wrong." + remedy(m, " --initial YOUR_DENSITY.vti");
      } else if (p == 1) {
        w.message +=
            " For this energy (entropy and potential only) the step's map does not depend on the mass: step the "
            "density rescaled to mass " +
            number(target) + " (the learned and Auto solvers do), else the frames may be wrong." +
            remedy(m, " --initial YOUR_DENSITY.vti");
      } else if (std::isfinite(p)) {
        // step_tau(c rho) = c step_{tau c^(p-1)}(rho): the groups tau D M^(p-1) and tau A M.
        w.message += " The step of c*rho at tau is c times the step of rho at tau*c^(" + number(p) +
                     "-1): the trained masses correspond to a Time Step (or D, or attraction) " +
                     number(std::pow(target / mass, p - 1)) +
                     " times this one; with these values the frames may be wrong." +
                     remedy(m, " --initial YOUR_DENSITY.vti");
      } else {
        w.message += " This energy's step depends on the absolute density, so the learned frames may be wrong." +
                     remedy(m, " --initial YOUR_DENSITY.vti");
      }
      warnings.push_back(w);
    }
  }
  if (r.peakMax > 0 && r.peakMin > 0) {
    const double peak = c * density.peak;
    if (outsideTrainingRange(peak, r.peakMin, r.peakMax)) {
      RangeWarning w;
      w.quantity = "peak density";
      w.value = peak;
      w.trainedMin = r.peakMin;
      w.trainedMax = r.peakMax;
      w.message = subject + " peak " + (c == 1 ? "is " : "") + number(peak) +
                  ", outside the range the operator was trained on " + range(r.peakMin, r.peakMax) +
                  ": the learned frames may be wrong." +
                  remedy(m, std::string(m.energy.internal == InternalKind::PorousMedium ? " --peak-max " : "") +
                                (m.energy.internal == InternalKind::PorousMedium ? number(peak) : "") +
                                " --initial YOUR_DENSITY.vti");
      warnings.push_back(w);
    }
  }
  return warnings;
}

std::vector<RangeWarning> checkProblemAgainstTraining(const OperatorMetadata& m, const EnergySpec& energy, double tau,
                                                      int dim, double mass) {
  std::vector<RangeWarning> warnings;
  const StepSymmetry symmetry = relateToOperator(m, energy, tau, dim, mass);
  if (symmetry.exact) return warnings;  // the operator's own problem, up to the step's symmetries
  const std::string unrelated = " No symmetry of the step relates the two (" + symmetry.difference +
                                "; the operator serves: " + describeCoverage(m) + ").";
  if (tau > 0 && std::abs(tau - m.tau) > 1e-9 * m.tau) {
    RangeWarning w;
    w.quantity = "time step";
    w.value = tau;
    w.trainedMin = w.trainedMax = m.tau;
    w.message = "the time step is " + number(tau) + ", the operator was trained for tau = " + number(m.tau) +
                ": its steps are first guesses that the Auto solver refines (close to the reference solver's "
                "cost)." +
                unrelated + remedy(m, "", tau);
    warnings.push_back(w);
  }
  std::string difference;
  if (!m.energy.sameAs(energy, &difference, dim)) {
    RangeWarning w;
    w.quantity = "energy";
    w.message = "the energy is " + energy.describe() + ", the operator was trained for " + m.energy.describe() + " (" +
                difference +
                "): its steps are first guesses only, which the Auto solver refines (close to the reference "
                "solver's cost)." +
                (warnings.empty() ? unrelated : std::string()) +
                " Train an operator for this energy: jko train --energy ... --out NEW.jko.";
    warnings.push_back(w);
  }
  return warnings;
}

std::vector<std::string> messagesOf(const std::vector<RangeWarning>& warnings) {
  std::vector<std::string> messages;
  for (const RangeWarning& w : warnings) messages.push_back(w.message);
  return messages;
}

std::vector<RangeWarning> TrainingRangeWatch::check(const at::Tensor& rho, int frame) {
  return check(DensitySummary::of(grid_, rho), frame);
}

std::vector<RangeWarning> TrainingRangeWatch::check(const DensitySummary& density, int frame) {
  std::vector<RangeWarning> fresh;
  for (RangeWarning& w : checkDensityAgainstTraining(metadata_, density, symmetry_)) {
    if (std::find(reported_.begin(), reported_.end(), w.quantity) != reported_.end()) continue;
    reported_.push_back(w.quantity);
    if (frame > 0) w.message = "frame " + std::to_string(frame) + ": " + w.message;
    fresh.push_back(std::move(w));
  }
  return fresh;
}

}  // namespace jko
