// The Auto solver: a learned JKO step that is never returned wrong without a
// word (DESIGN.md §6, "Certificates"). Each step is the learned operator's;
// when its descent guard fails (J(u) > E(rho_k)) or its certificate is above
// a threshold, the step is refined from the learned map by the reference
// solver's L-BFGS until the certificate passes (or the solver's own stopping
// rule holds); a learned map far off is no start, and the step is then the
// reference solver's own. Every step reports its certificate, whether it was
// refined, why, and with how many iterations.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "numerics/Progress.h"
#include "numerics/ReferenceSolver.h"
#include "numerics/StepCertificate.h"
#include "operator/LearnedOperator.h"
#include "operator/StepSymmetry.h"

namespace jko {

struct AutoSolverOptions {
  /// A step passes when its descent guard holds and its certificate (the
  /// estimated relative L1 distance of the frame to the step's minimiser,
  /// StepCertificate::l1ErrorEstimate) is at most this. Chosen on the bundled
  /// operators' learned frames: it flags every frame more than 3% off and
  /// few of those less than 1% off; at 0.01 Auto let frames of the wild
  /// suite certified at 0.4-0.8% through 1.0-1.5% off, where the
  /// certificate underestimates up to 3x (docs/design.md, "Certificates",
  /// "Auto stops correcting once certified"; scripts/certificate_study.py).
  double threshold = 0.004;
  /// A refinement stops once the certificate is at most refineTo * threshold
  /// (or on the reference solver's own rule): the margin keeps refined frames
  /// inside the threshold where the certificate underestimates (rarely, by
  /// up to 10% in the study).
  double refineTo = 0.5;
  /// A learned step whose certificate is above this (an estimated L1 error
  /// of 3%) is no start for the
  /// refinement: from such a map L-BFGS crawled (2000 iterations on a
  /// sharp-edged density, still 6.8% off the reference step), so the
  /// refinement starts from u = 0 and is the reference solver's own step,
  /// stopped by its own rule (the certificate is least reliable on such
  /// steps). 0.1 until the Gauss-Newton corrections brought more maps
  /// below it: refined from them to the certificate, Fokker-Planck frames
  /// of fine stripes, terrain and cells stayed 1.0-1.4% off (docs/design.md,
  /// "Auto after the corrections").
  double restartAbove = 0.03;
  /// The learned map's Gauss-Newton corrections (LearnedOperator::step)
  /// stop for a step once its certificate is at most correctUntil *
  /// threshold (0: all of the file's corrections, as the learned solver
  /// takes them). A smooth step is certified far inside the threshold after
  /// none or one; the rest of the fixed count only tightens a frame that
  /// passes anyway (docs/design.md, "Auto stops correcting once certified").
  double correctUntil = 0.25;
  /// The refinement's L-BFGS (its `accept` is set by the solver).
  ReferenceSolverOptions reference;
};

enum class RefineReason {
  None,
  DescentFailed,      ///< J(u) > E(rho_k): the learned step raised the step objective
  CertificateAbove,   ///< the certificate's relative gap is above the threshold
  LearnedStepFailed,  ///< the learned step threw (NaN, a density it cannot take)
};
/// "none", "descent", "certificate", "learned-step-failed".
std::string toString(RefineReason reason);
/// Why a learned frame with this certificate is not certified at
/// `threshold` (its descent guard first), or None.
RefineReason learnedStepVerdict(const StepCertificate& certificate, double threshold);

/// One step of the Auto solver (or the learned step alone, certified).
struct CertifiedStep {
  at::Tensor next;              ///< rho_{k+1}, float64, shape of the grid
  at::Tensor displacement;      ///< u (dim, n...), float64
  StepCertificate learned;      ///< the learned step's certificate (NaN fields when it failed)
  StepCertificate certificate;  ///< the returned frame's (== learned when not refined)
  bool refined = false;
  RefineReason reason = RefineReason::None;
  std::string learnedFailure;    ///< the learned step's error (RefineReason::LearnedStepFailed)
  int iterations = 0;            ///< L-BFGS iterations of the refinement
  bool refineConverged = false;  ///< the refinement stopped on the reference solver's own rule
  bool restarted = false;        ///< refined from u = 0: the learned map was too far off (restartAbove)
  /// The refinement was the reference solver's own step from u = 0 (a
  /// restart, or a learned step that failed): then only its own stopping
  /// rule certifies the frame, and one that stopped at the iteration cap
  /// (refineConverged false) is not certified whatever its certificate.
  bool fromScratch() const { return refined && (restarted || reason == RefineReason::LearnedStepFailed); }
  /// c of the step's symmetry (operator/StepSymmetry.h): the operator
  /// stepped c rho and the frame is 1/c of its step; 1 when not used.
  double densityFactor = 1;
  double learnedMs = 0, certificateMs = 0, refineMs = 0;
};

/// The step's symmetry through which the operator's step is Auto's first
/// guess for (energy, tau) at this mass (operator/StepSymmetry.h): the
/// exact one, else the identity (the operator's own step at c = 1).
StepSymmetry guessSymmetry(const OperatorMetadata& metadata, const EnergySpec& energy, double tau, int dim,
                           double mass);

/// Auto's first guess (AutoSolver::step): `guess()`, the learned step
/// certified; a learned step that cannot be taken (it throws InvalidDensity:
/// NaN, overflow) is no reason to stop, but a guess with reason
/// LearnedStepFailed, which the reference solver then takes from u = 0.
CertifiedStep guessOrFailure(const std::function<CertifiedStep()>& guess);

/// The step after its refinement `refined` (the reference solver's L-BFGS
/// from the learned map or from u = 0): its frame, map, iterations and
/// whether it stopped on the solver's own rule; the certificate is the
/// caller's to take again.
void recordRefinement(CertifiedStep& step, const ReferenceStep& refined);

/// How Auto refines a learned step that failed (AutoSolver::step): from the
/// learned map by L-BFGS until the certificate is at most `target`, or, from
/// a map too far off or none, the reference solver's own step from u = 0.
struct RefinementPlan {
  bool restarted = false;    ///< the learned map was too far off (restartAbove)
  bool fromScratch = false;  ///< from u = 0, on the reference solver's own rule
  double target = 0;         ///< the certificate that ends a refinement from the map
};
RefinementPlan refinementPlan(const CertifiedStep& guess, const AutoSolverOptions& options);

class AutoSolver {
 public:
  /// `objective` is the problem solved (energy, tau, grid); the operator's
  /// step is a first guess for it (the same energy and tau, usually).
  AutoSolver(std::shared_ptr<const LearnedOperator> op, std::shared_ptr<const JkoObjective> objective,
             AutoSolverOptions options = {});
  /// Throws InvalidParameter for an option out of its range.
  static void validate(const AutoSolverOptions& options);

