// The Auto solver (operator/AutoSolver) with the bundled porous-medium
// operator: a step forced far outside its training range is refined to the
// reference solver's step, and a broken operator trips the descent guard.
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include "evaluation/ReferenceCases.h"
#include "evaluation/WildDensities.h"
#include "numerics/ReferenceSolver.h"
#include "operator/AutoSolver.h"
#include "operator/DensityGenerator.h"
#include "operator/TrainingRangeCheck.h"
#include "operator/VelocityNetwork.h"
#include "runtime/Runtime.h"

namespace jko {
namespace {

std::shared_ptr<LearnedOperator> porousMediumOperator() {
  configureRuntime(2);
  return LearnedOperator::load(std::string(JKO_SOURCE_DIR) + "/data/operators/porous-medium.jko");
}

// Gaussian blobs of the given total mass on the unit box.
at::Tensor densityOfMass(const Grid& grid, double mass, uint64_t seed) {
  DensityRanges ranges;
  ranges.massMin = ranges.massMax = mass;
  return DensityGenerator(grid, ranges, seed).next("gaussian-mixture");
}

double stepObjective(const JkoObjective& J, const at::Tensor& rho, const at::Tensor& displacement) {
  at::NoGradGuard noGrad;
  return J.evaluate(J.prepare(rho), displacement.unsqueeze(0)).objective.item<double>();
}

TEST(AutoSolver, RefinesAStepForcedOutOfRangeToWithinOnePercentOfTheReference) {
  const auto op = porousMediumOperator();
  const Grid grid = Grid::unitBox(2, 48);
  // Mass 0.2: peaks of 4, four times the largest the operator was trained
  // on (at mass 0.1 its Gauss-Newton corrections bring the learned step
  // within 2.5% of the reference solver's).
  // (Further out, at mass 1 and peaks of 20, the discrete objective has
  // several minima: Auto, refining from the learned map, reached a lower
  // objective than the reference solver from rest, 4.04 against 4.47, 29%
  // away from its density.)
  const at::Tensor rho0 = densityOfMass(grid, 0.2, 11);
  const std::vector<RangeWarning> warnings = checkDensityAgainstTraining(op->metadata(), grid, rho0);
  ASSERT_FALSE(warnings.empty());
  EXPECT_EQ(warnings[0].quantity, "peak density");

  const auto objective = op->objectiveOn(grid);
  const AutoSolver solver(op, objective);
  const ReferenceSolver reference(objective);
  at::Tensor rho = rho0;
  for (int k = 0; k < 3; ++k) {
    const CertifiedStep step = solver.step(rho);
    const ReferenceStep exact = reference.step(rho);
    const double learnedError = relativeL1(op->step(rho, grid).next, exact.next);
    if (k == 0) {
      // The first learned step alone is far off, and its certificate says
      // so (later ones, from the refined frames, came within 1.9-3% once
      // hard steps took extra corrections).
      EXPECT_GT(learnedError, 0.03) << "the test no longer forces a bad learned step";
      EXPECT_TRUE(step.refined);
    }
    if (step.refined) {
      EXPECT_NE(step.reason, RefineReason::None);
      EXPECT_FALSE(step.learned.passes(solver.options().threshold));
      EXPECT_GT(step.iterations, 0);
      // Refined until the certificate passes (or the reference solver's
      // own rule stopped it).
      EXPECT_TRUE(step.certificate.passes(solver.options().threshold) || step.refineConverged);
    } else {
      EXPECT_TRUE(step.learned.passes(solver.options().threshold)) << "step " << k + 1;
    }
    // Either way within 1% of the reference solver's step.
    EXPECT_LT(relativeL1(step.next, exact.next), 0.01) << "step " << k + 1 << " (learned alone " << learnedError << ")";
    rho = step.next;
  }
}

// In range, the certificate is of the size of the true error (the study
// measured error / certificate between 0.08 and 1.1), and a step the
// operator gets right is not refined.
TEST(AutoSolver, InRangeCertificatesTrackTheErrorAndGoodStepsPass) {
  const auto op = porousMediumOperator();
  const Grid grid = Grid::unitBox(2, 64);
  DensityRanges ranges;
  ranges.peakMin = 0.2, ranges.peakMax = 0.4;
  at::Tensor rho = DensityGenerator(grid, ranges, 21).next("smooth-field");
  ASSERT_TRUE(checkDensityAgainstTraining(op->metadata(), grid, rho).empty());
  const auto objective = op->objectiveOn(grid);
  const AutoSolver solver(op, objective);
  const ReferenceSolver reference(objective);
  for (int k = 0; k < 3; ++k) {
    const CertifiedStep step = solver.step(rho);
    const double error = relativeL1(op->step(rho, grid).next, reference.step(rho).next);  // the learned step's
    EXPECT_TRUE(step.learned.descent);
    EXPECT_GE(step.learned.l1ErrorEstimate, 0.5 * error) << "step " << k + 1;
    EXPECT_LE(step.learned.l1ErrorEstimate, 20 * error) << "step " << k + 1;
    // From the third step on (the first ones move the sharpest features;
    // the certificate over-estimates by about 2 here) the learned step is
    // within 1% and passes.
    if (k > 1) {
      EXPECT_LT(error, 0.01) << "step " << k + 1;
      EXPECT_FALSE(step.refined) << "step " << k + 1 << ": certificate " << step.learned.l1ErrorEstimate;
    }
    rho = step.next;
  }
}

TEST(AutoSolver, DescentGuardCatchesABrokenOperator) {
  const auto trained = porousMediumOperator();
  const Grid grid = Grid::unitBox(2, 64);
  DensityRanges ranges;
  ranges.peakMin = 0.2, ranges.peakMax = 0.4;
  const at::Tensor rho = DensityGenerator(grid, ranges, 21).next("bumps");
  const auto objective = trained->objectiveOn(grid);
  const double stay = stepObjective(*objective, rho, at::zeros({2, 64, 64}, at::kDouble));
  {
    const CertifiedStep good = AutoSolver(trained, objective).learnedStep(rho);
    EXPECT_TRUE(good.learned.descent);
    EXPECT_LT(stepObjective(*objective, rho, good.displacement), stay);
  }
  // Break one: the bundled operator gates a stable base and cannot be broken
  // by its weights, so take the same problem on the resolvent base, whose
  // gate on the explicit velocity is unbounded, with every weight times 10
  // and no Gauss-Newton corrections (they would repair the map).
  OperatorMetadata metadata = trained->metadata();
  metadata.network.base = "resolvent";
  metadata.network.gaussNewton = 0;
  const auto op = std::make_shared<LearnedOperator>(
      metadata, VelocityNetwork::create(metadata.network, 2, LearnedOperator::inputChannels(metadata),
                                        LearnedOperator::outputChannels(metadata), 7));
  {
    at::NoGradGuard noGrad;
    for (const at::Tensor& parameter : op->network().parameters()) parameter.mul_(10.0);
  }
  const AutoSolver solver(op, objective);
  const CertifiedStep broken = solver.learnedStep(rho);
  // The guard against an independent evaluation of J.
  ASSERT_GT(stepObjective(*objective, rho, broken.displacement), stay) << "the scaled operator still descends";
  EXPECT_FALSE(broken.learned.descent);
  EXPECT_EQ(broken.reason, RefineReason::DescentFailed);
  RefinementTally tally;
  tally.add(broken);
  EXPECT_NE(tally.describe(solver.options().threshold, false).find("raised the step objective"), std::string::npos);

  const CertifiedStep fixed = solver.step(rho);
  EXPECT_TRUE(fixed.refined);
  EXPECT_EQ(fixed.reason, RefineReason::DescentFailed);
  EXPECT_TRUE(fixed.certificate.descent);
  EXPECT_LT(fixed.certificate.objective, stay);
  EXPECT_LT(relativeL1(fixed.next, ReferenceSolver(objective).step(rho).next), 0.01);
}

// A learned map far from the step's minimiser (estimated L1 error above
// restartAbove) is no start for the refinement (from such maps L-BFGS
// crawled, 3-7% off the reference step): the Fokker-Planck operator on the
// wild suite's scan at 48^2 (certificate ~0.3) is refined from u = 0, as the
// reference solver's own step (stopped by the certificate instead, this one
// ended 1.08% off).
TEST(AutoSolver, AStepFarOffIsRefinedFromZero) {
  configureRuntime(2);
  const auto op = LearnedOperator::load(std::string(JKO_SOURCE_DIR) + "/data/operators/fokker-planck.jko");
  const Grid grid = Grid::unitBox(2, 48);
  const at::Tensor shape = wildDensity(grid, "scan", 7);
  const at::Tensor rho = shape / (shape.sum() * grid.cellVolume());
  const auto objective = op->objectiveOn(grid);
  const AutoSolver solver(op, objective);
  const CertifiedStep step = solver.step(rho);
  ASSERT_EQ(step.reason, RefineReason::CertificateAbove);
  ASSERT_GT(step.learned.l1ErrorEstimate, solver.options().restartAbove);
  EXPECT_TRUE(step.refined);
  EXPECT_TRUE(step.restarted);
  EXPECT_LE(step.certificate.l1ErrorEstimate, solver.options().threshold);
  // From u = 0 the refinement is the reference solver's own step, stopped by
  // its own rule and not by the certificate (which under-estimated such
  // steps' distance 3x on stripes at the grid's scale): the same frame.
  const ReferenceStep reference = ReferenceSolver(objective).step(rho);
  EXPECT_EQ(step.iterations, reference.iterations);
  EXPECT_LT(relativeL1(step.next, reference.next), 1e-12);
  RefinementTally tally;
  tally.add(step);
  EXPECT_EQ(tally.restarted, 1);
  EXPECT_NE(tally.describe(solver.options().threshold).find("from u = 0"), std::string::npos);
  EXPECT_TRUE(step.fromScratch());
  EXPECT_EQ(tally.unconverged, 0);

  // The same step capped at 20 iterations stops before the reference
  // solver's tolerance: not certified, and the tally says which frame.
  AutoSolverOptions capped;
  capped.reference.maxIterations = 20;
  const CertifiedStep stopped = AutoSolver(op, objective, capped).step(rho);
  EXPECT_TRUE(stopped.fromScratch());
  EXPECT_FALSE(stopped.refineConverged);
  EXPECT_EQ(stopped.iterations, 20);
  RefinementTally cappedTally;
  cappedTally.add(step);
  cappedTally.add(stopped);
  EXPECT_EQ(cappedTally.unconverged, 1);
  EXPECT_EQ(cappedTally.unconvergedFrames, std::vector<int>{2});
  EXPECT_NE(cappedTally.describe(capped.threshold)
                .find("stopped at the iteration cap before the reference solver's tolerance, not certified: frame 2"),
            std::string::npos)
      << cappedTally.describe(capped.threshold);
  EXPECT_EQ(cappedTally.toJson()["unconverged_frames"], nlohmann::json::array({2}));

  // A level below the threshold would restart steps that pass: refused.
  AutoSolverOptions options;
  options.restartAbove = 0.5 * options.threshold;
  EXPECT_THROW(AutoSolver(op, objective, options), InvalidParameter);
}

// On a density the operator handles well, Auto stops the learned map's
// Gauss-Newton corrections once the certificate is a quarter of the
// threshold: a different, less tight map than the learned solver's (which
// takes all of them), still certified and still close to the reference step.
// With correctUntil = 0 it is the learned solver's map.
TEST(AutoSolver, StopsCorrectingOnceCertified) {
  const auto op = porousMediumOperator();
  const Grid grid = Grid::unitBox(2, 64);
  DensityRanges ranges;
  ranges.massMin = ranges.massMax = 0.02;
  const at::Tensor rho = DensityGenerator(grid, ranges, 2).next("smooth-field");
  const auto objective = op->objectiveOn(grid);
  const AutoSolver solver(op, objective);
  const CertifiedStep learned = solver.learnedStep(rho);
  const CertifiedStep automatic = solver.step(rho);
  const ReferenceStep exact = ReferenceSolver(objective).step(rho);
  ASSERT_FALSE(automatic.refined);
  const AutoSolverOptions& options = solver.options();
  EXPECT_LE(automatic.certificate.l1ErrorEstimate, options.correctUntil * options.threshold);
  EXPECT_FALSE(at::equal(automatic.next, learned.next)) << "the corrections did not stop early";
  EXPECT_LT(learned.certificate.l1ErrorEstimate, automatic.certificate.l1ErrorEstimate);
  EXPECT_LT(relativeL1(automatic.next, exact.next), options.correctUntil * options.threshold);
  EXPECT_NEAR(automatic.next.sum().item<double>(), rho.sum().item<double>(), 1e-12 * rho.sum().item<double>());

  AutoSolverOptions all;
  all.correctUntil = 0;
  EXPECT_TRUE(at::equal(AutoSolver(op, objective, all).step(rho).next, learned.next));
  for (const double bad : {-0.1, 1.5}) {
    AutoSolverOptions refused;
    refused.correctUntil = bad;
    try {
      AutoSolver(op, objective, refused);
      ADD_FAILURE() << "correctUntil " << bad << " accepted";
    } catch (const InvalidParameter& e) {
      EXPECT_NE(std::string(e.what()).find("correction target"), std::string::npos) << e.what();
    }
  }
}

// A Fokker-Planck step does not depend on the mass: the Auto solver steps a
// density of mass 20 through the operator's range [0.5, 2] and scales back.
TEST(AutoSolver, MassInvariantEnergiesUseTheSymmetry) {
  configureRuntime(2);
  const auto op = LearnedOperator::load(std::string(JKO_SOURCE_DIR) + "/data/operators/fokker-planck.jko");
  const Grid grid = Grid::unitBox(2, 64);
  const at::Tensor rho = densityOfMass(grid, 20.0, 5);
  const auto objective = op->objectiveOn(grid);
  const AutoSolver solver(op, objective);
  const CertifiedStep step = solver.learnedStep(rho);
  EXPECT_NEAR(step.densityFactor, op->metadata().ranges.massMax / 20.0, 1e-9);
  const LearnedStep scaled = op->step(rho * step.densityFactor, grid);
  EXPECT_LT((step.next - scaled.next / step.densityFactor).abs().max().item<double>(),
            1e-12 * rho.max().item<double>());
  EXPECT_NEAR(step.next.sum().item<double>(), rho.sum().item<double>(), 1e-12 * rho.sum().item<double>());
}

// The three modes of the CLI: learned is the certified learned step, refine
// takes that many L-BFGS iterations from its map and lowers the objective,
// auto is the Auto solver's step; other names are refused.
TEST(AutoSolver, OperatorSolverModes) {
  configureRuntime(2);
  const auto op = porousMediumOperator();
  const Grid grid = Grid::unitBox(2, 32);
  const at::Tensor rho = densityOfMass(grid, 0.02, 3);
  const auto objective = op->objectiveOn(grid);
  ReferenceSolverOptions refine;
  refine.maxIterations = 5;
  const CertifiedStep learned = OperatorSolver(op, objective, OperatorSolver::Mode::Learned).step(rho);
  const CertifiedStep refined =
      OperatorSolver(op, objective, OperatorSolver::modeFromString("refine"), {}, refine).step(rho);
  EXPECT_FALSE(learned.refined);
  EXPECT_TRUE(at::equal(learned.next, AutoSolver(op, objective).learnedStep(rho).next));
  EXPECT_TRUE(refined.refined);
  EXPECT_GE(refined.iterations, 1);
  EXPECT_LE(refined.iterations, 5);
  EXPECT_LT(refined.certificate.objective, learned.certificate.objective);
  EXPECT_NEAR(refined.next.sum().item<double>(), rho.sum().item<double>(), 1e-12 * rho.sum().item<double>());
  const CertifiedStep automatic = OperatorSolver(op, objective, OperatorSolver::Mode::Auto).step(rho);
  EXPECT_TRUE(at::equal(automatic.next, AutoSolver(op, objective).step(rho).next));
  EXPECT_THROW(OperatorSolver::modeFromString("reference"), InvalidParameter);
}

}  // namespace
}  // namespace jko
