#include "numerics/PushForward.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <sstream>

#include "numerics/Errors.h"
#include "numerics/PushForwardKernels.h"

namespace jko {
namespace {

// Coefficients of the Thomas algorithm for S = tridiag(1/8, 3/4, 1/8) with
// S[0,0] = S[n-1,n-1] = 7/8: modified super-diagonal c'_i and 1/pivot_i.
template <typename Factors>
Factors factorFilter(int64_t n) {
  Factors f;
  f.upper.resize(n);
  f.inversePivot.resize(n);
  const double off = 1.0 / 8.0;
  double previousUpper = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double diagonal = (i == 0 || i == n - 1) ? 7.0 / 8.0 : 3.0 / 4.0;
    const double pivot = diagonal - (i > 0 ? off * previousUpper : 0.0);
    f.inversePivot[i] = 1.0 / pivot;
    f.upper[i] = off / pivot;
    previousUpper = f.upper[i];
  }
  return f;
}

// Solves S x = b in place along the middle axis of a contiguous float64 block
// viewed as (outer, n, inner), for the columns [k0, k1) of each row. Every
// column is an independent recurrence: the inner loops run across columns
// (vectorised, and no chain of dependent operations).
template <typename Factors>
void solveColumns(double* block, int64_t n, int64_t inner, int64_t k0, int64_t k1, const Factors& f) {
  const double off = 1.0 / 8.0;
  for (int64_t k = k0; k < k1; ++k) block[k] *= f.inversePivot[0];
  for (int64_t i = 1; i < n; ++i) {
    double* row = block + i * inner;
    const double* previous = row - inner;
    for (int64_t k = k0; k < k1; ++k) row[k] = (row[k] - off * previous[k]) * f.inversePivot[i];
  }
  for (int64_t i = n - 2; i >= 0; --i) {
    double* row = block + i * inner;
    const double* next = row + inner;
    for (int64_t k = k0; k < k1; ++k) row[k] -= f.upper[i] * next[k];
  }
}

// The same along the last axis (inner = 1) for the lines [o0, o1), eight at
// a time: eight independent recurrences interleaved instead of one chain.
template <typename Factors>
void solveLines(double* data, int64_t n, int64_t o0, int64_t o1, const Factors& f) {
  const double off = 1.0 / 8.0;
  constexpr int64_t kLines = 8;
  for (int64_t o = o0; o < o1; o += kLines) {
    const int64_t lines = std::min(kLines, o1 - o);
    double* base = data + o * n;
    for (int64_t l = 0; l < lines; ++l) base[l * n] *= f.inversePivot[0];
    for (int64_t i = 1; i < n; ++i)
      for (int64_t l = 0; l < lines; ++l) {
        double* x = base + l * n + i;
        *x = (*x - off * x[-1]) * f.inversePivot[i];
      }
    for (int64_t i = n - 2; i >= 0; --i)
      for (int64_t l = 0; l < lines; ++l) {
        double* x = base + l * n + i;
        *x -= f.upper[i] * x[1];
      }
  }
}

template <typename Factors>
void solveFilterInPlace(double* data, int64_t outer, int64_t n, int64_t inner, const Factors& f) {
  if (inner == 1) {
    at::parallel_for(0, outer, 64, [&](int64_t o0, int64_t o1) { solveLines(data, n, o0, o1, f); });
    return;
  }
  // Tasks of up to 256 columns of one block, so that one density's first
  // axis (outer = 1) is split across threads too.
  const int64_t chunk = 256, chunks = (inner + chunk - 1) / chunk;
  at::parallel_for(0, outer * chunks, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t o = t / chunks, k0 = (t % chunks) * chunk;
      solveColumns(data + o * n * inner, n, inner, k0, std::min(inner, k0 + chunk), f);
    }
  });
}

at::Tensor filterMatrix(int64_t n) {
  at::Tensor s = at::zeros({n, n}, at::kDouble);
  auto a = s.accessor<double, 2>();
  for (int64_t i = 0; i < n; ++i) {
    a[i][i] = (i == 0 || i == n - 1) ? 7.0 / 8.0 : 3.0 / 4.0;
    if (i > 0) a[i][i - 1] = 1.0 / 8.0;
    if (i + 1 < n) a[i][i + 1] = 1.0 / 8.0;
  }
  return s;
}

// d f / d x_axis for f (B, n...) by central differences, one-sided at the walls.
at::Tensor partialDerivative(const at::Tensor& f, int axis, double h) {
  const int dim = axis + 1;
  const int64_t n = f.size(dim);
  if (n < 3) return (f.narrow(dim, n - 1, 1) - f.narrow(dim, 0, 1)).expand_as(f) / ((n - 1) * h);
  const at::Tensor interior = (f.narrow(dim, 2, n - 2) - f.narrow(dim, 0, n - 2)) / (2 * h);
  const at::Tensor first = (f.narrow(dim, 1, 1) - f.narrow(dim, 0, 1)) / h;
  const at::Tensor last = (f.narrow(dim, n - 1, 1) - f.narrow(dim, n - 2, 1)) / h;
  return at::cat({first, interior, last}, dim);
}

