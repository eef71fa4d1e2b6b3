// A certificate for one JKO step in map form (DESIGN.md §6, "Certificates"):
// how far a displacement u, from any solver, is from the minimiser of
//   J(u) = E(rho') + (1 / (2 tau)) sum_i w_i |u_i|^2 |h|,  rho' = deposit(S^-1 rho_k, u).
//
// * Descent guard. J(0) = E(rho_k), so every minimiser has J(u*) <= E(rho_k);
//   a u with J(u) > E(rho_k) is wrong by construction.
// * Gradient in the step's metric. The transport term's Hessian is
//   H0^-1 = diag(w |h| / tau); g . H0 g, g = dJ/du, is the reference
//   solver's stopping quantity. Relative to the step's decrease J(0) - J(u)
//   it is the solver's `gradientMeasure`.
// * Gap and distance. If E is lambda-convex along generalised geodesics,
//   J is (1/tau + lambda)-convex in the maps (in L2(rho_k)), i.e. its
//   Hessian is at least mu H0^-1 with mu = 1 + lambda tau, so
//     J(u) - J(u*) <= g . H0 g / (2 mu)                      (gap estimate)
//     W2^2(rho_u, rho*) <= sum w |u - u*|^2 |h| <= 2 gap / (1/tau + lambda),
//   and u - u* is at most the metric Newton step H0 g / mu in that norm.
// * The certificate proper (what the Auto solver thresholds): the L1 change
//   of the frame under that Newton step, relative to the mass,
//     |deposit(u - H0 g / mu) - deposit(u)|_1 / |rho_k|_1,
//   an estimate of the frame's relative L1 distance to the minimiser
//   (measured: 0.25-1.1 times the true distance, median 0.58, on the
//   bundled operators; docs/design.md).
//   In the discrete map form all of these are estimates, not bounds: the
//   deposit is not convex in u, and the weights are max(rho, |m|), not the
//   moved mass. For energies that are not lambda-convex (repulsive or
//   Keller-Segel kernels) lambda = 0 is used as a heuristic
//   (EnergyConvexity::exact = false).
#pragma once

#include <ATen/ATen.h>

#include <limits>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "numerics/GridScaleCompletion.h"
#include "numerics/JkoObjective.h"

namespace jko {

/// The lambda of a lambda-convex energy (along generalised geodesics in the
/// closed box): E(rho_t) <= (1-t) E(rho_0) + t E(rho_1) - lambda t (1-t) W2^2 / 2.
struct EnergyConvexity {
  double lambda = 0;
  /// Whether E is lambda-convex (in the continuous setting); false: lambda
  /// is a heuristic (see `reason`).
  bool exact = true;
  std::string reason;
};

/// Entropy and porous medium (m > 1): 0. Quadratic potential: min_k a_k.
/// Double well: the smallest second derivative over the box. A potential
/// array: the smallest second difference along an axis (heuristic).
/// Quadratic kernel (c >= 0) and attractive powers >= 1: 0. Repulsive and
/// Keller-Segel kernels: 0 as a heuristic (they are not lambda-convex).
EnergyConvexity energyConvexity(const Energy& energy);
/// The same from the energy's parts: `potential` is V on `grid`'s nodes
/// (read only for a potential given as an array).
EnergyConvexity energyConvexity(const EnergySpec& spec, const Grid& grid, const at::Tensor& potential);

struct StepCertificate {
  static constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  double initialObjective = kNaN;  ///< J(0) = E(rho_k)
  double objective = kNaN;         ///< J(u) = energy + transport
  double energy = kNaN;            ///< E(rho') on the deposited density
  double transport = kNaN;         ///< (1 / (2 tau)) sum w |u|^2 |h|
  double mass = kNaN;
  /// The descent guard: J(u) <= J(0) up to rounding.
  bool descent = false;
  /// g . H0 g.
  double metricGradientNorm = kNaN;
  /// g . H0 g / (J(0) - J(u)) (the reference solver's stopping quantity);
  /// +inf when J(u) >= J(0).
  double gradientMeasure = kNaN;
  /// lambda and mu = 1 + lambda tau (floored at 0.1) used below.
  double lambda = 0, modulus = 1;
  bool lambdaExact = true;
  /// J(u) - J(u*) estimated as g . H0 g / (2 mu).
  double gapEstimate = kNaN;
  /// gap / (J(0) - J(u) + gap): the share of the step's decrease J(0) - J(u*)
  /// still missing, in [0, 1) when the guard holds (+inf when the estimated
  /// optimal decrease is not positive).
  double relativeGap = kNaN;
  /// W2(rho_u, rho*) <= sqrt(2 gap / (1/tau + lambda)); and the same
  /// divided by the step's own length sqrt(sum w |u|^2 |h|) = sqrt(2 tau transport).
  double w2Estimate = kNaN, w2Relative = kNaN;
  /// sqrt(W2^2 estimate / mass): the root-mean-square displacement error, in
  /// units of the smallest grid spacing.
  double displacementErrorCells = kNaN;

