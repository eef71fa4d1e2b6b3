// The learned operator's step (operator/LearnedOperator.h) split over ranks
// by the slabs of the split reference step (DistributedReferenceSolver.h):
// the density's grid's work on each rank's planes (the linearised base by
// DistributedLinearizedStep, the averages onto the network grid summed over
// the ranks, the network's outputs interpolated onto the rank's planes, the
// deposit and the limiter), the network on its coarse grid whole on every
// rank; the operator's Gauss-Newton corrections by the split linearised
// step's (DistributedLinearizedStep::refine: the serial algorithm, its sums
// over the ranks).
#pragma once

#include <ATen/ATen.h>

#include <memory>

#include "operator/LearnedOperator.h"
#include "parallel/DistributedLinearizedStep.h"
#include "parallel/DistributedReferenceSolver.h"

namespace jko {

class DistributedLearnedStep {
 public:
  /// The operator steps the objective's energy at its tau: they must be
  /// the operator's (or one its conditioning covers), and its further
  /// corrections quasi-Newton (LearnedOperator::setFurtherNewton(0)); else
  /// InvalidParameter says why. Collective.
  DistributedLearnedStep(std::shared_ptr<const LearnedOperator> op,
                         std::shared_ptr<const DistributedJkoObjective> objective);

  /// The operator's velocity v on the owned planes, (1, dim, planes, ...):
  /// the serial LearnedOperator::velocity's owned planes to rounding.
  /// Collective.
  at::Tensor velocity(const DistributedJkoObjective::State& state) const;

  /// One step from the owned planes of rho (planes, ...): `next` (planes,
  /// ...) and `velocity` (dim, planes, ...), with the operator's
  /// corrections, as LearnedOperator::step's owned planes. Collective.
  LearnedStep step(const at::Tensor& ownedDensity) const;
  /// The same from the prepared state of rho_k; the corrections stop once
  /// the certificate is below `correctionTolerance` (0: all of them, as
  /// LearnedOperator::step's).
  LearnedStep step(const DistributedJkoObjective::State& state, double correctionTolerance = 0) const;
  const DistributedJkoObjective& objective() const { return *objective_; }

 private:
  std::shared_ptr<const LearnedOperator> operator_;
  std::shared_ptr<const DistributedJkoObjective> objective_;
  std::unique_ptr<DistributedLinearizedStep> base_;
  std::shared_ptr<const Energy> networkEnergy_;
};

}  // namespace jko
