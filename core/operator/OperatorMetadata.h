// What an operator file says about the learned JKO operator it holds
// (DESIGN.md §2.3): the energy and tau it was trained for, its network, the
// fixed input scaling, and the ranges of boxes, grids, masses and peak
// densities it was trained on.
#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "numerics/Energy.h"
#include "numerics/Grid.h"

namespace jko {

struct NetworkConfig {
  std::string kind = "fno";  ///< "fno", "unet" or "torchscript"
  int width = 16;            ///< FNO channels
  int modes = 12;            ///< FNO Fourier modes kept per axis
  int layers = 4;            ///< FNO spectral layers
  int hidden = 64;           ///< FNO projection width
  double padFraction =
      0.125;  ///< zero padding per axis, as a fraction of the grid (same physical frequencies at any resolution)
  int unetBase = 16;  ///< U-Net channels at the finest level
  int grid = 64;      ///< network grid: at most this many nodes per axis
  /// The velocity the network gates and corrects (LearnedOperator.h):
  /// "resolvent" (explicit and resolvent-smoothed velocities on the network
  /// grid; files written before "base" existed) or "linearized" (the
  /// linearised implicit step on the density's own grid).
  std::string base = "resolvent";
  int baseIterations = 3;  ///< "linearized": its conjugate-gradient iterations
  int baseSmoothing = 2;   ///< "linearized": Gauss-Seidel sweeps before and after each coarse correction
  /// "linearized": the network's bounded correction, at most this many
  /// velocity scales (0: a gate on the base only).
  double baseCorrection = 2;
  /// "linearized": the gate acts on the base averaged over blocks of this
  /// many cells per axis (1: on the whole base).
  int baseBlock = 1;
  /// "linearized": the network sees its inputs averaged over the same blocks
  /// (so that no mode finer than them can move its gate).
  bool baseSmoothInputs = false;
  /// "linearized": the gate is scaled by min(1, c / gateContrast), c the
  /// density's local contrast (max - min) / (max + min) over 9 network
  /// nodes per axis (0: unscaled, files written before it existed).
  double gateContrast = 0;
  /// Gauss-Newton corrections of the learned map at every step (either
  /// base), each with the objective's gradient and the linearised step's
  /// model Hessian (LinearizedStep::refine; 0: none, files written before).
  /// The linearised step takes the base_* settings above (their defaults
  /// for a resolvent base).
  int gaussNewton = 0;
  double baseStabilisation = 16;  ///< "linearized": its stabilisation at mobility jumps

  nlohmann::json toJson() const;
  static NetworkConfig fromJson(const nlohmann::json& json);
  /// Throws InvalidParameter naming the first field out of its range.
  void validate() const;
  /// How many float parameters the network of this configuration has, in
  /// `dim` dimensions with these channels, computed without building it (0
  /// for a TorchScript module, whose parameters are its own). A loader
  /// compares it with what a file holds before allocating anything.
  /// Validates first.
  int64_t parameterCount(int dim, int inputChannels, int outputChannels) const;
};

/// Fixed input/output scaling: features are the density divided by
/// `density`, the explicit velocity -grad(dE/drho) divided by `velocity`,
/// and V divided by `potential` (never by a sample's own statistics: for
/// nonlinear energies the speed depends on the absolute density).
struct FeatureScales {
  double density = 1;
  double velocity = 1;
  double potential = 1;
  /// kappa of the resolvent (1 - tau kappa Lap)^-1 that smooths the internal
  /// energy's velocity: D for the entropy, D m peak^(m-1) for the porous medium.
  double diffusivity = 0;
  /// The explicit velocity is capped at this many cells per step (vacuum
  /// fronts of the entropy make it unbounded).
  double capCells = 4;

  nlohmann::json toJson() const;
  static FeatureScales fromJson(const nlohmann::json& json);
};

/// The ranges an operator was trained on; applying it outside them warns.
struct TrainingRanges {
  std::array<double, 3> boxLength{1, 1, 1};
  int64_t gridMin = 0, gridMax = 0;  ///< nodes per axis
  double massMin = 0, massMax = 0;
  double peakMin = 0, peakMax = 0;

  /// Whether the file records a mass range (older files have zeros).
  bool hasMasses() const { return massMax > 0 && massMin > 0 && massMin <= massMax; }
  nlohmann::json toJson() const;
  static TrainingRanges fromJson(const nlohmann::json& json);
};

/// An operator conditioned on energy parameters (docs/design.md, "One
/// operator, many panels"): besides the density its network sees, as
/// constant input channels, log(p / p_mid) / log(p_max / p_min) of each
/// conditioned parameter p of the energy it steps at its own tau (p_mid the
/// geometric middle of the range), trained over these ranges. Ranges of
/// zeros: not conditioned on that parameter. Problems at other time steps
/// and masses reach these values through the step's symmetries.
struct Conditioning {
  std::array<double, 2> diffusion{0, 0};          ///< D of the internal energy
  std::array<double, 2> potentialStrength{0, 0};  ///< a of a quadratic potential (every axis scaled alike)
  std::array<double, 2> exponent{0, 0};           ///< m of the porous medium
  std::array<double, 2> attraction{0, 0};         ///< A of an interaction kernel without repulsion

  bool onDiffusion() const { return diffusion[1] > 0; }
  bool onPotentialStrength() const { return potentialStrength[1] > 0; }
  bool onExponent() const { return exponent[1] > 0; }
  bool onAttraction() const { return attraction[1] > 0; }
  bool any() const { return onDiffusion() || onPotentialStrength() || onExponent() || onAttraction(); }
  int channels() const {
    return (onDiffusion() ? 1 : 0) + (onPotentialStrength() ? 1 : 0) + (onExponent() ? 1 : 0) +
           (onAttraction() ? 1 : 0);
  }
  /// The channels' values for an energy at the operator's tau, in order (D,
  /// a, m, A: files written before a channel existed keep their order).
  std::vector<double> channelValues(const EnergySpec& energy) const;
  /// Throws InvalidParameter naming a range that is not 0 < min <= max.
  void validate() const;
  nlohmann::json toJson() const;
  static Conditioning fromJson(const nlohmann::json& json);
};

struct OperatorMetadata {
  int dim = 2;
  EnergySpec energy;
  double tau = 0.005;
  NetworkConfig network;
  FeatureScales scales;
  TrainingRanges ranges;
  Conditioning conditioning;                           ///< none for an operator of one energy
  nlohmann::json training = nlohmann::json::object();  ///< summary: rounds, losses, time, mode, seed ...
  std::string libtorchVersion;

  nlohmann::json toJson() const;
  /// Throws OperatorFileError naming a missing or invalid field.
  static OperatorMetadata fromJson(const nlohmann::json& json);
};

}  // namespace jko
