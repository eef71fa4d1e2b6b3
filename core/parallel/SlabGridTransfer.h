// numerics/GridTransfer's moves between a grid and a coarser one, for a
// fine field split over ranks into slabs of planes (SlabDecomposition):
// cell averages of every rank's planes summed into the whole coarse field
// on every rank, and the interpolation of a whole coarse field onto a
// rank's planes. The learned operator's network runs on its coarse grid
// whole on every rank (its input averaged from the ranks' slabs), and its
// outputs are interpolated onto each rank's planes.
#pragma once

#include <ATen/ATen.h>

#include "numerics/Grid.h"
#include "parallel/SlabDecomposition.h"

namespace jko {

/// averageOnto(field, coarse) of a field of which this rank holds its
/// planes, (B, C..., planes, ...): the whole coarse field (B, C..., m...),
/// float64, on every rank (to rounding: the sums run in another order).
/// Collective: one sum of the coarse field over the ranks.
at::Tensor averageOntoFromSlabs(const at::Tensor& owned, const SlabDecomposition& slabs, const Grid& coarse);

/// interpolateOnto(coarse, slabs.grid()) on this rank's planes: a whole
/// coarse field (B, C, m...) onto (B, C, planes, ...), float64 (to
/// rounding). Local.
at::Tensor interpolateOntoSlab(const at::Tensor& coarse, const SlabDecomposition& slabs);

}  // namespace jko
