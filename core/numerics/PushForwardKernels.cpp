#include "numerics/PushForwardKernels.h"

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "runtime/TaskTeam.h"

namespace jko {
namespace {

// Quadratic B-spline weights and their derivatives in the offset d to the
// nearest node, for the nodes j0 - 1, j0, j0 + 1 (folded into the box).
struct AxisStencil {
  std::array<int64_t, 3> index;
  std::array<double, 3> weight, slope;
  bool inside;  // false when the position was clamped to a wall (zero derivative)
};

inline AxisStencil stencil(int64_t node, double displacement, int64_t n, double h) {
  AxisStencil s;
  double p = node + displacement / h;
  const double lo = -0.5, hi = static_cast<double>(n) - 0.5;
  if (std::isnan(p)) {
    // NaN passes the clamp below and its cast to an index is undefined: give
    // NaN weights instead, so that the step's finiteness check refuses it.
    s.inside = false;
    s.index = {0, 0, 0};
    s.weight = {NAN, NAN, NAN};
    s.slope = {0, 0, 0};
    return s;
  }
  s.inside = p >= lo && p <= hi;
  p = std::min(std::max(p, lo), hi);
  const double nearest = std::floor(p + 0.5);
  const double d = p - nearest;
  const double left = 0.5 - d, right = 0.5 + d;
  s.weight = {0.5 * left * left, 0.75 - d * d, 0.5 * right * right};
  s.slope = {-left, -2 * d, right};
  const int64_t j0 = static_cast<int64_t>(nearest);
  for (int k = 0; k < 3; ++k) s.index[k] = std::min<int64_t>(std::max<int64_t>(j0 + k - 1, 0), n - 1);
  return s;
}

struct Shape {
  int dim;
  int64_t n[3];
  double h[3];
  int64_t nodes;
};

Shape shapeOf(const Grid& grid) {
  Shape s{grid.dim,
          {grid.n[0], grid.n[1], grid.n[2]},
          {grid.spacing[0], grid.spacing[1], grid.spacing[2]},
          grid.numNodes()};
  if (grid.dim == 2) s.n[2] = 1, s.h[2] = 1;
  return s;
}

// Visits every particle's stencil: f(node, stencils[3]). The node's indices
// are stepped along with the flat index (no divisions per particle).
template <typename F>
void forEachParticle(const Shape& s, const double* u, int64_t begin, int64_t end, F&& f) {
  if (begin >= end) return;
  int64_t i0 = begin / (s.n[1] * s.n[2]), i1 = (begin / s.n[2]) % s.n[1], i2 = begin % s.n[2];
  std::array<AxisStencil, 3> st;
  st[2] = AxisStencil{{0, 0, 0}, {0, 1, 0}, {0, 0, 0}, true};
  for (int64_t i = begin; i < end; ++i) {
    st[0] = stencil(i0, u[i], s.n[0], s.h[0]);
    st[1] = stencil(i1, u[s.nodes + i], s.n[1], s.h[1]);
    if (s.dim == 3) st[2] = stencil(i2, u[2 * s.nodes + i], s.n[2], s.h[2]);
    f(i, st);
    if (++i2 == s.n[2]) {
      i2 = 0;
      if (++i1 == s.n[1]) i1 = 0, ++i0;
    }
  }
}

// Scatters the particles [begin, end) of one sample into `out`.
void depositParticles(const Shape& s, const double* m, const double* u, int64_t begin, int64_t end, double* out) {
  if (s.dim == 2) {
    forEachParticle(s, u, begin, end, [&](int64_t i, const std::array<AxisStencil, 3>& st) {
      const double mass = m[i];
      if (mass == 0) return;
      for (int a = 0; a < 3; ++a) {
        double* row = out + st[0].index[a] * s.n[1];
        const double wa = mass * st[0].weight[a];
        for (int c = 0; c < 3; ++c) row[st[1].index[c]] += wa * st[1].weight[c];
      }
    });
    return;
  }
  forEachParticle(s, u, begin, end, [&](int64_t i, const std::array<AxisStencil, 3>& st) {
    const double mass = m[i];
    if (mass == 0) return;
    for (int a = 0; a < 3; ++a)
      for (int c = 0; c < 3; ++c) {
        const double wac = mass * st[0].weight[a] * st[1].weight[c];
        double* line = out + (st[0].index[a] * s.n[1] + st[1].index[c]) * s.n[2];
        for (int e = 0; e < 3; ++e) line[st[2].index[e]] += wac * st[2].weight[e];
      }
  });
}

// Chunks of one sample's particles: one per 8192 nodes, at most 8 (the
// buffers cost a zeroing and a sum each, ~1% of scattering their particles).
int64_t depositChunks(int64_t nodes) { return std::clamp<int64_t>(nodes / 8192, 1, 8); }

// body(i) for i in [0, count), in parallel: on LibTorch's threads, or on the
// task team where this thread runs LibTorch on one thread (a single
// density's step, LearnedOperator::step).
template <typename Body>
void parallelFor(int64_t count, const Body& body) {
  if (at::get_num_threads() > 1 || at::in_parallel_region()) {
    at::parallel_for(0, count, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) body(i);
    });
    return;
  }
  const int parts = taskTeamThreads();
  runInParts(parts, [&](int part) {
    for (int64_t i = part; i < count; i += parts) body(i);
  });
}