  /// sum |rho' - rho_k| / sum rho_k: how much the step changes the density.
  double stepL1 = kNaN;
  /// The certificate: |deposit(u - H0 g / mu) - deposit(u)|_1 / |rho_k|_1,
  /// the estimated relative L1 distance of the frame to the step's minimiser.
  double l1ErrorEstimate = kNaN;

  /// The map's resolution, not the solve's: the share of rho_k's mass on
  /// particles that the map spreads apart by more than kSpreadStretch per
  /// axis (det(I + grad u) > kSpreadStretch^d). Each particle deposits on 3
  /// nodes per axis, so one particle per node cannot fill the room between
  /// particles spread so far: such a frame is grainy and far from the exact
  /// step whatever solver made it (a narrow Gaussian's heat step at 256^2,
  /// all its mass spread: 10-106% off the exact step; docs/design.md, "Steps
  /// that spread mass apart").
  double spreadMassFraction = kNaN;
  static constexpr double kSpreadStretch = 1.41421356237309505;
  /// Above this share a frame is under-resolved (underResolved()). Measured
  /// on Gaussian heat steps (narrow ones, and the gaussian-step case at large
  /// tau): shares were either below 0.005 or above 0.9; the steps below were
  /// within 2.5% of the exact step, those above 2.6-106% off.
  static constexpr double kUnderResolvedShare = 0.25;
  bool underResolved() const { return spreadMassFraction > kUnderResolvedShare; }
  /// The discretisation's, not the solve's, either: the frame's grid-scale
  /// defect, the share of its mass the grid-scale completion would move
  /// (StepCertifier::gridScaleDefect, or exactly where the completion ran;
  /// 0 without an internal energy; not set by certify(): the rollouts and
  /// the filter measure it once per frame, not on every trial map). The map
  /// form damps a pattern a few cells across far less than the flow does (a
  /// pixel checkerboard not at all), so detail at the grid scale stays in
  /// every frame whatever solver made it, about this share of the mass from
  /// the flow of the density (docs/design.md, "How far a frame is from the
  /// flow at the grid scale").
  double gridScaleDefect = kNaN;
  /// Above this share a frame keeps grid-scale detail the flow would have
  /// damped (keepsGridScaleDetail()). Measured on reference and learned
  /// frames at 64^2: Gaussians 0.1-0.2%; the porous medium's compact fronts
  /// 0.5-0.6% (Barenblatt; there the completion's change is not an error:
  /// 0.66% from the exact chain before it, 0.75% after) and 0.8-1.5% (bumps
  /// a few cells wide); images with detail at the cell (photographs,
  /// terrain, scans) 1.6-20%, 0.42-0.92x their distance to the same image
  /// stepped on a 4x finer grid.
  static constexpr double kGridScaleDefectShare = 0.02;
  bool keepsGridScaleDetail() const { return gridScaleDefect > kGridScaleDefectShare; }
  /// Passes when the descent guard holds and l1ErrorEstimate <= threshold.
  bool passes(double threshold) const { return descent && l1ErrorEstimate <= threshold; }
  /// The fields as JSON (non-finite values as null).
  nlohmann::json toJson() const;
};

/// Fills a certificate's derived fields (objective, descent guard, gradient
/// measure, gap, W2 estimates) from what a solver measured: its
/// initialObjective, energy, transport, metricGradientNorm and mass.
void completeCertificate(StepCertificate& c, const EnergyConvexity& convexity, double tau, double smallestSpacing);

/// StepCertificate::spreadMassFraction of displacement u ((1, dim, n...) or
/// (dim, n...)) for the step from rho ((1, n...) or the shape of the grid).
double spreadMassFraction(const PushForward& push, const at::Tensor& rho, const at::Tensor& displacement);

/// What frames failing the resolution check (StepCertificate::underResolved)
/// mean and what to do, for a message that names them first; `largestShare`
/// is their largest spreadMassFraction.
std::string underResolvedAdvice(double largestShare);
/// The command line's warning: "F of N frames (list) are under-resolved: " and the advice.
std::string underResolvedWarning(const std::vector<int>& frames, int total, double largestShare);

/// What frames failing the grid-scale check (StepCertificate::
/// keepsGridScaleDetail) mean and what to do, for a message that names them
/// first; `largestDefect` is their largest gridScaleDefect.
std::string gridScaleAdvice(double largestDefect);
/// The command line's warning: "F of N frames (list) keep detail at the grid
/// scale: " and the advice.
std::string gridScaleWarning(const std::vector<int>& frames, int total, double largestDefect);

/// What reference steps stopped at the iteration cap before the solver's
/// tolerance mean, for a message that names them first: how far their
/// certificates (`largestCertificate`, the largest l1ErrorEstimate) put them
/// from their steps' minimisers, and why more iterations may not help.
std::string cappedReferenceAdvice(double largestCertificate);
/// The command line's warning: "F of N reference steps (frames list) stopped
/// before the solver's tolerance (iteration cap M); " and the advice.
std::string cappedReferenceWarning(const std::vector<int>& frames, int total, int maxIterations,
                                   double largestCertificate);

/// relativeGap as a function of the reference solver's gradientMeasure r =
/// g . H0 g / (J(0) - J(u)): (r / 2mu) / (1 + r / 2mu).
double relativeGapFromGradientMeasure(double gradientMeasure, double modulus);

/// Certificates of steps of one JKO objective.
class StepCertifier {
 public:
  explicit StepCertifier(std::shared_ptr<const JkoObjective> objective);

