// The step's symmetries in time and density (operator/StepSymmetry): which
// problems they relate to an operator's, that the reference solver's discrete
// step obeys them, and that the learned modes step c rho through them.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "numerics/JkoObjective.h"
#include "numerics/ReferenceSolver.h"
#include "operator/DensityGenerator.h"
#include "operator/LearnedOperator.h"
#include "operator/StepSymmetry.h"
#include "runtime/Runtime.h"

namespace jko {
namespace {

OperatorMetadata metadataFor(const EnergySpec& energy, double massMin, double massMax) {
  OperatorMetadata m;
  m.energy = energy;
  m.tau = 0.005;
  m.ranges.massMin = massMin, m.ranges.massMax = massMax;
  return m;
}

void expectContains(const std::string& text, const std::string& part) {
  EXPECT_NE(text.find(part), std::string::npos) << "'" << part << "' missing from: " << text;
}

// A smooth density of the given mass, positive everywhere (the entropy's
// clamped log is then the exact log at every scale c).
at::Tensor smoothDensity(const Grid& grid, double mass, uint64_t seed) {
  DensityRanges ranges;
  ranges.massMin = ranges.massMax = 1;
  at::Tensor rho = DensityGenerator(grid, ranges, seed).next("gaussian-mixture");
  rho = rho + 0.1 * rho.mean();
  return rho * (mass / (rho.sum().item<double>() * grid.cellVolume()));
}

double relativeL1(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().sum().item<double>() / b.abs().sum().item<double>();
}

TEST(StepSymmetry, HomogeneityDegrees) {
  EXPECT_EQ(homogeneityDegree(EnergySpec::fokkerPlanck()), 1);
  EXPECT_EQ(homogeneityDegree(EnergySpec::heat(0.1)), 1);
  EXPECT_EQ(homogeneityDegree(EnergySpec::porousMedium(3, 1)), 3);
  EXPECT_EQ(homogeneityDegree(EnergySpec::aggregation()), 2);
  EXPECT_TRUE(std::isnan(homogeneityDegree(EnergySpec::aggregationDiffusion())));
  EnergySpec porousWithKernel = EnergySpec::porousMedium(2, 1);
  porousWithKernel.kernel = KernelKind::Quadratic;
  EXPECT_EQ(homogeneityDegree(porousWithKernel), 2);
  porousWithKernel.exponent = 3;
  EXPECT_TRUE(std::isnan(homogeneityDegree(porousWithKernel)));
}

TEST(StepSymmetry, PorousMediumServesTheGroupTauDMassToTheMMinusOne) {
  const OperatorMetadata pm = metadataFor(EnergySpec::porousMedium(2, 1), 0.002, 0.1);
  // tau 0.01: the operator's step of twice the density.
  StepSymmetry s = relateToOperator(pm, EnergySpec::porousMedium(2, 1), 0.01, 2, 0.02);
  ASSERT_TRUE(s.exact);
  EXPECT_DOUBLE_EQ(s.densityFactor, 2.0);
  EXPECT_DOUBLE_EQ(s.timeFactor, 2.0);
  expectContains(s.note, "c = 2 (mass 0.04)");
  // tau 0.01 with D 0.5: tau D is the operator's, the density as it is.
  s = relateToOperator(pm, EnergySpec::porousMedium(2, 0.5), 0.01, 2, 0.02);
  ASSERT_TRUE(s.exact);
  EXPECT_DOUBLE_EQ(s.densityFactor, 1.0);
  EXPECT_DOUBLE_EQ(s.timeFactor, 2.0);
  // Fixed c even when c M leaves the trained masses (the range check warns on c rho).
  s = relateToOperator(pm, EnergySpec::porousMedium(2, 1), 0.01, 2, 1);
  EXPECT_TRUE(s.exact);
  EXPECT_DOUBLE_EQ(s.densityFactor, 2.0);
  // m = 3: c^2 = tau D / (tau0 D0).
  const OperatorMetadata pm3 = metadataFor(EnergySpec::porousMedium(3, 1), 0.002, 0.1);
  s = relateToOperator(pm3, EnergySpec::porousMedium(3, 2), 0.01, 2, 0.02);
  ASSERT_TRUE(s.exact);
  EXPECT_NEAR(s.densityFactor, 2.0, 1e-12);
  // Another exponent: nothing relates them.
  s = relateToOperator(pm, EnergySpec::porousMedium(3, 1), 0.005, 2, 0.02);
  EXPECT_FALSE(s.exact);
  expectContains(s.difference, "m: 3 vs 2");
  expectContains(describeCoverage(pm), "tau D M^(m-1) in [1e-05, 0.0005]");
}

TEST(StepSymmetry, EntropyAndPotentialNeedTauDAndTauAAtAnyMass) {
  const OperatorMetadata fp = metadataFor(EnergySpec::fokkerPlanck(0.1, 20), 0.5, 2);
  // Half the time step with twice D and a: the same step.
  StepSymmetry s = relateToOperator(fp, EnergySpec::fokkerPlanck(0.2, 40), 0.0025, 2, 1);
  ASSERT_TRUE(s.exact);
  EXPECT_DOUBLE_EQ(s.densityFactor, 1.0);
  EXPECT_DOUBLE_EQ(s.timeFactor, 0.5);
  // Any mass: brought into the trained range.
  s = relateToOperator(fp, fp.energy, 0.005, 2, 20);
  ASSERT_TRUE(s.exact);
  EXPECT_DOUBLE_EQ(s.densityFactor, 0.1);
  // D alone: another problem.
  s = relateToOperator(fp, EnergySpec::fokkerPlanck(0.05, 20), 0.005, 2, 1);
  EXPECT_FALSE(s.exact);
  expectContains(s.difference, "D: 0.05 vs 0.1");
  s = relateToOperator(fp, fp.energy, 0.01, 2, 1);
  EXPECT_FALSE(s.exact);
  expectContains(s.difference, "at the operator's tau");
  expectContains(describeCoverage(fp), "tau D = 0.0005; tau a = 0.1, 0.1; at any mass M");
}

TEST(StepSymmetry, InteractionsServeTheGroupTauAM) {
  const OperatorMetadata ad = metadataFor(EnergySpec::aggregationDiffusion(0.1, 20), 0.5, 1.5);
  // tau 0.01, D 0.05: tau D is the operator's; tau A M too at c = 2.
  StepSymmetry s = relateToOperator(ad, EnergySpec::aggregationDiffusion(0.05, 20), 0.01, 2, 0.5);
  ASSERT_TRUE(s.exact);
  EXPECT_DOUBLE_EQ(s.densityFactor, 2.0);
  // Attraction 10 at the operator's tau and D: the operator's step of half the density.
  s = relateToOperator(ad, EnergySpec::aggregationDiffusion(0.1, 10), 0.005, 2, 2);
  ASSERT_TRUE(s.exact);
  EXPECT_DOUBLE_EQ(s.densityFactor, 0.5);
  // D alone: no.
  EXPECT_FALSE(relateToOperator(ad, EnergySpec::aggregationDiffusion(0.2, 20), 0.005, 2, 1).exact);
  // Attraction and repulsion scaled together, not apart.
  const OperatorMetadata ag = metadataFor(EnergySpec::aggregation(20, 1), 0.5, 1.5);
  s = relateToOperator(ag, EnergySpec::aggregation(40, 2), 0.005, 2, 1);
  ASSERT_TRUE(s.exact);
  EXPECT_DOUBLE_EQ(s.densityFactor, 2.0);
  s = relateToOperator(ag, EnergySpec::aggregation(40, 1), 0.005, 2, 1);
  EXPECT_FALSE(s.exact);
  expectContains(s.difference, "attractive-repulsive");
}

// The symmetries hold for the discrete step itself: the reference solver's
// step of (E, tau) from rho and 1/c times its step of (E0, tau0) from c rho
// agree to the solver's tolerance, maps included (measured: 1e-10 of the
// step's change or less; a c off by 10% is 7-10% off for the porous medium
// and the interaction).
void expectReferenceObeys(const EnergySpec& problem, double tau, double mass, const EnergySpec& operatorEnergy,
                          double operatorMassMin, double operatorMassMax) {
  SCOPED_TRACE(problem.describe() + " at tau " + std::to_string(tau));
  const OperatorMetadata m = metadataFor(operatorEnergy, operatorMassMin, operatorMassMax);
  const Grid grid = Grid::unitBox(2, 32);
  const at::Tensor rho = smoothDensity(grid, mass, 3);
  const StepSymmetry s = relateToOperator(m, problem, tau, 2, mass);
  ASSERT_TRUE(s.exact) << s.difference;
  ASSERT_FALSE(s.identity());
  ReferenceSolverOptions options;
  options.gradientTolerance = 1e-10;
  options.objectiveTolerance = 1e-13;
  auto solve = [&](const EnergySpec& energy, double stepTau, const at::Tensor& density) {
    auto objective = std::make_shared<const JkoObjective>(std::make_shared<const Energy>(energy, grid), stepTau);
    return ReferenceSolver(objective, options).step(density);
  };
  const ReferenceStep direct = solve(problem, tau, rho);
  const ReferenceStep mapped = solve(operatorEnergy, m.tau, rho * s.densityFactor);
  // Measured against the step's own change of the density.
  const double change = (direct.next - rho).abs().sum().item<double>();
  EXPECT_LT((mapped.next / s.densityFactor - direct.next).abs().sum().item<double>(), 1e-6 * change);
  EXPECT_LT(relativeL1(mapped.displacement, direct.displacement), 1e-6);
}

TEST(StepSymmetry, TheReferenceStepObeysIt) {
  configureRuntime(2);
  expectReferenceObeys(EnergySpec::porousMedium(2, 1), 0.0025, 0.05, EnergySpec::porousMedium(2, 1), 0.002, 0.1);
  expectReferenceObeys(EnergySpec::porousMedium(3, 0.5), 0.005, 0.3, EnergySpec::porousMedium(3, 1), 0.01, 1);
  expectReferenceObeys(EnergySpec::fokkerPlanck(0.2, 40), 0.0025, 3, EnergySpec::fokkerPlanck(0.1, 20), 0.5, 2);
  expectReferenceObeys(EnergySpec::aggregationDiffusion(0.05, 10), 0.01, 2, EnergySpec::aggregationDiffusion(0.1, 20),
                       0.5, 1.5);
}

// The learned modes step c rho: bit for bit the operator's step scaled back,
// with the problem's velocity, and much closer to the problem's reference step
// than the operator's step of rho taken as it is. The bundled porous-medium
// operator is conditioned on D: a density of mass 2 (outside its trained
// masses) is stepped as c rho with c M its largest trained mass, D scaled by
// c^-(m-1) and by tau / tau0.
TEST(StepSymmetry, TheLearnedStepIsTheOperatorsStepOfCRho) {
  configureRuntime(2);
  const auto op = LearnedOperator::load(std::string(JKO_SOURCE_DIR) + "/data/operators/porous-medium.jko");
  const OperatorMetadata& m = op->metadata();
  ASSERT_TRUE(m.conditioning.onDiffusion());
  const Grid grid = Grid::unitBox(2, 64);
  const double mass = 2, tau = 0.0025;
  // Box-filling, so that c rho's peak (c M / M times the peak) is a trained one.
  const at::Tensor bumps = smoothDensity(grid, 1, 7);
  at::Tensor rho = 1 + 0.2 * bumps / bumps.max();
  rho = rho * (mass / (rho.sum().item<double>() * grid.cellVolume()));
  const EnergySpec energy = EnergySpec::porousMedium(2, 0.2);
  const StepSymmetry s = relateToOperator(m, energy, tau, 2, mass);
  ASSERT_TRUE(s.exact) << s.difference;
  const double c = m.ranges.massMax / mass;
  EXPECT_NEAR(s.densityFactor, c, 1e-12);
  EXPECT_NEAR(s.operatorEnergy.diffusion, 0.5 * 0.2 / c, 1e-12);
  const LearnedStep through = stepThroughSymmetry(*op, s, rho, grid);
  const LearnedStep scaled = op->step(rho * c, grid, &s.operatorEnergy);
  EXPECT_TRUE(at::equal(through.next, scaled.next / c));
  EXPECT_TRUE(at::allclose(through.velocity * tau, scaled.velocity * m.tau, 0, 1e-15));
  EXPECT_NEAR(through.next.sum().item<double>(), rho.sum().item<double>(), 1e-12 * rho.sum().item<double>());

  auto objective = std::make_shared<const JkoObjective>(std::make_shared<const Energy>(energy, grid), tau);
  const at::Tensor reference = ReferenceSolver(objective).step(rho).next;
  const double change = (reference - rho).abs().sum().item<double>();
  const double symmetric = (through.next - reference).abs().sum().item<double>() / change;
  const double asItIs = (op->step(rho, grid, &s.operatorEnergy).next - reference).abs().sum().item<double>() / change;
  EXPECT_LT(symmetric, 0.01) << "error of the learned step, relative to the step's change (measured 0.00023)";
  EXPECT_LT(symmetric, 0.5 * asItIs) << "rho stepped as it is: " << asItIs;  // measured 0.71
  // The learned modes' check accepts the problem; an exponent outside the
  // conditioned range is refused.
  EXPECT_TRUE(op->checkCompatible(grid, &energy, tau, rho).empty());
  const EnergySpec other = EnergySpec::porousMedium(5, 1);
  EXPECT_THROW(op->checkCompatible(grid, &other, tau, rho), OperatorFileError);
}

}  // namespace
}  // namespace jko
