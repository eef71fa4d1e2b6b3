#include "JKOSlabPieces.h"

#include <algorithm>
#include <vector>

#include "parallel/SlabDecomposition.h"

namespace jko::plugin {

bool SampleBox::empty(int dim) const {
  for (int a = 0; a < dim; ++a)
    if (count(a) == 0) return true;
  return false;
}

SampleBox samplesOfExtent(const int extent[6], const int wholeExtent[6], const ImageGridMapping& mapping) {
  // Samples per image axis: points i0..i1, or the cells between them (a flat
  // axis has its one layer of cells, as mapImage counts it).
  std::array<int64_t, 3> lo{}, hi{};
  bool empty = false;
  for (int axis = 0; axis < 3; ++axis) {
    const int64_t first = extent[2 * axis] - wholeExtent[2 * axis];
    const int64_t last = extent[2 * axis + 1] - wholeExtent[2 * axis];
    const bool flat = wholeExtent[2 * axis + 1] == wholeExtent[2 * axis];
    lo[axis] = flat ? 0 : first;
    hi[axis] = flat ? 1 : (mapping.cellData ? last : last + 1);
    empty = empty || last < first || hi[axis] <= lo[axis];
  }
  SampleBox box;
  for (int a = 0; a < mapping.grid.dim; ++a) {
    box.lo[a] = lo[mapping.imageAxis[a]];
    box.hi[a] = empty ? box.lo[a] : hi[mapping.imageAxis[a]];
  }
  return box;
}

ImageGridMapping pieceMapping(const ImageGridMapping& whole, const SampleBox& box) {
  ImageGridMapping piece = whole;
  for (int a = 0; a < whole.grid.dim; ++a) {
    piece.samples[whole.imageAxis[a]] = box.count(a);
    piece.grid.n[a] = box.count(a);
    piece.grid.origin[a] = whole.grid.origin[a] + box.lo[a] * whole.grid.spacing[a];
  }
  return piece;
}

at::Tensor cropToBox(const at::Tensor& fields, const SampleBox& box, int dim) {
  at::Tensor piece = fields;
  for (int a = 0; a < dim; ++a) piece = piece.narrow(1 + a, box.lo[a], box.count(a));
  return piece;
}

at::Tensor gatherBox(const at::Tensor& ownedFields, const SlabDecomposition& slabs, const SampleBox& box) {
  const Communicator& communicator = slabs.communicator();
  const int ranks = communicator.size(), me = communicator.rank(), dim = slabs.grid().dim;
  const int64_t channels = ownedFields.size(0);
  // Every rank's box, by one sum (each rank fills its own row).
  std::vector<double> boxes(6 * static_cast<size_t>(ranks), 0.0);
  for (int a = 0; a < dim; ++a) {
    boxes[6 * me + 2 * a] = static_cast<double>(box.lo[a]);
    boxes[6 * me + 2 * a + 1] = static_cast<double>(box.lo[a] + box.count(a));
  }
  communicator.sum(boxes.data(), static_cast<int64_t>(boxes.size()));
  auto boxOf = [&](int r) {
    SampleBox b;
    for (int a = 0; a < dim; ++a) {
      b.lo[a] = static_cast<int64_t>(boxes[6 * r + 2 * a]);
      b.hi[a] = static_cast<int64_t>(boxes[6 * r + 2 * a + 1]);
    }
    return b;
  };
  // The planes of `b` along axis 0 that rank r owns.
  auto overlap = [&](const SampleBox& b, int r) {
    const SlabDecomposition::Range owned = slabs.owned(r);
    return SlabDecomposition::Range{std::max(b.lo[0], owned.lo), std::min(b.hi[0], owned.hi)};
  };

  // To each rank, the part of this rank's slab in its box.
  const at::Tensor owned = ownedFields.to(at::kDouble).contiguous();
  const int64_t firstOwned = slabs.owned().lo;
  std::vector<at::Tensor> blocks;
  std::vector<int64_t> sendCounts(ranks, 0), receiveCounts(ranks, 0);
  for (int r = 0; r < ranks; ++r) {
    const SampleBox theirs = boxOf(r);
    const SlabDecomposition::Range planes = overlap(theirs, me);
    if (theirs.empty(dim) || planes.planes() <= 0) continue;
    SampleBox part = theirs;
    part.lo[0] = planes.lo - firstOwned;
    part.hi[0] = planes.hi - firstOwned;
    blocks.push_back(cropToBox(owned, part, dim).contiguous().reshape({-1}));
    sendCounts[r] = blocks.back().numel();
  }
  const at::Tensor send = blocks.empty() ? at::zeros({1}, at::kDouble) : at::cat(blocks);

  // From each rank, the planes of this rank's box it owns, in rank order:
  // the slabs follow each other along axis 0, so the parts stack.
  int64_t across = channels;
  for (int a = 1; a < dim; ++a) across *= box.count(a);
  std::vector<int64_t> planesFrom(ranks, 0);
  int64_t total = 0;
  for (int r = 0; r < ranks; ++r) {
    planesFrom[r] = box.empty(dim) ? 0 : std::max<int64_t>(overlap(box, r).planes(), 0);
    receiveCounts[r] = planesFrom[r] * across;
    total += receiveCounts[r];
  }
  at::Tensor receive = at::empty({std::max<int64_t>(total, 1)}, at::kDouble);
  communicator.exchange(send.data_ptr<double>(), sendCounts, receive.data_ptr<double>(), receiveCounts);

  std::vector<int64_t> shape{channels};
  for (int a = 0; a < dim; ++a) shape.push_back(box.count(a));
  std::vector<at::Tensor> parts;
  int64_t offset = 0;
  for (int r = 0; r < ranks; ++r) {
    if (planesFrom[r] == 0) continue;
    std::vector<int64_t> partShape = shape;
    partShape[1] = planesFrom[r];
    parts.push_back(receive.narrow(0, offset, receiveCounts[r]).view(partShape));
    offset += receiveCounts[r];
  }
  return parts.empty() ? at::zeros(shape, at::kDouble) : at::cat(parts, 1);
}

}  // namespace jko::plugin
