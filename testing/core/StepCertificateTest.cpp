// The step certificate (numerics/StepCertificate): its fused gradient against
// autograd, the descent guard, and its estimates against known minimisers.
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include "evaluation/ReferenceCases.h"
#include "numerics/GridScaleCompletion.h"
#include "numerics/PushForwardKernels.h"
#include "numerics/ReferenceSolver.h"
#include "numerics/StepCertificate.h"
#include "operator/DensityGenerator.h"
#include "runtime/Runtime.h"

namespace jko {
namespace {

std::shared_ptr<const JkoObjective> objectiveFor(const EnergySpec& spec, const Grid& grid, double tau = 0.005) {
  return std::make_shared<const JkoObjective>(std::make_shared<const Energy>(spec, grid), tau);
}

// A density with vacuum (the entropy's clamped log below its floor) and
// bumps, and a displacement of a few cells that pushes some particles
// against the walls (where the deposit's derivative is cut).
at::Tensor sampleDensity(const Grid& grid, uint64_t seed) {
  DensityRanges ranges;
  ranges.peakMin = 0.2, ranges.peakMax = 2;
  return DensityGenerator(grid, ranges, seed).next("bumps");
}

at::Tensor sampleDisplacement(const Grid& grid, uint64_t seed) {
  at::manual_seed(seed);
  std::vector<int64_t> shape{1, grid.dim};
  for (int a = 0; a < grid.dim; ++a) shape.push_back(grid.n[a]);
  at::Tensor u = at::randn(shape, at::kDouble) * (2.0 * grid.spacing[0]);
  // Near the walls push outwards, beyond the box.
  u.select(1, 0).narrow(1, 0, 2).fill_(-3 * grid.spacing[0]);
  return u;
}

// The gradient of J through the deposit's tensor operations (no fused kernel
// anywhere): an independent check of the fused pass and its adjoint.
at::Tensor gradientThroughTensorOperations(const JkoObjective& J, const JkoState& state, const at::Tensor& u0) {
  at::AutoGradMode grad(true);
  const at::Tensor u = u0.detach().clone().requires_grad_(true);
  const at::Tensor deposited = J.pushForward().depositByTensorOperations(state.masses, u);
  const at::Tensor transport =
      (0.5 / J.tau()) * J.grid().cellVolume() * (state.weights.unsqueeze(1) * u * u).flatten(1).sum(1);
  const at::Tensor total = (J.energy()(deposited) + transport).sum();
  return torch::autograd::grad({total}, {u})[0];
}

double relativeMaxDifference(const at::Tensor& a, const at::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max()).item<double>();
}

EnergySpec doubleWell() {
  EnergySpec s = EnergySpec::fokkerPlanck(0.05, 4);
  s.potential = PotentialKind::DoubleWell;
  s.wellDepth = 0.5;
  return s;
}

TEST(StepCertificate, FusedGradientEqualsAutograd) {
  configureRuntime(2);
  const std::vector<std::pair<std::string, EnergySpec>> energies{
      {"porous medium m=2", EnergySpec::porousMedium(2, 1)},
      {"porous medium m=1.5", EnergySpec::porousMedium(1.5, 0.7)},
      {"fokker-planck", EnergySpec::fokkerPlanck(0.1, 20)},
      {"double well", doubleWell()},
      {"aggregation", EnergySpec::aggregation(20, 1)},
      {"aggregation-diffusion", EnergySpec::aggregationDiffusion(0.1, 20)},
      {"keller-segel", EnergySpec::kellerSegel(0.1, 1)}};
  // A non-square grid with unequal spacing, and a 3D grid.
  const std::vector<Grid> grids{Grid::box(2, {23, 17, 1}, {0, 0, 0}, {1, 0.8, 1}),
                                Grid::box(3, {9, 11, 8}, {0, 0, 0}, {1, 1.1, 0.9})};
  for (const Grid& grid : grids)
    for (const auto& [name, spec] : energies) {
      if (spec.kernel == KernelKind::KellerSegel && grid.dim == 3) continue;
      const auto J = objectiveFor(spec, grid);
      const StepCertifier certifier(J);
      const JkoState state = J->prepare(sampleDensity(grid, 5));
      const at::Tensor u = sampleDisplacement(grid, 7);
      ASSERT_TRUE(fusedObjectiveGradientApplies(state.masses, u));
      const at::Tensor fused = certifier.gradient(state, u);
      const at::Tensor reference = gradientThroughTensorOperations(*J, state, u);
      EXPECT_LT(relativeMaxDifference(fused, reference), 1e-10) << name << " on " << grid.describe();
      EXPECT_LT(relativeMaxDifference(certifier.gradientByAutograd(state, u), reference), 1e-10) << name;
      // And the certificate's g . H0 g is the one of that gradient.
      const StepCertificate c = certifier.certify(state.density[0], u[0]);
      const double expected =
          (reference * reference * certifier.inverseMetric(state).unsqueeze(1)).sum().item<double>();
      EXPECT_NEAR(c.metricGradientNorm, expected, 1e-10 * expected) << name;
      EXPECT_NEAR(c.objective, J->evaluate(state, u).objective.item<double>(), 1e-12 * std::abs(c.objective)) << name;
      // E(rho_k) handed in by a rollout that has it is the one used: the
      // same certificate, and the guard judges against it.
      const double energy = J->energy()(state.density).item<double>();
      const StepCertificate known = certifier.certify(state.density[0], u[0], energy);
      EXPECT_EQ(known.initialObjective, energy) << name;
      EXPECT_EQ(known.descent, c.descent) << name;
      EXPECT_NEAR(known.l1ErrorEstimate, c.l1ErrorEstimate, 1e-12 * c.l1ErrorEstimate) << name;
      EXPECT_FALSE(certifier.certify(state.density[0], u[0], c.objective - 1).descent) << name;
    }
}

// At the reference solver's minimiser the certificate is the solver's own
// stopping quantity; at u = 0 the whole decrease is missing.
TEST(StepCertificate, AtTheMinimiserItIsTheSolversMeasure) {
  configureRuntime(2);
  const ReferenceCase c = makeReferenceCase("ou-step", 48, 2);
  const auto J = objectiveFor(c.energy, c.grid, c.tau);
  const StepCertifier certifier(J);
  const ReferenceStep step = ReferenceSolver(J).step(c.initial);
  ASSERT_TRUE(step.converged);
  const StepCertificate at = certifier.certify(c.initial, step.displacement);
  EXPECT_TRUE(at.descent);
  EXPECT_NEAR(at.gradientMeasure, step.gradientMeasure, 1e-6 * step.gradientMeasure);
  EXPECT_LE(at.gradientMeasure, 1e-7);
  EXPECT_NEAR(at.objective, step.objective, 1e-12 * std::abs(step.objective));
  EXPECT_LT(at.relativeGap, 1e-7);
  EXPECT_DOUBLE_EQ(at.lambda, 20);  // the quadratic potential's strength
  EXPECT_TRUE(at.lambdaExact);

  const StepCertificate stay = certifier.certify(c.initial, at::zeros_like(step.displacement));
  EXPECT_TRUE(stay.descent);
  EXPECT_TRUE(std::isinf(stay.gradientMeasure));
  EXPECT_DOUBLE_EQ(stay.relativeGap, 1.0);
  // Moving against the minimiser's map raises J above E(rho_k): the guard fails.
  const StepCertificate backwards = certifier.certify(c.initial, -step.displacement);
  EXPECT_FALSE(backwards.descent);
  EXPECT_FALSE(backwards.passes(0.5));
}

// For a lambda-convex energy the estimate g . H0 g / (2 (1 + lambda tau))
// bounds J(u) - J(u*) (DESIGN.md §6): checked along the way from staying put
// to the minimiser, and around the minimiser with noise, on the exact
// Fokker-Planck and heat steps.
TEST(StepCertificate, GapEstimateBoundsTheGapOfConvexSteps) {
  configureRuntime(2);
  for (const std::string name : {"ou-step", "gaussian-step"}) {
    const ReferenceCase c = makeReferenceCase(name, 48, 2);
    const auto J = objectiveFor(c.energy, c.grid, c.tau);
    const StepCertifier certifier(J);
    const ReferenceStep step = ReferenceSolver(J).step(c.initial);
    const at::Tensor noise = sampleDisplacement(c.grid, 3)[0] * 0.02;
    for (double s : {0.0, 0.3, 0.7, 0.95}) {
      for (const at::Tensor& u : {step.displacement * s, step.displacement + noise * (1 - s)}) {
        const StepCertificate cert = certifier.certify(c.initial, u);
        const double gap = cert.objective - step.objective;
        EXPECT_GE(cert.gapEstimate, gap) << name << ", s = " << s;
        // ... and within a small factor of it (measured: 1.06-2.0).
        EXPECT_LE(cert.gapEstimate, 3 * gap) << name << ", s = " << s;
      }
    }
  }
}

// The refinement of the Auto solver stops once the certificate passes, well
// before the reference solver's own tolerance.
TEST(StepCertificate, ReferenceSolverStopsWhereTheCertificatePasses) {
  configureRuntime(2);
  const ReferenceCase c = makeReferenceCase("barenblatt-step", 48, 2);
  const auto J = objectiveFor(c.energy, c.grid, c.tau);
  const StepCertifier certifier(J);
  const ReferenceStep full = ReferenceSolver(J).step(c.initial);
  const JkoState state = J->prepare(c.initial);
  const double target = 1e-3;
  ReferenceSolverOptions options;
  options.accept = [&](const at::Tensor& u, const at::Tensor& g) {
    return certifier.l1ErrorEstimate(state, u, g) <= target;
  };
  const ReferenceStep early = ReferenceSolver(J, options).step(c.initial);
  EXPECT_TRUE(early.accepted);
  EXPECT_LT(early.iterations, full.iterations);
  const StepCertificate cert = certifier.certify(c.initial, early.displacement);
  EXPECT_TRUE(cert.passes(target)) << cert.l1ErrorEstimate;
  // The estimate tells the truth here: the frame is within the target of the minimiser.
  EXPECT_LT(relativeL1(early.next, full.next), target);
  // And the certificate of staying put is about the step's own size.
  const StepCertificate stay = certifier.certify(c.initial, at::zeros_like(full.displacement));
  EXPECT_GT(stay.l1ErrorEstimate, 0.3 * relativeL1(c.initial, full.next));
}

// The exact heat step of a Gaussian of width s0 is the Gaussian of width
// s1 = (s0 + sqrt(s0^2 + 4 D tau)) / 2 (DESIGN.md §5). A narrow one spreads
// its mass apart by s1 / s0 per axis: one particle per node cannot fill the
// room between them, and the reference solver's frame is grainy and far off
// the exact step. The certificate's resolution check says so; a Gaussian of
// a few cells more is resolved and passes it.
TEST(StepCertificate, FlagsStepsThatSpreadMassApart) {
  configureRuntime(2);
  const double D = 0.1, tau = 0.005;
  struct Case {
    int64_t n;
    double widthCells;
    bool spread;
  };
  for (const Case& k : {Case{128, 1.5, true}, Case{64, 8, false}}) {
    const Grid grid = Grid::unitBox(2, k.n);
    const double s0 = k.widthCells * grid.spacing[0], s1 = (s0 + std::sqrt(s0 * s0 + 4 * D * tau)) / 2;
    const at::Tensor x = grid.coordinate(0) - 0.5 * (grid.boxLower(0) + grid.boxUpper(0));
    const at::Tensor y = grid.coordinate(1) - 0.5 * (grid.boxLower(1) + grid.boxUpper(1));
    const auto gaussian = [&](double s) {
      const at::Tensor g = at::exp(-(x * x + y * y) / (2 * s * s));
      return g / g.sum() / grid.cellVolume();
    };
    const auto J = objectiveFor(EnergySpec::heat(D), grid, tau);
    const ReferenceStep step = ReferenceSolver(J).step(gaussian(s0));
    const StepCertificate c = StepCertifier(J).certify(gaussian(s0), step.displacement);
    const double error = relativeL1(step.next, gaussian(s1));
    const std::string what = std::to_string(k.n) + "^2, width " + std::to_string(k.widthCells) + " cells";
    // The solve itself converged: its own certificate cannot see the difference.
    EXPECT_LT(c.l1ErrorEstimate, 0.01) << what;
    if (k.spread) {
      EXPECT_GT(error, 0.3) << what;  // measured 0.41
      EXPECT_GT(c.spreadMassFraction, 0.9) << what;
      EXPECT_TRUE(c.underResolved()) << what;
    } else {
      EXPECT_LT(error, 0.001) << what;  // measured 0.0002
      EXPECT_EQ(c.spreadMassFraction, 0) << what;
      EXPECT_FALSE(c.underResolved()) << what;
    }
  }
}

// The grid-scale check (StepCertifier::gridScaleDefect): a pixel
// checkerboard on a constant state, which the map-form step keeps, has the
// converged completion's change as its defect (from two iterations of the
// solve) and is flagged; a smooth Gaussian is not, nor is anything without
// an internal energy. completeFrame damps another solver's frame as the
// exact step would, and records the change it made.
TEST(StepCertificate, FlagsDetailAtTheGridScaleThatCompletionDamps) {
  configureRuntime(2);
  const int64_t n = 48;
  const double D = 0.1, tau = 0.005;
  const Grid grid = Grid::unitBox(2, n);
  const auto J = objectiveFor(EnergySpec::heat(D), grid, tau);
  at::Tensor parity = at::zeros(grid.shape(), at::kDouble);
  for (int a = 0; a < 2; ++a) parity = parity + at::round((grid.coordinate(a) - grid.origin[a]) / grid.spacing[a]);
  const at::Tensor checkerboard = at::cos(M_PI * parity);
  const at::Tensor rho = 1 + 0.05 * checkerboard;
  const ReferenceStep step = ReferenceSolver(J).step(rho);
  EXPECT_TRUE(std::isnan(step.gridScaleDefect));  // no completion ran
  StepCertificate c = StepCertifier(J).certify(rho, step.displacement);
  EXPECT_TRUE(std::isnan(c.gridScaleDefect));  // measured once per frame, not by certify()
  c.gridScaleDefect = StepCertifier(J).gridScaleDefect(step.next);
  const GridScaleCompletion completion(J->energy().spec(), grid, tau);
  const auto full = completion.complete(step.next.unsqueeze(0), GridScaleCompletion::wholeGrid());
  ASSERT_TRUE(full.converged);
  const double change = (full.next[0] - step.next).abs().sum().item<double>() / step.next.sum().item<double>();
  EXPECT_NEAR(c.gridScaleDefect, change, 0.1 * change);
  EXPECT_TRUE(c.keepsGridScaleDetail());

  // Completed after the step, as the learned solvers' frames are.
  ReferenceStep record;
  const at::Tensor completed = completeFrame(*J, rho, step.next, std::nan(""), record);
  EXPECT_TRUE(record.completed);
  EXPECT_GT(record.completionIterations, 0);
  EXPECT_NEAR(record.gridScaleDefect, change, 1e-6);
  const double h = grid.spacing[0], exact = 1 / (1 + tau * D * 2 * M_PI * M_PI / (h * h));
  // Away from the walls (the completion's stencils reach 3 nodes).
  const auto inner = [&](const at::Tensor& t) { return t.narrow(0, n / 8, n - n / 4).narrow(1, n / 8, n - n / 4); };
  const double factor =
      (inner(completed - 1) * inner(checkerboard)).sum().item<double>() / (0.05 * inner(checkerboard).numel());
  EXPECT_NEAR(factor, exact, 0.1 * exact);  // the map-form step alone: about 1
  EXPECT_NEAR(completed.sum().item<double>(), rho.sum().item<double>(), 1e-10 * rho.sum().item<double>());

  // The frame as every solver shows it (finishFrame): completed, with the
  // completion's change as its defect, and not named; or, without the
  // completion, the map-form frame itself, checked and named.
  const StepCertifier certifier(J);
  const FinishedFrame shown = finishFrame(certifier, rho, step.next, std::nan(""), true);
  EXPECT_TRUE(shown.completed);
  EXPECT_EQ(shown.completionIterations, record.completionIterations);
  EXPECT_EQ(shown.gridScaleDefect, record.gridScaleDefect);
  EXPECT_TRUE(at::equal(shown.density, completed));
  EXPECT_FALSE(shown.keepsGridScaleDetail());
  const FinishedFrame kept = finishFrame(certifier, rho, step.next, std::nan(""), false);
  EXPECT_FALSE(kept.completed);
  EXPECT_EQ(kept.completionIterations, 0);
  EXPECT_TRUE(at::equal(kept.density, step.next));
  EXPECT_EQ(kept.gridScaleDefect, c.gridScaleDefect);
  EXPECT_TRUE(kept.keepsGridScaleDetail());
  // The reference solver's own completion is taken as it recorded it.
  ReferenceSolverOptions completing;
  completing.completeGridScale = true;
  const ReferenceStep solved = ReferenceSolver(J, completing).step(rho);
  const FinishedFrame own = finishFrame(certifier, solved);
  EXPECT_EQ(own.completed, solved.completed);
  EXPECT_EQ(own.gridScaleDefect, solved.gridScaleDefect);
  EXPECT_TRUE(at::equal(own.density, solved.next));

  // A Gaussian six cells wide: nothing at the grid scale.
  const at::Tensor x = grid.coordinate(0) - 0.5, y = grid.coordinate(1) - 0.5;
  const double s = 6 * h;
  const at::Tensor gaussian = at::exp(-(x * x + y * y) / (2 * s * s)) + 0.01;
  const ReferenceStep smooth = ReferenceSolver(J).step(gaussian);
  EXPECT_LT(StepCertifier(J).gridScaleDefect(smooth.next), 0.25 * StepCertificate::kGridScaleDefectShare);

  const auto aggregation = objectiveFor(EnergySpec::aggregation(20, 1), grid, tau);
  EXPECT_EQ(StepCertifier(aggregation).gridScaleDefect(rho), 0);
}

}  // namespace
}  // namespace jko
