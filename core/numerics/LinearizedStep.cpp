#include "numerics/LinearizedStep.h"

#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <deque>
#include <map>
#include <mutex>
#include <vector>

#include "numerics/Errors.h"
#include "numerics/Multigrid.h"
#include "numerics/StepCertificate.h"
#include "parallel/Communicator.h"
#include "runtime/TaskTeam.h"

namespace jko {
namespace {

// A field's shape with three slots, the grid's last axis innermost (a 2D
// grid has a leading slot of length 1), as in Multigrid.
struct Shape {
  int dim = 2;
  std::array<int64_t, 3> n{1, 1, 1};
  std::array<int64_t, 3> stride{1, 1, 1};
  std::array<double, 3> h{1, 1, 1};
  int64_t nodes = 1;
  int slot(int axis) const { return axis + 3 - dim; }
};

Shape shapeOf(const Grid& grid) {
  Shape s;
  s.dim = grid.dim;
  for (int a = 0; a < grid.dim; ++a) {
    s.n[s.slot(a)] = grid.n[a];
    s.h[s.slot(a)] = grid.spacing[a];
  }
  s.stride = {s.n[1] * s.n[2], s.n[2], 1};
  s.nodes = s.n[0] * s.n[1] * s.n[2];
  return s;
}

// A three-point operator along one axis, y_i = l x_{i-1} + c x_i + r x_{i+1}
// inside, with its own two weights at each wall.
struct ThreePoint {
  double firstC, firstR;
  double l, c, r;
  double lastL, lastC;
};

// S: the deposit at u = 0 along one axis, (1/8, 3/4, 1/8), the weight that
// would leave the box folded onto the wall node.
constexpr ThreePoint kSpread{7.0 / 8, 1.0 / 8, 1.0 / 8, 3.0 / 4, 1.0 / 8, 1.0 / 8, 7.0 / 8};
// G / h: d rho'_j / d(m_i u_i) of the quadratic B-spline (slopes -1/2, 0,
// +1/2 at the nodes left, centre and right of the particle), folded at the
// walls: the deposit's divergence of the mass flux, with a minus sign.
ThreePoint depositDerivative(double h) {
  const double q = 0.5 / h;
  return {-q, -q, q, 0.0, -q, q, q};
}
// (G / h)^T: the gradient that pairs with it.
ThreePoint depositDerivativeAdjoint(double h) {
  const double q = 0.5 / h;
  return {-q, q, -q, 0.0, q, -q, q};
}

// The inner loops of a three-point pass, in three variants (store, store
// scaled per node, accumulate), each compiled per instruction set: a line
// along the contiguous axis, and whole rows combined across an outer axis.
#define JKO_VECTORISED __attribute__((target_clones("avx512f", "avx2", "default")))
JKO_VECTORISED void lineStore(const double* __restrict__ in, double* __restrict__ out, int64_t n, double l, double c,
                              double r) {
  for (int64_t i = 1; i + 1 < n; ++i) out[i] = l * in[i - 1] + c * in[i] + r * in[i + 1];
}
JKO_VECTORISED void lineScaled(const double* __restrict__ in, double* __restrict__ out,
                               const double* __restrict__ scale, int64_t n, double l, double c, double r) {
  for (int64_t i = 1; i + 1 < n; ++i) out[i] = scale[i] * (l * in[i - 1] + c * in[i] + r * in[i + 1]);
}
JKO_VECTORISED void lineAccumulate(const double* __restrict__ in, double* __restrict__ out, int64_t n, double l,
                                   double c, double r) {
  for (int64_t i = 1; i + 1 < n; ++i) out[i] += l * in[i - 1] + c * in[i] + r * in[i + 1];
}
JKO_VECTORISED void rowsStore(const double* __restrict__ left, const double* __restrict__ centre,
                              const double* __restrict__ right, double* __restrict__ out, int64_t count, double l,
                              double c, double r) {
  for (int64_t j = 0; j < count; ++j) out[j] = l * left[j] + c * centre[j] + r * right[j];
}
JKO_VECTORISED void rowsScaled(const double* __restrict__ left, const double* __restrict__ centre,
                               const double* __restrict__ right, double* __restrict__ out,
                               const double* __restrict__ scale, int64_t count, double l, double c, double r) {
  for (int64_t j = 0; j < count; ++j) out[j] = scale[j] * (l * left[j] + c * centre[j] + r * right[j]);
}
JKO_VECTORISED void rowsAccumulate(const double* __restrict__ left, const double* __restrict__ centre,
                                   const double* __restrict__ right, double* __restrict__ out, int64_t count, double l,
                                   double c, double r) {
  for (int64_t j = 0; j < count; ++j) out[j] += l * left[j] + c * centre[j] + r * right[j];
}

// y = op x along one slot; with `scale`, y = scale (op x) per node; with
// Accumulate, y += ... instead (never both). A missing neighbour at a wall is
// passed as a row of the node itself with weight 0.
template <bool Accumulate>
void applyAlong(const Shape& s, int slot, const ThreePoint& op, const double* x, double* y,
                const double* scale = nullptr) {
  const int64_t n = s.n[slot], inner = s.stride[slot], outer = s.nodes / (n * inner);
  // Lines (inner == 1) or rows (i, o) are independent: on large grids in
  // blocks on the task team (a pass at 256^2 is ~50 us).
  const int64_t items = inner == 1 ? outer : outer * n;
  auto run = [&](int64_t first, int64_t last) {
    for (int64_t item = first; item < last; ++item) {
      if (inner == 1) {
        const int64_t base = item * n;
        const double* in = x + base;
        double* out = y + base;
        const double* sc = scale ? scale + base : nullptr;
        const double firstValue = op.firstC * in[0] + op.firstR * in[1];
        const double lastValue = op.lastL * in[n - 2] + op.lastC * in[n - 1];
        if constexpr (Accumulate) {
          lineAccumulate(in, out, n, op.l, op.c, op.r);
          out[0] += firstValue, out[n - 1] += lastValue;
        } else if (sc) {
          lineScaled(in, out, sc, n, op.l, op.c, op.r);
          out[0] = sc[0] * firstValue, out[n - 1] = sc[n - 1] * lastValue;
        } else {
          lineStore(in, out, n, op.l, op.c, op.r);
          out[0] = firstValue, out[n - 1] = lastValue;
        }
        continue;
      }
      const int64_t o = item / n, i = item % n, base = o * n * inner;
      const double* in = x + base;
      const double* left = in + std::max<int64_t>(i - 1, 0) * inner;
      const double* centre = in + i * inner;
      const double* right = in + std::min<int64_t>(i + 1, n - 1) * inner;
      const double wl = i == 0 ? 0.0 : i + 1 == n ? op.lastL : op.l;
      const double wc = i == 0 ? op.firstC : i + 1 == n ? op.lastC : op.c;
      const double wr = i == 0 ? op.firstR : i + 1 == n ? 0.0 : op.r;
      const int64_t offset = base + i * inner;
      if constexpr (Accumulate)
        rowsAccumulate(left, centre, right, y + offset, inner, wl, wc, wr);
      else if (scale)
        rowsScaled(left, centre, right, y + offset, scale + offset, inner, wl, wc, wr);
      else
        rowsStore(left, centre, right, y + offset, inner, wl, wc, wr);
    }
  };
  const int64_t workers = parallelWorkers();
  if (s.nodes < 32768 || workers < 2 || items < 2 * workers) {
    run(0, items);
    return;
  }
  const int64_t blocks = 2 * workers;
  parallelFor(blocks, [&](int64_t b) { run(items * b / blocks, items * (b + 1) / blocks); });
}

void applyAlong(const Shape& s, int slot, const ThreePoint& op, const double* x, double* y) {
  applyAlong<false>(s, slot, op, x, y);
}

// y = scale (K_a^T x) (the gradient along axis a, spread along the others;
// no scale: 1) and y (+)= K_a x (spread along the others, then the deposit's
// derivative along a). `work` holds two fields of scratch.
void depositAdjoint(const Shape& s, int axis, const double* x, double* y, std::vector<double>& work,
                    const double* scale = nullptr) {
  work.resize(2 * s.nodes);
  double* buffers[2] = {work.data(), work.data() + s.nodes};
  std::vector<std::pair<int, ThreePoint>> passes{{s.slot(axis), depositDerivativeAdjoint(s.h[s.slot(axis)])}};
  for (int other = 0; other < s.dim; ++other)
    if (other != axis) passes.emplace_back(s.slot(other), kSpread);
  const double* in = x;
  for (size_t p = 0; p < passes.size(); ++p) {
    const bool last = p + 1 == passes.size();
    double* out = last ? y : buffers[p % 2];
    applyAlong<false>(s, passes[p].first, passes[p].second, in, out, last ? scale : nullptr);
    in = out;
  }
}

template <bool Accumulate>
void depositLinear(const Shape& s, int axis, const double* x, double* y, std::vector<double>& work) {
  work.resize(2 * s.nodes);
  double* buffers[2] = {work.data(), work.data() + s.nodes};
  const double* in = x;
  int next = 0;
  for (int other = 0; other < s.dim; ++other) {
    if (other == axis) continue;
    applyAlong<false>(s, s.slot(other), kSpread, in, buffers[next]);
    in = buffers[next];
    next = 1 - next;
  }
  applyAlong<Accumulate>(s, s.slot(axis), depositDerivative(s.h[s.slot(axis)]), in, y);
}

void depositLinear(const Shape& s, int axis, const double* x, double* y, std::vector<double>& work) {
  depositLinear<false>(s, axis, x, y, work);
}

// Calls f(i, index) for every node i of the shape, index its three slot
// indices, without divisions.
template <typename F>
void forEachNode(const Shape& s, F&& f) {
  int64_t i = 0;
  std::array<int64_t, 3> index{0, 0, 0};
  for (index[0] = 0; index[0] < s.n[0]; ++index[0])
    for (index[1] = 0; index[1] < s.n[1]; ++index[1])
      for (index[2] = 0; index[2] < s.n[2]; ++index[2], ++i) f(i, index);
}

// One sample's elliptic problem, all on the nodes (float64, contiguous):
//   (diag(a) + tau sum_a K_a diag(m e_a) K_a^T) x = rhs,  u_a = -tau e_a K_a^T x.
// The caller fills masses, a, rhs and e, then calls prepare().
// A model is kept per grid shape and thread (modelFor), so that a rollout
// allocates its fields and multigrid levels once.
class SampleModel {
 public:
  /// `s`: the grid's shape, or on a split grid the rank's window of it
  /// (owned planes and `split->halo` more each side, fewer at the walls).
  SampleModel(const Shape& s, int smoothing, const LinearizedSplit* split = nullptr)
      : s_(s),
        mobility_(s.dim, std::vector<double>(s.nodes)),
        scaledMobility_(s.dim, std::vector<double>(s.nodes)),
        scaledVelocity_(s.dim, std::vector<double>(s.nodes)),
        faces_(s.dim, std::vector<double>(s.nodes)),
        thirdDifference_(s.dim, std::vector<double>(s.nodes)),
        x_(s.nodes),
        r_(s.nodes),
        z_(s.nodes),
        p_(s.nodes),
        q_(s.nodes),
        flux_(s.nodes),
        work_(s.nodes) {
    a.assign(s.nodes, 0.0);
    rhs.assign(s.nodes, 0.0);
    e.assign(s.dim, std::vector<double>(s.nodes, 0.0));
    std::array<int64_t, 3> n{1, 1, 1};
    std::array<double, 3> h{1, 1, 1};
    for (int axis = 0; axis < s.dim; ++axis) {
      n[axis] = s.n[s.slot(axis)];
      h[axis] = s.h[s.slot(axis)];
    }
    const int64_t plane = s.nodes / s.n[s.slot(0)];
    ownedEnd_ = s.nodes;
    if (split) {
      // The window's owned planes; the multigrid is the whole grid's, split.
      split_ = split;
      const int rank = split->slabs.communicator->rank();
      const int64_t lo = split->slabs.firstPlane[rank], hi = split->slabs.firstPlane[rank + 1];
      const int64_t windowLo = std::max<int64_t>(0, lo - split->halo);
      ownedBegin_ = (lo - windowLo) * plane;
      ownedEnd_ = (hi - windowLo) * plane;
      n[0] = split->slabs.firstPlane.back();
      multigrid_ = std::make_unique<Multigrid>(s.dim, n, h, smoothing, smoothing, split->slabs);
    } else {
      multigrid_ = std::make_unique<Multigrid>(s.dim, n, h, smoothing, smoothing);
    }
  }