at::Tensor box3Sum(const at::Tensor& x, int dim) {
  // Sum over the 3^d neighbourhood with zeros outside the grid.
  if (dim == 2) return at::avg_pool2d(x.unsqueeze(1), {3, 3}, {1, 1}, {1, 1}, false, true).squeeze(1) * 9.0;
  return at::avg_pool3d(x.unsqueeze(1), {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, false, true).squeeze(1) * 27.0;
}

}  // namespace

PushForward::PushForward(const Grid& grid) : grid_(grid) {
  grid_.validate();
  for (int a = 0; a < grid_.dim; ++a) {
    factors_.push_back(factorFilter<FilterFactors>(grid_.n[a]));
    inverseFilters_.push_back(at::linalg_inv(filterMatrix(grid_.n[a])));
  }
}

at::Tensor PushForward::inverseFilter(int axis, const at::Device& device) const {
  if (device.is_cpu()) return inverseFilters_[axis];
  std::lock_guard<std::mutex> lock(cacheMutex_);
  auto key = std::make_pair(axis, device.str());
  auto it = deviceFilters_.find(key);
  if (it == deviceFilters_.end()) it = deviceFilters_.emplace(key, inverseFilters_[axis].to(device)).first;
  return it->second;
}

at::Tensor PushForward::prefilter(const at::Tensor& rho) const {
  const int d = grid_.dim;
  if (rho.dim() != d + 1) {
    std::ostringstream sizes;
    sizes << rho.sizes();
    throw InvalidDensity("prefilter expects a batch of " + std::to_string(d) + "D densities, got shape " + sizes.str());
  }
  if (rho.device().is_cpu() && !rho.requires_grad()) {
    // Thomas algorithm per axis: O(N) instead of a dense S^-1 product.
    at::Tensor m = rho.to(at::kDouble).clone(at::MemoryFormat::Contiguous);
    const auto sizes = m.sizes();
    for (int a = 0; a < d; ++a) {
      int64_t outer = 1, inner = 1;
      for (int k = 0; k <= a; ++k) outer *= sizes[k];
      for (int k = a + 2; k < m.dim(); ++k) inner *= sizes[k];
      solveFilterInPlace(m.data_ptr<double>(), outer, grid_.n[a], inner, factors_[a]);
    }
    return m;
  }
  at::Tensor m = rho.to(at::kDouble);
  for (int a = 0; a < d; ++a) m = m.movedim(a + 1, -1).matmul(inverseFilter(a, rho.device())).movedim(-1, a + 1);
  return m.contiguous();
}

at::Tensor PushForward::deposit(const at::Tensor& masses, const at::Tensor& displacement) const {
  const at::Tensor u = displacement.to(masses.scalar_type());
  if (fusedDepositApplies(masses, u)) return fusedDeposit(masses, u, grid_);
  return depositByTensorOperations(masses, u);
}

at::Tensor PushForward::depositByTensorOperations(const at::Tensor& masses, const at::Tensor& displacement) const {
  const int d = grid_.dim;
  const int64_t batch = masses.size(0), nodes = grid_.numNodes();
  const auto options = masses.options();
  const auto indexOptions = options.dtype(at::kLong);
  const at::Tensor offsets = at::arange(-1, 2, indexOptions).view({1, 3, 1});

  std::vector<at::Tensor> weights(d), indices(d);
  for (int a = 0; a < d; ++a) {
    const int64_t n = grid_.n[a];
    std::vector<int64_t> view(d, 1);
    view[a] = n;
    const at::Tensor node = at::arange(n, options).view(view).expand(grid_.shape()).reshape({1, nodes});
    // Position in index units, kept in the closed box [-1/2, n - 1/2].
    at::Tensor p = node + displacement.select(1, a).to(masses.scalar_type()).reshape({batch, nodes}) / grid_.spacing[a];
    p = p.clamp(-0.5, static_cast<double>(n) - 0.5);
    const at::Tensor nearest = at::floor(p.detach() + 0.5);
    const at::Tensor offset = p - nearest;
    const at::Tensor left = 0.5 - offset, right = 0.5 + offset;
    weights[a] = at::stack({0.5 * left * left, 0.75 - offset * offset, 0.5 * right * right}, 1);
    // Weights beyond a wall fold onto the edge node.
    indices[a] = (nearest.to(at::kLong).unsqueeze(1) + offsets).clamp(0, n - 1);
  }

  at::Tensor weight, index;
  if (d == 2) {
    weight = weights[0].unsqueeze(2) * weights[1].unsqueeze(1);
    index = indices[0].unsqueeze(2) * grid_.n[1] + indices[1].unsqueeze(1);
  } else {
    weight = weights[0].view({batch, 3, 1, 1, nodes}) * weights[1].view({batch, 1, 3, 1, nodes}) *
             weights[2].view({batch, 1, 1, 3, nodes});
    index = (indices[0].view({batch, 3, 1, 1, nodes}) * grid_.n[1] + indices[1].view({batch, 1, 3, 1, nodes})) *
                grid_.n[2] +
            indices[2].view({batch, 1, 1, 3, nodes});
  }
  std::vector<int64_t> massView(weight.dim(), 1);
  massView[0] = batch;
  massView.back() = nodes;
  const at::Tensor contribution = weight * masses.reshape(massView);
  std::vector<int64_t> batchView(index.dim(), 1);
  batchView[0] = batch;
  index = index + (at::arange(batch, indexOptions) * nodes).view(batchView);
  at::Tensor out = at::zeros({batch * nodes}, options).index_add(0, index.flatten(), contribution.flatten());
  return out.view(grid_.batchShape(batch));
}

