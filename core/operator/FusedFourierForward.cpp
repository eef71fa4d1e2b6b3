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

// Part i of n of [0, total): [total i / n, total (i + 1) / n).
std::pair<int64_t, int64_t> share(int64_t total, int part, int parts) {
  return {total * part / parts, total * (part + 1) / parts};
}

}  // namespace

// Buffers of one forward pass (about 2 MB at 72^2 with 16 channels). The
// padded grid is cut into one block of rows (y) per thread; a block's
// activations stay with its thread from layer to layer. The transform along
// y is linear in the rows, so each block transforms its own rows into a
// partial spectrum; the only data a thread reads from others is their
// partial spectra (36 KB each at 72^2), summed in block order, so every
// thread mixes the same spectrum.
struct FusedFourierForward::Block {
  int64_t y0 = 0, y1 = 0;      // rows of the padded grid
  std::vector<float> input;    // (C_in, rows N1), zero outside the n0 x n1 corner
  std::vector<float> a, b;     // activations (W, rows N1)
  std::vector<float> rows;     // (W rows, 2 k1): the x-spectrum of every row, re | im
  std::vector<float> columns;  // (2 rows, k1 W): the same, re rows then im rows, columns (kx, c)
  // (2 (2 k0), k1 W): this block's share of the kept 2D spectrum, two
  // buffers by layer parity (other threads read layer l's while this one
  // writes layer l + 1's in the same phase).
  std::array<std::vector<float>, 2> partial;
  std::vector<float> spectrum, mixed;  // the whole kept spectrum, before and after channel mixing
  std::vector<float> cropped, hidden;  // (W, p), (H, p): projection of the p unpadded nodes in these rows
};

struct FusedFourierForward::Workspace {
  std::vector<Block> blocks;
};

FusedFourierForward::FusedFourierForward(const FourierWeights& weights, int modes, double padFraction, int64_t n0,
                                         int64_t n1)
    : n0_(n0), n1_(n1) {
  N0_ = n0 + static_cast<int64_t>(std::ceil(padFraction * n0));
  N1_ = n1 + static_cast<int64_t>(std::ceil(padFraction * n1));
  // As keptModes: axis 0 keeps [0, k0) and [N0 - k0, N0); the last axis [0, k1).
  k0_ = std::min<int64_t>(modes, N0_ / 2);
  k1_ = std::min<int64_t>(modes, N1_ / 2 + 1);
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
  for (size_t l = 0; l < weights.spectral.size(); ++l) {
    Layer layer;
    layer.pointwiseWeight = values(weights.pointwiseWeight[l]);
    layer.pointwiseBias = values(weights.pointwiseBias[l]);
    const at::Tensor mix = arrangeSpectralWeights(weights.spectral[l], {k0_, k1_}).detach().cpu();
    layer.mixReal = values(at::real(mix));
    layer.mixImag = values(at::imag(mix));
    layers_.push_back(std::move(layer));
  }

  const int64_t K0 = 2 * k0_, k1 = k1_, N0 = N0_, N1 = N1_;
  auto frequency0 = [&](int64_t j) { return j < k0_ ? j : N0 - K0 + j; };
  // rfft along x, kept modes: rows(x) . forwardX, forwardX[x][j] = cos, [x][k1 + j] = -sin.
  forwardX_.assign(N1 * 2 * k1, 0.0f);
  for (int64_t x = 0; x < N1; ++x)
    for (int64_t j = 0; j < k1; ++j) {
      forwardX_[x * 2 * k1 + j] = static_cast<float>(std::cos(angle(j, x, N1)));
      forwardX_[x * 2 * k1 + k1 + j] = static_cast<float>(-std::sin(angle(j, x, N1)));
    }
  // fft along y on (re; im) stacked: [[C, S], [-S, C]], C = cos(2 pi f_j y / N0).
  forwardY_.assign(2 * K0 * 2 * N0, 0.0f);
  // ifft along y (1/N0): [[C^T, -S^T], [S^T, C^T]] / N0.
  inverseY_.assign(2 * N0 * 2 * K0, 0.0f);
  for (int64_t j = 0; j < K0; ++j)
    for (int64_t y = 0; y < N0; ++y) {
      const double t = angle(frequency0(j), y, N0);
      const float c = static_cast<float>(std::cos(t)), s = static_cast<float>(std::sin(t));
      forwardY_[j * 2 * N0 + y] = c;
      forwardY_[j * 2 * N0 + N0 + y] = s;
      forwardY_[(K0 + j) * 2 * N0 + y] = -s;
      forwardY_[(K0 + j) * 2 * N0 + N0 + y] = c;
      inverseY_[y * 2 * K0 + j] = c / N0;
      inverseY_[y * 2 * K0 + K0 + j] = -s / N0;
      inverseY_[(N0 + y) * 2 * K0 + j] = s / N0;
      inverseY_[(N0 + y) * 2 * K0 + K0 + j] = c / N0;
    }
  // irfft along x: x(t) = (1/N1) sum_j c_j (re_j cos - im_j sin), c_j = 2 but
  // 1 for the mean and the Nyquist mode (whose imaginary parts irfft ignores;
  // their sines vanish on the nodes).
  inverseX_.assign(2 * k1 * N1, 0.0f);
  for (int64_t j = 0; j < k1; ++j) {
    const double weight = (j == 0 || 2 * j == N1 ? 1.0 : 2.0) / N1;
    for (int64_t x = 0; x < N1; ++x) {
      inverseX_[j * N1 + x] = static_cast<float>(weight * std::cos(angle(j, x, N1)));
      inverseX_[(k1 + j) * N1 + x] = static_cast<float>(-weight * std::sin(angle(j, x, N1)));
    }
  }
}

