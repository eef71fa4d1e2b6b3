#include "numerics/Multigrid.h"

#include <algorithm>
#include <stdexcept>
#include <tuple>

#include "parallel/Communicator.h"
#include "runtime/TaskTeam.h"

namespace jko {
namespace {

// Planes of halo of a split level: the restriction of an owned coarse plane
// I reads fine planes 2I - 1 .. 2I + 2, one below and two above the owned.
constexpr int64_t kHaloPlanes = 2;

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

// The whole hierarchy's shapes: every axis with more than two nodes halves
// until nothing does or a level has at most 16 nodes.
struct Multigrid::Hierarchy {
  std::vector<Level> levels;
};

Multigrid::Hierarchy Multigrid::plan(int dim, const std::array<int64_t, 3>& n, const std::array<double, 3>& h) {
  if (dim != 2 && dim != 3) throw std::invalid_argument("Multigrid: dim must be 2 or 3");
  Hierarchy hierarchy;
  Level finest;
  for (int a = 0; a < dim; ++a) {
    const int slot = a + 3 - dim;
    finest.n[slot] = n[a];
    finest.h[slot] = h[a];
  }
  finest.nodes = finest.n[0] * finest.n[1] * finest.n[2];
  hierarchy.levels.push_back(std::move(finest));
  for (;;) {
    Level& fine = hierarchy.levels.back();
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
    hierarchy.levels.push_back(std::move(coarse));
  }
  for (Level& level : hierarchy.levels) {
    level.global = level.n;
    level.ownedFirst = 0;
    level.ownedLast = level.n[3 - dim];
  }
  return hierarchy;
}

Multigrid::Multigrid(int dim, const std::array<int64_t, 3>& n, const std::array<double, 3>& h, int preSmoothing,
                     int postSmoothing)
    : dim_(dim), pre_(preSmoothing), post_(postSmoothing) {
  const Hierarchy hierarchy = plan(dim, n, h);
  levels_ = hierarchy.levels;
  build(levels_.size());
}

Multigrid::Multigrid(int dim, const std::array<int64_t, 3>& n, const std::array<double, 3>& h, int preSmoothing,
                     int postSmoothing, MultigridSlabs slabs)
    : dim_(dim), pre_(preSmoothing), post_(postSmoothing), slabs_(std::move(slabs)) {
  if (!slabs_.communicator) throw std::invalid_argument("Multigrid: split without a communicator");
  const int ranks = slabs_.communicator->size(), split = 3 - dim;
  if (static_cast<int>(slabs_.firstPlane.size()) != ranks + 1 || slabs_.firstPlane.front() != 0 ||
      slabs_.firstPlane.back() != n[0] || !std::is_sorted(slabs_.firstPlane.begin(), slabs_.firstPlane.end()))
    throw std::invalid_argument("Multigrid: the slabs must cover the first axis in rank order");
  const Hierarchy hierarchy = plan(dim, n, h);
  // Each level's planes per rank: a coarse plane belongs to the owner of its
  // first child. The first level that is small, or on which some rank would
  // hold fewer than two planes, is gathered.
  std::vector<std::vector<int64_t>> firstPlanes{slabs_.firstPlane};
  size_t gathered = 0;
  for (;; ++gathered) {
    const std::vector<int64_t>& first = firstPlanes.back();
    bool thin = false;
    for (int r = 0; r < ranks; ++r) thin = thin || first[r + 1] - first[r] < 2;
    const Level& level = hierarchy.levels[gathered];
    if (thin || level.nodes <= slabs_.gatherNodes || gathered + 1 == hierarchy.levels.size()) break;
    std::vector<int64_t> coarse(first.size());
    for (size_t r = 0; r < first.size(); ++r) coarse[r] = level.coarsened[split] ? (first[r] + 1) / 2 : first[r];
    firstPlanes.push_back(std::move(coarse));
  }
  const int rank = slabs_.communicator->rank();
  for (size_t l = 0; l <= gathered; ++l) {
    Level level = hierarchy.levels[l];
    const std::vector<int64_t>& first = firstPlanes[l];
    const int64_t lo = first[rank], hi = first[rank + 1], total = level.global[split];
    const int64_t windowLo = std::max<int64_t>(0, lo - kHaloPlanes), windowHi = std::min(total, hi + kHaloPlanes);
    level.firstPlane = first;
    level.offset[split] = windowLo;
    level.n[split] = windowHi - windowLo;
    level.ownedFirst = lo - windowLo;
    level.ownedLast = hi - windowLo;
    level.nodes = level.n[0] * level.n[1] * level.n[2];
    levels_.push_back(std::move(level));
  }
  build(levels_.size());
  // The gathered level and those below it: the serial levels of its grid.
  const Level& last = hierarchy.levels[gathered];
  std::array<int64_t, 3> coarseN{1, 1, 1};
  std::array<double, 3> coarseH{1, 1, 1};
  for (int a = 0; a < dim; ++a) {
    coarseN[a] = last.global[a + 3 - dim];
    coarseH[a] = last.h[a + 3 - dim];
  }
  gathered_ = std::make_unique<Multigrid>(dim, coarseN, coarseH, preSmoothing, postSmoothing);
  gatherF_.assign(last.nodes, 0.0);
  gatherX_.assign(last.nodes, 0.0);
  fineF_.assign(levels_.front().nodes, 0.0);
  fineX_.assign(levels_.front().nodes, 0.0);
  fineR_.assign(levels_.front().nodes, 0.0);
}

Multigrid::~Multigrid() = default;

int64_t Multigrid::nodes() const {
  const Level& finest = levels_.front();
  return finest.nodes / finest.n[splitSlot()] * (finest.ownedLast - finest.ownedFirst);
}

int Multigrid::levels() const {
  return gathered_ ? static_cast<int>(levels_.size()) - 1 + gathered_->levels() : static_cast<int>(levels_.size());
}

// The interpolation's taps per axis (global indices; a split level reads
// them at its offset), work fields, coefficients, for levels_[0, count).
void Multigrid::build(size_t count) {
  for (size_t l = 0; l + 1 < count; ++l) {
    Level& fine = levels_[l];
    const Level& coarse = levels_[l + 1];
    for (int a = 0; a < 3; ++a) {
      const std::vector<Tap> taps = interpolationTaps(fine.global[a], coarse.global[a], fine.coarsened[a]);
      fine.columnSum[a].assign(coarse.global[a], 0.0);
      for (const Tap& t : taps) {
        fine.tapLow[a].push_back(t.low);
        fine.tapHigh[a].push_back(t.high);
        fine.tapWeight[a].push_back(t.wLow);
        fine.columnSum[a][t.low] += t.wLow;
        fine.columnSum[a][t.high] += 1.0 - t.wLow;
      }
    }
    // The largest intermediate fields of the separable transfers.
    const int64_t f0 = fine.n[0], f1 = fine.n[1], f2 = fine.n[2], c0 = coarse.n[0], c1 = coarse.n[1], c2 = coarse.n[2];
    const int64_t size = std::max({f0 * f1 * c2, f0 * c1 * c2, c0 * c1 * f2, c0 * f1 * f2});
    fine.buffer0.assign(size, 0.0);
    fine.buffer1.assign(size, 0.0);
  }
  for (size_t l = 0; l < count; ++l) {
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

std::pair<int64_t, int64_t> Multigrid::ownedRows(const Level& level) const {
  // The split slot is the outermost of length > 1: slot 0 in 3D (rows of n1
  // per plane), slot 1 in 2D (slot 0 has length 1: a plane is a row).
  if (splitSlot() == 0) return {level.ownedFirst * level.n[1], level.ownedLast * level.n[1]};
  return {level.ownedFirst, level.ownedLast};
}

void Multigrid::exchangeHalo(const Level& level, double* field) const {
  if (gathered_) refreshHalo(*slabs_.communicator, level.firstPlane, kHaloPlanes, planeSize(level), field);
}

void Multigrid::gatherWhole(const Level& level, const double* field, double* whole) const {
  const Communicator& comm = *slabs_.communicator;
  const int ranks = comm.size(), rank = comm.rank();
  const int64_t plane = planeSize(level);
  const std::vector<int64_t>& first = level.firstPlane;
  const int64_t mine = (first[rank + 1] - first[rank]) * plane;
  std::vector<int64_t> sendCounts(ranks, mine), receiveCounts(ranks);
  for (int q = 0; q < ranks; ++q) receiveCounts[q] = (first[q + 1] - first[q]) * plane;
  sendBuffer_.resize(std::max<int64_t>(1, mine * ranks));
  for (int q = 0; q < ranks; ++q) std::copy_n(field + level.ownedFirst * plane, mine, sendBuffer_.data() + q * mine);
  // The blocks arrive in rank order: the planes in order.
  comm.exchange(sendBuffer_.data(), sendCounts, whole, receiveCounts);
}

void Multigrid::toWindow(const double* owned, std::vector<double>& window) const {
  const Level& finest = levels_.front();
  const int64_t plane = planeSize(finest);
  std::copy_n(owned, (finest.ownedLast - finest.ownedFirst) * plane, window.data() + finest.ownedFirst * plane);
}

void Multigrid::fromWindow(const std::vector<double>& window, double* owned) const {
  const Level& finest = levels_.front();
  const int64_t plane = planeSize(finest);
  std::copy_n(window.data() + finest.ownedFirst * plane, (finest.ownedLast - finest.ownedFirst) * plane, owned);
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
  const int64_t plane = planeSize(finest), first = finest.ownedFirst * plane,
                owned = (finest.ownedLast - finest.ownedFirst) * plane;
  // The grid's axes sit in the last slots (2D: slots 1 and 2).
  const int dim = dim_;
  for (int axis = 0; axis < 3; ++axis) std::fill(finest.weight[axis].begin(), finest.weight[axis].end(), 0.0);
  std::copy(a, a + owned, finest.a.begin() + first);
  for (int axis = 0; axis < dim; ++axis)
    if (faces[axis]) std::copy(faces[axis], faces[axis] + owned, finest.weight[axis + 3 - dim].begin() + first);
  // The last node along an axis has no + face.
  for (int64_t i0 = 0; i0 < finest.n[0]; ++i0)
    for (int64_t i1 = 0; i1 < finest.n[1]; ++i1) {
      const int64_t row = (i0 * finest.n[1] + i1) * finest.n[2];
      if (i0 + finest.offset[0] + 1 == finest.global[0]) std::fill_n(finest.weight[0].begin() + row, finest.n[2], 0.0);
      if (i1 + finest.offset[1] + 1 == finest.global[1]) std::fill_n(finest.weight[1].begin() + row, finest.n[2], 0.0);
      finest.weight[2][row + finest.n[2] - 1] = 0;
    }
  auto exchangeCoefficients = [&](Level& level) {
    exchangeHalo(level, level.a.data());
    for (int axis = 0; axis < 3; ++axis) exchangeHalo(level, level.weight[axis].data());
  };
  exchangeCoefficients(finest);
  finishLevel(finest);
  for (size_t l = 1; l < levels_.size(); ++l) {
    coarsenCoefficients(levels_[l - 1], levels_[l]);
    exchangeCoefficients(levels_[l]);
    finishLevel(levels_[l]);
  }
  if (!gathered_) return;
  // The gathered level's coefficients, whole on every rank, for its serial levels.
  const Level& last = levels_.back();
  std::vector<double> whole(gatherF_.size());
  std::array<std::vector<double>, 3> wholeFaces;
  std::array<const double*, 3> faceData{nullptr, nullptr, nullptr};
  gatherWhole(last, last.a.data(), whole.data());
  for (int axis = 0; axis < dim; ++axis) {
    wholeFaces[axis].resize(whole.size());
    gatherWhole(last, last.weight[axis + 3 - dim].data(), wholeFaces[axis].data());
    faceData[axis] = wholeFaces[axis].data();
  }
  gathered_->setCoefficients(whole.data(), faceData);
}

// Rediscretisation: a averaged over the children, a coarse face the mean of
// the fine faces across it. Along each axis a coarse node has one or two
// children (two unless the axis is not coarsened or the count is odd and
// it is the last), so the sums run over at most 2 x 2 x 2 fine nodes. A
// split level computes its owned planes (their children lie in the fine
// level's owned planes and the first plane of its halo).
void Multigrid::coarsenCoefficients(const Level& fine, Level& coarse) const {
  const int64_t fs0 = fine.n[1] * fine.n[2], fs1 = fine.n[2];
  const int64_t cs0 = coarse.n[1] * coarse.n[2], cs1 = coarse.n[2];
  // Per axis and stored coarse index: the first child (stored index) and
  // the number of children.
  std::array<std::vector<int64_t>, 3> first, count;
  for (int axis = 0; axis < 3; ++axis) {
    first[axis].resize(coarse.n[axis]);
    count[axis].resize(coarse.n[axis]);
    for (int64_t I = 0; I < coarse.n[axis]; ++I) {
      const int64_t G = I + coarse.offset[axis];
      first[axis][I] = (fine.coarsened[axis] ? 2 * G : G) - fine.offset[axis];
      count[axis][I] = fine.coarsened[axis] && 2 * G + 1 < fine.global[axis] ? 2 : 1;
    }
  }
  const int split = splitSlot();
  std::array<int64_t, 3> from{0, 0, 0}, to = coarse.n;
  from[split] = coarse.ownedFirst;
  to[split] = coarse.ownedLast;
  const double* a = fine.a.data();
  const double* w0 = fine.weight[0].data();
  const double* w1 = fine.weight[1].data();
  const double* w2 = fine.weight[2].data();
  for (int64_t I0 = from[0]; I0 < to[0]; ++I0) {
    const int64_t b0 = first[0][I0], k0 = count[0][I0];
    for (int64_t I1 = from[1]; I1 < to[1]; ++I1) {
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
        coarse.weight[0][I] = I0 + coarse.offset[0] + 1 < coarse.global[0] ? face0 / static_cast<double>(k1 * k2) : 0.0;
        coarse.weight[1][I] = I1 + coarse.offset[1] + 1 < coarse.global[1] ? face1 / static_cast<double>(k0 * k2) : 0.0;
        coarse.weight[2][I] = I2 + 1 < coarse.n[2] ? face2 / static_cast<double>(k0 * k1) : 0.0;
      }
    }
  }
  finishLevel(coarse);
}

// Updates the owned nodes of one colour, then of the other; a split level's
// halo of x is refreshed before each colour (the nodes of the colour read
// only the other's).
void Multigrid::smooth(const Level& L, const double* f, double* x, bool redFirst) const {
  const int64_t n1 = L.n[1], n2 = L.n[2], s0 = n1 * n2, s1 = n2;
  const int64_t offset0 = L.offset[0], offset1 = L.offset[1], global0 = L.global[0], global1 = L.global[1];
  const double* f0 = L.face[0].data();
  const double* f1 = L.face[1].data();
  const double* f2 = L.face[2].data();
  const double* inverse = L.inverseDiagonal.data();
  // The faces of the missing neighbours at the walls are zero (setCoefficients
  // and coarsenCoefficients clear them), so a row reads a zero-weighted
  // neighbour there instead of branching: `zero` stands in for it.
  std::vector<double>& zero = L.buffer0.size() >= static_cast<size_t>(n2) ? L.buffer0 : L.r;
  std::fill_n(zero.data(), n2, 0.0);
  const auto [firstRow, lastRow] = ownedRows(L);
  for (int pass = 0; pass < 2; ++pass) {
    const int64_t colour = redFirst ? pass : 1 - pass;
    exchangeHalo(L, x);
    // Rows of one colour pass are independent: blocks of them in parallel.
    forRowBlocks(lastRow - firstRow, L.nodes, [&](int64_t firstBlock, int64_t lastBlock) {
      for (int64_t rowIndex = firstRow + firstBlock; rowIndex < firstRow + lastBlock; ++rowIndex) {
        const int64_t i0 = rowIndex / n1, i1 = rowIndex % n1;
        const int64_t g0 = i0 + offset0, g1 = i1 + offset1;
        const int64_t row = i0 * s0 + i1 * s1;
        double* xr = x + row;
        const double* fr = f + row;
        const double* e2 = f2 + row;
        const double* inv = inverse + row;
        // Neighbour rows and the faces towards them (zero faces at the walls).
        const double* down = g1 > 0 ? x + row - s1 : zero.data();
        const double* downFace = g1 > 0 ? f1 + row - s1 : zero.data();
        const double* up = g1 + 1 < global1 ? x + row + s1 : zero.data();
        const double* upFace = g1 + 1 < global1 ? f1 + row : zero.data();
        const double* back = g0 > 0 ? x + row - s0 : zero.data();
        const double* backFace = g0 > 0 ? f0 + row - s0 : zero.data();
        const double* front = g0 + 1 < global0 ? x + row + s0 : zero.data();
        const double* frontFace = g0 + 1 < global0 ? f0 + row : zero.data();
        auto update = [&](int64_t j, double left, double leftFace, double right, double rightFace) {
          const double s = fr[j] + leftFace * left + rightFace * right + downFace[j] * down[j] + upFace[j] * up[j] +
                           backFace[j] * back[j] + frontFace[j] * front[j];
          if (inv[j] > 0) xr[j] = s * inv[j];
        };
        int64_t j = (g0 + g1 + colour) & 1;
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

// r = f - A x on the owned nodes (a split level's halo of x is current).
void Multigrid::residualOn(const Level& L, const double* f, const double* x, double* r) const {
  const int64_t n1 = L.n[1], n2 = L.n[2], s0 = n1 * n2, s1 = n2;
  const int64_t offset0 = L.offset[0], offset1 = L.offset[1], global0 = L.global[0], global1 = L.global[1];
  const double* f0 = L.face[0].data();
  const double* f1 = L.face[1].data();
  const double* f2 = L.face[2].data();
  const auto [firstRow, lastRow] = ownedRows(L);
  forRowBlocks(lastRow - firstRow, L.nodes, [&](int64_t firstBlock, int64_t lastBlock) {
    for (int64_t rowIndex = firstRow + firstBlock; rowIndex < firstRow + lastBlock; ++rowIndex) {
      const int64_t i0 = rowIndex / n1, i1 = rowIndex % n1;
      const int64_t g0 = i0 + offset0, g1 = i1 + offset1;
      const int64_t row = i0 * s0 + i1 * s1;
      for (int64_t i2 = 0; i2 < n2; ++i2) {
        const int64_t i = row + i2;
        double s = f[i] - L.diagonal[i] * x[i];
        if (i2 > 0) s += f2[i - 1] * x[i - 1];
        if (i2 + 1 < n2) s += f2[i] * x[i + 1];
        if (g1 > 0) s += f1[i - s1] * x[i - s1];
        if (g1 + 1 < global1) s += f1[i] * x[i + s1];
        if (g0 > 0) s += f0[i - s0] * x[i - s0];
        if (g0 + 1 < global0) s += f0[i] * x[i + s0];
        r[i] = s;
      }
    }
  });
}

void Multigrid::residual(const double* f, const double* x, double* r) const {
  const Level& finest = levels_.front();
  if (!gathered_) {
    residualOn(finest, f, x, r);
    return;
  }
  toWindow(f, fineF_);
  toWindow(x, fineX_);
  exchangeHalo(finest, fineX_.data());
  residualOn(finest, fineF_.data(), fineX_.data(), fineR_.data());
  fromWindow(fineR_, r);
}

void Multigrid::apply(const double* x, double* y) const {
  const int64_t N = nodes();
  std::vector<double> zero(N, 0.0);
  residual(zero.data(), x, y);
  for (int64_t i = 0; i < N; ++i) y[i] = -y[i];
}

// Applies, axis by axis, the transpose of the interpolation, then divides by
// its column sums: each coarse value is a weighted mean of fine residuals.
// Indices along an axis are global in the taps and stored in the fields
// (offset 0 but along a split level's split slot). A split level adds the
// stored fine planes in order, as the serial level does: an owned coarse
// plane's children and their neighbours (fine planes 2I - 1 .. 2I + 2) are
// in the halo, and its value is the serial one.
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
  // A fine node's two coarse taps along `slot`, stored indices (-1: not stored).
  auto taps = [&](int slot, int64_t i) {
    const int64_t g = i + fine.offset[slot];
    int64_t low = fine.tapLow[slot][g] - coarse.offset[slot], high = fine.tapHigh[slot][g] - coarse.offset[slot];
    if (low < 0 || low >= coarse.n[slot]) low = -1;
    if (high < 0 || high >= coarse.n[slot]) high = -1;
    return std::make_tuple(low, high, fine.tapWeight[slot][g]);
  };
  std::fill_n(a2, f0 * c1 * c2, 0.0);
  for (int64_t i0 = 0; i0 < f0; ++i0)
    for (int64_t i = 0; i < f1; ++i) {
      const auto [lowIndex, highIndex, wl] = taps(1, i);
      const double wh = 1.0 - wl;
      const double* in = a1 + (i0 * f1 + i) * c2;
      if (lowIndex >= 0) {
        double* low = a2 + (i0 * c1 + lowIndex) * c2;
        for (int64_t j = 0; j < c2; ++j) low[j] += wl * in[j];
      }
      if (highIndex >= 0) {
        double* high = a2 + (i0 * c1 + highIndex) * c2;
        for (int64_t j = 0; j < c2; ++j) high[j] += wh * in[j];
      }
    }
  for (int64_t i0 = 0; i0 < f0; ++i0)
    for (int64_t I = 0; I < c1; ++I) {
      const double inverse = 1.0 / fine.columnSum[1][I + coarse.offset[1]];
      double* o = a2 + (i0 * c1 + I) * c2;
      for (int64_t j = 0; j < c2; ++j) o[j] *= inverse;
    }
  const int64_t plane = c1 * c2;
  std::fill_n(out, c0 * plane, 0.0);
  for (int64_t i = 0; i < f0; ++i) {
    const auto [lowIndex, highIndex, wl] = taps(0, i);
    const double wh = 1.0 - wl;
    const double* in = a2 + i * plane;
    if (lowIndex >= 0) {
      double* low = out + lowIndex * plane;
      for (int64_t j = 0; j < plane; ++j) low[j] += wl * in[j];
    }
    if (highIndex >= 0) {
      double* high = out + highIndex * plane;
      for (int64_t j = 0; j < plane; ++j) high[j] += wh * in[j];
    }
  }
  for (int64_t I = 0; I < c0; ++I) {
    const double inverse = 1.0 / fine.columnSum[0][I + coarse.offset[0]];
    for (int64_t j = 0; j < plane; ++j) out[I * plane + j] *= inverse;
  }
}

// Adds the interpolated coarse correction to the fine nodes whose taps are
// stored (on a split level: the owned ones at least; the coarse halo is
// current).
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
  auto stored = [&](int slot, int64_t i, int64_t& low, int64_t& high, double& wl) {
    const int64_t g = i + fine.offset[slot];
    low = fine.tapLow[slot][g] - coarse.offset[slot];
    high = fine.tapHigh[slot][g] - coarse.offset[slot];
    wl = fine.tapWeight[slot][g];
    return low >= 0 && low < coarse.n[slot] && high >= 0 && high < coarse.n[slot];
  };
  int64_t lowIndex = 0, highIndex = 0;
  double wl = 1;
  for (int64_t I0 = 0; I0 < c0; ++I0)
    for (int64_t i = 0; i < f1; ++i) {
      double* o = a2 + (I0 * f1 + i) * f2;
      if (!stored(1, i, lowIndex, highIndex, wl)) {
        std::fill_n(o, f2, 0.0);
        continue;
      }
      const double* low = a1 + (I0 * c1 + lowIndex) * f2;
      const double* high = a1 + (I0 * c1 + highIndex) * f2;
      const double wh = 1.0 - wl;
      for (int64_t j = 0; j < f2; ++j) o[j] = wl * low[j] + wh * high[j];
    }
  const int64_t plane = f1 * f2;
  for (int64_t i = 0; i < f0; ++i) {
    if (!stored(0, i, lowIndex, highIndex, wl)) continue;
    const double* low = a2 + lowIndex * plane;
    const double* high = a2 + highIndex * plane;
    const double wh = 1.0 - wl;
    double* o = out + i * plane;
    for (int64_t j = 0; j < plane; ++j) o[j] += wl * low[j] + wh * high[j];
  }
}

void Multigrid::cycleOn(size_t l, const double* f, double* x) const {
  const Level& level = levels_[l];
  if (gathered_ && l + 1 == levels_.size()) {
    // The gathered level: whole on every rank, cycled by its serial levels;
    // x comes back whole, halo included.
    gatherWhole(level, f, gatherF_.data());
    gatherWhole(level, x, gatherX_.data());
    gathered_->cycle(gatherF_.data(), gatherX_.data());
    std::copy_n(gatherX_.data() + level.offset[splitSlot()] * planeSize(level), level.nodes, x);
    return;
  }
  if (l + 1 == levels_.size()) {
    // Coarsest level (at most a few dozen nodes): sweep to convergence.
    for (int sweep = 0; sweep < 40; ++sweep) smooth(level, f, x, sweep % 2 == 0);
    return;
  }
  for (int s = 0; s < pre_; ++s) smooth(level, f, x, true);
  exchangeHalo(level, x);
  residualOn(level, f, x, level.r.data());
  exchangeHalo(level, level.r.data());
  const Level& coarse = levels_[l + 1];
  restrictTo(level, coarse, level.r.data(), coarse.f.data());
  std::fill(coarse.x.begin(), coarse.x.end(), 0.0);
  cycleOn(l + 1, coarse.f.data(), coarse.x.data());
  if (!gathered_ || l + 2 < levels_.size()) exchangeHalo(coarse, coarse.x.data());
  prolongAdd(coarse, level, coarse.x.data(), x);
  for (int s = 0; s < post_; ++s) smooth(level, f, x, false);
}

void Multigrid::cycle(const double* f, double* x) const {
  if (!gathered_) {
    cycleOn(0, f, x);
    return;
  }
  toWindow(f, fineF_);
  toWindow(x, fineX_);
  cycleOn(0, fineF_.data(), fineX_.data());
  fromWindow(fineX_, x);
}

}  // namespace jko
