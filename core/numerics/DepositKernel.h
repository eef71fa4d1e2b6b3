// A fused CPU kernel of the quadratic B-spline deposit (DESIGN.md §2.2,
// PushForward::deposit) with its hand-written adjoint, as an autograd
// function: one pass over the particles instead of ~40 tensor operations.
#pragma once

#include <ATen/ATen.h>

#include "numerics/Grid.h"

namespace jko {

/// Whether the fused kernel handles these tensors (CPU, float64).
bool fusedDepositApplies(const at::Tensor& masses, const at::Tensor& displacement);

/// deposit(masses (B, n...), displacement (B, dim, n...)) -> density (B, n...),
/// differentiable in both arguments.
at::Tensor fusedDeposit(const at::Tensor& masses, const at::Tensor& displacement, const Grid& grid);

}  // namespace jko
