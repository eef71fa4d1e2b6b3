// jko eval: runs a reference case of DESIGN.md §5 with a solver and measures
// it against the exact answer.
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <iomanip>
#include <iostream>
#include <memory>
#include <thread>

#include "Commands.h"
#include "EnergyOptions.h"
#include "evaluation/HeldOutComparison.h"
#include "evaluation/ModeDecay.h"
#include "evaluation/ReferenceCases.h"
#include "evaluation/WildDensities.h"
#include "numerics/Errors.h"
#include "numerics/JkoObjective.h"
#include "numerics/LinearizedStep.h"
#include "numerics/ReferenceSolver.h"
#include "numerics/StepCertificate.h"
#include "operator/AutoSolver.h"
#include "operator/LearnedOperator.h"
#include "operator/TrainingRangeCheck.h"
#include "runtime/Runtime.h"

namespace jko::cli {
namespace {

struct EvalOptions {
  std::string caseName;
  std::string solver = "reference";
  int64_t grid = 64;
  int dim = 2;
  double tau = 0;
  int steps = -1;
  bool json = false, referenceCheck = false;
  int threads = 0;
  std::string operatorFile;
  int refineIterations = 10;
  int gaussNewton = -1;   ///< --gauss-newton; -1: the operator file's (learned), 0 (linearized)
  int furtherNewton = 0;  ///< --further-newton
  double threshold = AutoSolverOptions().threshold;
  ReferenceSolverOptions reference;
  LinearizedStepOptions linearized;
  // mode-decay only: the energy (default: the operator's, else the porous
  // medium m = 2), the constant state and the mode's relative amplitude.
  EnergyOptions energy;
  double level = 0, amplitude = 0.1;
};

// The network-free linearised implicit step (numerics/LinearizedStep.h).
Stepper linearizedStepper(std::shared_ptr<const LinearizedStep> solver) {
  return [solver](const at::Tensor& rho, const StepOutput&) {
    auto [next, u] = solver->step(rho);
    StepOutput out;
    out.next = next;
    out.displacement = u;
    at::NoGradGuard noGrad;
    const JkoObjective& J = solver->objective();
    const JkoTerms terms = J.evaluate(J.prepare(rho), u.unsqueeze(0));
    out.objective = terms.objective.item<double>();
    out.energy = terms.energy.item<double>();
    out.transport = terms.transport.item<double>();
    return out;
  };
}

// The energy options given for a named case: D, --potential-strength,
// --attraction and --m replace the case's own values where its exact answer
// holds for them (makeReferenceCase checks which); a preset or any other
// parameter is refused, as the case fixes its energy's form.
CaseParameters caseParameters(const EnergyOptions& energy, const std::string& caseName) {
  if (energy.given())
    throw InvalidParameter("--energy", energy.preset, "each case has its own energy; --energy is for mode-decay");
  const std::pair<const CLI::Option*, const char*> fixed[] = {{energy.potentialOption, "--potential"},
                                                              {energy.centreOption, "--potential-centre"},
                                                              {energy.kernelOption, "--kernel"},
                                                              {energy.repulsionOption, "--repulsion"},
                                                              {energy.attractivePowerOption, "--attractive-power"},
                                                              {energy.repulsivePowerOption, "--repulsive-power"}};
  for (const auto& [option, name] : fixed)
    if (option && option->count())
      throw InvalidParameter(name, option->as<std::string>(),
                             "the case " + caseName +
                                 " fixes its energy's form; it takes only --D, --potential-strength, --attraction "
                                 "or --m where its exact answer holds for them");
  CaseParameters p;
  if (energy.DOption && energy.DOption->count()) p.diffusion = energy.D;
  if (energy.strengthOption && energy.strengthOption->count()) p.potentialStrength = energy.potentialStrength;
  if (energy.attractionOption && energy.attractionOption->count()) p.attraction = energy.attraction;
  if (energy.mOption && energy.mOption->count()) p.exponent = energy.m;
  return p;
}

// The learned operator (certified, never refined), refine (the learned step
// followed by a fixed number of reference-solver iterations started from it)
// or auto (refined only when its certificate fails), for the problem of
// `grid`, `energy` and `tau` from the initial density `rho0`. `tally` counts
// the frames that failed and were refined.
Stepper learnedStepper(std::shared_ptr<LearnedOperator> op, const Grid& grid, const EnergySpec& energy, double tau,
                       const at::Tensor& rho0, const EvalOptions& options,
                       const std::shared_ptr<RefinementTally>& tally) {
  const bool automatic = options.solver == "auto";
  // The learned and refine solvers run the operator's own problem or one the
  // step's symmetries relate to it (anything else is refused); Auto uses the
  // operator as a first guess and only warns.
  const LearnedOperator::Use use = op->checkUse(grid, energy, tau, rho0, automatic);
  for (const std::string& note : use.notes) std::cerr << "jko: " << note << "\n";
  for (const std::string& warning : use.warnings) std::cerr << "jko: warning: " << warning << "\n";
  const auto objective = std::make_shared<const JkoObjective>(std::make_shared<const Energy>(energy, grid), tau);
  AutoSolverOptions autoOptions;
  autoOptions.threshold = options.threshold;
  autoOptions.reference = options.reference;
  ReferenceSolverOptions refineOptions = options.reference;
  refineOptions.maxIterations = options.refineIterations;
  auto solver = std::make_shared<const OperatorSolver>(op, objective, OperatorSolver::modeFromString(options.solver),
                                                       autoOptions, refineOptions);
  return [solver, tally](const at::Tensor& rho, const StepOutput&) {
    const CertifiedStep step = solver->step(rho);
    tally->add(step);
    StepOutput out;
    out.next = step.next;
    out.displacement = step.displacement;
    out.objective = step.certificate.objective;
    out.energy = step.certificate.energy;
    out.transport = step.certificate.transport;
    out.iterations = step.iterations;
    out.certificate = step.certificate;
    if (step.refined) out.learnedCertificate = step.learned;
    out.refined = step.refined;
    out.refineIterations = step.iterations;
    out.refineReason = toString(step.reason);
    return out;
  };
}

void printSummary(const nlohmann::json& r) {
  std::cout << r["case"].get<std::string>() << " with the " << r["solver"].get<std::string>() << " solver, "
            << r["grid"] << "^" << r["dim"] << " grid, tau " << r["tau"] << ", " << r["steps"] << " steps\n";
  std::cout << std::setprecision(4);
  std::cout << "  rel L1 error at the end: " << 100 * r["rel_l1_final"].get<double>() << "%";
  if (r["case"] == "barenblatt-flow")
    std::cout << " against the PDE, " << 100 * r["rel_l1_jko_final"].get<double>() << "% against the exact JKO chain";
  std::cout << "\n";
  if (r.contains("step_error_final"))
    std::cout << "  share of the step that is wrong: " << 100 * r["step_error_final"].get<double>() << "%\n";
  if (r.contains("variance_error"))
    std::cout << "  steady-state variance error: " << 100 * r["variance_error"].get<double>() << "%\n";
  std::cout << "  median " << r["ms_per_step_median"].get<double>() << " ms per step, mass drift "
            << r["mass_drift_max"].get<double>() << ", min density " << r["min_density"].get<double>() << "\n";
}

}  // namespace

void addEvalCommand(CLI::App& app) {
  auto options = std::make_shared<EvalOptions>();
  CLI::App* eval = app.add_subcommand("eval", "Run a reference case and measure it against its exact answer");
  std::vector<std::string> cases = referenceCaseNames();
  cases.push_back("mode-decay");
  eval->add_option("--case", options->caseName, "Reference case")->required()->check(CLI::IsMember(cases));
  eval->add_option("--solver", options->solver,
                   "Solver: reference, learned, refine (learned + a few reference iterations), auto (learned, "
                   "refined by the reference solver where its certificate fails) or linearized (the network-free "
                   "linearised implicit step)")
      ->check(CLI::IsMember({"reference", "learned", "refine", "auto", "linearized"}));
  eval->add_option("--operator", options->operatorFile, "Operator file (learned, refine, auto)");
  eval->add_option("--threshold", options->threshold,
                   "Certificate threshold: the largest estimated relative L1 distance of a frame to its step's "
                   "minimiser (auto refines above it; learned reports the frames above it)")
      ->capture_default_str();
  eval->add_option("--refine-iterations", options->refineIterations,
                   "L-BFGS iterations after the learned step (refine)")
      ->capture_default_str();
  eval->add_option("--grid", options->grid, "Nodes per axis")->capture_default_str();
  eval->add_option("--dim", options->dim, "Dimension, 2 or 3")->check(CLI::IsMember({2, 3}))->capture_default_str();
  eval->add_option("--tau", options->tau, "Time step (default: the case's own)");
  eval->add_option("--steps", options->steps, "Number of JKO steps (default: the case's own)");
  eval->add_flag("--json", options->json, "Print one JSON object");
  eval->add_flag("--reference-check", options->referenceCheck,
                 "Also take the reference solver's step from each frame's input and report the frame's error against "
                 "it (reference_rel_l1, reference_ms, reference_objective)");
  eval->add_option("--threads", options->threads, "LibTorch threads (default: all cores)");
  eval->add_option("--objective-tol", options->reference.objectiveTolerance,
                   "Reference solver: relative objective decrease over the last iterations")
      ->capture_default_str();
  eval->add_option("--gradient-tol", options->reference.gradientTolerance,
                   "Reference solver: squared metric gradient norm relative to the step's decrease")
      ->capture_default_str();
  eval->add_option("--max-iterations", options->reference.maxIterations, "Reference solver: L-BFGS iterations cap")
      ->capture_default_str();
  eval->add_option("--gauss-newton", options->gaussNewton, kGaussNewtonHelp);
  eval->add_option("--further-newton", options->furtherNewton, kFurtherNewtonHelp)->check(CLI::Range(0, 50));
  eval->add_option("--linearized-iterations", options->linearized.iterations,
                   "Linearized solver: preconditioned iterations of its elliptic problem")
      ->capture_default_str();
  eval->add_option("--linearized-cap", options->linearized.capCells, "Linearized solver: displacement cap in cells")
      ->capture_default_str();
  eval->add_option("--linearized-smoothing", options->linearized.smoothing,
                   "Linearized solver: Gauss-Seidel sweeps before and after each coarse correction")
      ->capture_default_str();
  eval->add_option("--linearized-stabilisation", options->linearized.stabilisation,
                   "Linearized solver: eps of its third-difference stabilisation at mobility jumps")
      ->capture_default_str();
  eval->add_option("--level", options->level, "mode-decay: the constant state rho0 (default: 0.3 porous, else 1)");
  eval->add_option("--amplitude", options->amplitude, "mode-decay: the mode's amplitude as a fraction of rho0")
      ->capture_default_str();
  options->energy.addTo(*eval, false);
  eval->callback([options] {
    configureRuntime(options->threads > 0 ? options->threads : static_cast<int>(std::thread::hardware_concurrency()));
    const bool learnedSolver = options->solver == "learned" || options->solver == "refine" || options->solver == "auto";
    if (learnedSolver && options->operatorFile.empty())
      throw InvalidParameter("--operator", "none", "the " + options->solver + " solver needs an operator file");
    std::shared_ptr<LearnedOperator> op;
    if (learnedSolver) op = LearnedOperator::load(options->operatorFile);
    if (op && options->gaussNewton >= 0) op->setGaussNewton(options->gaussNewton);
    if (op) op->setFurtherNewton(options->furtherNewton);
    if (options->gaussNewton >= 0) options->linearized.corrections = options->gaussNewton;
    auto tally = std::make_shared<RefinementTally>();
    auto stepperFor = [&](const Grid& grid, const EnergySpec& energy, double tau, const at::Tensor& rho0) -> Stepper {
      auto objective = std::make_shared<const JkoObjective>(std::make_shared<const Energy>(energy, grid), tau);
      if (options->solver == "reference")
        return referenceStepper(std::make_shared<const ReferenceSolver>(objective, options->reference));
      if (options->solver == "linearized")
        return linearizedStepper(std::make_shared<const LinearizedStep>(objective, options->linearized));
      return learnedStepper(op, grid, energy, tau, rho0, *options, tally);
    };
    nlohmann::json result;
    if (options->caseName == "mode-decay") {
      if (options->steps >= 0) throw InvalidParameter("--steps", formatValue(options->steps), "mode-decay is one step");
      ModeDecayOptions mode;
      mode.grid = Grid::unitBox(options->dim, options->grid);
      // --energy, or the operator's energy (else the porous medium), with any
      // parameter given on the command line.
      mode.energy = options->energy.over(op ? op->metadata().energy : EnergySpec::porousMedium(2, 1));
      mode.tau = options->tau > 0 ? options->tau : op ? op->metadata().tau : 0.005;
      mode.level = options->level;
      mode.amplitude = options->amplitude;
      const at::Tensor level = at::full(mode.grid.shape(), mode.level > 0 ? mode.level : 0.3, at::kDouble);
      const Stepper solver = stepperFor(mode.grid, mode.energy, mode.tau, level);
      Stepper reference;
      if (options->solver != "reference") {
        auto objective =
            std::make_shared<const JkoObjective>(std::make_shared<const Energy>(mode.energy, mode.grid), mode.tau);
        reference = referenceStepper(std::make_shared<const ReferenceSolver>(objective, options->reference));
      }
      result = evaluateModeDecay(mode, solver, reference, options->solver);
    } else {
      const ReferenceCase c = makeReferenceCase(options->caseName, options->grid, options->dim, options->tau,
                                                options->steps, caseParameters(options->energy, options->caseName));
      std::unique_ptr<ReferenceCheck> check;
      if (options->referenceCheck)
        check = std::make_unique<ReferenceCheck>(
            std::make_shared<const JkoObjective>(std::make_shared<const Energy>(c.energy, c.grid), c.tau),
            options->reference);
      result = evaluateCase(c, stepperFor(c.grid, c.energy, c.tau, c.initial), options->solver, {}, check.get());
    }
    // The resolution check (StepCertificate::spreadMassFraction) and the
    // grid-scale check (StepCertificate::gridScaleDefect) of every frame.
    if (result.contains("certificate") && result["certificate"].is_array()) {
      const nlohmann::json& certificates = result["certificate"];
      const int total = static_cast<int>(certificates.size());
      // The frames whose `key` is above `limit`, and the largest value.
      const auto above = [&](const char* key, double limit, double& largest) {
        std::vector<int> frames;
        largest = 0;
        for (size_t k = 0; k < certificates.size(); ++k) {
          const nlohmann::json& c = certificates[k];
          if (!c.is_object() || !c.contains(key) || !c[key].is_number()) continue;
          largest = std::max(largest, c[key].get<double>());
          if (c[key].get<double>() > limit) frames.push_back(static_cast<int>(k) + 1);
        }
        return frames;
      };
      double spread = 0, defect = 0;
      const std::vector<int> coarse = above("spread_mass_fraction", StepCertificate::kUnderResolvedShare, spread);
      const std::vector<int> detailed = above("grid_scale_defect", StepCertificate::kGridScaleDefectShare, defect);
      result["under_resolved_frames"] = coarse;
      result["grid_scale_frames"] = detailed;
      if (!coarse.empty()) std::cerr << "jko: warning: " << underResolvedWarning(coarse, total, spread) << "\n";
      if (!detailed.empty()) std::cerr << "jko: warning: " << gridScaleWarning(detailed, total, defect) << "\n";
    }
    if (learnedSolver) {
      result["certificate_threshold"] = options->threshold;
      result["refinement"] = tally->toJson();
      // One line on what was refined (auto, refine) or would need to be (learned).
      std::cerr << "jko: " << options->solver << ": "
                << tally->describe(options->threshold, options->solver != "learned") << "\n";
    }
    if (!options->operatorFile.empty()) result["operator"] = options->operatorFile;
    if (op) result["gauss_newton"] = op->gaussNewton();
    result["solver_tolerance"] = {{"objective", options->reference.objectiveTolerance},
                                  {"gradient", options->reference.gradientTolerance},
                                  {"max_iterations", options->reference.maxIterations}};
    result["runtime"] = describeRuntime();
    if (options->json)
      std::cout << result.dump() << std::endl;
    else if (options->caseName == "mode-decay")
      std::cout << result.dump(2) << std::endl;
    else
      printSummary(result);
  });
}

void addCompareCommand(CLI::App& app) {
  auto options = std::make_shared<HeldOutOptions>();
  auto wild = std::make_shared<WildSuiteOptions>();
  auto operatorFile = std::make_shared<std::string>();
  auto suite = std::make_shared<std::string>("held-out");
  auto solverName = std::make_shared<std::string>("learned");
  auto families = std::make_shared<std::vector<std::string>>();
  auto threads = std::make_shared<int>(0);
  auto json = std::make_shared<bool>(false);
  auto energy = std::make_shared<EnergyOptions>();
  auto tau = std::make_shared<double>(0);
  auto gaussNewton = std::make_shared<int>(-1);
  auto furtherNewton = std::make_shared<int>(0);
  CLI::App* compare = app.add_subcommand(
      "compare", "Compare a learned operator with the reference solver from held-out or wild densities");
  compare->add_option("--operator", *operatorFile, "Operator file")->required();
  compare->add_option("--tau", *tau,
                      "Time step of the problem (default: the operator's); with the energy options below, a problem "
                      "the step's symmetries relate to the operator's (e.g. --tau 0.01 --D 0.5 for a porous-medium "
                      "operator of tau 0.005, D 1)");
  energy->addTo(*compare, false);
  compare
      ->add_option("--suite", *suite,
                   "held-out: generated densities of the operator's training kinds; wild: families training never "
                   "sees (photo, terrain, scan, cells, strokes, stripes)")
      ->check(CLI::IsMember({"held-out", "wild"}))
      ->capture_default_str();
  compare
      ->add_option("--solver", *solverName,
                   "learned, linearized (the network-free linearised step) or auto (the learned step, refined by "
                   "the reference solver where its certificate fails; the JSON counts the refined frames)")
      ->check(CLI::IsMember({"learned", "linearized", "auto"}))
      ->capture_default_str();
  compare->add_option("--densities", options->densities, "Held-out densities")->capture_default_str();
  compare->add_option("--densities-per-family", wild->densitiesPerFamily, "Wild suite: densities per family")
      ->capture_default_str();
  compare->add_option("--families", *families, "Wild suite: only these families (comma-separated)")
      ->delimiter(',')
      ->check(CLI::IsMember(wildFamilies()));
  compare->add_option("--steps", options->steps, "Frames per trajectory")->capture_default_str();
  compare->add_option("--grid", options->grid, "Nodes per axis")->capture_default_str();
  compare->add_option("--seed", options->seed, "Seed of the held-out densities")->capture_default_str();
  compare->add_option("--cache", wild->cacheDirectory,
                      "Wild suite: keep the reference trajectories in this folder and reuse them");
  compare->add_option("--gauss-newton", *gaussNewton, kGaussNewtonHelp);
  compare->add_option("--further-newton", *furtherNewton, kFurtherNewtonHelp)->check(CLI::Range(0, 50));
  compare->add_option("--threads", *threads, "LibTorch threads (default: all cores)");
  compare->add_flag("--json", *json, "Print one JSON object (the default output)");
  // The callback owns every value CLI11 writes to: `json` too, though JSON
  // is the only output (a flag whose bool died with this function was a
  // write after free when given).
  compare->callback([options, wild, operatorFile, suite, solverName, families, threads, json, energy, tau, gaussNewton,
                     furtherNewton] {
    static_cast<void>(json);
    configureRuntime(*threads > 0 ? *threads : static_cast<int>(std::thread::hardware_concurrency()));
    const std::shared_ptr<LearnedOperator> op = LearnedOperator::load(*operatorFile);
    if (*gaussNewton >= 0) op->setGaussNewton(*gaussNewton);
    op->setFurtherNewton(*furtherNewton);
    ComparisonProblem problem;
    if (energy->anyGiven()) problem.energy = energy->over(op->metadata().energy);
    problem.tau = *tau;
    options->problem = wild->problem = problem;
    auto tally = std::make_shared<RefinementTally>();
    const SuiteStepper stepper = suiteStepper(op, problem, *solverName, tally, std::max(*gaussNewton, 0));
    nlohmann::json result;
    if (*suite == "wild") {
      wild->grid = options->grid;
      wild->steps = options->steps;
      wild->families = *families;
      result = compareOnWildSuite(*op, stepper, *wild);
    } else {
      result = compareWithReference(*op, *options, {}, stepper);
    }
    const int64_t unconverged = result.value("reference_unconverged_frames", int64_t(0));
    if (unconverged > 0)
      std::cerr << "jko: note: " << unconverged
                << " of the reference solver's steps stopped before its tolerance, at its iteration cap or where "
                   "no step lowered the objective further: the errors of those frames are measured against "
                   "unconverged steps (reference_unconverged_frames; per density for the wild suite)\n";
    result["solver"] = *solverName;
    if (*solverName == "auto") result["refinement"] = tally->toJson();
    result["operator"] = *operatorFile;
    result["gauss_newton"] = *solverName == "linearized" ? std::max(*gaussNewton, 0) : op->gaussNewton();
    result["further_newton"] = op->furtherNewton();
    result["training"] = op->metadata().training;
    std::cout << result.dump() << std::endl;
  });
}

}  // namespace jko::cli
