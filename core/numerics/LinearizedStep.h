// The linearised JKO step: one Gauss-Newton step of the map-form objective
// J(u) (JkoObjective.h) from u = 0, solved on the density's own grid.
//
// To second order in u, with the deposit's own linear response
// rho' = rho + K (m u) (K_a = G_a / h_a (x) S along the other axes: G the
// derivative of the quadratic B-spline weights at the nodes, S the
// (1/8, 3/4, 1/8) smoothing of the deposit at u = 0, both with the wall
// folding of PushForward), the energy's Hessian H = U''(rho) at the nodes
// and the curvature d_a = d^2 Phi / dx_a^2 of the external potential
// Phi = V + W * rho, the objective is
//
//   J(u) ~ E(rho) + <g, K M u> + 1/2 <K M u, H K M u>
//          + 1/2 sum_a <u_a, (W / tau + M d_a) u_a>,        g = dE/drho,
//
// (M = diag(m), W = diag(w), m = S^-1 rho the pre-filtered masses, w the
// transport weights). Its minimiser is
//
//   u_a = -tau e_a (K_a^T phi),   e_a = m / (w + tau m d_a),
//   (H^-1 + tau L) phi = H^-1 g,  L = sum_a K_a diag(m e_a) K_a^T,
//
// a variable-coefficient elliptic problem for the potential phi
// (~ (1/U'') phi - tau div(rho grad phi) = g / U''). On a constant state it
// is exactly implicit Euler for the linearised PDE: a cosine mode shrinks by
// 1 / (1 + tau rho U''(rho) lambda_k) with lambda_k the deposit's own
// eigenvalue, so no mode ever grows, at any grid. Without an internal energy
// (U'' = 0) the step is phi = g with the potential's curvature only.
//
// Solving. phi comes from a few conjugate-gradient iterations from phi = 0,
// each preconditioned by one multigrid V-cycle of the operator's compact (5-
// or 7-point) analogue (Multigrid.h). The operator is symmetric positive
// semi-definite, and CG never increases the error in its energy norm, so a
// partly converged solve is still a stable step.
//
// Stabilisation. K_a is a central difference: its response to the grid's
// two-cell (Nyquist) mode is zero, and the deposit's operator couples every
// other node only. Where the mobility m e jumps (a vacuum front, a sharp
// edge) the even and odd sub-lattices then solve different problems, phi
// alternates from node to node, and the steps print growing two-cell
// stripes (measured: the Barenblatt flow at 128^2 went from 2% to 26% off
// the exact chain as the solve converged). A third-difference term
// eps tau c D3^T D3 / 16 (zero on smooth fields to fourth order, as strong
// as the compact operator on the two-cell mode) couples the sub-lattices
// where the mobility's contrast over four nodes exceeds 1/4; on smooth
// states it is absent, so a cosine mode keeps the deposit's own factor.
//
// The learned operator uses this step as its stable fine-grid base; alone
// it is the "linearized" solver of `jko eval` and `jko rollout`.
#pragma once

#include <ATen/ATen.h>

#include <memory>

#include "numerics/JkoObjective.h"
#include "numerics/Multigrid.h"

