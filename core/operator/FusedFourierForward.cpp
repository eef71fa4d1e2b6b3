#include "operator/FusedFourierForward.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "operator/SpectralConvolution.h"

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

}  // namespace

// Buffers of one forward pass (about 2 MB at 72^2 with 16 channels).
struct FusedFourierForward::Workspace {
  std::vector<float> input;     // (C_in, N0 N1), zero outside the n0 x n1 corner
  std::vector<float> a, b;      // activations (W, N0 N1)
  std::vector<float> rows;      // (W N0, 2 k1): the x-spectrum of every row, re | im
  std::vector<float> columns;   // (2 N0, k1 W): the same, re rows then im rows
  std::vector<float> spectrum;  // (2 (2 k0), k1 W): the kept 2D spectrum, re rows then im rows
  std::vector<float> mixed;     // the same after channel mixing
  std::vector<float> cropped;   // (W, n0 n1)
  std::vector<float> hidden;    // (H, n0 n1)
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

std::unique_ptr<FusedFourierForward::Workspace> FusedFourierForward::takeWorkspace() const {
  {
    std::lock_guard<std::mutex> lock(workspaceMutex_);
    if (!workspaces_.empty()) {
      std::unique_ptr<Workspace> w = std::move(workspaces_.back());
      workspaces_.pop_back();
      return w;
    }
  }
  auto w = std::make_unique<Workspace>();
  const int64_t P = N0_ * N1_, rows = width_ * N0_ * 2 * k1_;
  w->input.assign(inputChannels_ * P, 0.0f);
  w->a.assign(width_ * P, 0.0f);
  w->b.assign(width_ * P, 0.0f);
  w->rows.assign(rows, 0.0f);
  w->columns.assign(rows, 0.0f);
  w->spectrum.assign(2 * 2 * k0_ * k1_ * width_, 0.0f);
  w->mixed.assign(w->spectrum.size(), 0.0f);
  w->cropped.assign(width_ * n0_ * n1_, 0.0f);
  w->hidden.assign(hidden_ * n0_ * n1_, 0.0f);
  return w;
}

void FusedFourierForward::returnWorkspace(std::unique_ptr<Workspace> workspace) const {
  std::lock_guard<std::mutex> lock(workspaceMutex_);
  workspaces_.push_back(std::move(workspace));
}

// b += irfft2(R . rfft2(a)) on the kept modes, a and b (W, N0 N1).
void FusedFourierForward::spectralConvolution(const Layer& layer, Workspace& w) const {
  const int64_t W = width_, N0 = N0_, N1 = N1_, k1 = k1_, K0 = 2 * k0_, modes = K0 * k1;
  // 1. Along x, every row (c, y): (W N0, N1) . (N1, 2 k1).
  matmul(W * N0, 2 * k1, N1, w.a.data(), N1, forwardX_.data(), 2 * k1, 0.0f, w.rows.data(), 2 * k1);
  // 2. To columns: rows (re/im, y), columns (kx, c).
  for (int64_t c = 0; c < W; ++c)
    for (int64_t y = 0; y < N0; ++y) {
      const float* row = &w.rows[(c * N0 + y) * 2 * k1];
      float* re = &w.columns[y * k1 * W + c];
      float* im = &w.columns[(N0 + y) * k1 * W + c];
      for (int64_t kx = 0; kx < k1; ++kx) {
        re[kx * W] = row[kx];
        im[kx * W] = row[k1 + kx];
      }
    }
  // 3. Along y, kept frequencies only: (2 K0, 2 N0) . (2 N0, k1 W).
  matmul(2 * K0, k1 * W, 2 * N0, forwardY_.data(), 2 * N0, w.columns.data(), k1 * W, 0.0f, w.spectrum.data(), k1 * W);
  // 4. Channel mixing per mode.
  mixModes(modes, W, w.spectrum.data(), w.spectrum.data() + modes * W, layer.mixReal.data(), layer.mixImag.data(),
           w.mixed.data(), w.mixed.data() + modes * W);
  // 5. Back along y: (2 N0, 2 K0) . (2 K0, k1 W).
  matmul(2 * N0, k1 * W, 2 * K0, inverseY_.data(), 2 * K0, w.mixed.data(), k1 * W, 0.0f, w.columns.data(), k1 * W);
  // 6. To rows (c, y), columns (re | im, kx).
  for (int64_t c = 0; c < W; ++c)
    for (int64_t y = 0; y < N0; ++y) {
      float* row = &w.rows[(c * N0 + y) * 2 * k1];
      const float* re = &w.columns[y * k1 * W + c];
      const float* im = &w.columns[(N0 + y) * k1 * W + c];
      for (int64_t kx = 0; kx < k1; ++kx) {
        row[kx] = re[kx * W];
        row[k1 + kx] = im[kx * W];
      }
    }
  // 7. Back along x to real values, added to b: (W N0, 2 k1) . (2 k1, N1).
  matmul(W * N0, N1, 2 * k1, w.rows.data(), 2 * k1, inverseX_.data(), N1, 1.0f, w.b.data(), N1);
}

at::Tensor FusedFourierForward::forward(const at::Tensor& features) const {
  TORCH_CHECK(features.dim() == 4 && features.size(0) == 1 && features.size(1) == inputChannels_ &&
                  fits(features.size(2), features.size(3)) && features.is_cpu() && features.scalar_type() == at::kFloat,
              "FusedFourierForward: features of the planned shape expected");
  std::unique_ptr<Workspace> w = takeWorkspace();
  const at::Tensor in = features.contiguous();
  const float* x = in.data_ptr<float>();
  const int64_t W = width_, P = N0_ * N1_, p = n0_ * n1_;

  // Zero padding at the high end of each axis, then the lift.
  for (int64_t c = 0; c < inputChannels_; ++c)
    for (int64_t y = 0; y < n0_; ++y) std::copy_n(x + (c * n0_ + y) * n1_, n1_, &w->input[(c * N0_ + y) * N1_]);
  fillRows(w->a.data(), liftBias_, P);
  matmul(W, P, inputChannels_, liftWeight_.data(), inputChannels_, w->input.data(), P, 1.0f, w->a.data(), P);

  for (size_t l = 0; l < layers_.size(); ++l) {
    // b = pointwise(a) + spectral(a); a = GELU(b), no GELU after the last layer.
    fillRows(w->b.data(), layers_[l].pointwiseBias, P);
    matmul(W, P, W, layers_[l].pointwiseWeight.data(), W, w->a.data(), P, 1.0f, w->b.data(), P);
    spectralConvolution(layers_[l], *w);
    if (l + 1 < layers_.size()) geluInPlace(w->b.data(), W * P);
    std::swap(w->a, w->b);
  }

  // Crop the padding, then the projection: out = W_o GELU(W_h a + b_h) + b_o.
  for (int64_t c = 0; c < W; ++c)
    for (int64_t y = 0; y < n0_; ++y) std::copy_n(&w->a[(c * N0_ + y) * N1_], n1_, &w->cropped[(c * n0_ + y) * n1_]);
  fillRows(w->hidden.data(), hiddenBias_, p);
  matmul(hidden_, p, W, hiddenWeight_.data(), W, w->cropped.data(), p, 1.0f, w->hidden.data(), p);
  geluInPlace(w->hidden.data(), hidden_ * p);
  at::Tensor out = at::empty({1, outputChannels_, n0_, n1_}, at::TensorOptions().dtype(at::kFloat));
  float* o = out.data_ptr<float>();
  fillRows(o, outBias_, p);
  matmul(outputChannels_, p, hidden_, outWeight_.data(), hidden_, w->hidden.data(), p, 1.0f, o, p);
  returnWorkspace(std::move(w));
  return out;
}

}  // namespace jko
