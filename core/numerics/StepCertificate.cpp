#include "numerics/StepCertificate.h"

#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

#include "numerics/Errors.h"
#include "numerics/PushForwardKernels.h"
#include "runtime/JsonNumber.h"
#include "runtime/Runtime.h"
#include "runtime/TaskTeam.h"

namespace jko {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();
// One density on up to this many nodes is certified on one LibTorch thread
// and the task team (as LearnedOperator::step does for the same reason).
constexpr int64_t kSerialNodes = int64_t(1) << 16;
// mu = 1 + lambda tau is floored here: below it the step objective may not
// be convex at all, and the estimates are heuristics.
constexpr double kModulusFloor = 0.1;

// Smallest second derivative of depth (s^2 / w^2 - 1)^2 for s in [lo, hi]:
// depth (12 s^2 / w^4 - 4 / w^2), smallest at the s of least |s| for depth
// >= 0 and of largest |s| otherwise.
double doubleWellCurvature(double depth, double halfWidth, double lo, double hi) {
  const double nearest = lo <= 0 && hi >= 0 ? 0.0 : std::min(std::abs(lo), std::abs(hi));
  const double farthest = std::max(std::abs(lo), std::abs(hi));
  const double s = depth >= 0 ? nearest : farthest;
  const double w2 = halfWidth * halfWidth;
  return depth * (12 * s * s / (w2 * w2) - 4 / w2);
}

}  // namespace

EnergyConvexity energyConvexity(const Energy& energy) {
  return energyConvexity(energy.spec(), energy.grid(), energy.potentialOnGrid());
}

EnergyConvexity energyConvexity(const EnergySpec& s, const Grid& grid, const at::Tensor& potential) {
  EnergyConvexity c;
  // Internal energies: rho log rho and rho^m/(m-1), m > 1 >= 1 - 1/d, are
  // displacement convex (McCann) in a convex domain: lambda = 0.
  double lambda = 0;
  switch (s.potential) {
    case PotentialKind::Quadratic: {
      double smallest = kInfinity;
      for (int a = 0; a < grid.dim; ++a) smallest = std::min(smallest, s.potentialStrength[a]);
      lambda += smallest;
      break;
    }
    case PotentialKind::DoubleWell: {
      const double centre =
          std::isnan(s.potentialCentre[0]) ? 0.5 * (grid.boxLower(0) + grid.boxUpper(0)) : s.potentialCentre[0];
      double smallest =
          doubleWellCurvature(s.wellDepth, s.wellHalfWidth, grid.boxLower(0) - centre, grid.boxUpper(0) - centre);
      for (int a = 1; a < grid.dim; ++a) smallest = std::min(smallest, s.potentialStrength[a]);
      lambda += smallest;
      break;
    }
    case PotentialKind::Values: {
      // The smallest second difference along an axis: the Hessian's diagonal
      // only, on the grid's scale, so a heuristic.
      const at::Tensor& V = potential;
      double smallest = kInfinity;
      for (int a = 0; a < grid.dim; ++a) {
        const int64_t n = grid.n[a];
        if (n < 3) continue;
        const at::Tensor second = (V.narrow(a, 2, n - 2) - 2 * V.narrow(a, 1, n - 2) + V.narrow(a, 0, n - 2)) /
                                  (grid.spacing[a] * grid.spacing[a]);
        smallest = std::min(smallest, second.min().item<double>());
      }
      if (std::isfinite(smallest)) lambda += smallest;
      c.exact = false;
      c.reason = "a potential given as an array: lambda is its smallest second difference along an axis";
      break;
    }
    case PotentialKind::None:
      break;
  }
  // Interaction energies with a convex kernel W are displacement convex
  // (lambda = 0: the kernel's own convexity does not act on translations).
  switch (s.kernel) {
    case KernelKind::Quadratic:
      break;
    case KernelKind::AttractiveRepulsive:
      if (s.repulsion != 0 || s.attractivePower < 1) {
        c.exact = false;
        c.reason = "the interaction kernel has a repulsive (non-convex) part: lambda = 0 is a heuristic";
      }
      break;
    case KernelKind::KellerSegel:
      c.exact = false;
      c.reason = "the Keller-Segel kernel is not convex: lambda = 0 is a heuristic";
      break;
    case KernelKind::None:
      break;
  }
  c.lambda = lambda;
  return c;
}

