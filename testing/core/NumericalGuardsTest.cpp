// Numerical guards: exponentials that would overflow or underflow, vacuum in
// logarithms, densities against the walls of the box, folding maps, values
// too large for an energy, and non-finite displacements. Each either gives
// finite, mass-exact results or a typed error that says what is wrong.
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>

#include "numerics/Errors.h"
#include "numerics/JkoObjective.h"
#include "numerics/ReferenceSolver.h"
#include "operator/DensityGenerator.h"
#include "operator/LearnedOperator.h"
#include "operator/VelocityNetwork.h"

namespace jko {
namespace {

bool finite(const at::Tensor& t) { return at::isfinite(t).all().item<bool>(); }

double massOf(const at::Tensor& rho, const Grid& grid) { return rho.sum().item<double>() * grid.cellVolume(); }

std::vector<EnergySpec> everyPreset() {
  return {EnergySpec::fokkerPlanck(),       EnergySpec::heat(0.1),     EnergySpec::porousMedium(2, 1),
          EnergySpec::porousMedium(1.5, 1), EnergySpec::aggregation(), EnergySpec::aggregationDiffusion(),
          EnergySpec::kellerSegel(0.1, 1.0)};
}

// A density that is zero outside a disk of radius 0.15 (about 90% vacuum).
at::Tensor diskWithVacuum(const Grid& grid) {
  const at::Tensor x = grid.coordinate(0) - 0.45, y = grid.coordinate(1) - 0.55;
  return (0.0225 - x * x - y * y).clamp_min(0) * 40.0;
}

TEST(Equilibrium, GibbsDensityDoesNotUnderflowForLargeVOverD) {
  // min V / D ~ 2.8e5 in the box: exp(-V/D) is 0 on every node, Z = 0 and
  // the naive Gibbs density is NaN.
  const Grid grid = Grid::unitBox(2, 16);
  EnergySpec spec = EnergySpec::fokkerPlanck(1e-3, 1e3);
  spec.potentialCentre = {-0.5, -0.5, 0};
  const Energy energy(spec, grid);
  const at::Tensor naive = at::exp(-energy.potentialOnGrid() / spec.diffusion);
  ASSERT_EQ(naive.sum().item<double>(), 0.0);  // the overflow this guards against is real here
  const at::Tensor rho = energy.equilibrium(2.0);
  ASSERT_TRUE(rho.defined());
  EXPECT_TRUE(finite(rho));
  EXPECT_NEAR(massOf(rho, grid), 2.0, 1e-12);
  // All of the mass sits on the corner node nearest the well.
  EXPECT_NEAR(rho[0][0].item<double>() * grid.cellVolume(), 2.0, 1e-12);
}

TEST(Equilibrium, MatchesTheClosedFormsOfThePresets) {
  const Grid grid = Grid::unitBox(2, 64);
  // Fokker-Planck: Gibbs exp(-V/D)/Z, variance D/a per axis (DESIGN.md §5 case 5).
  const Energy fp(EnergySpec::fokkerPlanck(0.1, 20), grid);
  const at::Tensor gibbs = fp.equilibrium(1.0);
  const at::Tensor direct = at::exp(-fp.potentialOnGrid() / 0.1);
  EXPECT_TRUE(at::allclose(gibbs, direct / (direct.sum() * grid.cellVolume()), 1e-12, 1e-14));
  const at::Tensor x = grid.coordinate(0) - 0.5;
  const double variance = (gibbs * x * x).sum().item<double>() * grid.cellVolume();
  EXPECT_NEAR(variance, 0.1 / 20, 0.01 * 0.1 / 20);  // the box cuts the tails at 7 sigma
  // Porous medium with a potential: D m/(m-1) rho^(m-1) + V is constant on the support.
  EnergySpec pm = EnergySpec::porousMedium(2, 1);
  pm.potential = PotentialKind::Quadratic;
  pm.potentialStrength = {20, 20, 20};
  const Energy porous(pm, grid);
  const at::Tensor rho = porous.equilibrium(0.05);
  EXPECT_NEAR(massOf(rho, grid), 0.05, 1e-14);
  const at::Tensor onSupport = porous.firstVariation(rho.unsqueeze(0))[0].masked_select(rho > 0);
  EXPECT_LT((onSupport.max() - onSupport.min()).item<double>(), 1e-12);
  EXPECT_GT(onSupport.numel(), 100);
  EXPECT_GT((rho == 0).sum().item<int64_t>(), 100);  // and compact
  // Without a potential both are uniform; with a kernel there is no closed form.
  const Energy heat(EnergySpec::heat(0.2), grid);
  EXPECT_TRUE(at::allclose(heat.equilibrium(3.0), at::full(grid.shape(), 3.0, at::kDouble), 1e-14, 0));
  EXPECT_FALSE(Energy(EnergySpec::aggregationDiffusion(), grid).equilibrium(1.0).defined());
}

TEST(Energy, EntropyOfHugeDensitiesStaysFinite) {
  // Cells of side 1.25e-153: one unit of mass in one cell is a density of
  // 6.4e305, whose rho log rho (4.5e308) overflows a double.
  const double side = 1e-152;
  const Grid grid = Grid::box(2, {8, 8, 1}, {0, 0, 0}, {side, side, 0});
  at::Tensor rho = at::zeros(grid.batchShape(1), at::kDouble);
  rho[0][3][4] = 1.0 / grid.cellVolume();
  ASSERT_FALSE(std::isfinite(rho[0][3][4].item<double>() * std::log(rho[0][3][4].item<double>())));
  const Energy energy(EnergySpec::heat(0.5), grid);
  const double value = energy(rho).item<double>(), expected = 0.5 * std::log(1.0 / grid.cellVolume());
  EXPECT_TRUE(std::isfinite(value));
  EXPECT_NEAR(value, expected, 1e-12 * expected);
  const at::Tensor r = rho.clone().requires_grad_(true);
  EXPECT_TRUE(finite(torch::autograd::grad({energy(r).sum()}, {r})[0]));
  EXPECT_TRUE(finite(energy.firstVariation(rho)));
}

TEST(Energy, VacuumGivesFiniteValuesAndGradients) {
  const Grid grid = Grid::unitBox(2, 24);
  at::Tensor rho = diskWithVacuum(grid).unsqueeze(0);
  // The deposit can leave tiny negative values next to vacuum.
  rho[0][2][3] = -1e-15;
  rho[0][20][1] = -3e-16;
  for (const EnergySpec& spec : everyPreset()) {
    const Energy energy(spec, grid);
    const at::Tensor r = rho.clone().requires_grad_(true);
    const at::Tensor value = energy(r);
    EXPECT_TRUE(finite(value)) << spec.describe();
    EXPECT_TRUE(finite(torch::autograd::grad({value.sum()}, {r})[0])) << spec.describe();
    EXPECT_TRUE(finite(energy.firstVariation(rho))) << spec.describe();
    EXPECT_TRUE(finite(energy(at::zeros_like(rho)))) << spec.describe();
  }
}

TEST(JkoObjective, FiniteWithLargeVacuumForEveryPreset) {
  const Grid grid = Grid::unitBox(2, 24);
  const at::Tensor rho = diskWithVacuum(grid);
  at::manual_seed(5);
  const at::Tensor u0 = at::randn({1, 2, 24, 24}, at::kDouble) * (2 * grid.spacing[0]);
  for (const EnergySpec& spec : everyPreset()) {
    const auto objective = std::make_shared<const JkoObjective>(std::make_shared<const Energy>(spec, grid), 0.005);
    const JkoState state = objective->prepare(rho);
    const at::Tensor u = u0.clone().requires_grad_(true);
    const JkoTerms terms = objective->evaluate(state, u);
    EXPECT_TRUE(finite(terms.objective)) << spec.describe();
    EXPECT_TRUE(finite(torch::autograd::grad({terms.objective.sum()}, {u})[0])) << spec.describe();
    const ReferenceStep step = ReferenceSolver(objective).step(rho);
    EXPECT_TRUE(finite(step.next)) << spec.describe();
    EXPECT_GE(step.next.min().item<double>(), 0.0) << spec.describe();
    EXPECT_NEAR(massOf(step.next, grid), massOf(rho, grid), 1e-13 * massOf(rho, grid)) << spec.describe();
    EXPECT_LE(step.objective, step.initialObjective) << spec.describe();
  }
}

// Fokker-Planck whose well lies far outside the box, beyond the corner at
// the origin: every step drives mass into the walls.
EnergySpec wellBeyondTheCorner() {
  EnergySpec spec = EnergySpec::fokkerPlanck(0.01, 50);
  spec.potentialCentre = {-1.0, -1.0, 0};
  return spec;
}

// Mass on the edge rows and columns of the box, the rest empty.
at::Tensor onTheWalls(const Grid& grid) {
  at::Tensor rho = at::zeros(grid.shape(), at::kDouble);
  rho.narrow(0, 0, 1).fill_(2.0);
  rho.narrow(1, grid.n[1] - 1, 1).fill_(1.0);
  rho[grid.n[0] / 2][0] = 3.0;
  return rho;
}

TEST(Boundary, ReferenceSolverKeepsMassInTheClosedBox) {
  const Grid grid = Grid::unitBox(2, 20);
  const auto objective =
      std::make_shared<const JkoObjective>(std::make_shared<const Energy>(wellBeyondTheCorner(), grid), 0.01);
  const at::Tensor rho0 = onTheWalls(grid);
  const auto trajectory = ReferenceSolver(objective).rollout(rho0, 4);
  for (const ReferenceStep& step : trajectory) {
    EXPECT_TRUE(finite(step.next));
    EXPECT_GE(step.next.min().item<double>(), 0.0);
    EXPECT_NEAR(massOf(step.next, grid), massOf(rho0, grid), 1e-13 * massOf(rho0, grid));
  }
  // The flow goes where it is pushed: into the corner nearest the well.
  EXPECT_GT(trajectory.back().next[0][0].item<double>(), rho0[0][0].item<double>());
}

// A fresh (untrained) operator whose velocity cap allows 40 cells per step:
// against a steep potential its displacements run far beyond the walls.
std::shared_ptr<LearnedOperator> wildOperator(const EnergySpec& energy) {
  OperatorMetadata metadata;
  metadata.energy = energy;
  metadata.tau = 0.01;
  metadata.network.width = 4;
  metadata.network.modes = 4;
  metadata.network.layers = 1;
  metadata.network.hidden = 8;
  metadata.network.grid = 16;
  metadata.scales.capCells = 40;
  auto network = VelocityNetwork::create(metadata.network, 2, LearnedOperator::inputChannels(metadata),
                                         LearnedOperator::outputChannels(metadata), 3);
  return std::make_shared<LearnedOperator>(metadata, network);
}

TEST(Boundary, LearnedOperatorKeepsMassInTheClosedBox) {
  const Grid grid = Grid::unitBox(2, 20);  // finer than the network grid: interpolated velocities too
  const auto op = wildOperator(wellBeyondTheCorner());
  const at::Tensor rho0 = onTheWalls(grid);
  at::Tensor rho = rho0;
  double largest = 0;
  for (int k = 0; k < 6; ++k) {
    const LearnedStep step = op->step(rho, grid);
    largest = std::max(largest, (step.velocity.abs().max().item<double>() * op->metadata().tau) / grid.spacing[0]);
    rho = step.next;
    EXPECT_TRUE(finite(rho));
    EXPECT_GE(rho.min().item<double>(), 0.0);
    EXPECT_NEAR(massOf(rho, grid), massOf(rho0, grid), 1e-13 * massOf(rho0, grid));
  }
  EXPECT_GT(largest, 5.0);  // the test did push particles cells beyond the walls
}

TEST(Overflow, ValuesTooLargeForTheEnergyAreRefusedByTheReferenceSolver) {
  // rho^3 of 1e110 is 1e330: J(0) = inf, no decrease can be measured.
  const Grid grid = Grid::unitBox(2, 8);
  const auto objective =
      std::make_shared<const JkoObjective>(std::make_shared<const Energy>(EnergySpec::porousMedium(3, 1), grid), 0.01);
  const at::Tensor rho = at::full(grid.shape(), 1e110, at::kDouble);
  try {
    ReferenceSolver(objective).step(rho);
    FAIL() << "expected InvalidDensity";
  } catch (const InvalidDensity& e) {
    EXPECT_NE(std::string(e.what()).find("too large for this energy"), std::string::npos) << e.what();
  }
}

TEST(Overflow, LearnedOperatorRefusesRatherThanReturnsNaN) {
  // Density features run in float32: 1e40 times the training scale is inf
  // there, and the network's output NaN.
  const Grid grid = Grid::unitBox(2, 16);
  const auto op = wildOperator(EnergySpec::porousMedium(2, 1));
  at::Tensor rho = at::zeros(grid.shape(), at::kDouble);
  rho.narrow(0, 5, 4).narrow(1, 6, 3).fill_(1e40);
  try {
    const LearnedStep step = op->step(rho, grid);
    // Finite is fine too; NaN is not.
    EXPECT_TRUE(finite(step.next));
  } catch (const InvalidDensity& e) {
    EXPECT_NE(std::string(e.what()).find("NaN or infinite"), std::string::npos) << e.what();
  }
}

TEST(Overflow, NonFiniteDisplacementNeverReachesAFrame) {
  const Grid grid = Grid::unitBox(2, 12);
  const PushForward push(grid);
  const at::Tensor rho = diskWithVacuum(grid).unsqueeze(0) + 0.1;
  for (double bad : {std::nan(""), double(INFINITY)}) {
    at::Tensor u = at::zeros({1, 2, 12, 12}, at::kDouble);
    u[0][1][6][6] = bad;
    try {
      push.apply(rho, u);
      if (std::isnan(bad)) FAIL() << "a NaN displacement gave a frame";
    } catch (const InvalidDensity& e) {
      EXPECT_NE(std::string(e.what()).find("NaN or infinite"), std::string::npos) << e.what();
    }
  }
}

TEST(DensityGenerator, EveryKindIsFiniteWithMassOnCoarseGrids) {
  for (const Grid& grid : {Grid::unitBox(2, 2), Grid::unitBox(2, 3), Grid::unitBox(2, 5), Grid::unitBox(3, 3),
                           Grid::box(2, {40, 3, 1}, {0, 0, 0}, {10, 0.1, 0})}) {
    for (bool peaks : {false, true}) {
      DensityRanges ranges;
      if (peaks) ranges.peakMin = 0.05, ranges.peakMax = 0.6;
      for (uint64_t seed = 1; seed <= 6; ++seed) {
        DensityGenerator generator(grid, ranges, seed);
        for (const std::string& kind : DensityGenerator::kindNames()) {
          const at::Tensor rho = generator.next(kind);
          EXPECT_TRUE(finite(rho)) << kind << " on " << grid.describe();
          EXPECT_GE(rho.min().item<double>(), 0.0) << kind;
          EXPECT_GT(rho.sum().item<double>(), 0.0) << kind << " on " << grid.describe();
        }
      }
    }
  }
}

}  // namespace
}  // namespace jko
