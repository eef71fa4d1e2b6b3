#include "numerics/GridTransfer.h"

#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <array>
#include <vector>

#include "runtime/TaskTeam.h"

namespace jko {
namespace {

// The node counts of a field's last `dim` axes as three: a 2D grid gets a
// leading axis of one node (as the multigrid's shapes), so one loop serves both.
std::array<int64_t, 3> gridAxes(const at::Tensor& field, int dim) {
  const int64_t k = field.dim() - dim;
  if (dim == 3) return {field.size(k), field.size(k + 1), field.size(k + 2)};
  return {1, field.size(k), field.size(k + 1)};
}

std::array<int64_t, 3> gridAxes(const Grid& grid) {
  if (grid.dim == 3) return {grid.n[0], grid.n[1], grid.n[2]};
  return {1, grid.n[0], grid.n[1]};
}

// The result's shape: the field's leading (batch, channel) sizes, then the grid's.
std::vector<int64_t> onGridShape(const at::Tensor& field, const Grid& grid) {
  std::vector<int64_t> shape(field.sizes().begin(), field.sizes().end() - grid.dim);
  for (int a = 0; a < grid.dim; ++a) shape.push_back(grid.n[a]);
  return shape;
}

}  // namespace

bool loopable(const at::Tensor& field) {
  return field.is_cpu() && field.scalar_type() == at::kDouble && field.is_contiguous() &&
         !(at::GradMode::is_enabled() && field.requires_grad());
}

at::Tensor averageOnto(const at::Tensor& field, const Grid& coarse) {
  const std::array<int64_t, 3> n = gridAxes(field, coarse.dim), m = gridAxes(coarse);
  if (loopable(field) && n[0] % m[0] == 0 && n[1] % m[1] == 0 && n[2] % m[2] == 0) {
    // Whole r0 x r1 (x r2) blocks: adaptive_avg_pool's sums in one loop (it
    // took 0.03 ms for 128^2 -> 64^2 on one thread), blocks of coarse rows in parallel.
    const int64_t planes = field.numel() / (n[0] * n[1] * n[2]);
    const int64_t r0 = n[0] / m[0], r1 = n[1] / m[1], r2 = n[2] / m[2];
    at::Tensor out = at::empty(onGridShape(field, coarse), field.options());
    const double* in = field.data_ptr<double>();
    double* o = out.data_ptr<double>();
    const double scale = 1.0 / static_cast<double>(r0 * r1 * r2);
    constexpr int64_t kRows = 8;
    const int64_t blocks = (m[1] + kRows - 1) / kRows;
    parallelFor(planes * m[0] * blocks, [&](int64_t task) {
      const int64_t slab = task / blocks, i0 = (task % blocks) * kRows;  // slab: plane and coarse index on axis 0
      const int64_t p = slab / m[0], I = slab % m[0];
      for (int64_t i = i0; i < std::min(m[1], i0 + kRows); ++i) {
        double* row = o + (slab * m[1] + i) * m[2];
        std::fill(row, row + m[2], 0.0);
        for (int64_t a0 = 0; a0 < r0; ++a0)
          for (int64_t a1 = 0; a1 < r1; ++a1) {
            const double* fine = in + ((p * n[0] + I * r0 + a0) * n[1] + i * r1 + a1) * n[2];
            for (int64_t j = 0; j < m[2]; ++j)
              for (int64_t c = 0; c < r2; ++c) row[j] += fine[j * r2 + c];
          }
        for (int64_t j = 0; j < m[2]; ++j) row[j] *= scale;
      }
    });
    return out;
  }
  const bool scalar = field.dim() == coarse.dim + 1;
  const at::Tensor x = scalar ? field.unsqueeze(1) : field;
  const at::Tensor y = coarse.dim == 2 ? at::adaptive_avg_pool2d(x, {coarse.n[0], coarse.n[1]})
                                       : at::adaptive_avg_pool3d(x, {coarse.n[0], coarse.n[1], coarse.n[2]});
  return scalar ? y.squeeze(1) : y;
}

at::Tensor interpolateOnto(const at::Tensor& field, const Grid& fine) {
  bool same = true;
  for (int a = 0; a < fine.dim; ++a) same = same && field.size(2 + a) == fine.n[a];
  if (same) return field;
  if (loopable(field)) {
    // upsample_bilinear2d's / upsample_trilinear3d's arithmetic (align_corners = false) in one loop.
    const std::array<int64_t, 3> n = gridAxes(field, fine.dim), m = gridAxes(fine);
    const int64_t planes = field.numel() / (n[0] * n[1] * n[2]);
    at::Tensor out = at::empty(onGridShape(field, fine), field.options());
    struct Tap {
      int64_t low, high;
      double wLow, wHigh;
    };
    auto taps = [](int64_t coarse, int64_t count) {
      std::vector<Tap> t(count);
      const double scale = static_cast<double>(coarse) / count;
      for (int64_t i = 0; i < count; ++i) {
        const double source = std::max(scale * (i + 0.5) - 0.5, 0.0);
        const int64_t low = static_cast<int64_t>(source);
        const double w = source - low;
        t[i] = {low, low + (low < coarse - 1 ? 1 : 0), 1.0 - w, w};
      }
      return t;
    };
    const std::vector<Tap> slabs = taps(n[0], m[0]), rows = taps(n[1], m[1]), cols = taps(n[2], m[2]);
    // A row of the output from two rows of the input, along the last axis.
    auto row = [&](const double* in, const Tap& r, int64_t j) {
      const Tap& c = cols[j];
      const double* low = in + r.low * n[2];
      const double* high = in + r.high * n[2];
      return r.wLow * (c.wLow * low[c.low] + c.wHigh * low[c.high]) +
             r.wHigh * (c.wLow * high[c.low] + c.wHigh * high[c.high]);
    };
    // Blocks of 16 output rows of every plane and slab, in parallel.
    constexpr int64_t kRows = 16;
    const int64_t blocks = (m[1] + kRows - 1) / kRows;
    parallelFor(m[0] * blocks, [&](int64_t task) {
      const int64_t I = task / blocks, block = task % blocks;
      const Tap& s = slabs[I];
      for (int64_t p = 0; p < planes; ++p) {
        const double* low = field.data_ptr<double>() + (p * n[0] + s.low) * n[1] * n[2];
        const double* high = field.data_ptr<double>() + (p * n[0] + s.high) * n[1] * n[2];
        double* o = out.data_ptr<double>() + (p * m[0] + I) * m[1] * m[2];
        for (int64_t i = block * kRows; i < std::min(m[1], (block + 1) * kRows); ++i)
          for (int64_t j = 0; j < m[2]; ++j)
            // One input slab in 2D (and wherever the weight of the next is 0 in 3D).
            o[i * m[2] + j] =
                s.wHigh == 0 ? row(low, rows[i], j) : s.wLow * row(low, rows[i], j) + s.wHigh * row(high, rows[i], j);
      }
    });
    return out;
  }
  return fine.dim == 2 ? at::upsample_bilinear2d(field, {fine.n[0], fine.n[1]}, false)
                       : at::upsample_trilinear3d(field, {fine.n[0], fine.n[1], fine.n[2]}, false);
}

}  // namespace jko
