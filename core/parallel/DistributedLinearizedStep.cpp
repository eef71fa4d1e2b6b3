#include "parallel/DistributedLinearizedStep.h"

#include <ATen/core/grad_mode.h>

#include <stdexcept>

#include "numerics/Errors.h"

namespace jko {

DistributedLinearizedStep::DistributedLinearizedStep(std::shared_ptr<const DistributedJkoObjective> objective,
                                                     LinearizedStepOptions options, int64_t multigridGatherNodes)
    : objective_(std::move(objective)), options_(options) {
  if (options_.furtherNewtonIterations > 0)
    throw InvalidParameter(
        "Gauss-Newton iterations of the further corrections", std::to_string(options_.furtherNewtonIterations),
        "are not split over ranks; take quasi-Newton further corrections (0), or run on one process");
  LinearizedStep::validate(options_);
  split_.slabs = objective_->slabs().multigridSlabs(multigridGatherNodes);
}

LinearizedSlab DistributedLinearizedStep::slab(const DistributedJkoObjective::State& state) const {
  at::NoGradGuard noGrad;
  const DistributedJkoObjective& J = *objective_;
  const SlabDecomposition& slabs = J.slabs();
  const EnergySpec& spec = J.spec();
  LinearizedSlab slab;
  slab.grid = slabs.grid();
  slab.split = split_;
  // The state's own tensors (not views of them), so that the model kept
  // prepared for this slab knows them again.
  slab.density = state.density;
  slab.masses = state.masses;
  slab.weights = state.weights;
  slab.step = this;
  const at::Tensor internal = J.internalVariation(state.density);
  if (spec.potential != PotentialKind::None || spec.kernel != KernelKind::None) {
    const at::Tensor external = J.externalVariation(state.density);
    slab.variation = (internal + external)[0];
    slab.external = slabs.withHalo(external, 1)[0];
  } else {
    slab.variation = internal[0];
  }
  slab.peak = slabs.communicator().max(state.density.max().item<double>());
  return slab;
}

at::Tensor DistributedLinearizedStep::displacement(const DistributedJkoObjective::State& state) const {
  return displacement(slab(state));
}

at::Tensor DistributedLinearizedStep::displacement(const LinearizedSlab& slab) const {
  return linearizedDisplacementOnSlab(slab, objective_->spec(), objective_->tau(), options_).unsqueeze(0);
}

at::Tensor DistributedLinearizedStep::correction(const LinearizedSlab& slab, const at::Tensor& gradient, bool hardStep,
                                                 bool trustRegion) const {
  const CorrectionRule rule = correctionRule(objective_->spec(), options_, hardStep, trustRegion);
  return linearizedCorrectionOnSlab(slab, objective_->spec(), objective_->tau(), options_, gradient, rule);
}

namespace {
// The corrections' problem on this rank's planes: the split objective, its
// gradient and certificate estimate, the split model, sums over the ranks.
class SplitCorrections final : public MapCorrections {
 public:
  SplitCorrections(const DistributedLinearizedStep& step, const DistributedJkoObjective::State& state)
      : step_(step), J_(step.objective()), state_(state), slab_(step.slab(state)) {}
  Evaluation evaluate(const at::Tensor& u) const override {
    const DistributedJkoObjective::Terms terms = J_.evaluate(state_, u, false);
    return {number(terms.objective), terms.deposited};
  }
  at::Tensor stayingPut() const override { return number(J_.energy(state_.density)); }
  at::Tensor density() const override { return state_.density; }
  at::Tensor gradient(const at::Tensor& u, const at::Tensor&) const override {
    return J_.evaluate(state_, u, true).gradient;
  }
  at::Tensor l1ErrorEstimates(const at::Tensor& u, const at::Tensor& gradient,
                              const at::Tensor& deposited) const override {
    return number(J_.l1ErrorEstimate(state_, u, gradient, deposited));
  }
  at::Tensor correction(const at::Tensor& gradient, bool hardStep) const override {
    return step_.correction(slab_, gradient, hardStep);
  }
  at::Tensor gaussNewtonAtMap(const at::Tensor&, const at::Tensor&, const at::Tensor&) const override {
    // The constructor refuses furtherNewtonIterations > 0.
    throw std::logic_error("the Gauss-Newton further corrections are not split over ranks");
  }
  at::Tensor dot(const at::Tensor& a, const at::Tensor& b) const override {
    return number(J_.slabs().communicator().sum(at::dot(a.reshape({-1}), b.reshape({-1})).item<double>()));
  }
  bool withoutInternalEnergy() const override { return J_.spec().internal == InternalKind::None; }

 private:
  static at::Tensor number(double value) { return at::full({1}, value, at::kDouble); }

  const DistributedLinearizedStep& step_;
  const DistributedJkoObjective& J_;
  const DistributedJkoObjective::State& state_;
  const LinearizedSlab slab_;
};
}  // namespace

RefinedDisplacement DistributedLinearizedStep::refine(const DistributedJkoObjective::State& state,
                                                      const at::Tensor& start, int corrections,
                                                      double tolerance) const {
  at::NoGradGuard noGrad;
  const at::Tensor u = start.to(at::kDouble).contiguous();
  if (corrections <= 0) return {u, objective_->deposit(state, u)};
  return refineMap(SplitCorrections(*this, state), options_, u, corrections,
                   tolerance < 0 ? options_.correctionTolerance : tolerance);
}

std::pair<at::Tensor, at::Tensor> DistributedLinearizedStep::step(const at::Tensor& ownedDensity) const {
  return step(objective_->prepare(ownedDensity));
}

std::pair<at::Tensor, at::Tensor> DistributedLinearizedStep::step(const DistributedJkoObjective::State& state) const {
  at::NoGradGuard noGrad;
  const DistributedJkoObjective& J = *objective_;
  at::Tensor u = displacement(state);
  if (options_.corrections > 0) u = refine(state, u, options_.corrections).displacement;
  // A step is a descent step (J(u) <= J(0) = E(rho)): halved until J falls,
  // at most 8 times, then staying put, as the serial step.
  const double initial = J.evaluate(state, at::zeros_like(u), false).objective;
  DistributedJkoObjective::Terms terms = J.evaluate(state, u, false);
  for (int attempt = 0; attempt < 9 && terms.objective > initial; ++attempt) {
    u = u * (attempt < 8 ? 0.5 : 0.0);
    terms = J.evaluate(state, u, false);
  }
  return {J.nextDensity(state, terms.deposited)[0], u[0]};
}

}  // namespace jko
