// jko rollout: K JKO steps from an initial density, written as frames, with
// the statistics of the run (mass drift, NaN check, energy decay, folding of
// the maps, resident memory, distance to the known limit) as JSON.
#include <ATen/core/grad_mode.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "Commands.h"
#include "EnergyOptions.h"
#include "FrameFiles.h"
#include "SplitRollout.h"
#include "evaluation/ReferenceCases.h"
#include "evaluation/ReferenceCheck.h"
#include "evaluation/WildDensities.h"
#include "numerics/JkoObjective.h"
#include "numerics/LinearizedStep.h"
#include "numerics/ReferenceSolver.h"
#include "numerics/StepCertificate.h"
#include "operator/AutoSolver.h"
#include "operator/DensityGenerator.h"
#include "operator/LearnedOperator.h"
#include "operator/TrainingRangeCheck.h"
#include "parallel/MpiCommunicator.h"
#include "runtime/JsonNumber.h"
#include "runtime/Runtime.h"

namespace jko::cli {
namespace {

namespace fs = std::filesystem;
constexpr double kPi = 3.14159265358979323846;

struct RolloutOptions {
  std::string caseName, initial, array, out = "frames", prefix = "frame", solver, operatorFile, generate;
  uint64_t seed = 1;
  int64_t grid = 64;
  int dim = 2, steps = 20, threads = 0, writeEvery = 1, refineIterations = 10;
  int maxIterations = ReferenceSolverOptions().maxIterations;  ///< --max-iterations: the reference solver's cap
  int gaussNewton = -1;   ///< --gauss-newton; -1: the operator file's (learned), 0 (linearized)
  int furtherNewton = 0;  ///< --further-newton
  double tau = 0, threshold = AutoSolverOptions().threshold, mass = 0, peak = 0;
  LinearizedStepOptions linearized;
  bool json = false, referenceCheck = false, completeGridScale = false;
  EnergyOptions energy;
};

// Resident memory now, from /proc/self/statm (NaN where there is none).
double residentMegabytes() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  if (!(statm >> pages >> resident)) return std::nan("");
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

// The process's peak resident memory so far (ru_maxrss is in KiB on Linux).
double peakResidentMegabytes() {
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return std::nan("");
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

double relativeL1Distance(const at::Tensor& a, const at::Tensor& b) {
  return ((a - b).abs().sum() / b.abs().sum()).item<double>();
}

// The state the flow tends to in the closed box, where it is known: the
// energy's equilibrium (uniform for the porous medium and the heat
// equation, Gibbs M exp(-V/D)/Z for Fokker-Planck), or for the 2D
// aggregation kernel W = a|z|^2/2 - c log|z| the uniform disk of density
// a M / (pi c) and radius sqrt(c / a) around the (conserved) centre of mass
// (DESIGN.md §5 case 4), as cell fractions inside the disk.
struct Limit {
  std::string kind = "none";
  at::Tensor density;
};

Limit knownLimit(const Energy& energy, const at::Tensor& rho0) {
  const EnergySpec& s = energy.spec();
  const Grid& grid = energy.grid();
  const double mass = rho0.sum().item<double>() * grid.cellVolume();
  Limit limit;
  limit.density = energy.equilibrium(mass);
  if (limit.density.defined()) {
    limit.kind = s.potential == PotentialKind::None    ? "uniform"
                 : s.internal == InternalKind::Entropy ? "gibbs"
                                                       : "porous-medium equilibrium";
    return limit;
  }
  if (grid.dim == 2 && s.kernel == KernelKind::AttractiveRepulsive && s.internal == InternalKind::None &&
      s.potential == PotentialKind::None && s.attractivePower == 2 && s.repulsivePower == 0 && s.attraction > 0 &&
      s.repulsion > 0) {
    std::array<double, 2> centre{};
    for (int a = 0; a < 2; ++a)
      centre[a] = (grid.coordinate(a) * rho0).sum().item<double>() / rho0.sum().item<double>();
    const double radius = std::sqrt(s.repulsion / s.attraction);
    const int sub = 8;  // sub-samples per cell and axis
    at::Tensor inside = at::zeros(grid.shape(), at::kDouble);
    for (int i = 0; i < sub; ++i)
      for (int j = 0; j < sub; ++j) {
        const at::Tensor x = grid.coordinate(0) + ((i + 0.5) / sub - 0.5) * grid.spacing[0] - centre[0];
        const at::Tensor y = grid.coordinate(1) + ((j + 0.5) / sub - 0.5) * grid.spacing[1] - centre[1];
        inside = inside + (x * x + y * y <= radius * radius).to(at::kDouble);
      }
    inside = inside / (sub * sub) * (s.attraction * mass / (kPi * s.repulsion));
    if (inside.sum().item<double>() > 0) {
      limit.kind = "disk";
      limit.density = inside * (mass / (inside.sum().item<double>() * grid.cellVolume()));
    }
  }
  return limit;
}

}  // namespace

void addRolloutCommand(CLI::App& app) {
  auto o = std::make_shared<RolloutOptions>();
  CLI::App* rollout = app.add_subcommand("rollout", "Compute K JKO steps from an initial density and write the frames");
  rollout
      ->add_option("--solver", o->solver,
                   "Solver: reference, learned, refine (learned + a few reference iterations), auto (learned, "
                   "refined by the reference solver where its certificate fails) or linearized (the network-free "
                   "linearised implicit step) (default: learned with --operator)")
      ->check(CLI::IsMember({"reference", "learned", "refine", "auto", "linearized"}));
  rollout->add_option("--operator", o->operatorFile, "Learned operator file (.jko or TorchScript .pt)");
  rollout
      ->add_option("--threshold", o->threshold,
                   "Certificate threshold: the largest estimated relative L1 distance of a frame to its step's "
                   "minimiser (auto refines above it; learned reports the frames above it)")
      ->capture_default_str();
  rollout->add_option("--refine-iterations", o->refineIterations, "L-BFGS iterations after the learned step (refine)")
      ->capture_default_str();
  std::vector<std::string> kinds = DensityGenerator::kindNames();
  for (const std::string& family : wildFamilies()) kinds.push_back("wild:" + family);
  auto* generateOption =
      rollout
          ->add_option("--generate", o->generate,
                       "Start from a generated density of this kind (wild:FAMILY: a family of the wild suite)")
          ->check(CLI::IsMember(kinds));
  rollout->add_option("--seed", o->seed, "Seed of --generate")->capture_default_str();
  rollout->add_option("--gauss-newton", o->gaussNewton, kGaussNewtonHelp);
  rollout->add_option("--further-newton", o->furtherNewton, kFurtherNewtonHelp)->check(CLI::Range(0, 50));
  rollout
      ->add_option("--linearized-iterations", o->linearized.iterations, "Linearized solver: preconditioned iterations")
      ->capture_default_str();
  auto* massOption = rollout->add_option("--mass", o->mass, "Rescale the initial density to this mass");
  rollout->add_option("--peak", o->peak, "Rescale the initial density to this peak value")->excludes(massOption);
  auto* caseOption = rollout->add_option("--case", o->caseName, "Start from a reference case's initial density")
                         ->check(CLI::IsMember(referenceCaseNames()));
  auto* initialOption = rollout->add_option("--initial", o->initial, "Initial density file (.vti, .pvti or .npy)")
                            ->check(CLI::ExistingFile);
  caseOption->excludes(initialOption);
  generateOption->excludes(caseOption)->excludes(initialOption);
  rollout->add_option("--array", o->array, "Point-data array of --initial (default: active scalars)");
  rollout->add_option("--grid", o->grid, "Nodes per axis (--case, --generate)")->capture_default_str();
  rollout->add_option("--dim", o->dim, "Dimension (--case)")->check(CLI::IsMember({2, 3}))->capture_default_str();
  rollout->add_option("--steps,--frames", o->steps, "Number of JKO steps K")->check(atLeast(1))->capture_default_str();
  rollout->add_option("--tau", o->tau, "Time step (default: the case's, else 0.005)");
  rollout->add_option("--out", o->out, "Output folder")->capture_default_str();
  rollout->add_option("--prefix", o->prefix, "File name prefix")->capture_default_str();
  rollout
      ->add_option("--write-every", o->writeEvery,
                   "Write every N-th frame (and the last); 0: write no frames, only the statistics")
      ->check(atLeast(0))
      ->capture_default_str();
  rollout->add_flag("--json", o->json,
                    "Print the run's statistics as one JSON object: mass drift, NaN check, energy per frame, "
                    "folded maps, resident memory at frame 50 and at the end, distance to the known limit");
  rollout
      ->add_option("--max-iterations", o->maxIterations,
                   "Reference solver: L-BFGS iterations of one step at most (a step stopped there before the "
                   "solver's tolerance is reported, with its certificate)")
      ->check(atLeast(1))
      ->capture_default_str();
  rollout->add_flag("--complete-grid-scale", o->completeGridScale,
                    "Complete each step at the grid scale, so that detail at the pixel scale decays as in the exact "
                    "step (the map-form step alone leaves a pixel checkerboard as it is; docs/design.md, "
                    "\"Grid-scale modes\"): the reference solver within its step, every other solver after its "
                    "step");
  rollout->add_flag("--reference-check", o->referenceCheck,
                    "Also take the reference solver's step from each frame's input and report the frame's error "
                    "against it (reference_rel_l1, reference_ms, reference_objective; step_ms is the step alone)");
  rollout->add_option("--threads", o->threads,
                      "LibTorch threads (default: all cores; under mpirun, the cores over the ranks on each machine)");
  o->energy.addTo(*rollout, false);
  rollout->callback([o] {
    // By default the ranks on this machine share its cores.
    configureRuntime(o->threads > 0
                         ? o->threads
                         : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / ranksOnThisMachine()));
    const std::string solverName = !o->solver.empty() ? o->solver : o->operatorFile.empty() ? "reference" : "learned";
    std::shared_ptr<LearnedOperator> op;
    if (solverName == "learned" || solverName == "refine" || solverName == "auto") {
      if (o->operatorFile.empty())
        throw InvalidParameter("--operator", "none", "the learned solver needs an operator file");
      op = LearnedOperator::load(o->operatorFile);
      if (o->gaussNewton >= 0) op->setGaussNewton(o->gaussNewton);
      op->setFurtherNewton(o->furtherNewton);
    }
    if (o->gaussNewton >= 0) o->linearized.corrections = o->gaussNewton;
    Grid grid;
    at::Tensor rho0;
    std::shared_ptr<const DensityFile> densityFile;
    const bool split = mpiInitialized() && mpiWorldCommunicator()->size() > 1;
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
      if (o->generate.rfind("wild:", 0) == 0)
        rho0 = wildDensity(grid, o->generate.substr(5), o->seed);
      else
        rho0 = DensityGenerator(grid, ranges, o->seed).next(o->generate);
      if (op) energySpec = op->metadata().energy;
    } else if (!o->caseName.empty()) {
      const ReferenceCase c = makeReferenceCase(o->caseName, o->grid, o->dim, o->tau, 1);
      grid = c.grid;
      rho0 = c.initial;
      energySpec = c.energy;
      tau = c.tau;
    } else if (!o->initial.empty()) {
      // Under mpirun each rank reads its planes alone (in the split rollout).
      densityFile = std::make_shared<const DensityFile>(o->initial, o->array);
      grid = densityFile->grid();
      if (!split) rho0 = densityFile->read();
    } else {
      throw InvalidParameter("initial density", "none", "give --case NAME, --initial FILE or --generate KIND");
    }
    // --energy, else the operator's energy (else the case's), with every
    // parameter given on the command line applied (--D alone changes D).
    if (!o->energy.given() && !op && o->caseName.empty())
      throw InvalidParameter("--energy", "none", "give an energy preset for a density read from a file");
    energySpec = o->energy.over(op ? op->metadata().energy : energySpec);

    // Under mpirun with several ranks: every solver's steps split over them by slabs (every rank ran the
    // lines above alike; the split rollout checks and rescales the density
    // over the ranks).
    if (split) {
      if (o->referenceCheck)
        throw InvalidParameter("--reference-check", "on", "the reference solver is what runs split over ranks");
      SplitRolloutRequest request;
      request.grid = grid;
      request.initial = rho0;
      request.file = densityFile;
      request.mass = o->mass;
      request.peak = o->peak;
      request.energy = energySpec;
      request.solver = solverName;
      request.linearized = o->linearized;
      request.learned = op;
      request.threshold = o->threshold;
      request.refineIterations = o->refineIterations;
      request.tau = tau;
      request.steps = o->steps;
      request.maxIterations = o->maxIterations;
      request.completeGridScale = o->completeGridScale;
      request.writeEvery = o->writeEvery;
      request.out = o->out;
      request.prefix = o->prefix;
      request.json = o->json;
      rho0 = at::Tensor();
      runSplitRollout(std::move(request), mpiWorldCommunicator());
      return;
    }
    rho0 = rho0.to(at::kDouble).contiguous();
    validateDensity(rho0.unsqueeze(0), grid);
    if (o->mass > 0) rho0 = rho0 * (o->mass / (rho0.sum().item<double>() * grid.cellVolume()));
    if (o->peak > 0) rho0 = rho0 * (o->peak / rho0.max().item<double>());

    // One step at a time, frames written (or dropped) as they come, so that
    // memory stays flat however long the run. Every step is certified; the
    // step is handed E(rho), which the loop computed for the previous frame.
    std::function<CertifiedStep(const at::Tensor&, double)> step;
    std::shared_ptr<const JkoObjective> objective;
    // The reference solver's iterations per step, and the steps (frame
    // numbers) that stopped before its tolerance.
    struct ReferenceRun {
      std::vector<int> iterations, stopped;
      ReferenceStep last;  ///< the latest step, which the solver completed where asked
      double largestCertificate = 0;
    };
    std::shared_ptr<ReferenceRun> referenceRun;
    std::vector<std::string> warnings;
    auto warn = [&](const std::string& message) {
      std::cerr << "jko: warning: " << message << "\n";
      warnings.push_back(message);
    };
    std::unique_ptr<TrainingRangeWatch> rangeWatch;
    if (op) {
      // The learned and refine solvers run the operator's own problem or one
      // the step's symmetries relate to it (anything else is refused); Auto
      // uses the operator as a first guess and only warns.
      const bool automatic = solverName == "auto";
      const LearnedOperator::Use use = op->checkUse(grid, energySpec, tau, rho0, automatic);
      for (const std::string& note : use.notes) std::cerr << "jko: " << note << "\n";
      for (const std::string& warning : use.warnings) warn(warning);
      rangeWatch = std::make_unique<TrainingRangeWatch>(op->metadata(), grid, use.symmetry);
      rangeWatch->check(rho0, 0);  // reported above
      objective = std::make_shared<const JkoObjective>(std::make_shared<const Energy>(energySpec, grid), tau);
      AutoSolverOptions autoOptions;
      autoOptions.threshold = o->threshold;
      ReferenceSolverOptions refineOptions;
      refineOptions.maxIterations = o->refineIterations;
      auto solver = std::make_shared<const OperatorSolver>(op, objective, OperatorSolver::modeFromString(solverName),
                                                           autoOptions, refineOptions);
      step = [solver](const at::Tensor& rho, double energy) { return solver->step(rho, {}, energy); };
    } else if (solverName == "linearized") {
      objective = std::make_shared<const JkoObjective>(std::make_shared<const Energy>(energySpec, grid), tau);
      auto solver = std::make_shared<const LinearizedStep>(objective, o->linearized);
      auto certifier = std::make_shared<const StepCertifier>(objective);
      step = [solver, certifier](const at::Tensor& rho, double energy) {
        CertifiedStep s;
        std::tie(s.next, s.displacement) = solver->step(rho);
        s.certificate = certifier->certify(rho, s.displacement, energy);
        return s;
      };
    } else {
      objective = std::make_shared<const JkoObjective>(std::make_shared<const Energy>(energySpec, grid), tau);
      ReferenceSolverOptions referenceOptions;
      referenceOptions.maxIterations = o->maxIterations;
      referenceOptions.completeGridScale = o->completeGridScale;
      auto solver = std::make_shared<const ReferenceSolver>(objective, referenceOptions);
      auto certifier = std::make_shared<const StepCertifier>(objective);
      auto warm = std::make_shared<at::Tensor>();
      referenceRun = std::make_shared<ReferenceRun>();
      step = [solver, certifier, warm, run = referenceRun](const at::Tensor& rho, double energy) {
        const ReferenceStep r = solver->step(rho, *warm);
        *warm = r.displacement;
        CertifiedStep s;
        s.next = r.next;
        s.displacement = r.displacement;
        s.certificate = certifier->certify(rho, r.displacement, energy);  // the reference solver's own final measure
        run->iterations.push_back(r.iterations);
        run->last = r;
        if (!r.converged) {
          run->stopped.push_back(static_cast<int>(run->iterations.size()));
          if (std::isfinite(s.certificate.l1ErrorEstimate))
            run->largestCertificate = std::max(run->largestCertificate, s.certificate.l1ErrorEstimate);
        }
        return s;
      };
    }
    const StepCertifier frameCertifier(objective);  // each frame's grid-scale check
    RefinementTally tally;
    nlohmann::json certificates = nlohmann::json::array(), learnedCertificates = nlohmann::json::array();
    std::vector<bool> refinedFrames;
    std::vector<int> refineIterations;
    std::vector<std::string> refineReasons;
    std::vector<double> stepMs, referenceErrors, referenceMs, referenceObjectives;
    std::unique_ptr<ReferenceCheck> check;
    if (o->referenceCheck) check = std::make_unique<ReferenceCheck>(objective);
    const Energy& energy = objective->energy();
    const PushForward& push = objective->pushForward();
    auto energyOf = [&](const at::Tensor& rho) { return energy(rho.unsqueeze(0)).item<double>(); };

    std::unique_ptr<FrameSeries> series;
    if (o->writeEvery > 0) series = std::make_unique<FrameSeries>(o->out, o->prefix, grid);
    const int K = o->steps;
    const int earlyFrame = std::min(50, K);  // where resident memory is first sampled
    const double mass0 = rho0.sum().item<double>() * grid.cellVolume();
    const Limit limit = knownLimit(energy, rho0);

    std::vector<double> energies{energyOf(rho0)};
    double massDrift = 0, minimum = rho0.min().item<double>(), lastChange = std::nan("");
    double foldedNodesMax = 0, foldedMassMax = 0, foldedMassSum = 0;
    std::vector<int> underResolved;  // frames failing the certificate's resolution check
    double spreadMax = 0;
    // Frames that keep detail at the grid scale (not completed), and the
    // grid-scale completion's iterations per step (0: not completed).
    std::vector<int> gridScaleFrames, completionIterations;
    double defectMax = 0;
    double rssEarly = std::nan(""), rssFinal = std::nan(""), limitEarly = std::nan(""), limitFinal = std::nan("");
    double rssPeak = residentMegabytes();
    bool finite = true;
    std::string failure;
    int done = 0;
    at::Tensor rho = rho0, lastDisplacement;
    const auto start = std::chrono::steady_clock::now();
    try {
      for (int k = 0; k < K; ++k) {
        const auto stepStart = std::chrono::steady_clock::now();
        CertifiedStep certified = step(rho, energies.back());
        // The frame as it is shown: completed at the grid scale where asked
        // (the reference solver completes its own), else checked.
        const FinishedFrame shown =
            referenceRun ? finishFrame(frameCertifier, referenceRun->last)
                         : finishFrame(frameCertifier, rho, certified.next, energies.back(), o->completeGridScale);
        certified.next = shown.density;
        certified.certificate.gridScaleDefect = shown.gridScaleDefect;
        if (o->completeGridScale) completionIterations.push_back(shown.completionIterations);
        stepMs.push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - stepStart).count());
        if (check) {
          const ReferenceCheck::Result r = check->check(rho, certified.next);
          referenceErrors.push_back(r.relativeL1);
          referenceMs.push_back(r.milliseconds);
          referenceObjectives.push_back(r.objective);
        }
        const at::Tensor &next = certified.next, &displacement = certified.displacement;
        at::NoGradGuard noGrad;
        tally.add(certified);
        if (certified.certificate.underResolved()) underResolved.push_back(k + 1);
        if (std::isfinite(certified.certificate.spreadMassFraction))
          spreadMax = std::max(spreadMax, certified.certificate.spreadMassFraction);
        if (shown.keepsGridScaleDetail()) {
          gridScaleFrames.push_back(k + 1);
          defectMax = std::max(defectMax, certified.certificate.gridScaleDefect);
        }
        certificates.push_back(certified.certificate.toJson());
        learnedCertificates.push_back(certified.refined ? certified.learned.toJson() : nlohmann::json());
        refinedFrames.push_back(certified.refined);
        refineIterations.push_back(certified.iterations);
        refineReasons.push_back(toString(certified.reason));
        if (rangeWatch)
          for (const RangeWarning& w : rangeWatch->check(next, k + 1)) warn(w.message);
        if (series && k % o->writeEvery == 0) series->add(k, {k * tau, rho, displacement / tau});
        // Statistics of frame k + 1 and of the map that made it.
        finite = finite && at::isfinite(next).all().item<bool>();
        massDrift = std::max(massDrift, std::abs(next.sum().item<double>() * grid.cellVolume() - mass0) / mass0);
        minimum = std::min(minimum, next.min().item<double>());
        energies.push_back(energyOf(next));
        lastChange = relativeL1Distance(next, rho);
        const PushForward::Folding fold = push.folding(rho.unsqueeze(0), displacement.unsqueeze(0));
        foldedNodesMax = std::max(foldedNodesMax, fold.nodeFraction.item<double>());
        foldedMassMax = std::max(foldedMassMax, fold.massFraction.item<double>());
        foldedMassSum += fold.massFraction.item<double>();
        rho = next;
        lastDisplacement = displacement;
        done = k + 1;
        rssPeak = std::max(rssPeak, residentMegabytes());  // one small read of /proc per frame
        if (done == earlyFrame) {
          rssEarly = residentMegabytes();
          if (limit.density.defined()) limitEarly = relativeL1Distance(rho, limit.density);
        }
        if (!o->json) std::cerr << "\rstep " << done << " of " << K << "        " << std::flush;
      }
    } catch (const Error& e) {
      failure = e.what();
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!o->json) std::cerr << "\n";
    if (!underResolved.empty()) warn(underResolvedWarning(underResolved, done, spreadMax));
    if (!gridScaleFrames.empty()) warn(gridScaleWarning(gridScaleFrames, done, defectMax));
    if (referenceRun && !referenceRun->stopped.empty())
      warn(cappedReferenceWarning(referenceRun->stopped, done, o->maxIterations, referenceRun->largestCertificate));
    rssFinal = residentMegabytes();
    if (limit.density.defined()) limitFinal = relativeL1Distance(rho, limit.density);
    if (series && lastDisplacement.defined()) series->add(done, {done * tau, rho, lastDisplacement / tau});
    const std::string pvd = series ? series->finish() : "";

