// The map form of one JKO step (DESIGN.md §2.2):
//   J(u) = E(rho') + (1 / (2 tau)) sum_i w_i |u_i|^2 |h|,
//   rho' = deposit(S^-1 rho, u),  w_i = max(rho_i, |m_i|),
// with every energy evaluated on exactly the deposited output rho'. The
// reference solver minimises J over a free displacement field u; the learned
// operator is trained with J as its loss.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <memory>

#include "numerics/Energy.h"
#include "numerics/PushForward.h"

namespace jko {

/// What J needs of the current density rho_k, computed once per step.
struct JkoState {
  at::Tensor density;  ///< rho_k, (B, n...), float64
  at::Tensor masses;   ///< m = S^-1 rho_k
  at::Tensor weights;  ///< transport weights max(rho, |m|)
  at::Tensor mass;     ///< (B,) total mass sum rho |h|
};

/// Per-sample terms of J, each (B,), and the raw deposited density.
struct JkoTerms {
  at::Tensor objective, energy, transport;
  at::Tensor deposited;  ///< rho' before the output limiter
};

class JkoObjective {
 public:
  JkoObjective(std::shared_ptr<const Energy> energy, double tau);

  const Energy& energy() const { return *energy_; }
  std::shared_ptr<const Energy> energyPointer() const { return energy_; }
  const PushForward& pushForward() const { return pushForward_; }
  const Grid& grid() const { return energy_->grid(); }
  double tau() const { return tau_; }

  /// Validates rho (finite, non-negative, positive mass, shape of the grid)
  /// and computes the pre-filtered masses and transport weights. Accepts an
  /// unbatched density too.
  JkoState prepare(const at::Tensor& rho) const;

  /// J and its parts for displacements u (B, dim, n...), differentiable in u.
  JkoTerms evaluate(const JkoState& state, const at::Tensor& displacement) const;

  /// The next density: the output limiter applied to the deposited density;
  /// for an energy with a maximum principle (keepsMaximum) also clipped at
  /// the largest value of rho_k, the excess moved to nearby nodes.
  at::Tensor nextDensity(const JkoState& state, const at::Tensor& deposited) const;
  /// Whether the exact step never exceeds max rho_k: an internal energy
  /// alone (heat, porous medium), no potential, no interaction.
  bool keepsMaximum() const;

 private:
  std::shared_ptr<const Energy> energy_;
  PushForward pushForward_;
  double tau_;
};

/// The maximum-principle clip of JkoObjective::nextDensity at `bound` (per
/// sample, broadcastable), on planes of a grid: `window` (B, planes, ...)
/// holds the planes of the first axis that are wanted plus `before` and
/// `after` more around them (two suffice; 0 where the window reaches a wall),
/// and the wanted planes come back. `sumAll` sums per-sample values (B,)
/// over the whole grid: the identity when the window is the whole grid.
at::Tensor clipAtBound(const at::Tensor& window, int64_t before, int64_t after, const at::Tensor& bound,
                       const std::function<at::Tensor(const at::Tensor&)>& sumAll);

/// Throws InvalidDensity unless rho (B, n...) has the grid's shape, finite
/// non-negative values and positive mass per sample.
void validateDensity(const at::Tensor& rho, const Grid& grid);

}  // namespace jko