double relativeGapFromGradientMeasure(double r, double modulus) {
  if (!(r >= 0)) return kInfinity;
  if (std::isinf(r)) return kInfinity;
  const double x = r / (2 * modulus);
  return x / (1 + x);
}

nlohmann::json StepCertificate::toJson() const {
  return {{"descent", descent},
          {"relative_gap", finiteOrNull(relativeGap)},
          {"gradient_measure", finiteOrNull(gradientMeasure)},
          {"gap_estimate", finiteOrNull(gapEstimate)},
          {"w2_estimate", finiteOrNull(w2Estimate)},
          {"w2_relative", finiteOrNull(w2Relative)},
          {"displacement_error_cells", finiteOrNull(displacementErrorCells)},
          {"metric_gradient_norm", finiteOrNull(metricGradientNorm)},
          {"objective", finiteOrNull(objective)},
          {"initial_objective", finiteOrNull(initialObjective)},
          {"energy", finiteOrNull(energy)},
          {"transport", finiteOrNull(transport)},
          {"mass", finiteOrNull(mass)},
          {"step_l1", finiteOrNull(stepL1)},
          {"l1_error_estimate", finiteOrNull(l1ErrorEstimate)},
          {"spread_mass_fraction", finiteOrNull(spreadMassFraction)},
          {"grid_scale_defect", finiteOrNull(gridScaleDefect)},
          {"lambda", lambda},
          {"lambda_exact", lambdaExact}};
}

double spreadMassFraction(const PushForward& push, const at::Tensor& rho, const at::Tensor& displacement) {
  const int d = push.grid().dim;
  const at::Tensor u = displacement.dim() == d + 1 ? displacement.unsqueeze(0) : displacement;
  const at::Tensor r = (rho.dim() == d ? rho.unsqueeze(0) : rho).to(at::kDouble).clamp_min(0);
  const double mass = r.sum().item<double>();
  if (!(mass > 0)) return 0;
  const double stretched = std::pow(StepCertificate::kSpreadStretch, d);
  return (r * (push.jacobianDeterminant(u) > stretched)).sum().item<double>() / mass;
}

std::string underResolvedAdvice(double largestShare) {
  return "up to " + formatValue(100 * largestShare, 3) + "% of the mass spreads apart by more than " +
         formatValue(StepCertificate::kSpreadStretch, 3) +
         " per axis in one step. With one particle per node such frames are grainy and may be far from the exact "
         "step, whatever the solver and whatever their certificate says (it measures the distance to the discrete "
         "step's minimiser): the heat step of a Gaussian 1.5 cells wide at 128^2 is 41% off. Lower the time step "
         "until no frame is under-resolved: each step then spreads the mass less.";
}

namespace {

// "1, 2, 3", the first ten frame numbers then ", ...".
std::string frameNumbers(const std::vector<int>& frames) {
  std::ostringstream list;
  for (size_t i = 0; i < frames.size() && i < 10; ++i) list << (i ? ", " : "") << frames[i];
  if (frames.size() > 10) list << ", ...";
  return list.str();
}

}  // namespace

std::string underResolvedWarning(const std::vector<int>& frames, int total, double largestShare) {
  return std::to_string(frames.size()) + " of " + std::to_string(total) + " frames (" + frameNumbers(frames) +
         ") are under-resolved: " + underResolvedAdvice(largestShare);
}

std::string gridScaleAdvice(double largestDefect) {
  return "the map-form step damps patterns a few cells across far less than the flow does (a pixel checkerboard not "
         "at all): up to " +
         formatValue(100 * largestDefect, 3) +
         "% of the mass sits in such detail (the grid-scale defect), and such frames are about that far or more from "
         "the flow of this density, whatever solver made them. The grid-scale completion damps it as the flow does "
         "(jko rollout --complete-grid-scale; Complete Grid Scale in ParaView); or smooth the density, or sample it "
         "on a coarser grid";
}

std::string gridScaleWarning(const std::vector<int>& frames, int total, double largestDefect) {
  return std::to_string(frames.size()) + " of " + std::to_string(total) + " frames (" + frameNumbers(frames) +
         ") keep detail at the grid scale: " + gridScaleAdvice(largestDefect) + ".";
}

