#include "operator/FusedFourierForward.h"

#include <cblas.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <tuple>
#include <utility>

#include "operator/SpectralConvolution.h"
#include "runtime/Runtime.h"
#include "runtime/TaskTeam.h"

namespace jko {
namespace {

// C (M x N) = A (M x K) B (K x N) + beta C, row-major.
void matmul(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
            float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(M), static_cast<int>(N), static_cast<int>(K),
              1.0f, A, static_cast<int>(lda), B, static_cast<int>(ldb), beta, C, static_cast<int>(ldc));
}

std::vector<float> values(const at::Tensor& t) {
  const at::Tensor c = t.detach().to(at::kCPU, at::kFloat).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

// Every row of the (rows x columns) matrix M set to bias[row].
void fillRows(float* M, const std::vector<float>& bias, int64_t columns) {
  for (size_t r = 0; r < bias.size(); ++r) std::fill(M + r * columns, M + (r + 1) * columns, bias[r]);
}

// GELU(x) = x / 2 (1 + erf(x / sqrt 2)), the exact form LibTorch's gelu
// computes, with erf by Abramowitz and Stegun 7.1.26 (absolute error below
// 1.5e-7, the formula of LibTorch's own vectorised erf) and exp(-z^2) by
// range reduction to [-ln2/2, ln2/2] and a degree-6 Taylor polynomial
// (relative error ~2e-7). Plain arithmetic, so that it vectorises.
__attribute__((target_clones("avx512f", "avx2", "default"))) void geluInPlace(float* __restrict__ x, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    const float v = x[i];
    const float z = std::fabs(v) * 0.70710678118654752f;
    const float t = 1.0f / (1.0f + 0.3275911f * z);
    const float poly =
        t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
    // exp(-z^2), z^2 clamped where the result is below float's smallest normal
    // anyway; this argument order also maps NaN to -87 (a NaN cast to int is
    // undefined behaviour), while v carries the NaN to the output.
    const float e = std::max(-87.0f, -z * z);
    const float n = (e * 1.44269504f + 12582912.0f) - 12582912.0f;  // round to nearest
    const float r = (e - n * 0.693145751953125f) - n * 1.428606765330187e-6f;
    const float p =
        1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
    const float scale = __builtin_bit_cast(float, (static_cast<int32_t>(n) + 127) << 23);
    const float erfAbs = 1.0f - poly * (p * scale);
    x[i] = 0.5f * v * (1.0f + std::copysign(erfAbs, v));
  }
}

// Angle 2 pi (f x mod n) / n, exact in the integers before the division.
double angle(int64_t f, int64_t x, int64_t n) { return 2 * M_PI * static_cast<double>((f * x) % n) / n; }

// Channel mixing of one layer, mode by mode (Li et al. 2021, R(k) in the
// Fourier layer): u(k) = sum_i y_i(k) W_i.(k), complex, with re and im parts in
// separate blocks and the output channel contiguous. Compiled for several
// instruction sets; the CPU picks at load time.
__attribute__((target_clones("avx512f", "avx2", "default"))) void mixModes(
    int64_t modes, int64_t width, const float* __restrict__ yRe, const float* __restrict__ yIm,
    const float* __restrict__ wRe, const float* __restrict__ wIm, float* __restrict__ uRe, float* __restrict__ uIm) {
  for (int64_t q = 0; q < modes; ++q) {
    float* ur = uRe + q * width;
    float* ui = uIm + q * width;
    std::fill(ur, ur + width, 0.0f);
    std::fill(ui, ui + width, 0.0f);
    for (int64_t i = 0; i < width; ++i) {
      const float a = yRe[q * width + i], b = yIm[q * width + i];
      const float* wr = wRe + (q * width + i) * width;
      const float* wi = wIm + (q * width + i) * width;
      for (int64_t o = 0; o < width; ++o) {
        ur[o] += a * wr[o] - b * wi[o];
        ui[o] += a * wi[o] + b * wr[o];
      }
    }
  }
}

// The complex DFT along an axis of N nodes keeping K frequencies (low and
// high: f_j = j for j < K / 2, N - K + j above), on (re; im) stacked:
// forward (2K x 2N) = [[C, S], [-S, C]], C = cos(2 pi f_j y / N), S = sin;
// inverse (2N x 2K) = [[C^T, -S^T], [S^T, C^T]] / N.
void complexDft(int64_t N, int64_t K, std::vector<float>& forward, std::vector<float>& inverse) {
  forward.assign(2 * K * 2 * N, 0.0f);
  inverse.assign(2 * N * 2 * K, 0.0f);
  for (int64_t j = 0; j < K; ++j)
    for (int64_t y = 0; y < N; ++y) {
      const double t = angle(j < K / 2 ? j : N - K + j, y, N);
      const float c = static_cast<float>(std::cos(t)), s = static_cast<float>(std::sin(t));
      forward[j * 2 * N + y] = c;
      forward[j * 2 * N + N + y] = s;
      forward[(K + j) * 2 * N + y] = -s;
      forward[(K + j) * 2 * N + N + y] = c;
      inverse[y * 2 * K + j] = c / N;
      inverse[y * 2 * K + K + j] = -s / N;
      inverse[(N + y) * 2 * K + j] = s / N;
      inverse[(N + y) * 2 * K + K + j] = c / N;
    }
}

// Part i of n of [0, total): [total i / n, total (i + 1) / n).
std::pair<int64_t, int64_t> share(int64_t total, int part, int parts) {
  return {total * part / parts, total * (part + 1) / parts};
}

}  // namespace