  /// A split grid: the halo planes of a window field from their owners.
  void refreshHalo(double* field) const {
    if (split_)
      jko::refreshHalo(*split_->slabs.communicator, split_->slabs.firstPlane, split_->halo, s_.nodes / s_.n[s_.slot(0)],
                       field);
  }
  /// Sums over the ranks of a split grid, in place.
  void sumOverRanks(double* values, int64_t count) const {
    if (split_) split_->slabs.communicator->sum(values, count);
  }

  const double* masses = nullptr;  // m
  /// On a split grid: m on the window, where `masses` points.
  std::vector<double> windowMasses;
  // What the model was last prepared for: the state's masses (a handle, so
  // that no other tensor can take their place while it is kept), their
  // version, the sample and the objective and options.
  struct Key {
    at::Tensor masses;
    int64_t version = -1, sample = -1;
    const void* objective = nullptr;
    double stabilisation = 0;
    int iterations = 0;
    bool negativeMassesMove = false;
  };
  bool preparedFor(const Key& k) const {
    return key_.masses.defined() && key_.masses.unsafeGetTensorImpl() == k.masses.unsafeGetTensorImpl() &&
           key_.version == k.version && key_.sample == k.sample && key_.objective == k.objective &&
           key_.stabilisation == k.stabilisation && key_.iterations == k.iterations &&
           key_.negativeMassesMove == k.negativeMassesMove;
  }
  void remember(Key k) { key_ = std::move(k); }
  std::vector<double> a, rhs;
  std::vector<std::vector<double>> e;  // per axis

  void prepare(double tau, const LinearizedStepOptions& options) {
    tau_ = tau;
    iterations_ = options.iterations;
    const Shape& s = s_;
    for (int axis = 0; axis < s.dim; ++axis) {
      const int slot = s.slot(axis);
      const int64_t stride = s.stride[slot], n = s.n[slot];
      std::vector<double>& c = mobility_[axis];
      for (int64_t i = 0; i < s.nodes; ++i) {
        c[i] = masses[i] * e[axis][i];
        scaledMobility_[axis][i] = tau * c[i];
        scaledVelocity_[axis][i] = -tau * e[axis][i];
      }
      // Face weights tau (c_i + c_j) / 2, c = m e, for the compact
      // preconditioner; the stabilisation's third-difference weights where
      // the mobility jumps (fronts, edges, vacuum: see the header). On a
      // smooth state they vanish and a mode keeps the deposit's own response.
      const double stabilisation = options.stabilisation * tau / (64 * s.h[slot] * s.h[slot]);
      forEachNode(s, [&](int64_t i, const std::array<int64_t, 3>& index) {
        const int64_t k = index[slot];
        faces_[axis][i] = k + 1 < n ? 0.5 * tau * (c[i] + c[i + stride]) : 0.0;
        double third = 0;
        if (k >= 1 && k + 2 < n && stabilisation > 0) {
          const double c0 = c[i - stride], c1 = c[i], c2 = c[i + stride], c3 = c[i + 2 * stride];
          const double hi = std::max({c0, c1, c2, c3}), lo = std::min({c0, c1, c2, c3});
          const double contrast = hi > 0 ? std::clamp(((hi - lo) / hi - 0.25) / 0.75, 0.0, 1.0) : 0.0;
          third = stabilisation * contrast * (c0 + c1 + c2 + c3);
        }
        thirdDifference_[axis][i] = third;
      });
    }
    std::array<const double*, 3> faceData{nullptr, nullptr, nullptr};
    for (int axis = 0; axis < s.dim; ++axis) faceData[axis] = faces_[axis].data() + ownedBegin_;
    multigrid_->setCoefficients(a.data() + ownedBegin_, faceData);
  }

  // y = (diag(a) + tau L) x with the deposit's own L, plus the stabilisation
  // D3^T diag(k) D3 x along each axis (D3 the third difference over the four
  // nodes i-1 .. i+2, centred on the face i + 1/2).
  void applyOperator(const double* x, double* y) {
    const int64_t N = s_.nodes;
    for (int64_t i = 0; i < N; ++i) y[i] = a[i] * x[i];
    for (int axis = 0; axis < s_.dim; ++axis) {
      depositAdjoint(s_, axis, x, flux_.data(), scratch_, scaledMobility_[axis].data());
      depositLinear<true>(s_, axis, flux_.data(), y, scratch_);
      const int slot = s_.slot(axis);
      const int64_t stride = s_.stride[slot];
      const double* k = thirdDifference_[axis].data();
      for (int64_t i = 0; i < N; ++i) {
        if (k[i] == 0) continue;  // zero at the walls and wherever the mobility is smooth
        const double f = k[i] * (x[i + 2 * stride] - 3 * x[i + stride] + 3 * x[i] - x[i - stride]);
        y[i + 2 * stride] += f;
        y[i + stride] -= 3 * f;
        y[i] += 3 * f;
        y[i - stride] -= f;
      }
    }
  }

