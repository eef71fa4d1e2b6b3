#include "operator/SpectralConvolution.h"

namespace jko {
namespace {

int64_t keptModes(int64_t n, int modes, bool last) { return std::min<int64_t>(modes, last ? n / 2 + 1 : n / 2); }

}  // namespace

at::Tensor spectralConvolution(const at::Tensor& x, const std::vector<at::Tensor>& blocks, int modes) {
  const int d = static_cast<int>(x.dim()) - 2;
  std::vector<int64_t> dims, sizes;
  for (int a = 0; a < d; ++a) {
    dims.push_back(1 + a);
    sizes.push_back(x.size(1 + a));
  }
  const at::Tensor xf = at::fft_rfftn(x, c10::nullopt, at::IntArrayRef(dims));
  std::vector<int64_t> kept(d);
  for (int a = 0; a < d; ++a) kept[a] = keptModes(sizes[a], modes, a + 1 == d);
  const int64_t outChannels = blocks[0].size(1);
  std::vector<int64_t> outShape(xf.sizes().begin(), xf.sizes().end());
  outShape.back() = outChannels;
  at::Tensor out = at::zeros(outShape, xf.options());
  const char* equation = d == 2 ? "bxyi,ioxy->bxyo" : "bxyzi,ioxyz->bxyzo";
  for (size_t block = 0; block < blocks.size(); ++block) {
    at::Tensor weight = at::view_as_complex(blocks[block]);
    at::Tensor input = xf, target = out;
    for (int a = 0; a < d; ++a) {
      const bool negative = a + 1 < d && (block >> a) & 1;
      const int64_t start = negative ? xf.size(1 + a) - kept[a] : 0;
      input = input.narrow(1 + a, start, kept[a]);
      target = target.narrow(1 + a, start, kept[a]);
      weight = weight.narrow(2 + a, 0, kept[a]);
    }
    target.copy_(at::einsum(equation, {input, weight}));
  }
  return at::fft_irfftn(out, at::IntArrayRef(sizes), at::IntArrayRef(dims));
}

}  // namespace jko