// Buffers of one forward pass (about 2 MB at 72^2 with 16 channels, 3 MB
// at 36^3 with 8). A slab of the padded grid's first axis (S = z1 - z0
// nodes) stays with its thread from layer to layer.
struct FusedFourierForward::Block {
  int64_t z0 = 0, z1 = 0;    // slab of the padded first axis
  std::vector<float> input;  // (C_in, S, N1, N2), zero outside the unpadded corner
  std::vector<float> a, b;   // activations (W, S, N1, N2)
  std::vector<float> lines;  // 2D: (W, S, 2 k2), the last axis' spectrum of every line, re | im
  // 3D: the last axis' spectrum across the middle axis, (re/im, N1) x (W, S,
  // k2), and its kept modes, (2 K1) x (W, S, k2).
  std::vector<float> middle, middleSpectrum;
  std::vector<float> columns;  // (2, S, K1 k2 W): re rows then im rows, columns (k1, k2, c)
  // (2 K0, K1 k2 W): this slab's share of the kept spectrum, two buffers by
  // layer parity (other threads read layer l's while this one writes layer
  // l + 1's in the same phase).
  std::array<std::vector<float>, 2> partial;
  std::vector<float> spectrum, mixed;  // the whole kept spectrum, before and after channel mixing
  std::vector<float> cropped, hidden;  // (W, p), (H, p): projection of the p unpadded nodes of the slab
};

struct FusedFourierForward::Workspace {
  std::vector<Block> blocks;
};

