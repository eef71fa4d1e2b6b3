// Uniform 2D/3D grids with cell-centred nodes (DESIGN.md §2.2, conventions):
// node i sits at origin + i*h and is the centre of a cell of size h, so the
// closed box of the flow is [origin - h/2, origin + (n-1)h + h/2] per axis.
//
// Tensor layout: a density is a tensor of shape (n[0], n[1][, n[2]]) whose
// tensor dimension a is spatial axis a (x, y, z); batched densities have a
// leading batch dimension. Displacements and velocities have shape
// (B, dim, n[0], ...), component a along axis a.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace jko {

struct Grid {
  int dim = 2;
  std::array<int64_t, 3> n{1, 1, 1};
  std::array<double, 3> origin{0, 0, 0};
  std::array<double, 3> spacing{1, 1, 1};

  /// The grid of `cells` cells per axis filling the box [lower, upper] per axis.
  static Grid box(int dim, std::array<int64_t, 3> cells, std::array<double, 3> lower, std::array<double, 3> upper);
  /// n^dim cells filling the unit box [0, 1]^dim.
  static Grid unitBox(int dim, int64_t n);

  /// Throws InvalidParameter unless dim is 2 or 3, n >= 2 and h > 0 per axis.
  void validate() const;

  int64_t numNodes() const;
  double cellVolume() const;       ///< |h| = h_0 h_1 (h_2)
  double smallestSpacing() const;  ///< min_a h_a
  double boxLower(int axis) const { return origin[axis] - 0.5 * spacing[axis]; }
  double boxUpper(int axis) const { return origin[axis] + (n[axis] - 0.5) * spacing[axis]; }
  double boxLength(int axis) const { return n[axis] * spacing[axis]; }
  std::vector<int64_t> shape() const;                    ///< (n0, n1[, n2])
  std::vector<int64_t> batchShape(int64_t batch) const;  ///< (B, n0, n1[, n2])

  /// Node coordinates along `axis`, broadcastable to shape(): float64.
  at::Tensor coordinate(int axis, const at::TensorOptions& options = at::kDouble) const;
  /// Node coordinates, shape (dim, n0, n1[, n2]).
  at::Tensor coordinates(const at::TensorOptions& options = at::kDouble) const;

  bool sameAs(const Grid& other, double relativeTolerance = 1e-9) const;
  std::string describe() const;  ///< e.g. "64x64 grid, spacing 0.015625 x 0.015625"
};

}  // namespace jko
