// The Fourier neural operator's forward pass for one 2D or 3D sample on the
// CPU, without autograd: the whole network as a few dozen BLAS matrix
// products and a few passes over its activations, instead of ~300 LibTorch
// operations.
//
// A step of a rollout is one density, and at that size LibTorch's per-operation
// cost (dispatch, allocation, strides, FFT plans) was most of the network's
// 2.3 ms at 64^2. Here the truncated Fourier transforms are products with
// precomputed DFT matrices of the kept modes only (72 -> 12 and 72 -> 24
// frequencies), which is cheaper than full FFTs plus truncation at these
// sizes; channel mixing per mode is a hand loop. Same arithmetic as the
// LibTorch path up to float rounding (tested to 1e-5).
//
// Axes: the first axis of the grid is cut into slabs, one per thread; the
// last axis is transformed first (real to complex), then, in 3D, the middle
// axis (complex, within each slab), then the first axis. That last
// transform is linear in the slab's nodes, so a slab contributes a partial
// spectrum, and the partial spectra (36 KB each at 72^2, 130 KB at 36^3 with
// 8 channels) are all the threads exchange: one phase per layer. A 2D grid
// is the same pass without the middle axis.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace jko {

/// The parameters of a Fourier neural operator, as the network holds them.
struct FourierWeights {
  at::Tensor liftWeight, liftBias;                         ///< (W, C_in), (W)
  std::vector<std::vector<at::Tensor>> spectral;           ///< per layer: 2^(d-1) blocks (W, W, m..., 2)
  std::vector<at::Tensor> pointwiseWeight, pointwiseBias;  ///< per layer: (W, W), (W)
  at::Tensor hiddenWeight, hiddenBias;                     ///< (H, W), (H)
  at::Tensor outWeight, outBias;                           ///< (C_out, H), (C_out)
};

class FusedFourierForward {
 public:
  /// Precomputes the DFT matrices and rearranges the weights for inputs of
  /// `n` nodes (2 or 3 axes), zero-padded by padFraction per axis.
  FusedFourierForward(const FourierWeights& weights, int modes, double padFraction, at::IntArrayRef n);
  ~FusedFourierForward();

  /// Whether the pass was planned for a grid of `n` nodes.
  bool fits(at::IntArrayRef n) const;
  /// features: (1, C_in, n...) float32 on the CPU. Returns (1, C_out, n...).
  /// Safe to call from several threads at once (each takes its own workspace).
  /// Runs on the task team (runtime/TaskTeam.h), one slab of the first axis per thread.
  at::Tensor forward(const at::Tensor& features) const;

 private:
  struct Block;
  struct Workspace;
  struct Layer {
    std::vector<float> pointwiseWeight, pointwiseBias;
    std::vector<float> mixReal, mixImag;  ///< (2 k0, [2 k1,] k2, W_in, W_out)
  };
  void lift(const float* features, Block& block) const;
  void blockForward(const Layer& layer, Block& block, int parity) const;
  void middleForward(Block& block) const;
  void middleInverse(Block& block) const;
  void blockInverse(const Layer& layer, const Workspace& w, Block& block, int parity, bool gelu) const;
  void project(Block& block, float* out) const;
  std::unique_ptr<Workspace> takeWorkspace(int parts) const;
  void returnWorkspace(std::unique_ptr<Workspace> workspace) const;

  // Node counts of the network grid and of the padded grid, with three axes:
  // a 2D grid has a middle axis of one node (and no transform along it).
  int dim_;
  std::array<int64_t, 3> n_, N_;
  // Kept modes: K0 = 2 k0 on the first axis (low and high), K1 = 2 k1 on the
  // middle one (1 in 2D), k2 on the last axis.
  int64_t K0_, K1_, k2_;
  int64_t width_, hidden_, inputChannels_, outputChannels_;
  std::vector<float> liftWeight_, liftBias_, hiddenWeight_, hiddenBias_, outWeight_, outBias_;
  std::vector<Layer> layers_;
  // Real DFT matrices (row-major) of the kept modes; see the .cpp for formulas.
  std::vector<float> forwardLast_, inverseLast_, forwardMiddle_, inverseMiddle_, forwardFirst_, inverseFirst_;
  mutable std::mutex workspaceMutex_;
  mutable std::vector<std::unique_ptr<Workspace>> workspaces_;
};

}  // namespace jko
