#include "numerics/Multigrid.h"

#include <algorithm>
#include <stdexcept>

#include "runtime/TaskTeam.h"

namespace jko {
namespace {

// Linear interpolation from the coarse cell centres to one fine node along
// an axis: value = wLow * coarse[low] + (1 - wLow) * coarse[high].
struct Tap {
  int64_t low, high;
  double wLow;
};

// Fine node i (centre i + 1/2 in fine cells) against the coarse centres: a
// coarse cell I covers fine cells 2I and 2I + 1 (only 2I when that is the
// last one), its centre is the mean of theirs. Constant beyond the first
// and last coarse centres (Neumann walls).
std::vector<Tap> interpolationTaps(int64_t fine, int64_t coarse, bool coarsened) {
  std::vector<Tap> taps(fine);
  if (!coarsened) {
    for (int64_t i = 0; i < fine; ++i) taps[i] = {i, i, 1.0};
    return taps;
  }
  auto centre = [&](int64_t I) { return 2 * I + 1 < fine ? 2.0 * I + 1.0 : 2.0 * I + 0.5; };
  for (int64_t i = 0; i < fine; ++i) {
    const double c = i + 0.5;
    const int64_t parent = i / 2;
    int64_t low = c < centre(parent) ? parent - 1 : parent;
    int64_t high = low + 1;
    if (low < 0) {
      taps[i] = {0, 0, 1.0};
    } else if (high >= coarse) {
      taps[i] = {coarse - 1, coarse - 1, 1.0};
    } else {
      taps[i] = {low, high, (centre(high) - c) / (centre(high) - centre(low))};
    }
  }
  return taps;
}

// body(first, last) over the rows (i0, i1) of a level, [first, last) in
// row order: on the task team in blocks when the level is large enough for
// a phase to pay for itself (a colour pass at 128^2 is ~25 us), else inline.
template <typename Body>
void forRowBlocks(int64_t rows, int64_t nodes, const Body& body) {
  const int64_t workers = parallelWorkers();
  if (nodes < 8192 || workers < 2) {
    body(0, rows);
    return;
  }
  const int64_t blocks = 2 * workers;
  parallelFor(blocks, [&](int64_t b) { body(rows * b / blocks, rows * (b + 1) / blocks); });
}

}  // namespace

Multigrid::Multigrid(int dim, const std::array<int64_t, 3>& n, const std::array<double, 3>& h, int preSmoothing,
                     int postSmoothing)
    : dim_(dim), pre_(preSmoothing), post_(postSmoothing) {
  if (dim != 2 && dim != 3) throw std::invalid_argument("Multigrid: dim must be 2 or 3");
  Level finest;
  for (int a = 0; a < dim; ++a) {
    const int slot = a + 3 - dim;
    finest.n[slot] = n[a];
    finest.h[slot] = h[a];
  }
  finest.nodes = finest.n[0] * finest.n[1] * finest.n[2];
  levels_.push_back(std::move(finest));
  for (;;) {
    Level& fine = levels_.back();
    Level coarse;
    bool any = false;
    for (int a = 0; a < 3; ++a) {
      fine.coarsened[a] = fine.n[a] > 2;
      any = any || fine.coarsened[a];
      coarse.n[a] = fine.coarsened[a] ? (fine.n[a] + 1) / 2 : fine.n[a];
      coarse.h[a] = fine.coarsened[a] ? 2 * fine.h[a] : fine.h[a];
    }
    if (!any || fine.nodes <= 16) {
      fine.coarsened = {false, false, false};
      break;
    }
    coarse.nodes = coarse.n[0] * coarse.n[1] * coarse.n[2];
    levels_.push_back(std::move(coarse));
  }
  for (size_t l = 0; l + 1 < levels_.size(); ++l) {
    Level& fine = levels_[l];
    const Level& coarse = levels_[l + 1];
    for (int a = 0; a < 3; ++a) {
      const std::vector<Tap> taps = interpolationTaps(fine.n[a], coarse.n[a], fine.coarsened[a]);
      fine.columnSum[a].assign(coarse.n[a], 0.0);
      for (const Tap& t : taps) {
        fine.tapLow[a].push_back(t.low);
        fine.tapHigh[a].push_back(t.high);
        fine.tapWeight[a].push_back(t.wLow);
        fine.columnSum[a][t.low] += t.wLow;
        fine.columnSum[a][t.high] += 1.0 - t.wLow;
      }
    }
    // The largest intermediate fields of the separable transfers.
    const int64_t size = std::max(fine.n[0] * fine.n[1] * coarse.n[2], coarse.n[0] * fine.n[1] * fine.n[2]);
    fine.buffer0.assign(size, 0.0);
    fine.buffer1.assign(size, 0.0);
  }
  for (size_t l = 0; l < levels_.size(); ++l) {
    Level& level = levels_[l];
    level.a.assign(level.nodes, 0.0);
    level.diagonal.assign(level.nodes, 0.0);
    level.inverseDiagonal.assign(level.nodes, 0.0);
    for (int a = 0; a < 3; ++a) {
      level.face[a].assign(level.nodes, 0.0);
      level.weight[a].assign(level.nodes, 0.0);
    }
    if (l > 0) {
      level.x.assign(level.nodes, 0.0);
      level.f.assign(level.nodes, 0.0);
    }
    level.r.assign(level.nodes, 0.0);
  }
}

// face = weight / h^2; diagonal = a + the faces of both sides (the + face of
// the last node along an axis is zero), in row operations.
void Multigrid::finishLevel(Level& level) const {
  const int64_t N = level.nodes, s0 = level.n[1] * level.n[2], s1 = level.n[2];
  for (int a = 0; a < 3; ++a) {
    const double inverse = 1.0 / (level.h[a] * level.h[a]);
    const double* w = level.weight[a].data();
    double* f = level.face[a].data();
    for (int64_t i = 0; i < N; ++i) f[i] = w[i] * inverse;
  }
  const double* f0 = level.face[0].data();
  const double* f1 = level.face[1].data();
  const double* f2 = level.face[2].data();
  double* d = level.diagonal.data();
  for (int64_t i = 0; i < N; ++i) d[i] = level.a[i] + f0[i] + f1[i] + f2[i];
  for (int64_t i = s0; i < N; ++i) d[i] += f0[i - s0];
  for (int64_t row = 0; row < N; row += s0)
    for (int64_t i = row + s1; i < row + s0; ++i) d[i] += f1[i - s1];
  for (int64_t row = 0; row < N; row += s1)
    for (int64_t i = row + 1; i < row + s1; ++i) d[i] += f2[i - 1];
  for (int64_t i = 0; i < N; ++i) level.inverseDiagonal[i] = d[i] > 0 ? 1.0 / d[i] : 0.0;
}

void Multigrid::setCoefficients(const double* a, const std::array<const double*, 3>& faces) {
  Level& finest = levels_.front();
  std::copy(a, a + finest.nodes, finest.a.begin());
  // The grid's axes sit in the last slots (2D: slots 1 and 2).
  const int dim = dim_;
  for (int axis = 0; axis < 3; ++axis) std::fill(finest.weight[axis].begin(), finest.weight[axis].end(), 0.0);
  for (int a = 0; a < dim; ++a)
    if (faces[a]) std::copy(faces[a], faces[a] + finest.nodes, finest.weight[a + 3 - dim].begin());
  // The last node along an axis has no + face.
  for (int64_t i0 = 0; i0 < finest.n[0]; ++i0)
    for (int64_t i1 = 0; i1 < finest.n[1]; ++i1) {
      const int64_t row = (i0 * finest.n[1] + i1) * finest.n[2];
      if (i0 + 1 == finest.n[0]) std::fill_n(finest.weight[0].begin() + row, finest.n[2], 0.0);
      if (i1 + 1 == finest.n[1]) std::fill_n(finest.weight[1].begin() + row, finest.n[2], 0.0);
      finest.weight[2][row + finest.n[2] - 1] = 0;
    }
  finishLevel(finest);
  for (size_t l = 1; l < levels_.size(); ++l) coarsenCoefficients(levels_[l - 1], levels_[l]);
}

// Rediscretisation: a averaged over the children, a coarse face the mean of
// the fine faces across it. Along each axis a coarse node has one or two
// children (two unless the axis is not coarsened or the count is odd and
// it is the last), so the sums run over at most 2 x 2 x 2 fine nodes.
void Multigrid::coarsenCoefficients(const Level& fine, Level& coarse) const {
  const int64_t fs0 = fine.n[1] * fine.n[2], fs1 = fine.n[2];
  const int64_t cs0 = coarse.n[1] * coarse.n[2], cs1 = coarse.n[2];
  // Per axis and coarse index: the first child and the number of children.
  std::array<std::vector<int64_t>, 3> first, count;
  for (int axis = 0; axis < 3; ++axis) {
    first[axis].resize(coarse.n[axis]);
    count[axis].resize(coarse.n[axis]);
    for (int64_t I = 0; I < coarse.n[axis]; ++I) {
      first[axis][I] = fine.coarsened[axis] ? 2 * I : I;
      count[axis][I] = fine.coarsened[axis] && 2 * I + 1 < fine.n[axis] ? 2 : 1;
    }
  }
  const double* a = fine.a.data();
  const double* w0 = fine.weight[0].data();
  const double* w1 = fine.weight[1].data();
  const double* w2 = fine.weight[2].data();
  for (int64_t I0 = 0; I0 < coarse.n[0]; ++I0) {
    const int64_t b0 = first[0][I0], k0 = count[0][I0];
    for (int64_t I1 = 0; I1 < coarse.n[1]; ++I1) {
      const int64_t b1 = first[1][I1], k1 = count[1][I1];
      for (int64_t I2 = 0; I2 < coarse.n[2]; ++I2) {
        const int64_t b2 = first[2][I2], k2 = count[2][I2];
        const int64_t I = I0 * cs0 + I1 * cs1 + I2, base = b0 * fs0 + b1 * fs1 + b2;
        double sum = 0, face0 = 0, face1 = 0, face2 = 0;
        for (int64_t c0 = 0; c0 < k0; ++c0)
          for (int64_t c1 = 0; c1 < k1; ++c1)
            for (int64_t c2 = 0; c2 < k2; ++c2) sum += a[base + c0 * fs0 + c1 * fs1 + c2];
        // The faces leaving the last child layer along each axis.
        for (int64_t c1 = 0; c1 < k1; ++c1)
          for (int64_t c2 = 0; c2 < k2; ++c2) face0 += w0[base + (k0 - 1) * fs0 + c1 * fs1 + c2];
        for (int64_t c0 = 0; c0 < k0; ++c0)
          for (int64_t c2 = 0; c2 < k2; ++c2) face1 += w1[base + c0 * fs0 + (k1 - 1) * fs1 + c2];
        for (int64_t c0 = 0; c0 < k0; ++c0)
          for (int64_t c1 = 0; c1 < k1; ++c1) face2 += w2[base + c0 * fs0 + c1 * fs1 + k2 - 1];
        coarse.a[I] = sum / static_cast<double>(k0 * k1 * k2);
        coarse.weight[0][I] = I0 + 1 < coarse.n[0] ? face0 / static_cast<double>(k1 * k2) : 0.0;
        coarse.weight[1][I] = I1 + 1 < coarse.n[1] ? face1 / static_cast<double>(k0 * k2) : 0.0;
        coarse.weight[2][I] = I2 + 1 < coarse.n[2] ? face2 / static_cast<double>(k0 * k1) : 0.0;
      }
    }
  }
  finishLevel(coarse);
}

void Multigrid::smooth(const Level& L, const double* f, double* x, bool redFirst) const {
  const int64_t n0 = L.n[0], n1 = L.n[1], n2 = L.n[2], s0 = n1 * n2, s1 = n2;
  const double* f0 = L.face[0].data();
  const double* f1 = L.face[1].data();
  const double* f2 = L.face[2].data();
  const double* inverse = L.inverseDiagonal.data();
  // The faces of the missing neighbours at the walls are zero (setCoefficients
  // and coarsenCoefficients clear them), so a row reads a zero-weighted
  // neighbour there instead of branching: `zero` stands in for it.
  std::vector<double>& zero = L.buffer0.size() >= static_cast<size_t>(n2) ? L.buffer0 : L.r;
  std::fill_n(zero.data(), n2, 0.0);
  for (int pass = 0; pass < 2; ++pass) {
    const int64_t colour = redFirst ? pass : 1 - pass;
    // Rows of one colour pass are independent: blocks of them in parallel.
    forRowBlocks(n0 * n1, L.nodes, [&](int64_t firstRow, int64_t lastRow) {
      for (int64_t rowIndex = firstRow; rowIndex < lastRow; ++rowIndex) {
        const int64_t i0 = rowIndex / n1, i1 = rowIndex % n1;
        const int64_t row = i0 * s0 + i1 * s1;
        double* xr = x + row;
        const double* fr = f + row;
        const double* e2 = f2 + row;
        const double* inv = inverse + row;
        // Neighbour rows and the faces towards them (zero faces at the walls).
        const double* down = i1 > 0 ? x + row - s1 : zero.data();
        const double* downFace = i1 > 0 ? f1 + row - s1 : zero.data();
        const double* up = i1 + 1 < n1 ? x + row + s1 : zero.data();
        const double* upFace = i1 + 1 < n1 ? f1 + row : zero.data();
        const double* back = i0 > 0 ? x + row - s0 : zero.data();
        const double* backFace = i0 > 0 ? f0 + row - s0 : zero.data();
        const double* front = i0 + 1 < n0 ? x + row + s0 : zero.data();
        const double* frontFace = i0 + 1 < n0 ? f0 + row : zero.data();
        auto update = [&](int64_t j, double left, double leftFace, double right, double rightFace) {
          const double s = fr[j] + leftFace * left + rightFace * right + downFace[j] * down[j] + upFace[j] * up[j] +
                           backFace[j] * back[j] + frontFace[j] * front[j];
          if (inv[j] > 0) xr[j] = s * inv[j];
        };
        int64_t j = (i0 + i1 + colour) & 1;
        if (n2 == 1) {
          if (j == 0) update(0, 0.0, 0.0, 0.0, 0.0);
          continue;
        }
        if (j == 0) {
          update(0, 0.0, 0.0, xr[1], e2[0]);
          j = 2;
        }
        for (; j + 1 < n2; j += 2) update(j, xr[j - 1], e2[j - 1], xr[j + 1], e2[j]);
        if (j == n2 - 1) update(j, xr[j - 1], e2[j - 1], 0.0, 0.0);
      }
    });
  }
}

void Multigrid::residualOn(const Level& L, const double* f, const double* x, double* r) const {
  const int64_t n0 = L.n[0], n1 = L.n[1], n2 = L.n[2], s0 = n1 * n2, s1 = n2;
  const double* f0 = L.face[0].data();
  const double* f1 = L.face[1].data();
  const double* f2 = L.face[2].data();
  forRowBlocks(n0 * n1, L.nodes, [&](int64_t firstRow, int64_t lastRow) {
    for (int64_t rowIndex = firstRow; rowIndex < lastRow; ++rowIndex) {
      const int64_t i0 = rowIndex / n1, i1 = rowIndex % n1;
      const int64_t row = i0 * s0 + i1 * s1;
      for (int64_t i2 = 0; i2 < n2; ++i2) {
        const int64_t i = row + i2;
        double s = f[i] - L.diagonal[i] * x[i];
        if (i2 > 0) s += f2[i - 1] * x[i - 1];
        if (i2 + 1 < n2) s += f2[i] * x[i + 1];
        if (i1 > 0) s += f1[i - s1] * x[i - s1];
        if (i1 + 1 < n1) s += f1[i] * x[i + s1];
        if (i0 > 0) s += f0[i - s0] * x[i - s0];
        if (i0 + 1 < n0) s += f0[i] * x[i + s0];
        r[i] = s;
      }
    }
  });
}

void Multigrid::residual(const double* f, const double* x, double* r) const { residualOn(levels_.front(), f, x, r); }

void Multigrid::apply(const double* x, double* y) const {
  const Level& finest = levels_.front();
  std::vector<double> zero(finest.nodes, 0.0);
  residualOn(finest, zero.data(), x, y);
  for (int64_t i = 0; i < finest.nodes; ++i) y[i] = -y[i];
}

// Applies, axis by axis, the transpose of the interpolation, then divides by
// its column sums: each coarse value is a weighted mean of fine residuals.
void Multigrid::restrictTo(const Level& fine, const Level& coarse, const double* r, double* out) const {
  const int64_t f0 = fine.n[0], f1 = fine.n[1], f2 = fine.n[2], c0 = coarse.n[0], c1 = coarse.n[1], c2 = coarse.n[2];
  // Shapes after each axis: (f0,f1,f2) -> (f0,f1,c2) -> (f0,c1,c2) -> (c0,c1,c2).
  double* a1 = fine.buffer0.data();
  double* a2 = fine.buffer1.data();
  const int64_t* low2 = fine.tapLow[2].data();
  const int64_t* high2 = fine.tapHigh[2].data();
  const double* w2 = fine.tapWeight[2].data();
  const double* sum2 = fine.columnSum[2].data();
  for (int64_t row = 0; row < f0 * f1; ++row) {
    const double* in = r + row * f2;
    double* o = a1 + row * c2;
    std::fill_n(o, c2, 0.0);
    for (int64_t i = 0; i < f2; ++i) {
      o[low2[i]] += w2[i] * in[i];
      o[high2[i]] += (1.0 - w2[i]) * in[i];
    }
    for (int64_t I = 0; I < c2; ++I) o[I] /= sum2[I];
  }
  std::fill_n(a2, f0 * c1 * c2, 0.0);
  for (int64_t i0 = 0; i0 < f0; ++i0)
    for (int64_t i = 0; i < f1; ++i) {
      const double* in = a1 + (i0 * f1 + i) * c2;
      double* low = a2 + (i0 * c1 + fine.tapLow[1][i]) * c2;
      double* high = a2 + (i0 * c1 + fine.tapHigh[1][i]) * c2;
      const double wl = fine.tapWeight[1][i], wh = 1.0 - wl;
      for (int64_t j = 0; j < c2; ++j) {
        low[j] += wl * in[j];
        high[j] += wh * in[j];
      }
    }
  for (int64_t i0 = 0; i0 < f0; ++i0)
    for (int64_t I = 0; I < c1; ++I) {
      const double inverse = 1.0 / fine.columnSum[1][I];
      double* o = a2 + (i0 * c1 + I) * c2;
      for (int64_t j = 0; j < c2; ++j) o[j] *= inverse;
    }
  const int64_t plane = c1 * c2;
  std::fill_n(out, c0 * plane, 0.0);
  for (int64_t i = 0; i < f0; ++i) {
    const double* in = a2 + i * plane;
    double* low = out + fine.tapLow[0][i] * plane;
    double* high = out + fine.tapHigh[0][i] * plane;
    const double wl = fine.tapWeight[0][i], wh = 1.0 - wl;
    for (int64_t j = 0; j < plane; ++j) {
      low[j] += wl * in[j];
      high[j] += wh * in[j];
    }
  }
  for (int64_t I = 0; I < c0; ++I) {
    const double inverse = 1.0 / fine.columnSum[0][I];
    for (int64_t j = 0; j < plane; ++j) out[I * plane + j] *= inverse;
  }
}

void Multigrid::prolongAdd(const Level& coarse, const Level& fine, const double* x, double* out) const {
  const int64_t f0 = fine.n[0], f1 = fine.n[1], f2 = fine.n[2], c0 = coarse.n[0], c1 = coarse.n[1], c2 = coarse.n[2];
  // (c0,c1,c2) -> (c0,c1,f2) -> (c0,f1,f2) -> add into (f0,f1,f2).
  double* a1 = fine.buffer0.data();
  double* a2 = fine.buffer1.data();
  const int64_t* low2 = fine.tapLow[2].data();
  const int64_t* high2 = fine.tapHigh[2].data();
  const double* w2 = fine.tapWeight[2].data();
  for (int64_t row = 0; row < c0 * c1; ++row) {
    const double* in = x + row * c2;
    double* o = a1 + row * f2;
    for (int64_t i = 0; i < f2; ++i) o[i] = w2[i] * in[low2[i]] + (1.0 - w2[i]) * in[high2[i]];
  }
  for (int64_t I0 = 0; I0 < c0; ++I0)
    for (int64_t i = 0; i < f1; ++i) {
      const double* low = a1 + (I0 * c1 + fine.tapLow[1][i]) * f2;
      const double* high = a1 + (I0 * c1 + fine.tapHigh[1][i]) * f2;
      const double wl = fine.tapWeight[1][i], wh = 1.0 - wl;
      double* o = a2 + (I0 * f1 + i) * f2;
      for (int64_t j = 0; j < f2; ++j) o[j] = wl * low[j] + wh * high[j];
    }
  const int64_t plane = f1 * f2;
  for (int64_t i = 0; i < f0; ++i) {
    const double* low = a2 + fine.tapLow[0][i] * plane;
    const double* high = a2 + fine.tapHigh[0][i] * plane;
    const double wl = fine.tapWeight[0][i], wh = 1.0 - wl;
    double* o = out + i * plane;
    for (int64_t j = 0; j < plane; ++j) o[j] += wl * low[j] + wh * high[j];
  }
}

void Multigrid::cycleOn(size_t l, const double* f, double* x) const {
  const Level& level = levels_[l];
  if (l + 1 == levels_.size()) {
    // Coarsest level (at most a few dozen nodes): sweep to convergence.
    for (int sweep = 0; sweep < 40; ++sweep) smooth(level, f, x, sweep % 2 == 0);
    return;
  }
  for (int s = 0; s < pre_; ++s) smooth(level, f, x, true);
  residualOn(level, f, x, level.r.data());
  const Level& coarse = levels_[l + 1];
  restrictTo(level, coarse, level.r.data(), coarse.f.data());
  std::fill(coarse.x.begin(), coarse.x.end(), 0.0);
  cycleOn(l + 1, coarse.f.data(), coarse.x.data());
  prolongAdd(coarse, level, coarse.x.data(), x);
  for (int s = 0; s < post_; ++s) smooth(level, f, x, false);
}

void Multigrid::cycle(const double* f, double* x) const { cycleOn(0, f, x); }

}  // namespace jko
