#include "numerics/Grid.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "numerics/Errors.h"

namespace jko {

Grid Grid::box(int dim, std::array<int64_t, 3> cells, std::array<double, 3> lower, std::array<double, 3> upper) {
  Grid grid;
  grid.dim = dim;
  for (int a = 0; a < 3; ++a) {
    if (a >= dim) {
      grid.n[a] = 1;
      grid.origin[a] = 0;
      grid.spacing[a] = 1;
      continue;
    }
    grid.n[a] = cells[a];
    const double h = (upper[a] - lower[a]) / static_cast<double>(cells[a]);
    grid.spacing[a] = h;
    grid.origin[a] = lower[a] + 0.5 * h;
  }
  grid.validate();
  return grid;
}

Grid Grid::unitBox(int dim, int64_t n) { return box(dim, {n, n, n}, {0, 0, 0}, {1, 1, 1}); }

void Grid::validate() const {
  if (dim != 2 && dim != 3) throw InvalidParameter("dimension", formatValue(dim), "only 2D and 3D grids are supported");
  for (int a = 0; a < dim; ++a) {
    if (n[a] < 2)
      throw InvalidParameter("grid size along axis " + std::to_string(a), formatValue(n[a]),
                             "each axis of a 2D or 3D grid needs at least 2 nodes");
    if (!(spacing[a] > 0) || !std::isfinite(spacing[a]))
      throw InvalidParameter("spacing along axis " + std::to_string(a), formatValue(spacing[a]),
                             "spacing must be a positive finite number");
    if (!std::isfinite(origin[a]))
      throw InvalidParameter("origin along axis " + std::to_string(a), formatValue(origin[a]), "origin must be finite");
  }
}

int64_t Grid::numNodes() const {
  int64_t total = 1;
  for (int a = 0; a < dim; ++a) total *= n[a];
  return total;
}

double Grid::smallestSpacing() const {
  double h = spacing[0];
  for (int a = 1; a < dim; ++a) h = std::min(h, spacing[a]);
  return h;
}

double Grid::cellVolume() const {
  double volume = 1;
  for (int a = 0; a < dim; ++a) volume *= spacing[a];
  return volume;
}

std::vector<int64_t> Grid::shape() const { return std::vector<int64_t>(n.begin(), n.begin() + dim); }

std::vector<int64_t> Grid::batchShape(int64_t batch) const {
  std::vector<int64_t> s{batch};
  for (int a = 0; a < dim; ++a) s.push_back(n[a]);
  return s;
}

at::Tensor Grid::coordinate(int axis, const at::TensorOptions& options) const {
  at::Tensor line = at::arange(n[axis], options.dtype(at::kDouble)) * spacing[axis] + origin[axis];
  std::vector<int64_t> view(dim, 1);
  view[axis] = n[axis];
  return line.view(view).expand(shape()).to(options);
}

at::Tensor Grid::coordinates(const at::TensorOptions& options) const {
  std::vector<at::Tensor> axes;
  for (int a = 0; a < dim; ++a) axes.push_back(coordinate(a, options));
  return at::stack(axes, 0);
}

bool Grid::sameAs(const Grid& other, double tol) const {
  if (dim != other.dim) return false;
  for (int a = 0; a < dim; ++a) {
    if (n[a] != other.n[a]) return false;
    const double scale = std::max(std::abs(spacing[a]), std::abs(other.spacing[a]));
    if (std::abs(spacing[a] - other.spacing[a]) > tol * scale) return false;
    if (std::abs(origin[a] - other.origin[a]) > tol * std::max(scale, std::abs(origin[a]))) return false;
  }
  return true;
}

std::string Grid::describe() const {
  std::ostringstream out;
  for (int a = 0; a < dim; ++a) out << (a ? "x" : "") << n[a];
  out << " grid, spacing ";
  for (int a = 0; a < dim; ++a) out << (a ? " x " : "") << spacing[a];
  return out.str();
}

}  // namespace jko
