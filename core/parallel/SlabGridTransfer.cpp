#include "parallel/SlabGridTransfer.h"

#include <cmath>
#include <vector>

#include "numerics/Errors.h"
#include "numerics/GridTransfer.h"

namespace jko {
namespace {

// The field's leading sizes (all but the grid's `dim` axes) and the grid's.
std::vector<int64_t> leading(const at::Tensor& field, int dim) {
  return std::vector<int64_t>(field.sizes().begin(), field.sizes().end() - dim);
}

void requireGridAxes(const at::Tensor& field, const std::vector<int64_t>& axes, const char* what) {
  bool ok = field.dim() >= static_cast<int64_t>(axes.size());
  for (size_t a = 0; ok && a < axes.size(); ++a) ok = field.size(field.dim() - axes.size() + a) == axes[a];
  if (!ok) {
    std::string expected;
    for (int64_t n : axes) expected += (expected.empty() ? "" : " x ") + std::to_string(n);
    throw InvalidParameter(what, "a field of " + std::to_string(field.dim()) + " dimensions",
                           "must end in the " + expected + " nodes of its grid");
  }
}

}  // namespace

at::Tensor averageOntoFromSlabs(const at::Tensor& owned, const SlabDecomposition& slabs, const Grid& coarse) {
  const Grid& grid = slabs.grid();
  const int dim = grid.dim;
  const SlabDecomposition::Range own = slabs.owned();
  std::vector<int64_t> fineAxes{own.planes()};
  for (int a = 1; a < dim; ++a) fineAxes.push_back(grid.n[a]);
  requireGridAxes(owned, fineAxes, "field of the rank's planes");
  const std::vector<int64_t> lead = leading(owned, dim);
  int64_t L = 1;
  for (int64_t s : lead) L *= s;
  const int64_t p = own.planes();
  // Along the other axes: adaptive pooling of each plane (the serial
  // averageOnto's windows, as whole blocks or not).
  const at::Tensor x = owned.to(at::kCPU, at::kDouble).contiguous();
  at::Tensor planes;
  if (dim == 3)
    planes = at::adaptive_avg_pool2d(x.view({L * p, 1, grid.n[1], grid.n[2]}), {coarse.n[1], coarse.n[2]});
  else
    planes = at::adaptive_avg_pool1d(x.view({L * p, 1, grid.n[1]}), {coarse.n[1]});
  planes = planes.reshape({L, p, -1});
  // Along the split axis: coarse cell I averages the planes floor(I n / m)
  // .. ceil((I + 1) n / m) - 1; this rank adds its planes' share.
  const int64_t n0 = grid.n[0], m0 = coarse.n[0];
  at::Tensor weights = at::zeros({m0, p}, at::kDouble);
  double* w = weights.data_ptr<double>();
  for (int64_t I = 0; I < m0; ++I) {
    const int64_t start = (I * n0) / m0, end = ((I + 1) * n0 + m0 - 1) / m0;
    for (int64_t g = std::max(start, own.lo); g < std::min(end, own.hi); ++g)
      w[I * p + (g - own.lo)] = 1.0 / static_cast<double>(end - start);
  }
  at::Tensor sum = at::matmul(weights, planes).contiguous();
  slabs.communicator().sum(sum.data_ptr<double>(), sum.numel());
  std::vector<int64_t> shape = lead;
  for (int a = 0; a < dim; ++a) shape.push_back(coarse.n[a]);
  return sum.view(shape);
}

at::Tensor interpolateOntoSlab(const at::Tensor& coarse, const SlabDecomposition& slabs) {
  const Grid& grid = slabs.grid();
  const int dim = grid.dim;
  const SlabDecomposition::Range own = slabs.owned();
  if (coarse.dim() != dim + 2)
    throw InvalidParameter("coarse field", std::to_string(coarse.dim()) + " dimensions",
                           "must be (B, C, nodes...) with " + std::to_string(dim) + " node axes");
  const int64_t B = coarse.size(0), C = coarse.size(1), m0 = coarse.size(2);
  const at::Tensor c = coarse.to(at::kCPU, at::kDouble).contiguous();
  // Along the other axes: linear interpolation of each coarse plane.
  at::Tensor planes;
  if (dim == 3)
    planes =
        at::upsample_bilinear2d(c.view({B * C * m0, 1, coarse.size(3), coarse.size(4)}), {grid.n[1], grid.n[2]}, false);
  else
    planes = at::upsample_linear1d(c.view({B * C * m0, 1, coarse.size(3)}), {grid.n[1]}, false);
  planes = planes.reshape({B * C, m0, -1});
  // Along the split axis, this rank's planes: g between the coarse centres
  // low and high (constant beyond the first and last), as interpolateOnto.
  const int64_t p = own.planes(), n0 = grid.n[0];
  std::vector<int64_t> low(p), high(p);
  at::Tensor wLow = at::empty({p, 1}, at::kDouble), wHigh = at::empty({p, 1}, at::kDouble);
  const double scale = static_cast<double>(m0) / static_cast<double>(n0);
  for (int64_t i = 0; i < p; ++i) {
    const double source = std::max(scale * (own.lo + i + 0.5) - 0.5, 0.0);
    low[i] = static_cast<int64_t>(source);
    high[i] = low[i] + (low[i] < m0 - 1 ? 1 : 0);
    wHigh[i][0] = source - static_cast<double>(low[i]);
    wLow[i][0] = 1.0 - (source - static_cast<double>(low[i]));
  }
  const at::Tensor lowIndex = at::tensor(low, at::kLong), highIndex = at::tensor(high, at::kLong);
  const at::Tensor out = planes.index_select(1, lowIndex) * wLow + planes.index_select(1, highIndex) * wHigh;
  std::vector<int64_t> shape{B, C, p};
  for (int a = 1; a < dim; ++a) shape.push_back(grid.n[a]);
  return out.reshape(shape);
}

}  // namespace jko