    double increaseMax = -std::numeric_limits<double>::infinity();
    for (size_t k = 1; k < energies.size(); ++k) increaseMax = std::max(increaseMax, energies[k] - energies[k - 1]);
    const double decrease = energies.front() - energies.back();
    const double lowest = *std::min_element(energies.begin(), energies.end());
    nlohmann::json result = {
        {"solver", solverName},
        {"energy", energySpec.describe()},
        {"grid", std::vector<int64_t>(grid.n.begin(), grid.n.begin() + grid.dim)},
        {"tau", tau},
        {"steps", K},
        {"steps_done", done},
        {"seconds", seconds},
        {"ms_per_step", done ? 1000 * seconds / done : 0.0},
        {"finite", finite && failure.empty()},
        {"min_density", minimum},
        {"mass_initial", mass0},
        {"mass_drift_max", massDrift},
        {"energy_per_frame", energies},
        {"energy_initial", energies.front()},
        {"energy_final", energies.back()},
        // Largest rise of E between consecutive frames (<= 0: monotone), and
        // the same relative to the run's total decrease E_0 - E_K.
        {"energy_increase_max", finiteOrNull(increaseMax)},
        {"energy_increase_max_relative", decrease > 0 ? finiteOrNull(increaseMax / decrease) : nlohmann::json()},
        // E_K above the lowest energy of the run, relative to E_0 - min E:
        // slow creeps up that no single step shows.
        {"energy_rise_after_minimum_relative",
         energies.front() > lowest ? finiteOrNull((energies.back() - lowest) / (energies.front() - lowest))
                                   : nlohmann::json()},
        // sum |rho_K - rho_{K-1}| / sum rho_{K-1}: how stationary the end state is.
        {"l1_change_final", finiteOrNull(lastChange)},
        {"folded_node_fraction_max", foldedNodesMax},
        {"folded_mass_fraction_max", foldedMassMax},
        {"folded_mass_fraction_mean", done ? foldedMassSum / done : 0.0},
        {"spread_mass_fraction_max", spreadMax},
        {"under_resolved_frames", underResolved},
        // Frames whose certificate's grid_scale_defect is above
        // StepCertificate::kGridScaleDefectShare and that were not completed.
        {"grid_scale_frames", gridScaleFrames},
        {"rss_frame", earlyFrame},
        {"rss_mb_at_frame", finiteOrNull(rssEarly)},
        {"rss_mb_final", finiteOrNull(rssFinal)},
        {"rss_growth_mb", finiteOrNull(rssFinal - rssEarly)},
        // The kernel's high-water mark lags behind /proc/self/statm: the larger of the two.
        {"peak_rss_mb", finiteOrNull(std::max(peakResidentMegabytes(), rssPeak))},
        {"limit", limit.kind},
        {"limit_rel_l1_at_frame", finiteOrNull(limitEarly)},
        {"limit_rel_l1_final", finiteOrNull(limitFinal)},
        {"frames_written", series ? series->count() : 0},
        {"pvd", pvd}};
    result["certificate"] = certificates;
    result["refined"] = refinedFrames;
    result["refine_iterations"] = refineIterations;
    result["refine_reason"] = refineReasons;
    result["warnings"] = warnings;
    result["step_ms"] = stepMs;
    if (o->completeGridScale) result["grid_scale_completion_iterations"] = completionIterations;
    if (referenceRun) {
      result["iterations"] = referenceRun->iterations;
      result["unconverged_frames"] = referenceRun->stopped;
    }
    if (check) {
      result["reference_rel_l1"] = referenceErrors;
      result["reference_ms"] = referenceMs;
      result["reference_objective"] = referenceObjectives;
    }
    if (op) {
      result["operator"] = o->operatorFile;
      result["gauss_newton"] = op->gaussNewton();
      result["further_newton"] = op->furtherNewton();
      result["certificate_threshold"] = o->threshold;
      result["refinement"] = tally.toJson();
      if (solverName != "learned") result["learned_certificate"] = learnedCertificates;
      // One line on what was refined (auto, refine) or would need to be (learned).
      std::cerr << "jko: " << solverName << ": " << tally.describe(o->threshold, solverName != "learned") << "\n";
    }
    if (solverName == "linearized") result["gauss_newton"] = o->linearized.corrections;
    if (!failure.empty()) result["error"] = failure;
    if (o->json) {
      std::cout << result.dump() << std::endl;
    } else {
      if (series)
        std::cout << "wrote " << series->count() << " frames of " << energySpec.describe() << " (" << solverName
                  << ") on a " << grid.describe() << " to " << pvd << "\n";
      std::cout << std::setprecision(3) << done << " steps, " << result["ms_per_step"].get<double>()
                << " ms per step, mass drift " << massDrift << ", energy " << energies.front() << " -> "
                << energies.back() << ", last relative L1 change " << lastChange;
      if (limit.density.defined())
        std::cout << ", relative L1 distance to the " << limit.kind << " limit " << limitFinal;
      std::cout << "\n";
    }
    if (!failure.empty()) throw Error("the rollout stopped after " + std::to_string(done) + " steps: " + failure);
  });
}

}  // namespace jko::cli
