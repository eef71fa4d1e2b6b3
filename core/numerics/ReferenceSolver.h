// The reference JKO solver (DESIGN.md §2.5): minimises the map-form objective
// J(u) of JkoObjective over a free displacement field u, one step at a time,
// by L-BFGS preconditioned with the Wasserstein metric of the step: the
// initial inverse Hessian is diag(tau / (w_i |h|)), the inverse Hessian of
// the transport term, so that the first iterate is an explicit Euler step
// u = -tau grad(dE/drho) even where the density is small.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <vector>

#include "numerics/GridScaleCompletion.h"
#include "numerics/JkoObjective.h"
#include "numerics/Progress.h"
#include "numerics/StepCertificate.h"

namespace jko {

struct ReferenceSolverOptions {
  int maxIterations = 2000;
  int history = 20;
  /// Stop once J fell by at most this fraction of the step's total decrease
  /// J(0) - J(u) over the last `window` iterations ...
  double objectiveTolerance = 1e-10;
  int window = 5;
  /// ... and the squared gradient norm in the metric of the step, g . H0 g
  /// (twice the decrease a Newton step would still give), is at most this
  /// fraction of the step's total decrease.
  double gradientTolerance = 1e-7;
  /// Stop as soon as this returns true for the current iterate u and its
  /// gradient g = dJ/du (both (1, dim, n...)), whatever the tolerances
  /// (empty: never). A refinement that only has to pass a certificate
  /// (numerics/StepCertificate) stops there. Every iterate has J(u) <= J(0).
  std::function<bool(const at::Tensor& displacement, const at::Tensor& gradient)> accept;
  /// Report progress every this many L-BFGS iterations (within a step).
  int progressInterval = 25;
  /// Complete the step's response at the grid scale (numerics/
  /// GridScaleCompletion: without it a pixel checkerboard is never
  /// flattened); kept only where it does not raise the energy. Off by
  /// default: the learned and linearised steps approximate the map-form
  /// step alone, and its conjugate gradients cost up to a reference step
  /// more on fine grids (docs/design.md, "Grid-scale modes").
  bool completeGridScale = false;
};

struct ReferenceStep {
  at::Tensor next;          ///< rho_{k+1}, float64, shape of the grid
  at::Tensor displacement;  ///< u, (dim, n...)
  double objective = 0, energy = 0, transport = 0;
  double initialObjective = 0;  ///< J(0) = E(rho_k)
  double gradientMeasure = 0;   ///< g . H0 g / (J(0) - J(u)) at the end
  double objectiveChange = 0;   ///< decrease over the last window / (J(0) - J(u))
  int iterations = 0, evaluations = 0;
  bool converged = false;
  bool accepted = false;  ///< stopped because ReferenceSolverOptions::accept said so
  /// The grid-scale completion: its conjugate-gradient iterations, and
  /// whether `next` is the completed frame (false where it is off, has
  /// nothing to complete, or would have raised the energy).
  int completionIterations = 0;
  bool completed = false;
  /// Where the completion's solve ran: the relative L1 change it made to
  /// the map-form frame (StepCertificate::gridScaleDefect, exactly), kept
  /// or not; NaN where it did not run.
  double gridScaleDefect = std::numeric_limits<double>::quiet_NaN();
};

/// J and dJ/dx at a flat iterate x (this process's part of it).
struct LbfgsEvaluation {
  double value = 0;
  at::Tensor gradient;  ///< flat float64, like x
};

/// What the metric-preconditioned L-BFGS of the reference solver minimises:
/// the objective, the inner product of two flat vectors (over all processes
/// when x is split among them), and the diagonal initial inverse Hessian H0.
struct LbfgsProblem {
  std::function<LbfgsEvaluation(const at::Tensor& x)> evaluate;
  std::function<double(const at::Tensor&, const at::Tensor&)> dot;
  at::Tensor inverseMetric;     ///< H0, flat like x
  double initialObjective = 0;  ///< J(0): the stopping rule measures decrease from it
  std::function<bool(const at::Tensor& x, const at::Tensor& gradient)> accept;  ///< flat; may be empty
};

struct LbfgsOutcome {
  at::Tensor x;  ///< the last iterate, flat
  double value = 0, initialObjective = 0, gradientMeasure = 0, objectiveChange = 0;
  int iterations = 0, evaluations = 0;
  bool converged = false, accepted = false;
  /// The solver's record of a step (all but the density and the terms).
  ReferenceStep step() const {
    ReferenceStep s;
    s.initialObjective = initialObjective;
    s.gradientMeasure = gradientMeasure;
    s.objectiveChange = objectiveChange;
    s.iterations = iterations;
    s.evaluations = evaluations;
    s.converged = converged;
    s.accepted = accepted;
    return s;
  }
};

/// The reference solver's L-BFGS from x (a warm start worse than x = 0 is
/// replaced by 0), with the stopping rule of `options` (its `accept` is not
/// used: the problem's is).
LbfgsOutcome minimiseWithMetricLbfgs(const LbfgsProblem& problem, at::Tensor x, const ReferenceSolverOptions& options,
                                     const ProgressCallback& progress = {});

/// What completedFrame needs of an objective: its limiter and clip, and E
/// and the internal energy U of a density (over all ranks).
struct FrameFinish {
  std::function<at::Tensor(const at::Tensor& deposited)> nextDensity;
  std::function<double(const at::Tensor&rho)> energy, internalEnergy;
};

/// The step's frame from its deposit: the objective's limiter and clip,
/// after the grid-scale completion when `complete` is set, its solve
/// converged, and the completed frame still has E <= E(rho_k) =
/// `initialEnergy` and no more internal
/// energy than the map-form frame (the completion is a diffusion of it: a
/// potential's or an interaction's energy may rise by what it spreads).
/// Records the completion in `step`. `window` is the whole grid on one
/// process or a rank's planes.
at::Tensor completedFrame(const at::Tensor& deposited, double initialEnergy, bool complete,
                          const GridScaleCompletion& completion, const GridScaleCompletion::Window& window,
                          const FrameFinish& finish, ReferenceStep& step);

/// The grid-scale completion of another solver's frame `next` (the grid's
/// shape) for the step from `rho`: completedFrame with J's limiter and
/// clip, under the same conditions (the reference solver completes its own
/// frames). Records the completion in `step` (completionIterations,
/// completed, gridScaleDefect).
at::Tensor completeFrame(const JkoObjective& J, const at::Tensor& rho, const at::Tensor& next, double energyOfRho,
                         ReferenceStep& step);

/// A solver's frame as it is shown: completed at the grid scale where that
/// was asked for, and how much pixel-scale detail it keeps
/// (StepCertificate::gridScaleDefect: the completion's own change where its
/// solve ran, else the two-iteration check of the frame).
struct FinishedFrame {
  at::Tensor density;
  double gridScaleDefect = std::numeric_limits<double>::quiet_NaN();
  bool completed = false;
  int completionIterations = 0;  ///< of the kept completion; 0 where none was kept
  /// The frame shown keeps detail at the grid scale that the flow would
  /// have damped (a completed frame does not).
  bool keepsGridScaleDetail() const { return !completed && gridScaleDefect > StepCertificate::kGridScaleDefectShare; }
};

/// The frame of a solver that completes its own frames (the reference
/// solver's `solved`), with `check` (a gridScaleDefect) where its
/// completion did not run. Every solver's frame is finished by this rule.
FinishedFrame finishedFrame(const ReferenceStep& solved, const std::function<double(const at::Tensor&)>& check);
/// The reference solver's frame, finished.
FinishedFrame finishFrame(const StepCertifier& certifier, const ReferenceStep& solved);
/// Another solver's frame `next` for the step from `rho`, finished:
/// completed (completeFrame) when `complete`, else checked.
FinishedFrame finishFrame(const StepCertifier& certifier, const at::Tensor& rho, const at::Tensor& next,
                          double energyOfRho, bool complete);

/// K steps from rho0 by `step(rho, warmStart)`, each warm-started from the
/// previous step's displacement, with a progress event per step.
std::vector<ReferenceStep> warmStartedRollout(
    const std::function<ReferenceStep(const at::Tensor& rho, const at::Tensor& warmStart)>& step,
    const at::Tensor& rho0, int steps, const ProgressCallback& progress);

class ReferenceSolver {
 public:
  explicit ReferenceSolver(std::shared_ptr<const JkoObjective> objective, ReferenceSolverOptions options = {});

  const JkoObjective& objective() const { return *objective_; }
  const ReferenceSolverOptions& options() const { return options_; }
  /// Throws InvalidParameter for options no solver can run with.
  static void validateOptions(const ReferenceSolverOptions& options);

  /// One JKO step from rho (shape of the grid), starting L-BFGS from
  /// `initialDisplacement` (dim, n...) when given, else from u = 0.
  ReferenceStep step(const at::Tensor& rho, const at::Tensor& initialDisplacement = {},
                     const ProgressCallback& progress = {}) const;

  /// K steps from rho0, each warm-started from the previous displacement.
  std::vector<ReferenceStep> rollout(const at::Tensor& rho0, int steps, const ProgressCallback& progress = {}) const;

 private:
  std::shared_ptr<const JkoObjective> objective_;
  ReferenceSolverOptions options_;
};

}  // namespace jko
