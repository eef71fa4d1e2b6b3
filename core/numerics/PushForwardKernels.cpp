#include "numerics/PushForwardKernels.h"

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

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

// Always inlined: GCC kept it a call, returning the 80-byte stencil through
// memory, and one thread's deposit at 128^2 took 0.37 ms instead of 0.24.
__attribute__((always_inline)) inline AxisStencil stencil(int64_t node, double displacement, int64_t n, double h) {
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

namespace {

// Sums of one chunk of particles in objectiveGradientParticles.
struct GradientSums {
  double metricNorm = 0, transport = 0;
};

// g_i = m_i sum_j adjoint_j d W(x_j - p_i) / d u_i + c_i u_i for the
// particles [begin, end) of one sample (the deposit's adjoint, as in
// depositBackward, without the masses' part), and the sums of H0_i |g_i|^2
// and c_i |u_i|^2 / 2 over them.
GradientSums objectiveGradientParticles(const Shape& s, const double* m, const double* u, const double* adjoint,
                                        const double* c, const double* H0, int64_t begin, int64_t end, double* g) {
  GradientSums sums;
  if (s.dim == 2) {
    forEachParticle(s, u, begin, end, [&](int64_t i, const std::array<AxisStencil, 3>& st) {
      // Per row a of the stencil: sum_c w1_c A and sum_c w1'_c A.
      double d0 = 0, d1 = 0;
      for (int a = 0; a < 3; ++a) {
        const double* row = adjoint + st[0].index[a] * s.n[1];
        const double A0 = row[st[1].index[0]], A1 = row[st[1].index[1]], A2 = row[st[1].index[2]];
        const double weighted = st[1].weight[0] * A0 + st[1].weight[1] * A1 + st[1].weight[2] * A2;
        const double sloped = st[1].slope[0] * A0 + st[1].slope[1] * A1 + st[1].slope[2] * A2;
        d0 += st[0].slope[a] * weighted;
        d1 += st[0].weight[a] * sloped;
      }
      const double u0 = u[i], u1 = u[s.nodes + i];
      const double g0 = (st[0].inside ? m[i] * d0 / s.h[0] : 0.0) + c[i] * u0;
      const double g1 = (st[1].inside ? m[i] * d1 / s.h[1] : 0.0) + c[i] * u1;
      g[i] = g0;
      g[s.nodes + i] = g1;
      sums.metricNorm += H0[i] * (g0 * g0 + g1 * g1);
      sums.transport += 0.5 * c[i] * (u0 * u0 + u1 * u1);
    });
    return sums;
  }
  forEachParticle(s, u, begin, end, [&](int64_t i, const std::array<AxisStencil, 3>& st) {
    double d0 = 0, d1 = 0, d2 = 0;
    for (int a = 0; a < 3; ++a)
      for (int b = 0; b < 3; ++b) {
        const double* line = adjoint + (st[0].index[a] * s.n[1] + st[1].index[b]) * s.n[2];
        double weighted = 0, sloped = 0;
        for (int e = 0; e < 3; ++e) {
          const double A = line[st[2].index[e]];
          weighted += st[2].weight[e] * A;
          sloped += st[2].slope[e] * A;
        }
        d0 += st[0].slope[a] * st[1].weight[b] * weighted;
        d1 += st[0].weight[a] * st[1].slope[b] * weighted;
        d2 += st[0].weight[a] * st[1].weight[b] * sloped;
      }
    double norm = 0, transport = 0;
    const double d[3] = {d0, d1, d2};
    for (int axis = 0; axis < 3; ++axis) {
      const double ua = u[axis * s.nodes + i];
      const double ga = (st[axis].inside ? m[i] * d[axis] / s.h[axis] : 0.0) + c[i] * ua;
      g[axis * s.nodes + i] = ga;
      norm += ga * ga;
      transport += ua * ua;
    }
    sums.metricNorm += H0[i] * norm;
    sums.transport += 0.5 * c[i] * transport;
  });
  return sums;
}

}  // namespace

bool fusedObjectiveGradientApplies(const at::Tensor& masses, const at::Tensor& displacement) {
  return fusedDepositApplies(masses, displacement);
}

ObjectiveGradient fusedObjectiveGradient(const at::Tensor& masses, const at::Tensor& displacement,
                                         const at::Tensor& energyGradient, const at::Tensor& transportWeight,
                                         const at::Tensor& inverseMetric, const Grid& grid) {
  const at::Tensor m = masses.contiguous(), u = displacement.contiguous();
  const at::Tensor A = energyGradient.to(at::kDouble).contiguous();
  const at::Tensor c = transportWeight.to(at::kDouble).contiguous(), H0 = inverseMetric.to(at::kDouble).contiguous();
  const Shape s = shapeOf(grid);
  const int64_t batch = m.size(0);
  ObjectiveGradient out;
  out.gradient = at::empty_like(u);
  out.metricNorm = at::empty({batch}, m.options());
  out.transport = at::empty({batch}, m.options());
  // Fixed chunks of one sample's particles (as the deposit's), their sums
  // added in chunk order.
  const int64_t chunks = std::clamp<int64_t>(s.nodes / 4096, 1, 16);
  auto sample = [&](int64_t b, bool parallel) {
    std::vector<GradientSums> partial(chunks);
    auto chunk = [&](int64_t k) {
      partial[k] = objectiveGradientParticles(
          s, m.data_ptr<double>() + b * s.nodes, u.data_ptr<double>() + b * s.dim * s.nodes,
          A.data_ptr<double>() + b * s.nodes, c.data_ptr<double>() + b * s.nodes, H0.data_ptr<double>() + b * s.nodes,
          k * s.nodes / chunks, (k + 1) * s.nodes / chunks, out.gradient.data_ptr<double>() + b * s.dim * s.nodes);
    };
    if (parallel)
      parallelFor(chunks, chunk);
    else
      for (int64_t k = 0; k < chunks; ++k) chunk(k);
    GradientSums total;
    for (const GradientSums& p : partial) total.metricNorm += p.metricNorm, total.transport += p.transport;
    out.metricNorm.data_ptr<double>()[b] = total.metricNorm;
    out.transport.data_ptr<double>()[b] = total.transport;
  };
  if (batch >= parallelWorkers() || chunks == 1) {
    at::parallel_for(0, batch, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) sample(b, false);
    });
  } else {
    for (int64_t b = 0; b < batch; ++b) sample(b, true);
  }
  return out;
}

