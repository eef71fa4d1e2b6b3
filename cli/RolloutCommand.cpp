// jko rollout: K JKO steps from an initial density, written as frames.
#include <iostream>
#include <memory>
#include <thread>

#include "Commands.h"
#include "EnergyOptions.h"
#include "FrameFiles.h"
#include "evaluation/ReferenceCases.h"
#include "numerics/JkoObjective.h"
#include "numerics/ReferenceSolver.h"
#include "operator/DensityGenerator.h"
#include "operator/LearnedOperator.h"
#include "runtime/Runtime.h"

namespace jko::cli {
namespace {

struct RolloutOptions {
  std::string caseName, initial, array, out = "frames", prefix = "frame", solver, operatorFile, generate;
  uint64_t seed = 1;
  int64_t grid = 64;
  int dim = 2, steps = 20, threads = 0;
  double tau = 0;
  EnergyOptions energy;
};

}  // namespace

void addRolloutCommand(CLI::App& app) {
  auto o = std::make_shared<RolloutOptions>();
  CLI::App* rollout = app.add_subcommand("rollout", "Compute K JKO steps from an initial density and write the frames");
  rollout->add_option("--solver", o->solver, "Solver: reference or learned (default: learned with --operator)")
      ->check(CLI::IsMember({"reference", "learned"}));
  rollout->add_option("--operator", o->operatorFile, "Learned operator file (.jko or TorchScript .pt)");
  auto* generateOption = rollout->add_option("--generate", o->generate, "Start from a generated density of this kind")
                             ->check(CLI::IsMember(DensityGenerator::kindNames()));
  rollout->add_option("--seed", o->seed, "Seed of --generate")->capture_default_str();
  auto* caseOption = rollout->add_option("--case", o->caseName, "Start from a reference case's initial density")
                         ->check(CLI::IsMember(referenceCaseNames()));
  auto* initialOption =
      rollout->add_option("--initial", o->initial, "Initial density file (.vti or .npy)")->check(CLI::ExistingFile);
  caseOption->excludes(initialOption);
  generateOption->excludes(caseOption)->excludes(initialOption);
  rollout->add_option("--array", o->array, "Point-data array of --initial (default: active scalars)");
  rollout->add_option("--grid", o->grid, "Nodes per axis (--case)")->capture_default_str();
  rollout->add_option("--dim", o->dim, "Dimension (--case)")->check(CLI::IsMember({2, 3}))->capture_default_str();
  rollout->add_option("--steps", o->steps, "Number of JKO steps K")->check(CLI::PositiveNumber)->capture_default_str();
  rollout->add_option("--tau", o->tau, "Time step (default: the case's, else 0.005)");
  rollout->add_option("--out", o->out, "Output folder")->capture_default_str();
  rollout->add_option("--prefix", o->prefix, "File name prefix")->capture_default_str();
  rollout->add_option("--threads", o->threads, "LibTorch threads (default: all cores)");
  o->energy.addTo(*rollout, false);
  rollout->callback([o] {
    configureRuntime(o->threads > 0 ? o->threads : static_cast<int>(std::thread::hardware_concurrency()));
    const std::string solverName = !o->solver.empty() ? o->solver : o->operatorFile.empty() ? "reference" : "learned";
    std::shared_ptr<LearnedOperator> op;
    if (solverName == "learned") {
      if (o->operatorFile.empty())
        throw InvalidParameter("--operator", "none", "the learned solver needs an operator file");
      op = LearnedOperator::load(o->operatorFile);
    }
    Grid grid;
    at::Tensor rho0;
    EnergySpec energySpec;
    double tau = o->tau > 0 ? o->tau : op ? op->metadata().tau : 0.005;
    if (!o->generate.empty()) {
      const int dim = op ? op->metadata().dim : o->dim;
      grid = Grid::unitBox(dim, o->grid);
      DensityRanges ranges;
      if (op) {
        ranges.peakMin = op->metadata().ranges.peakMin;
        ranges.peakMax = op->metadata().ranges.peakMax;
      }
      if (!(ranges.peakMax > 0)) ranges.peakMin = ranges.peakMax = 0;
      rho0 = DensityGenerator(grid, ranges, o->seed).next(o->generate);
      if (op) energySpec = op->metadata().energy;
    } else if (!o->caseName.empty()) {
      const ReferenceCase c = makeReferenceCase(o->caseName, o->grid, o->dim, o->tau, 1);
      grid = c.grid;
      rho0 = c.initial;
      energySpec = c.energy;
      tau = c.tau;
    } else if (!o->initial.empty()) {
      rho0 = readDensity(o->initial, o->array, grid);
    } else {
      throw InvalidParameter("initial density", "none", "give --case NAME, --initial FILE or --generate KIND");
    }
    if (o->energy.given())
      energySpec = o->energy.spec();
    else if (op)
      energySpec = op->metadata().energy;
    else if (o->caseName.empty())
      throw InvalidParameter("--energy", "none", "give an energy preset for a density read from a file");
    std::vector<Frame> frames{{0.0, rho0, {}}};
    auto printProgress = [](const ProgressEvent& e) {
      std::cerr << "\r" << e.message << "        " << std::flush;
      return true;
    };
    if (op) {
      for (const std::string& warning : op->checkCompatible(grid, &energySpec, tau))
        std::cerr << "jko: warning: " << warning << "\n";
      const auto steps = op->rollout(rho0, grid, o->steps, printProgress);
      std::cerr << "\n";
      for (size_t k = 0; k < steps.size(); ++k) {
        frames[k].velocity = steps[k].velocity;  // velocity leaving frame k
        frames.push_back({(k + 1) * tau, steps[k].next, steps[k].velocity});
      }
      const std::string pvd = writeFrames(o->out, o->prefix, grid, frames);
      std::cout << "wrote " << frames.size() << " frames of the learned operator (" << energySpec.describe()
                << ") on a " << grid.describe() << " to " << pvd << "\n";
      return;
    }

    auto energy = std::make_shared<const Energy>(energySpec, grid);
    auto objective = std::make_shared<const JkoObjective>(energy, tau);
    const ReferenceSolver solver(objective);
    const auto trajectory = solver.rollout(rho0, o->steps, printProgress);
    std::cerr << "\n";
    for (size_t k = 0; k < trajectory.size(); ++k) {
      frames[k].velocity = trajectory[k].displacement / tau;  // velocity leaving frame k
      frames.push_back({(k + 1) * tau, trajectory[k].next, trajectory[k].displacement / tau});
    }
    const std::string pvd = writeFrames(o->out, o->prefix, grid, frames);
    std::cout << "wrote " << frames.size() << " frames of " << energySpec.describe() << " on a " << grid.describe()
              << " to " << pvd << "\n";
  });
}

}  // namespace jko::cli