int parallelWorkers() {
  return at::get_num_threads() > 1 || at::in_parallel_region() ? at::get_num_threads() : taskTeamThreads();
}

void depositForward(const Shape& s, int64_t batch, const double* m, const double* u, double* out) {
  const int64_t chunks = depositChunks(s.nodes);
  if (batch >= parallelWorkers() || chunks == 1) {
    // Scatter: samples in parallel, particles of one sample in sequence.
    at::parallel_for(0, batch, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b)
        depositParticles(s, m + b * s.nodes, u + b * s.dim * s.nodes, 0, s.nodes, out + b * s.nodes);
    });
    return;
  }
  // Fewer samples than threads (a rollout of one density): the chunks of a
  // sample scatter into their own buffers in parallel, then the buffers are
  // summed in chunk order, so the result does not depend on which thread ran
  // which chunk (it may differ in the last bits from the one-thread path,
  // as LibTorch's own reductions do).
  std::vector<double> buffers((chunks - 1) * s.nodes);
  for (int64_t b = 0; b < batch; ++b) {
    const double* mb = m + b * s.nodes;
    const double* ub = u + b * s.dim * s.nodes;
    double* ob = out + b * s.nodes;
    std::fill(buffers.begin(), buffers.end(), 0.0);
    parallelFor(chunks, [&](int64_t c) {
      depositParticles(s, mb, ub, c * s.nodes / chunks, (c + 1) * s.nodes / chunks,
                       c == 0 ? ob : buffers.data() + (c - 1) * s.nodes);
    });
    constexpr int64_t kSumBlock = 4096;
    parallelFor((s.nodes + kSumBlock - 1) / kSumBlock, [&](int64_t block) {
      const int64_t i0 = block * kSumBlock, i1 = std::min(s.nodes, i0 + kSumBlock);
      for (int64_t c = 1; c < chunks; ++c) {
        const double* buffer = buffers.data() + (c - 1) * s.nodes;
        for (int64_t i = i0; i < i1; ++i) ob[i] += buffer[i];
      }
    });
  }
}

