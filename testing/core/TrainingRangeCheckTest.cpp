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
  // The symmetry: mass 1 at tau 0.005 is the trained mass 0.095 at tau 0.005 * 0.095.
  expectContains(mass.message, "tau*c^(2-1)");
  expectContains(mass.message, "0.095 times this one");
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
  EXPECT_TRUE(checkProblemAgainstTraining(porousMetadata(), EnergySpec::porousMedium(2, 1), 0.005, 2, 0.05).empty());
  // A problem the step's symmetries relate to the operator's: nothing either.
  EXPECT_TRUE(checkProblemAgainstTraining(porousMetadata(), EnergySpec::porousMedium(2, 0.5), 0.02, 2, 0.05).empty());
  // A file without recorded ranges (zeros) is not checked.
  OperatorMetadata old = porousMetadata();
  old.ranges = TrainingRanges{};
  EXPECT_TRUE(checkDensityAgainstTraining(old, grid, uniformOfMass(grid, 100)).empty());
  EXPECT_TRUE(checkGridAgainstTraining(old, grid).empty());
}

// An image of 64 nodes with spacing 1 / 63 (a box of 1.016): no warning.
TEST(TrainingRangeCheck, BoxOfTheOtherSpacingConvention) {
  const Grid grid = Grid::box(2, {64, 64, 1}, {0, 0, 0}, {64.0 / 63, 64.0 / 63, 1});
  EXPECT_TRUE(checkGridAgainstTraining(porousMetadata(), grid).empty());
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
  // Fokker-Planck at another tau with the same D and a: no symmetry relates it.
  OperatorMetadata fp = porousMetadata();
  fp.energy = EnergySpec::fokkerPlanck(0.1, 20);
  fp.ranges.massMin = 0.5, fp.ranges.massMax = 2;
  std::vector<RangeWarning> w = checkProblemAgainstTraining(fp, fp.energy, 0.01, 2, 1);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].quantity, "time step");
  EXPECT_DOUBLE_EQ(w[0].value, 0.01);
  expectContains(w[0].message, "time step is 0.01");
  expectContains(w[0].message, "trained for tau = 0.005");
  expectContains(w[0].message, "No symmetry of the step relates the two (D: 0.2 vs 0.1");
  expectContains(w[0].message, "tau D = 0.0005");
  expectContains(w[0].message, "--tau 0.01");
  w = checkProblemAgainstTraining(porousMetadata(), EnergySpec::porousMedium(3, 1), 0.005, 2, 0.05);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].quantity, "energy");
  expectContains(w[0].message, "m: 2 vs 3");
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
