// The FNO's spectral convolution against its definition: the full discrete
// Fourier transform, the kept modes multiplied by their weights, every other
// mode zeroed, the inverse transform (computed here mode by mode in float64).
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <vector>

#include "operator/SpectralConvolution.h"

namespace jko {
namespace {

// The definition, with full transforms: x (B, n..., C_in) float64.
at::Tensor byDefinition(const at::Tensor& x, const std::vector<at::Tensor>& blocks, int modes) {
  const int d = static_cast<int>(x.dim()) - 2;
  std::vector<int64_t> dims, sizes;
  for (int a = 0; a < d; ++a) {
    dims.push_back(1 + a);
    sizes.push_back(x.size(1 + a));
  }
  const at::Tensor spectrum = at::fft_rfftn(x, c10::nullopt, at::IntArrayRef(dims));
  std::vector<int64_t> outShape(spectrum.sizes().begin(), spectrum.sizes().end());
  const int64_t inChannels = x.size(-1), outChannels = blocks[0].size(1);
  outShape.back() = outChannels;
  at::Tensor out = at::zeros(outShape, spectrum.options());
  std::vector<int64_t> kept(d);
  for (int a = 0; a < d; ++a)
    kept[a] = std::min<int64_t>(modes, a + 1 == d ? x.size(1 + a) / 2 + 1 : x.size(1 + a) / 2);
  int64_t total = 1;
  for (int a = 0; a < d; ++a) total *= a + 1 < d ? 2 * kept[a] : kept[a];
  // Every kept frequency: its index in the spectrum, its block and its weight index.
  for (int64_t flat = 0; flat < total; ++flat) {
    int64_t rest = flat;
    int block = 0;
    std::vector<at::indexing::TensorIndex> at_spectrum{at::indexing::Slice()}, at_weight;
    std::vector<int64_t> weightIndex;
    for (int a = d - 1; a >= 0; --a) {
      const int64_t span = a + 1 < d ? 2 * kept[a] : kept[a];
      int64_t j = rest % span;
      rest /= span;
      if (j >= kept[a]) {  // a negative frequency of an axis before the last
        j -= kept[a];
        block |= 1 << a;
        weightIndex.insert(weightIndex.begin(), j);
        j = x.size(1 + a) - kept[a] + j;
      } else {
        weightIndex.insert(weightIndex.begin(), j);
      }
      at_spectrum.insert(at_spectrum.begin() + 1, j);
    }
    at::Tensor w = at::view_as_complex(blocks[block].to(at::kDouble).contiguous());
    for (int a = 0; a < d; ++a) w = w.select(2, weightIndex[a]);  // (C_in, C_out)
    at_spectrum.push_back(at::indexing::Slice());
    const at::Tensor coefficient = spectrum.index(at_spectrum);  // (B, C_in)
    out.index_put_(at_spectrum, at::matmul(coefficient, w));
  }
  (void)inChannels;
  return at::fft_irfftn(out, at::IntArrayRef(sizes), at::IntArrayRef(dims));
}

void expectDefinition(std::vector<int64_t> shape, int modes, uint64_t seed) {
  at::manual_seed(seed);
  const int d = static_cast<int>(shape.size()) - 2;
  const int64_t inChannels = shape.back(), outChannels = 3;
  std::vector<at::Tensor> blocks;
  std::vector<int64_t> blockShape{inChannels, outChannels};
  for (int a = 0; a < d; ++a) blockShape.push_back(modes);
  blockShape.push_back(2);
  for (int j = 0; j < (1 << (d - 1)); ++j) blocks.push_back(at::randn(blockShape, at::kFloat));
  const at::Tensor x = at::randn(shape, at::kFloat);
  const at::Tensor expected = byDefinition(x.to(at::kDouble), blocks, modes);
  const at::Tensor actual = spectralConvolution(x, blocks, modes);
  ASSERT_EQ(actual.sizes(), expected.sizes());
  const double error = (actual.to(at::kDouble) - expected).abs().max().item<double>();
  EXPECT_LT(error, 1e-5 * expected.abs().max().item<double>()) << "shape " << x.sizes() << " modes " << modes;
  // Inference with more threads than samples transforms channel groups on
  // separate threads: the same numbers.
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  at::Tensor grouped;
  {
    at::NoGradGuard noGrad;
    grouped = spectralConvolution(x, blocks, modes);
  }
  at::set_num_threads(threads);
  EXPECT_TRUE(at::allclose(grouped, actual, 1e-6, 1e-6 * actual.abs().max().item<double>()))
      << "shape " << x.sizes() << " modes " << modes;
}

TEST(SpectralConvolution, MatchesTheDefinitionIn2D) {
  expectDefinition({2, 12, 10, 4}, 3, 1);
  expectDefinition({1, 9, 7, 2}, 4, 2);  // odd sizes, kept modes = n / 2 before the last axis
  expectDefinition({1, 6, 6, 2}, 3, 3);  // every frequency kept along the first axis (2 k = n)
  expectDefinition({1, 4, 3, 2}, 5, 4);  // fewer nodes than modes
}

TEST(SpectralConvolution, MatchesTheDefinitionIn3D) {
  expectDefinition({2, 8, 6, 5, 3}, 2, 5);
  expectDefinition({1, 5, 7, 6, 2}, 3, 6);
}

// Training differentiates through the pruned transforms: autograd's
// directional derivative against central differences, in float64.
TEST(SpectralConvolution, GradientMatchesFiniteDifferences) {
  at::manual_seed(7);
  const auto options = at::TensorOptions().dtype(at::kDouble);
  const at::Tensor x = at::randn({1, 8, 7, 2}, options).requires_grad_(true);
  std::vector<at::Tensor> blocks{at::randn({2, 2, 3, 3, 2}, options).requires_grad_(true),
                                 at::randn({2, 2, 3, 3, 2}, options).requires_grad_(true)};
  const at::Tensor probe = at::randn({1, 8, 7, 2}, options);
  auto loss = [&](const at::Tensor& input, const std::vector<at::Tensor>& weights) {
    return (spectralConvolution(input, weights, 3) * probe).sum();
  };
  loss(x, blocks).backward();
  const at::Tensor dx = at::randn_like(x), db0 = at::randn_like(blocks[0]), db1 = at::randn_like(blocks[1]);
  const double analytic = (x.grad() * dx).sum().item<double>() + (blocks[0].grad() * db0).sum().item<double>() +
                          (blocks[1].grad() * db1).sum().item<double>();
  at::NoGradGuard noGrad;
  const double h = 1e-6;
  const double numeric = (loss(x + h * dx, {blocks[0] + h * db0, blocks[1] + h * db1}).item<double>() -
                          loss(x - h * dx, {blocks[0] - h * db0, blocks[1] - h * db1}).item<double>()) /
                         (2 * h);
  EXPECT_NEAR(analytic, numeric, 1e-6 * std::abs(numeric));
  EXPECT_GT(std::abs(numeric), 1e-3);
}

}  // namespace
}  // namespace jko