void depositBackward(const Shape& s, int64_t batch, const double* m, const double* u, const double* grad,
                     double* gradMasses, double* gradU) {
  const int kz = s.dim == 3 ? 3 : 1;
  at::parallel_for(0, batch * s.nodes, 2048, [&](int64_t begin, int64_t end) {
    for (int64_t flat = begin; flat < end;) {
      const int64_t b = flat / s.nodes, i0 = flat % s.nodes;
      const int64_t i1 = std::min(end - b * s.nodes, s.nodes);
      const double* mb = m + b * s.nodes;
      const double* ub = u + b * s.dim * s.nodes;
      const double* gb = grad + b * s.nodes;
      forEachParticle(s, ub, i0, i1, [&](int64_t i, const std::array<AxisStencil, 3>& st) {
        // G = sum over the stencil of grad * w0 w1 w2 and its derivatives.
        double value = 0, d0 = 0, d1 = 0, d2 = 0;
        for (int a = 0; a < 3; ++a)
          for (int c = 0; c < 3; ++c) {
            const int64_t row = (st[0].index[a] * s.n[1] + st[1].index[c]) * s.n[2];
            for (int e = 0; e < kz; ++e) {
              const int ez = s.dim == 3 ? e : 1;
              const double g = gb[row + st[2].index[ez]];
              const double w2 = st[2].weight[ez];
              value += g * st[0].weight[a] * st[1].weight[c] * w2;
              d0 += g * st[0].slope[a] * st[1].weight[c] * w2;
              d1 += g * st[0].weight[a] * st[1].slope[c] * w2;
              if (s.dim == 3) d2 += g * st[0].weight[a] * st[1].weight[c] * st[2].slope[ez];
            }
          }
        if (gradMasses) gradMasses[b * s.nodes + i] = value;
        if (gradU) {
          double* gu = gradU + b * s.dim * s.nodes;
          gu[i] = st[0].inside ? mb[i] * d0 / s.h[0] : 0.0;
          gu[s.nodes + i] = st[1].inside ? mb[i] * d1 / s.h[1] : 0.0;
          if (s.dim == 3) gu[2 * s.nodes + i] = st[2].inside ? mb[i] * d2 / s.h[2] : 0.0;
        }
      });
      flat = b * s.nodes + i1;
    }
  });
}

class DepositFunction : public torch::autograd::Function<DepositFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& masses,
                            const at::Tensor& displacement, const Grid& grid) {
    const at::Tensor m = masses.contiguous(), u = displacement.contiguous();
    ctx->save_for_backward({m, u});
    ctx->saved_data["grid"] =
        c10::IValue(std::vector<double>{double(grid.dim), double(grid.n[0]), double(grid.n[1]), double(grid.n[2]),
                                        grid.spacing[0], grid.spacing[1], grid.spacing[2]});
    at::Tensor out = at::zeros_like(m);
    depositForward(shapeOf(grid), m.size(0), m.data_ptr<double>(), u.data_ptr<double>(), out.data_ptr<double>());
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list gradOutputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &m = saved[0], &u = saved[1];
    const auto g = ctx->saved_data["grid"].toDoubleVector();
    Grid grid;
    grid.dim = static_cast<int>(g[0]);
    grid.n = {int64_t(g[1]), int64_t(g[2]), int64_t(g[3])};
    grid.spacing = {g[4], g[5], g[6]};
    const at::Tensor grad = gradOutputs[0].contiguous();
    const bool needMasses = ctx->needs_input_grad(0), needU = ctx->needs_input_grad(1);
    at::Tensor gradMasses = needMasses ? at::empty_like(m) : at::Tensor();
    at::Tensor gradU = needU ? at::empty_like(u) : at::Tensor();
    depositBackward(shapeOf(grid), m.size(0), m.data_ptr<double>(), u.data_ptr<double>(), grad.data_ptr<double>(),
                    needMasses ? gradMasses.data_ptr<double>() : nullptr, needU ? gradU.data_ptr<double>() : nullptr);
    return {gradMasses, gradU, at::Tensor()};
  }
};

}  // namespace

bool fusedDepositApplies(const at::Tensor& masses, const at::Tensor& displacement) {
  return masses.device().is_cpu() && displacement.device().is_cpu() && masses.scalar_type() == at::kDouble &&
         displacement.scalar_type() == at::kDouble;
}

