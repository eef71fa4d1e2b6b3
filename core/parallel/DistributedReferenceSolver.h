// The reference JKO step (numerics/ReferenceSolver) split over ranks: each
// rank holds a slab of planes of the density and of the displacement, and
// computes the objective and its gradient on them (docs/design.md, "Steps
// split over ranks"):
//   * pre-filter m = S^-1 rho: the slab with 24 planes of halo, solved
//     locally; S^-1 decays like 0.172^k (the root of r^2 + 6 r + 1), so the
//     artificial ends of the window change the owned planes by below 1e-18
//     relative;
//   * deposit: the slab's particles on its planes plus a halo covering the
//     largest displacement along the split axis, the halo summed onto the
//     planes' owners; its adjoint sends dE/drho' back the same way;
//   * energies and transport cost on the owned planes, summed over ranks;
//   * the output limiter and the maximum-principle clip with two planes of
//     halo and the sums over ranks they need;
//   * the same metric-preconditioned L-BFGS, its inner products over ranks.
// The internal energies and potentials are local; the quadratic interaction
// takes the density's moments (one more sum); the other interaction kernels
// a convolution by transforms split over the ranks (parallel/SlabConvolution).
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "numerics/Energy.h"
#include "numerics/PushForward.h"
#include "numerics/ReferenceSolver.h"
#include "numerics/StepCertificate.h"
#include "parallel/SlabConvolution.h"
#include "parallel/SlabDecomposition.h"

namespace jko {

class DistributedJkoObjective {
 public:
  /// Collective (an interaction kernel's transform is built over the ranks).
  /// A potential given by values holds the whole grid's, or this rank's
  /// planes alone.
  DistributedJkoObjective(const EnergySpec& spec, double tau, SlabDecomposition slabs);

  const SlabDecomposition& slabs() const { return slabs_; }
  double tau() const { return tau_; }
  const EnergySpec& spec() const { return spec_; }
  /// E of the whole density from its owned planes (1, planes, ...) or
  /// (planes, ...). Collective.
  double energy(const at::Tensor& owned) const;
  /// The internal energy alone, likewise. Collective.
  double internalEnergy(const at::Tensor& owned) const;
  bool keepsMaximum() const;
  /// V + W * rho at the owned nodes (1, planes, ...): the first variation
  /// without the internal energy's part U'(rho), the whole density's (the
  /// quadratic interaction through its moments). Collective.
  at::Tensor externalVariation(const at::Tensor& owned) const;
  /// U'(rho) at the owned nodes (1, planes, ...): the internal energy's
  /// part of the first variation (pointwise).
  at::Tensor internalVariation(const at::Tensor& owned) const;
  /// V on the owned planes (planes, ...), undefined without a potential.
  at::Tensor potentialOnOwned() const;

  /// What J needs of the owned planes of rho_k (1, planes, ...).
  struct State {
    at::Tensor density, masses, weights;  ///< owned planes, (1, planes, ...)
    at::Tensor mass;                      ///< (1,), the whole density's
    at::Tensor maximum;                   ///< the whole density's largest value, broadcastable
  };
  /// Validates the owned planes (shape, finite, non-negative; positive mass
  /// over all ranks) and pre-filters them. Collective.
  State prepare(const at::Tensor& ownedDensity) const;

  struct Terms {
    double objective = 0, energy = 0, transport = 0;  ///< over all ranks
    at::Tensor deposited;                             ///< rho' on the owned planes, before the limiter
    at::Tensor gradient;                              ///< dJ/du on the owned planes, when asked for
  };
  /// J(u) for u (1, dim, planes, ...) on the owned planes. Collective.
  Terms evaluate(const State& state, const at::Tensor& displacement, bool withGradient) const;
  /// The limiter (and the clip of the maximum principle) on the owned planes. Collective.
  at::Tensor nextDensity(const State& state, const at::Tensor& deposited) const;
  /// The limiter alone (PushForward::limit: negative mass spread onto its
  /// box's positive nodes, the mass rescaled to the state's), as the
  /// learned step takes it. Collective.
  at::Tensor limit(const State& state, const at::Tensor& deposited) const;
  /// The step's certificate (numerics/StepCertificate) for u on the owned
  /// planes, its figures over the whole grid; `initialObjective` is J(0).
  /// Costs an evaluation with its gradient and one deposit. Collective.
  StepCertificate certify(const State& state, const at::Tensor& displacement, double initialObjective) const;
  /// StepCertifier::gridScaleDefect of a map-form frame on the owned planes.
  /// Collective.
  double gridScaleDefect(const at::Tensor& frame) const;
  /// rho' = deposit(m, u) on the owned planes, for u (1, dim, planes, ...),
  /// without the energies. Collective.
  at::Tensor deposit(const State& state, const at::Tensor& displacement) const;
  /// StepCertificate::l1ErrorEstimate of u (1, dim, planes, ...) with its
  /// gradient g and deposit: one deposit, the sums over the whole grid (as
  /// StepCertifier::l1ErrorEstimates). Collective.
  double l1ErrorEstimate(const State& state, const at::Tensor& displacement, const at::Tensor& gradient,
                         const at::Tensor& deposited) const;
  /// The energy's convexity over the whole grid (the least lambda of the slabs).
  const EnergyConvexity& convexity() const { return convexity_; }

