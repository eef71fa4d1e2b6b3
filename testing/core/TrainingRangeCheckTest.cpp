// Training-range checks (operator/TrainingRangeCheck): every warning names the
// quantity, its value, the trained range and what to do; the step's
// homogeneity symmetry is noted where it applies.
#include <gtest/gtest.h>

#include <cmath>

#include "operator/TrainingRangeCheck.h"

namespace jko {
namespace {

// What the bundled porous-medium operator records.
OperatorMetadata porousMetadata() {
  OperatorMetadata m;
  m.energy = EnergySpec::porousMedium(2, 1);
  m.tau = 0.005;
  m.ranges.boxLength = {1, 1, 1};
  m.ranges.gridMin = m.ranges.gridMax = 64;
  m.ranges.massMin = 0.002, m.ranges.massMax = 0.095;
  m.ranges.peakMin = 0.05, m.ranges.peakMax = 0.6;
  return m;
}

at::Tensor uniformOfMass(const Grid& grid, double mass) {
  return at::full(grid.shape(), mass / (grid.numNodes() * grid.cellVolume()), at::kDouble);
}

void expectContains(const std::string& text, const std::string& part) {
  EXPECT_NE(text.find(part), std::string::npos) << "'" << part << "' missing from: " << text;
}

TEST(TrainingRangeCheck, MassOutsideNamesValueRangeAndRemedy) {
  const Grid grid = Grid::unitBox(2, 64);
  const std::vector<RangeWarning> warnings =
      checkDensityAgainstTraining(porousMetadata(), grid, uniformOfMass(grid, 1));
  ASSERT_EQ(warnings.size(), 2u);  // the mass, and the peak (a uniform density of mass 1 on the unit box is 1)
  const RangeWarning& mass = warnings[0];
  EXPECT_EQ(mass.quantity, "mass");
  EXPECT_DOUBLE_EQ(mass.value, 1.0);
  EXPECT_DOUBLE_EQ(mass.trainedMin, 0.002);
  EXPECT_DOUBLE_EQ(mass.trainedMax, 0.095);
  expectContains(mass.message, "mass is 1,");
  expectContains(mass.message, "[0.002, 0.095]");
  expectContains(mass.message, "Auto solver");
  expectContains(mass.message, "jko train --energy porous-medium --tau 0.005");
  // The symmetry: mass 1 at tau 0.005 is mass 0.095 at tau 0.005 / 0.095.
  expectContains(mass.message, "tau*c^(2-1)");
  expectContains(mass.message, "tau = 0.0526");
  expectContains(mass.message, "serves tau = 0.005 only");
  const RangeWarning& peak = warnings[1];
  EXPECT_EQ(peak.quantity, "peak density");
  expectContains(peak.message, "peak is 1,");
  expectContains(peak.message, "[0.05, 0.6]");
  expectContains(peak.message, "--peak-max 1");
}

TEST(TrainingRangeCheck, InsideTheRangesNothingIsSaid) {
  const Grid grid = Grid::unitBox(2, 128);
  EXPECT_TRUE(checkDensityAgainstTraining(porousMetadata(), grid, uniformOfMass(grid, 0.05)).empty());
  EXPECT_TRUE(checkGridAgainstTraining(porousMetadata(), grid).empty());
  EXPECT_TRUE(checkProblemAgainstTraining(porousMetadata(), EnergySpec::porousMedium(2, 1), 0.005, 2).empty());
  // A file without recorded ranges (zeros) is not checked.
  OperatorMetadata old = porousMetadata();
  old.ranges = TrainingRanges{};
  EXPECT_TRUE(checkDensityAgainstTraining(old, grid, uniformOfMass(grid, 100)).empty());
  EXPECT_TRUE(checkGridAgainstTraining(old, grid).empty());
}

TEST(TrainingRangeCheck, BoxAndGridOutside) {
  const Grid grid = Grid::box(2, {512, 64, 1}, {0, 0, 0}, {2, 1, 1});
  const std::vector<RangeWarning> warnings = checkGridAgainstTraining(porousMetadata(), grid);
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_EQ(warnings[0].quantity, "box length along axis 0");
  expectContains(warnings[0].message, "is 2, the operator was trained on 1");
  EXPECT_EQ(warnings[1].quantity, "grid nodes along axis 0");
  expectContains(warnings[1].message, "512 nodes along axis 0");
  expectContains(warnings[1].message, "trained on 64-64 (supported: 32-256)");
  expectContains(warnings[1].message, "--grid 512");
}

TEST(TrainingRangeCheck, TimeStepAndEnergyOfAnotherProblem) {
  std::vector<RangeWarning> w = checkProblemAgainstTraining(porousMetadata(), EnergySpec::porousMedium(2, 1), 0.01, 2);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].quantity, "time step");
  EXPECT_DOUBLE_EQ(w[0].value, 0.01);
  expectContains(w[0].message, "time step is 0.01");
  expectContains(w[0].message, "tau = 0.005 only");
  expectContains(w[0].message, "--tau 0.01");
  w = checkProblemAgainstTraining(porousMetadata(), EnergySpec::porousMedium(3, 1), 0.005, 2);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].quantity, "energy");
  expectContains(w[0].message, "m: 2 vs 3");
}

