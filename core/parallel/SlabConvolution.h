// The interaction's convolution (W * rho)_j = sum_k W(x_j - x_k) rho_k |h|
// (numerics/Energy, convolve) with the density split into slabs of planes
// over ranks (parallel/SlabDecomposition): the same zero-padded transform
// on 2 n_a nodes per axis, taken as a pencil transform with two transposes
// (docs/design.md, "Interaction kernels split over ranks"):
//   1. each rank transforms its planes along the other axes (real-to-
//      complex along the last), padded to 2 n_a;
//   2. a transpose (one all-to-all exchange) gives each rank a block of
//      those columns with every plane;
//   3. along the first axis: the transform padded to 2 n_0, the product
//      with the kernel's spectrum (this rank's columns of it), the inverse;
//   4. the transpose back, and the inverse along the other axes.
// Every rank holds O(n^d / ranks) of the padded transforms; the kernel's
// spectrum is built the same way, from the planes of the padded kernel each
// rank computes itself. The quadratic kernel needs none of this: its
// convolution is a sum of the density's moments.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "numerics/Energy.h"
#include "parallel/SlabDecomposition.h"

namespace jko {

class SlabConvolution {
 public:
  /// The kernel of `spec` (attractive-repulsive or Keller-Segel) on the
  /// slabs' grid; transforms it. Collective.
  SlabConvolution(const EnergySpec& spec, SlabDecomposition slabs);

  /// W * rho at the owned nodes from the owned planes (B, planes, ...),
  /// float64. Collective.
  at::Tensor operator()(const at::Tensor& owned) const;

 private:
  /// Step 1: planes (B, p, ...) real, padded along the other axes, to
  /// their transform (B, p, C, ...) complex.
  at::Tensor transformAcross(const at::Tensor& planes) const;
  /// Step 2: (B, p, C, ...) on every rank, rank r holding planesOf[r]
  /// planes in rank order, to this rank's columns of every plane
  /// (B, sum of planesOf, columns, ...).
  at::Tensor toColumns(const at::Tensor& planes, const std::vector<int64_t>& planesOf) const;
  /// Step 4's transpose: this rank's columns of the first n_0 planes
  /// (B, n_0, columns, ...) to its owned planes of every column (B, p, C, ...).
  at::Tensor toPlanes(const at::Tensor& columns) const;

  SlabDecomposition slabs_;
  std::vector<SlabDecomposition::Range> columnsOf_;  ///< per rank, along axis 2 of the transform
  std::vector<int64_t> acrossDims_, acrossSizes_;    ///< the other axes of (B, p, ...) and 2 n_a
  at::Tensor kernelColumns_;                         ///< (2 n_0, columns, ...) complex, times |h|
};

}  // namespace jko
