#include "numerics/Multigrid.h"

#include <algorithm>
#include <stdexcept>

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

void Multigrid::finishLevel(Level& level) const {
  const int64_t s0 = level.n[1] * level.n[2], s1 = level.n[2];
  const std::array<int64_t, 3> stride{s0, s1, 1};
  for (int a = 0; a < 3; ++a)
    for (int64_t i = 0; i < level.nodes; ++i) level.face[a][i] = level.weight[a][i] / (level.h[a] * level.h[a]);
  for (int64_t i0 = 0; i0 < level.n[0]; ++i0)
    for (int64_t i1 = 0; i1 < level.n[1]; ++i1)
      for (int64_t i2 = 0; i2 < level.n[2]; ++i2) {
        const int64_t i = i0 * s0 + i1 * s1 + i2;
        const std::array<int64_t, 3> index{i0, i1, i2};
        double d = level.a[i];
        for (int a = 0; a < 3; ++a) {
          if (index[a] + 1 < level.n[a]) d += level.face[a][i];
          if (index[a] > 0) d += level.face[a][i - stride[a]];
        }
        level.diagonal[i] = d;
        level.inverseDiagonal[i] = d > 0 ? 1.0 / d : 0.0;
      }
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

void Multigrid::coarsenCoefficients(const Level& fine, Level& coarse) const {
  const int64_t fs0 = fine.n[1] * fine.n[2], fs1 = fine.n[2];
  const int64_t cs0 = coarse.n[1] * coarse.n[2], cs1 = coarse.n[2];
  const std::array<int64_t, 3> fineStride{fs0, fs1, 1};
  auto children = [&](int axis, int64_t I, int64_t& first, int64_t& count) {
    if (!fine.coarsened[axis]) {
      first = I, count = 1;
    } else {
      first = 2 * I;
      count = 2 * I + 1 < fine.n[axis] ? 2 : 1;
    }
  };
  for (int64_t I0 = 0; I0 < coarse.n[0]; ++I0)
    for (int64_t I1 = 0; I1 < coarse.n[1]; ++I1)
      for (int64_t I2 = 0; I2 < coarse.n[2]; ++I2) {
        const int64_t I = I0 * cs0 + I1 * cs1 + I2;
        std::array<int64_t, 3> first{}, count{};
        children(0, I0, first[0], count[0]);
        children(1, I1, first[1], count[1]);
        children(2, I2, first[2], count[2]);
        double sum = 0;
        for (int64_t c0 = 0; c0 < count[0]; ++c0)
          for (int64_t c1 = 0; c1 < count[1]; ++c1)
            for (int64_t c2 = 0; c2 < count[2]; ++c2)
              sum += fine.a[(first[0] + c0) * fs0 + (first[1] + c1) * fs1 + first[2] + c2];
        coarse.a[I] = sum / static_cast<double>(count[0] * count[1] * count[2]);
        // The coarse face towards +axis: the fine faces leaving the last
        // child layer along that axis, averaged over the other axes' children.
        const std::array<int64_t, 3> index{I0, I1, I2};
        for (int axis = 0; axis < 3; ++axis) {
          if (index[axis] + 1 >= coarse.n[axis]) {
            coarse.weight[axis][I] = 0;
            continue;
          }
          std::array<int64_t, 3> lo = first, cnt = count;
          lo[axis] = first[axis] + count[axis] - 1;
          cnt[axis] = 1;
          double faceSum = 0;
          for (int64_t c0 = 0; c0 < cnt[0]; ++c0)
            for (int64_t c1 = 0; c1 < cnt[1]; ++c1)
              for (int64_t c2 = 0; c2 < cnt[2]; ++c2)
                faceSum += fine.weight[axis][(lo[0] + c0) * fineStride[0] + (lo[1] + c1) * fineStride[1] + lo[2] + c2];
          coarse.weight[axis][I] = faceSum / static_cast<double>(cnt[0] * cnt[1] * cnt[2]);
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
  for (int pass = 0; pass < 2; ++pass) {
    const int64_t colour = redFirst ? pass : 1 - pass;
    for (int64_t i0 = 0; i0 < n0; ++i0)
      for (int64_t i1 = 0; i1 < n1; ++i1) {
        const int64_t row = i0 * s0 + i1 * s1;
        const bool up = i1 + 1 < n1, down = i1 > 0, front = i0 + 1 < n0, back = i0 > 0;
        for (int64_t i2 = (i0 + i1 + colour) & 1; i2 < n2; i2 += 2) {
          const int64_t i = row + i2;
          double s = f[i];
          if (i2 > 0) s += f2[i - 1] * x[i - 1];
          if (i2 + 1 < n2) s += f2[i] * x[i + 1];
          if (down) s += f1[i - s1] * x[i - s1];
          if (up) s += f1[i] * x[i + s1];
          if (back) s += f0[i - s0] * x[i - s0];
          if (front) s += f0[i] * x[i + s0];
          if (inverse[i] > 0) x[i] = s * inverse[i];
        }
      }
  }
}

void Multigrid::residualOn(const Level& L, const double* f, const double* x, double* r) const {
  const int64_t n0 = L.n[0], n1 = L.n[1], n2 = L.n[2], s0 = n1 * n2, s1 = n2;
  const double* f0 = L.face[0].data();
  const double* f1 = L.face[1].data();
  const double* f2 = L.face[2].data();
  for (int64_t i0 = 0; i0 < n0; ++i0)
    for (int64_t i1 = 0; i1 < n1; ++i1) {
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
