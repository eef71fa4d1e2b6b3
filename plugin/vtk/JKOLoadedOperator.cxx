#include "JKOLoadedOperator.h"

#include <c10/util/Exception.h>
#include <sys/stat.h>

#include <cmath>
#include <iomanip>
#include <sstream>

#include "numerics/Errors.h"
#include "operator/LearnedOperator.h"

namespace jko::plugin {
namespace {

constexpr const char* kAxisNames[3] = {"x", "y", "z"};

bool sameNumber(double a, double b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return std::abs(a - b) <= 1e-9 * std::max(std::abs(a), std::abs(b));
}

std::string number(double value) {
  std::ostringstream out;
  out << std::setprecision(6) << value;
  return out.str();
}

// A potential centre as the panel shows it: NaN is "the centre of the box".
std::string centre(double value) { return std::isnan(value) ? "the box centre" : number(value); }

std::string internalName(InternalKind kind) {
  switch (kind) {
    case InternalKind::Entropy:
      return "D rho log rho";
    case InternalKind::PorousMedium:
      return "D rho^m/(m-1)";
    default:
      return "none";
  }
}

std::string kernelName(KernelKind kind) {
  switch (kind) {
    case KernelKind::Quadratic:
      return "quadratic c |z|^2/2";
    case KernelKind::AttractiveRepulsive:
      return "attractive-repulsive";
    case KernelKind::KellerSegel:
      return "Keller-Segel log|z|";
    default:
      return "none";
  }
}

std::string range(double low, double high) {
  if (!(high > 0)) return "not recorded";
  return sameNumber(low, high) ? number(low) : number(low) + " - " + number(high);
}

// The `jko train` command that trains an operator like this one, rebuilt
// from its metadata (the densities a panel training added are not part of it).
std::string trainCommand(const OperatorMetadata& m) {
  const EnergySpec& e = m.energy;
  const nlohmann::json& t = m.training;
  std::ostringstream out;
  out << "jko train --energy " << e.preset << " --dim " << m.dim;
  if (e.internal != InternalKind::None) out << " --D " << number(e.diffusion);
  if (e.internal == InternalKind::PorousMedium) out << " --m " << number(e.exponent);
  if (e.potential == PotentialKind::Quadratic || e.potential == PotentialKind::DoubleWell) {
    out << " --potential " << toString(e.potential);
    out << " --potential-strength " << number(e.potentialStrength[0]);
    if (!std::isnan(e.potentialCentre[0])) {
      out << " --potential-centre ";
      for (int a = 0; a < m.dim; ++a) out << (a ? "," : "") << number(e.potentialCentre[a]);
    }
  }
  if (e.kernel != KernelKind::None) {
    out << " --kernel " << toString(e.kernel) << " --attraction " << number(e.attraction);
    if (e.kernel == KernelKind::AttractiveRepulsive)
      out << " --repulsion " << number(e.repulsion) << " --attractive-power " << number(e.attractivePower)
          << " --repulsive-power " << number(e.repulsivePower);
  }
  out << " --tau " << number(m.tau);
  if (m.conditioning.onDiffusion())
    out << " --condition-D " << number(m.conditioning.diffusion[0]) << "," << number(m.conditioning.diffusion[1]);
  if (m.conditioning.onPotentialStrength())
    out << " --condition-potential-strength " << number(m.conditioning.potentialStrength[0]) << ","
        << number(m.conditioning.potentialStrength[1]);
  if (m.conditioning.onExponent())
    out << " --condition-m " << number(m.conditioning.exponent[0]) << "," << number(m.conditioning.exponent[1]);
  if (m.conditioning.onAttraction())
    out << " --condition-attraction " << number(m.conditioning.attraction[0]) << ","
        << number(m.conditioning.attraction[1]);
  if (m.ranges.gridMax > 0) out << " --grid " << m.ranges.gridMax;
  const std::pair<const char*, const char*> options[] = {
      {"mode", "--mode"},        {"rounds", "--rounds"},   {"epochs", "--epochs"},       {"batch", "--batch"},
      {"learning_rate", "--lr"}, {"horizon", "--horizon"}, {"generated", "--generated"}, {"seed", "--seed"}};
  for (const auto& [key, option] : options) {
    if (!t.contains(key)) continue;
    const nlohmann::json& value = t.at(key);
    out << " " << option << " " << (value.is_string() ? value.get<std::string>() : value.dump());
  }
  if (m.network.kind == "fno")
    out << " --width " << m.network.width << " --modes " << m.network.modes << " --layers " << m.network.layers
        << " --hidden " << m.network.hidden << " --network-grid " << m.network.grid;
  else if (m.network.kind == "unet")
    out << " --network unet";
  out << " --out OPERATOR.jko";
  return out.str();
}

std::string describe(const OperatorMetadata& m, const std::string& path) {
  std::ostringstream out;
  out << m.dim << "D " << (m.network.kind == "fno" ? "Fourier neural operator" : m.network.kind);
  if (m.network.kind == "fno")
    out << " (width " << m.network.width << ", " << m.network.modes << " modes, " << m.network.layers
        << " layers, network grid " << m.network.grid << ")";
  out << "\nenergy: " << m.energy.describe();
  out << "\ntau: " << number(m.tau);
  out << "\nbox lengths: ";
  for (int a = 0; a < m.dim; ++a) out << (a ? " x " : "") << number(m.ranges.boxLength[a]);
  out << "\ngrids: "
      << (m.ranges.gridMax > 0 ? (m.ranges.gridMin == m.ranges.gridMax
                                      ? std::to_string(m.ranges.gridMin)
                                      : std::to_string(m.ranges.gridMin) + " - " + std::to_string(m.ranges.gridMax)) +
                                     " nodes per axis"
                               : std::string("not recorded"));
  out << "\nmasses: " << range(m.ranges.massMin, m.ranges.massMax);
  out << "\npeak densities: " << range(m.ranges.peakMin, m.ranges.peakMax);
  out << "\nalso " << describeCoverage(m);
  const nlohmann::json& t = m.training;
  if (t.contains("mode")) {
    out << "\ntrained: " << t.value("mode", std::string());
    if (t.contains("rounds") && t.contains("epochs"))
      out << ", " << t.at("rounds").dump() << " rounds x " << t.at("epochs").dump() << " epochs";
    if (t.contains("optimizer_steps")) out << ", " << t.at("optimizer_steps").dump() << " optimiser steps";
    if (t.contains("seconds")) out << ", " << number(t.value("seconds", 0.0)) << " s";
    if (t.contains("plugin_request")) out << ", in ParaView (Train)";
  }
  if (t.contains("command") && t.at("command").is_string())
    out << "\ncommand: " << t.at("command").get<std::string>();
  else
    out << "\ncommand: " << trainCommand(m);
  out << "\nfile: " << path;
  return out.str();
}

}  // namespace

std::string fileStamp(const std::string& path) {
  struct stat status;
  if (stat(path.c_str(), &status) != 0) return "";
  std::ostringstream out;
  out << status.st_size << ":" << status.st_mtim.tv_sec << "." << status.st_mtim.tv_nsec;
  return out.str();
}

std::vector<std::string> energyDifferences(const EnergySpec& op, const EnergySpec& panel, int dim,
                                           const std::array<int, 3>& imageAxis) {
  std::vector<std::string> differences;
  auto differ = [&](const std::string& what, const std::string& mine, const std::string& theirs) {
    differences.push_back(what + ": operator " + mine + ", panel " + theirs);
  };
  // Which parts there are is the preset's choice (presets are named only
  // when the parts differ: an operator exported from PyTorch may call its
  // energy "custom").
  const bool partsDiffer = op.internal != panel.internal || op.kernel != panel.kernel;
  if (partsDiffer)
    differ("Energy Preset",
           op.preset + " (" + internalName(op.internal) + ", interaction " + kernelName(op.kernel) + ")",
           panel.preset + " (" + internalName(panel.internal) + ", interaction " + kernelName(panel.kernel) + ")");
  if (op.internal != InternalKind::None && panel.internal != InternalKind::None &&
      !sameNumber(op.diffusion, panel.diffusion))
    differ("Diffusion", number(op.diffusion), number(panel.diffusion));
  if (op.internal == InternalKind::PorousMedium && panel.internal == InternalKind::PorousMedium &&
      !sameNumber(op.exponent, panel.exponent))
    differ("Exponent", number(op.exponent), number(panel.exponent));

  if (op.potential != panel.potential) {
    differ("Potential", toString(op.potential), toString(panel.potential));
  } else if (op.potential == PotentialKind::Quadratic || op.potential == PotentialKind::DoubleWell) {
    for (int a = 0; a < dim; ++a) {
      const std::string axis = kAxisNames[imageAxis[a]];
      if (!sameNumber(op.potentialStrength[a], panel.potentialStrength[a]))
        differ("Potential Strength along " + axis, number(op.potentialStrength[a]), number(panel.potentialStrength[a]));
      if (!sameNumber(op.potentialCentre[a], panel.potentialCentre[a]))
        differ("Potential Centre along " + axis, centre(op.potentialCentre[a]), centre(panel.potentialCentre[a]));
    }
    if (op.potential == PotentialKind::DoubleWell) {
      if (!sameNumber(op.wellDepth, panel.wellDepth))
        differ("Well Depth", number(op.wellDepth), number(panel.wellDepth));
      if (!sameNumber(op.wellHalfWidth, panel.wellHalfWidth))
        differ("Well Half Width", number(op.wellHalfWidth), number(panel.wellHalfWidth));
    }
  } else if (op.potential == PotentialKind::Values && op.potentialHash() != panel.potentialHash()) {
    differences.push_back("Potential Array: its values are not the ones the operator was trained with");
  }

  if (op.kernel == panel.kernel && op.kernel != KernelKind::None) {
    if (!sameNumber(op.attraction, panel.attraction))
      differ("Attraction", number(op.attraction), number(panel.attraction));
    if (op.kernel == KernelKind::AttractiveRepulsive) {
      if (!sameNumber(op.repulsion, panel.repulsion))
        differ("Repulsion", number(op.repulsion), number(panel.repulsion));
      if (!sameNumber(op.attractivePower, panel.attractivePower))
        differ("Attractive Power", number(op.attractivePower), number(panel.attractivePower));
      if (!sameNumber(op.repulsivePower, panel.repulsivePower))
        differ("Repulsive Power", number(op.repulsivePower), number(panel.repulsivePower));
    }
  }
  return differences;
}

void LoadedOperator::reset() {
  op_.reset();
  path_.clear();
  stamp_.clear();
  device_.clear();
  description_.clear();
  energyText_.clear();
  tau_ = 0;
}

void LoadedOperator::load(const std::string& path, const at::Device& device, const std::string& solver) {
  if (path.empty())
    throw Error("Solver is '" + solver +
                "' but no operator is chosen: set Operator File to a .jko (or TorchScript .pt) file, or press Train "
                "to train one.");
  const std::string stamp = fileStamp(path);
  if (stamp.empty())
    throw Error("Operator File '" + path +
                "' does not exist: choose an existing operator file (.jko or .pt), or press Train to train one.");
  if (op_ && path == path_ && stamp == stamp_ && device.str() == device_) return;
  this->reset();
  std::shared_ptr<LearnedOperator> op;
  try {
    op = LearnedOperator::load(path, device);
  } catch (const c10::Error& error) {
    throw Error("Operator File '" + path + "' cannot be read (" + error.what_without_backtrace() +
                "): choose a valid operator file (.jko or .pt), or press Train to train one.");
  } catch (const std::exception& error) {
    throw Error("Operator File '" + path + "' cannot be read (" + error.what() +
                "): choose a valid operator file (.jko or .pt), or press Train to train one.");
  }
  op_ = op;
  path_ = path;
  stamp_ = stamp;
  device_ = device.str();
  const OperatorMetadata& metadata = op_->metadata();
  description_ = describe(metadata, path);
  energyText_ = metadata.energy.describe();
  tau_ = metadata.tau;
}

std::vector<RangeWarning> LoadedOperator::check(const EnergySpec& energy, double tau, const Grid& grid,
                                                const DensitySummary& rho0, const std::array<int, 3>& imageAxis,
                                                bool firstGuess, StepSymmetry* symmetry) const {
  const OperatorMetadata& metadata = op_->metadata();
  const std::string where = "The operator in '" + path_ + "'";
  if (metadata.dim != grid.dim)
    throw Error(where + " is for " + std::to_string(metadata.dim) + "D densities but the input is " +
                std::to_string(grid.dim) + "D: choose a " + std::to_string(grid.dim) +
                "D operator or press Train to train one.");
  // In the learned modes the problem is the operator's, or one the step's
  // exact symmetries relate to it (then the operator steps c rho0): a panel
  // value that contradicts both is an error, never silently overridden. All
  // of them at once, so that one round of edits fixes the panel. Auto solves
  // the panel's problem and only starts from the operator's steps: there
  // they are warnings (below).
  const double mass = rho0.mass;
  StepSymmetry related = relateToOperator(metadata, energy, tau, grid.dim, mass);
  if (!related.exact) related = StepSymmetry();
  if (symmetry) *symmetry = related;
  std::vector<std::string> differences = energyDifferences(metadata.energy, energy, grid.dim, imageAxis);
  if (!sameNumber(metadata.tau, tau))
    differences.push_back("Time Step: operator " + number(metadata.tau) + ", panel " + number(tau));
  if (!firstGuess && !differences.empty() && !related.exact) {
    std::ostringstream message;
    message << where << " was trained for " << metadata.energy.describe() << ", tau " << number(metadata.tau)
            << "; the panel differs in " << differences.size() << (differences.size() == 1 ? " setting" : " settings")
            << ": ";
    for (size_t i = 0; i < differences.size(); ++i) message << (i ? "; " : "") << differences[i];
    message << ". The operator " << describeCoverage(metadata) << ", and the panel is not among them ("
            << relateToOperator(metadata, energy, tau, grid.dim, mass).difference
            << "). Set such values (Operator Description lists them), choose Solver Auto (it refines the "
               "operator's steps for the panel's energy and Time Step), or press Train to train an operator for "
               "the panel's settings.";
    throw Error(message.str());
  }
  try {
    op_->checkCompatible(grid, firstGuess ? nullptr : &energy, firstGuess ? 0 : tau);
  } catch (const OperatorFileError& error) {
    throw Error(where + " does not fit the input: " + error.what() + ".");
  }
  std::vector<RangeWarning> warnings = checkGridAgainstTraining(metadata, grid);
  for (RangeWarning& w : checkDensityAgainstTraining(metadata, rho0, related)) warnings.push_back(std::move(w));
  if (firstGuess)
    for (RangeWarning& w : checkProblemAgainstTraining(metadata, energy, tau, grid.dim, mass))
      warnings.push_back(std::move(w));
  return warnings;
}

}  // namespace jko::plugin
