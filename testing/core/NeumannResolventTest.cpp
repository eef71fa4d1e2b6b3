// The resolvent of the features against its definition: (1 - c Lap) R f = f
// for the cell-centred Laplacian with mirrored walls, on grids with unequal
// node counts and spacings, in 2D and 3D.
#include <gtest/gtest.h>

#include <array>

#include "numerics/NeumannResolvent.h"

namespace jko {
namespace {

// (1 - c Lap) u for u (B, n...), Lap the (2d + 1)-point Laplacian, u_{-1} = u_0 and u_n = u_{n-1}.
at::Tensor applyShiftedLaplacian(const at::Tensor& u, const Grid& grid, double c) {
  at::Tensor laplacian = at::zeros_like(u);
  for (int a = 0; a < grid.dim; ++a) {
    const int64_t n = grid.n[a];
    const int dim = a + 1;
    const at::Tensor below = at::cat({u.narrow(dim, 0, 1), u.narrow(dim, 0, n - 1)}, dim);
    const at::Tensor above = at::cat({u.narrow(dim, 1, n - 1), u.narrow(dim, n - 1, 1)}, dim);
    laplacian = laplacian + (below - 2 * u + above) / (grid.spacing[a] * grid.spacing[a]);
  }
  return u - c * laplacian;
}

TEST(NeumannResolvent, InvertsTheShiftedLaplacian) {
  const auto options = at::TensorOptions().dtype(at::kDouble);
  const std::vector<Grid> grids{Grid::box(2, {7, 10, 1}, {0, 0, 0}, {1, 0.6, 1}),
                                Grid::box(3, {5, 6, 4}, {0, 0, 0}, {1, 0.5, 2}),
                                Grid::box(3, {12, 9, 16}, {0, 0, 0}, {0.7, 1, 1.3})};
  for (const Grid& grid : grids) {
    std::array<at::Tensor, 3> bases;
    for (int a = 0; a < grid.dim; ++a) bases[a] = cosineBasis(grid.n[a], options);
    std::vector<int64_t> shape{2};
    for (int a = 0; a < grid.dim; ++a) shape.push_back(grid.n[a]);
    at::manual_seed(3);
    const at::Tensor f = at::randn(shape, options);
    for (const double c : {0.0, 0.01, 0.3}) {
      const at::Tensor u = resolventByCosines(f, bases, resolventGain(grid, c, options));
      const double error = (applyShiftedLaplacian(u, grid, c) - f).abs().max().item<double>();
      EXPECT_LT(error, 1e-11 * f.abs().max().item<double>()) << grid.dim << "D, c = " << c;
      if (c > 0) EXPECT_GT((u - f).abs().max().item<double>(), 1e-3) << "the resolvent must smooth";
    }
  }
}

}  // namespace
}  // namespace jko
