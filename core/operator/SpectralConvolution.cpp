#include "operator/SpectralConvolution.h"

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

// Pruned transforms: the last axis is transformed first (real to complex)
// and cut to its kept modes before the complex transforms of the other
// axes, which then work on k_{d-1} instead of n_{d-1} / 2 + 1 columns; the
// inverse mirrors it (irfft zero-fills the cut columns itself). Same result
// as full transforms with the other modes zeroed; measured in
// testing/benchmarks (spectral_layer_ms_*).
at::Tensor spectralConvolution(const at::Tensor& x, const at::Tensor& weight) {
  const int d = static_cast<int>(x.dim()) - 2;
  std::vector<int64_t> kept(d);
  for (int a = 0; a < d; ++a) kept[a] = a + 1 < d ? weight.size(a) / 2 : weight.size(a);

  at::Tensor spectrum = at::fft_rfft(x, c10::nullopt, d).narrow(d, 0, kept[d - 1]);
  for (int a = d - 2; a >= 0; --a) spectrum = lowAndHigh(at::fft_fft(spectrum, c10::nullopt, 1 + a), 1 + a, kept[a]);

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
  at::Tensor out = mixed.transpose(0, 1).reshape(mixedShape);

  for (int a = 0; a + 1 < d; ++a) out = at::fft_ifft(scatterLowAndHigh(out, 1 + a, x.size(1 + a)), c10::nullopt, 1 + a);
  return at::fft_irfft(out, x.size(d), d);
}

at::Tensor spectralConvolution(const at::Tensor& x, const std::vector<at::Tensor>& blocks, int modes) {
  return spectralConvolution(x, arrangeSpectralWeights(blocks, keptModes(x.sizes().slice(1, x.dim() - 2), modes)));
}

}  // namespace jko