TEST(TrainingRangeCheck, HomogeneityDegrees) {
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
  EnergySpec porousWithPotential = EnergySpec::porousMedium(2, 1);
  porousWithPotential.potential = PotentialKind::Quadratic;
  EXPECT_TRUE(std::isnan(homogeneityDegree(porousWithPotential)));
}

TEST(TrainingRangeCheck, SymmetryMapsIntoTheTrainedRange) {
  OperatorMetadata fp = porousMetadata();
  fp.energy = EnergySpec::fokkerPlanck();
  fp.ranges.massMin = 0.5, fp.ranges.massMax = 2;
  // Entropy and potential: the mass is rescaled into the range, same tau.
  EXPECT_DOUBLE_EQ(symmetryIntoTrainingRange(fp, fp.energy, 0.005, 2, 20).densityFactor, 0.1);
  EXPECT_DOUBLE_EQ(symmetryIntoTrainingRange(fp, fp.energy, 0.005, 2, 1).densityFactor, 1.0);
  EXPECT_DOUBLE_EQ(symmetryIntoTrainingRange(fp, fp.energy, 0.01, 2, 20).densityFactor, 1.0);  // another tau
  // Porous medium m = 2: tau 0.01 is the operator's tau 0.005 at twice the mass.
  const OperatorMetadata pm = porousMetadata();
  const StepSymmetry s = symmetryIntoTrainingRange(pm, pm.energy, 0.01, 2, 0.04);
  EXPECT_DOUBLE_EQ(s.densityFactor, 2.0);
  expectContains(s.note, "tau = 0.01");
  // ... unless twice the mass leaves the range, or the tau is the operator's own.
  EXPECT_DOUBLE_EQ(symmetryIntoTrainingRange(pm, pm.energy, 0.01, 2, 1).densityFactor, 1.0);
  EXPECT_DOUBLE_EQ(symmetryIntoTrainingRange(pm, pm.energy, 0.005, 2, 1).densityFactor, 1.0);
  // Another energy: never.
  EXPECT_DOUBLE_EQ(symmetryIntoTrainingRange(pm, EnergySpec::porousMedium(3, 1), 0.01, 2, 0.04).densityFactor, 1.0);
}

TEST(TrainingRangeCheck, WatchReportsEachQuantityOnce) {
  const Grid grid = Grid::unitBox(2, 32);
  TrainingRangeWatch watch(porousMetadata(), grid);
  EXPECT_TRUE(watch.check(uniformOfMass(grid, 0.05), 1).empty());
  const std::vector<RangeWarning> first = watch.check(uniformOfMass(grid, 1), 2);
  ASSERT_EQ(first.size(), 2u);
  expectContains(first[0].message, "frame 2: ");
  EXPECT_TRUE(watch.check(uniformOfMass(grid, 2), 3).empty());
}

}  // namespace
}  // namespace jko
