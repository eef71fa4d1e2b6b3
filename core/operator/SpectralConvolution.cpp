#include "operator/SpectralConvolution.h"

#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

namespace jko {
namespace {

// The kept frequencies of axis `dim` side by side: [0, k) then [n - k, n).
at::Tensor lowAndHigh(const at::Tensor& x, int64_t dim, int64_t k) {
  const int64_t n = x.size(dim);
  if (2 * k == n) return x;
  return at::cat({x.narrow(dim, 0, k), x.narrow(dim, n - k, k)}, dim);
}

// The inverse of lowAndHigh: back to n frequencies, zeros in between.
at::Tensor scatterLowAndHigh(const at::Tensor& x, int64_t dim, int64_t n) {
  const int64_t k = x.size(dim) / 2;
  if (2 * k == n) return x;
  std::vector<int64_t> gap(x.sizes().begin(), x.sizes().end());
  gap[dim] = n - 2 * k;
  return at::cat({x.narrow(dim, 0, k), at::zeros(gap, x.options()), x.narrow(dim, k, k)}, dim);
}

}  // namespace

std::vector<int64_t> keptModes(at::IntArrayRef sizes, int modes) {
  const int d = static_cast<int>(sizes.size());
  std::vector<int64_t> kept(d);
  for (int a = 0; a < d; ++a) kept[a] = std::min<int64_t>(modes, a + 1 == d ? sizes[a] / 2 + 1 : sizes[a] / 2);
  return kept;
}

at::Tensor arrangeSpectralWeights(const std::vector<at::Tensor>& blocks, const std::vector<int64_t>& kept) {
  const int d = static_cast<int>(kept.size());
  std::vector<at::Tensor> parts;
  for (const at::Tensor& block : blocks) {
    at::Tensor w = at::view_as_complex(block);  // (C_in, C_out, m...)
    for (int a = 0; a < d; ++a) w = w.narrow(2 + a, 0, kept[a]);
    parts.push_back(w);
  }
  // Join the sign patterns axis by axis: bit a of the block index is axis a.
  for (int a = 0; a + 1 < d; ++a) {
    std::vector<at::Tensor> joined;
    for (size_t j = 0; j < parts.size(); j += 2) joined.push_back(at::cat({parts[j], parts[j + 1]}, 2 + a));
    parts = joined;
  }
  std::vector<int64_t> order;
  for (int a = 0; a < d; ++a) order.push_back(2 + a);
  order.insert(order.end(), {0, 1});
  return parts[0].permute(order).contiguous();
}

namespace {

// Pruned transforms: the last axis is transformed first (real to complex)
// and cut to its kept modes before the complex transforms of the other
// axes, which then work on k_{d-1} instead of n_{d-1} / 2 + 1 columns; the
// inverse mirrors it (irfft zero-fills the cut columns itself). Same result
// as full transforms with the other modes zeroed.
at::Tensor keptSpectrum(const at::Tensor& x, const std::vector<int64_t>& kept) {
  const int d = static_cast<int>(kept.size());
  at::Tensor spectrum = at::fft_rfft(x, c10::nullopt, d).narrow(d, 0, kept[d - 1]);
  for (int a = d - 2; a >= 0; --a) spectrum = lowAndHigh(at::fft_fft(spectrum, c10::nullopt, 1 + a), 1 + a, kept[a]);
  return spectrum;
}

at::Tensor fromKeptSpectrum(const at::Tensor& spectrum, at::IntArrayRef sizes) {
  const int d = static_cast<int>(sizes.size());
  at::Tensor out = spectrum;
  for (int a = 0; a + 1 < d; ++a) out = at::fft_ifft(scatterLowAndHigh(out, 1 + a, sizes[a]), c10::nullopt, 1 + a);
  return at::fft_irfft(out, sizes[d - 1], d);
}

// LibTorch runs each FFT on one thread. When there are fewer samples than
// threads (a rollout of one density), the channels are split into one group
// per thread and each group is transformed on its own thread (inference
// only: worker threads do not record gradients).
template <typename Transform>
at::Tensor byChannelGroups(const at::Tensor& x, const Transform& transform) {
  const int64_t threads = at::get_num_threads(), channels = x.size(-1);
  const int64_t groups = std::min(threads, channels);
  if (at::GradMode::is_enabled() || !x.is_cpu() || groups < 2 || x.size(0) >= threads || at::in_parallel_region())
    return transform(x);
  std::vector<at::Tensor> parts(groups);
  at::parallel_for(0, groups, 1, [&](int64_t g0, int64_t g1) {
    at::NoGradGuard noGrad;
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t begin = g * channels / groups, end = (g + 1) * channels / groups;
      parts[g] = transform(x.narrow(-1, begin, end - begin));
    }
  });
  return at::cat(parts, -1);
}

}  // namespace

at::Tensor spectralConvolution(const at::Tensor& x, const at::Tensor& weight) {
  const int d = static_cast<int>(x.dim()) - 2;
  std::vector<int64_t> kept(d);
  for (int a = 0; a < d; ++a) kept[a] = a + 1 < d ? weight.size(a) / 2 : weight.size(a);
  const at::IntArrayRef sizes = x.sizes().slice(1, d);
  const at::Tensor spectrum = byChannelGroups(x, [&](const at::Tensor& part) { return keptSpectrum(part, kept); });

  // Channel mixing per mode: (modes, B, C_in) x (modes, C_in, C_out).
  const int64_t batch = x.size(0), inChannels = x.size(-1), outChannels = weight.size(-1);
  std::vector<int64_t> modeShape(spectrum.sizes().begin() + 1, spectrum.sizes().end() - 1);
  int64_t count = 1;
  for (int64_t k : modeShape) count *= k;
  const at::Tensor mixed = at::bmm(spectrum.reshape({batch, count, inChannels}).transpose(0, 1),
                                   weight.reshape({count, inChannels, outChannels}));
  std::vector<int64_t> mixedShape{batch};
  mixedShape.insert(mixedShape.end(), modeShape.begin(), modeShape.end());
  mixedShape.push_back(outChannels);
  const at::Tensor out = mixed.transpose(0, 1).reshape(mixedShape);
  return byChannelGroups(out, [&](const at::Tensor& part) { return fromKeptSpectrum(part, sizes); });
}

at::Tensor spectralConvolution(const at::Tensor& x, const std::vector<at::Tensor>& blocks, int modes) {
  return spectralConvolution(x, arrangeSpectralWeights(blocks, keptModes(x.sizes().slice(1, x.dim() - 2), modes)));
}

}  // namespace jko
