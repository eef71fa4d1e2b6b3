// The energy options shared by `jko train`, `jko rollout` and `jko eval`:
// a preset plus any of its parameters given on the command line.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "numerics/Energy.h"

namespace jko::cli {

struct EnergyOptions {
  std::string preset;
  double D = 0, m = 0, potentialStrength = 0, attraction = 0, repulsion = 0, attractivePower = 0, repulsivePower = 0;
  std::string potential, kernel, potentialCentre;
  CLI::Option *DOption = nullptr, *mOption = nullptr, *potentialOption = nullptr, *strengthOption = nullptr,
              *centreOption = nullptr, *kernelOption = nullptr, *attractionOption = nullptr, *repulsionOption = nullptr,
              *attractivePowerOption = nullptr, *repulsivePowerOption = nullptr;

  /// Registers --energy, --D, --m, --potential, --potential-strength,
  /// --potential-centre, --kernel, --attraction, --repulsion,
  /// --attractive-power, --repulsive-power.
  void addTo(CLI::App& app, bool presetRequired);
  bool given() const { return !preset.empty(); }
  /// The preset with every given parameter applied.
  EnergySpec spec() const;
  /// Whether --energy or any parameter was given.
  bool anyGiven() const;
  /// The given parameters applied to the preset, or to `base` when no
  /// --energy was given (e.g. an operator's energy with another --D).
  EnergySpec over(const EnergySpec& base) const;
};

}  // namespace jko::cli
