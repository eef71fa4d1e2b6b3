// The reference cases of DESIGN.md §5 as runnable set-ups (grid, energy, tau,
// initial density, exact frames), and their evaluation for any JKO stepper:
// the reference solver, the learned operator, or both (refine).
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "evaluation/ReferenceCheck.h"
#include "numerics/Energy.h"
#include "numerics/Grid.h"
#include "numerics/Progress.h"
#include "numerics/ReferenceSolver.h"
#include "numerics/StepCertificate.h"

namespace jko {

struct ReferenceCase {
  std::string name;
  Grid grid;
  EnergySpec energy;
  double tau = 0.005;
  int steps = 1;
  bool oneStep = false;  ///< reports step_error (the part of the step that is wrong)
  at::Tensor initial;    ///< rho_0, float64, shape of the grid
  /// Exact JKO chain rho_1..rho_K (Gaussian cases: the Gaussian chain;
  /// Barenblatt: the chain of exact dilations).
  std::vector<at::Tensor> jkoChain;
  /// Exact PDE solution at t_k (barenblatt-flow only; else empty).
  std::vector<at::Tensor> pde;
  /// The exact first step's displacement (dim, n...), for the objective check.
  at::Tensor firstDisplacement;
  /// Steady-state variance per axis (ou-steady: D / a).
  std::vector<double> steadyVariance;
};

/// Names accepted by makeReferenceCase.
const std::vector<std::string>& referenceCaseNames();

/// The energy parameters a case may be asked for instead of its own; each
/// case's exact answer holds for any value (the Gaussian chains for any D,
/// potential strength a and attraction; the Barenblatt chain for any D and
/// m). Unset: the case's default.
struct CaseParameters {
  std::optional<double> diffusion, potentialStrength, attraction, exponent;
};

/// The parameters of CaseParameters that `name` takes ("D", "potential
/// strength a", "attraction", "exponent m"); asking a case for another one is
/// an error.
std::vector<std::string> caseParameterNames(const std::string& name);

/// Builds a case on an n^dim grid (ou-aniso-step: n x 2n/3 with unequal
/// spacing). tau <= 0 or steps < 0 select the case's defaults; `parameters`
/// replaces the case's energy parameters (each must be one the case takes).
ReferenceCase makeReferenceCase(const std::string& name, int64_t n, int dim, double tau = 0, int steps = -1,
                                const CaseParameters& parameters = {});

/// What a JKO stepper returns for one step.
struct StepOutput {
  at::Tensor next;          ///< rho_{k+1}, float64
  at::Tensor displacement;  ///< u (dim, n...), float64 (optional)
  double objective = std::numeric_limits<double>::quiet_NaN();
  double energy = std::numeric_limits<double>::quiet_NaN();
  double transport = std::numeric_limits<double>::quiet_NaN();
  int iterations = 0;
  bool converged = true;
  /// The certificate of the returned frame (numerics/StepCertificate);
  /// evaluateCase certifies the displacement itself when a stepper leaves it out.
  std::optional<StepCertificate> certificate;
  /// The learned step's certificate, for steppers that refine it.
  std::optional<StepCertificate> learnedCertificate;
  bool refined = false;
  int refineIterations = 0;
  std::string refineReason = "none";  ///< toString(RefineReason)
};

/// One JKO step from rho_k; `previous` is the last step's output (undefined
/// tensors on the first step), usable as a warm start.
using Stepper = std::function<StepOutput(const at::Tensor& rho, const StepOutput& previous)>;

/// The reference solver as a stepper, warm-started from the previous step.
Stepper referenceStepper(std::shared_ptr<const ReferenceSolver> solver);

/// Runs the stepper through the case and measures it against the exact
/// answers. Returns the JSON object of `jko eval --json`; per frame the
/// arrays "certificate" (objects, StepCertificate::toJson), "refined",
/// "refine_iterations", "refine_reason" and, where a stepper refines,
/// "learned_certificate".
/// With `referenceCheck`, also the reference solver's step from each frame's
/// own input against the frame: "reference_rel_l1" and "reference_ms" per
/// frame (outside the timed step).
nlohmann::json evaluateCase(const ReferenceCase& referenceCase, const Stepper& stepper, const std::string& solver,
                            const ProgressCallback& progress = {}, ReferenceCheck* referenceCheck = nullptr);

/// sum |a - b| / sum |b|.
double relativeL1(const at::Tensor& a, const at::Tensor& b);

/// Variance of rho along each axis about its own mean.
std::vector<double> axisVariances(const at::Tensor& rho, const Grid& grid);

}  // namespace jko
