#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "operator/VelocityNetwork.h"

namespace jko {
namespace {

class UNet : public VelocityNetwork {
 public:
  UNet(const NetworkConfig& config, int dim, int inputChannels, int outputChannels, uint64_t seed)
      : VelocityNetwork(dim, inputChannels, outputChannels) {
    at::Generator generator = at::detail::createCPUGenerator(seed);
    auto conv = [&](const std::string& name, int64_t out, int64_t in) {
      std::vector<int64_t> shape{out, in};
      for (int a = 0; a < dim; ++a) shape.push_back(3);
      const double bound = 1 / std::sqrt(double(in) * std::pow(3.0, dim));
      const size_t index = parameters_.size();
      addParameter(name + ".weight", (at::rand(shape, generator, at::kFloat) * 2 - 1) * bound);
      addParameter(name + ".bias", (at::rand({out}, generator, at::kFloat) * 2 - 1) * bound);
      return index;
    };
    const int c = config.unetBase;
    encoder1_ = {conv("enc1.a", c, inputChannels), conv("enc1.b", c, c)};
    encoder2_ = {conv("enc2.a", 2 * c, c), conv("enc2.b", 2 * c, 2 * c)};
    bottleneck_ = {conv("mid.a", 4 * c, 2 * c), conv("mid.b", 4 * c, 4 * c)};
    decoder2_ = {conv("dec2.a", 2 * c, 6 * c), conv("dec2.b", 2 * c, 2 * c)};
    decoder1_ = {conv("dec1.a", c, 3 * c), conv("dec1.b", c, c)};
    out_ = parameters_.size();
    addParameter("out.weight",
                 (at::rand({outputChannels, c}, generator, at::kFloat) * 2 - 1) * 0.01 / std::sqrt(double(c)));
    addParameter("out.bias", at::zeros({outputChannels}));
  }

  at::Tensor forward(const at::Tensor& input) const override {
    const int d = dim_;
    // Two poolings: pad every axis to a multiple of 4.
    std::vector<int64_t> pad;
    for (int a = d - 1; a >= 0; --a) pad.insert(pad.end(), {0, (4 - input.size(2 + a) % 4) % 4});
    const at::Tensor x = at::constant_pad_nd(input, pad, 0);
    const at::Tensor e1 = block(x, encoder1_);
    const at::Tensor e2 = block(pool(e1), encoder2_);
    const at::Tensor m = block(pool(e2), bottleneck_);
    const at::Tensor d2 = block(at::cat({upsample(m), e2}, 1), decoder2_);
    at::Tensor y = pointwise(block(at::cat({upsample(d2), e1}, 1), decoder1_), out_);
    for (int a = 0; a < d; ++a) y = y.narrow(2 + a, 0, input.size(2 + a));
    return y;
  }

 private:
  at::Tensor block(const at::Tensor& x, const std::pair<size_t, size_t>& convs) const {
    return at::gelu(convolution3(at::gelu(convolution3(x, convs.first)), convs.second));
  }
  at::Tensor pool(const at::Tensor& x) const { return dim_ == 2 ? at::avg_pool2d(x, 2) : at::avg_pool3d(x, 2); }
  at::Tensor upsample(const at::Tensor& x) const {
    at::Tensor y = x;
    for (int a = 0; a < dim_; ++a) y = y.repeat_interleave(2, 2 + a);
    return y;
  }

  std::pair<size_t, size_t> encoder1_, encoder2_, bottleneck_, decoder2_, decoder1_;
  size_t out_ = 0;
};

}  // namespace

std::shared_ptr<VelocityNetwork> makeUNet(const NetworkConfig& config, int dim, int inputChannels, int outputChannels,
                                          uint64_t seed) {
  return std::make_shared<UNet>(config, dim, inputChannels, outputChannels, seed);
}

}  // namespace jko
