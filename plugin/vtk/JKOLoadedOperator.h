// The learned operator a flow filter uses: loaded from its file once (and
// again only when the file changes), described for the panel, and checked
// against the panel's energy, tau and input before any step.
//
// Not wrapped: this header may include ATen.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "numerics/Energy.h"
#include "numerics/Grid.h"
#include "operator/TrainingRangeCheck.h"

namespace jko {
class LearnedOperator;
}

namespace jko::plugin {

/// A file's identity for the caches: size and modification time ("" when
/// the file does not exist).
std::string fileStamp(const std::string& path);

/// Every parameter in which the energies differ, one entry per parameter,
/// named as in the panel: "Diffusion: operator 0.1, panel 1". `axisNames`
/// names grid axis a in the image (x, y or z).
std::vector<std::string> energyDifferences(const EnergySpec& operatorEnergy, const EnergySpec& panelEnergy, int dim,
                                           const std::array<int, 3>& imageAxis);

class LoadedOperator {
 public:
  /// Loads `path` on `device` unless that file, unchanged, is loaded there
  /// already. `solver` names the panel's solver for the message about a
  /// missing choice. Throws Error with what to do.
  void load(const std::string& path, const at::Device& device, const std::string& solver);
  void reset();

  bool loaded() const { return op_ != nullptr; }
  const std::shared_ptr<LearnedOperator>& op() const { return op_; }
  const std::string& path() const { return path_; }
  const std::string& stamp() const { return stamp_; }

  /// Several lines for the panel: network, energy, tau, box, grids, masses
  /// and peaks it was trained on, how it was trained and the equivalent
  /// `jko train` command, the file.
  const std::string& description() const { return description_; }
  const std::string& energyText() const { return energyText_; }
  double tau() const { return tau_; }

  /// Refuses (Error) another dimension and, unless `firstGuess` (the Auto
  /// solver, which refines the operator's steps for the panel's problem), an
  /// energy and tau that no symmetry of the step relates to the operator's
  /// (core's StepSymmetry.h), with every differing parameter named at once.
  /// Returns what lies outside the operator's training (core's
  /// TrainingRangeCheck): box and grid, the mass and peak of what the
  /// operator steps (c rho0), and with `firstGuess` the time step and the
  /// energy. `symmetry`, when given, receives how the operator serves the
  /// panel's problem. rho0 is read for its mass and peak alone (a rollout
  /// split over ranks gives them over its ranks' slabs).
  std::vector<RangeWarning> check(const EnergySpec& energy, double tau, const Grid& grid, const DensitySummary& rho0,
                                  const std::array<int, 3>& imageAxis, bool firstGuess,
                                  StepSymmetry* symmetry = nullptr) const;

 private:
  std::shared_ptr<LearnedOperator> op_;
  std::string path_, stamp_, device_;
  std::string description_, energyText_;
  double tau_ = 0;
};

}  // namespace jko::plugin