  const JkoObjective& objective() const { return *objective_; }
  const EnergyConvexity& convexity() const { return convexity_; }
  /// mu = 1 + lambda tau, floored at 0.1.
  double modulus() const;

  /// The certificate of displacement u (dim, n...) for the step from rho
  /// (shape of the grid). Costs about one deposit and its adjoint (a fused
  /// pass on CPU float64; autograd elsewhere). `energyOfRho`: E(rho) when
  /// the caller has it (a rollout computed it for the previous frame; for
  /// an interaction energy it is one FFT convolution less), else NaN.
  StepCertificate certify(const at::Tensor& rho, const at::Tensor& displacement,
                          double energyOfRho = std::numeric_limits<double>::quiet_NaN()) const;
  StepCertificate certify(const JkoState& state, const at::Tensor& displacement,
                          double energyOfRho = std::numeric_limits<double>::quiet_NaN()) const;

  /// StepCertificate::gridScaleDefect of a map-form frame (shape of the grid
  /// or (1, n...)): GridScaleCompletion::defect, two iterations of the
  /// completion's solve (about 1 ms at 64^2, 3-4 ms at 128^2).
  double gridScaleDefect(const at::Tensor& frame) const;

  /// g = dJ/du at u (dim, n...) or (1, dim, n...), same shape: by the fused pass
  /// where it applies, else by autograd.
  at::Tensor gradient(const JkoState& state, const at::Tensor& displacement) const;
  /// The transport term's diagonal on the nodes (B, n...): its Hessian
  /// c = w |h| / tau and the metric H0 (inverseMetric()). A loop that takes
  /// many gradients of one state computes it once.
  struct TransportMetric {
    at::Tensor weight, inverse;
  };
  TransportMetric transportMetric(const JkoState& state) const;
  /// The same where the caller has the deposit of the displacement ((B, n...)
  /// or (n...) as the displacement is batched or not), and, when given, the
  /// state's transportMetric().
  at::Tensor gradient(const JkoState& state, const at::Tensor& displacement, const at::Tensor& deposited,
                      const TransportMetric* metric = nullptr) const;
  /// The same by autograd through the objective's tensor operations.
  at::Tensor gradientByAutograd(const JkoState& state, const at::Tensor& displacement) const;
  /// The deposit's adjoint at a map: d/du of sum_j phi_j deposit(m, u)_j
  /// for u (B, dim, n...) and phi (B, n...), i.e. J(u)^T phi with J(u) the
  /// deposit's Jacobian at the displaced particles; the fused pass on CPU
  /// float64, else autograd.
  at::Tensor depositAdjoint(const JkoState& state, const at::Tensor& displacement, const at::Tensor& phi) const;

  /// The certificate's l1ErrorEstimate for u with its gradient g (both
  /// (dim, n...) or (1, dim, n...)): two deposits and a sum, for a solver
  /// that has g already.
  double l1ErrorEstimate(const JkoState& state, const at::Tensor& displacement, const at::Tensor& gradient) const;
  /// The same per density of a batch (B,), for maps u and gradients g
  /// (B, dim, n...) whose deposits (B, n...) the caller has: one deposit.
  at::Tensor l1ErrorEstimates(const JkoState& state, const at::Tensor& displacement, const at::Tensor& gradient,
                              const at::Tensor& deposited, const TransportMetric* metric = nullptr) const;

  /// dE/drho' on the nodes for a deposited density (B, n...): |h| times the
  /// first variation, as autograd differentiates the clamped energies.
  at::Tensor energyGradient(const at::Tensor& deposited, const at::Tensor& convolved = at::Tensor()) const;

  /// H0 = diag(tau / (max(w, 1e-12 max w) |h|)) on the nodes, the reference
  /// solver's (B, n...).
  at::Tensor inverseMetric(const JkoState& state) const;

 private:
  /// The L1 change under the metric Newton step per density (B,).
  at::Tensor newtonChanges(const JkoState& state, const at::Tensor& u, const at::Tensor& g, const at::Tensor& H0,
                           const at::Tensor& deposited) const;

  std::shared_ptr<const JkoObjective> objective_;
  EnergyConvexity convexity_;
  GridScaleCompletion completion_;
};

}  // namespace jko