FusedFourierForward::FusedFourierForward(const FourierWeights& weights, int modes, double padFraction,
                                         at::IntArrayRef n)
    : dim_(static_cast<int>(n.size())) {
  TORCH_CHECK(dim_ == 2 || dim_ == 3, "FusedFourierForward: 2D or 3D grids only");
  n_ = {n[0], dim_ == 3 ? n[1] : 1, n[dim_ - 1]};
  for (int a = 0; a < 3; ++a)
    N_[a] = a == 1 && dim_ == 2 ? 1 : n_[a] + static_cast<int64_t>(std::ceil(padFraction * n_[a]));
  // As keptModes: the axes before the last keep [0, k) and [N - k, N); the last axis [0, k2).
  const int64_t k0 = std::min<int64_t>(modes, N_[0] / 2), k1 = std::min<int64_t>(modes, N_[1] / 2);
  K0_ = 2 * k0;
  K1_ = dim_ == 3 ? 2 * k1 : 1;
  k2_ = std::min<int64_t>(modes, N_[2] / 2 + 1);
  width_ = weights.liftWeight.size(0);
  inputChannels_ = weights.liftWeight.size(1);
  hidden_ = weights.hiddenWeight.size(0);
  outputChannels_ = weights.outWeight.size(0);
  liftWeight_ = values(weights.liftWeight);
  liftBias_ = values(weights.liftBias);
  hiddenWeight_ = values(weights.hiddenWeight);
  hiddenBias_ = values(weights.hiddenBias);
  outWeight_ = values(weights.outWeight);
  outBias_ = values(weights.outBias);
  const std::vector<int64_t> kept = dim_ == 3 ? std::vector<int64_t>{k0, k1, k2_} : std::vector<int64_t>{k0, k2_};
  for (size_t l = 0; l < weights.spectral.size(); ++l) {
    Layer layer;
    layer.pointwiseWeight = values(weights.pointwiseWeight[l]);
    layer.pointwiseBias = values(weights.pointwiseBias[l]);
    const at::Tensor mix = arrangeSpectralWeights(weights.spectral[l], kept).detach().cpu();
    layer.mixReal = values(at::real(mix));
    layer.mixImag = values(at::imag(mix));
    layers_.push_back(std::move(layer));
  }

  complexDft(N_[0], K0_, forwardFirst_, inverseFirst_);
  if (dim_ == 3) complexDft(N_[1], K1_, forwardMiddle_, inverseMiddle_);
  // rfft along the last axis, kept modes: lines(x) . forwardLast,
  // forwardLast[x][j] = cos, [x][k2 + j] = -sin.
  const int64_t N2 = N_[2], k2 = k2_;
  forwardLast_.assign(N2 * 2 * k2, 0.0f);
  for (int64_t x = 0; x < N2; ++x)
    for (int64_t j = 0; j < k2; ++j) {
      forwardLast_[x * 2 * k2 + j] = static_cast<float>(std::cos(angle(j, x, N2)));
      forwardLast_[x * 2 * k2 + k2 + j] = static_cast<float>(-std::sin(angle(j, x, N2)));
    }
  // irfft along the last axis: x(t) = (1/N2) sum_j c_j (re_j cos - im_j sin),
  // c_j = 2 but 1 for the mean and the Nyquist mode (whose imaginary parts
  // irfft ignores; their sines vanish on the nodes).
  inverseLast_.assign(2 * k2 * N2, 0.0f);
  for (int64_t j = 0; j < k2; ++j) {
    const double weight = (j == 0 || 2 * j == N2 ? 1.0 : 2.0) / N2;
    for (int64_t x = 0; x < N2; ++x) {
      inverseLast_[j * N2 + x] = static_cast<float>(weight * std::cos(angle(j, x, N2)));
      inverseLast_[(k2 + j) * N2 + x] = static_cast<float>(-weight * std::sin(angle(j, x, N2)));
    }
  }
}

FusedFourierForward::~FusedFourierForward() = default;

bool FusedFourierForward::fits(at::IntArrayRef n) const {
  if (static_cast<int>(n.size()) != dim_) return false;
  return n[0] == n_[0] && n.back() == n_[2] && (dim_ == 2 || n[1] == n_[1]);
}

std::unique_ptr<FusedFourierForward::Workspace> FusedFourierForward::takeWorkspace(int parts) const {
  {
    std::lock_guard<std::mutex> lock(workspaceMutex_);
    for (auto it = workspaces_.begin(); it != workspaces_.end(); ++it)
      if (static_cast<int>((*it)->blocks.size()) == parts) {
        std::unique_ptr<Workspace> w = std::move(*it);
        workspaces_.erase(it);
        return w;
      }
  }
  auto w = std::make_unique<Workspace>();
  const int64_t W = width_, plane = N_[1] * N_[2], line = K1_ * k2_ * W;
  for (int part = 0; part < parts; ++part) {
    Block block;
    std::tie(block.z0, block.z1) = share(N_[0], part, parts);
    const int64_t S = block.z1 - block.z0, spectrum = 2 * K0_ * line;
    block.input.assign(inputChannels_ * S * plane, 0.0f);
    block.a.assign(W * S * plane, 0.0f);
    block.b.assign(W * S * plane, 0.0f);
    if (dim_ == 2) block.lines.assign(W * S * 2 * k2_, 0.0f);
    if (dim_ == 3) {
      block.middle.assign(2 * N_[1] * W * S * k2_, 0.0f);
      block.middleSpectrum.assign(2 * K1_ * W * S * k2_, 0.0f);
    }
    block.columns.assign(2 * S * line, 0.0f);
    block.partial[0].assign(spectrum, 0.0f);
    block.partial[1].assign(spectrum, 0.0f);
    block.spectrum.assign(spectrum, 0.0f);
    block.mixed.assign(spectrum, 0.0f);
    const int64_t unpadded = std::max<int64_t>(0, std::min(block.z1, n_[0]) - block.z0) * n_[1] * n_[2];
    block.cropped.assign(W * unpadded, 0.0f);
    block.hidden.assign(hidden_ * unpadded, 0.0f);
    w->blocks.push_back(std::move(block));
  }
  return w;
}