at::Tensor fusedDeposit(const at::Tensor& masses, const at::Tensor& displacement, const Grid& grid) {
  return DepositFunction::apply(masses, displacement, grid);
}

namespace {

// out = sum over the 3^d neighbourhood of `in` (zeros beyond the walls), by
// three-point sums along each axis in turn; `scratch` has the same size.
void box3Sum(const double* in, double* out, double* scratch, const int64_t n[3]) {
  const int64_t strides[3] = {n[1] * n[2], n[2], 1};
  const int64_t total = n[0] * n[1] * n[2];
  const double* source = in;
  double* buffers[2] = {scratch, out};
  int which = 0, axes = 0;
  for (int a = 0; a < 3; ++a) axes += n[a] > 1;
  // Write the last pass into `out`.
  which = axes % 2 == 1 ? 1 : 0;
  for (int a = 0; a < 3; ++a) {
    if (n[a] == 1) continue;
    double* target = buffers[which];
    // The array as (outer, n_a, inner) blocks: no divisions in the loop.
    const int64_t inner = strides[a], outer = total / (n[a] * inner);
    for (int64_t o = 0; o < outer; ++o) {
      const double* s = source + o * n[a] * inner;
      double* t = target + o * n[a] * inner;
      for (int64_t j = 0; j < n[a]; ++j) {
        const double* row = s + j * inner;
        const double* below = j > 0 ? row - inner : nullptr;
        const double* above = j + 1 < n[a] ? row + inner : nullptr;
        double* out = t + j * inner;
        for (int64_t k = 0; k < inner; ++k) out[k] = row[k] + (below ? below[k] : 0.0) + (above ? above[k] : 0.0);
      }
    }
    source = target;
    which ^= 1;
  }
}

}  // namespace

bool fusedLimitApplies(const at::Tensor& raw) {
  return raw.device().is_cpu() && raw.scalar_type() == at::kDouble && !raw.requires_grad();
}

at::Tensor fusedLimit(const at::Tensor& raw, const at::Tensor& targetMass, const Grid& grid) {
  const at::Tensor r = raw.contiguous();
  const at::Tensor target = targetMass.to(at::kCPU, at::kDouble).contiguous();
  at::Tensor out = at::empty_like(r);
  const int64_t batch = r.size(0), nodes = grid.numNodes();
  const int64_t n[3] = {grid.n[0], grid.n[1], grid.dim == 3 ? grid.n[2] : 1};
  const double volume = grid.cellVolume();
  at::parallel_for(0, batch, 1, [&](int64_t b0, int64_t b1) {
    std::vector<double> positive, share, box, scratch;
    for (int64_t b = b0; b < b1; ++b) {
      const double* in = r.data_ptr<double>() + b * nodes;
      double* o = out.data_ptr<double>() + b * nodes;
      bool negative = false;
      for (int64_t i = 0; i < nodes && !negative; ++i) negative = in[i] < 0;
      if (negative) {
        positive.assign(nodes, 0.0);
        share.assign(nodes, 0.0);
        box.resize(nodes);
        scratch.resize(nodes);
        for (int64_t i = 0; i < nodes; ++i) positive[i] = std::max(in[i], 0.0);
        box3Sum(positive.data(), box.data(), scratch.data(), n);
        for (int64_t i = 0; i < nodes; ++i)
          if (in[i] < 0) share[i] = -in[i] / std::max(box[i], 1e-300);
        box3Sum(share.data(), box.data(), scratch.data(), n);
        for (int64_t i = 0; i < nodes; ++i) o[i] = std::max(positive[i] - positive[i] * box[i], 0.0);
      } else {
        std::copy(in, in + nodes, o);
      }
      double mass = 0;
      for (int64_t i = 0; i < nodes; ++i) mass += o[i];
      const double scale = target.data_ptr<double>()[b] / std::max(mass * volume, 1e-300);
      for (int64_t i = 0; i < nodes; ++i) o[i] *= scale;
    }
  });
  return out;
}

}  // namespace jko
