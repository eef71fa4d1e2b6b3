#include "parallel/SlabDecomposition.h"

#include <algorithm>
#include <vector>

#include "numerics/Errors.h"

namespace jko {

SlabDecomposition::SlabDecomposition(const Grid& grid, std::shared_ptr<const Communicator> communicator)
    : grid_(grid), communicator_(std::move(communicator)) {
  grid_.validate();
  if (!communicator_) throw InvalidParameter("communicator", "none", "give a communicator (serial or MPI)");
  if (grid_.n[0] < 2 * ranks())
    throw InvalidParameter("ranks", formatValue(ranks()),
                           "a " + grid_.describe() + " has " + formatValue(grid_.n[0]) +
                               " planes along its first axis; run on at most " + formatValue(grid_.n[0] / 2) +
                               " ranks (2 planes each)");
}

SlabDecomposition::Range SlabDecomposition::balancedBlock(int64_t total, int parts, int part) {
  const int64_t base = total / parts, extra = total % parts;
  Range range;
  range.lo = part * base + std::min<int64_t>(part, extra);
  range.hi = range.lo + base + (part < extra ? 1 : 0);
  return range;
}

SlabDecomposition::Range SlabDecomposition::owned(int r) const { return balancedBlock(grid_.n[0], ranks(), r); }

SlabDecomposition::Range SlabDecomposition::window(int64_t halo, int r) const {
  const Range own = owned(r);
  return {std::max<int64_t>(0, own.lo - halo), std::min<int64_t>(grid_.n[0], own.hi + halo)};
}

MultigridSlabs SlabDecomposition::multigridSlabs(int64_t gatherNodes) const {
  MultigridSlabs slabs;
  slabs.communicator = communicator_;
  slabs.gatherNodes = gatherNodes;
  slabs.firstPlane = {0};
  for (int r = 0; r < ranks(); ++r) slabs.firstPlane.push_back(owned(r).hi);
  return slabs;
}

Grid SlabDecomposition::slab(Range planes) const {
  Grid g = grid_;
  g.n[0] = planes.planes();
  g.origin[0] = grid_.origin[0] + planes.lo * grid_.spacing[0];
  return g;
}

at::Tensor SlabDecomposition::own(const at::Tensor& whole, int axis) const {
  const Range range = owned();
  return whole.narrow(axis, range.lo, range.planes()).contiguous();
}

template <typename Held, typename Wanted>
at::Tensor SlabDecomposition::transfer(const at::Tensor& fieldIn, int axis, Held held, Wanted wanted,
                                       bool accumulate) const {
  const at::Tensor field = fieldIn.to(at::kDouble).contiguous();
  const int p = ranks(), me = rank();
  int64_t outer = 1, inner = 1;
  for (int k = 0; k < axis; ++k) outer *= field.size(k);
  for (int k = axis + 1; k < field.dim(); ++k) inner *= field.size(k);
  const Range mine = held(me), target = wanted(me);
  if (field.size(axis) != mine.planes())
    throw InvalidDensity("a slab field has " + formatValue(field.size(axis)) + " planes where " +
                         formatValue(mine.planes()) + " were expected");
  auto overlap = [](Range a, Range b) {
    return Range{std::max(a.lo, b.lo), std::max(std::max(a.lo, b.lo), std::min(a.hi, b.hi))};
  };

  std::vector<int64_t> sendCounts(p), receiveCounts(p);
  for (int r = 0; r < p; ++r) {
    sendCounts[r] = outer * overlap(mine, wanted(r)).planes() * inner;
    receiveCounts[r] = outer * overlap(held(r), target).planes() * inner;
  }
  int64_t sendTotal = 0, receiveTotal = 0;
  for (int r = 0; r < p; ++r) sendTotal += sendCounts[r], receiveTotal += receiveCounts[r];
  std::vector<double> send(sendTotal), receive(receiveTotal);
  const double* source = field.data_ptr<double>();
  int64_t at = 0;
  for (int r = 0; r < p; ++r) {
    const Range part = overlap(mine, wanted(r));
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t plane = part.lo; plane < part.hi; ++plane) {
        const double* row = source + (o * mine.planes() + (plane - mine.lo)) * inner;
        std::copy(row, row + inner, send.data() + at);
        at += inner;
      }
  }
  communicator_->exchange(send.data(), sendCounts, receive.data(), receiveCounts);

  std::vector<int64_t> sizes = field.sizes().vec();
  sizes[axis] = target.planes();
  at::Tensor out = at::zeros(sizes, at::kDouble);
  double* destination = out.data_ptr<double>();
  at = 0;
  for (int r = 0; r < p; ++r) {
    const Range part = overlap(held(r), target);
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t plane = part.lo; plane < part.hi; ++plane) {
        double* row = destination + (o * target.planes() + (plane - target.lo)) * inner;
        const double* values = receive.data() + at;
        if (accumulate)
          for (int64_t i = 0; i < inner; ++i) row[i] += values[i];
        else
          std::copy(values, values + inner, row);
        at += inner;
      }
  }
  return out;
}

at::Tensor SlabDecomposition::withHalo(const at::Tensor& owned, int64_t halo, int axis) const {
  if (ranks() == 1) return owned.to(at::kDouble).contiguous();
  return transfer(
      owned, axis, [&](int r) { return this->owned(r); }, [&](int r) { return window(halo, r); }, false);
}

at::Tensor SlabDecomposition::sumOntoOwners(const at::Tensor& window, int64_t halo, int axis) const {
  if (ranks() == 1) return window.to(at::kDouble).contiguous();
  return transfer(
      window, axis, [&](int r) { return this->window(halo, r); }, [&](int r) { return owned(r); }, true);
}

at::Tensor SlabDecomposition::gather(const at::Tensor& owned, int axis) const {
  if (ranks() == 1) return owned.to(at::kDouble).contiguous();
  const Range whole{0, grid_.n[0]};
  return transfer(
      owned, axis, [&](int r) { return this->owned(r); }, [&](int) { return whole; }, false);
}

at::Tensor SlabDecomposition::sum(const at::Tensor& local) const {
  at::Tensor out = local.detach().to(at::kDouble).contiguous().clone();
  communicator_->sum(out.data_ptr<double>(), out.numel());
  return out;
}

at::Tensor SlabDecomposition::max(const at::Tensor& local) const {
  at::Tensor out = local.detach().to(at::kDouble).contiguous().clone();
  communicator_->max(out.data_ptr<double>(), out.numel());
  return out;
}

}  // namespace jko