bool fusedDepositApplies(const at::Tensor& masses, const at::Tensor& displacement) {
  return masses.device().is_cpu() && displacement.device().is_cpu() && masses.scalar_type() == at::kDouble &&
         displacement.scalar_type() == at::kDouble;
}

at::Tensor fusedDeposit(const at::Tensor& masses, const at::Tensor& displacement, const Grid& grid) {
  return DepositFunction::apply(masses, displacement, grid);
}

namespace {

// The limiter works on blocks of whole slabs (rows in 2D) along axis 0: at
// least 8 slabs and ~2048 nodes each. The blocks are fixed by the grid, not
// by the thread count, and the mass is summed per block and then in block
// order, so the result is the same on any number of threads.
int64_t limiterBlockSlabs(int64_t slab) { return std::max<int64_t>(8, (2048 + slab - 1) / slab); }

// Three-point sums along a line of f(in) (zero beyond its ends).
template <typename F>
void lineSum(const double* in, double* out, int64_t length, F&& f) {
  if (length == 1) {
    out[0] = f(in[0]);
    return;
  }
  out[0] = f(in[0]) + f(in[1]);
  for (int64_t k = 1; k + 1 < length; ++k) out[k] = f(in[k - 1]) + f(in[k]) + f(in[k + 1]);
  out[length - 1] = f(in[length - 2]) + f(in[length - 1]);
}

// 3^(d-1) neighbourhood sums of f(in) within one slab (n1 x n2: a row in
// 2D, where n2 = 1), into `out`; `scratch` holds n1 x n2 values.
template <typename F>
void slabBox(const double* in, double* out, double* scratch, int64_t n1, int64_t n2, F&& f) {
  if (n2 == 1) {
    lineSum(in, out, n1, f);
    return;
  }
  // Along axis 2 (within lines), then along axis 1 (across lines).
  for (int64_t j = 0; j < n1; ++j) lineSum(in + j * n2, scratch + j * n2, n2, f);
  for (int64_t j = 0; j < n1; ++j) {
    const double* line = scratch + j * n2;
    const double* below = j > 0 ? line - n2 : nullptr;
    const double* above = j + 1 < n1 ? line + n2 : nullptr;
    double* o = out + j * n2;
    for (int64_t k = 0; k < n2; ++k) o[k] = line[k] + (below ? below[k] : 0.0) + (above ? above[k] : 0.0);
  }
}

// 3^d neighbourhood sums of f(in) on the slabs [s0, s1): slab sums of
// s0 - 1 .. s1 (the halo recomputed, so blocks need no exchange), then
// three-slab sums. Returns them in a buffer of the calling thread, valid
// until its next call.
template <typename F>
const double* blockBox(const double* in, int64_t s0, int64_t s1, const int64_t n[3], F&& f) {
  thread_local std::vector<double> sums, scratch, box;
  const int64_t slab = n[1] * n[2];
  sums.resize((s1 - s0 + 2) * slab);
  scratch.resize(slab);
  box.resize((s1 - s0) * slab);
  for (int64_t s = s0 - 1; s <= s1; ++s) {
    double* target = sums.data() + (s - s0 + 1) * slab;
    if (s < 0 || s >= n[0])
      std::fill(target, target + slab, 0.0);
    else
      slabBox(in + s * slab, target, scratch.data(), n[1], n[2], f);
  }
  for (int64_t s = s0; s < s1; ++s) {
    const double* mid = sums.data() + (s - s0 + 1) * slab;
    double* o = box.data() + (s - s0) * slab;
    for (int64_t k = 0; k < slab; ++k) o[k] = mid[k - slab] + mid[k] + mid[k + slab];
  }
  return box.data();
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
  const int64_t slab = n[1] * n[2], blockSlabs = limiterBlockSlabs(slab);
  const int64_t blocks = (n[0] + blockSlabs - 1) / blockSlabs;
  const double volume = grid.cellVolume();
  const double* in = r.data_ptr<double>();
  double* o = out.data_ptr<double>();
  auto slabsOf = [&](int64_t block) {
    return std::make_pair(block * blockSlabs, std::min(n[0], (block + 1) * blockSlabs));
  };
  const auto positivePart = [](double x) { return std::max(x, 0.0); };
  const auto identity = [](double x) { return x; };

  // One sample. Every pass visits the blocks: in parallel when the samples
  // are fewer than the threads (a single density's step), else in sequence
  // on the sample's own thread.
  auto limitSample = [&](int64_t b, bool parallel) {
    const double* x = in + b * nodes;
    double* y = o + b * nodes;
    auto overBlocks = [&](const auto& pass) {
      if (parallel)
        parallelFor(blocks, pass);
      else
        for (int64_t block = 0; block < blocks; ++block) pass(block);
    };
    std::vector<char> blockNegative(blocks);
    std::vector<double> blockMass(blocks), share;
    overBlocks([&](int64_t block) {
      const auto [s0, s1] = slabsOf(block);
      bool negative = false;
      for (int64_t i = s0 * slab; i < s1 * slab; ++i) negative |= x[i] < 0;
      blockNegative[block] = negative;
    });
    if (std::find(blockNegative.begin(), blockNegative.end(), 1) != blockNegative.end()) {
      // DESIGN.md §2.2 step 5: a node with rho < 0 takes its deficit from the
      // positive nodes of its 3^d neighbourhood N in proportion to their mass:
      // share_i = -rho_i / sum_N max(rho, 0), rho'_j = max(rho_j, 0) (1 - sum_N share).
      share.resize(nodes);
      overBlocks([&](int64_t block) {
        const auto [s0, s1] = slabsOf(block);
        const double* box = blockBox(x, s0, s1, n, positivePart);
        for (int64_t i = s0 * slab, k = 0; i < s1 * slab; ++i, ++k)
          share[i] = x[i] < 0 ? -x[i] / std::max(box[k], 1e-300) : 0.0;
      });
      overBlocks([&](int64_t block) {
        const auto [s0, s1] = slabsOf(block);
        const double* box = blockBox(share.data(), s0, s1, n, identity);
        double mass = 0;
        for (int64_t i = s0 * slab, k = 0; i < s1 * slab; ++i, ++k) {
          const double p = positivePart(x[i]);
          y[i] = std::max(p - p * box[k], 0.0);
          mass += y[i];
        }
        blockMass[block] = mass;
      });
    } else {
      overBlocks([&](int64_t block) {
        const auto [s0, s1] = slabsOf(block);
        double mass = 0;
        for (int64_t i = s0 * slab; i < s1 * slab; ++i) {
          y[i] = x[i];
          mass += x[i];
        }
        blockMass[block] = mass;
      });
    }
    double mass = 0;
    for (int64_t block = 0; block < blocks; ++block) mass += blockMass[block];
    const double scale = target.data_ptr<double>()[b] / std::max(mass * volume, 1e-300);
    overBlocks([&](int64_t block) {
      const auto [s0, s1] = slabsOf(block);
      for (int64_t i = s0 * slab; i < s1 * slab; ++i) y[i] *= scale;
    });
  };
  if (batch >= parallelWorkers() || blocks == 1) {
    at::parallel_for(0, batch, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) limitSample(b, false);
    });
  } else {
    for (int64_t b = 0; b < batch; ++b) limitSample(b, true);
  }
  return out;
}

}  // namespace jko
