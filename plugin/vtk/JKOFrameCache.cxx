#include "JKOFrameCache.h"

#include <vtkAlgorithm.h>
#include <vtkDoubleArray.h>
#include <vtkIntArray.h>
#include <vtkOutputWindow.h>
#include <vtkStringArray.h>
#include <vtkTable.h>
#include <vtkVersionMacros.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <initializer_list>
#include <limits>
#include <sstream>

#include "JKOPieces.h"
#include "numerics/Energy.h"
#include "numerics/Errors.h"
#include "numerics/JkoObjective.h"
#include "numerics/ReferenceSolver.h"
#include "numerics/StepCertificate.h"
#include "operator/AutoSolver.h"
#include "operator/LearnedOperator.h"
#include "operator/TrainingRangeCheck.h"
#include "parallel/DistributedOperatorSolver.h"
#include "parallel/DistributedReferenceSolver.h"
#include "parallel/SlabDecomposition.h"

namespace jko::plugin {
namespace {

using Clock = std::chrono::steady_clock;

// Above this many seconds (10 unless JKO_LONG_RUN_SECONDS says otherwise) a
// computation's estimated time is said before it starts.
double longRunSeconds() {
  const char* value = std::getenv("JKO_LONG_RUN_SECONDS");
  char* end = nullptr;
  const double seconds = value ? std::strtod(value, &end) : 10.0;
  return value && end != value && seconds >= 0 ? seconds : 10.0;
}
// L-BFGS iterations of a reference step against its stiffness
// nu = tau D_eff / h^2 (D_eff = D, or D m rho^(m-1) at the mass-weighted
// mean density): about 8 + 70 nu^0.75. Fitted on sharp pictures (random
// disks at 96x64 to 256x192, heat and porous medium, nu from 0.005 to 300:
// 8 to 2000 iterations, within a factor 1.5); smooth densities and
// warm-started steps take fewer. An iteration costs about two evaluations
// of J and its gradient (one thread, 96x64: 1.75 ms an iteration, 0.9 ms an
// evaluation): the line search's trials and the two-loop recursion. Only the
// first step of a rollout is estimated this way; later ones come from the
// steps measured.
double referenceIterations(double stiffness, int cap) {
  return std::min<double>(cap, 8 + 70 * std::pow(std::max(stiffness, 0.0), 0.75));
}
constexpr double kEvaluationsPerIteration = 2;

double secondsSince(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// The abort flag of VTK's pipeline; from VTK 9.3 on, CheckAbort() also sees
// an abort requested upstream (ParaView's Abort button sets it from 6.1).
bool abortFlag(vtkAlgorithm* algorithm) {
#if VTK_MAJOR_VERSION > 9 || (VTK_MAJOR_VERSION == 9 && VTK_MINOR_VERSION >= 3)
  return algorithm->CheckAbort();
#else
  return algorithm->GetAbortExecute() != 0;
#endif
}

// Progress text and fraction for the status bar, at most ten times a second
// (UpdateProgress makes ParaView repaint) unless forced.
class ProgressReport {
 public:
  explicit ProgressReport(vtkAlgorithm* algorithm) : algorithm_(algorithm) {}
  void operator()(const std::string& text, double fraction, bool force = false) {
    if (!force && secondsSince(last_) < 0.1) return;
    last_ = Clock::now();
    algorithm_->SetProgressText(text.c_str());
    algorithm_->UpdateProgress(std::clamp(fraction, 0.0, 1.0));
  }

 private:
  vtkAlgorithm* algorithm_;
  Clock::time_point last_{};
};

std::string nonFiniteStep(int j) {
  return "JKO step " + std::to_string(j) +
         " gave NaN or infinite values: the density or the energy's parameters are out of range for this solver. "
         "Lower Time Step or the energy's parameters, or rescale the density (Fit To Unit Box).";
}

std::string duration(double seconds) {
  std::ostringstream out;
  out.precision(2);
  if (seconds < 10)
    out << seconds << " s";
  else if (seconds < 90)
    out << std::lround(seconds) << " s";
  else if (seconds < 5400)
    out << std::lround(seconds / 60) << " min";
  else
    out << std::fixed << seconds / 3600 << " h";
  return out.str();
}

vtkSmartPointer<vtkDoubleArray> column(const char* name, vtkIdType rows) {
  auto array = vtkSmartPointer<vtkDoubleArray>::New();
  array->SetName(name);
  array->SetNumberOfTuples(rows);
  return array;
}

vtkSmartPointer<vtkIntArray> integerColumn(const char* name, vtkIdType rows) {
  auto array = vtkSmartPointer<vtkIntArray>::New();
  array->SetName(name);
  array->SetNumberOfTuples(rows);
  return array;
}

// "frames 4, 5, 9" (the first ten, then how many more).
std::string frameList(const std::vector<int>& frames) {
  std::ostringstream out;
  out << (frames.size() == 1 ? "frame" : "frames");
  const size_t shown = std::min<size_t>(frames.size(), 10);
  for (size_t i = 0; i < shown; ++i) out << (i ? ", " : " ") << frames[i];
  if (frames.size() > shown) out << " and " << frames.size() - shown << " more";
  return out.str();
}

}  // namespace

const char* solverName(SolverKind solver) {
  switch (solver) {
    case SolverKind::Learned:
      return "Learned operator";
    case SolverKind::LearnedRefined:
      return "Learned + refine";
    case SolverKind::Auto:
      return "Auto";
    default:
      return "Reference solver";
  }
}

std::string rangeAdvice(SolverKind solver) {
  if (solver == SolverKind::Auto)
    return " Auto is in use: the Per-frame Table's Refined and Certificate columns show which frames it refined.";
  return " In ParaView: choose Solver Auto (it refines the frames that fail their certificate), or press Train "
         "(Training group) to train an operator on this density.";
}

bool flagged(const Frame& frame, SolverKind solver, double threshold, int k) {
  if (k == 0) return false;
  // The reference solver's steps, and Auto's steps from u = 0 (on which the
  // certificate is least reliable: docs/design.md, "A restart runs to the
  // reference solver's rule"), are certified by its own rule only.
  if (solver == SolverKind::Reference || frame.fromScratch) return !frame.converged;
  // A refinement that ran to the reference solver's own rule is as good as
  // the reference solver's step, whatever its certificate (which
  // over-estimates on stiff, fine modes: docs/design.md).
  if (frame.converged) return false;
  return !(frame.descent == 1 && frame.certificate <= threshold);
}

FrameCache::FrameCache() : tally_(std::make_unique<RefinementTally>()) {}
FrameCache::~FrameCache() = default;

void FrameCache::clear() {
  frames_.clear();
  key_.clear();
  current_ = at::Tensor();
  warmStart_ = at::Tensor();
  energy_.reset();
  objective_.reset();
  solver_.reset();
  auto_.reset();
  certifier_.reset();
  watch_.reset();
  tally_ = std::make_unique<RefinementTally>();
  slabs_.reset();
  splitObjective_.reset();
  splitSolver_.reset();
  splitOperator_.reset();
  setup_ = RolloutSetup();
  warnedSeconds_ = 0;
}

void FrameCache::start(RolloutSetup setup, const std::string& key) {
  this->clear();
  ReferenceSolverOptions options;
  // Checked at every iteration: a stop request waits for one iteration at most.
  options.progressInterval = 1;
  if (setup.communicator) {
    // Each rank keeps its slab of rho0 and of every frame after it.
    slabs_ = std::make_unique<SlabDecomposition>(setup.grid, setup.communicator);
    splitObjective_ = std::make_shared<const DistributedJkoObjective>(setup.energy, setup.tau, *slabs_);
    if (usesOperator(setup.solver)) {
      // The operator's steps (through the step's symmetries), refined by the
      // split L-BFGS as one process refines them.
      AutoSolverOptions automatic;
      automatic.threshold = setup.threshold;
      automatic.reference = options;
      automatic.reference.maxIterations = std::max(1, setup.maxIterations);
      ReferenceSolverOptions refine = options;
      refine.maxIterations = std::max(1, setup.refineIterations);
      const OperatorSolver::Mode mode = setup.solver == SolverKind::Auto             ? OperatorSolver::Mode::Auto
                                        : setup.solver == SolverKind::LearnedRefined ? OperatorSolver::Mode::Refine
                                                                                     : OperatorSolver::Mode::Learned;
      splitOperator_ = std::make_unique<DistributedOperatorSolver>(setup.op, splitObjective_, mode, automatic, refine);
    } else {
      options.maxIterations = std::max(1, setup.maxIterations);
      options.completeGridScale = setup.completeGridScale;
      splitSolver_ = std::make_unique<DistributedReferenceSolver>(splitObjective_, options);
    }
    if (!setup.rho0IsSlab) setup.rho0 = slabs_->own(setup.rho0.to(at::kDouble).unsqueeze(0))[0];
  } else {
    energy_ = std::make_shared<const Energy>(setup.energy, setup.grid);
  }
  setup_.grid = setup.grid;  // massOf's cells
  Frame frame;
  frame.density = setup.rho0;
  frame.energy = this->energyOf(setup.rho0);
  frame.objective = frame.energy;
  frame.mass = this->massOf(setup.rho0);
  std::vector<int64_t> shape{setup.grid.dim};
  for (int64_t n : setup.rho0.sizes()) shape.push_back(n);
  frame.velocity = at::zeros(shape, at::kDouble);
  if (!std::isfinite(frame.energy)) {  // the same on every rank of a split rollout
    std::ostringstream message;
    message << "The energy of the input density is " << frame.energy << " (" << setup.energy.describe()
            << "): the density's values (maximum " << setup.rho0.max().item<double>()
            << ") are too large for it in double precision. Rescale the density (e.g. with the Calculator, or Fit To "
               "Unit Box) or lower the energy's parameters.";
    throw Error(message.str());
  }
  if (energy_) {
    objective_ = std::make_shared<const JkoObjective>(energy_, setup.tau);
    certifier_ = std::make_unique<StepCertifier>(objective_);
  }
  if (slabs_) {
    // The split solver above.
  } else if (setup.solver == SolverKind::Reference) {
    options.maxIterations = std::max(1, setup.maxIterations);
    options.completeGridScale = setup.completeGridScale;
    solver_ = std::make_unique<ReferenceSolver>(objective_, options);
  } else if (setup.solver == SolverKind::LearnedRefined) {
    options.maxIterations = std::max(1, setup.refineIterations);
    // The panel's problem: the operator's own or one its symmetries relate to it.
    solver_ = std::make_unique<ReferenceSolver>(objective_, options);
  } else if (setup.solver == SolverKind::Auto) {
    // The panel's problem, with the operator's step as its first guess (the
    // operator's energy and tau may differ: the filter warned).
    AutoSolverOptions automatic;
    automatic.threshold = setup.threshold;
    automatic.reference = options;
    automatic.reference.maxIterations = std::max(1, setup.maxIterations);
    auto_ = std::make_unique<AutoSolver>(setup.op, objective_, automatic);
  }
  if (usesOperator(setup.solver)) {
    // Frame 0 was checked by the filter (its warnings name the input).
    watch_ = std::make_unique<TrainingRangeWatch>(setup.op->metadata(), setup.grid, setup.symmetry);
    watch_->check(this->summaryOf(setup.rho0), 0);
  }
  current_ = setup.rho0.to(setup.device);
  setup_ = std::move(setup);
  key_ = key;
  frames_.push_back(std::move(frame));
}

double FrameCache::energyOf(const at::Tensor& density) const {
  if (splitObjective_) return splitObjective_->energy(density);
  return (*energy_)(density.unsqueeze(0)).item<double>();
}

DensitySummary FrameCache::summaryOf(const at::Tensor& density) const {
  DensitySummary summary;
  summary.mass = this->massOf(density);
  summary.peak = density.max().item<double>();
  if (slabs_) summary.peak = slabs_->communicator().max(summary.peak);
  return summary;
}

double FrameCache::massOf(const at::Tensor& density) const {
  const double local = density.sum().item<double>() * setup_.grid.cellVolume();
  return slabs_ ? slabs_->communicator().sum(local) : local;
}

bool FrameCache::stopRequested(vtkAlgorithm* algorithm) const {
  const bool mine = abortFlag(algorithm);
  // Every rank of a split step must leave it at the same iteration, or the
  // others would wait in its next sum.
  return slabs_ ? slabs_->communicator().max(mine ? 1.0 : 0.0) > 0 : mine;
}

double FrameCache::secondsPerStep() const {
  if (frames_.size() < 2) return 0;
  double total = 0;
  for (size_t k = 1; k < frames_.size(); ++k) total += frames_[k].seconds;
  return total / static_cast<double>(frames_.size() - 1);
}

double FrameCache::estimateSecondsPerStep() const {
  // A learned step (and Auto's, whose refinements cannot be foreseen) is timed by doing it.
  if (setup_.solver == SolverKind::Learned || setup_.solver == SolverKind::Auto) return 0;
  // One evaluation of J and its gradient at u = 0, the unit of an L-BFGS
  // iteration: the fastest of three (the first pays for allocations and
  // caches; on a busy machine the others vary by a factor 10).
  double evaluation = std::numeric_limits<double>::infinity();
  for (int repeat = 0; repeat < 3; ++repeat) {
    const Clock::time_point start = Clock::now();
    at::AutoGradMode gradMode(true);
    if (splitObjective_) {
      // The ranks' slabs: one evaluation of each, timed together.
      const DistributedJkoObjective::State state = splitObjective_->prepare(current_);
      std::vector<int64_t> owned{1, setup_.grid.dim};
      for (int64_t n : current_.sizes()) owned.push_back(n);
      splitObjective_->evaluate(state, at::zeros(owned, at::kDouble), true);
      evaluation = std::min(evaluation, secondsSince(start));
      continue;
    }
    const JkoState state = objective_->prepare(current_);
    std::vector<int64_t> shape{1, setup_.grid.dim};
    for (int64_t n : setup_.grid.shape()) shape.push_back(n);
    const at::Tensor u = at::zeros(shape, current_.options()).requires_grad_(true);
    objective_->evaluate(state, u).objective.sum().backward();
    evaluation = std::min(evaluation, secondsSince(start));
  }
  // The slowest rank sets the pace of a split step.
  if (slabs_) evaluation = slabs_->communicator().max(evaluation);
  if (setup_.solver == SolverKind::LearnedRefined)
    return kEvaluationsPerIteration * std::max(1, setup_.refineIterations) * evaluation;
  const EnergySpec& energy = setup_.energy;
  double diffusivity = 0;
  if (energy.internal == InternalKind::Entropy) diffusivity = energy.diffusion;
  if (energy.internal == InternalKind::PorousMedium) {
    const at::Tensor rho = frames_.back().density;
    double sums[2] = {(rho * rho).sum().item<double>(), rho.sum().item<double>()};
    if (slabs_) slabs_->communicator().sum(sums, 2);  // over the slabs of a split rollout
    const double typical = sums[0] / sums[1];
    diffusivity = energy.diffusion * energy.exponent * std::pow(typical, energy.exponent - 1);
  }
  double cell = setup_.grid.spacing[0];
  for (int a = 1; a < setup_.grid.dim; ++a) cell = std::min(cell, setup_.grid.spacing[a]);
  const double stiffness = setup_.tau * diffusivity / (cell * cell);
  return kEvaluationsPerIteration * referenceIterations(stiffness, std::max(1, setup_.maxIterations)) * evaluation;
}

void FrameCache::warnIfLong(int from, int to, double secondsPerStep, bool measured, vtkAlgorithm* algorithm) {
  const int steps = to - from + 1;
  const double seconds = steps * secondsPerStep;
  // Said once per rollout, and again only for a much longer request (a jump
  // to the last frame after stepping one frame at a time).
  if (steps < 1 || seconds < longRunSeconds() || seconds <= 4 * warnedSeconds_) return;
  warnedSeconds_ = seconds;
  std::ostringstream message;
  // "by the reference solver", "by the learned operator", "by the Auto solver".
  std::string solver = solverName(setup_.solver);
  if (setup_.solver == SolverKind::Auto)
    solver += " solver";
  else
    solver[0] = static_cast<char>(std::tolower(solver[0]));
  message << "JKO Gradient Flow: frame" << (steps > 1 ? "s " + std::to_string(from) + "-" : " ") << to << " (" << steps
          << " step" << (steps > 1 ? "s" : "") << " by the " << solver << " on the " << setup_.description
          << ") will take about " << duration(seconds) << " here (" << duration(secondsPerStep) << " a step, "
          << (measured ? "measured on the steps so far"
                       : "estimated from one evaluation of the step's objective and its stiffness tau D / h^2")
          << "). Frames are computed when first shown and kept: scrub to an earlier frame to compute fewer, or lower "
             "the resolution (Resample To Image) for a quicker look.";
  if (reportsMessages()) vtkWarningWithObjectMacro(algorithm, << message.str());
}

Extension FrameCache::extendTo(int k, vtkAlgorithm* algorithm, int runEnd) {
  Extension result;
  const int first = this->size();
  if (k < first) {
    result.last = k;
    return result;
  }
  const bool measured = this->secondsPerStep() > 0;
  const double perStep = measured ? this->secondsPerStep() : this->estimateSecondsPerStep();
  if (perStep > 0) this->warnIfLong(first, k, perStep, measured, algorithm);
  ProgressReport progress(algorithm);
  for (int j = first; j <= k; ++j) {
    if (this->stopRequested(algorithm)) {
      result.stopped = true;
      break;
    }
    const std::string prefix = "JKO step " + std::to_string(j) + " of " + std::to_string(k) + ": ";
    const double share = 1.0 / (k - first + 1);
    progress(prefix + solverName(setup_.solver), (j - first) * share, true);
    // Within a step the iteration count is unknown: its share grows like i / (i + 100).
    const int cap = setup_.solver == SolverKind::LearnedRefined ? setup_.refineIterations : setup_.maxIterations;
    auto report = [&](const ProgressEvent& event) {
      if (this->stopRequested(algorithm)) return false;
      const double iterations = event.fraction * std::max(1, cap);
      // The first iteration of a step is always said: a script watching the
      // progress sees every step start inside the solver.
      progress(prefix + event.message, (j - first + iterations / (iterations + 100.0)) * share, iterations == 0);
      return true;
    };
    try {
      const Clock::time_point start = Clock::now();
      Frame frame = this->step(j, report);
      frame.seconds = secondsSince(start);
      frames_.push_back(std::move(frame));
      ++result.computed;
    } catch (const Cancelled&) {
      result.stopped = true;
      break;
    }
    if (watch_)
      for (const RangeWarning& warning : watch_->check(this->summaryOf(frames_.back().density), j))
        if (reportsMessages())
          vtkWarningWithObjectMacro(algorithm,
                                    << "JKO Gradient Flow, " << warning.message << rangeAdvice(setup_.solver));
    if (j == first && !measured && (setup_.solver == SolverKind::Learned || setup_.solver == SolverKind::Auto))
      this->warnIfLong(j + 1, k, frames_.back().seconds, true, algorithm);
  }
  progress("", 1.0, true);
  result.last = this->size() - 1;
  if (result.computed > 0) this->reportRun(first, result.last, runEnd, algorithm);
  return result;
}

void FrameCache::reportRun(int first, int last, int runEnd, vtkAlgorithm* algorithm) const {
  const SolverKind solver = setup_.solver;
  const double threshold = setup_.threshold;
  std::vector<int> failing;  // frames not certified (flagged)
  bool attention = false;    // one of this call's frames is not certified: a warning
  bool refined = false;      // one of this call's frames was refined by Auto
  std::vector<int> coarse;   // this call's frames that fail the resolution check
  double spreadMax = 0;
  std::vector<int> detailed;  // this call's frames that keep detail at the grid scale
  double defectMax = 0;
  for (int k = 1; k < this->size(); ++k) {
    const bool bad = flagged(frames_[k], solver, threshold, k);
    if (bad) failing.push_back(k);
    if (k >= first && k <= last) {
      attention = attention || bad;
      refined = refined || frames_[k].refined;
      if (frames_[k].underResolved()) {
        coarse.push_back(k);
        spreadMax = std::max(spreadMax, frames_[k].spreadMass);
      }
      if (frames_[k].keepsGridScaleDetail()) {
        detailed.push_back(k);
        defectMax = std::max(defectMax, frames_[k].gridScaleDefect);
      }
    }
  }
  // Whatever the solver: no solver can make such a frame right on this grid
  // at this time step (StepCertificate::spreadMassFraction).
  if (!coarse.empty() && reportsMessages())
    vtkWarningWithObjectMacro(algorithm, << "JKO Gradient Flow (" << solverName(solver) << "), under-resolved "
                                         << frameList(coarse) << ": " << underResolvedAdvice(spreadMax)
                                         << " The Per-frame Table's UnderResolved and SpreadMass columns show them.");
  // Whatever the solver, too: the map form's damping at the grid scale
  // (StepCertificate::gridScaleDefect), which Complete Grid Scale corrects.
  if (!detailed.empty() && reportsMessages())
    vtkWarningWithObjectMacro(algorithm, << "JKO Gradient Flow (" << solverName(solver) << "), detail at the grid "
                                         << "scale in " << frameList(detailed) << ": " << gridScaleAdvice(defectMax)
                                         << ". The Per-frame Table's GridScaleDefect column shows it.");
  // Frames that are not certified are a warning as soon as they exist (it
  // opens Output Messages in the GUI). A refinement is Auto doing its job:
  // plain text in Output Messages, as is the line that closes a clean run.
  if (!attention && !(solver == SolverKind::Auto && refined) && last < runEnd) return;
  if (!reportsMessages()) return;  // the other ranks computed the same frames
  const int frames = this->size() - 1;
  std::ostringstream line;
  line << "JKO Gradient Flow (" << solverName(solver) << "), frames 1-" << frames << ": ";
  switch (solver) {
    case SolverKind::Auto:
      line << tally_->describe(threshold, true, false);
      if (!failing.empty())
        line << "; " << failing.size() << " not certified (Flagged): their refinement stopped at Maximum Iterations ("
             << setup_.maxIterations
             << ") before meeting the certificate, or from u = 0 the reference solver's tolerance, "
             << frameList(failing);
      line << "."
           << (tally_->refined ? " The Per-frame Table's Refined, RefineReason and Certificate columns say which."
                               : "");
      break;
    case SolverKind::Learned:
      line << tally_->describe(threshold, false) << ".";
      if (!failing.empty())
        line << " Solver Auto refines such frames from the learned map; the Per-frame Table's Flagged and Certificate "
                "columns show them.";
      break;
    case SolverKind::LearnedRefined:
      line << failing.size() << " of " << frames << " frames fail their certificate (descent guard, or estimated L1 "
           << "error above " << formatValue(threshold) << ") after " << setup_.refineIterations
           << " refinement iterations" << (failing.empty() ? "" : ": " + frameList(failing)) << ".";
      if (!failing.empty())
        line << " Raise Refine Iterations, or choose Solver Auto (it refines until the certificate passes).";
      break;
    default: {
      if (failing.empty()) return;  // converged reference steps need no word
      // How far such a frame may be: its certificate, the estimated relative
      // L1 distance to its step's minimiser.
      double largest = 0;
      for (int k : failing)
        if (std::isfinite(frames_[k].certificate)) largest = std::max(largest, frames_[k].certificate);
      line << failing.size() << " of " << frames << " reference steps stopped before the solver's tolerance (Maximum "
           << "Iterations " << setup_.maxIterations << "): " << frameList(failing) << "; "
           << cappedReferenceAdvice(largest) << ". The Per-frame Table's Flagged and Certificate columns mark them.";
      break;
    }
  }
  if (attention)
    vtkWarningWithObjectMacro(algorithm, << line.str());
  else
    vtkOutputWindowDisplayText((line.str() + "\n").c_str());
}

namespace {

// The certificate's figures in a frame (the table's and field data's columns).
void recordCertificate(Frame& frame, const StepCertificate& certificate) {
  frame.certificate = certificate.l1ErrorEstimate;
  frame.descent = certificate.descent ? 1 : 0;
  frame.relativeGap = certificate.relativeGap;
  frame.w2Estimate = certificate.w2Estimate;
  frame.spreadMass = certificate.spreadMassFraction;
}

// The frame as it is shown (finishFrame): its density, completed at the grid
// scale or not, and its grid-scale defect.
void recordGridScale(Frame& frame, const FinishedFrame& shown) {
  frame.density = shown.density;
  frame.gridScaleCompleted = shown.completed;
  frame.gridScaleDefect = shown.gridScaleDefect;
}

// What an Auto step did (refined or not, why, how), in its frame.
void recordAutoStep(Frame& frame, const CertifiedStep& step) {
  frame.iterations = frame.refineIterations = step.iterations;
  frame.refined = step.refined;
  frame.refineReason = toString(step.reason);
  frame.converged = step.refined && step.refineConverged;
  frame.fromScratch = step.fromScratch();
  if (step.refined) frame.learnedCertificate = step.learned.l1ErrorEstimate;
}

// Whether the frame's figures and fields are finite (on this rank).
bool finite(const Frame& frame) {
  return std::isfinite(frame.energy) && std::isfinite(frame.mass) && at::isfinite(frame.density).all().item<bool>() &&
         at::isfinite(frame.velocity).all().item<bool>();
}

}  // namespace

Frame FrameCache::splitStep(const ProgressCallback& report) {
  Frame frame;
  const double energy = frames_.back().energy;  // E(rho_k) = J(0), which the certificate needs
  const DistributedJkoObjective::State state = splitObjective_->prepare(current_);
  const ReferenceStep step = splitSolver_->step(state, warmStart_, report);
  frame.transport = step.transport;
  frame.objective = step.objective;
  frame.iterations = step.iterations;
  frame.converged = step.converged;
  // The reference solver's own final measure, in the certificate's terms.
  recordCertificate(frame, splitObjective_->certify(state, step.displacement, energy));
  recordGridScale(frame, finishFrame(*splitObjective_, step));
  frame.velocity = step.displacement / setup_.tau;
  frame.energy = this->energyOf(frame.density);
  frame.mass = this->massOf(frame.density);
  warmStart_ = step.displacement;
  current_ = step.next;
  return frame;
}

Frame FrameCache::splitOperatorStep(const ProgressCallback& report, CertifiedStep& tallied) {
  const double energy = frames_.back().energy;  // E(rho_k) = J(0), which the certificates need
  const DistributedJkoObjective::State state = splitObjective_->prepare(current_);
  const CertifiedStep step = splitOperator_->step(state, report, energy);
  Frame frame;
  if (setup_.solver == SolverKind::Auto) {
    tallied = step;
    recordAutoStep(frame, step);
  } else {
    if (setup_.solver == SolverKind::LearnedRefined) {
      frame.learnedCertificate = step.learned.l1ErrorEstimate;
      frame.iterations = frame.refineIterations = step.iterations;
      frame.refined = true;
      frame.refineReason = "refine-iterations";
      frame.converged = step.refineConverged;
    }
    // As one process tallies them: the returned frame's verdict.
    tallied.refined = frame.refined;
    tallied.iterations = frame.iterations;
    tallied.reason = learnedStepVerdict(step.certificate, setup_.threshold);
  }
  // J(u) of DESIGN.md §2.2 with the panel's energy, as the certificate measured it.
  frame.transport = step.certificate.transport;
  frame.objective = step.certificate.objective;
  recordCertificate(frame, step.certificate);
  recordGridScale(frame, finishFrame(*splitObjective_, state, step.next, energy, setup_.completeGridScale));
  frame.velocity = step.displacement / setup_.tau;
  frame.energy = this->energyOf(frame.density);
  frame.mass = this->massOf(frame.density);
  current_ = frame.density;
  return frame;
}

Frame FrameCache::step(int j, const ProgressCallback& report) {
  if (slabs_) {
    CertifiedStep tallied;
    Frame frame = splitOperator_ ? this->splitOperatorStep(report, tallied) : this->splitStep(report);
    // Every rank throws, or none (a rank alone would leave the others waiting).
    if (slabs_->communicator().max(finite(frame) ? 0.0 : 1.0) > 0) throw Error(nonFiniteStep(j));
    tally_->add(tallied);
    return frame;
  }
  const Grid& grid = setup_.grid;
  const double tau = setup_.tau;
  const at::Tensor& from = frames_.back().density;  // rho_k, CPU float64
  const double energy = frames_.back().energy;      // E(rho_k), which the certificates need
  auto onCpu = [](const at::Tensor& t) { return t.to(at::kCPU, at::kDouble); };
  Frame frame;
  at::Tensor next, displacement;
  // What core's tally counts: Auto's own refinements, or for the other
  // solvers the failures of the frame's certificate.
  CertifiedStep tallied;
  StepCertificate certificate;
  ReferenceStep solved;  // the reference solver's step, which it completes where asked
  if (setup_.solver == SolverKind::Reference) {
    solved = solver_->step(current_, warmStart_, report);
    const ReferenceStep& step = solved;
    next = step.next;
    displacement = step.displacement;
    warmStart_ = step.displacement;
    frame.transport = step.transport;
    frame.objective = step.objective;
    frame.iterations = step.iterations;
    frame.converged = step.converged;
    // The reference solver's own final measure, in the certificate's terms.
    certificate = certifier_->certify(from, onCpu(displacement), energy);
  } else if (setup_.solver == SolverKind::Auto) {
    tallied = auto_->step(current_, report, energy);
    next = tallied.next;
    displacement = tallied.displacement;
    certificate = tallied.certificate;
    recordAutoStep(frame, tallied);
  } else {
    // The operator's step (of c rho, scaled back, when the panel's problem is
    // related to the operator's by the step's symmetries), then certified.
    const LearnedStep learned = stepThroughSymmetry(*setup_.op, setup_.symmetry, current_, grid);
    next = learned.next;
    displacement = tau * learned.velocity;
    certificate = certifier_->certify(from, onCpu(displacement), energy);
    if (setup_.solver == SolverKind::LearnedRefined) {
      const ReferenceStep step = solver_->step(current_, displacement, report);
      frame.learnedCertificate = certificate.l1ErrorEstimate;
      next = step.next;
      displacement = step.displacement;
      frame.iterations = frame.refineIterations = step.iterations;
      frame.refined = true;
      frame.refineReason = "refine-iterations";
      frame.converged = step.converged;
      certificate = certifier_->certify(from, onCpu(displacement), energy);
    }
    tallied.refined = frame.refined;
    tallied.iterations = frame.iterations;
    tallied.reason = learnedStepVerdict(certificate, setup_.threshold);
  }
  if (setup_.solver != SolverKind::Reference) {
    // J(u) of DESIGN.md §2.2 with the panel's energy, as the certificate measured it.
    frame.transport = certificate.transport;
    frame.objective = certificate.objective;
  }
  recordCertificate(frame, certificate);
  // The learned solvers' frames are completed after their steps (the
  // reference solver completes its own), else checked.
  const FinishedFrame shown = setup_.solver == SolverKind::Reference
                                  ? finishFrame(*certifier_, solved)
                                  : finishFrame(*certifier_, from, next, energy, setup_.completeGridScale);
  recordGridScale(frame, shown);
  next = shown.density;  // on the operator's device
  frame.density = onCpu(next);
  frame.velocity = onCpu(displacement) / tau;
  frame.energy = this->energyOf(frame.density);
  frame.mass = this->massOf(frame.density);
  // A step that overflowed gives an error, never NaN frames.
  if (!finite(frame)) throw Error(nonFiniteStep(j));
  tally_->add(tallied);
  current_ = next;
  return frame;
}

vtkSmartPointer<vtkTable> FrameCache::table(int rows, double t0, double threshold) const {
  rows = std::max(rows, 0);
  auto table = vtkSmartPointer<vtkTable>::New();
  auto time = column("Time", rows), energy = column("Energy", rows), mass = column("Mass", rows);
  auto transport = column("TransportCost", rows), objective = column("Objective", rows);
  auto certificate = column("Certificate", rows), descent = column("Descent", rows);
  auto relativeGap = column("RelativeGap", rows), w2 = column("W2Estimate", rows);
  auto spread = column("SpreadMass", rows);
  auto underResolved = integerColumn("UnderResolved", rows);
  auto defect = column("GridScaleDefect", rows);
  auto completed = integerColumn("GridScaleCompleted", rows);
  auto learnedCertificate = column("LearnedCertificate", rows), limit = column("CertificateThreshold", rows);
  auto step = integerColumn("Step", rows), iterations = integerColumn("Iterations", rows);
  auto refined = integerColumn("Refined", rows), refineIterations = integerColumn("RefineIterations", rows);
  auto flags = integerColumn("Flagged", rows), computed = integerColumn("Computed", rows);
  auto reason = vtkSmartPointer<vtkStringArray>::New();
  reason->SetName("RefineReason");
  reason->SetNumberOfValues(rows);
  // A frame not computed yet has its row with NaN values: a line chart
  // keeps the whole time axis and draws what exists (a one-row table made
  // it report "Attempted to paint a line with <2 points").
  const double missing = std::numeric_limits<double>::quiet_NaN();
  for (vtkIdType k = 0; k < rows; ++k) {
    const bool exists = k < this->size();
    const Frame* f = exists ? &frames_[k] : nullptr;
    time->SetValue(k, t0 + k * setup_.tau);
    step->SetValue(k, static_cast<int>(k));
    energy->SetValue(k, exists ? f->energy : missing);
    mass->SetValue(k, exists ? f->mass : missing);
    transport->SetValue(k, exists ? f->transport : missing);
    objective->SetValue(k, exists ? f->objective : missing);
    iterations->SetValue(k, exists ? f->iterations : 0);
    certificate->SetValue(k, exists ? f->certificate : missing);
    descent->SetValue(k, exists ? f->descent : missing);
    relativeGap->SetValue(k, exists ? f->relativeGap : missing);
    w2->SetValue(k, exists ? f->w2Estimate : missing);
    spread->SetValue(k, exists ? f->spreadMass : missing);
    underResolved->SetValue(k, exists && f->underResolved() ? 1 : 0);
    defect->SetValue(k, exists ? f->gridScaleDefect : missing);
    completed->SetValue(k, exists && f->gridScaleCompleted ? 1 : 0);
    learnedCertificate->SetValue(k, exists ? f->learnedCertificate : missing);
    limit->SetValue(k, exists ? threshold : missing);  // a chart's time axis then ends where the frames do
    refined->SetValue(k, exists && f->refined ? 1 : 0);
    refineIterations->SetValue(k, exists ? f->refineIterations : 0);
    flags->SetValue(k, exists && flagged(*f, setup_.solver, threshold, static_cast<int>(k)) ? 1 : 0);
    reason->SetValue(k, exists ? f->refineReason : std::string());
    computed->SetValue(k, exists ? 1 : 0);
  }
  for (vtkAbstractArray* array : std::initializer_list<vtkAbstractArray*>{
           time,          step,        energy,           mass,        transport, objective,
           iterations,    certificate, descent,          relativeGap, w2,        learnedCertificate,
           limit,         refined,     refineIterations, reason,      flags,     spread,
           underResolved, defect,      completed,        computed})
    table->AddColumn(array);
  return table;
}

}  // namespace jko::plugin
