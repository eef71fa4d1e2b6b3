#include "parallel/DistributedLearnedStep.h"

#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>

#include "numerics/Errors.h"
#include "parallel/SlabGridTransfer.h"

namespace jko {

DistributedLearnedStep::DistributedLearnedStep(std::shared_ptr<const LearnedOperator> op,
                                               std::shared_ptr<const DistributedJkoObjective> objective)
    : operator_(std::move(op)), objective_(std::move(objective)) {
  const OperatorMetadata& metadata = operator_->metadata();
  const SlabDecomposition& slabs = objective_->slabs();
  const Grid& grid = slabs.grid();
  if (metadata.dim != grid.dim)
    throw InvalidParameter("operator", std::to_string(metadata.dim) + "D",
                           "steps " + std::to_string(grid.dim) + "D densities only");
  if (std::abs(objective_->tau() - metadata.tau) > 1e-12 * metadata.tau)
    throw InvalidParameter("tau", formatValue(objective_->tau()),
                           "the split learned step takes the operator's own, " + formatValue(metadata.tau));
  if (!metadata.conditioning.any() && !objective_->spec().sameAs(metadata.energy, nullptr, grid.dim))
    throw InvalidParameter("energy", objective_->spec().describe(),
                           "this operator steps " + metadata.energy.describe() + " only");
  // The linearised step: the base of the network's velocity, and the
  // corrections' model (as LearnedOperator::linearizedOn's).
  base_ = std::make_unique<DistributedLinearizedStep>(objective_, operator_->baseOptions());
  // The energy on the network grid, whole on every rank: a potential given
  // by values averaged onto it from the ranks' planes.
  const EnergySpec& spec = objective_->spec();
  at::Tensor averagedPotential;
  if (spec.potential == PotentialKind::Values)
    averagedPotential =
        averageOntoFromSlabs(objective_->potentialOnOwned().unsqueeze(0), slabs, operator_->networkGrid(grid))[0];
  networkEnergy_ = operator_->networkEnergy(spec, grid, averagedPotential);
}

at::Tensor DistributedLearnedStep::velocity(const DistributedJkoObjective::State& state) const {
  at::NoGradGuard noGrad;
  const SlabDecomposition& slabs = objective_->slabs();
  LearnedOperator::FineGridWork fine;
  fine.grid = slabs.grid();
  fine.average = [&](const at::Tensor& field, const Grid& coarse) {
    return averageOntoFromSlabs(field, slabs, coarse);
  };
  fine.interpolate = [&](const at::Tensor& field) { return interpolateOntoSlab(field, slabs); };
  fine.baseVelocity = [&](JkoState&) { return base_->displacement(state) / objective_->tau(); };
  const LearnedOperator::NetworkInputs in = operator_->networkInputs(*networkEnergy_, state.density, fine);
  return operator_->velocity(in, fine);
}

LearnedStep DistributedLearnedStep::step(const at::Tensor& ownedDensity) const {
  return step(objective_->prepare(ownedDensity));
}

LearnedStep DistributedLearnedStep::step(const DistributedJkoObjective::State& state,
                                         double correctionTolerance) const {
  at::NoGradGuard noGrad;
  at::Tensor v = velocity(state);
  const double tau = objective_->tau();
  at::Tensor deposited;
  if (operator_->gaussNewton() > 0) {
    // The Gauss-Newton corrections of the learned map, as the serial step's.
    const RefinedDisplacement refined =
        base_->refine(state, tau * v, operator_->gaussNewton(), std::max(0.0, correctionTolerance));
    v = refined.displacement / tau;
    deposited = refined.deposited;
  } else {
    deposited = objective_->deposit(state, tau * v);
  }
  LearnedStep out;
  out.next = objective_->limit(state, deposited)[0];
  out.velocity = v[0];
  return out;
}

}  // namespace jko
