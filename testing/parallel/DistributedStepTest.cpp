// The reference step split over ranks (core/parallel) against the serial
// solver. Run under mpirun with 1, 2 and 3 ranks (testing/CMakeLists.txt);
// every rank runs every test, and the checks compare the gathered fields.
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <iostream>
#include <memory>
#include <tuple>

#include "numerics/Errors.h"
#include "numerics/GridTransfer.h"
#include "numerics/LinearizedStep.h"
#include "numerics/Multigrid.h"
#include "numerics/ReferenceSolver.h"
#include "numerics/StepCertificate.h"
#include "operator/AutoSolver.h"
#include "operator/LearnedOperator.h"
#include "parallel/DistributedLearnedStep.h"
#include "parallel/DistributedLinearizedStep.h"
#include "parallel/DistributedOperatorSolver.h"
#include "parallel/DistributedReferenceSolver.h"
#include "parallel/MpiCommunicator.h"
#include "parallel/SlabConvolution.h"
#include "parallel/SlabGridTransfer.h"
#include "runtime/Runtime.h"

namespace jko {
namespace {

std::shared_ptr<const Communicator> world() {
  static std::shared_ptr<const Communicator> communicator =
      mpiInitialized() ? mpiWorldCommunicator() : std::make_shared<SerialCommunicator>();
  return communicator;
}

// Two bumps of unequal height and width on a background, not symmetric in
// any axis, so that every plane differs (and mass crosses every slab).
at::Tensor twoBumps(const Grid& grid, double background) {
  at::Tensor rho = at::full(grid.shape(), background, at::kDouble);
  const double centres[2][3] = {{0.3, 0.35, 0.6}, {0.7, 0.6, 0.3}};
  const double widths[2] = {0.08, 0.12}, heights[2] = {1.0, 0.6};
  for (int b = 0; b < 2; ++b) {
    at::Tensor r2 = at::zeros(grid.shape(), at::kDouble);
    for (int a = 0; a < grid.dim; ++a) {
      const at::Tensor d = grid.coordinate(a) - centres[b][a];
      r2 = r2 + d * d;
    }
    rho = rho + heights[b] * at::exp(-r2 / (2 * widths[b] * widths[b]));
  }
  return rho;
}

double relativeL1(const at::Tensor& a, const at::Tensor& b) {
  return ((a - b).abs().sum() / b.abs().sum()).item<double>();
}

TEST(SlabDecomposition, HalosAndSumsMoveWholePlanes) {
  const Grid grid = Grid::unitBox(3, 13);
  const SlabDecomposition slabs(grid, world());
  const at::Tensor whole = at::arange(2 * 13 * 13 * 13, at::kDouble).view({2, 13, 13, 13});
  const at::Tensor owned = slabs.own(whole);
  EXPECT_TRUE(at::equal(slabs.gather(owned), whole));
  for (int64_t halo : {1, 3, 13}) {
    const SlabDecomposition::Range w = slabs.window(halo);
    EXPECT_TRUE(at::equal(slabs.withHalo(owned, halo), whole.narrow(1, w.lo, w.planes())));
    // Every rank's window of ones, summed onto the owners: how many windows
    // hold each plane.
    const at::Tensor ones = at::ones({2, w.planes(), 13, 13}, at::kDouble);
    const at::Tensor counts = slabs.sumOntoOwners(ones, halo);
    const SlabDecomposition::Range own = slabs.owned();
    for (int64_t plane = own.lo; plane < own.hi; ++plane) {
      int expected = 0;
      for (int r = 0; r < slabs.ranks(); ++r) {
        const SlabDecomposition::Range wr = slabs.window(halo, r);
        expected += plane >= wr.lo && plane < wr.hi;
      }
      EXPECT_EQ(counts[1][plane - own.lo][5][7].item<double>(), expected) << "plane " << plane;
    }
  }
  // A displacement: planes on dimension 2.
  at::manual_seed(3);
  const at::Tensor u = at::randn({1, 3, 13, 13, 13}, at::kDouble);
  EXPECT_TRUE(at::equal(slabs.gather(slabs.own(u, 2), 2), u));
}

TEST(SlabDecomposition, RefusesSlabsThinnerThanTwoPlanes) {
  const Grid grid = Grid::unitBox(2, 5);
  if (world()->size() <= 2) GTEST_SKIP() << "needs 3 ranks or more";
  EXPECT_THROW(SlabDecomposition(grid, world()), InvalidParameter);
}

// J and dJ/du split over ranks equal the serial ones, for displacements that
// carry particles across several slabs.
void expectSameObjective(const Grid& grid, const EnergySpec& spec, double tau, double amplitude) {
  const SlabDecomposition slabs(grid, world());
  const at::Tensor rho = twoBumps(grid, 0.05);
  at::manual_seed(7);
  std::vector<int64_t> uShape{1, grid.dim};
  for (int64_t n : grid.shape()) uShape.push_back(n);
  const at::Tensor uu = amplitude * at::randn(uShape, at::kDouble);

  const auto objective = std::make_shared<const JkoObjective>(std::make_shared<const Energy>(spec, grid), tau);
  const JkoObjective& serial = *objective;
  const JkoState state = serial.prepare(rho);
  at::Tensor leaf = uu.clone().requires_grad_(true);
  const JkoTerms terms = serial.evaluate(state, leaf);
  const at::Tensor gradient = torch::autograd::grad({terms.objective.sum()}, {leaf})[0];

  const DistributedJkoObjective distributed(spec, tau, slabs);
  const auto dState = distributed.prepare(slabs.own(rho.unsqueeze(0)));
  EXPECT_LT(relativeL1(slabs.gather(dState.masses), state.masses), 1e-14);
  const auto dTerms = distributed.evaluate(dState, slabs.own(uu, 2), true);
  EXPECT_NEAR(dTerms.objective, terms.objective.item<double>(), 1e-12 * std::abs(terms.objective.item<double>()));
  EXPECT_LT(relativeL1(slabs.gather(dTerms.deposited), terms.deposited), 1e-13);
  EXPECT_LT(relativeL1(slabs.gather(dTerms.gradient, 2), gradient), 1e-12);
  const at::Tensor next = serial.nextDensity(state, terms.deposited.detach());
  EXPECT_LT(relativeL1(slabs.gather(distributed.nextDensity(dState, dTerms.deposited)), next), 1e-13);

  // The certificate: every figure as the serial certifier's.
  const StepCertificate expected = StepCertifier(objective).certify(state, uu);
  const StepCertificate c = distributed.certify(dState, slabs.own(uu, 2), expected.initialObjective);
  for (auto [name, a, b] :
       {std::tuple{"objective", c.objective, expected.objective},
        std::tuple{"g.H0g", c.metricGradientNorm, expected.metricGradientNorm},
        std::tuple{"gap", c.gapEstimate, expected.gapEstimate}, std::tuple{"step L1", c.stepL1, expected.stepL1},
        std::tuple{"certificate", c.l1ErrorEstimate, expected.l1ErrorEstimate},
        std::tuple{"spread mass", c.spreadMassFraction, expected.spreadMassFraction},
        std::tuple{"lambda", c.lambda, expected.lambda}})
    EXPECT_NEAR(a, b, 1e-11 * std::max(1.0, std::abs(b))) << name << ", " << spec.describe();
  EXPECT_EQ(c.descent, expected.descent);
  EXPECT_GT(expected.spreadMassFraction + expected.l1ErrorEstimate, 0);  // figures that can differ
}

// V + W * rho and V of the split energy against the serial one's.
TEST(DistributedJkoObjective, ExternalVariationAndPotentialEqualTheSerialOnes) {
  configureRuntime(1);
  for (const Grid& grid : {Grid::unitBox(3, 12), Grid::box(2, {24, 20, 1}, {0, 0, 0}, {1.2, 1, 1})})
    for (const char* preset : {"fokker-planck", "aggregation-diffusion", "porous-medium", "aggregation"}) {
      const EnergySpec spec = EnergySpec::fromPreset(preset);
      const SlabDecomposition slabs(grid, world());
      const at::Tensor rho = twoBumps(grid, 0.05);
      const Energy energy(spec, grid);
      const at::Tensor expected =
          (energy.firstVariation(rho.unsqueeze(0)) - energy.internalVariation(rho.unsqueeze(0)))[0];
      const DistributedJkoObjective distributed(spec, 0.005, slabs);
      const at::Tensor external = slabs.gather(distributed.externalVariation(slabs.own(rho.unsqueeze(0))))[0];
      EXPECT_LT((external - expected).abs().max().item<double>(),
                1e-12 * std::max(1.0, expected.abs().max().item<double>()))
          << preset << " on a " << grid.describe();
      const at::Tensor potential = energy.potentialOnGrid();
      EXPECT_EQ(potential.defined(), distributed.potentialOnOwned().defined()) << preset;
      if (potential.defined())
        EXPECT_LT(relativeL1(slabs.gather(distributed.potentialOnOwned().unsqueeze(0))[0], potential), 1e-14);
    }
}

TEST(DistributedJkoObjective, EqualsTheSerialObjective3D) {
  configureRuntime(1);
  // Displacements of about 3 cells: particles reach two slabs away on 3 ranks.
  expectSameObjective(Grid::unitBox(3, 16), EnergySpec::fromPreset("porous-medium"), 0.005, 3.0 / 16);
  expectSameObjective(Grid::unitBox(3, 16), EnergySpec::fromPreset("fokker-planck"), 0.005, 0.5 / 16);
  // The quadratic interaction by the moments summed over the ranks.
  expectSameObjective(Grid::unitBox(3, 16), EnergySpec::fromPreset("aggregation-diffusion"), 0.005, 1.0 / 16);
  // An attractive-repulsive kernel by the split convolution.
  expectSameObjective(Grid::unitBox(3, 16), EnergySpec::fromPreset("aggregation"), 0.005, 1.0 / 16);
}

TEST(DistributedJkoObjective, EqualsTheSerialObjective2D) {
  configureRuntime(1);
  const Grid grid = Grid::box(2, {24, 20, 1}, {0, 0, 0}, {1.2, 1, 1});
  expectSameObjective(grid, EnergySpec::heat(0.1), 0.01, 2.0 / 20);
  expectSameObjective(grid, EnergySpec::fromPreset("fokker-planck"), 0.005, 1.0 / 20);
  expectSameObjective(grid, EnergySpec::fromPreset("aggregation-diffusion"), 0.005, 1.0 / 20);
  expectSameObjective(grid, EnergySpec::fromPreset("aggregation"), 0.005, 1.0 / 20);
  expectSameObjective(grid, EnergySpec::fromPreset("keller-segel"), 0.005, 1.0 / 20);
}

// A whole reference step and a short rollout: the same frames as the serial
// solver, within the solver's own tolerance.
void expectSameSteps(const Grid& grid, const EnergySpec& spec, double tau, int steps,
                     const ReferenceSolverOptions& options = {}) {
  const SlabDecomposition slabs(grid, world());
  const at::Tensor rho = twoBumps(grid, spec.internal == InternalKind::Entropy ? 0.01 : 0.0);
  const ReferenceSolver serial(std::make_shared<const JkoObjective>(std::make_shared<const Energy>(spec, grid), tau),
                               options);
  const DistributedReferenceSolver distributed(std::make_shared<const DistributedJkoObjective>(spec, tau, slabs),
                                               options);
  const auto expected = serial.rollout(rho, steps);
  const auto frames = distributed.rollout(slabs.own(rho.unsqueeze(0))[0], steps);
  ASSERT_EQ(frames.size(), expected.size());
  for (int k = 0; k < steps; ++k) {
    const at::Tensor next = slabs.gather(frames[k].next.unsqueeze(0))[0];
    EXPECT_LT(relativeL1(next, expected[k].next), 1e-6) << spec.describe() << ", frame " << k + 1;
    EXPECT_NEAR(frames[k].objective, expected[k].objective, 1e-8 * std::abs(expected[k].objective));
    EXPECT_TRUE(frames[k].converged) << "frame " << k + 1;
    EXPECT_EQ(frames[k].completed, expected[k].completed) << "frame " << k + 1;
    EXPECT_EQ(frames[k].completed, options.completeGridScale && spec.internal != InternalKind::None)
        << "frame " << k + 1;
    // Mass kept exactly over the whole grid.
    EXPECT_NEAR(next.sum().item<double>(), rho.sum().item<double>(), 1e-12 * rho.sum().item<double>());
  }
}

TEST(DistributedReferenceSolver, StepsLikeTheSerialSolver3D) {
  configureRuntime(1);
  expectSameSteps(Grid::unitBox(3, 16), EnergySpec::fromPreset("porous-medium"), 0.005, 3);
  expectSameSteps(Grid::unitBox(3, 16), EnergySpec::fromPreset("fokker-planck"), 0.005, 2);
  expectSameSteps(Grid::unitBox(3, 16), EnergySpec::fromPreset("aggregation-diffusion"), 0.005, 2);
  expectSameSteps(Grid::unitBox(3, 16), EnergySpec::fromPreset("aggregation"), 0.005, 2);
}

TEST(DistributedReferenceSolver, StepsLikeTheSerialSolver2D) {
  configureRuntime(1);
  const Grid grid = Grid::box(2, {36, 28, 1}, {0, 0, 0}, {1.2, 1, 1});
  expectSameSteps(grid, EnergySpec::heat(0.1), 0.005, 3);
  EnergySpec values = EnergySpec::fromPreset("fokker-planck");
  values.potential = PotentialKind::Values;
  values.potentialValues = 5 * at::sin(3 * grid.coordinate(0)) * at::cos(2 * grid.coordinate(1));
  expectSameSteps(grid, values, 0.005, 2);
  // The same potential given as each rank's planes alone (a reader of slabs).
  const SlabDecomposition slabs(grid, world());
  EnergySpec ownedValues = values;
  ownedValues.potentialValues = slabs.own(values.potentialValues.unsqueeze(0))[0];
  const DistributedJkoObjective whole(values, 0.005, slabs), owned(ownedValues, 0.005, slabs);
  EXPECT_TRUE(at::equal(owned.potentialOnOwned(), whole.potentialOnOwned()));
  const at::Tensor rho = slabs.own(twoBumps(grid, 0.01).unsqueeze(0));
  EXPECT_EQ(owned.energy(rho), whole.energy(rho));
  expectSameSteps(grid, EnergySpec::fromPreset("keller-segel"), 0.005, 2);
  // With the grid-scale completion (conjugate gradients on each rank's
  // planes with three of halo).
  ReferenceSolverOptions completed;
  completed.completeGridScale = true;
  expectSameSteps(grid, EnergySpec::heat(0.1), 0.005, 3, completed);
  expectSameSteps(grid, EnergySpec::fromPreset("porous-medium"), 0.005, 2, completed);
}

// The grid-scale completion on each rank's planes (three of halo, dot
// products summed): the serial completion to the rounding of its inner
// products, on a density with detail at the pixel scale.
void expectSameCompletion(const Grid& grid, const EnergySpec& spec, double tau) {
  const SlabDecomposition slabs(grid, world());
  const at::Tensor rho = twoBumps(grid, 0.05);
  // A checkerboard of 10% on the bumps and the background: the mode the
  // map-form step leaves alone.
  at::Tensor checkerboard = at::zeros(grid.shape(), at::kDouble);
  for (int a = 0; a < grid.dim; ++a)
    checkerboard = checkerboard + at::round((grid.coordinate(a) - grid.origin[a]) / grid.spacing[a]);
  const at::Tensor noisy = (rho * (1 + 0.1 * at::cos(M_PI * checkerboard))).unsqueeze(0);
  const GridScaleCompletion completion(spec, grid, tau);
  ASSERT_TRUE(completion.active());
  const auto expected = completion.complete(noisy, GridScaleCompletion::wholeGrid());
  const auto split = completion.complete(slabs.own(noisy), completionWindow(slabs));
  EXPECT_EQ(split.iterations, expected.iterations) << spec.describe();
  EXPECT_TRUE(split.converged);
  EXPECT_LT(relativeL1(slabs.gather(split.next), expected.next), 1e-12) << spec.describe();
  // Something was completed: the checkerboard shrank, the mass stayed.
  EXPECT_GT(relativeL1(expected.next, noisy), 1e-3) << spec.describe();
  // The grid-scale check of the frame, split as on one process.
  const auto objective = std::make_shared<const JkoObjective>(std::make_shared<const Energy>(spec, grid), tau);
  const double defect = StepCertifier(objective).gridScaleDefect(noisy);
  EXPECT_GT(defect, 1e-3) << spec.describe();
  EXPECT_NEAR(DistributedJkoObjective(spec, tau, slabs).gridScaleDefect(slabs.own(noisy)), defect, 1e-12 * defect)
      << spec.describe();
  EXPECT_NEAR(expected.next.sum().item<double>(), noisy.sum().item<double>(), 1e-12 * noisy.sum().item<double>());
}

TEST(GridScaleCompletion, CompletesLikeTheSerialCompletion) {
  configureRuntime(1);
  expectSameCompletion(Grid::box(3, {20, 14, 12}, {0, 0, 0}, {1.2, 1, 0.8}), EnergySpec::fromPreset("porous-medium"),
                       0.005);
  expectSameCompletion(Grid::box(2, {36, 28, 1}, {0, 0, 0}, {1.2, 1, 1}), EnergySpec::heat(0.1), 0.005);
}

// The linearised step split over ranks: the serial step's displacement and
// next density, to the rounding of its inner products; the multigrid split
// down to a few planes a rank (gathered below 64 nodes).
void expectSameLinearizedStep(const Grid& grid, const EnergySpec& spec, double tau, double background) {
  const SlabDecomposition slabs(grid, world());
  const at::Tensor rho = twoBumps(grid, background);
  const auto objective = std::make_shared<const JkoObjective>(std::make_shared<const Energy>(spec, grid), tau);
  const LinearizedStep serial(objective);
  const at::Tensor expectedU = serial.displacement(objective->prepare(rho));
  const auto [expectedNext, expectedStep] = serial.step(rho);

  const auto distributed = std::make_shared<const DistributedJkoObjective>(spec, tau, slabs);
  const DistributedLinearizedStep split(distributed, {}, 64);
  const at::Tensor owned = slabs.own(rho.unsqueeze(0));
  const at::Tensor u = slabs.gather(split.displacement(distributed->prepare(owned)), 2);
  EXPECT_LT(relativeL1(u, expectedU), 1e-12) << spec.describe() << " on a " << grid.describe();
  const auto [next, step] = split.step(owned[0]);
  EXPECT_LT(relativeL1(slabs.gather(next.unsqueeze(0))[0], expectedNext), 1e-12) << spec.describe();
  EXPECT_LT(relativeL1(slabs.gather(step.unsqueeze(0), 2)[0], expectedStep), 1e-12) << spec.describe();
  // The step moved mass: a test of something.
  EXPECT_GT(relativeL1(expectedNext, rho), 1e-4) << spec.describe();
}

TEST(DistributedLinearizedStep, StepsLikeTheSerialStep) {
  configureRuntime(1);
  const Grid cube = Grid::box(3, {17, 14, 12}, {0, 0, 0}, {1.2, 1, 0.9});
  const Grid square = Grid::box(2, {37, 30, 1}, {0, 0, 0}, {1.2, 1, 1});
  // Vacuum and sharp fronts (the stabilisation's third differences across slabs).
  expectSameLinearizedStep(cube, EnergySpec::fromPreset("porous-medium"), 0.005, 0.0);
  EnergySpec porous3 = EnergySpec::fromPreset("porous-medium");
  porous3.exponent = 3;
  expectSameLinearizedStep(square, porous3, 0.005, 0.0);
  // A potential's curvature, the quadratic interaction's moments, a kernel's
  // split convolution; no internal energy.
  expectSameLinearizedStep(square, EnergySpec::fromPreset("fokker-planck"), 0.005, 0.01);
  expectSameLinearizedStep(cube, EnergySpec::fromPreset("aggregation-diffusion"), 0.005, 0.01);
  expectSameLinearizedStep(square, EnergySpec::fromPreset("aggregation"), 0.005, 0.0);
}

// One correction on its own, the hard step's (negative masses move) and
// with the entropy's trust region smoothed over boxes of radius 1 and 2
// (its factors read 2 r planes of halo): the serial correction's owned
// planes, at a map far enough out that many particles are capped.
TEST(DistributedLinearizedStep, CorrectsLikeTheSerialStep) {
  configureRuntime(1);
  const Grid grid = Grid::box(3, {19, 14, 12}, {0, 0, 0}, {1.2, 1, 0.9});
  const EnergySpec spec = EnergySpec::fromPreset("fokker-planck");
  const double tau = 0.005;
  const SlabDecomposition slabs(grid, world());
  const at::Tensor rho = twoBumps(grid, 0.0).unsqueeze(0);
  const auto objective = std::make_shared<const JkoObjective>(std::make_shared<const Energy>(spec, grid), tau);
  const auto distributed = std::make_shared<const DistributedJkoObjective>(spec, tau, slabs);
  for (int radius : {1, 2}) {
    LinearizedStepOptions options;
    options.correctionCapRadius = radius;
    const LinearizedStep serial(objective, options);
    const JkoState state = objective->prepare(rho);
    const at::Tensor u = 3 * serial.displacement(state);
    const at::Tensor g = StepCertifier(objective).gradient(state, u);
    const DistributedLinearizedStep split(distributed, options, 64);
    const DistributedJkoObjective::State owned = distributed->prepare(slabs.own(rho));
    const LinearizedSlab slab = split.slab(owned);
    for (bool hardStep : {false, true}) {
      const at::Tensor expected = serial.correction(state, g, hardStep);
      const at::Tensor uncapped = serial.correction(state, g, hardStep, false);
      const at::Tensor delta = slabs.gather(split.correction(slab, slabs.own(g, 2), hardStep), 2);
      EXPECT_LT(relativeL1(delta, expected), 1e-12) << "radius " << radius << ", hard step " << hardStep;
      // The cap held some particles back: a test of it.
      EXPECT_GT(relativeL1(uncapped, expected), 1e-3) << "radius " << radius;
    }
  }
}

// The linearised step with its corrections (fixed, extra and further ones,
// L-BFGS pairs, the certificate's rules) split over ranks: the serial
// step's, to the rounding of the sums over the ranks.
void expectSameCorrectedStep(const Grid& grid, const EnergySpec& spec, double tau, double background) {
  const SlabDecomposition slabs(grid, world());
  const at::Tensor rho = twoBumps(grid, background);
  LinearizedStepOptions options;
  options.corrections = 3;
  const auto objective = std::make_shared<const JkoObjective>(std::make_shared<const Energy>(spec, grid), tau);
  const auto [expectedNext, expectedStep] = LinearizedStep(objective, options).step(rho);
  const auto distributed = std::make_shared<const DistributedJkoObjective>(spec, tau, slabs);
  const auto [next, step] = DistributedLinearizedStep(distributed, options, 64).step(slabs.own(rho.unsqueeze(0))[0]);
  const double nextError = relativeL1(slabs.gather(next.unsqueeze(0))[0], expectedNext);
  const double stepError = relativeL1(slabs.gather(step.unsqueeze(0), 2)[0], expectedStep);
  // Each line search fits a parabola whose curvature is a difference of
  // nearly equal values of J: the sums' rounding over the ranks (1e-16 of
  // J) moves its step lengths by far more, and the L-BFGS pairs carry that
  // on (measured: 3e-9 for the porous medium on 2 and 3 ranks, 1e-13 and
  // below for the others).
  EXPECT_LT(nextError, 1e-8) << spec.describe();
  EXPECT_LT(stepError, 1e-8) << spec.describe();
  // The corrections changed the step: a test of them.
  const LinearizedStep uncorrected(objective);
  EXPECT_GT(relativeL1(uncorrected.step(rho).second, expectedStep), 1e-3) << spec.describe();
  if (slabs.rank() == 0)
    std::cout << spec.describe() << " on a " << grid.describe() << ", corrected: next " << nextError << ", map "
              << stepError << " (relative L1)\n";
}

TEST(DistributedLinearizedStep, CorrectedStepsLikeTheSerialStep) {
  configureRuntime(1);
  const Grid cube = Grid::box(3, {17, 14, 12}, {0, 0, 0}, {1.2, 1, 0.9});
  const Grid square = Grid::box(2, {37, 30, 1}, {0, 0, 0}, {1.2, 1, 1});
  expectSameCorrectedStep(cube, EnergySpec::fromPreset("porous-medium"), 0.005, 0.0);
  expectSameCorrectedStep(square, EnergySpec::fromPreset("fokker-planck"), 0.005, 0.0);
  expectSameCorrectedStep(square, EnergySpec::fromPreset("aggregation"), 0.005, 0.0);
}

TEST(DistributedLinearizedStep, RefusesGaussNewtonFurtherCorrections) {
  const SlabDecomposition slabs(Grid::unitBox(2, 16), world());
  LinearizedStepOptions options;
  options.furtherNewtonIterations = 4;
  EXPECT_THROW(DistributedLinearizedStep(
                   std::make_shared<const DistributedJkoObjective>(EnergySpec::heat(0.1), 0.005, slabs), options),
               InvalidParameter);
}

// Averages onto a coarse grid from the ranks' slabs, and interpolation onto
// a rank's planes, against the whole-grid transfers: whole blocks and
// uneven windows (17 planes onto 6), 2D and 3D.
TEST(SlabGridTransfer, EqualsTheWholeGridTransfers) {
  configureRuntime(1);
  const std::vector<std::pair<Grid, Grid>> cases{
      {Grid::box(3, {17, 12, 10}, {0, 0, 0}, {1.2, 1, 0.9}), Grid::box(3, {6, 5, 4}, {0, 0, 0}, {1.2, 1, 0.9})},
      {Grid::box(3, {16, 12, 8}, {0, 0, 0}, {1, 1, 1}), Grid::box(3, {8, 6, 4}, {0, 0, 0}, {1, 1, 1})},
      {Grid::box(2, {37, 30, 1}, {0, 0, 0}, {1.2, 1, 1}), Grid::box(2, {12, 10, 1}, {0, 0, 0}, {1.2, 1, 1})}};
  for (const auto& [fine, coarse] : cases) {
    const SlabDecomposition slabs(fine, world());
    // A scalar batch (B, n...) and a vector field (B, dim, n...).
    const at::Tensor rho = at::stack({twoBumps(fine, 0.05), twoBumps(fine, 0.0).flip(0)});
    std::vector<at::Tensor> components;
    for (int a = 0; a < fine.dim; ++a) components.push_back(at::sin(3.0 * (a + 1) * fine.coordinate(a)));
    for (const auto& [field, axis] : {std::pair{rho, 1}, std::pair{at::stack(components).unsqueeze(0), 2}}) {
      const at::Tensor expected = averageOnto(field.contiguous(), coarse);
      const at::Tensor split = averageOntoFromSlabs(slabs.own(field.contiguous(), axis), slabs, coarse);
      EXPECT_LT((split - expected).abs().max().item<double>(), 1e-14 * expected.abs().max().item<double>())
          << fine.describe() << " onto " << coarse.describe();
    }
    // A coarse field (B, C, m...) onto the rank's planes.
    const at::Tensor coarseField = at::stack({twoBumps(coarse, 0.1), twoBumps(coarse, 0.0).flip(1)}).unsqueeze(0);
    const at::Tensor expected = interpolateOnto(coarseField, fine);
    const at::Tensor split = slabs.gather(interpolateOntoSlab(coarseField, slabs), 2);
    EXPECT_LT((split - expected).abs().max().item<double>(), 1e-14 * expected.abs().max().item<double>())
        << coarse.describe() << " onto " << fine.describe();
  }
}

// The learned step split over ranks against the serial one, without and
// with the operator's corrections: the bundled 3D operators on a grid the
// network's is coarser than (uneven averaging windows) and on one it is
// not, the 2D porous-medium operator on a non-square grid.
void expectSameLearnedStep(const std::string& file, const Grid& grid, double peak, bool corrected) {
  auto op = LearnedOperator::load(std::string(JKO_SOURCE_DIR) + "/data/operators/" + file);
  if (!corrected) op->setGaussNewton(0);
  ASSERT_EQ(op->gaussNewton() > 0, corrected) << file << " takes no corrections";
  const OperatorMetadata& metadata = op->metadata();
  at::Tensor rho = twoBumps(grid, 0.02);
  rho = rho * (peak / rho.max());
  const LearnedStep expected = op->step(rho, grid);
  const SlabDecomposition slabs(grid, world());
  const auto objective = std::make_shared<const DistributedJkoObjective>(metadata.energy, metadata.tau, slabs);
  const DistributedLearnedStep split(op, objective);
  const LearnedStep step = split.step(slabs.own(rho.unsqueeze(0))[0]);
  const at::Tensor v = slabs.gather(step.velocity.unsqueeze(0), 2)[0];
  const at::Tensor next = slabs.gather(step.next.unsqueeze(0))[0];
  const double velocityError = relativeL1(v, expected.velocity), nextError = relativeL1(next, expected.next);
  // The corrections' line searches and L-BFGS pairs carry the sums'
  // rounding through a few dozen corrections (expectSameCorrectedStep).
  const double tolerance = corrected ? 1e-8 : 1e-12;
  EXPECT_LT(velocityError, tolerance) << file << " on a " << grid.describe();
  EXPECT_LT(nextError, tolerance) << file << " on a " << grid.describe();
  EXPECT_GT(relativeL1(expected.next, rho), 1e-4) << file;  // the step moved mass
  if (corrected) {
    // ... and the corrections moved the map.
    op->setGaussNewton(0);
    EXPECT_GT(relativeL1(op->step(rho, grid).velocity, expected.velocity), 1e-4) << file;
  }
  if (slabs.rank() == 0)
    std::cout << file << (corrected ? " corrected" : "") << " on a " << grid.describe() << ": velocity "
              << velocityError << ", next " << nextError << " (relative L1)\n";
}

TEST(DistributedLearnedStep, StepsLikeTheSerialOperatorWithoutCorrections) {
  configureRuntime(1);
  expectSameLearnedStep("porous-medium-3d.jko", Grid::box(3, {40, 36, 34}, {0, 0, 0}, {1, 1, 1}), 1.0, false);
  expectSameLearnedStep("porous-medium-3d.jko", Grid::unitBox(3, 20), 1.0, false);
  expectSameLearnedStep("fokker-planck-3d.jko", Grid::box(3, {40, 36, 34}, {0, 0, 0}, {1, 1, 1}), 5.0, false);
  expectSameLearnedStep("porous-medium.jko", Grid::box(2, {90, 72, 1}, {0, 0, 0}, {1, 1, 1}), 1.0, false);
}

TEST(DistributedLearnedStep, StepsLikeTheSerialOperatorWithItsCorrections) {
  configureRuntime(1);
  expectSameLearnedStep("porous-medium-3d.jko", Grid::box(3, {24, 20, 18}, {0, 0, 0}, {1, 1, 1}), 1.0, true);
  expectSameLearnedStep("fokker-planck-3d.jko", Grid::box(3, {24, 20, 18}, {0, 0, 0}, {1, 1, 1}), 5.0, true);
  expectSameLearnedStep("aggregation-diffusion.jko", Grid::box(2, {50, 40, 1}, {0, 0, 0}, {1, 1, 1}), 1.0, true);
}

TEST(DistributedLearnedStep, RefusesGaussNewtonFurtherCorrectionsAndAnotherTau) {
  const Grid grid = Grid::unitBox(3, 16);
  const SlabDecomposition slabs(grid, world());
  auto op = LearnedOperator::load(std::string(JKO_SOURCE_DIR) + "/data/operators/porous-medium-3d.jko");
  const OperatorMetadata& metadata = op->metadata();
  op->setFurtherNewton(4);
  EXPECT_THROW(
      DistributedLearnedStep(op, std::make_shared<const DistributedJkoObjective>(metadata.energy, metadata.tau, slabs)),
      InvalidParameter);
  op->setFurtherNewton(0);
  EXPECT_THROW(DistributedLearnedStep(
                   op, std::make_shared<const DistributedJkoObjective>(metadata.energy, 2 * metadata.tau, slabs)),
               InvalidParameter);
}

// The solvers that start from the operator's step split over ranks against
// the serial ones: the learned step (also at twice the operator's tau,
// through the step's symmetries: the operator steps 2 rho), Refine, and
// Auto refining from the learned map (a threshold every learned frame
// fails) and from u = 0 (a map "far off" at any certificate).
TEST(DistributedOperatorSolver, StepsLikeTheSerialSolvers) {
  configureRuntime(1);
  const Grid grid = Grid::box(2, {40, 34, 1}, {0, 0, 0}, {1, 1, 1});
  auto op = LearnedOperator::load(std::string(JKO_SOURCE_DIR) + "/data/operators/porous-medium.jko");
  const OperatorMetadata& metadata = op->metadata();
  at::Tensor rho = twoBumps(grid, 0.02);
  rho = rho * (1.0 / rho.max());
  const SlabDecomposition slabs(grid, world());
  struct Case {
    std::string name;
    OperatorSolver::Mode mode;
    double tau, threshold, restartAbove;
  };
  const double tau0 = metadata.tau;
  for (const Case& c : {Case{"learned", OperatorSolver::Mode::Learned, tau0, 0.004, 0.03},
                        Case{"learned at 2 tau", OperatorSolver::Mode::Learned, 2 * tau0, 0.004, 0.03},
                        Case{"refine", OperatorSolver::Mode::Refine, tau0, 0.004, 0.03},
                        Case{"auto from the map", OperatorSolver::Mode::Auto, tau0, 1e-5, 1.0},
                        Case{"auto from u = 0", OperatorSolver::Mode::Auto, tau0, 1e-5, 1e-5}}) {
    AutoSolverOptions automatic;
    automatic.threshold = c.threshold;
    automatic.restartAbove = c.restartAbove;
    ReferenceSolverOptions refine;
    refine.maxIterations = 4;
    const auto objective =
        std::make_shared<const JkoObjective>(std::make_shared<const Energy>(metadata.energy, grid), c.tau);
    const CertifiedStep expected = OperatorSolver(op, objective, c.mode, automatic, refine).step(rho);
    const auto split = std::make_shared<const DistributedJkoObjective>(metadata.energy, c.tau, slabs);
    const DistributedOperatorSolver solver(op, split, c.mode, automatic, refine);
    const CertifiedStep step = solver.step(split->prepare(slabs.own(rho.unsqueeze(0))[0]));
    const double nextError = relativeL1(slabs.gather(step.next.unsqueeze(0))[0], expected.next);
    const double mapError = relativeL1(slabs.gather(step.displacement.unsqueeze(0), 2)[0], expected.displacement);
    EXPECT_EQ(step.refined, expected.refined) << c.name;
    EXPECT_EQ(step.reason, expected.reason) << c.name;
    EXPECT_EQ(step.restarted, expected.restarted) << c.name;
    EXPECT_NEAR(step.densityFactor, expected.densityFactor, 1e-12) << c.name;
    // The learned frames to the corrections' rounding; refined ones within
    // the L-BFGS stopping rule (the split sums round otherwise).
    const double tolerance = step.refined ? 1e-6 : 1e-8;
    EXPECT_LT(nextError, tolerance) << c.name;
    EXPECT_LT(mapError, 100 * tolerance) << c.name;
    EXPECT_NEAR(step.certificate.l1ErrorEstimate, expected.certificate.l1ErrorEstimate,
                1e-3 * expected.certificate.l1ErrorEstimate + 1e-9)
        << c.name;
    EXPECT_NEAR(step.learned.l1ErrorEstimate, expected.learned.l1ErrorEstimate, 1e-6 * expected.learned.l1ErrorEstimate)
        << c.name;
    if (c.mode != OperatorSolver::Mode::Learned) EXPECT_TRUE(step.refined) << c.name;
    if (step.refined) EXPECT_LE(std::abs(step.iterations - expected.iterations), 2) << c.name;
    if (slabs.rank() == 0)
      std::cout << c.name << ": next " << nextError << ", map " << mapError << " (relative L1), " << step.iterations
                << " / " << expected.iterations << " iterations, c = " << step.densityFactor << "\n";
  }
}

// A bad slab on one rank: every rank throws (none waits in a collective).
TEST(DistributedReferenceSolver, EveryRankRefusesABadSlab) {
  const Grid grid = Grid::unitBox(3, 12);
  const SlabDecomposition slabs(grid, world());
  const DistributedReferenceSolver solver(
      std::make_shared<const DistributedJkoObjective>(EnergySpec::heat(0.1), 0.005, slabs));
  at::Tensor rho = slabs.own(twoBumps(grid, 0.1).unsqueeze(0))[0];
  if (slabs.rank() == slabs.ranks() - 1) rho[0][0][0] = -1;
  try {
    solver.step(rho);
    FAIL() << "a negative value was accepted";
  } catch (const InvalidDensity& e) {
    EXPECT_NE(std::string(e.what()).find("negative values (minimum -1)"), std::string::npos) << e.what();
  }
}

// The convolution of the kernels without a moment form, by transforms split
// over the ranks, against the serial zero-padded FFT: odd and unequal
// sizes, so that the planes, the columns and the padding are all uneven.
TEST(SlabConvolution, EqualsTheSerialConvolution) {
  configureRuntime(1);
  EnergySpec repulsive = EnergySpec::aggregation(20, 1);
  repulsive.attractivePower = 3;
  repulsive.repulsivePower = -0.5;  // singular at 0: the cell average there
  const std::vector<std::pair<Grid, EnergySpec>> cases{
      {Grid::box(3, {13, 11, 9}, {0, 0, 0}, {1.3, 1.1, 0.9}), EnergySpec::fromPreset("aggregation")},
      {Grid::box(3, {13, 11, 9}, {0, 0, 0}, {1.3, 1.1, 0.9}), repulsive},
      {Grid::box(2, {24, 19, 1}, {-0.5, 0, 0}, {0.7, 1, 1}), EnergySpec::fromPreset("aggregation")},
      {Grid::box(2, {24, 19, 1}, {-0.5, 0, 0}, {0.7, 1, 1}), EnergySpec::fromPreset("keller-segel")},
      // Fewer columns (n_1 + 1 = 3) than ranks on 3 ranks: one holds none.
      {Grid::box(2, {9, 2, 1}, {0, 0, 0}, {1, 0.2, 1}), EnergySpec::fromPreset("aggregation")}};
  for (const auto& [grid, spec] : cases) {
    const SlabDecomposition slabs(grid, world());
    const at::Tensor rho = at::stack({twoBumps(grid, 0.05), twoBumps(grid, 0.0).flip(0)});
    const at::Tensor expected = Energy(spec, grid).convolve(rho);
    const at::Tensor split = slabs.gather(SlabConvolution(spec, slabs)(slabs.own(rho)));
    EXPECT_LT((split - expected).abs().max().item<double>(), 1e-13 * expected.abs().max().item<double>())
        << spec.describe() << " on a " << grid.describe();
  }
}

// The V-cycle on slabs against the serial one: with the halo refreshed
// before each colour and the restriction summed in the serial order, every
// owned value is the serial one, bit for bit, on any number of ranks.
void expectSplitMultigridEqualsSerial(int dim, const std::array<int64_t, 3>& n, int64_t gatherNodes,
                                      bool expectSplitLevels) {
  const std::array<double, 3> h{0.07, 0.05, 0.09};
  const int64_t N = n[0] * n[1] * (dim == 3 ? n[2] : 1), plane = N / n[0];
  // Coefficients and fields that differ at every node; a vanishes in a
  // corner region (vacuum, as a porous medium's 1 / U'') and some faces too.
  std::vector<double> a(N), f(N), x0(N);
  std::array<std::vector<double>, 3> faces;
  for (int64_t i = 0; i < N; ++i) {
    a[i] = i % 7 == 0 || i < plane ? 0.0 : 0.5 + 0.5 * std::sin(0.37 * i);
    f[i] = std::cos(0.23 * i) + 0.1 * std::sin(1.7 * i);
    x0[i] = 0.3 * std::sin(0.11 * i);
  }
  for (int axis = 0; axis < dim; ++axis) {
    faces[axis].resize(N);
    for (int64_t i = 0; i < N; ++i) faces[axis][i] = i % 11 == axis ? 0.0 : std::abs(std::sin(0.13 * i + axis)) * 0.01;
  }
  const std::array<const double*, 3> faceData{faces[0].data(), faces[1].data(), dim == 3 ? faces[2].data() : nullptr};
  Multigrid serial(dim, n, h, 2, 2);
  serial.setCoefficients(a.data(), faceData);
  std::vector<double> x = x0, r(N);
  for (int c = 0; c < 2; ++c) serial.cycle(f.data(), x.data());
  serial.residual(f.data(), x.data(), r.data());

  const std::shared_ptr<const Communicator> communicator = world();
  const int ranks = communicator->size(), rank = communicator->rank();
  MultigridSlabs slabs{communicator, {0}, gatherNodes};
  for (int q = 0; q < ranks; ++q) slabs.firstPlane.push_back(SlabDecomposition::balancedBlock(n[0], ranks, q).hi);
  const int64_t first = slabs.firstPlane[rank] * plane, count = slabs.firstPlane[rank + 1] * plane - first;
  auto own = [&](const std::vector<double>& whole) {
    return std::vector<double>(whole.begin() + first, whole.begin() + first + count);
  };
  Multigrid split(dim, n, h, 2, 2, slabs);
  EXPECT_EQ(split.nodes(), count);
  EXPECT_EQ(split.levels(), serial.levels());
  if (expectSplitLevels && ranks > 1) EXPECT_GE(split.splitLevels(), 2);
  const std::vector<double> aOwned = own(a);
  std::array<std::vector<double>, 3> facesOwned;
  std::array<const double*, 3> ownedFaceData{nullptr, nullptr, nullptr};
  for (int axis = 0; axis < dim; ++axis) {
    facesOwned[axis] = own(faces[axis]);
    ownedFaceData[axis] = facesOwned[axis].data();
  }
  split.setCoefficients(aOwned.data(), ownedFaceData);
  const std::vector<double> fOwned = own(f);
  std::vector<double> xOwned = own(x0), rOwned(count);
  for (int c = 0; c < 2; ++c) split.cycle(fOwned.data(), xOwned.data());
  split.residual(fOwned.data(), xOwned.data(), rOwned.data());
  double worst = 0, worstResidual = 0;
  for (int64_t i = 0; i < count; ++i) {
    worst = std::max(worst, std::abs(xOwned[i] - x[first + i]));
    worstResidual = std::max(worstResidual, std::abs(rOwned[i] - r[first + i]));
  }
  EXPECT_EQ(worst, 0.0) << dim << "D, " << n[0] << " planes";
  EXPECT_EQ(worstResidual, 0.0) << dim << "D, " << n[0] << " planes";
  // The cycle did something: the residual fell.
  double before = 0, after = 0;
  std::vector<double> r0(N);
  serial.residual(f.data(), x0.data(), r0.data());
  for (int64_t i = 0; i < N; ++i) before += r0[i] * r0[i], after += r[i] * r[i];
  EXPECT_LT(after, 0.1 * before);
}

TEST(SplitMultigrid, CyclesLikeTheSerialMultigrid) {
  configureRuntime(1);
  // Split down to a few planes a rank, then gathered: odd counts, so that
  // coarse planes have children on two ranks.
  expectSplitMultigridEqualsSerial(3, {17, 12, 10}, 64, true);
  expectSplitMultigridEqualsSerial(2, {37, 29, 1}, 16, true);
  // Gathered at once (a small grid under the default).
  expectSplitMultigridEqualsSerial(3, {9, 8, 7}, MultigridSlabs{}.gatherNodes, false);
  // Threads split the rows of a colour pass: the same numbers.
  configureRuntime(2);
  expectSplitMultigridEqualsSerial(3, {40, 33, 35}, 4096, true);
  configureRuntime(1);
}

TEST(SlabConvolution, RefusesTheQuadraticKernelWithAReason) {
  const SlabDecomposition slabs(Grid::unitBox(2, 16), world());
  try {
    SlabConvolution(EnergySpec::fromPreset("aggregation-diffusion"), slabs);
    FAIL() << "the quadratic kernel was accepted";
  } catch (const InvalidParameter& e) {
    EXPECT_NE(std::string(e.what()).find("kernels without a moment form"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace jko

int main(int argc, char** argv) {
  jko::MpiSession mpi(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  // One report, from rank 0 (every rank runs every test and fails alike).
  if (jko::mpiInitialized() && jko::world()->rank() != 0 && !std::getenv("JKO_TEST_ALL_RANKS")) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  return RUN_ALL_TESTS();
}
