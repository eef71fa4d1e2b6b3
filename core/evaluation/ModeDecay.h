// The mode-decay case: the linear response of one JKO step at every scale.
//
// On a constant state rho0 a small cosine mode c_k (along each axis, and the
// diagonal product mode) must shrink in one step by the implicit-Euler
// factor 1 / (1 + tau D_eff lambda_k), lambda_k = sum over the mode's axes of
// (pi k / L_a)^2, D_eff = rho0 U''(rho0) (entropy: D; porous medium:
// D m rho0^(m-1)): the linearised JKO step is implicit Euler. A solver's
// factor is measured as the projection
//
//   f_k = < step(rho0 + A c_k) - step(rho0), c_k > / (A < c_k, c_k >),
//
// so energies with a potential or an interaction (whose constant state is
// not steady) are measured the same way; the formula is given only for a
// purely internal energy. Cell-centred cosines are the grid's own DCT-II
// basis, so the projection separates the modes exactly.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "evaluation/ReferenceCases.h"
#include "numerics/Energy.h"
#include "numerics/Grid.h"

namespace jko {

struct ModeDecayOptions {
  Grid grid;
  EnergySpec energy;
  double tau = 0.005;
  double level = 0;                  ///< rho0; 0: the energy's default (porous medium 0.3, else 1)
  double amplitude = 0.1;            ///< A / rho0
  std::vector<int64_t> wavenumbers;  ///< empty: 1, 2, 4, ..., n/2
};

/// The wavenumbers 1, 2, 4, ..., n/2 of a grid (n the smallest node count).
std::vector<int64_t> defaultWavenumbers(const Grid& grid);

/// D_eff = rho0 U''(rho0), 0 without an internal energy.
double effectiveDiffusivity(const EnergySpec& energy, double level);

/// Runs the case for `solver` and, when given, `reference` (the reference
/// solver; pass an empty Stepper when `solver` is the reference itself).
/// JSON: per direction ("x", "y"[, "z"], "diagonal") the arrays "k",
/// "solver", "reference", "formula" (null where there is none); and
/// max_abs_factor, solver_reference_max_abs_diff (k <= n/4),
/// reference_formula_max_rel_error (k <= n/8), growing_modes, and "gates".
nlohmann::json evaluateModeDecay(const ModeDecayOptions& options, const Stepper& solver, const Stepper& reference,
                                 const std::string& solverName, const ProgressCallback& progress = {});

}  // namespace jko
