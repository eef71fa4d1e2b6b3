// The grid-scale completion of a map-form JKO step (docs/design.md,
// "Grid-scale modes").
//
// The map-form step moves each node's mass with a symmetric kernel. On a
// constant state its linear response to a cosine of phase theta = pi k h per
// node along an axis is the central difference squared, sin^2(theta) / h^2,
// where the implicit Euler step of the internal energy has theta^2 / h^2:
// the response vanishes at the grid's highest frequency, and a pixel
// checkerboard is never flattened. The completion adds the missing part
// after the step: with A_s the scheme's response (central differences
// weighted by D_eff = rho U''(rho)) and M the missing one,
//
//   M = sum_a [ alpha (d_a^2)^T D_eff d_a^2 / 16
//             + beta (d_a^+ d_a^2)^T D_eff d_a^+ d_a^2 / 64 ] / h_a^2,
//
// (d^2 the three-point second difference, d^+ the forward difference; the
// symbol alpha s^2 + beta s^3, s = sin^2(theta / 2), equals theta^2 -
// sin^2(theta) at theta = pi / 2 and pi for alpha = pi^2 - 8, beta = 8), it
// solves
//
//   (I + tau (A_s + M)) rho_{k+1} = (I + tau A_s) rho*
//
// for the step's output rho*: on a constant state the two steps together
// have the symbol 1 / (1 + tau D_eff theta^2 / h^2) exactly at theta = pi /
// 2 and pi per axis, and a smooth field (theta -> 0) is left as it was to
// O(theta^4). Every operator is written as G^T D G with Neumann (zero-flux)
// walls, so the system is symmetric positive definite, conserves mass and
// keeps constants; it is solved by conjugate gradients, preconditioned by
// a multigrid V-cycle of the second-order operator I - tau div(D_eff grad).
#pragma once

#include <ATen/ATen.h>

#include <functional>

#include "numerics/Energy.h"
#include "numerics/Grid.h"
#include "numerics/Multigrid.h"

namespace jko {

class GridScaleCompletion {
 public:
  /// Planes of halo a window needs on each side along the first axis for
  /// the operators to be right on its inner planes.
  static constexpr int64_t kHalo = 3;

  GridScaleCompletion(const EnergySpec& spec, const Grid& grid, double tau);

  /// Whether there is anything to complete: an internal energy with D > 0.
  bool active() const { return active_; }

  /// D_eff = rho U''(rho) (entropy: D; porous medium: D m rho^(m-1)).
  at::Tensor effectiveDiffusivity(const at::Tensor& rho) const;
  /// A_s x and M x on a window (B, n0, n1[, n2]) with walls at every edge.
  at::Tensor schemeResponse(const at::Tensor& x, const at::Tensor& diffusivity) const;
  at::Tensor missingResponse(const at::Tensor& x, const at::Tensor& diffusivity) const;

  /// How the completion sees the grid: the whole of it, or one rank's planes.
  struct Window {
    /// The owned planes (B, planes, ...) with kHalo planes of halo where a
    /// neighbour has them (none at a wall).
    std::function<at::Tensor(const at::Tensor& owned)> withHalo;
    /// The owned planes back from such a window.
    std::function<at::Tensor(const at::Tensor& window)> owned;
    /// A number summed over the ranks.
    std::function<double(double)> sum;
    /// The ranks' planes, for the preconditioner's split multigrid (no
    /// communicator: one process).
    MultigridSlabs slabs;
  };
  /// The identity window: the whole grid on one process.
  static Window wholeGrid();

  struct Outcome {
    at::Tensor next;  ///< rho* + e on the owned planes (before any limiter)
    int iterations = 0;
    double residual = 0;  ///< |r| / |rho*| at the end
    bool converged = false;
  };
  /// Solves the completion for rho* (the owned planes, non-negative,
  /// (B, planes, ...)) by preconditioned conjugate gradients until |r| <=
  /// tolerance |rho*|. Collective over the window's ranks. The
  /// preconditioner is one multigrid V-cycle of I - tau div(D_eff grad)
  /// (numerics/Multigrid; one sample, B = 1), whose symbol 1 + tau D_eff
  /// 4 sin^2(theta/2) / h^2 per axis is within a factor pi^2 / 4 of the
  /// system's; for a batch, Jacobi.
  Outcome complete(const at::Tensor& rho, const Window& window, double tolerance = 1e-10,
                   int maxIterations = 2000) const;

  /// Conjugate-gradient iterations of defect(): on the wild families at 64^2
  /// and 128^2 (one linearised step of Fokker-Planck and the porous medium)
  /// two give 0.96-0.99x the converged completion's change for
  /// Fokker-Planck, 0.92-1.10x for the porous medium, up to 1.54x on its
  /// compact cells (docs/design.md, "How far a frame is from the flow at the
  /// grid scale").
  static constexpr int kDefectIterations = 2;
  /// The grid-scale defect of a frame rho* (owned planes, (1, planes, ...)):
  /// the relative L1 change |rho_{k+1} - rho*|_1 / |rho*|_1 the completion
  /// would make, from kDefectIterations iterations of its solve. 0 when
  /// nothing is to be completed. Collective over the window's ranks.
  double defect(const at::Tensor& rho, const Window& window) const;

 private:
  EnergySpec spec_;
  Grid grid_;
  double tau_;
  bool active_ = false;
};

}  // namespace jko