namespace jko {

class StepCertifier;

struct LinearizedStepOptions {
  /// Conjugate-gradient iterations, one V-cycle each.
  int iterations = 3;
  /// eps of the stabilisation (0: none).
  double stabilisation = 16;
  /// Red-black Gauss-Seidel sweeps before and after each coarse correction.
  int smoothing = 2;
  /// |u| is capped at this many cells (the linearisation means nothing
  /// beyond a few cells; the entropy's log makes phi steep at vacuum).
  double capCells = 8;
  /// Gauss-Newton corrections after the step (correction(), each with the
  /// objective's gradient at the current displacement and a halving line
  /// search).
  int corrections = 0;
  /// In the corrections' model, particles of negative pre-filtered mass
  /// move too (with an entropy in a hard step's extra corrections only; see
  /// correction()).
  bool negativeMassesMove = true;
  /// With an entropy, each correction's |delta| is capped at this many cells
  /// per particle (0: no cap), a trust region per particle; see correction().
  double correctionCapCells = 1;
  /// ... scaled smoothly: each particle by the mean over the (2r+1)^d box
  /// around it of the box minima of the per-particle factors, r this radius
  /// in nodes (0: each particle by its own factor, which leaves a speckle
  /// at the grid scale where neighbours are capped by different factors).
  int correctionCapRadius = 1;
  /// A density's corrections stop once the certificate's estimate of its
  /// relative L1 distance to the step's minimiser (StepCertifier) is below
  /// this (0: always all of them, the default: stopping at 1e-3 made the
  /// certificates of the frames it stopped a band that no longer ranks them
  /// by their error; docs/design.md, "Corrections until certified").
  double correctionTolerance = 0;
  /// This many corrections more (0: none) for a density whose map after the
  /// fixed ones the certificate (StepCertifier::l1ErrorEstimates) puts
  /// more than extraCorrectionsAbove (relative L1) from the step's
  /// minimiser: a hard step, one the Auto solver would otherwise refine
  /// (its threshold was 1% when this was measured). (At 0.1% smooth frames at 128^2 took
  /// them too, at twice the time, for little: docs/design.md, "More
  /// corrections for hard steps".)
  int extraCorrections = 12;
  double extraCorrectionsAbove = 0.01;
  /// A density that the certificate still puts more than
  /// furtherCorrectionsAbove from its minimiser after the extra corrections
  /// takes this many more (0: none), quasi-Newton as those: frames the
  /// certificate would flag, few and early (sharp edges spreading into
  /// vacuum). On the wild suite at 64^2 the first frames from cells were
  /// 27% from the reference solver's after 20 corrections, 12% after 48;
  /// at 2% smooth frames at 128^2 stop after the extra ones (0.1-0.6% by
  /// then) and the suites' time grows by a tenth to a third
  /// (docs/design.md, "Further corrections for frames still flagged").
  int furtherCorrections = 28;
  double furtherCorrectionsAbove = 0.02;
  /// The further corrections as Gauss-Newton steps at the map (0: none;
  /// they are quasi-Newton then, as the extra ones): each takes this many
  /// conjugate-gradient iterations on (c + J(u)^T E''(rho') J(u)) delta =
  /// -J'(u), c the transport's diagonal, J(u) the deposit's Jacobian at
  /// the displaced particles, E'' the energy's Hessian at their deposit
  /// rho', preconditioned by the model's A^-1 without the cap. The model,
  /// at u = 0, is 7-16 times too soft along its own corrections on a stiff
  /// step (Fokker-Planck at D = 0.5, 128^2): its corrections stall there,
  /// these converge (docs/design.md, "What holds the corrections back at
  /// the top of the D range"). A density stops taking them once its
  /// certificate is below furtherNewtonCertified.
  int furtherNewtonIterations = 0;
  double furtherNewtonCertified = 0.001;
  /// ... and this threshold instead for an energy without an internal part
  /// (aggregation): nothing there damps the grid-scale texture of a
  /// compressed patch, and a trajectory amplifies each step's error (steps
  /// within 0.15% of the reference solver's parted to 7% by frame 20 at
  /// 256^2; at 1e-4 the few early steps above it take the extra corrections,
  /// and the trajectories stay within 3%: docs/design.md, "Extra corrections
  /// for aggregation").
  double extraCorrectionsAboveWithoutDiffusion = 1e-4;
  /// The extra corrections after the first are quasi-Newton steps: L-BFGS
  /// with at most this many pairs (s, y) of the extra corrections before,
  /// on top of the model (its A^-1 as the initial inverse Hessian; 0: every
  /// one the chord step -A^-1 J'(u) of the fixed corrections). The model is
  /// the Hessian at u = 0, far from the objective's at the map of a hard
  /// step (thin strokes spreading over many cells); the pairs supply the
  /// curvature it misses (docs/design.md, "Quasi-Newton extra corrections").
  int extraCorrectionMemory = 10;
  /// Trial lengths of each correction's line search.
  int lineSearchTrials = 6;
};

/// The deposit's response at u = 0 (K_a above): sum_a K_a f_a for a field
/// f (B, dim, n...), i.e. d/dt deposit(m, t f / m) at t = 0 ...
at::Tensor depositResponse(const Grid& grid, const at::Tensor& flux);
/// ... and its adjoint K^T phi (B, dim, n...) for phi (B, n...). Float64 CPU.
at::Tensor depositResponseAdjoint(const Grid& grid, const at::Tensor& phi);

struct RefinedDisplacement {
  at::Tensor displacement;  ///< (B, dim, n...)
  at::Tensor deposited;     ///< its deposit (B, n...), before the output limiter
};

/// Who moves in a correction and how far (LinearizedStep::correction): the
/// particles of negative pre-filtered mass too, and each particle's cap in
/// cells (0: none).
struct CorrectionRule {
  bool negativeMassesMove = true;
  double capCells = 0;
};
CorrectionRule correctionRule(const EnergySpec& spec, const LinearizedStepOptions& options, bool hardStep,
                              bool trustRegion);

/// How the linearised step's grid is split over ranks.
struct LinearizedSplit {
  MultigridSlabs slabs;  ///< the ranks' planes of the grid's first axis
  /// Planes of halo of the model's fields: K_a diag(m e_a) K_a^T reads two
  /// planes out, the stabilisation's third differences three.
  int64_t halo = 3;
};

/// One density's linearised step on one rank's planes of a grid split over
/// ranks (parallel/DistributedLinearizedStep.h prepares these fields).
struct LinearizedSlab {
  Grid grid;  ///< the whole grid
  LinearizedSplit split;
  /// The owned planes (planes, ...): rho, m = S^-1 rho, the transport
  /// weights, dE/drho.
  at::Tensor density, masses, weights, variation;
  /// Phi = V + W * rho on the owned planes and one more on each side
  /// within the grid; undefined without a potential or interaction.
  at::Tensor external;
  double peak = 0;  ///< the whole density's largest value
  /// The step these fields belong to: a rank's model stays prepared for it
  /// (and for `masses`' tensor) across the step and its corrections.
  const void* step = nullptr;
};

/// The displacement of LinearizedStep::displacement on the rank's planes,
/// (dim, planes, ...), capped alike: the serial one's owned planes, to the
/// rounding of the conjugate gradients' inner products (summed over the
/// ranks); the multigrid's V-cycles are the serial ones. Collective.
at::Tensor linearizedDisplacementOnSlab(const LinearizedSlab& slab, const EnergySpec& spec, double tau,
                                        const LinearizedStepOptions& options);

/// LinearizedStep::correction on the rank's planes: the correction
/// (1, dim, planes, ...) for the objective's gradient on the owned planes
/// (1, dim, planes, ...), capped alike (the cap's smoothing reads the
/// factors of 2 r planes of halo): the serial one's owned planes to the
/// rounding of the inner products summed over the ranks. Collective.
at::Tensor linearizedCorrectionOnSlab(const LinearizedSlab& slab, const EnergySpec& spec, double tau,
                                      const LinearizedStepOptions& options, const at::Tensor& gradient,
                                      const CorrectionRule& rule);

/// What the corrections of a map (refineMap) need of one JKO step, per
/// density of a batch (B, ...): the objective on the whole grid
/// (LinearizedStep::refine) or on one rank's planes of a grid split over
/// ranks (parallel/DistributedLinearizedStep), its sums over the ranks
/// inside, so that both run the one algorithm.
class MapCorrections {
 public:
  virtual ~MapCorrections() = default;
  struct Evaluation {
    at::Tensor objective;  ///< J(u) (B,)
    at::Tensor deposited;  ///< rho' (B, n...)
  };
  virtual Evaluation evaluate(const at::Tensor& displacement) const = 0;
  /// J(0) = E(rho_k) (B,), and rho_k (B, n...), the deposit at u = 0.
  virtual at::Tensor stayingPut() const = 0;
  virtual at::Tensor density() const = 0;
  /// dJ/du at u, whose deposit the caller has.
  virtual at::Tensor gradient(const at::Tensor& displacement, const at::Tensor& deposited) const = 0;
  /// StepCertifier::l1ErrorEstimates (B,).
  virtual at::Tensor l1ErrorEstimates(const at::Tensor& displacement, const at::Tensor& gradient,
                                      const at::Tensor& deposited) const = 0;
  /// LinearizedStep::correction for the objective's gradient.
  virtual at::Tensor correction(const at::Tensor& gradient, bool hardStep) const = 0;
  /// The Gauss-Newton correction at the map (LinearizedStepOptions::furtherNewtonIterations).
  virtual at::Tensor gaussNewtonAtMap(const at::Tensor& displacement, const at::Tensor& deposited,
                                      const at::Tensor& gradient) const = 0;
  /// a . b per density (B,).
  virtual at::Tensor dot(const at::Tensor& a, const at::Tensor& b) const = 0;
  /// The energy has no internal part (extraCorrectionsAboveWithoutDiffusion applies).
  virtual bool withoutInternalEnergy() const = 0;
};

/// LinearizedStep::refine's corrections of `start` (B, dim, n...) for the
/// step `problem` describes, with `options`' corrections (its
/// correctionTolerance replaced by `tolerance`). Collective where the
/// problem's sums are.
RefinedDisplacement refineMap(const MapCorrections& problem, const LinearizedStepOptions& options,
                              const at::Tensor& start, int corrections, double tolerance);

class LinearizedStep {
 public:
  explicit LinearizedStep(std::shared_ptr<const JkoObjective> objective, LinearizedStepOptions options = {});
  /// Throws InvalidParameter for an option out of its range.
  static void validate(const LinearizedStepOptions& options);

