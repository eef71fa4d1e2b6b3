// Mass-conserving push-forward of a density by a displacement field, onto the
// same grid, in a closed box (DESIGN.md §2.2, the pre-filtered quadratic
// B-spline deposit "pf"):
//   1. m = S^-1 rho per axis, S = tridiag(1/8, 3/4, 1/8) with corners 7/8;
//   2. the mass m_i |h| of node i moves to clamp(x_i + u_i) and is deposited
//      with the quadratic B-spline (weights (1/2)(1/2 - d)^2, 3/4 - d^2,
//      (1/2)(1/2 + d)^2), weights beyond the walls folded onto edge nodes;
//   3. the output limiter keeps it non-negative and rescales to the exact mass.
// At u = 0 step 2 is S itself, so the push-forward returns rho exactly.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <mutex>
#include <vector>

#include "numerics/Grid.h"

namespace jko {

class PushForward {
 public:
  explicit PushForward(const Grid& grid);

  const Grid& grid() const { return grid_; }

  /// Particle masses (as densities) m = S^-1 rho along each axis; batched
  /// (B, n0, n1[, n2]). sum m = sum rho exactly.
  at::Tensor prefilter(const at::Tensor& rho) const;

  /// Density deposited by the quadratic B-spline from masses (B, n...) moved
  /// by `displacement` (B, dim, n...), in physical units. Differentiable in
  /// both arguments. The output has the masses' dtype.
  at::Tensor deposit(const at::Tensor& masses, const at::Tensor& displacement) const;
  /// The same with tensor operations only (any device); deposit() uses a
  /// fused kernel on CPU float64.
  at::Tensor depositByTensorOperations(const at::Tensor& masses, const at::Tensor& displacement) const;

  /// Output positivity limiter (DESIGN.md §2.2 step 5): moves negative mass
  /// onto positive neighbours within a 3^d box, clamps at zero, and rescales
  /// each sample to `mass` (B,) = sum_j r_j |h|. Throws InvalidDensity when
  /// `raw` holds NaN or infinite values (a non-finite displacement or
  /// density upstream), so that no step ever returns them.
  at::Tensor limit(const at::Tensor& raw, const at::Tensor& mass) const;
  /// The limiter's local part: negative values moved onto the positive
  /// nodes of their 3^d box, then clamped at zero (no rescaling). A node's
  /// value depends on the raw values up to two nodes away.
  at::Tensor spreadNegativeMass(const at::Tensor& raw) const;
  /// The same with tensor operations only (any device, differentiable);
  /// limit() uses a fused kernel on CPU float64 without gradients.
  at::Tensor limitByTensorOperations(const at::Tensor& raw, const at::Tensor& mass) const;

  /// rho' = limit(deposit(prefilter(rho), u)), mass of rho kept exactly.
  at::Tensor apply(const at::Tensor& rho, const at::Tensor& displacement) const;

  /// sum_j rho_j |h| per sample, shape (B,).
  at::Tensor mass(const at::Tensor& rho) const;

  /// det(I + grad u) at the nodes, (B, n...): the Jacobian determinant of the
  /// map x -> x + u(x), central differences inside, one-sided at the walls.
  /// A value <= 0 marks a node where the map folds over (or collapses).
  at::Tensor jacobianDeterminant(const at::Tensor& displacement) const;

  /// Where a displacement folds the map, per sample (B,): the share of the
  /// nodes with det(I + grad u) <= 0 and the share of the mass of rho on
  /// them. A diagnostic (the deposit stays valid on folded maps: mass exact,
  /// non-negative); it is not evaluated inside apply() or deposit().
  struct Folding {
    at::Tensor nodeFraction, massFraction;
  };
  Folding folding(const at::Tensor& rho, const at::Tensor& displacement) const;

 private:
  at::Tensor inverseFilter(int axis, const at::Device& device) const;

  /// Thomas-algorithm factors of S per axis: modified super-diagonal and
  /// inverse pivots.
  struct FilterFactors {
    std::vector<double> upper, inversePivot;
  };

  Grid grid_;
  std::vector<FilterFactors> factors_;
  std::vector<at::Tensor> inverseFilters_;  ///< S^-1 per axis, float64 CPU (non-CPU devices)
  mutable std::mutex cacheMutex_;
  mutable std::map<std::pair<int, std::string>, at::Tensor> deviceFilters_;
};

}  // namespace jko
