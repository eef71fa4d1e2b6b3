#include "parallel/DistributedOperatorSolver.h"

#include <cmath>

#include "numerics/Errors.h"
#include "runtime/Timing.h"

namespace jko {

DistributedOperatorSolver::DistributedOperatorSolver(std::shared_ptr<const LearnedOperator> op,
                                                     std::shared_ptr<const DistributedJkoObjective> objective,
                                                     OperatorSolver::Mode mode, AutoSolverOptions autoOptions,
                                                     ReferenceSolverOptions refine)
    : op_(std::move(op)),
      objective_(std::move(objective)),
      mode_(mode),
      autoOptions_(std::move(autoOptions)),
      refine_(std::move(refine)) {
  AutoSolver::validate(autoOptions_);
  ReferenceSolver::validateOptions(autoOptions_.reference);
  ReferenceSolver::validateOptions(refine_);
  // The operator's own problem: refused here, on every rank alike, rather
  // than at the first step.
  learnedStepFor(StepSymmetry());
}

const DistributedLearnedStep& DistributedOperatorSolver::learnedStepFor(const StepSymmetry& symmetry) const {
  const OperatorMetadata& metadata = op_->metadata();
  const EnergySpec& energy = symmetry.conditioned ? symmetry.operatorEnergy : metadata.energy;
  const std::string key = energy.toJson().dump() + energy.potentialHash();
  std::lock_guard<std::mutex> lock(mutex_);
  if (!learned_ || key != learnedKey_) {
    // The panel's own objective when it is the operator's problem, else one
    // for the operator's (collective: every rank's symmetry is the same).
    const bool own = std::abs(objective_->tau() - metadata.tau) <= 1e-12 * metadata.tau &&
                     objective_->spec().sameAs(energy, nullptr, objective_->slabs().grid().dim);
    auto objective =
        own ? objective_ : std::make_shared<const DistributedJkoObjective>(energy, metadata.tau, objective_->slabs());
    learned_ = std::make_unique<DistributedLearnedStep>(op_, std::move(objective));
    learnedKey_ = key;
  }
  return *learned_;
}

CertifiedStep DistributedOperatorSolver::certifiedGuess(const DistributedJkoObjective::State& state, double energyOfRho,
                                                        double correctionTolerance) const {
  const DistributedJkoObjective& J = *objective_;
  const StepSymmetry symmetry =
      guessSymmetry(op_->metadata(), J.spec(), J.tau(), J.slabs().grid().dim, state.mass.item<double>());
  const DistributedLearnedStep& learned = learnedStepFor(symmetry);
  CertifiedStep out;
  out.densityFactor = symmetry.densityFactor;
  const auto start = Clock::now();
  // The operator steps c rho on its own problem (stepThroughSymmetry).
  const double c = symmetry.densityFactor;
  const bool same = &learned.objective() == objective_.get() && c == 1;
  const LearnedStep step = same ? learned.step(state, correctionTolerance)
                                : learned.step(learned.objective().prepare(state.density * c), correctionTolerance);
  out.next = c == 1 ? step.next : step.next / c;
  // Same map u = tau0 v0; the problem's velocity is u / tau = v0 / s.
  const at::Tensor velocity = symmetry.timeFactor == 1 ? step.velocity : step.velocity / symmetry.timeFactor;
  out.displacement = velocity * J.tau();
  out.learnedMs = millisecondsSince(start);
  const auto certifyStart = Clock::now();
  const double initial = std::isnan(energyOfRho) ? J.energy(state.density) : energyOfRho;
  out.learned = out.certificate = J.certify(state, out.displacement, initial);
  out.certificateMs = millisecondsSince(certifyStart);
  out.reason = learnedStepVerdict(out.learned, autoOptions_.threshold);
  return out;
}

CertifiedStep DistributedOperatorSolver::step(const DistributedJkoObjective::State& state,
                                              const ProgressCallback& progress, double energyOfRho) const {
  const DistributedJkoObjective& J = *objective_;
  if (std::isnan(energyOfRho)) energyOfRho = J.energy(state.density);
  auto refined = [&](CertifiedStep& out, const ReferenceSolverOptions& options, const at::Tensor& start) {
    const auto begin = Clock::now();
    recordRefinement(out, DistributedReferenceSolver(objective_, options).step(state, start, progress));
    out.refineMs = millisecondsSince(begin);
    out.certificate = J.certify(state, out.displacement, energyOfRho);
  };
  if (mode_ != OperatorSolver::Mode::Auto) {
    CertifiedStep out = certifiedGuess(state, energyOfRho, 0);
    if (mode_ == OperatorSolver::Mode::Refine) refined(out, refine_, out.displacement);
    return out;
  }
  // A learned step that cannot be taken fails on every rank alike (the
  // split step's checks are agreed over the ranks).
  CertifiedStep out = guessOrFailure(
      [&] { return certifiedGuess(state, energyOfRho, autoOptions_.correctUntil * autoOptions_.threshold); });
  if (out.reason == RefineReason::None) return out;
  const RefinementPlan plan = refinementPlan(out, autoOptions_);
  out.restarted = plan.restarted;
  ReferenceSolverOptions options = autoOptions_.reference;
  if (!plan.fromScratch)
    options.accept = [&J, &state, target = plan.target](const at::Tensor& u, const at::Tensor& g) {
      return J.l1ErrorEstimate(state, u, g, J.deposit(state, u)) <= target;
    };
  refined(out, options, plan.fromScratch ? at::Tensor() : out.displacement);
  return out;
}

}  // namespace jko
