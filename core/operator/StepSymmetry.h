// The exact symmetries of a JKO step (DESIGN.md §6 "Mass and parameters",
// docs/design.md "One operator, many panels"), and how a learned operator
// trained for one energy E0 and time step tau0 serves every problem they
// relate to its own.
//
// For an energy whose parts are an internal energy, a potential and an
// interaction, the JKO step  min E(rho') + W2^2(rho, rho') / (2 tau)  obeys
//
//   time:     step_tau(rho; E) = step_{tau / s}(rho; s E)        (any s > 0),
//   density:  step_tau(c rho; E) = c step_tau(rho; E_c)           (any c > 0),
//
// with E_c the energy whose porous-medium part is multiplied by c^(m-1) and
// whose interaction is multiplied by c (the entropy and the potential are
// unchanged: D c rho log(c rho) = c D rho log rho + a constant times the
// mass). Both keep the step's map. So the step of rho for (E, tau) is
// (1/c) times the operator's step of c rho when, with s = tau / tau0,
//
//   s D_entropy = D0,  s D_porous c^-(m-1) = D0,  s a = a0 (potential),
//   s A / c = A0 (interaction strengths),
//
// i.e. when the groups tau D (entropy), tau D M^(m-1) (porous medium),
// tau a (potential) and tau A M (interaction) of the problem, M its mass,
// are the operator's at some mass c M. c is fixed by the porous-medium or
// interaction part; for entropy and potential energies it is free and
// brings the mass into the trained range. An operator conditioned on the
// porous medium's D, or on the attraction, steps every D' (A') in its range:
// c is then free too, chosen in the trained masses where D' = s D c^-(m-1)
// (A' = s A / c) lies in the range; where no trained mass allows that, at
// the range's end nearest them (and the range checks warn about c M).
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "numerics/Energy.h"
#include "operator/OperatorMetadata.h"

namespace jko {

class LearnedOperator;
struct LearnedStep;

/// The degree p of an energy homogeneous in the density, E(c rho) = c^p E(rho)
/// (+ a constant times the mass): 1 for entropy and potential energies, m
/// for the porous medium, 2 for any interaction (bilinear in rho), where
/// all present parts share it; NaN otherwise (entropy with an interaction,
/// porous medium with a potential, ...).
double homogeneityDegree(const EnergySpec& energy);

/// `energy` after the two symmetries: every part multiplied by
/// `timeFactor` (s), the porous-medium part by c^-(m-1) and the interaction
/// by 1/c (c = `densityFactor`). The step of rho for (energy, tau) is (1/c)
/// times the step of c rho for (the result, tau / s).
EnergySpec scaledEnergy(const EnergySpec& energy, double timeFactor, double densityFactor);

/// How an operator serves the step of a problem (energy, tau) on a density of
/// mass `mass`.
struct StepSymmetry {
  /// The problem is the operator's up to the symmetries: its learned frames
  /// are the operator's steps of c rho, scaled back by 1/c.
  bool exact = false;
  double densityFactor = 1;  ///< c
  double timeFactor = 1;     ///< s = tau / tau0
  /// When not exact: the first parameter no symmetry relates to the
  /// operator's, e.g. "D: 0.1 vs 0.05 (after scaling to the operator's tau)".
  std::string difference;
  /// What was mapped, for the user ("" when c = s = 1).
  std::string note;
  /// A conditioned operator (OperatorMetadata::conditioning) steps
  /// `operatorEnergy` (the problem's energy scaled to the operator's tau
  /// and mass), not its own.
  bool conditioned = false;
  EnergySpec operatorEnergy;
  /// Where the conditioning takes up the density's scale (the porous
  /// medium's D or the attraction): which values of that parameter, at this
  /// tau and mass, and which masses, at this tau and value, put c M in the
  /// trained masses with the scaled parameter in its range. The density's
  /// range check names them when c M falls outside the trained masses.
  struct Reach {
    std::string parameter;  ///< the panel's name, "" when the conditioning does not take up the scale
    double value = 0;       ///< the problem's value of it
    double low = 0, high = 0;
    double massLow = 0, massHigh = 0;
    bool any() const { return !parameter.empty(); }
  } reach;
  bool identity() const { return exact && densityFactor == 1 && timeFactor == 1 && !conditioned; }
};

/// The symmetry that relates (energy, tau, mass) to the operator's problem,
/// if one does (see the top of this file). Where c is free it brings the
/// mass into the trained range (1 when the mass is inside or the file has no
/// range); where c is fixed, c M may fall outside the range: the range
/// checks are then made on c rho (TrainingRangeCheck.h) and warn.
StepSymmetry relateToOperator(const OperatorMetadata& metadata, const EnergySpec& energy, double tau, int dim,
                              double mass);

/// The groups of an energy that the operator's step fixes, e.g.
/// "tau D M^(m-1)" for the porous medium, and what else it serves, in words
/// with the operator's values and the mass range: the lines a user reads to
/// know which panels the operator covers.
std::string describeCoverage(const OperatorMetadata& metadata);

/// The operator's step of c rho scaled back: rho_{k+1} = (1/c) G(c rho), the
/// velocity the operator's map divided by the problem's tau (= s tau0); a
/// conditioned operator steps the symmetry's operatorEnergy.
/// `correctionTolerance`: LearnedOperator::step's.
LearnedStep stepThroughSymmetry(const LearnedOperator& op, const StepSymmetry& symmetry, const at::Tensor& rho,
                                const Grid& grid, double correctionTolerance = 0);

}  // namespace jko