  // The problem by conjugate gradients, preconditioned by one V-cycle of the
  // compact operator per iteration. The operator is symmetric positive
  // semi-definite for any density; CG never increases the error in its
  // energy norm, so a few iterations give a stable step. The constant part
  // is solved first, exactly (L 1 = 0, so it is the A-orthogonal projection
  // onto constants, <1, rhs> / <1, a>): it moves nothing, but left in, it
  // dominates CG's step lengths and the part that moves mass gets an
  // arbitrary polynomial (a 10^-5 cosine mode on a constant state came out
  // amplified 3x).
  //
  // On a split grid the vectors are windows: CG's updates and inner
  // products run over the owned nodes (the products summed over the ranks),
  // the V-cycle is the split multigrid's, and p's halo is refreshed before
  // each product with the operator. x is current on the owned nodes.
  void solve(const double* b, double* x) {
    const int64_t first = ownedBegin_, last = ownedEnd_;
    double sums[2] = {0, 0};
    for (int64_t i = first; i < last; ++i) sums[0] += b[i], sums[1] += a[i];
    sumOverRanks(sums, 2);
    const double bSum = sums[0], aSum = sums[1];
    const double constant = aSum > 0 ? bSum / aSum : 0.0;
    for (int64_t i = first; i < last; ++i) {
      x[i] = constant;
      r_[i] = b[i] - a[i] * constant;
      z_[i] = 0;
    }
    multigrid_->cycle(r_.data() + first, z_.data() + first);
    p_ = z_;
    auto dot = [&](const std::vector<double>& u, const std::vector<double>& v) {
      double sum = 0;
      for (int64_t i = first; i < last; ++i) sum += u[i] * v[i];
      sumOverRanks(&sum, 1);
      return sum;
    };
    double rz = dot(r_, z_);
    for (int iteration = 0; iteration < iterations_; ++iteration) {
      refreshHalo(p_.data());
      applyOperator(p_.data(), q_.data());
      const double pq = dot(p_, q_);
      if (!(pq > 0) || !(rz > 0)) break;
      const double alpha = rz / pq;
      for (int64_t i = first; i < last; ++i) {
        x[i] += alpha * p_[i];
        r_[i] -= alpha * q_[i];
      }
      if (iteration + 1 == iterations_) break;
      std::fill(z_.begin() + first, z_.begin() + last, 0.0);
      multigrid_->cycle(r_.data() + first, z_.data() + first);
      const double rzNext = dot(r_, z_);
      const double beta = rzNext / rz;
      rz = rzNext;
      for (int64_t i = first; i < last; ++i) p_[i] = z_[i] + beta * p_[i];
    }
  }

  // The Gauss-Newton correction for an objective gradient r (dim x N, per
  // unit cell volume) with this model's Hessian A = D + B^T H B (D_a =
  // diag(m / (tau e_a)), B = K M): delta = -A^-1 r by Woodbury,
  //   psi = (H^-1 + tau L)^-1 tau sum_a K_a (e_a r_a),
  //   delta_a = -tau (e_a / m) r_a + tau e_a K_a^T psi,
  // one more solve of the step's elliptic problem. For r = J'(0) it is the
  // step itself.
  void correct(const double* r, double* delta) {
    const int64_t N = s_.nodes;
    std::fill(work_.begin(), work_.end(), 0.0);
    for (int axis = 0; axis < s_.dim; ++axis) {
      const double* ra = r + axis * N;
      const std::vector<double>& ea = e[axis];
      for (int64_t i = 0; i < N; ++i) flux_[i] = tau_ * ea[i] * ra[i];
      depositLinear<true>(s_, axis, flux_.data(), work_.data(), scratch_);
    }
    solve(work_.data(), x_.data());
    refreshHalo(x_.data());
    for (int axis = 0; axis < s_.dim; ++axis) {
      double* da = delta + axis * N;
      const double* ra = r + axis * N;
      const std::vector<double>& ea = e[axis];
      depositAdjoint(s_, axis, x_.data(), da, scratch_, scaledVelocity_[axis].data());  // -tau e_a K_a^T psi
      for (int64_t i = 0; i < N; ++i) da[i] = ea[i] != 0 ? -da[i] - tau_ * ea[i] / masses[i] * ra[i] : 0.0;
    }
  }

  // u_a = -tau e_a K_a^T x into u (dim x N).
  void step(double* u) {
    const int64_t N = s_.nodes;
    solve(rhs.data(), x_.data());
    refreshHalo(x_.data());
    for (int axis = 0; axis < s_.dim; ++axis)
      depositAdjoint(s_, axis, x_.data(), u + axis * N, scratch_, scaledVelocity_[axis].data());
  }