 private:
  const PushForward& pushForwardOn(SlabDecomposition::Range window) const;
  /// This rank's deposit of u on the planes its particles reach, and that
  /// halo (the same on every rank). Collective.
  struct WindowDeposit {
    at::Tensor deposited;
    int64_t halo = 0;
  };
  WindowDeposit depositOnWindow(const State& state, const at::Tensor& u) const;
  /// H0 = tau / (|h| max(w, 1e-12 max w)) on the owned nodes, and mu =
  /// 1 + lambda tau floored at 0.1 (StepCertifier's).
  at::Tensor inverseMetric(const State& state) const;
  double modulus() const;
  /// E over all ranks from the owned planes (1, planes, ...), with one more
  /// per-rank number `other` summed in the same reduction; `differentiable`
  /// has this rank's part of dE/drho as its gradient. Collective.
  struct WholeEnergy {
    double value = 0, other = 0;
    at::Tensor differentiable;
  };
  WholeEnergy wholeEnergy(const at::Tensor& owned, const at::Tensor& other) const;

  SlabDecomposition slabs_;
  EnergySpec spec_;
  double tau_;
  std::unique_ptr<Energy> ownedEnergy_;           ///< internal energy and potential on the owned planes
  at::Tensor momentRows_;                         ///< quadratic interaction: (d + 2, owned nodes)
  std::unique_ptr<SlabConvolution> convolution_;  ///< the other kernels
  EnergyConvexity convexity_;
  mutable std::mutex cacheMutex_;
  mutable std::map<std::pair<int64_t, int64_t>, std::unique_ptr<PushForward>> pushForwards_;
};

/// The grid-scale completion's window on this rank's planes: kHalo planes
/// of halo from the neighbours, dot products summed over the ranks.
GridScaleCompletion::Window completionWindow(const SlabDecomposition& slabs);

/// completeFrame split over the ranks: the grid-scale completion of another
/// solver's frame `next` (this rank's planes) for the step from `state`.
/// Collective.
at::Tensor completeFrame(const DistributedJkoObjective& J, const DistributedJkoObjective::State& state,
                         const at::Tensor& next, double energyOfRho, ReferenceStep& step);

/// finishFrame split over the ranks (`solved` and `next`: this rank's
/// planes). Collective.
FinishedFrame finishFrame(const DistributedJkoObjective& J, const ReferenceStep& solved);
FinishedFrame finishFrame(const DistributedJkoObjective& J, const DistributedJkoObjective::State& state,
                          const at::Tensor& next, double energyOfRho, bool complete);

class DistributedReferenceSolver {
 public:
  DistributedReferenceSolver(std::shared_ptr<const DistributedJkoObjective> objective,
                             ReferenceSolverOptions options = {});
  const DistributedJkoObjective& objective() const { return *objective_; }

  /// One step from the owned planes of rho (planes, ...), from the owned
  /// planes of `initialDisplacement` (dim, planes, ...) when given. The
  /// step's `next` and `displacement` are the owned planes; its figures are
  /// the whole grid's. Collective: every rank calls it.
  ReferenceStep step(const at::Tensor& ownedDensity, const at::Tensor& initialDisplacement = {},
                     const ProgressCallback& progress = {}) const;
  /// The same from the prepared state of rho_k (a caller that certifies the
  /// step with it prepares once).
  ReferenceStep step(const DistributedJkoObjective::State& state, const at::Tensor& initialDisplacement = {},
                     const ProgressCallback& progress = {}) const;
  /// K steps, each warm-started from the previous displacement. Collective.
  std::vector<ReferenceStep> rollout(const at::Tensor& ownedDensity, int steps,
                                     const ProgressCallback& progress = {}) const;

 private:
  std::shared_ptr<const DistributedJkoObjective> objective_;
  ReferenceSolverOptions options_;
};

}  // namespace jko
