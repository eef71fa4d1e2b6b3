// Fields moved between a grid and a coarser one over the same box: cell
// averages down, linear interpolation between cell centres up. The learned
// operator's network works on a coarse grid (operator/LearnedOperator.h);
// parallel/SlabGridTransfer.h does the same for a field split into slabs of
// planes over ranks.
#pragma once

#include <ATen/ATen.h>

#include "numerics/Grid.h"

namespace jko {

/// Whether a field may take plain loops instead of LibTorch's operations:
/// float64 on the CPU, contiguous, and no gradient to record.
bool loopable(const at::Tensor& field);

/// Cell averages of a batch of fields (B, C..., n...) onto a coarser grid
/// over the same box: adaptive average pooling (output cell I of an axis
/// of n nodes onto m averages the nodes floor(I n / m) .. ceil((I + 1) n /
/// m) - 1), whole blocks when m divides n.
at::Tensor averageOnto(const at::Tensor& field, const Grid& coarse);

/// Linear interpolation of (B, C, n_c...) onto the nodes of `fine`, cell
/// centres to cell centres (align_corners = false), constant beyond the
/// first and last centres. The field itself when it is on `fine` already.
at::Tensor interpolateOnto(const at::Tensor& field, const Grid& fine);

}  // namespace jko