  const JkoObjective& objective() const { return *objective_; }
  const LinearizedStepOptions& options() const { return options_; }

  /// The displacement u (B, dim, n...) float64 of the Gauss-Newton step
  /// from u = 0 for each density of `state` (JkoObjective::prepare).
  at::Tensor displacement(const JkoState& state) const;

  /// The Gauss-Newton correction -A^-1 J'(u) (B, dim, n...) with this
  /// step's model Hessian A at u = 0, for the objective's gradient J'(u)
  /// (B, dim, n...) at some displacement u (StepCertifier::gradient): for
  /// u = 0 it is displacement(state), before the cap, where no particle of
  /// negative pre-filtered mass moves: unlike the step's, this model moves
  /// them (options().negativeMassesMove).
  /// With an entropy each particle's correction is capped at
  /// options().correctionCapCells cells, and the negative masses move only
  /// in a `hardStep`'s corrections (refine()'s extra ones).
  /// `trustRegion` false: without the entropy's cap.
  at::Tensor correction(const JkoState& state, const at::Tensor& gradient, bool hardStep = false,
                        bool trustRegion = true) const;

  /// `start` (B, dim, n...) after at most `corrections` Gauss-Newton
  /// corrections, each with the objective's gradient at the current
  /// displacement, taken whole where that lowers J, else at the step length
  /// of a parabolic fit, then a quarter of the last length (at most
  /// options().lineSearchTrials, per density; none lowers J: the density
  /// stops, or during the fixed corrections waits for the extra ones);
  /// with options().correctionTolerance, a density also stops once its
  /// certificate estimate is below it. A start with J above J(0) = E(rho) is
  /// replaced by 0 first. `tolerance` >= 0 replaces
  /// options().correctionTolerance for this call (the Auto solver's: it
  /// accepts any map certified below its threshold). A density the
  /// certificate still puts above options().extraCorrectionsAbove after
  /// them takes options().extraCorrections more, quasi-Newton after the
  /// first (options().extraCorrectionMemory), and one still above
  /// options().furtherCorrectionsAbove after those
  /// options().furtherCorrections more (not with a tolerance: the Auto
  /// solver refines such a frame with L-BFGS instead).
  /// With the deposit of the result (before the output limiter).
  RefinedDisplacement refine(const JkoState& state, const at::Tensor& start, int corrections,
                             double tolerance = -1) const;

  /// One step: the next density and the displacement, rho (n...) or (B, n...).
  /// The displacement is halved per density until the JKO objective falls
  /// below staying put (the descent every minimiser satisfies).
  std::pair<at::Tensor, at::Tensor> step(const at::Tensor& rho) const;

 private:
  class WholeGridCorrections;
  /// The Gauss-Newton correction at the map u (B, dim, n...) with deposit
  /// `deposited` (options().furtherNewtonIterations).
  at::Tensor gaussNewtonAtMap(const JkoState& state, const at::Tensor& displacement, const at::Tensor& deposited,
                              const at::Tensor& gradient, const StepCertifier& certifier,
                              const at::Tensor& transportWeight) const;

  std::shared_ptr<const JkoObjective> objective_;
  LinearizedStepOptions options_;
};

}  // namespace jko
