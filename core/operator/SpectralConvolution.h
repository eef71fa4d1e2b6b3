// The spectral convolution of a Fourier neural operator layer (Li et al. 2021),
//   y = irfftn( W(k) . rfftn(x)(k) on the kept modes k, zero elsewhere ).
// Measured here at batch 1 on a 72^2 grid with 16 channels: full FFTs took
// 0.6 ms, truncated DFTs as matrix products 1.0-1.3 ms (they won only at
// batch 16, by a third), so FFTs it is.
#pragma once

#include <ATen/ATen.h>

#include <vector>

namespace jko {

/// x: (B, n_0, ..., n_{d-1}, C_in) float32, channels last. blocks: 2^(d-1)
/// real tensors (C_in, C_out, m, ..., m, 2), one per sign pattern of the
/// axes before the last (bit a set: the negative frequencies of axis a).
/// Modes kept per axis: min(m, n_a / 2) (last axis: min(m, n / 2 + 1)).
/// Returns (B, n_0, ..., n_{d-1}, C_out).
at::Tensor spectralConvolution(const at::Tensor& x, const std::vector<at::Tensor>& blocks, int modes);

}  // namespace jko