void FusedFourierForward::returnWorkspace(std::unique_ptr<Workspace> workspace) const {
  std::lock_guard<std::mutex> lock(workspaceMutex_);
  workspaces_.push_back(std::move(workspace));
}

// Each layer computes b = pointwise(a) + irfftn(R . rfftn(a)) on the kept
// modes, then a = GELU(b): blockForward on each slab up to its partial
// spectrum, then blockInverse on each slab from the summed spectrum.

void FusedFourierForward::lift(const float* features, Block& block) const {
  const int64_t S = block.z1 - block.z0, points = S * N_[1] * N_[2];
  // Zero padding at the high end of each axis (the rest of input stays 0).
  for (int64_t c = 0; c < inputChannels_; ++c)
    for (int64_t z = block.z0; z < std::min(block.z1, n_[0]); ++z)
      for (int64_t y = 0; y < n_[1]; ++y)
        std::copy_n(features + ((c * n_[0] + z) * n_[1] + y) * n_[2], n_[2],
                    &block.input[((c * S + z - block.z0) * N_[1] + y) * N_[2]]);
  fillRows(block.a.data(), liftBias_, points);
  matmul(width_, points, inputChannels_, liftWeight_.data(), inputChannels_, block.input.data(), points, 1.0f,
         block.a.data(), points);
}

// 3D, along the last and the middle axis: the last axis' spectrum of every
// line straight into the layout of the middle axis' transform, (re/im, y) x
// (c, z, k2) (one product per y: the lines (c, z) at that y are rows N1 N2
// apart), then its kept modes, scattered to the columns (re/im, z, (k1, k2, c)).
void FusedFourierForward::middleForward(Block& block) const {
  const int64_t W = width_, S = block.z1 - block.z0, N1 = N_[1], N2 = N_[2], K1 = K1_, k2 = k2_, cols = W * S * k2,
                ld = K1 * k2 * W;
  for (int64_t y = 0; y < N1; ++y)
    for (int64_t part = 0; part < 2; ++part)
      matmul(W * S, k2, N2, block.a.data() + y * N2, N1 * N2, forwardLast_.data() + part * k2, 2 * k2, 0.0f,
             block.middle.data() + (part * N1 + y) * cols, k2);
  matmul(2 * K1, cols, 2 * N1, forwardMiddle_.data(), 2 * N1, block.middle.data(), cols, 0.0f,
         block.middleSpectrum.data(), cols);
  for (int64_t part = 0; part < 2; ++part)
    for (int64_t q = 0; q < K1; ++q)
      for (int64_t c = 0; c < W; ++c)
        for (int64_t z = 0; z < S; ++z) {
          const float* from = &block.middleSpectrum[(part * K1 + q) * cols + (c * S + z) * k2];
          float* to = &block.columns[(part * S + z) * ld + q * k2 * W + c];
          for (int64_t kx = 0; kx < k2; ++kx) to[kx * W] = from[kx];
        }
}

// The inverse of middleForward, added to b.
void FusedFourierForward::middleInverse(Block& block) const {
  const int64_t W = width_, S = block.z1 - block.z0, N1 = N_[1], N2 = N_[2], K1 = K1_, k2 = k2_, cols = W * S * k2,
                ld = K1 * k2 * W;
  for (int64_t part = 0; part < 2; ++part)
    for (int64_t q = 0; q < K1; ++q)
      for (int64_t c = 0; c < W; ++c)
        for (int64_t z = 0; z < S; ++z) {
          const float* from = &block.columns[(part * S + z) * ld + q * k2 * W + c];
          float* to = &block.middleSpectrum[(part * K1 + q) * cols + (c * S + z) * k2];
          for (int64_t kx = 0; kx < k2; ++kx) to[kx] = from[kx * W];
        }
  matmul(2 * N1, cols, 2 * K1, inverseMiddle_.data(), 2 * K1, block.middleSpectrum.data(), cols, 0.0f,
         block.middle.data(), cols);
  for (int64_t y = 0; y < N1; ++y)
    for (int64_t part = 0; part < 2; ++part)
      matmul(W * S, N2, k2, block.middle.data() + (part * N1 + y) * cols, k2, inverseLast_.data() + part * k2 * N2, N2,
             1.0f, block.b.data() + y * N2, N1 * N2);
}