std::string cappedReferenceAdvice(double largestCertificate) {
  // On images with pixel-sharp edges the step's objective is nearly flat:
  // L-BFGS from three starts ended up to 8% apart in L1 at objectives
  // within 3e-3 of the step's decrease, and from u = 0 a quarter to a half
  // of such steps ran into 2000 iterations (docs/design.md, "The reference
  // solver's step is a local minimiser").
  return "their certificates estimate them at most " + formatValue(100 * largestCertificate, 3) +
         "% (relative L1) from their steps' minimisers. Raising the cap may help where that is too far, but on images "
         "with pixel-sharp edges the step's objective is nearly flat and more iterations move such frames little";
}

std::string cappedReferenceWarning(const std::vector<int>& frames, int total, int maxIterations,
                                   double largestCertificate) {
  return std::to_string(frames.size()) + " of " + std::to_string(total) + " reference steps (frames " +
         frameNumbers(frames) + ") stopped before the solver's tolerance (iteration cap " +
         std::to_string(maxIterations) + "); " + cappedReferenceAdvice(largestCertificate) + ".";
}

double StepCertifier::gridScaleDefect(const at::Tensor& frame) const {
  const at::Tensor rho = frame.dim() == objective_->grid().dim ? frame.unsqueeze(0) : frame;
  return completion_.defect(rho.to(at::kCPU, at::kDouble).contiguous(), GridScaleCompletion::wholeGrid());
}

StepCertifier::StepCertifier(std::shared_ptr<const JkoObjective> objective)
    : objective_(std::move(objective)),
      convexity_(energyConvexity(objective_->energy())),
      completion_(objective_->energy().spec(), objective_->grid(), objective_->tau()) {}

void completeCertificate(StepCertificate& c, const EnergyConvexity& convexity, double tau, double smallestSpacing) {
  c.objective = c.energy + c.transport;
  // The guard, up to the rounding of sums of this size.
  const double decrease = c.initialObjective - c.objective;
  const double rounding = 1e-12 * std::max({std::abs(c.initialObjective), std::abs(c.objective), 1e-300});
  c.descent = std::isfinite(c.objective) && decrease >= -rounding;

  c.lambda = convexity.lambda;
  c.lambdaExact = convexity.exact && 1 + convexity.lambda * tau >= kModulusFloor;
  c.modulus = std::max(1 + convexity.lambda * tau, kModulusFloor);
  c.gradientMeasure = decrease > 0 ? c.metricGradientNorm / decrease : kInfinity;
  c.gapEstimate = c.metricGradientNorm / (2 * c.modulus);
  const double optimalDecrease = decrease + c.gapEstimate;
  c.relativeGap = optimalDecrease > 0 && std::isfinite(c.objective) ? c.gapEstimate / optimalDecrease : kInfinity;
  // W2^2 <= 2 gap / (1/tau + lambda) = tau g.H0g / mu^2.
  const double w2Squared = 2 * c.gapEstimate * tau / c.modulus;
  c.w2Estimate = std::sqrt(w2Squared);
  const double stepLength = std::sqrt(2 * tau * c.transport);
  c.w2Relative = stepLength > 0 ? c.w2Estimate / stepLength : kInfinity;
  c.displacementErrorCells = std::sqrt(w2Squared / c.mass) / smallestSpacing;
}

double StepCertifier::modulus() const { return std::max(1 + convexity_.lambda * objective_->tau(), kModulusFloor); }