FusedFourierForward::~FusedFourierForward() = default;

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
  const int64_t W = width_, k1 = k1_;
  for (int part = 0; part < parts; ++part) {
    Block block;
    std::tie(block.y0, block.y1) = share(N0_, part, parts);
    const int64_t rows = block.y1 - block.y0, spectrum = 2 * 2 * k0_ * k1 * W;
    block.input.assign(inputChannels_ * rows * N1_, 0.0f);
    block.a.assign(W * rows * N1_, 0.0f);
    block.b.assign(W * rows * N1_, 0.0f);
    block.rows.assign(W * rows * 2 * k1, 0.0f);
    block.columns.assign(2 * rows * k1 * W, 0.0f);
    block.partial[0].assign(spectrum, 0.0f);
    block.partial[1].assign(spectrum, 0.0f);
    block.spectrum.assign(spectrum, 0.0f);
    block.mixed.assign(spectrum, 0.0f);
    const int64_t unpadded = std::max<int64_t>(0, std::min(block.y1, n0_) - block.y0) * n1_;
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

// Each layer computes b = pointwise(a) + irfft2(R . rfft2(a)) on the kept
// modes, then a = GELU(b): blockForward on each block up to its partial
// spectrum, then blockInverse on each block from the summed spectrum.

void FusedFourierForward::lift(const float* features, Block& block) const {
  const int64_t rows = block.y1 - block.y0, points = rows * N1_;
  // Zero padding at the high end of each axis (the rest of input stays 0).
  for (int64_t c = 0; c < inputChannels_; ++c)
    for (int64_t y = block.y0; y < std::min(block.y1, n0_); ++y)
      std::copy_n(features + (c * n0_ + y) * n1_, n1_, &block.input[(c * rows + y - block.y0) * N1_]);
  fillRows(block.a.data(), liftBias_, points);
  matmul(width_, points, inputChannels_, liftWeight_.data(), inputChannels_, block.input.data(), points, 1.0f,
         block.a.data(), points);
}

void FusedFourierForward::blockForward(const Layer& layer, Block& block, int parity) const {
  const int64_t W = width_, N0 = N0_, N1 = N1_, k1 = k1_, K0 = 2 * k0_, ld = k1 * W, rows = block.y1 - block.y0,
                points = rows * N1;
  fillRows(block.b.data(), layer.pointwiseBias, points);
  matmul(W, points, W, layer.pointwiseWeight.data(), W, block.a.data(), points, 1.0f, block.b.data(), points);
  // Along x, every row (c, y): (W rows, N1) . (N1, 2 k1).
  matmul(W * rows, 2 * k1, N1, block.a.data(), N1, forwardX_.data(), 2 * k1, 0.0f, block.rows.data(), 2 * k1);
  // To columns: rows (re/im, y), columns (kx, c).
  for (int64_t c = 0; c < W; ++c)
    for (int64_t y = 0; y < rows; ++y) {
      const float* row = &block.rows[(c * rows + y) * 2 * k1];
      float* re = &block.columns[y * ld + c];
      float* im = &block.columns[(rows + y) * ld + c];
      for (int64_t kx = 0; kx < k1; ++kx) {
        re[kx * W] = row[kx];
        im[kx * W] = row[k1 + kx];
      }
    }
  // Along y, kept frequencies only, this block's rows: the columns of
  // (2 K0, 2 N0) for y0..y1 of the re and of the im halves.
  float* partial = block.partial[parity].data();
  matmul(2 * K0, ld, rows, forwardY_.data() + block.y0, 2 * N0, block.columns.data(), ld, 0.0f, partial, ld);
  matmul(2 * K0, ld, rows, forwardY_.data() + N0 + block.y0, 2 * N0, block.columns.data() + rows * ld, ld, 1.0f,
         partial, ld);
}

void FusedFourierForward::blockInverse(const Layer& layer, const Workspace& w, Block& block, int parity,
                                       bool gelu) const {
  const int64_t W = width_, N0 = N0_, N1 = N1_, k1 = k1_, K0 = 2 * k0_, modes = K0 * k1, ld = k1 * W,
                rows = block.y1 - block.y0;
  // The spectrum: the blocks' partial spectra summed in block order (the
  // same numbers on every thread), then mixed channel by channel per mode.
  std::copy(w.blocks[0].partial[parity].begin(), w.blocks[0].partial[parity].end(), block.spectrum.begin());
  for (size_t t = 1; t < w.blocks.size(); ++t) {
    const float* partial = w.blocks[t].partial[parity].data();
    for (size_t i = 0; i < block.spectrum.size(); ++i) block.spectrum[i] += partial[i];
  }
  mixModes(modes, W, block.spectrum.data(), block.spectrum.data() + modes * W, layer.mixReal.data(),
           layer.mixImag.data(), block.mixed.data(), block.mixed.data() + modes * W);
  // Back along y for this block's rows only: re rows, then im rows, (rows, 2 K0) . (2 K0, k1 W).
  matmul(rows, ld, 2 * K0, inverseY_.data() + block.y0 * 2 * K0, 2 * K0, block.mixed.data(), ld, 0.0f,
         block.columns.data(), ld);
  matmul(rows, ld, 2 * K0, inverseY_.data() + (N0 + block.y0) * 2 * K0, 2 * K0, block.mixed.data(), ld, 0.0f,
         block.columns.data() + rows * ld, ld);
  // To rows (c, y), columns (re | im, kx).
  for (int64_t c = 0; c < W; ++c)
    for (int64_t y = 0; y < rows; ++y) {
      float* row = &block.rows[(c * rows + y) * 2 * k1];
      const float* re = &block.columns[y * ld + c];
      const float* im = &block.columns[(rows + y) * ld + c];
      for (int64_t kx = 0; kx < k1; ++kx) {
        row[kx] = re[kx * W];
        row[k1 + kx] = im[kx * W];
      }
    }
  // Back along x to real values, added to b: (W rows, 2 k1) . (2 k1, N1).
  matmul(W * rows, N1, 2 * k1, block.rows.data(), 2 * k1, inverseX_.data(), N1, 1.0f, block.b.data(), N1);
  if (gelu) geluInPlace(block.b.data(), W * rows * N1);
  std::swap(block.a, block.b);
}

// out = W_o GELU(W_h a + b_h) + b_o on this block's rows of the unpadded grid.
void FusedFourierForward::project(Block& block, float* out) const {
  std::vector<float>& cropped = block.cropped;
  std::vector<float>& hidden = block.hidden;
  const int64_t W = width_, rows = block.y1 - block.y0, y1 = std::min(block.y1, n0_), p = n0_ * n1_;
  if (y1 <= block.y0) return;  // padding rows only
  const int64_t count = (y1 - block.y0) * n1_;
  for (int64_t c = 0; c < W; ++c)
    for (int64_t y = block.y0; y < y1; ++y)
      std::copy_n(&block.a[(c * rows + y - block.y0) * N1_], n1_, &cropped[c * count + (y - block.y0) * n1_]);
  fillRows(hidden.data(), hiddenBias_, count);
  matmul(hidden_, count, W, hiddenWeight_.data(), W, cropped.data(), count, 1.0f, hidden.data(), count);
  geluInPlace(hidden.data(), hidden_ * count);
  float* o = out + block.y0 * n1_;
  for (int64_t c = 0; c < outputChannels_; ++c) std::fill_n(o + c * p, count, outBias_[c]);
  matmul(outputChannels_, count, hidden_, outWeight_.data(), hidden_, hidden.data(), count, 1.0f, o, p);
}

at::Tensor FusedFourierForward::forward(const at::Tensor& features) const {
  TORCH_CHECK(features.dim() == 4 && features.size(0) == 1 && features.size(1) == inputChannels_ &&
                  fits(features.size(2), features.size(3)) && features.is_cpu() && features.scalar_type() == at::kFloat,
              "FusedFourierForward: features of the planned shape expected");
  const ScopedIntraOpThreads oneThread(1);  // threads come from the task team, not from BLAS
  const int parts = static_cast<int>(std::min<int64_t>(taskTeamThreads(), N0_));
  std::unique_ptr<Workspace> w = takeWorkspace(parts);
  const at::Tensor in = features.contiguous();
  at::Tensor out = at::empty({1, outputChannels_, n0_, n1_}, at::TensorOptions().dtype(at::kFloat));
  const size_t L = layers_.size();
  // One phase per layer: a block's inverse needs every block's partial spectrum.
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