at::Tensor PushForward::mass(const at::Tensor& rho) const { return rho.flatten(1).sum(1) * grid_.cellVolume(); }

at::Tensor PushForward::limit(const at::Tensor& raw, const at::Tensor& targetMass) const {
  // A NaN displacement deposits NaN weights, and the limiter would spread
  // them over the whole sample: refuse here, once per step, rather than
  // hand back a frame of NaN. One reduction, through which NaN and inf
  // propagate (5 us at 64^2, 56 us at 512^2; isfinite().all() takes 10x that).
  if (!std::isfinite(raw.sum().item<double>()))
    throw InvalidDensity(
        "the step produced NaN or infinite values (the displacement field or the density is not finite); the "
        "density was left as it was: for a learned operator check that the density is within its training range, "
        "or use the reference solver");
  if (fusedLimitApplies(raw)) return fusedLimit(raw, targetMass, grid_);
  return limitByTensorOperations(raw, targetMass);
}

at::Tensor PushForward::spreadNegativeMass(const at::Tensor& raw) const {
  if (!(raw.min().item<double>() < 0)) return raw;
  const at::Tensor positive = raw.clamp_min(0), negative = (-raw).clamp_min(0);
  const at::Tensor neighbourhood = box3Sum(positive, grid_.dim);
  const at::Tensor share =
      at::where(negative > 0, negative / neighbourhood.clamp_min(1e-300), at::zeros_like(negative));
  return (positive - positive * box3Sum(share, grid_.dim)).clamp_min(0);
}

at::Tensor PushForward::limitByTensorOperations(const at::Tensor& raw, const at::Tensor& targetMass) const {
  const at::Tensor r = spreadNegativeMass(raw);
  std::vector<int64_t> view(r.dim(), 1);
  view[0] = r.size(0);
  const at::Tensor current = mass(r);
  return r * (targetMass.to(r.scalar_type()) / current.clamp_min(1e-300)).view(view);
}

at::Tensor PushForward::jacobianDeterminant(const at::Tensor& displacement) const {
  const int d = grid_.dim;
  const at::Tensor u = displacement.to(at::kDouble);
  // J_ab = delta_ab + d u_a / d x_b.
  std::vector<std::vector<at::Tensor>> J(d, std::vector<at::Tensor>(d));
  for (int a = 0; a < d; ++a)
    for (int b = 0; b < d; ++b) {
      J[a][b] = partialDerivative(u.select(1, a), b, grid_.spacing[b]);
      if (a == b) J[a][b] = J[a][b] + 1.0;
    }
  if (d == 2) return J[0][0] * J[1][1] - J[0][1] * J[1][0];
  return J[0][0] * (J[1][1] * J[2][2] - J[1][2] * J[2][1]) - J[0][1] * (J[1][0] * J[2][2] - J[1][2] * J[2][0]) +
         J[0][2] * (J[1][0] * J[2][1] - J[1][1] * J[2][0]);
}

PushForward::Folding PushForward::folding(const at::Tensor& rho, const at::Tensor& displacement) const {
  const at::Tensor folded = (jacobianDeterminant(displacement) <= 0).to(at::kDouble);
  const at::Tensor r = rho.to(at::kDouble);
  Folding out;
  out.nodeFraction = folded.flatten(1).mean(1);
  out.massFraction = (folded * r).flatten(1).sum(1) / r.flatten(1).sum(1).clamp_min(1e-300);
  return out;
}

at::Tensor PushForward::apply(const at::Tensor& rho, const at::Tensor& displacement) const {
  const at::Tensor state = rho.to(at::kDouble);
  return limit(deposit(prefilter(state), displacement), mass(state));
}

}  // namespace jko
