// The linearised JKO step (numerics/LinearizedStep) split over ranks, each
// rank holding a slab of planes of the density and of the displacement, as
// the reference solver's split step (DistributedReferenceSolver.h): the
// state (pre-filter, weights) and the energy's first variation from the
// split objective, the elliptic model on the rank's planes with three planes
// of halo, its conjugate gradients' inner products summed over the ranks,
// and the multigrid V-cycle split too (numerics/Multigrid.h: the serial
// cycle on every rank's planes, its small levels gathered). The step's
// descent check and next density are the split objective's; its
// Gauss-Newton corrections (refine) are the serial step's algorithm
// (refineMap) on the split objective, its certificate and this model.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <utility>

#include "numerics/LinearizedStep.h"
#include "parallel/DistributedReferenceSolver.h"

namespace jko {

class DistributedLinearizedStep {
 public:
  /// Refuses options the split step does not take yet (the further
  /// corrections as Gauss-Newton steps at the map). `multigridGatherNodes`:
  /// MultigridSlabs::gatherNodes (a test splits a small grid's levels with a
  /// smaller one).
  DistributedLinearizedStep(std::shared_ptr<const DistributedJkoObjective> objective,
                            LinearizedStepOptions options = {},
                            int64_t multigridGatherNodes = MultigridSlabs{}.gatherNodes);
  const DistributedJkoObjective& objective() const { return *objective_; }
  const LinearizedStepOptions& options() const { return options_; }

  /// The model's fields on this rank's planes for the state of rho_k (the
  /// energy's first variation among them): one slab serves the step and
  /// its corrections, whose model stays prepared for it. Collective.
  LinearizedSlab slab(const DistributedJkoObjective::State& state) const;

  /// The displacement of the Gauss-Newton step from u = 0 on the owned
  /// planes, (1, dim, planes, ...): LinearizedStep::displacement's owned
  /// planes, to rounding. Collective.
  at::Tensor displacement(const DistributedJkoObjective::State& state) const;
  at::Tensor displacement(const LinearizedSlab& slab) const;

  /// LinearizedStep::correction on the owned planes for the objective's
  /// gradient there (1, dim, planes, ...). Collective.
  at::Tensor correction(const LinearizedSlab& slab, const at::Tensor& gradient, bool hardStep,
                        bool trustRegion = true) const;

  /// LinearizedStep::refine on the owned planes of `start` (1, dim, planes,
  /// ...): the same corrections, line searches, quasi-Newton pairs and
  /// certificate rules, with J, its gradient, the certificate's estimates
  /// and the inner products summed over the ranks. Collective.
  RefinedDisplacement refine(const DistributedJkoObjective::State& state, const at::Tensor& start, int corrections,
                             double tolerance = -1) const;

  /// One step from the owned planes of rho (planes, ...): the next density's
  /// owned planes (planes, ...) and the displacement (dim, planes, ...),
  /// corrected options().corrections times, then halved until J falls below
  /// staying put as LinearizedStep::step does. Collective.
  std::pair<at::Tensor, at::Tensor> step(const at::Tensor& ownedDensity) const;
  /// The same from the prepared state of rho_k (a caller that certifies the
  /// step with it prepares once).
  std::pair<at::Tensor, at::Tensor> step(const DistributedJkoObjective::State& state) const;

 private:
  std::shared_ptr<const DistributedJkoObjective> objective_;
  LinearizedStepOptions options_;
  LinearizedSplit split_;
};

}  // namespace jko
