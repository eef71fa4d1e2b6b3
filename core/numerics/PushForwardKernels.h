// Fused CPU kernels of the push-forward (DESIGN.md §2.2): the quadratic
// B-spline deposit with its hand-written adjoint, as an autograd function
// (one pass over the particles instead of ~40 tensor operations), and the
// output limiter (one pass over the nodes instead of ~15 operations).
#pragma once

#include <ATen/ATen.h>

#include "numerics/Grid.h"

namespace jko {

/// Whether the fused kernel handles these tensors (CPU, float64).
bool fusedDepositApplies(const at::Tensor& masses, const at::Tensor& displacement);

/// deposit(masses (B, n...), displacement (B, dim, n...)) -> density (B, n...),
/// differentiable in both arguments.
at::Tensor fusedDeposit(const at::Tensor& masses, const at::Tensor& displacement, const Grid& grid);

/// Whether fusedObjectiveGradient handles these tensors (CPU, float64).
bool fusedObjectiveGradientApplies(const at::Tensor& masses, const at::Tensor& displacement);

/// The gradient in u of the map-form objective (DESIGN.md §2.2)
///   J(u) = E(deposit(m, u)) + sum_i c_i |u_i|^2 / 2,   c_i = w_i |h| / tau,
/// in one pass over the particles, without autograd: the deposit's adjoint
/// applied to `energyGradient` (dE/drho' on the nodes, (B, n...)) plus c u.
/// `transportWeight` is c (B, n...), `inverseMetric` the diagonal of H0
/// (B, n...). Returns g (B, dim, n...), sum_i H0_i |g_i|^2 and
/// sum_i c_i |u_i|^2 / 2 (the transport cost) per sample (B,). The sums are
/// taken over fixed chunks in chunk order: the same on any thread count.
struct ObjectiveGradient {
  at::Tensor gradient, metricNorm, transport;
};
ObjectiveGradient fusedObjectiveGradient(const at::Tensor& masses, const at::Tensor& displacement,
                                         const at::Tensor& energyGradient, const at::Tensor& transportWeight,
                                         const at::Tensor& inverseMetric, const Grid& grid);

/// Whether the fused limiter handles this tensor (CPU, float64, no gradient).
bool fusedLimitApplies(const at::Tensor& raw);

/// PushForward::limit on CPU: negative mass taken from the positive nodes of
/// its 3^d neighbourhood in proportion to their mass, then each sample
/// rescaled to targetMass (B,) = sum r |h|.
at::Tensor fusedLimit(const at::Tensor& raw, const at::Tensor& targetMass, const Grid& grid);

}  // namespace jko