at::Tensor StepCertifier::energyGradient(const at::Tensor& rho, const at::Tensor& convolved) const {
  const Energy& E = objective_->energy();
  const EnergySpec& s = E.spec();
  at::Tensor phi;
  if (s.internal == InternalKind::Entropy) {
    // d/drho of (rho |h|) log max(rho, floor): log rho + 1 above the floor,
    // log floor below it (where the clamp's derivative is 0).
    phi = at::log(rho.clamp_min(s.logFloor)).add_((rho >= s.logFloor).to(rho.scalar_type())).mul_(s.diffusion);
  } else if (s.internal == InternalKind::PorousMedium) {
    const double m = s.exponent;
    phi = rho.clamp_min(0).pow(m - 1).mul_(s.diffusion * m / (m - 1));
  } else {
    phi = at::zeros_like(rho);
  }
  const at::Tensor V = E.potentialOnGrid(rho.device());
  if (V.defined()) phi.add_(V.to(rho.scalar_type()));
  // d/drho of (1/2) sum (W * rho) rho |h| is (W * rho) |h|: W is even.
  if (s.kernel != KernelKind::None) phi.add_(convolved.defined() ? convolved : E.convolve(rho));
  return phi.mul_(E.grid().cellVolume());
}

at::Tensor StepCertifier::inverseMetric(const JkoState& state) const {
  const at::Tensor& w = state.weights;
  const at::Tensor floor = std::get<0>(w.flatten(1).max(1)).mul(1e-12);
  std::vector<int64_t> view(w.dim(), 1);
  view[0] = w.size(0);
  return objective_->tau() / (objective_->grid().cellVolume() * at::maximum(w, floor.view(view)));
}

at::Tensor StepCertifier::gradientByAutograd(const JkoState& state, const at::Tensor& displacement) const {
  at::AutoGradMode gradMode(true);
  const bool batched = displacement.dim() == objective_->grid().dim + 2;
  at::Tensor u = (batched ? displacement : displacement.unsqueeze(0)).to(at::kDouble).detach().requires_grad_(true);
  const at::Tensor total = objective_->evaluate(state, u).objective.sum();
  const at::Tensor g = torch::autograd::grad({total}, {u})[0];
  return batched ? g : g[0];
}

at::Tensor StepCertifier::depositAdjoint(const JkoState& state, const at::Tensor& displacement,
                                         const at::Tensor& phi) const {
  const at::Tensor u = displacement.to(at::kDouble).contiguous();
  if (fusedObjectiveGradientApplies(state.masses, u)) {
    at::NoGradGuard noGrad;
    // The objective's fused gradient with no transport term is the adjoint.
    const at::Tensor none = at::zeros_like(state.weights);
    return fusedObjectiveGradient(state.masses, u, phi.to(at::kDouble).contiguous(), none, none, objective_->grid())
        .gradient;
  }
  at::AutoGradMode gradMode(true);
  const at::Tensor x = u.detach().requires_grad_(true);
  const at::Tensor total = (objective_->pushForward().deposit(state.masses, x) * phi.detach()).sum();
  return torch::autograd::grad({total}, {x})[0];
}

at::Tensor StepCertifier::gradient(const JkoState& state, const at::Tensor& displacement) const {
  return gradient(state, displacement, at::Tensor());
}

StepCertifier::TransportMetric StepCertifier::transportMetric(const JkoState& state) const {
  return {state.weights * (objective_->grid().cellVolume() / objective_->tau()), inverseMetric(state)};
}

at::Tensor StepCertifier::gradient(const JkoState& state, const at::Tensor& displacement, const at::Tensor& deposit,
                                   const TransportMetric* metric) const {
  const bool batched = displacement.dim() == objective_->grid().dim + 2;
  const at::Tensor u = (batched ? displacement : displacement.unsqueeze(0)).to(at::kDouble).contiguous();
  if (!fusedObjectiveGradientApplies(state.masses, u)) return gradientByAutograd(state, displacement);
  at::NoGradGuard noGrad;
  const PushForward& push = objective_->pushForward();
  const at::Tensor deposited =
      deposit.defined() ? (batched ? deposit : deposit.unsqueeze(0)) : push.deposit(state.masses, u);
  const TransportMetric own = metric ? TransportMetric() : transportMetric(state);
  const TransportMetric& c = metric ? *metric : own;
  const ObjectiveGradient g =
      fusedObjectiveGradient(state.masses, u, energyGradient(deposited), c.weight, c.inverse, objective_->grid());
  return batched ? g.gradient : g.gradient[0];
}

at::Tensor StepCertifier::newtonChanges(const JkoState& state, const at::Tensor& u, const at::Tensor& g,
                                        const at::Tensor& H0, const at::Tensor& deposited) const {
  // |deposit(u - H0 g / mu) - deposit(u)|_1 / |rho_k|_1, per density.
  const at::Tensor newton = objective_->pushForward().deposit(state.masses, u - H0.unsqueeze(1) * g / modulus());
  return (newton - deposited).abs().flatten(1).sum(1) / state.density.abs().flatten(1).sum(1);
}

