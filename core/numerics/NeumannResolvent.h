// The resolvent (1 - c Lap)^-1 of the cell-centred Neumann Laplacian on a
// grid (the (2d + 1)-point Laplacian, walls mirrored: u_{-1} = u_0), by its
// eigenvectors: the orthonormal DCT-II along each axis. The learned
// operator's features smooth the internal energy's first variation with it
// (LearnedOperator.h, the resolvent base).
#pragma once

#include <ATen/ATen.h>

#include <array>

#include "numerics/Grid.h"

namespace jko {

/// Orthonormal DCT-II matrix Q (n x n), Q[i][k] = s_k cos(pi (i + 1/2) k / n):
/// the eigenvectors of the cell-centred Neumann Laplacian along one axis.
at::Tensor cosineBasis(int64_t n, const at::TensorOptions& options);

/// The resolvent's gain on the cosine modes of `grid`,
/// 1 / (1 + c sum_a (2 - 2 cos(pi j_a / n_a)) / h_a^2), shape (n...).
at::Tensor resolventGain(const Grid& grid, double c, const at::TensorOptions& options);

/// (1 - c Lap)^-1 f for f (B, n...) (2 or 3 axes), with the bases of the
/// axes (cosineBasis) and the gain (resolventGain). Differentiable.
at::Tensor resolventByCosines(const at::Tensor& f, const std::array<at::Tensor, 3>& bases, const at::Tensor& gain);

}  // namespace jko