  const AutoSolverOptions& options() const { return options_; }
  const StepCertifier& certifier() const { return certifier_; }
  const LearnedOperator& learnedOperator() const { return *op_; }

  /// One step from rho (shape of the grid): learned, certified, refined
  /// when it fails.
  /// `energyOfRho`: E(rho) when the caller has it (StepCertifier::certify).
  CertifiedStep step(const at::Tensor& rho, const ProgressCallback& progress = {},
                     double energyOfRho = std::numeric_limits<double>::quiet_NaN()) const;
  /// The learned step and its certificate, never refined (a failed learned
  /// step throws as LearnedOperator::step does).
  CertifiedStep learnedStep(const at::Tensor& rho, double energyOfRho = std::numeric_limits<double>::quiet_NaN()) const;
  /// K steps from rho0.
  std::vector<CertifiedStep> rollout(const at::Tensor& rho0, int steps, const ProgressCallback& progress = {}) const;

 private:
  /// The operator's step for rho, through the symmetry when it applies,
  /// its corrections stopped below `correctionTolerance` (0: all).
  CertifiedStep learnedGuess(const at::Tensor& rho, double correctionTolerance) const;
  /// learnedGuess certified, with the reason to refine it.
  CertifiedStep certifiedGuess(const at::Tensor& rho, double energyOfRho, double correctionTolerance) const;

  std::shared_ptr<const LearnedOperator> op_;
  std::shared_ptr<const JkoObjective> objective_;
  AutoSolverOptions options_;
  StepCertifier certifier_;
};

/// The solvers that start from the operator's step, for one problem (the
/// `jko` modes of the same names): Learned (the operator's step, certified,
/// never refined), Refine (then a fixed number of L-BFGS iterations of the
/// reference solver from its map, certified again) and Auto
/// (AutoSolver::step).
class OperatorSolver {
 public:
  enum class Mode { Learned, Refine, Auto };
  /// "learned", "refine" or "auto"; throws InvalidParameter otherwise.
  static Mode modeFromString(const std::string& name);

  /// `refine`: the Refine mode's L-BFGS (its maxIterations is the number of
  /// iterations).
  OperatorSolver(std::shared_ptr<const LearnedOperator> op, std::shared_ptr<const JkoObjective> objective, Mode mode,
                 AutoSolverOptions autoOptions = {}, ReferenceSolverOptions refine = {});
  CertifiedStep step(const at::Tensor& rho, const ProgressCallback& progress = {},
                     double energyOfRho = std::numeric_limits<double>::quiet_NaN()) const;
  Mode mode() const { return mode_; }
  const AutoSolver& autoSolver() const { return auto_; }

 private:
  Mode mode_;
  AutoSolver auto_;
  ReferenceSolver refiner_;
};

/// Counts of refined frames and why, over a rollout.
struct RefinementTally {
  int frames = 0, refined = 0, descentFailures = 0, certificateFailures = 0, learnedFailures = 0, restarted = 0;
  /// Steps from u = 0 (CertifiedStep::fromScratch) that stopped before the
  /// reference solver's tolerance (its iteration cap).
  int unconverged = 0;
  std::vector<int> unconvergedFrames;
  int64_t iterations = 0;
  /// Frames (1-based) whose step failed the guard or the certificate.
  std::vector<int> failedFrames;
  void add(const CertifiedStep& step);
  /// E.g. "3 of 20 frames refined (1: the learned step raised the step
  /// objective above E(rho_k), 2: certificate above 0.01), 57 L-BFGS iterations". With `refining` false (the learned
  /// solver): "3 of 20 learned frames fail ... ; frames 4, 5, 9". Steps from
  /// u = 0 that stopped at the iteration cap are named unless
  /// `nameUnconverged` is false (a caller that lists every frame not
  /// certified itself).
  std::string describe(double threshold, bool refining = true, bool nameUnconverged = true) const;
  /// {"frames", "refined", "descent_failures", "certificate_failures",
  ///  "learned_failures", "iterations", "restarted", "failed_frames",
  ///  "unconverged", "unconverged_frames"}.
  nlohmann::json toJson() const;
};

}  // namespace jko
