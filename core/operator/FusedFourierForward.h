// The Fourier neural operator's forward pass for one 2D sample on the CPU,
// without autograd: the whole network as ~30 BLAS matrix products and a few
// passes over its activations, instead of ~300 LibTorch operations.
//
// A step of a rollout is one density, and at that size LibTorch's per-operation
// cost (dispatch, allocation, strides, FFT plans) was most of the network's
// 2.3 ms at 64^2. Here the truncated Fourier transforms are products with
// precomputed DFT matrices of the kept modes only (72 -> 12 and 72 -> 24
// frequencies), which is cheaper than full FFTs plus truncation at these
// sizes; channel mixing per mode is a hand loop. Same arithmetic as the
// LibTorch path up to float rounding (tested to 1e-5).
//
// On several threads each takes a block of grid rows through every layer;
// the transform along y is linear in the rows, so a block contributes a
// partial spectrum, and the partial spectra (36 KB each at 72^2) are all the
// threads exchange: one phase per layer.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace jko {

/// The parameters of a 2D Fourier neural operator, as the network holds them.
struct FourierWeights {
  at::Tensor liftWeight, liftBias;                         ///< (W, C_in), (W)
  std::vector<std::vector<at::Tensor>> spectral;           ///< per layer: 2 blocks (W, W, m, m, 2)
  std::vector<at::Tensor> pointwiseWeight, pointwiseBias;  ///< per layer: (W, W), (W)
  at::Tensor hiddenWeight, hiddenBias;                     ///< (H, W), (H)
  at::Tensor outWeight, outBias;                           ///< (C_out, H), (C_out)
};

class FusedFourierForward {
 public:
  /// Precomputes the DFT matrices and rearranges the weights for inputs of
  /// n0 x n1 nodes, zero-padded by padFraction per axis.
  FusedFourierForward(const FourierWeights& weights, int modes, double padFraction, int64_t n0, int64_t n1);
  ~FusedFourierForward();

  bool fits(int64_t n0, int64_t n1) const { return n0 == n0_ && n1 == n1_; }
  /// features: (1, C_in, n0, n1) float32 on the CPU. Returns (1, C_out, n0, n1).
  /// Safe to call from several threads at once (each takes its own workspace).
  /// Runs on the task team (runtime/TaskTeam.h), one block of rows per thread.
  at::Tensor forward(const at::Tensor& features) const;

 private:
  struct Block;
  struct Workspace;
  struct Layer {
    std::vector<float> pointwiseWeight, pointwiseBias;
    std::vector<float> mixReal, mixImag;  ///< (2 k0, k1, W_in, W_out)
  };
  void lift(const float* features, Block& block) const;
  void blockForward(const Layer& layer, Block& block, int parity) const;
  void blockInverse(const Layer& layer, const Workspace& w, Block& block, int parity, bool gelu) const;
  void project(Block& block, float* out) const;
  std::unique_ptr<Workspace> takeWorkspace(int parts) const;
  void returnWorkspace(std::unique_ptr<Workspace> workspace) const;

  int64_t n0_, n1_, N0_, N1_;  // network grid and padded grid
  int64_t k0_, k1_;            // kept modes: 2 k0 on axis 0 (low and high), k1 on axis 1
  int64_t width_, hidden_, inputChannels_, outputChannels_;
  std::vector<float> liftWeight_, liftBias_, hiddenWeight_, hiddenBias_, outWeight_, outBias_;
  std::vector<Layer> layers_;
  // Real DFT matrices (row-major) of the kept modes; see the .cpp for formulas.
  std::vector<float> forwardX_, forwardY_, inverseY_, inverseX_;
  mutable std::mutex workspaceMutex_;
  mutable std::vector<std::unique_ptr<Workspace>> workspaces_;
};

}  // namespace jko
