#include "parallel/DistributedLinearizedStep.h"

#include <ATen/core/grad_mode.h>

#include "numerics/Errors.h"

namespace jko {

DistributedLinearizedStep::DistributedLinearizedStep(std::shared_ptr<const DistributedJkoObjective> objective,
                                                     LinearizedStepOptions options, int64_t multigridGatherNodes)
    : objective_(std::move(objective)), options_(options) {
  if (options_.corrections > 0)
    throw InvalidParameter("Gauss-Newton corrections of the linearised step", std::to_string(options_.corrections),
                           "are not split over ranks; run the corrected step on one process");
  LinearizedStep::validate(options_);
  const SlabDecomposition& slabs = objective_->slabs();
  split_.slabs.communicator = slabs.communicatorPointer();
  split_.slabs.gatherNodes = multigridGatherNodes;
  split_.slabs.firstPlane = {0};
  for (int r = 0; r < slabs.ranks(); ++r) split_.slabs.firstPlane.push_back(slabs.owned(r).hi);
}

at::Tensor DistributedLinearizedStep::displacement(const DistributedJkoObjective::State& state) const {
  at::NoGradGuard noGrad;
  const DistributedJkoObjective& J = *objective_;
  const SlabDecomposition& slabs = J.slabs();
  const EnergySpec& spec = J.spec();
  LinearizedSlab slab;
  slab.grid = slabs.grid();
  slab.split = split_;
  slab.density = state.density[0];
  slab.masses = state.masses[0];
  slab.weights = state.weights[0];
  const at::Tensor internal = J.internalVariation(state.density);
  if (spec.potential != PotentialKind::None || spec.kernel != KernelKind::None) {
    const at::Tensor external = J.externalVariation(state.density);
    slab.variation = (internal + external)[0];
    slab.external = slabs.withHalo(external, 1)[0];
  } else {
    slab.variation = internal[0];
  }
  slab.peak = slabs.communicator().max(state.density.max().item<double>());
  return linearizedDisplacementOnSlab(slab, spec, J.tau(), options_).unsqueeze(0);
}

std::pair<at::Tensor, at::Tensor> DistributedLinearizedStep::step(const at::Tensor& ownedDensity) const {
  return step(objective_->prepare(ownedDensity));
}

std::pair<at::Tensor, at::Tensor> DistributedLinearizedStep::step(const DistributedJkoObjective::State& state) const {
  at::NoGradGuard noGrad;
  const DistributedJkoObjective& J = *objective_;
  at::Tensor u = displacement(state);
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
