// jko eval: runs a reference case of DESIGN.md §5 with a solver and measures
// it against the exact answer.
#include <ATen/core/grad_mode.h>

#include <iomanip>
#include <iostream>
#include <memory>
#include <thread>

#include "Commands.h"
#include "evaluation/HeldOutComparison.h"
#include "evaluation/ReferenceCases.h"
#include "numerics/Errors.h"
#include "numerics/JkoObjective.h"
#include "numerics/ReferenceSolver.h"
#include "operator/LearnedOperator.h"
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
  bool json = false;
  int threads = 0;
  std::string operatorFile;
  int refineIterations = 10;
  ReferenceSolverOptions reference;
};

// The learned operator, or (refine) the learned step followed by a few
// reference-solver iterations started from it.
Stepper learnedStepper(const ReferenceCase& c, const EvalOptions& options, bool refine) {
  auto op = LearnedOperator::load(options.operatorFile);
  for (const std::string& warning : op->checkCompatible(c.grid, &c.energy, c.tau))
    std::cerr << "jko: warning: " << warning << "\n";
  std::shared_ptr<ReferenceSolver> solver;
  if (refine) {
    ReferenceSolverOptions refineOptions = options.reference;
    refineOptions.maxIterations = options.refineIterations;
    solver = std::make_shared<ReferenceSolver>(op->objectiveOn(c.grid), refineOptions);
  }
  const Grid grid = c.grid;
  return [op, solver, grid](const at::Tensor& rho, const StepOutput&) {
    const LearnedStep step = op->step(rho, grid);
    StepOutput out;
    out.next = step.next;
    out.displacement = step.velocity * op->metadata().tau;
    if (solver) {
      const ReferenceStep refined = solver->step(rho, out.displacement);
      out.next = refined.next;
      out.displacement = refined.displacement;
      out.objective = refined.objective;
      out.iterations = refined.iterations;
    } else {
      at::NoGradGuard noGrad;
      const auto objective = op->objectiveOn(grid);
      const JkoTerms terms = objective->evaluate(objective->prepare(rho), out.displacement.unsqueeze(0));
      out.objective = terms.objective.item<double>();
      out.energy = terms.energy.item<double>();
      out.transport = terms.transport.item<double>();
    }
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
  eval->add_option("--case", options->caseName, "Reference case")
      ->required()
      ->check(CLI::IsMember(referenceCaseNames()));
  eval->add_option("--solver", options->solver,
                   "Solver: reference, learned, or refine (learned + a few reference iterations)")
      ->check(CLI::IsMember({"reference", "learned", "refine"}));
  eval->add_option("--operator", options->operatorFile, "Operator file (learned, refine)");
  eval->add_option("--refine-iterations", options->refineIterations,
                   "L-BFGS iterations after the learned step (refine)")
      ->capture_default_str();
  eval->add_option("--grid", options->grid, "Nodes per axis")->capture_default_str();
  eval->add_option("--dim", options->dim, "Dimension, 2 or 3")->check(CLI::IsMember({2, 3}))->capture_default_str();
  eval->add_option("--tau", options->tau, "Time step (default: the case's own)");
  eval->add_option("--steps", options->steps, "Number of JKO steps (default: the case's own)");
  eval->add_flag("--json", options->json, "Print one JSON object");
  eval->add_option("--threads", options->threads, "LibTorch threads (default: all cores)");
  eval->add_option("--objective-tol", options->reference.objectiveTolerance,
                   "Reference solver: relative objective decrease over the last iterations")
      ->capture_default_str();
  eval->add_option("--gradient-tol", options->reference.gradientTolerance,
                   "Reference solver: squared metric gradient norm relative to the step's decrease")
      ->capture_default_str();
  eval->add_option("--max-iterations", options->reference.maxIterations, "Reference solver: L-BFGS iterations cap")
      ->capture_default_str();
  eval->callback([options] {
    configureRuntime(options->threads > 0 ? options->threads : static_cast<int>(std::thread::hardware_concurrency()));
    const ReferenceCase c =
        makeReferenceCase(options->caseName, options->grid, options->dim, options->tau, options->steps);
    if (options->solver != "reference" && options->operatorFile.empty())
      throw InvalidParameter("--operator", "none", "the " + options->solver + " solver needs an operator file");
    const Stepper stepper =
        options->solver == "reference"
            ? referenceStepper(std::make_shared<const ReferenceSolver>(
                  std::make_shared<const JkoObjective>(std::make_shared<const Energy>(c.energy, c.grid), c.tau),
                  options->reference))
            : learnedStepper(c, *options, options->solver == "refine");
    nlohmann::json result = evaluateCase(c, stepper, options->solver);
    if (!options->operatorFile.empty()) result["operator"] = options->operatorFile;
    result["solver_tolerance"] = {{"objective", options->reference.objectiveTolerance},
                                  {"gradient", options->reference.gradientTolerance},
                                  {"max_iterations", options->reference.maxIterations}};
    result["runtime"] = describeRuntime();
    if (options->json)
      std::cout << result.dump() << std::endl;
    else
      printSummary(result);
  });
}

void addCompareCommand(CLI::App& app) {
  auto options = std::make_shared<HeldOutOptions>();
  auto operatorFile = std::make_shared<std::string>();
  auto threads = std::make_shared<int>(0);
  CLI::App* compare = app.add_subcommand(
      "compare", "Compare a learned operator with the reference solver from held-out random densities");
  compare->add_option("--operator", *operatorFile, "Operator file")->required();
  compare->add_option("--densities", options->densities, "Held-out densities")->capture_default_str();
  compare->add_option("--steps", options->steps, "Frames per trajectory")->capture_default_str();
  compare->add_option("--grid", options->grid, "Nodes per axis")->capture_default_str();
  compare->add_option("--seed", options->seed, "Seed of the held-out densities")->capture_default_str();
  compare->add_option("--threads", *threads, "LibTorch threads (default: all cores)");
  compare->callback([options, operatorFile, threads] {
    configureRuntime(*threads > 0 ? *threads : static_cast<int>(std::thread::hardware_concurrency()));
    const auto op = LearnedOperator::load(*operatorFile);
    nlohmann::json result = compareWithReference(*op, *options);
    result["operator"] = *operatorFile;
    result["training"] = op->metadata().training;
    std::cout << result.dump() << std::endl;
  });
}

}  // namespace jko::cli
