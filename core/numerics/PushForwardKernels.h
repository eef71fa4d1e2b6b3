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

/// Whether the fused limiter handles this tensor (CPU, float64, no gradient).
bool fusedLimitApplies(const at::Tensor& raw);

/// PushForward::limit on CPU: negative mass taken from the positive nodes of
/// its 3^d neighbourhood in proportion to their mass, then each sample
/// rescaled to targetMass (B,) = sum r |h|.
at::Tensor fusedLimit(const at::Tensor& raw, const at::Tensor& targetMass, const Grid& grid);

}  // namespace jko