void FusedFourierForward::blockForward(const Layer& layer, Block& block, int parity) const {
  const int64_t W = width_, N0 = N_[0], N2 = N_[2], k2 = k2_, K0 = K0_, ld = K1_ * k2 * W, S = block.z1 - block.z0,
                points = S * N_[1] * N2;
  fillRows(block.b.data(), layer.pointwiseBias, points);
  matmul(W, points, W, layer.pointwiseWeight.data(), W, block.a.data(), points, 1.0f, block.b.data(), points);
  if (dim_ == 3) {
    middleForward(block);
  } else {
    // Along the last axis, every line: (W S lines, N2) . (N2, 2 k2), then to
    // columns: rows (re/im, z), columns (k2, c).
    matmul(W * S, 2 * k2, N2, block.a.data(), N2, forwardLast_.data(), 2 * k2, 0.0f, block.lines.data(), 2 * k2);
    for (int64_t c = 0; c < W; ++c)
      for (int64_t z = 0; z < S; ++z) {
        const float* line = &block.lines[(c * S + z) * 2 * k2];
        float* re = &block.columns[z * ld + c];
        float* im = &block.columns[(S + z) * ld + c];
        for (int64_t kx = 0; kx < k2; ++kx) {
          re[kx * W] = line[kx];
          im[kx * W] = line[k2 + kx];
        }
      }
  }
  // Along the first axis, kept frequencies only, this slab's nodes: the
  // columns of (2 K0, 2 N0) for z0..z1 of the re and of the im halves.
  float* partial = block.partial[parity].data();
  matmul(2 * K0, ld, S, forwardFirst_.data() + block.z0, 2 * N0, block.columns.data(), ld, 0.0f, partial, ld);
  matmul(2 * K0, ld, S, forwardFirst_.data() + N0 + block.z0, 2 * N0, block.columns.data() + S * ld, ld, 1.0f, partial,
         ld);
}

void FusedFourierForward::blockInverse(const Layer& layer, const Workspace& w, Block& block, int parity,
                                       bool gelu) const {
  const int64_t W = width_, N0 = N_[0], N2 = N_[2], k2 = k2_, K0 = K0_, ld = K1_ * k2 * W, modes = K0 * K1_ * k2,
                S = block.z1 - block.z0;
  // The spectrum: the slabs' partial spectra summed in slab order (the
  // same numbers on every thread), then mixed channel by channel per mode.
  std::copy(w.blocks[0].partial[parity].begin(), w.blocks[0].partial[parity].end(), block.spectrum.begin());
  for (size_t t = 1; t < w.blocks.size(); ++t) {
    const float* partial = w.blocks[t].partial[parity].data();
    for (size_t i = 0; i < block.spectrum.size(); ++i) block.spectrum[i] += partial[i];
  }
  mixModes(modes, W, block.spectrum.data(), block.spectrum.data() + modes * W, layer.mixReal.data(),
           layer.mixImag.data(), block.mixed.data(), block.mixed.data() + modes * W);
  // Back along the first axis for this slab only: re rows, then im rows, (S, 2 K0) . (2 K0, K1 k2 W).
  matmul(S, ld, 2 * K0, inverseFirst_.data() + block.z0 * 2 * K0, 2 * K0, block.mixed.data(), ld, 0.0f,
         block.columns.data(), ld);
  matmul(S, ld, 2 * K0, inverseFirst_.data() + (N0 + block.z0) * 2 * K0, 2 * K0, block.mixed.data(), ld, 0.0f,
         block.columns.data() + S * ld, ld);
  const int64_t points = W * S * N_[1] * N2;
  if (dim_ == 3) {
    middleInverse(block);
  } else {
    // To lines (c, z), columns (re | im, k2), then back along the last axis
    // to real values, added to b: (W S lines, 2 k2) . (2 k2, N2).
    for (int64_t c = 0; c < W; ++c)
      for (int64_t z = 0; z < S; ++z) {
        float* line = &block.lines[(c * S + z) * 2 * k2];
        const float* re = &block.columns[z * ld + c];
        const float* im = &block.columns[(S + z) * ld + c];
        for (int64_t kx = 0; kx < k2; ++kx) {
          line[kx] = re[kx * W];
          line[k2 + kx] = im[kx * W];
        }
      }
    matmul(W * S, N2, 2 * k2, block.lines.data(), 2 * k2, inverseLast_.data(), N2, 1.0f, block.b.data(), N2);
  }
  if (gelu) geluInPlace(block.b.data(), points);
  std::swap(block.a, block.b);
}