 private:
  Shape s_;
  double tau_ = 0;
  int iterations_ = 3;
  std::vector<std::vector<double>> mobility_, scaledMobility_, scaledVelocity_, faces_, thirdDifference_;
  std::vector<double> x_, r_, z_, p_, q_, flux_, work_, scratch_;
  std::unique_ptr<Multigrid> multigrid_;
  Key key_;
  const LinearizedSplit* split_ = nullptr;
  int64_t ownedBegin_ = 0, ownedEnd_ = 0;  ///< the owned nodes of the fields (all but on a split grid)
};

// The calling thread's model for a grid shape and smoothing.
SampleModel& modelFor(const Shape& s, int smoothing) {
  thread_local std::map<std::array<int64_t, 5>, std::unique_ptr<SampleModel>> cache;
  auto& entry = cache[{s.dim, s.n[0], s.n[1], s.n[2], smoothing}];
  if (!entry) entry = std::make_unique<SampleModel>(s, smoothing);
  return *entry;
}

// The calling thread's model for a rank's window of a split grid, kept
// while the window, the smoothing and the split stay the same (allocating
// a model's fields and levels cost as much as its step at 128^3).
SampleModel& splitModelFor(const Shape& window, int smoothing, const LinearizedSplit& split) {
  struct Cached {
    std::unique_ptr<SampleModel> model;
    std::array<int64_t, 5> shape{};
    LinearizedSplit split;
  };
  thread_local Cached cache;
  const std::array<int64_t, 5> shape{window.dim, window.n[0], window.n[1], window.n[2], smoothing};
  const bool same = cache.model && cache.shape == shape && cache.split.slabs.communicator == split.slabs.communicator &&
                    cache.split.slabs.firstPlane == split.slabs.firstPlane &&
                    cache.split.slabs.gatherNodes == split.slabs.gatherNodes && cache.split.halo == split.halo;
  if (!same) {
    cache.model.reset();
    cache.shape = shape;
    cache.split = split;
    cache.model = std::make_unique<SampleModel>(window, smoothing, &cache.split);
  }
  return *cache.model;
}

// One pass of a sliding window of `radius` nodes along `axis` (clamped at
// the walls): the window's minimum, or its mean.
void slideAlong(const Shape& s, int axis, int64_t radius, bool minimum, std::vector<double>& f,
                std::vector<double>& work) {
  const int slot = s.slot(axis);
  const int64_t n = s.n[slot], stride = s.stride[slot], blocks = s.nodes / (n * stride);
  work = f;
  if (stride == 1) {
    // Along contiguous lines: each node's window directly (a run of one
    // node per window line cost a copy and a loop per node).
    for (int64_t block = 0; block < blocks; ++block) {
      const double* in = work.data() + block * n;
      double* out = f.data() + block * n;
      for (int64_t k = 0; k < n; ++k) {
        const int64_t lo = std::max<int64_t>(0, k - radius), hi = std::min<int64_t>(n - 1, k + radius);
        double value = in[lo];
        for (int64_t l = lo + 1; l <= hi; ++l) value = minimum ? std::min(value, in[l]) : value + in[l];
        out[k] = minimum ? value : value / static_cast<double>(hi - lo + 1);
      }
    }
    return;
  }
  // Node (block, k, j) is block n stride + k stride + j: for each k the
  // window's lines are contiguous runs of `stride` nodes.
  for (int64_t block = 0; block < blocks; ++block) {
    const double* in = work.data() + block * n * stride;
    double* out = f.data() + block * n * stride;
    for (int64_t k = 0; k < n; ++k) {
      const int64_t lo = std::max<int64_t>(0, k - radius), hi = std::min<int64_t>(n - 1, k + radius);
      double* target = out + k * stride;
      std::copy(in + lo * stride, in + (lo + 1) * stride, target);
      for (int64_t l = lo + 1; l <= hi; ++l) {
        const double* line = in + l * stride;
        if (minimum) {
          for (int64_t j = 0; j < stride; ++j) target[j] = std::min(target[j], line[j]);
        } else {
          for (int64_t j = 0; j < stride; ++j) target[j] += line[j];
        }
      }
      if (!minimum) {
        const double count = static_cast<double>(hi - lo + 1);
        for (int64_t j = 0; j < stride; ++j) target[j] /= count;
      }
    }
  }
}

// Caps each particle's |u_i| at capCells cells: scales it by min(1, cap /
// |u_i|), or, with a radius, by those factors made smooth: their minimum
// over the (2r+1)^d box around each node, then that field's mean over the
// same box. Every node's window mean only takes minima over boxes that
// contain the node itself, so no particle moves more than the cap;
// neighbouring particles are scaled alike, so a correction keeps its shape
// instead of a grid-scale speckle (docs/design.md, "A smooth trust
// region").
void capDisplacement(const Shape& s, double capCells, int64_t radius, double* u) {
  double hMin = 1e300;
  for (int a = 0; a < s.dim; ++a) hMin = std::min(hMin, s.h[s.slot(a)]);
  const double cap = capCells * hMin;
  const int64_t N = s.nodes;
  std::vector<double> factor(N, 1.0), work;
  bool any = false;
  for (int64_t i = 0; i < N; ++i) {
    double speed2 = 0;
    for (int a = 0; a < s.dim; ++a) speed2 += u[a * N + i] * u[a * N + i];
    if (speed2 > cap * cap) factor[i] = cap / std::sqrt(speed2), any = true;
  }
  if (!any) return;
  if (radius > 0)
    for (bool minimum : {true, false})
      for (int a = 0; a < s.dim; ++a) slideAlong(s, a, radius, minimum, factor, work);
  for (int a = 0; a < s.dim; ++a)
    for (int64_t i = 0; i < N; ++i) u[a * N + i] *= factor[i];
}

}  // namespace

at::Tensor depositResponse(const Grid& grid, const at::Tensor& flux) {
  const Shape s = shapeOf(grid);
  const at::Tensor f = flux.to(at::kCPU, at::kDouble).contiguous();
  const int64_t batch = f.size(0);
  at::Tensor out = at::zeros(grid.batchShape(batch), f.options());
  std::vector<double> work(s.nodes), scratch;
  for (int64_t b = 0; b < batch; ++b)
    for (int a = 0; a < grid.dim; ++a) {
      depositLinear(s, a, f.data_ptr<double>() + (b * grid.dim + a) * s.nodes, work.data(), scratch);
      double* o = out.data_ptr<double>() + b * s.nodes;
      for (int64_t i = 0; i < s.nodes; ++i) o[i] += work[i];
    }
  return out;
}

at::Tensor depositResponseAdjoint(const Grid& grid, const at::Tensor& phi) {
  const Shape s = shapeOf(grid);
  const at::Tensor p = phi.to(at::kCPU, at::kDouble).contiguous();
  const int64_t batch = p.size(0);
  std::vector<int64_t> sizes{batch, grid.dim};
  for (int a = 0; a < grid.dim; ++a) sizes.push_back(grid.n[a]);
  at::Tensor out = at::zeros(sizes, p.options());
  std::vector<double> scratch;
  for (int64_t b = 0; b < batch; ++b)
    for (int a = 0; a < grid.dim; ++a)
      depositAdjoint(s, a, p.data_ptr<double>() + b * s.nodes, out.data_ptr<double>() + (b * grid.dim + a) * s.nodes,
                     scratch);
  return out;
}

LinearizedStep::LinearizedStep(std::shared_ptr<const JkoObjective> objective, LinearizedStepOptions options)
    : objective_(std::move(objective)), options_(options) {
  validate(options_);
}

void LinearizedStep::validate(const LinearizedStepOptions& options) {
  if (options.iterations < 1)
    throw InvalidParameter("linearised step iterations", formatValue(options.iterations), "must be >= 1");
  if (!(options.capCells > 0)) throw InvalidParameter("displacement cap", formatValue(options.capCells), "must be > 0");
  if (!(options.correctionCapCells >= 0))
    throw InvalidParameter("correction cap", formatValue(options.correctionCapCells), "must be >= 0 (0: none)");
  if (options.correctionCapRadius < 0)
    throw InvalidParameter("correction cap radius", std::to_string(options.correctionCapRadius),
                           "must be >= 0 (0: each particle's own factor)");
  if (options.extraCorrections < 0)
    throw InvalidParameter("extra corrections", std::to_string(options.extraCorrections), "must be >= 0 (0: none)");
  if (options.furtherCorrections < 0)
    throw InvalidParameter("further corrections", std::to_string(options.furtherCorrections), "must be >= 0 (0: none)");
  if (options.furtherNewtonIterations < 0)
    throw InvalidParameter("Gauss-Newton iterations of the further corrections",
                           std::to_string(options.furtherNewtonIterations), "must be >= 0 (0: quasi-Newton)");
  if (!(options.furtherNewtonCertified >= 0))
    throw InvalidParameter("certificate that ends the Gauss-Newton further corrections",
                           formatValue(options.furtherNewtonCertified), "must be >= 0");
  if (!(options.furtherCorrectionsAbove > 0))
    throw InvalidParameter("further corrections threshold", formatValue(options.furtherCorrectionsAbove),
                           "must be > 0 (a relative L1 distance)");
  if (options.extraCorrectionMemory < 0)
    throw InvalidParameter("extra corrections' L-BFGS memory", std::to_string(options.extraCorrectionMemory),
                           "must be >= 0 (0: chord steps)");
  if (!(options.extraCorrectionsAbove >= 0))
    throw InvalidParameter("extra corrections threshold", formatValue(options.extraCorrectionsAbove),
                           "must be >= 0 (an estimated relative L1 distance to the minimiser)");
  if (!(options.extraCorrectionsAboveWithoutDiffusion >= 0))
    throw InvalidParameter("extra corrections threshold without diffusion",
                           formatValue(options.extraCorrectionsAboveWithoutDiffusion),
                           "must be >= 0 (an estimated relative L1 distance to the minimiser)");
  if (!(options.correctionTolerance >= 0))
    throw InvalidParameter("correction tolerance", formatValue(options.correctionTolerance), "must be >= 0 (0: none)");
  if (options.lineSearchTrials < 1)
    throw InvalidParameter("line search trials", formatValue(options.lineSearchTrials), "must be >= 1");
}

namespace {
// a = 1 / U''(rho) and rhs = a g at N nodes (the entropy: rho / D; the
// porous medium: rho^(2-m) / (D m), bounded where m > 2 makes it infinite
// at vacuum, by rho >= 1e-6 of the density's peak; no internal energy: a
// large, phi = g).
void inverseHessianAndRhs(const EnergySpec& spec, int64_t N, double peak, const double* r, const double* g, double* a,
                          double* rhs) {
  const bool entropy = spec.internal == InternalKind::Entropy && spec.diffusion > 0;
  const bool porous = spec.internal == InternalKind::PorousMedium && spec.diffusion > 0;
  for (int64_t i = 0; i < N; ++i) {
    double inverseHessian = 1e12;
    if (entropy) {
      inverseHessian = std::max(r[i], 0.0) / spec.diffusion;
    } else if (porous) {
      const double exponent = spec.exponent;
      const double base = exponent > 2 ? std::max(r[i], 1e-6 * peak) : std::max(r[i], 0.0);
      inverseHessian = (exponent == 2 ? 1.0 : std::pow(base, 2 - exponent)) / (spec.diffusion * exponent);
    }
    a[i] = inverseHessian;
    rhs[i] = inverseHessian * g[i];
  }
}

// d^2 Phi / dx^2 along a slot, folded at the walls.
void secondDifference(const Shape& shape, int slot, const double* phi, double* out) {
  const double h2 = shape.h[slot] * shape.h[slot];
  applyAlong(shape, slot, {-1.0 / h2, 1.0 / h2, 1.0 / h2, -2.0 / h2, 1.0 / h2, 1.0 / h2, -1.0 / h2}, phi, out);
}

// e_a = m / (w + tau m d_a) at N nodes, d_a the curvature of Phi along a
// (null: none). In the step from u = 0 only particles of positive mass
// move (the pre-filter's small negative masses at steep fronts would move
// up the gradient); a concave potential may not make the step's metric
// indefinite. m e = m^2 / denominator >= 0 either way.
void transportMobility(double tau, int64_t N, const double* m, const double* w, const double* curvature,
                       bool negativeMassesMove, double* e) {
  for (int64_t i = 0; i < N; ++i) {
    const double d = curvature ? curvature[i] : 0.0;
    const double denominator = std::max(w[i] + tau * m[i] * d, 0.5 * w[i]);
    const bool moves = w[i] > 0 && (negativeMassesMove ? m[i] != 0 : m[i] > 0);
    e[i] = moves ? m[i] / denominator : 0.0;
  }
}

// Builds each sample's model of the step from `state` (its a, rhs and e at
// u = 0, prepared) and calls f(model, b, shape) for sample b, in parallel
// over the batch. negativeMassesMove: particles of negative pre-filtered
// mass move too (the corrections' model; see LinearizedStep::correction).
template <typename F>
void forEachSampleModel(const JkoObjective& J, const LinearizedStepOptions& options, const JkoState& state,
                        bool negativeMassesMove, F&& f) {
  const Grid& grid = J.grid();
  const Energy& energy = J.energy();
  const EnergySpec& spec = energy.spec();
  const at::Tensor rho = state.density.to(at::kCPU, at::kDouble).contiguous();
  const at::Tensor masses = state.masses.to(at::kCPU, at::kDouble).contiguous();
  const at::Tensor weights = state.weights.to(at::kCPU, at::kDouble).contiguous();
  // The first variation g and Phi = V + W * rho, its external part: only
  // for a model still to be prepared (refine()'s corrections after the
  // first find theirs prepared).
  at::Tensor variation, external;
  std::once_flag variationOnce;
  auto variations = [&] {
    std::call_once(variationOnce, [&] {
      variation = energy.firstVariation(rho).contiguous();
      if (spec.potential != PotentialKind::None || spec.kernel != KernelKind::None)
        external = (variation - energy.internalVariation(rho)).contiguous();
    });
  };
  const Shape shape = shapeOf(grid);
  const int64_t batch = rho.size(0), N = shape.nodes;
  const int d = grid.dim;
  const double tau = J.tau();
  at::parallel_for(0, batch, 1, [&](int64_t b0, int64_t b1) {
    std::vector<double> curvature(N, 0.0);
    for (int64_t b = b0; b < b1; ++b) {
      const double* r = rho.data_ptr<double>() + b * N;
      const double* m = masses.data_ptr<double>() + b * N;
      const double* w = weights.data_ptr<double>() + b * N;
      SampleModel& model = modelFor(shape, options.smoothing);
      model.masses = m;
      // The model of this very state and sample is still there (refine()'s
      // corrections after the first): its fields and multigrid levels stand.
      const SampleModel::Key key{state.masses,       state.masses._version(), b, &J, options.stabilisation,
                                 options.iterations, negativeMassesMove};
      if (model.preparedFor(key)) {
        f(model, b, shape);
        continue;
      }
      variations();
      const double* g = variation.data_ptr<double>() + b * N;
      const double* phi = external.defined() ? external.data_ptr<double>() + b * N : nullptr;
      double peak = 0;
      for (int64_t i = 0; i < N; ++i) peak = std::max(peak, r[i]);
      inverseHessianAndRhs(spec, N, peak, r, g, model.a.data(), model.rhs.data());
      for (int a = 0; a < d; ++a) {
        const int slot = shape.slot(a);
        if (phi) secondDifference(shape, slot, phi, curvature.data());
        transportMobility(tau, N, m, w, phi ? curvature.data() : nullptr, negativeMassesMove, model.e[a].data());
      }
      model.prepare(tau, options);
      model.remember(key);
      f(model, b, shape);
    }
  });
}

// a . b per density of a batch (B, ...) -> (B).
// One dot product per density, without the product tensor (OpenBLAS's
// batched gemm for this shape was slower still), and the same sum whether
// the density steps alone or in a batch.
at::Tensor perDensityDot(const at::Tensor& a, const at::Tensor& b) {
  std::vector<at::Tensor> dots;
  for (int64_t k = 0; k < a.size(0); ++k) dots.push_back(at::dot(a[k].reshape({-1}), b[k].reshape({-1})));
  return at::stack(dots);
}

// x_b += c_b v_b per density, in place: one pass over x and v (at 256^2 the
// two-loop recursion's products and their temporaries over ten pairs were a
// quarter of an extra correction), the same arithmetic alone and in a batch.
void addPerDensity(at::Tensor& x, const at::Tensor& c, const at::Tensor& v) {
  const at::Tensor coefficients = c.to(at::kCPU, at::kDouble);
  for (int64_t k = 0; k < x.size(0); ++k) x[k].add_(v[k], coefficients[k].item<double>());
}

// where(take, a, b) per density ((B) mask, tensors (B, ...)); without the
// copy when every density (a rollout's single one) takes the same side.
at::Tensor perDensityWhere(const at::Tensor& take, const at::Tensor& a, const at::Tensor& b) {
  if (take.all().item<bool>()) return a;
  if (!take.any().item<bool>()) return b;
  std::vector<int64_t> view(a.dim(), 1);
  view[0] = -1;
  return at::where(take.view(view), a, b);
}

at::Tensor displacementShaped(const at::Tensor& flat, const Grid& grid, at::Device device) {
  std::vector<int64_t> sizes{flat.size(0), grid.dim};
  for (int a = 0; a < grid.dim; ++a) sizes.push_back(grid.n[a]);
  return flat.view(sizes).to(device);
}
}  // namespace

namespace {
// A rank's planes of a split grid: the whole grid's shape, the shapes of
// the owned planes, of the model's window (the split's halo) and of the
// owned planes with one more each side (Phi's curvature); where the owned
// nodes begin in the window, and how many there are.
struct SlabLayout {
  Shape whole, owned, window, near;
  int64_t lo = 0, hi = 0, total = 0, windowLo = 0, nearLo = 0, plane = 0, begin = 0, count = 0;

