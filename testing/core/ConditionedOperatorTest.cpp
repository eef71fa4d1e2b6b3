// Operators conditioned on energy parameters (OperatorMetadata::conditioning):
// the file keeps the ranges, the network sees the parameters, the step of one
// energy never reuses what was computed for another, the step's symmetries
// reach the ranges from other time steps, and a tiny conditioned training
// learns something at both ends of its range; the porous medium conditioned
// on D and m on its linearised base; aggregation-diffusion conditioned on D
// and the attraction.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "numerics/Errors.h"
#include "numerics/ReferenceSolver.h"
#include "operator/LearnToEvolveTrainer.h"
#include "operator/StepSymmetry.h"
#include "operator/TrainingRangeCheck.h"
#include "operator/VelocityNetwork.h"
#include "runtime/Runtime.h"

namespace jko {
namespace {

// A tiny training of `energy`'s preset on 16^2, seconds on two threads.
TrainingOptions tinyTraining(const EnergySpec& energy, int rounds, uint64_t seed) {
  TrainingOptions o = TrainingOptions::defaultsFor(energy, 2);
  o.grid = 16;
  o.rounds = rounds;
  o.epochs = 8;
  o.batch = 8;
  o.generated = 16;
  o.validation = 5;
  o.horizon = 2;
  o.seed = seed;
  o.network.width = 8;
  o.network.modes = 6;
  o.network.layers = 2;
  o.network.hidden = 16;
  // The network's own maps: the preset's Gauss-Newton corrections would take
  // trained and untrained maps alike to the step's minimiser.
  o.network.gaussNewton = 0;
  return o;
}

TrainingOptions tinyConditionedTraining() {
  TrainingOptions o = tinyTraining(EnergySpec::fokkerPlanck(0.1, 20), 2, 5);
  o.conditioning.diffusion = {0.05, 0.5};
  o.conditioning.potentialStrength = {10, 100};
  return o;
}

// The porous medium on its linearised base, conditioned on D and m.
TrainingOptions tinyPorousTraining() {
  TrainingOptions o = tinyTraining(EnergySpec::porousMedium(2, 1), 1, 6);
  o.conditioning.diffusion = {0.1, 10};
  o.conditioning.exponent = {1.5, 4};
  return o;
}

// Aggregation-diffusion conditioned on D and the attraction.
TrainingOptions tinyAggregationDiffusionTraining() {
  TrainingOptions o = tinyTraining(EnergySpec::aggregationDiffusion(0.1, 20), 1, 7);
  o.conditioning.diffusion = {0.05, 0.5};
  o.conditioning.attraction = {5, 50};
  return o;
}

const TrainingResult& trainedConditioned() {
  static const TrainingResult result = [] {
    configureRuntime(2);
    return LearnToEvolveTrainer(tinyConditionedTraining()).train();
  }();
  return result;
}

const TrainingResult& trainedPorous() {
  static const TrainingResult result = [] {
    configureRuntime(2);
    return LearnToEvolveTrainer(tinyPorousTraining()).train();
  }();
  return result;
}

// A Gaussian mixture of the given mass.
at::Tensor density(const Grid& grid, uint64_t seed, double mass = 1) {
  DensityRanges ranges;
  ranges.massMin = ranges.massMax = mass;
  return DensityGenerator(grid, ranges, seed).next("gaussian-mixture");
}

TEST(ConditionedOperator, MetadataKeepsTheRangesAndTheNetworkSeesThem) {
  const auto& op = trainedConditioned().op;
  const OperatorMetadata& m = op->metadata();
  EXPECT_EQ(m.conditioning.channels(), 2);
  EXPECT_EQ(LearnedOperator::inputChannels(m), 1 + 3 * 2 + 1 + 2);
  const OperatorMetadata back = OperatorMetadata::fromJson(m.toJson());
  EXPECT_DOUBLE_EQ(back.conditioning.diffusion[1], 0.5);
  EXPECT_DOUBLE_EQ(back.conditioning.potentialStrength[0], 10);
  // The middle of a range is 0, its ends -1/2 and 1/2 (log scale).
  const std::vector<double> values = m.conditioning.channelValues(EnergySpec::fokkerPlanck(0.5, 10));
  ASSERT_EQ(values.size(), 2u);
  EXPECT_NEAR(values[0], 0.5, 1e-12);
  EXPECT_NEAR(values[1], -0.5, 1e-12);
  // An unconditioned file writes no such key, and reads as unconditioned.
  OperatorMetadata plain = m;
  plain.conditioning = Conditioning{};
  EXPECT_FALSE(plain.toJson().contains("conditioning"));
  nlohmann::json broken = m.toJson();
  broken["conditioning"]["D"] = {0.5, 0.05};
  EXPECT_THROW(OperatorMetadata::fromJson(broken), OperatorFileError);
}

// Stepping `low`, then `high`, then `low` again: the two energies' steps
// differ, the repeated one is bit for bit the first (no cached value of the
// other energy reused), and the mass is kept.
void expectOwnSteps(const LearnedOperator& op, const at::Tensor& rho, const Grid& grid, const EnergySpec& low,
                    const EnergySpec& high) {
  const at::Tensor first = op.step(rho, grid, &low).next;
  const at::Tensor other = op.step(rho, grid, &high).next;
  const at::Tensor again = op.step(rho, grid, &low).next;
  EXPECT_TRUE(at::equal(first, again)) << "a cached value of another energy was reused";
  EXPECT_GT((first - other).abs().sum().item<double>(), 1e-3 * rho.abs().sum().item<double>());
  EXPECT_NEAR(first.sum().item<double>(), rho.sum().item<double>(), 1e-12 * rho.sum().item<double>());
}

TEST(ConditionedOperator, EachEnergyGetsItsOwnStep) {
  const auto& op = trainedConditioned().op;
  const Grid grid = Grid::unitBox(2, 16);
  const at::Tensor rho = density(grid, 4);
  const EnergySpec low = EnergySpec::fokkerPlanck(0.05, 10), high = EnergySpec::fokkerPlanck(0.5, 100);
  expectOwnSteps(*op, rho, grid, low, high);
  // An operator of one energy refuses another.
  const auto plain = LearnedOperator::load(std::string(JKO_SOURCE_DIR) + "/data/operators/aggregation.jko");
  EXPECT_FALSE(plain->metadata().conditioning.any());
  EXPECT_THROW(plain->step(rho, Grid::unitBox(2, 16), &low), InvalidParameter);
}

TEST(ConditionedOperator, SymmetriesReachTheRangesFromOtherTimeSteps) {
  const OperatorMetadata& m = trainedConditioned().op->metadata();
  // D 0.2 at tau 0.005: inside, the operator steps that energy itself.
  StepSymmetry s = relateToOperator(m, EnergySpec::fokkerPlanck(0.2, 20), 0.005, 2, 1);
  ASSERT_TRUE(s.exact) << s.difference;
  EXPECT_TRUE(s.conditioned);
  EXPECT_DOUBLE_EQ(s.operatorEnergy.diffusion, 0.2);
  // D 0.05, a 10 at tau 0.02: at the operator's tau that is D 0.2, a 40.
  s = relateToOperator(m, EnergySpec::fokkerPlanck(0.05, 10), 0.02, 2, 1);
  ASSERT_TRUE(s.exact) << s.difference;
  EXPECT_NEAR(s.operatorEnergy.diffusion, 0.2, 1e-12);
  EXPECT_NEAR(s.operatorEnergy.potentialStrength[1], 40, 1e-9);
  EXPECT_DOUBLE_EQ(s.timeFactor, 4);
  // Outside the ranges, or strengths that differ per axis: refused, named.
  s = relateToOperator(m, EnergySpec::fokkerPlanck(0.02, 20), 0.005, 2, 1);
  EXPECT_FALSE(s.exact);
  EXPECT_NE(s.difference.find("outside its range [0.05, 0.5]"), std::string::npos) << s.difference;
  EnergySpec anisotropic = EnergySpec::fokkerPlanck(0.1, 20);
  anisotropic.potentialStrength[1] = 40;
  EXPECT_FALSE(relateToOperator(m, anisotropic, 0.005, 2, 1).exact);
  EXPECT_NE(describeCoverage(m).find("tau D in [0.00025, 0.0025]"), std::string::npos) << describeCoverage(m);
}

// The share of the step's objective decrease a learned step misses.
double missedShare(const LearnedOperator& op, const EnergySpec& energy, const Grid& grid, const at::Tensor& rho) {
  auto objective = std::make_shared<const JkoObjective>(std::make_shared<const Energy>(energy, grid), 0.005);
  const ReferenceStep reference = ReferenceSolver(objective).step(rho);
  const LearnedStep learned = op.step(rho, grid, &energy);
  at::NoGradGuard noGrad;
  const double J =
      objective->evaluate(objective->prepare(rho), (0.005 * learned.velocity).unsqueeze(0)).objective.item<double>();
  return (J - reference.objective) / (reference.initialObjective - reference.objective);
}

// Trained over the ranges, the operator misses less of the step than the
// same network untrained, at both ends of the ranges.
TEST(ConditionedOperator, TrainingHelpsAtBothEndsOfTheRange) {
  const auto& op = trainedConditioned().op;
  const OperatorMetadata& m = op->metadata();
  const LearnedOperator untrained(m, VelocityNetwork::create(m.network, 2, LearnedOperator::inputChannels(m),
                                                             LearnedOperator::outputChannels(m), 5));
  const Grid grid = Grid::unitBox(2, 16);
  for (uint64_t seed : {9, 10}) {
    const at::Tensor rho = density(grid, seed);
    for (const EnergySpec& energy : {EnergySpec::fokkerPlanck(0.05, 10), EnergySpec::fokkerPlanck(0.5, 100)}) {
      const double trained = missedShare(*op, energy, grid, rho), before = missedShare(untrained, energy, grid, rho);
      std::cerr << energy.describe() << " seed " << seed << ": missed " << trained << " (untrained " << before << ")\n";
      EXPECT_LT(trained, before) << energy.describe();
    }
  }
}

TEST(ConditionedOperator, TrainingOptionsAreChecked) {
  TrainingOptions o = tinyConditionedTraining();
  o.conditioning.diffusion = {0.2, 0.5};  // the energy's D 0.1 is outside
  EXPECT_THROW(o.validate(), InvalidParameter);
  o = tinyConditionedTraining();
  o.conditioning.potentialStrength = {100, 10};
  EXPECT_THROW(o.validate(), InvalidParameter);
  o = TrainingOptions::defaultsFor(EnergySpec::porousMedium(2, 1), 2);
  o.conditioning.exponent = {2.5, 4};  // the energy's m 2 is outside
  EXPECT_THROW(o.validate(), InvalidParameter);
  o.conditioning.exponent = {1, 4};  // m must be > 1
  EXPECT_THROW(o.validate(), InvalidParameter);
  o = tinyConditionedTraining();
  o.conditioning.exponent = {1.5, 4};  // no porous medium to condition
  EXPECT_THROW(o.validate(), InvalidParameter);
  o = tinyConditionedTraining();
  o.conditioning.attraction = {5, 50};  // no interaction to condition
  EXPECT_THROW(o.validate(), InvalidParameter);
  o = TrainingOptions::defaultsFor(EnergySpec::aggregation(), 2);
  o.conditioning.attraction = {5, 50};  // a repulsion beside the attraction
  EXPECT_THROW(o.validate(), InvalidParameter);
  o = tinyAggregationDiffusionTraining();
  o.conditioning.attraction = {30, 50};  // the energy's A 20 is outside
  EXPECT_THROW(o.validate(), InvalidParameter);
  EXPECT_NO_THROW(tinyAggregationDiffusionTraining().validate());
}

TEST(ConditionedOperator, AggregationDiffusionOnItsAttractionAndD) {
  configureRuntime(2);
  const auto op = LearnToEvolveTrainer(tinyAggregationDiffusionTraining()).train().op;
  const OperatorMetadata& m = op->metadata();
  EXPECT_EQ(m.conditioning.channels(), 2);
  const OperatorMetadata back = OperatorMetadata::fromJson(m.toJson());
  EXPECT_DOUBLE_EQ(back.conditioning.attraction[0], 5);
  EXPECT_DOUBLE_EQ(back.conditioning.attraction[1], 50);
  const std::vector<double> values = m.conditioning.channelValues(EnergySpec::aggregationDiffusion(0.5, 5));
  ASSERT_EQ(values.size(), 2u);
  EXPECT_NEAR(values[0], 0.5, 1e-12);   // D
  EXPECT_NEAR(values[1], -0.5, 1e-12);  // A
  ASSERT_TRUE(m.ranges.hasMasses());

  // A 10 at a trained mass: the operator steps that energy itself.
  const double mass = std::sqrt(m.ranges.massMin * m.ranges.massMax);
  StepSymmetry s = relateToOperator(m, EnergySpec::aggregationDiffusion(0.1, 10), 0.005, 2, mass);
  ASSERT_TRUE(s.exact) << s.difference;
  EXPECT_TRUE(s.conditioned);
  EXPECT_DOUBLE_EQ(s.densityFactor, 1);
  EXPECT_DOUBLE_EQ(s.operatorEnergy.attraction, 10);
  // Ten times the largest trained mass, A 3: stepped as c rho, c M the
  // largest trained mass, A scaled by 1 / c (A M is the group).
  const double big = 10 * m.ranges.massMax;
  s = relateToOperator(m, EnergySpec::aggregationDiffusion(0.1, 3), 0.005, 2, big);
  ASSERT_TRUE(s.exact) << s.difference;
  ASSERT_TRUE(s.conditioned);
  EXPECT_NEAR(s.densityFactor, 0.1, 1e-12);
  EXPECT_NEAR(s.operatorEnergy.attraction, 30, 1e-9);
  EXPECT_NE(s.note.find("the attraction, conditioned on, takes up the density's scale"), std::string::npos) << s.note;
  // A M beyond what the range reaches at the trained masses: A at the top
  // of its range (c = 20 / 50), c M outside the trained masses (warned by
  // the density's range check); D outside its range: refused, named.
  s = relateToOperator(m, EnergySpec::aggregationDiffusion(0.1, 20), 0.005, 2, big);
  ASSERT_TRUE(s.exact) << s.difference;
  EXPECT_NEAR(s.densityFactor, 0.4, 1e-12);
  EXPECT_NEAR(s.operatorEnergy.attraction, 50, 1e-9);
  s = relateToOperator(m, EnergySpec::aggregationDiffusion(1, 20), 0.005, 2, mass);
  EXPECT_FALSE(s.exact);
  EXPECT_NE(s.difference.find("outside its range [0.05, 0.5]"), std::string::npos) << s.difference;
  const std::string coverage = describeCoverage(m);
  EXPECT_NE(coverage.find("tau A in [0.025, 0.25] at the trained masses"), std::string::npos) << coverage;
  EXPECT_NE(coverage.find("tau D in [0.00025, 0.0025]"), std::string::npos) << coverage;

  const Grid grid = Grid::unitBox(2, 16);
  const at::Tensor rho = density(grid, 3, mass);
  expectOwnSteps(*op, rho, grid, EnergySpec::aggregationDiffusion(0.1, 5), EnergySpec::aggregationDiffusion(0.1, 50));
}

TEST(ConditionedOperator, PorousMediumOnItsExponentAndD) {
  const auto& op = trainedPorous().op;
  const OperatorMetadata& m = op->metadata();
  ASSERT_EQ(m.network.base, "linearized");
  EXPECT_EQ(m.conditioning.channels(), 2);
  const OperatorMetadata back = OperatorMetadata::fromJson(m.toJson());
  EXPECT_DOUBLE_EQ(back.conditioning.exponent[0], 1.5);
  EXPECT_DOUBLE_EQ(back.conditioning.exponent[1], 4);
  const std::vector<double> values = m.conditioning.channelValues(EnergySpec::porousMedium(4, 0.1));
  ASSERT_EQ(values.size(), 2u);
  EXPECT_NEAR(values[0], -0.5, 1e-12);  // D
  EXPECT_NEAR(values[1], 0.5, 1e-12);   // m

  // m 3 and D 0.5 at a trained mass: the operator steps that energy itself.
  const double mass = std::sqrt(m.ranges.massMin * m.ranges.massMax);
  StepSymmetry s = relateToOperator(m, EnergySpec::porousMedium(3, 0.5), 0.005, 2, mass);
  ASSERT_TRUE(s.exact) << s.difference;
  EXPECT_TRUE(s.conditioned);
  EXPECT_DOUBLE_EQ(s.densityFactor, 1);
  EXPECT_DOUBLE_EQ(s.operatorEnergy.exponent, 3);
  EXPECT_DOUBLE_EQ(s.operatorEnergy.diffusion, 0.5);
  // Ten times the largest trained mass: stepped as c rho with c M the
  // largest trained mass, D scaled by c^-(m-1) (and by tau / tau0).
  const double big = 10 * m.ranges.massMax;
  s = relateToOperator(m, EnergySpec::porousMedium(3, 0.01), 0.01, 2, big);
  ASSERT_TRUE(s.exact) << s.difference;
  EXPECT_NEAR(s.densityFactor, 0.1, 1e-12);
  EXPECT_NEAR(s.operatorEnergy.diffusion, 2 * 0.01 * 100, 1e-9);
  EXPECT_DOUBLE_EQ(s.timeFactor, 2);
  // Outside the exponent's range or D's: refused, with the range named.
  s = relateToOperator(m, EnergySpec::porousMedium(5, 1), 0.005, 2, mass);
  EXPECT_FALSE(s.exact);
  EXPECT_NE(s.difference.find("outside the operator's range [1.5, 4]"), std::string::npos) << s.difference;
  // D 50 at a mass the trained masses leave room above: stepped as c rho,
  // c = 5 bringing D c^-(m-1) to the top of its range.
  s = relateToOperator(m, EnergySpec::porousMedium(2, 50), 0.005, 2, mass);
  ASSERT_TRUE(s.exact) << s.difference;
  EXPECT_NEAR(s.densityFactor, 5, 1e-9);
  EXPECT_NEAR(s.operatorEnergy.diffusion, 10, 1e-9);
  // The same D at the largest trained mass: no trained mass brings D into
  // its range, so c = 5 still (the top of the range), c M above the trained
  // masses, and the density's range check says so.
  s = relateToOperator(m, EnergySpec::porousMedium(2, 50), 0.005, 2, m.ranges.massMax);
  ASSERT_TRUE(s.exact) << s.difference;
  EXPECT_NEAR(s.densityFactor, 5, 1e-9);
  const Grid checkGrid = Grid::unitBox(2, 16);
  const at::Tensor heavy = at::full({16, 16}, m.ranges.massMax, at::kDouble);
  const auto warnings = checkDensityAgainstTraining(m, checkGrid, heavy, s);
  ASSERT_FALSE(warnings.empty()) << "c M = 5 times the largest trained mass should be named";
  // It names what is served instead (StepSymmetry::Reach): at this mass D
  // up to the range's top (10; c = 1), and at D = 50 masses up to a fifth
  // of the largest trained one (c M = Mmax at D' = 10).
  EXPECT_EQ(warnings[0].quantity, "mass");
  EXPECT_NE(warnings[0].message.find("for Diffusion in [" + formatValue(0.1 * m.ranges.massMin / m.ranges.massMax, 3) +
                                     ", 10] (now 50)"),
            std::string::npos)
      << warnings[0].message;
  EXPECT_NE(warnings[0].message.find("densities of mass in [" + formatValue(m.ranges.massMin * 0.1 / 50, 3) + ", " +
                                     formatValue(m.ranges.massMax / 5, 3) + "] (now " +
                                     formatValue(m.ranges.massMax, 3) + ")"),
            std::string::npos)
      << warnings[0].message;
  EXPECT_EQ(warnings[0].message.find("times this one"), std::string::npos) << warnings[0].message;
  const std::string coverage = describeCoverage(m);
  EXPECT_NE(coverage.find("m in [1.5, 4]"), std::string::npos) << coverage;
  EXPECT_NE(coverage.find("tau D in [0.0005, 0.05]"), std::string::npos) << coverage;

  // Each exponent gets its own step, and a repeated one the same step.
  const Grid grid = Grid::unitBox(2, 16);
  const at::Tensor rho = density(grid, 3, mass);
  const EnergySpec low = EnergySpec::porousMedium(1.5, 1), high = EnergySpec::porousMedium(4, 1);
  expectOwnSteps(*op, rho, grid, low, high);
}

}  // namespace
}  // namespace jko