at::Tensor StepCertifier::l1ErrorEstimates(const JkoState& state, const at::Tensor& displacement,
                                           const at::Tensor& gradient, const at::Tensor& deposited,
                                           const TransportMetric* metric) const {
  at::NoGradGuard noGrad;
  return newtonChanges(state, displacement, gradient, metric ? metric->inverse : inverseMetric(state), deposited);
}

double StepCertifier::l1ErrorEstimate(const JkoState& state, const at::Tensor& displacement,
                                      const at::Tensor& gradient) const {
  at::NoGradGuard noGrad;
  const int dim = objective_->grid().dim;
  const at::Tensor u = (displacement.dim() == dim + 2 ? displacement : displacement.unsqueeze(0)).to(at::kDouble);
  const at::Tensor g = (gradient.dim() == dim + 2 ? gradient : gradient.unsqueeze(0)).to(at::kDouble);
  return newtonChanges(state, u, g, inverseMetric(state), objective_->pushForward().deposit(state.masses, u))
      .item<double>();
}

StepCertificate StepCertifier::certify(const at::Tensor& rho, const at::Tensor& displacement,
                                       double energyOfRho) const {
  const bool serial = rho.is_cpu() && objective_->grid().numNodes() <= kSerialNodes;
  const ScopedIntraOpThreads threads(serial ? 1 : 0);
  if (serial) wakeTaskTeam();
  return certify(objective_->prepare(rho), displacement, energyOfRho);
}

StepCertificate StepCertifier::certify(const JkoState& state, const at::Tensor& displacement,
                                       double energyOfRho) const {
  const JkoObjective& J = *objective_;
  const Grid& grid = J.grid();
  if (state.density.size(0) != 1)
    throw InvalidParameter("certificate batch", formatValue(state.density.size(0)), "certify one density at a time");
  at::NoGradGuard noGrad;
  const at::Tensor u = (displacement.dim() == grid.dim + 2 ? displacement : displacement.unsqueeze(0))
                           .to(state.density.device(), at::kDouble)
                           .contiguous();
  StepCertificate c;
  c.mass = state.mass.item<double>();
  c.initialObjective = std::isfinite(energyOfRho) ? energyOfRho : J.energy()(state.density).item<double>();
  const double transportScale = grid.cellVolume() / J.tau();
  const at::Tensor deposited = J.pushForward().deposit(state.masses, u);
  const at::Tensor H0 = inverseMetric(state);
  // W * rho' once, for both the energy and its gradient (an FFT convolution:
  // at 128^2 about a sixth of a certificate of the aggregation presets).
  const at::Tensor convolved =
      J.energy().spec().kernel != KernelKind::None ? J.energy().convolve(deposited) : at::Tensor();
  at::Tensor g;
  if (fusedObjectiveGradientApplies(state.masses, u)) {
    const ObjectiveGradient fused = fusedObjectiveGradient(state.masses, u, energyGradient(deposited, convolved),
                                                           state.weights * transportScale, H0, grid);
    g = fused.gradient;
    c.metricGradientNorm = fused.metricNorm.item<double>();
    c.transport = fused.transport.item<double>();
  } else {
    g = gradientByAutograd(state, u);
    c.metricGradientNorm = (g * g * H0.unsqueeze(1)).sum().item<double>();
    c.transport = (0.5 * transportScale * state.weights.unsqueeze(1) * u * u).sum().item<double>();
  }
  c.energy = J.energy().parts(deposited, convolved).total().item<double>();
  completeCertificate(c, convexity_, J.tau(), grid.smallestSpacing());
  const double l1 = state.density.abs().sum().item<double>();
  c.stepL1 = (deposited - state.density).abs().sum().item<double>() / l1;
  c.l1ErrorEstimate = newtonChanges(state, u, g, H0, deposited).item<double>();
  c.spreadMassFraction = spreadMassFraction(J.pushForward(), state.density, u);
  return c;
}

}  // namespace jko