  explicit SlabLayout(const LinearizedSlab& in) : whole(shapeOf(in.grid)) {
    const std::vector<int64_t>& first = in.split.slabs.firstPlane;
    const int rank = in.split.slabs.communicator->rank();
    lo = first[rank], hi = first[rank + 1], total = first.back();
    plane = whole.nodes / whole.n[whole.slot(0)];
    windowLo = std::max<int64_t>(0, lo - in.split.halo);
    nearLo = std::max<int64_t>(0, lo - 1);
    owned = planes(lo, hi);
    window = planes(windowLo, std::min(total, hi + in.split.halo));
    near = planes(nearLo, std::min(total, hi + 1));
    begin = (lo - windowLo) * plane;
    count = owned.nodes;
  }
  // The shape of planes [from, to) of the first axis.
  Shape planes(int64_t from, int64_t to) const {
    Shape s = whole;
    s.n[s.slot(0)] = to - from;
    s.stride = {s.n[1] * s.n[2], s.n[2], 1};
    s.nodes = s.n[0] * s.n[1] * s.n[2];
    return s;
  }
};

// A field of the slab's owned nodes as a contiguous float64 CPU tensor.
at::Tensor slabValues(const at::Tensor& t, int64_t nodes) {
  const at::Tensor v = t.to(at::kCPU, at::kDouble).contiguous();
  if (v.numel() != nodes)
    throw InvalidParameter("a field of the slab", std::to_string(v.numel()) + " values",
                           "must hold the " + std::to_string(nodes) + " nodes of its planes");
  return v;
}

// The calling thread's model of the slab's step on the rank's window,
// prepared (a, rhs and e at u = 0, their halo from the owners) unless it
// is prepared for this step and rule already (the step's model serves its
// corrections, as the serial step's does). Collective.
SampleModel& preparedSlabModel(const LinearizedSlab& in, const SlabLayout& L, const EnergySpec& spec, double tau,
                               const LinearizedStepOptions& options, bool negativeMassesMove) {
  SampleModel& model = splitModelFor(L.window, options.smoothing, in.split);
  const SampleModel::Key key{in.masses,          in.masses._version(), 0, in.step, options.stabilisation,
                             options.iterations, negativeMassesMove};
  // Every rank holds the same step and rule: they all skip, or all prepare.
  if (in.step && model.preparedFor(key)) return model;
  const int64_t count = L.count, begin = L.begin;
  const at::Tensor rho = slabValues(in.density, count), m = slabValues(in.masses, count),
                   w = slabValues(in.weights, count), g = slabValues(in.variation, count);
  std::vector<double>& masses = model.windowMasses;
  masses.assign(L.window.nodes, 0.0);
  std::copy_n(m.data_ptr<double>(), count, masses.begin() + begin);
  model.masses = masses.data();
  inverseHessianAndRhs(spec, count, in.peak, rho.data_ptr<double>(), g.data_ptr<double>(), model.a.data() + begin,
                       model.rhs.data() + begin);
  std::vector<double> curvature(L.near.nodes, 0.0);
  const at::Tensor phi = in.external.defined() ? slabValues(in.external, L.near.nodes) : at::Tensor();
  for (int a = 0; a < in.grid.dim; ++a) {
    if (phi.defined()) secondDifference(L.near, L.near.slot(a), phi.data_ptr<double>(), curvature.data());
    transportMobility(tau, count, m.data_ptr<double>(), w.data_ptr<double>(),
                      phi.defined() ? curvature.data() + (L.lo - L.nearLo) * L.plane : nullptr, negativeMassesMove,
                      model.e[a].data() + begin);
  }
  // The model reads m, a and e up to three planes beyond the owned ones.
  model.refreshHalo(masses.data());
  model.refreshHalo(model.a.data());
  for (int a = 0; a < in.grid.dim; ++a) model.refreshHalo(model.e[a].data());
  model.prepare(tau, options);
  if (in.step) model.remember(key);
  return model;
}

// The owned planes (1, dim, planes, ...) of a window field (dim x window nodes).
at::Tensor ownedPlanes(const std::vector<double>& field, const LinearizedSlab& in, const SlabLayout& L) {
  std::vector<int64_t> sizes{1, in.grid.dim};
  for (int a = 0; a < in.grid.dim; ++a) sizes.push_back(a == 0 ? L.hi - L.lo : in.grid.n[a]);
  at::Tensor out = at::empty(sizes, at::kDouble);
  for (int a = 0; a < in.grid.dim; ++a)
    std::copy_n(field.data() + a * L.window.nodes + L.begin, L.count, out.data_ptr<double>() + a * L.count);
  return out;
}

// capDisplacement on the owned planes u (dim x owned nodes) of a split
// grid: each particle's own factor is local; the smoothing over boxes of
// radius r reads the factors of 2 r planes beyond (r for the box minima,
// r more for their means), from their owners. Collective when r > 0.
void capDisplacementOnSlab(const SlabLayout& L, const LinearizedSplit& split, double capCells, int64_t radius,
                           double* u) {
  if (radius == 0) return capDisplacement(L.owned, capCells, 0, u);
  const int64_t halo = 2 * radius, from = std::max<int64_t>(0, L.lo - halo);
  const Shape s = L.planes(from, std::min(L.total, L.hi + halo));
  const int64_t begin = (L.lo - from) * L.plane, count = L.count;
  double hMin = 1e300;
  for (int a = 0; a < s.dim; ++a) hMin = std::min(hMin, s.h[s.slot(a)]);
  const double cap = capCells * hMin;
  std::vector<double> factor(s.nodes, 1.0), work;
  for (int64_t i = 0; i < count; ++i) {
    double speed2 = 0;
    for (int a = 0; a < s.dim; ++a) speed2 += u[a * count + i] * u[a * count + i];
    if (speed2 > cap * cap) factor[begin + i] = cap / std::sqrt(speed2);
  }
  refreshHalo(*split.slabs.communicator, split.slabs.firstPlane, halo, L.plane, factor.data());
  // No capped particle within reach: every factor here stays 1, as the
  // serial smoothing of ones gives exactly.
  if (std::all_of(factor.begin(), factor.end(), [](double f) { return f == 1.0; })) return;
  for (bool minimum : {true, false})
    for (int a = 0; a < s.dim; ++a) slideAlong(s, a, radius, minimum, factor, work);
  for (int a = 0; a < s.dim; ++a)
    for (int64_t i = 0; i < count; ++i) u[a * count + i] *= factor[begin + i];
}
}  // namespace

at::Tensor linearizedDisplacementOnSlab(const LinearizedSlab& in, const EnergySpec& spec, double tau,
                                        const LinearizedStepOptions& options) {
  at::NoGradGuard noGrad;
  const SlabLayout L(in);
  SampleModel& model = preparedSlabModel(in, L, spec, tau, options, false);
  std::vector<double> u(in.grid.dim * L.window.nodes);
  model.step(u.data());
  at::Tensor out = ownedPlanes(u, in, L)[0];
  capDisplacement(L.owned, options.capCells, 0, out.data_ptr<double>());
  return out;
}

at::Tensor linearizedCorrectionOnSlab(const LinearizedSlab& in, const EnergySpec& spec, double tau,
                                      const LinearizedStepOptions& options, const at::Tensor& gradient,
                                      const CorrectionRule& rule) {
  at::NoGradGuard noGrad;
  const SlabLayout L(in);
  const int d = in.grid.dim;
  const at::Tensor r = slabValues(gradient / in.grid.cellVolume(), d * L.count);
  SampleModel& model = preparedSlabModel(in, L, spec, tau, options, rule.negativeMassesMove);
  // The model's deposit reads the gradient one plane beyond the owned ones.
  std::vector<double> window(d * L.window.nodes, 0.0), delta(d * L.window.nodes);
  for (int a = 0; a < d; ++a) {
    std::copy_n(r.data_ptr<double>() + a * L.count, L.count, window.data() + a * L.window.nodes + L.begin);
    model.refreshHalo(window.data() + a * L.window.nodes);
  }
  model.correct(window.data(), delta.data());
  at::Tensor out = ownedPlanes(delta, in, L);
  if (rule.capCells > 0)
    capDisplacementOnSlab(L, in.split, rule.capCells, options.correctionCapRadius, out.data_ptr<double>());
  return out;
}

at::Tensor LinearizedStep::displacement(const JkoState& state) const {
  at::NoGradGuard noGrad;
  const Grid& grid = objective_->grid();
  const int64_t N = grid.numNodes();
  at::Tensor u = at::zeros({state.density.size(0), grid.dim * N}, at::TensorOptions().dtype(at::kDouble));
  forEachSampleModel(*objective_, options_, state, false, [&](SampleModel& model, int64_t b, const Shape& shape) {
    double* out = u.data_ptr<double>() + b * grid.dim * N;
    model.step(out);
    capDisplacement(shape, options_.capCells, 0, out);
  });
  return displacementShaped(u, grid, state.density.device());
}

CorrectionRule correctionRule(const EnergySpec& spec, const LinearizedStepOptions& options, bool hardStep,
                              bool trustRegion) {
  // Particles of negative pre-filtered mass (the pre-filter's ringing at
  // sharp edges, a large share of a field of small cells) move in the
  // corrections: held at their start, the corrections of an aggregation
  // step from such cells stalled 17% from the minimiser (0.02% with them,
  // docs/design.md, "Gauss-Newton corrections for every preset"). With an
  // entropy only in a hard step's extra corrections (refineMap()): there,
  // under the trust region below, they let the Fokker-Planck step from a
  // field of small cells at 64^2 come within 3.0% of the reference solver's
  // instead of stalling at 6.0% (the corrections could not lower J further
  // with them held); in every correction they cost thin strokes at 128^2
  // (3.25% -> 3.71%; docs/design.md, "Negative masses in a hard step's
  // extra corrections"). Before the trust region they stalled the entropy's
  // corrections earlier.
  //
  // With an entropy the model (H^-1 = rho / D of rho_k) is also far too
  // flat away from u = 0 on sharp states: on a field of small cells at
  // 128^2 it asked particles holding 84% of the mass to move more than a
  // cell, and the line search, one length per density, then shrank every
  // particle's correction to 1/16-1/64. Capping each particle's correction
  // at a cell (a trust region per particle, as the step caps |u|) cut the
  // Fokker-Planck and aggregation-diffusion operators' wild-suite means by a
  // third and their worst densities by up to half; 2 or 4 cells did less,
  // and without an entropy it changes nothing (porous medium) or holds back
  // the far-moving particles (aggregation; docs/design.md, "A trust region
  // for the entropy's corrections").
  const bool entropy = spec.internal == InternalKind::Entropy && spec.diffusion > 0;
  CorrectionRule rule;
  rule.negativeMassesMove = options.negativeMassesMove && (!entropy || hardStep);
  rule.capCells = entropy && trustRegion ? options.correctionCapCells : 0;
  return rule;
}

at::Tensor LinearizedStep::correction(const JkoState& state, const at::Tensor& gradient, bool hardStep,
                                      bool trustRegion) const {
  at::NoGradGuard noGrad;
  const Grid& grid = objective_->grid();
  const int64_t N = grid.numNodes();
  const at::Tensor r = (gradient / grid.cellVolume())
                           .to(at::kCPU, at::kDouble)
                           .reshape({state.density.size(0), grid.dim * N})
                           .contiguous();
  at::Tensor delta = at::zeros_like(r);
  const CorrectionRule rule = correctionRule(objective_->energy().spec(), options_, hardStep, trustRegion);
  forEachSampleModel(*objective_, options_, state, rule.negativeMassesMove,
                     [&](SampleModel& model, int64_t b, const Shape& shape) {
                       double* out = delta.data_ptr<double>() + b * grid.dim * N;
                       model.correct(r.data_ptr<double>() + b * grid.dim * N, out);
                       if (rule.capCells > 0) capDisplacement(shape, rule.capCells, options_.correctionCapRadius, out);
                     });
  return displacementShaped(delta, grid, state.density.device());
}

namespace {
// One L-BFGS pair of a batch: the changes s of the map and y of the
// objective's gradient, and 1 / (s . y) per density (0 where unusable).
struct CurvaturePair {
  at::Tensor s, y, inverseCurvature;
};

// -H J'(u): L-BFGS's inverse Hessian H from the pairs, on top of the
// model's A^-1 (a hard step's).
at::Tensor quasiNewtonCorrection(const MapCorrections& J, const at::Tensor& gradient,
                                 const std::deque<CurvaturePair>& pairs) {
  // The two-loop recursion (Nocedal & Wright, Algorithm 7.4) per density,
  // with H0 = A^-1 applied by the correction (-A^-1 q, so r = -correction(q)).
  std::vector<int64_t> perSample(gradient.dim(), 1);
  perSample[0] = -1;
  const int count = static_cast<int>(pairs.size());
  std::vector<at::Tensor> alpha(count);
  at::Tensor q = gradient.clone();
  for (int i = count - 1; i >= 0; --i) {
    alpha[i] = pairs[i].inverseCurvature * J.dot(pairs[i].s, q);
    addPerDensity(q, -alpha[i], pairs[i].y);
  }
  at::Tensor r = -J.correction(q, true);
  for (int i = 0; i < count; ++i) {
    const at::Tensor beta = pairs[i].inverseCurvature * J.dot(pairs[i].y, r);
    addPerDensity(r, alpha[i] - beta, pairs[i].s);
  }
  // Where the result is no descent direction (the entropy's capped model is
  // not linear), that density takes the chord step.
  const at::Tensor descent = J.dot(gradient, r) > 0;
  if (descent.all().item<bool>()) return -r;
  return at::where(descent.view(perSample), -r, J.correction(gradient, true));
}
}  // namespace

RefinedDisplacement refineMap(const MapCorrections& J, const LinearizedStepOptions& options, const at::Tensor& start,
                              int corrections, double tolerance) {
  at::NoGradGuard noGrad;
  std::vector<int64_t> perSample(start.dim(), 1), perDensity(start.dim() - 1, 1);
  perSample[0] = perDensity[0] = -1;
  const MapCorrections::Evaluation terms = J.evaluate(start);
  RefinedDisplacement out{start, terms.deposited};
  if (corrections <= 0) return out;
  at::Tensor current = terms.objective;
  // A start above staying put (J(u) > J(0) = E(rho), the deposit of the
  // pre-filtered masses at u = 0 being rho) is replaced by u = 0, so that
  // the result never breaks the descent every minimiser satisfies.
  const at::Tensor still = J.stayingPut();
  const at::Tensor above = current > still;
  if (above.any().item<bool>()) {
    out.displacement = at::where(above.view(perSample), at::zeros_like(start), start);
    out.deposited = at::where(above.view(perDensity), J.density(), out.deposited);
    current = at::where(above, still, current);
  }
  // With a tolerance, densities whose map is certified to it stop
  // correcting (smooth frames after one or two corrections); off by
  // default, as it made the certificates a band that no longer ranks the
  // frames by their error (docs/design.md, "Corrections until certified").
  at::Tensor done = at::zeros_like(current, at::kBool);
  const int extra = std::max(0, options.extraCorrections);
  // Densities whose fixed corrections stalled (no trial of a line search
  // lowered J) wait for the extra ones, which are of another form (capped
  // per particle, quasi-Newton): at u = 0 beside bars one cell thick on
  // vacuum, where the prefiltered masses are negative down to half the peak
  // and J has a kink, the entropy's fixed correction raises J at every
  // length from 1/4096 to 1 and the first extra one lowers it; stopping
  // there left the frame where it was (docs/design.md, "Frames on densities
  // of new kinds").
  at::Tensor waiting = at::zeros_like(done);
  const bool extraAhead = extra > 0;
  // Not with a tolerance (the Auto solver): there a frame still flagged
  // goes to the reference solver's L-BFGS, whose start the further
  // corrections made worse: on two wild scans they brought the certificate
  // from 0.05-0.07 down to 0.006-0.014 without bringing the map closer
  // (3.5% off, a flat valley), below Auto's restart from u = 0 (0.03), and
  // L-BFGS from the map passed its test 3.2-3.4% off, where the restart
  // ran to the reference solver's rule, within 0.4% (docs/design.md,
  // "Further corrections for frames still flagged").
  const int further = extra > 0 && tolerance <= 0 ? options.furtherCorrections : 0;
  const int most = corrections + extra + further;
  const double extraAbove =
      J.withoutInternalEnergy() ? options.extraCorrectionsAboveWithoutDiffusion : options.extraCorrectionsAbove;
  // L-BFGS pairs of the extra corrections, per density (s . y <= 0 or a
  // density that did not move: its inverse curvature is 0, so the pair
  // leaves its direction alone). Pairs of the fixed corrections are left
  // out: their model holds the entropy's negative masses, the extra ones'
  // moves them, and with them in the wild suite's worst densities were
  // 0.1-0.5 points worse (docs/design.md, "Quasi-Newton extra corrections").
  std::deque<CurvaturePair> pairs;
  at::Tensor previousU, previousGradient;
  for (int k = 0; k < most; ++k) {
    if (extraAhead && k < corrections && done.all().item<bool>() && waiting.any().item<bool>()) k = corrections;
    if (extraAhead && k == corrections) done = done.logical_and(waiting.logical_not());
    if (done.all().item<bool>()) break;
    const at::Tensor& u = out.displacement;
    const at::Tensor gradient = J.gradient(u, out.deposited);
    // Gauss-Newton further corrections (options().furtherNewtonIterations):
    // they need no L-BFGS pairs, and a density is done once certified.
    const bool newton = further > 0 && k >= corrections + extra && options.furtherNewtonIterations > 0;
    if (options.extraCorrectionMemory > 0 && k > corrections && !newton) {
      const at::Tensor s = u - previousU, y = gradient - previousGradient;
      const at::Tensor sy = J.dot(s, y);
      const at::Tensor usable = sy > 1e-12 * (J.dot(s, s) * J.dot(y, y)).sqrt();
      pairs.push_back({s, y, at::where(usable, 1.0 / sy.clamp_min(1e-300), at::zeros_like(sy))});
      if (static_cast<int>(pairs.size()) > options.extraCorrectionMemory) pairs.pop_front();
    }
    previousU = u, previousGradient = gradient;
    // After the fixed corrections, a hard step (sharp edges near vacuum,
    // thin lines) is still far from its minimiser: the certificate's
    // estimate of its relative L1 distance is above extraCorrectionsAbove
    // (extraCorrectionsAboveWithoutDiffusion for aggregation).
    // Such a density takes all the extra corrections (a rule on the
    // certificate once, not a stopping rule like the tolerance's, which made
    // the certificates a band that no longer ranks the frames). The last
    // correction's decrease of J was tried first as the sign of a hard step
    // and missed steps whose line search had just stalled (docs/design.md,
    // "More corrections for hard steps").
    // Once more after the extra corrections: a density still above
    // furtherCorrectionsAbove takes the further ones.
    const bool extraRule = k == corrections, toleranceRule = tolerance > 0;
    const bool furtherRule = further > 0 && k == corrections + extra;
    if (extraRule || furtherRule || toleranceRule || newton) {
      const at::Tensor estimates = J.l1ErrorEstimates(u, gradient, out.deposited);
      if (extraRule) done = done.logical_or(estimates <= extraAbove);
      if (furtherRule) done = done.logical_or(estimates <= options.furtherCorrectionsAbove);
      if (toleranceRule) done = done.logical_or(estimates < tolerance);
      if (newton) done = done.logical_or(estimates < options.furtherNewtonCertified);
      if (done.all().item<bool>()) break;
    }
    const bool extra = k >= corrections;
    at::Tensor delta = newton                    ? J.gaussNewtonAtMap(u, out.deposited, gradient)
                       : extra && !pairs.empty() ? quasiNewtonCorrection(J, gradient, pairs)
                                                 : J.correction(gradient, extra);
    // Per density: the full correction if it lowers J; else the minimiser
    // of the parabola through J(u), its slope g . delta and J(u + delta),
    // within [1/16, 1/2]; else a quarter of the last length, down to
    // 1/4^(trials - 2) of the fit's (three trials stalled on thin strokes,
    // where J rises steeply along the correction); none lowers J: stay, and
    // stop (the next correction of the same form would be the same), or
    // during the fixed corrections wait for the extra ones.
    const at::Tensor slope = J.dot(gradient, delta);
    at::Tensor length = at::ones_like(current), accepted = done.clone();
    RefinedDisplacement next = out;
    for (int attempt = 0; attempt < options.lineSearchTrials; ++attempt) {
      const at::Tensor trial = u + length.view(perSample) * delta;
      const MapCorrections::Evaluation t = J.evaluate(trial);
      const at::Tensor take = (t.objective <= current).logical_and(accepted.logical_not());
      next.displacement = perDensityWhere(take, trial, next.displacement);
      next.deposited = perDensityWhere(take, t.deposited, next.deposited);
      if (attempt == 0) {
        const at::Tensor curvature = (t.objective - current - slope).clamp_min(1e-300);
        length = (-slope / (2 * curvature)).clamp(1.0 / 16, 0.5).nan_to_num(0.5);
      } else {
        length = length * 0.25;
      }
      current = at::where(take, t.objective, current);
      accepted = accepted.logical_or(take);
      if (accepted.all().item<bool>()) break;
    }
    const at::Tensor stalled = accepted.logical_not();
    if (extraAhead && k < corrections) waiting = waiting.logical_or(stalled);
    done = done.logical_or(stalled);
    out = next;
  }
  return out;
}

// The corrections' problem on the whole grid: the objective, its
// certifier's gradient and estimates, and the step's model.
class LinearizedStep::WholeGridCorrections final : public MapCorrections {
 public:
  WholeGridCorrections(const LinearizedStep& step, const JkoState& state)
      : step_(step), state_(state), certifier_(step.objective_), metric_(certifier_.transportMetric(state)) {}
  Evaluation evaluate(const at::Tensor& u) const override {
    const JkoTerms terms = step_.objective_->evaluate(state_, u);
    return {terms.objective, terms.deposited};
  }
  at::Tensor stayingPut() const override { return step_.objective_->energy()(state_.density); }
  at::Tensor density() const override { return state_.density; }
  at::Tensor gradient(const at::Tensor& u, const at::Tensor& deposited) const override {
    return certifier_.gradient(state_, u, deposited, &metric_);
  }
  at::Tensor l1ErrorEstimates(const at::Tensor& u, const at::Tensor& gradient,
                              const at::Tensor& deposited) const override {
    return certifier_.l1ErrorEstimates(state_, u, gradient, deposited, &metric_);
  }
  at::Tensor correction(const at::Tensor& gradient, bool hardStep) const override {
    return step_.correction(state_, gradient, hardStep);
  }
  at::Tensor gaussNewtonAtMap(const at::Tensor& u, const at::Tensor& deposited,
                              const at::Tensor& gradient) const override {
    return step_.gaussNewtonAtMap(state_, u, deposited, gradient, certifier_, metric_.weight);
  }
  at::Tensor dot(const at::Tensor& a, const at::Tensor& b) const override { return perDensityDot(a, b); }
  bool withoutInternalEnergy() const override {
    return step_.objective_->energy().spec().internal == InternalKind::None;
  }

