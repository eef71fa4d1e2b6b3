#include "operator/AutoSolver.h"

#include <ATen/core/grad_mode.h>

#include <cmath>
#include <sstream>

#include "numerics/Errors.h"
#include "operator/TrainingRangeCheck.h"
#include "runtime/Timing.h"

namespace jko {

std::string toString(RefineReason reason) {
  switch (reason) {
    case RefineReason::DescentFailed:
      return "descent";
    case RefineReason::CertificateAbove:
      return "certificate";
    case RefineReason::LearnedStepFailed:
      return "learned-step-failed";
    default:
      return "none";
  }
}

void AutoSolver::validate(const AutoSolverOptions& options) {
  if (!(options.threshold > 0) || !std::isfinite(options.threshold))
    throw InvalidParameter("certificate threshold", formatValue(options.threshold),
                           "the estimated relative L1 error a frame may have must be a number > 0 (e.g. 0.01)");
  if (!(options.refineTo > 0 && options.refineTo <= 1))
    throw InvalidParameter("refinement target", formatValue(options.refineTo),
                           "the fraction of the threshold a refinement aims at must be in (0, 1]");
  if (!(options.restartAbove >= options.threshold))
    throw InvalidParameter("restart level", formatValue(options.restartAbove),
                           "the certificate above which a refinement starts from u = 0 must be at least the "
                           "threshold (" +
                               formatValue(options.threshold) + ")");
  if (!(options.correctUntil >= 0 && options.correctUntil <= 1))
    throw InvalidParameter("correction target", formatValue(options.correctUntil),
                           "the fraction of the threshold at which the learned map's corrections stop must be in "
                           "[0, 1] (0: all of them)");
}

AutoSolver::AutoSolver(std::shared_ptr<const LearnedOperator> op, std::shared_ptr<const JkoObjective> objective,
                       AutoSolverOptions options)
    : op_(std::move(op)), objective_(std::move(objective)), options_(options), certifier_(objective_) {
  validate(options_);
  if (op_->metadata().dim != objective_->grid().dim)
    throw OperatorFileError("this operator was trained on " + std::to_string(op_->metadata().dim) +
                            "D densities; the data is " + std::to_string(objective_->grid().dim) +
                            "D: train or load a " + std::to_string(objective_->grid().dim) + "D operator");
}

CertifiedStep AutoSolver::learnedGuess(const at::Tensor& rho, double correctionTolerance) const {
  const Grid& grid = objective_->grid();
  const OperatorMetadata& m = op_->metadata();
  const double mass = rho.to(at::kDouble).sum().item<double>() * grid.cellVolume();
  // The operator's own problem up to the step's symmetries: its map is the
  // step's map. Otherwise (another energy) the operator's step at c = 1 is a
  // first guess only.
  const StepSymmetry symmetry = guessSymmetry(m, objective_->energy().spec(), objective_->tau(), grid.dim, mass);
  CertifiedStep out;
  out.densityFactor = symmetry.densityFactor;
  const auto start = Clock::now();
  const LearnedStep learned = stepThroughSymmetry(*op_, symmetry, rho, grid, correctionTolerance);
  out.displacement = learned.velocity * objective_->tau();
  out.next = learned.next;
  out.learnedMs = millisecondsSince(start);
  return out;
}

CertifiedStep AutoSolver::learnedStep(const at::Tensor& rho, double energyOfRho) const {
  return certifiedGuess(rho, energyOfRho, 0);
}

CertifiedStep AutoSolver::certifiedGuess(const at::Tensor& rho, double energyOfRho, double correctionTolerance) const {
  CertifiedStep out = learnedGuess(rho, correctionTolerance);
  const auto start = Clock::now();
  out.learned = certifier_.certify(rho, out.displacement, energyOfRho);
  out.certificate = out.learned;
  out.certificateMs = millisecondsSince(start);
  out.reason = learnedStepVerdict(out.learned, options_.threshold);
  return out;
}

StepSymmetry guessSymmetry(const OperatorMetadata& metadata, const EnergySpec& energy, double tau, int dim,
                           double mass) {
  const StepSymmetry symmetry = relateToOperator(metadata, energy, tau, dim, mass);
  return symmetry.exact ? symmetry : StepSymmetry();
}

void recordRefinement(CertifiedStep& step, const ReferenceStep& refined) {
  step.refined = true;
  step.iterations = refined.iterations;
  step.refineConverged = refined.converged;
  step.next = refined.next;
  step.displacement = refined.displacement;
}

CertifiedStep guessOrFailure(const std::function<CertifiedStep()>& guess) {
  try {
    return guess();
  } catch (const InvalidDensity& e) {
    // A density that is itself invalid fails again in the reference
    // solver's step, with its own message.
    CertifiedStep out;
    out.reason = RefineReason::LearnedStepFailed;
    out.learnedFailure = e.what();
    return out;
  }
}

RefinementPlan refinementPlan(const CertifiedStep& guess, const AutoSolverOptions& options) {
  RefinementPlan plan;
  // L-BFGS from the learned map until the certificate passes with a margin,
  // or the reference solver's own step (below).
  plan.restarted =
      guess.reason == RefineReason::CertificateAbove && !(guess.learned.l1ErrorEstimate <= options.restartAbove);
  // A refinement from u = 0 (a learned step far off, or none) is the
  // reference solver's own step and stops on its own rule: the certificate
  // is least trustworthy on the steps that send a learned map far off (on
  // stripes at the grid's scale L-BFGS from u = 0 stopped at a certificate of
  // 0.0005 was still 1.4% from the minimiser: docs/design.md, "A restart
  // runs to the reference solver's rule"). It costs a reference step, which
  // is what such a step is worth.
  plan.fromScratch = plan.restarted || guess.reason == RefineReason::LearnedStepFailed;
  plan.target = options.refineTo * options.threshold;
  return plan;
}

RefineReason learnedStepVerdict(const StepCertificate& certificate, double threshold) {
  if (!certificate.descent) return RefineReason::DescentFailed;
  if (!certificate.passes(threshold)) return RefineReason::CertificateAbove;
  return RefineReason::None;
}

CertifiedStep AutoSolver::step(const at::Tensor& rho, const ProgressCallback& progress, double energyOfRho) const {
  CertifiedStep out =
      guessOrFailure([&] { return certifiedGuess(rho, energyOfRho, options_.correctUntil * options_.threshold); });
  if (out.reason == RefineReason::None) return out;

  const auto start = Clock::now();
  const RefinementPlan plan = refinementPlan(out, options_);
  out.restarted = plan.restarted;
  ReferenceSolverOptions refineOptions = options_.reference;
  const bool fromScratch = plan.fromScratch;
  JkoState state;  // the certificate's, for a refinement from the learned map only
  if (!fromScratch) {
    state = objective_->prepare(rho);
    refineOptions.accept = [this, &state, target = plan.target](const at::Tensor& u, const at::Tensor& g) {
      return certifier_.l1ErrorEstimate(state, u, g) <= target;
    };
  }
  const ReferenceStep refined =
      ReferenceSolver(objective_, refineOptions).step(rho, fromScratch ? at::Tensor() : out.displacement, progress);
  out.refineMs = millisecondsSince(start);
  recordRefinement(out, refined);
  out.certificate = certifier_.certify(rho, out.displacement, energyOfRho);
  return out;
}

OperatorSolver::Mode OperatorSolver::modeFromString(const std::string& name) {
  if (name == "learned") return Mode::Learned;
  if (name == "refine") return Mode::Refine;
  if (name == "auto") return Mode::Auto;
  throw InvalidParameter("solver", name, "the solvers that start from an operator are learned, refine and auto");
}

OperatorSolver::OperatorSolver(std::shared_ptr<const LearnedOperator> op, std::shared_ptr<const JkoObjective> objective,
                               Mode mode, AutoSolverOptions autoOptions, ReferenceSolverOptions refine)
    : mode_(mode), auto_(std::move(op), objective, std::move(autoOptions)), refiner_(objective, std::move(refine)) {}

CertifiedStep OperatorSolver::step(const at::Tensor& rho, const ProgressCallback& progress, double energyOfRho) const {
  if (mode_ == Mode::Auto) return auto_.step(rho, progress, energyOfRho);
  CertifiedStep step = auto_.learnedStep(rho, energyOfRho);
  if (mode_ == Mode::Refine) {
    recordRefinement(step, refiner_.step(rho, step.displacement, progress));
    step.certificate = auto_.certifier().certify(rho, step.displacement, energyOfRho);
  }
  return step;
}

std::vector<CertifiedStep> AutoSolver::rollout(const at::Tensor& rho0, int steps,
                                               const ProgressCallback& progress) const {
  if (steps < 0) throw InvalidParameter("steps", formatValue(steps), "must be >= 0");
  std::vector<CertifiedStep> frames;
  at::Tensor rho = rho0;
  RefinementTally tally;
  for (int k = 0; k < steps; ++k) {
    frames.push_back(step(rho));
    tally.add(frames.back());
    rho = frames.back().next;
    ProgressEvent event;
    event.stage = "auto rollout";
    event.step = k + 1;
    event.fraction = static_cast<double>(k + 1) / steps;
    event.message = "auto step " + std::to_string(k + 1) + " of " + std::to_string(steps) + ": " +
                    tally.describe(options_.threshold);
    reportProgress(progress, event);
  }
  return frames;
}

void RefinementTally::add(const CertifiedStep& step) {
  ++frames;
  if (step.refined) ++refined;
  if (step.restarted) ++restarted;
  if (step.fromScratch() && !step.refineConverged) {
    ++unconverged;
    unconvergedFrames.push_back(frames);
  }
  iterations += step.iterations;
  if (step.reason != RefineReason::None) failedFrames.push_back(frames);
  if (step.reason == RefineReason::DescentFailed) ++descentFailures;
  if (step.reason == RefineReason::CertificateAbove) ++certificateFailures;
  if (step.reason == RefineReason::LearnedStepFailed) ++learnedFailures;
}

nlohmann::json RefinementTally::toJson() const {
  return {{"frames", frames},
          {"refined", refined},
          {"descent_failures", descentFailures},
          {"certificate_failures", certificateFailures},
          {"learned_failures", learnedFailures},
          {"iterations", iterations},
          {"restarted", restarted},
          {"unconverged", unconverged},
          {"unconverged_frames", unconvergedFrames},
          {"failed_frames", failedFrames}};
}

std::string RefinementTally::describe(double threshold, bool refining, bool nameUnconverged) const {
  std::ostringstream out;
  const int failed = descentFailures + certificateFailures + learnedFailures;
  if (refining)
    out << refined << " of " << frames << " frames refined";
  else
    out << failed << " of " << frames << " learned frames fail their certificate";
  std::vector<std::string> why;
  if (descentFailures)
    why.push_back(std::to_string(descentFailures) + ": the learned step raised the step objective above E(rho_k)");
  if (certificateFailures)
    why.push_back(std::to_string(certificateFailures) + ": certificate above " + formatValue(threshold));
  if (learnedFailures) why.push_back(std::to_string(learnedFailures) + ": the learned step failed");
  if (!why.empty()) {
    out << " (";
    for (size_t i = 0; i < why.size(); ++i) out << (i ? ", " : "") << why[i];
    out << ")";
  }
  if (refining && refined) out << ", " << iterations << " L-BFGS iterations";
  if (refining && restarted)
    out << "; " << restarted << " of them from u = 0 (the learned map was too far off to start from)";
  if (refining && unconverged && nameUnconverged) {
    out << "; " << unconverged << " of the steps from u = 0 stopped at the iteration cap before the reference "
        << "solver's tolerance, not certified: frame" << (unconverged > 1 ? "s" : "");
    for (size_t i = 0; i < unconvergedFrames.size(); ++i) out << (i ? ", " : " ") << unconvergedFrames[i];
  }
  if (!refining && failed) {
    out << "; frames";
    const size_t shown = std::min<size_t>(failedFrames.size(), 10);
    for (size_t i = 0; i < shown; ++i) out << (i ? ", " : " ") << failedFrames[i];
    if (failedFrames.size() > shown) out << " and " << failedFrames.size() - shown << " more";
  }
  return out.str();
}

}  // namespace jko
