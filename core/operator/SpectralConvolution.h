// The spectral convolution of a Fourier neural operator layer (Li et al. 2021),
//   y = irfftn( W(k) . rfftn(x)(k) on the kept modes k, zero elsewhere ).
// Measured here at batch 1 on a 72^2 grid with 16 channels: full FFTs took
// 0.6 ms, truncated DFTs as matrix products 1.0-1.3 ms (they won only at
// batch 16, by a third), so FFTs it is, pruned to the kept modes (0.46 ms).
#pragma once

#include <ATen/ATen.h>

#include <vector>

namespace jko {

/// Modes kept per axis of a grid with `sizes` nodes: min(m, n_a / 2), and
/// min(m, n / 2 + 1) on the last axis (its negative frequencies are implied).
std::vector<int64_t> keptModes(at::IntArrayRef sizes, int modes);

/// blocks: 2^(d-1) real tensors (C_in, C_out, m, ..., m, 2), one per sign
/// pattern of the axes before the last (bit a set: the negative frequencies
/// of axis a). Returns them as one complex tensor (2 k_0, ..., 2 k_{d-2},
/// k_{d-1}, C_in, C_out), the modes of each axis before the last ordered
/// [0, k) then [n - k, n). Differentiable; inference caches it.
at::Tensor arrangeSpectralWeights(const std::vector<at::Tensor>& blocks, const std::vector<int64_t>& kept);

/// x: (B, n_0, ..., n_{d-1}, C_in) float32, channels last; weight from
/// arrangeSpectralWeights for x's grid. Returns (B, n_0, ..., n_{d-1}, C_out).
at::Tensor spectralConvolution(const at::Tensor& x, const at::Tensor& weight);
/// The same from the blocks (arranges them first).
at::Tensor spectralConvolution(const at::Tensor& x, const std::vector<at::Tensor>& blocks, int modes);

}  // namespace jko
