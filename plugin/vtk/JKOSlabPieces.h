// The output piece of a frame: the samples an UPDATE_EXTENT holds, cut
// from a whole frame (one rank, or solvers whose frames every rank holds
// whole) or put together from the slabs the ranks of a split step own
// (core's SlabDecomposition: planes along grid axis 0, image axis x for a 3D
// image), by one all-to-all exchange in which each rank sends every other
// the part of its slab that the other's piece holds. The extent translator's
// pieces of a 3D image are blocks cut along z first, so a piece draws on
// every slab.
//
// Not wrapped: this header may include ATen.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <cstdint>

#include "JKOImageConversion.h"

namespace jko {
class SlabDecomposition;
}

namespace jko::plugin {

/// Samples [lo[a], hi[a]) along grid axis a (a < the grid's dimension).
struct SampleBox {
  std::array<int64_t, 3> lo{0, 0, 0}, hi{1, 1, 1};
  int64_t count(int a) const { return std::max<int64_t>(hi[a] - lo[a], 0); }
  bool empty(int dim) const;
};

/// The samples (points, or cells for cell data) of the point extent `extent`
/// (within `wholeExtent`, the image `mapping` maps) in grid axes. A flat
/// image axis keeps its one sample; an empty extent gives an empty box.
SampleBox samplesOfExtent(const int extent[6], const int wholeExtent[6], const ImageGridMapping& mapping);

/// The mapping of the samples of `box`: their counts and grid.
ImageGridMapping pieceMapping(const ImageGridMapping& whole, const SampleBox& box);

/// The box of `fields` (C, n...) given whole: (C, counts...).
at::Tensor cropToBox(const at::Tensor& fields, const SampleBox& box, int dim);

/// The box of a field of which each rank holds its owned planes
/// (`ownedFields`, (C, owned planes, n...)): (C, counts...) on every rank,
/// each with its own box. Collective: every rank of `slabs` calls it, with
/// the same C.
at::Tensor gatherBox(const at::Tensor& ownedFields, const SlabDecomposition& slabs, const SampleBox& box);

}  // namespace jko::plugin
