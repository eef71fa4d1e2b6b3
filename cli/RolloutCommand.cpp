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
#include "runtime/Runtime.h"

namespace jko::cli {
namespace {

struct RolloutOptions {
  std::string caseName, initial, array, out = "frames", prefix = "frame", solver = "reference";
  int64_t grid = 64;
  int dim = 2, steps = 20, threads = 0;
  double tau = 0;
  EnergyOptions energy;
};

}  // namespace

void addRolloutCommand(CLI::App& app) {
  auto o = std::make_shared<RolloutOptions>();
  CLI::App* rollout = app.add_subcommand("rollout", "Compute K JKO steps from an initial density and write the frames");
  rollout->add_option("--solver", o->solver, "Solver: reference")->check(CLI::IsMember({"reference"}));
  auto* caseOption = rollout->add_option("--case", o->caseName, "Start from a reference case's initial density")
                         ->check(CLI::IsMember(referenceCaseNames()));
  auto* initialOption = rollout->add_option("--initial", o->initial, "Initial density file (.vti or .npy)")
                            ->check(CLI::ExistingFile);
  caseOption->excludes(initialOption);
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
    Grid grid;
    at::Tensor rho0;
    EnergySpec energySpec;
    double tau = o->tau > 0 ? o->tau : 0.005;
    if (!o->caseName.empty()) {
      const ReferenceCase c = makeReferenceCase(o->caseName, o->grid, o->dim, o->tau, 1);
      grid = c.grid;
      rho0 = c.initial;
      energySpec = c.energy;
      tau = c.tau;
    } else if (!o->initial.empty()) {
      rho0 = readDensity(o->initial, o->array, grid);
    } else {
      throw InvalidParameter("initial density", "none", "give --case NAME or --initial FILE");
    }
    if (o->energy.given()) energySpec = o->energy.spec();
    else if (o->caseName.empty())
      throw InvalidParameter("--energy", "none", "give an energy preset for a density read from a file");

    auto energy = std::make_shared<const Energy>(energySpec, grid);
    auto objective = std::make_shared<const JkoObjective>(energy, tau);
    const ReferenceSolver solver(objective);
    std::vector<Frame> frames{{0.0, rho0, {}}};
    const auto trajectory = solver.rollout(rho0, o->steps, [&](const ProgressEvent& e) {
      std::cerr << "\r" << e.message << std::flush;
      return true;
    });
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