 private:
  const LinearizedStep& step_;
  const JkoState& state_;
  const StepCertifier certifier_;
  const StepCertifier::TransportMetric metric_;
};

RefinedDisplacement LinearizedStep::refine(const JkoState& state, const at::Tensor& start, int corrections,
                                           double tolerance) const {
  if (corrections <= 0) {
    at::NoGradGuard noGrad;
    return {start, objective_->evaluate(state, start).deposited};
  }
  return refineMap(WholeGridCorrections(*this, state), options_, start, corrections,
                   tolerance < 0 ? options_.correctionTolerance : tolerance);
}

at::Tensor LinearizedStep::gaussNewtonAtMap(const JkoState& state, const at::Tensor& displacement,
                                            const at::Tensor& deposited, const at::Tensor& gradient,
                                            const StepCertifier& certifier, const at::Tensor& transportWeight) const {
  const Grid& grid = objective_->grid();
  const PushForward& push = objective_->pushForward();
  std::vector<int64_t> perSample(gradient.dim(), 1), perNode(deposited.dim(), 1);
  perSample[0] = perNode[0] = -1;
  const int64_t batch = gradient.size(0);
  const double hMin = grid.smallestSpacing();
  auto largest = [batch](const at::Tensor& t) { return std::get<0>(t.abs().reshape({batch, -1}).max(1)); };
  const at::Tensor peak = largest(deposited);
  // H p = c p + J(u)^T E''(rho') J(u) p. J(u) p by central differences of
  // the deposit with particles moved 1e-4 cells at most (the quadratic
  // B-spline weights are polynomials of degree 2 per axis between knots,
  // so the difference is exact there up to rounding), E'' by differences
  // of the energy's gradient with the deposit changed by 1e-6 of its peak,
  // J^T by the deposit's adjoint.
  auto hessian = [&](const at::Tensor& p) {
    const at::Tensor move = (1e-4 * hMin) / largest(p).clamp_min(1e-300);
    const at::Tensor m = move.view(perSample);
    const at::Tensor tangent =
        (push.deposit(state.masses, displacement + m * p) - push.deposit(state.masses, displacement - m * p)) /
        (2 * move.view(perNode));
    const at::Tensor change = (1e-6 * peak / largest(tangent).clamp_min(1e-300)).view(perNode);
    const at::Tensor curvature = (certifier.energyGradient(deposited + change * tangent) -
                                  certifier.energyGradient(deposited - change * tangent)) /
                                 (2 * change);
    return certifier.depositAdjoint(state, displacement, curvature) + transportWeight.unsqueeze(1) * p;
  };
  // Preconditioned conjugate gradients on H x = g per density (Nocedal &
  // Wright, Algorithm 5.3), M = A^-1 the model's, without the cap (a hard
  // step's model: negative masses move).
  auto precondition = [&](const at::Tensor& r) { return -correction(state, r, true, false); };
  const at::Tensor first = precondition(gradient);
  at::Tensor x = at::zeros_like(gradient), r = gradient.clone(), z = first, p = first.clone();
  at::Tensor rz = perDensityDot(r, z);
  at::Tensor active = rz > 0;
  const int iterations = options_.furtherNewtonIterations;
  for (int i = 0; i < iterations; ++i) {
    const at::Tensor Hp = hessian(p);
    const at::Tensor pHp = perDensityDot(p, Hp);
    // H is positive semi-definite: a direction without positive curvature
    // is rounding, and that density keeps what it has.
    active = active.logical_and(pHp > 0);
    const at::Tensor alpha = at::where(active, rz / pHp.clamp_min(1e-300), at::zeros_like(rz));
    addPerDensity(x, alpha, p);
    addPerDensity(r, -alpha, Hp);
    if (i + 1 == iterations || !active.any().item<bool>()) break;
    z = precondition(r);
    const at::Tensor next = perDensityDot(r, z);
    const at::Tensor beta = at::where(active, next / rz.clamp_min(1e-300), at::zeros_like(rz));
    p = z + beta.view(perSample) * p;
    rz = next;
    active = active.logical_and(rz > 0);
  }
  // A density that took no step takes the model's correction.
  const at::Tensor moved = perDensityDot(x, x) > 0;
  return moved.all().item<bool>() ? -x : at::where(moved.view(perSample), -x, -first);
}

std::pair<at::Tensor, at::Tensor> LinearizedStep::step(const at::Tensor& rho) const {
  at::NoGradGuard noGrad;
  const bool batched = rho.dim() == objective_->grid().dim + 1;
  const JkoState state = objective_->prepare(rho);
  at::Tensor u = displacement(state);
  if (options_.corrections > 0) u = refine(state, u, options_.corrections).displacement;
  // A step is a descent step: J(u) <= J(0) = E(rho) holds for every JKO
  // minimiser. Where the linearisation is poor (the entropy at vacuum, large
  // drifts across sharp edges) the model's step can overshoot: halve it,
  // per density, until J falls (at most 8 times; then stay put).
  const at::Tensor initial = objective_->evaluate(state, at::zeros_like(u)).objective;
  JkoTerms terms = objective_->evaluate(state, u);
  std::vector<int64_t> perSample(u.dim(), 1);
  perSample[0] = -1;
  for (int attempt = 0; attempt < 9; ++attempt) {
    const at::Tensor worse = terms.objective > initial;
    if (!worse.any().item<bool>()) break;
    const double factor = attempt < 8 ? 0.5 : 0.0;
    u = u * at::where(worse, at::full_like(initial, factor), at::ones_like(initial)).view(perSample);
    terms = objective_->evaluate(state, u);
  }
  const at::Tensor next = objective_->nextDensity(state, terms.deposited);
  return {batched ? next : next[0], batched ? u : u[0]};
}

}  // namespace jko