// out = W_o GELU(W_h a + b_h) + b_o on this slab's nodes of the unpadded grid.
void FusedFourierForward::project(Block& block, float* out) const {
  std::vector<float>& cropped = block.cropped;
  std::vector<float>& hidden = block.hidden;
  const int64_t W = width_, S = block.z1 - block.z0, z1 = std::min(block.z1, n_[0]), plane = n_[1] * n_[2],
                p = n_[0] * plane;
  if (z1 <= block.z0) return;  // padding only
  const int64_t count = (z1 - block.z0) * plane;
  for (int64_t c = 0; c < W; ++c)
    for (int64_t z = block.z0; z < z1; ++z)
      for (int64_t y = 0; y < n_[1]; ++y)
        std::copy_n(&block.a[((c * S + z - block.z0) * N_[1] + y) * N_[2]], n_[2],
                    &cropped[c * count + ((z - block.z0) * n_[1] + y) * n_[2]]);
  fillRows(hidden.data(), hiddenBias_, count);
  matmul(hidden_, count, W, hiddenWeight_.data(), W, cropped.data(), count, 1.0f, hidden.data(), count);
  geluInPlace(hidden.data(), hidden_ * count);
  float* o = out + block.z0 * plane;
  for (int64_t c = 0; c < outputChannels_; ++c) std::fill_n(o + c * p, count, outBias_[c]);
  matmul(outputChannels_, count, hidden_, outWeight_.data(), hidden_, hidden.data(), count, 1.0f, o, p);
}

at::Tensor FusedFourierForward::forward(const at::Tensor& features) const {
  TORCH_CHECK(features.dim() == 2 + dim_ && features.size(0) == 1 && features.size(1) == inputChannels_ &&
                  fits(features.sizes().slice(2)) && features.is_cpu() && features.scalar_type() == at::kFloat,
              "FusedFourierForward: features of the planned shape expected");
  const ScopedIntraOpThreads oneThread(1);  // threads come from the task team, not from BLAS
  const int parts = static_cast<int>(std::min<int64_t>(taskTeamThreads(), N_[0]));
  std::unique_ptr<Workspace> w = takeWorkspace(parts);
  const at::Tensor in = features.contiguous();
  std::vector<int64_t> shape{1, outputChannels_};
  shape.insert(shape.end(), features.sizes().begin() + 2, features.sizes().end());
  at::Tensor out = at::empty(shape, at::TensorOptions().dtype(at::kFloat));
  const size_t L = layers_.size();
  // One phase per layer: a slab's inverse needs every slab's partial spectrum.
  runInParts(parts, [&](int part) {
    lift(in.data_ptr<float>(), w->blocks[part]);
    blockForward(layers_[0], w->blocks[part], 0);
  });
  for (size_t l = 0; l < L; ++l)
    runInParts(parts, [&](int part) {
      Block& block = w->blocks[part];
      blockInverse(layers_[l], *w, block, l % 2, l + 1 < L);  // no GELU after the last layer
      if (l + 1 < L)
        blockForward(layers_[l + 1], block, (l + 1) % 2);
      else
        project(block, out.data_ptr<float>());
    });
  returnWorkspace(std::move(w));
  return out;
}

}  // namespace jko
