#include "evaluation/HeldOutComparison.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <random>
#include <sstream>

#include "evaluation/ReferenceCases.h"
#include "evaluation/WildDensities.h"
#include "numerics/Errors.h"
#include "numerics/LinearizedStep.h"
#include "numerics/PushForward.h"
#include "numerics/ReferenceSolver.h"
#include "numerics/StepCertificate.h"
#include "operator/DensityGenerator.h"
#include "operator/LearnToEvolveTrainer.h"
#include "operator/OperatorFile.h"
#include "operator/TrainingRangeCheck.h"
#include "runtime/JsonNumber.h"

namespace jko {
namespace {

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

}  // namespace

EnergySpec problemEnergy(const LearnedOperator& op, const ComparisonProblem& problem) {
  return problem.energy ? *problem.energy : op.metadata().energy;
}

double problemTau(const LearnedOperator& op, const ComparisonProblem& problem) {
  return problem.tau > 0 ? problem.tau : op.metadata().tau;
}

SuiteStepper learnedSuiteStepper(std::shared_ptr<const LearnedOperator> op, const ComparisonProblem& problem) {
  const EnergySpec energy = problemEnergy(*op, problem);
  const double tau = problemTau(*op, problem);
  const int dim = op->metadata().dim;
  // Refused up front, not at the first step.
  const StepSymmetry any = relateToOperator(op->metadata(), energy, tau, dim, 0);
  if (!any.exact)
    throw OperatorFileError("no symmetry of the step relates " + energy.describe() + ", tau = " + formatValue(tau) +
                            " to the operator's problem (" + any.difference + "); it " +
                            describeCoverage(op->metadata()));
  return [op, energy, tau, dim](const at::Tensor& rho, const Grid& grid) {
    const double mass = rho.sum().item<double>() * grid.cellVolume();
    const LearnedStep step =
        stepThroughSymmetry(*op, relateToOperator(op->metadata(), energy, tau, dim, mass), rho, grid);
    return SuiteStep{step.next, tau * step.velocity};
  };
}

SuiteStepper suiteStepper(std::shared_ptr<const LearnedOperator> op, const ComparisonProblem& problem,
                          const std::string& solver, std::shared_ptr<RefinementTally> tally,
                          int linearizedCorrections) {
  if (solver == "learned") return learnedSuiteStepper(op, problem);
  const EnergySpec energy = problemEnergy(*op, problem);
  const double tau = problemTau(*op, problem);
  auto objectiveOn = [energy, tau](const Grid& grid) {
    return std::make_shared<const JkoObjective>(std::make_shared<const Energy>(energy, grid), tau);
  };
  if (solver == "linearized") {
    LinearizedStepOptions options;
    options.corrections = linearizedCorrections;
    return [objectiveOn, options](const at::Tensor& rho, const Grid& grid) {
      const auto [next, displacement] = LinearizedStep(objectiveOn(grid), options).step(rho);
      return SuiteStep{next, displacement};
    };
  }
  if (solver == "auto") {
    // One Auto solver per grid (a suite keeps its grid), built at the first step.
    struct Current {
      Grid grid;
      std::shared_ptr<const AutoSolver> solver;
    };
    auto current = std::make_shared<Current>();
    return [op, objectiveOn, current, tally](const at::Tensor& rho, const Grid& grid) {
      if (!current->solver || !current->grid.sameAs(grid)) {
        current->solver = std::make_shared<const AutoSolver>(op, objectiveOn(grid));
        current->grid = grid;
      }
      const CertifiedStep step = current->solver->step(rho);
      if (tally) tally->add(step);
      return SuiteStep{step.next, step.displacement};
    };
  }
  throw InvalidParameter("solver", solver, "must be learned, linearized or auto");
}

nlohmann::json compareWithReference(const LearnedOperator& op, const HeldOutOptions& o,
                                    const ProgressCallback& progress, const SuiteStepper& stepper) {
  const OperatorMetadata& m = op.metadata();
  std::array<int64_t, 3> cells{o.grid, o.grid, o.grid};
  std::array<double, 3> upper{m.ranges.boxLength[0], m.ranges.boxLength[1], m.ranges.boxLength[2]};
  const Grid grid = Grid::box(m.dim, cells, {0, 0, 0}, upper);
  const EnergySpec energy = problemEnergy(op, o.problem);
  // The problem's own held-out densities (the porous medium's bumps have the
  // profile of its m), the same for every operator asked that problem.
  DensityRanges ranges = TrainingOptions::defaultsFor(energy, m.dim).densities;
  DensityGenerator generator(grid, ranges, o.seed);
  const double tau = problemTau(op, o.problem);
  const auto objective = std::make_shared<const JkoObjective>(std::make_shared<const Energy>(energy, grid), tau);
  const ReferenceSolver solver(objective);
  const StepCertifier certifier(objective);  // each frame's grid-scale check, untimed
  // The learned step unless another solver is given (a non-owning handle:
  // the stepper lives only in this call).
  const SuiteStepper step =
      stepper
          ? stepper
          : learnedSuiteStepper(std::shared_ptr<const LearnedOperator>(&op, [](const LearnedOperator*) {}), o.problem);

  const PushForward pushForward(grid);
  std::vector<double> perFrame(o.steps, 0.0);
  nlohmann::json perDensity = nlohmann::json::array(), described = nlohmann::json::array();
  double solverSeconds = 0, referenceSeconds = 0;
  int64_t underResolved = 0;         // frames whose step fails the resolution check
  int64_t gridScale = 0;             // frames that keep detail at the grid scale
  int64_t referenceUnconverged = 0;  // reference steps stopped before the solver's tolerance
  for (int i = 0; i < o.densities; ++i) {
    const std::string kind = generator.nextKind();
    const at::Tensor rho0 = generator.next();
    auto start = Clock::now();
    const auto reference = solver.rollout(rho0, o.steps);
    referenceSeconds += secondsSince(start);
    for (const ReferenceStep& r : reference) referenceUnconverged += r.converged ? 0 : 1;
    std::vector<double> errors;
    at::Tensor rho = rho0;
    for (int k = 0; k < o.steps; ++k) {
      start = Clock::now();
      const SuiteStep taken = step(rho, grid);
      solverSeconds += secondsSince(start);
      if (spreadMassFraction(pushForward, rho, taken.displacement) > StepCertificate::kUnderResolvedShare)
        ++underResolved;
      if (certifier.gridScaleDefect(taken.next) > StepCertificate::kGridScaleDefectShare) ++gridScale;
      rho = taken.next;
      errors.push_back(relativeL1(rho, reference[k].next));
      perFrame[k] += errors.back() / o.densities;
    }
    perDensity.push_back(errors);
    // Which density this was, and whether the operator was trained on its
    // like: the mass and peak of what it steps (c rho0) against its ranges.
    const double mass = rho0.sum().item<double>() * grid.cellVolume();
    const StepSymmetry symmetry = relateToOperator(m, energy, tau, m.dim, mass);
    double errorMean = 0;
    for (double e : errors) errorMean += e / o.steps;
    described.push_back({{"kind", kind},
                         {"mass", mass},
                         {"peak", rho0.max().item<double>()},
                         {"minimum", rho0.min().item<double>()},
                         {"rel_l1_mean", errorMean},
                         {"range_warnings", messagesOf(checkDensityAgainstTraining(
                                                m, grid, rho0, symmetry.exact ? symmetry : StepSymmetry()))}});
    ProgressEvent event;
    event.stage = "held-out comparison";
    event.fraction = double(i + 1) / o.densities;
    event.message = "held-out density " + std::to_string(i + 1) + "/" + std::to_string(o.densities);
    reportProgress(progress, event);
  }
  double mean = 0;
  for (double e : perFrame) mean += e / o.steps;
  return {{"densities", o.densities},
          {"energy", energy.toJson()},
          {"tau", tau},
          {"steps", o.steps},
          {"grid", o.grid},
          {"seed", o.seed},
          {"rel_l1_per_frame", perFrame},
          {"rel_l1_mean", mean},
          {"rel_l1_final", perFrame.back()},
          {"rel_l1_per_density", perDensity},
          {"held_out_densities", described},
          {"under_resolved_frames", underResolved},
          // The solver's frames that keep detail at the grid scale the flow
          // would have damped (StepCertificate::gridScaleDefect above 2%):
          // the errors above measure the distance to the map-form reference
          // solver's frames, which keep it too.
          {"grid_scale_frames", gridScale},
          // Reference steps that stopped before the reference solver's
          // tolerance (its iteration cap, or a stalled line search): the frames
          // measured against are not its converged steps there.
          {"reference_unconverged_frames", referenceUnconverged},
          {"solver_seconds", solverSeconds},
          {"reference_seconds", referenceSeconds},
          {"solver_over_reference_time", finiteOrNull(solverSeconds / referenceSeconds)}};
}

namespace {

// FNV-1a of a string: the key of a cached reference trajectory.
std::string keyOf(const std::string& text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  std::ostringstream out;
  out << std::hex << h;
  return out.str();
}

// The reference solver's frames 1..K from rho0, and the steps (frame
// numbers) that stopped before its tolerance: on sharp densities steps
// run into the iteration cap, where the objective is nearly flat
// (docs/design.md, "The reference solver's step is a local minimiser"),
// and a figure measured against such frames should say so.
struct ReferenceTrajectory {
  std::vector<at::Tensor> frames;
  std::vector<int> unconverged;
};

// `seconds`: the reference solver's time, or NaN when the trajectory came
// from the cache. A cache written before the unconverged steps were kept
// is recomputed.
ReferenceTrajectory referenceTrajectory(std::shared_ptr<const JkoObjective> objective, const at::Tensor& rho0,
                                        int steps, const std::string& cacheFile, double& seconds) {
  seconds = std::numeric_limits<double>::quiet_NaN();
  if (!cacheFile.empty() && std::filesystem::exists(cacheFile)) {
    try {
      const OperatorArchive archive = readOperatorArchive(cacheFile);
      ReferenceTrajectory cached;
      for (const auto& [name, tensor] : archive.tensors) cached.frames.push_back(tensor);
      const auto unconverged = archive.metadata.find("unconverged");
      if (unconverged != archive.metadata.end() && unconverged->is_array() &&
          static_cast<int>(cached.frames.size()) == steps && cached.frames.front().sizes() == rho0.sizes()) {
        cached.unconverged = unconverged->get<std::vector<int>>();
        return cached;
      }
    } catch (const Error&) {
      // A damaged cache file is recomputed and overwritten.
    } catch (const nlohmann::json::exception&) {
      // So is one whose list of unconverged steps is not a list of frames.
    }
  }
  const ReferenceSolver solver(std::move(objective));
  ReferenceTrajectory out;
  const auto start = Clock::now();
  const std::vector<ReferenceStep> trajectory = solver.rollout(rho0, steps);
  for (size_t k = 0; k < trajectory.size(); ++k) {
    out.frames.push_back(trajectory[k].next);
    if (!trajectory[k].converged) out.unconverged.push_back(static_cast<int>(k + 1));
  }
  seconds = secondsSince(start);
  if (!cacheFile.empty()) {
    OperatorArchive archive;
    archive.metadata = {{"kind", "reference trajectory"}, {"unconverged", out.unconverged}};
    for (size_t k = 0; k < out.frames.size(); ++k)
      archive.tensors.emplace_back("frame" + std::to_string(k + 1), out.frames[k]);
    std::filesystem::create_directories(std::filesystem::path(cacheFile).parent_path());
    writeOperatorArchive(cacheFile, archive);
  }
  return out;
}

}  // namespace

nlohmann::json compareOnWildSuite(const LearnedOperator& op, const SuiteStepper& solver, const WildSuiteOptions& o,
                                  const ProgressCallback& progress) {
  const OperatorMetadata& m = op.metadata();
  if (o.steps < 1) throw InvalidParameter("steps", formatValue(o.steps), "must be >= 1");
  if (o.densitiesPerFamily < 1)
    throw InvalidParameter("densities per family", formatValue(o.densitiesPerFamily), "must be >= 1");
  std::array<int64_t, 3> cells{o.grid, o.grid, o.grid};
  std::array<double, 3> upper{m.ranges.boxLength[0], m.ranges.boxLength[1], m.ranges.boxLength[2]};
  const Grid grid = Grid::box(m.dim, cells, {0, 0, 0}, upper);
  const EnergySpec problem = problemEnergy(op, o.problem);
  const double tau = problemTau(op, o.problem);
  const auto objective = std::make_shared<const JkoObjective>(std::make_shared<const Energy>(problem, grid), tau);
  const Energy& energy = objective->energy();
  const std::vector<std::string> families = o.families.empty() ? wildFamilies() : o.families;
  const bool byPeak = m.energy.internal == InternalKind::PorousMedium;

  nlohmann::json perFamily = nlohmann::json::object();
  double sum = 0, worstDensity = 0, worstFrame = 0;
  int64_t frames = 0, increases = 0, done = 0, underResolved = 0, referenceUnconverged = 0, gridScale = 0;
  const StepCertifier certifier(objective);        // each frame's grid-scale check, untimed
  double solverSeconds = 0, referenceSeconds = 0;  // NaN once a trajectory came from the cache
  const int64_t total = static_cast<int64_t>(families.size()) * o.densitiesPerFamily;
  for (const std::string& family : families) {
    double familySum = 0, familyWorst = 0;
    int64_t familyCoarse = 0, familyUnconverged = 0, familyGridScale = 0;
    nlohmann::json densities = nlohmann::json::array();
    for (int j = 0; j < o.densitiesPerFamily; ++j) {
      const uint64_t seed = o.seed + 1000 * j;
      const at::Tensor shape = wildDensity(grid, family, seed);
      // The scale, the same for every operator of an energy (so operators
      // trained on other ranges meet the same densities): a peak
      // log-uniform in [0.05, 0.6] for the porous medium (its speed grows
      // with the peak), else a mass uniform in [0.5, 1.5].
      std::mt19937_64 random(seed ^ 0xabcdefull);
      std::uniform_real_distribution<double> unit(0, 1);
      double scale;
      if (byPeak) {
        const double peak = std::exp(std::log(0.05) + unit(random) * (std::log(0.6) - std::log(0.05)));
        scale = peak / shape.max().item<double>();
      } else {
        scale = (0.5 + unit(random)) / (shape.sum().item<double>() * grid.cellVolume());
      }
      const at::Tensor rho0 = shape * scale;
      std::ostringstream key;
      key << problem.toJson().dump() << tau << grid.describe() << family << seed << scale << o.steps;
      const std::string cacheFile =
          o.cacheDirectory.empty() ? ""
                                   : (std::filesystem::path(o.cacheDirectory) / (keyOf(key.str()) + ".ref")).string();
      double seconds = 0;
      const ReferenceTrajectory trajectory = referenceTrajectory(objective, rho0, o.steps, cacheFile, seconds);
      const std::vector<at::Tensor>& reference = trajectory.frames;
      referenceSeconds += seconds;
      referenceUnconverged += static_cast<int64_t>(trajectory.unconverged.size());
      familyUnconverged += static_cast<int64_t>(trajectory.unconverged.size());
      std::vector<double> errors;
      std::vector<int> coarse;    // frames whose step fails the resolution check
      std::vector<int> detailed;  // frames that keep detail at the grid scale
      at::Tensor rho = rho0;
      double previousEnergy = energy(rho0.unsqueeze(0)).item<double>();
      for (int k = 0; k < o.steps; ++k) {
        const auto start = Clock::now();
        const SuiteStep taken = solver(rho, grid);
        solverSeconds += secondsSince(start);
        if (spreadMassFraction(objective->pushForward(), rho, taken.displacement) >
            StepCertificate::kUnderResolvedShare)
          coarse.push_back(k + 1);
        if (certifier.gridScaleDefect(taken.next) > StepCertificate::kGridScaleDefectShare) detailed.push_back(k + 1);
        rho = taken.next;
        errors.push_back(relativeL1(rho, reference[k]));
        const double e = energy(rho.unsqueeze(0)).item<double>();
        if (e > previousEnergy + 1e-12 * std::abs(previousEnergy)) ++increases;
        previousEnergy = e;
        worstFrame = std::max(worstFrame, errors.back());
      }
      double mean = 0;
      for (double e : errors) mean += e / o.steps;
      sum += mean * o.steps;
      frames += o.steps;
      familySum += mean;
      familyWorst = std::max(familyWorst, mean);
      worstDensity = std::max(worstDensity, mean);
      familyCoarse += static_cast<int64_t>(coarse.size());
      underResolved += static_cast<int64_t>(coarse.size());
      familyGridScale += static_cast<int64_t>(detailed.size());
      gridScale += static_cast<int64_t>(detailed.size());
      densities.push_back({{"seed", seed},
                           {"scale", scale},
                           {"mean_error", mean},
                           {"errors", errors},
                           {"under_resolved_frames", coarse},
                           {"grid_scale_frames", detailed},
                           {"reference_unconverged_frames", trajectory.unconverged}});
      ProgressEvent event;
      event.stage = "wild suite";
      event.fraction = double(++done) / total;
      event.message = family + " density " + std::to_string(j + 1) + "/" + std::to_string(o.densitiesPerFamily);
      reportProgress(progress, event);
    }
    perFamily[family] = {{"mean_error", familySum / o.densitiesPerFamily},
                         {"worst_density_error", familyWorst},
                         {"under_resolved_frames", familyCoarse},
                         {"grid_scale_frames", familyGridScale},
                         {"reference_unconverged_frames", familyUnconverged},
                         {"densities", densities}};
  }
  return {{"suite", "wild"},
          {"energy", problem.toJson()},
          {"tau", tau},
          {"grid", o.grid},
          {"dim", m.dim},
          {"steps", o.steps},
          {"densities_per_family", o.densitiesPerFamily},
          {"seed", o.seed},
          {"scaled_by", byPeak ? "peak" : "mass"},
          {"mean_error", sum / frames},
          {"worst_density_error", worstDensity},
          {"worst_frame_error", worstFrame},
          {"energy_increase_frames", increases},
          // Frames whose step (the solver's map) spreads mass apart beyond
          // what one particle per node resolves: far from the exact step
          // whatever the solver, the reference solver's too
          // (StepCertificate::spreadMassFraction).
          {"under_resolved_frames", underResolved},
          // The solver's frames that keep detail at the grid scale
          // (StepCertificate::gridScaleDefect above 2%).
          {"grid_scale_frames", gridScale},
          // Reference steps that stopped before the reference solver's
          // tolerance (its iteration cap, or a stalled line search): the frames
          // measured against are not its converged steps there.
          {"reference_unconverged_frames", referenceUnconverged},
          {"solver_seconds", solverSeconds},
          {"reference_seconds", finiteOrNull(referenceSeconds)},
          {"solver_over_reference_time", finiteOrNull(solverSeconds / referenceSeconds)},
          {"per_family", perFamily}};
}

}  // namespace jko
