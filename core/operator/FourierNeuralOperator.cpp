#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "operator/VelocityNetwork.h"

namespace jko {
namespace {

class FourierNeuralOperator : public VelocityNetwork {
 public:
  FourierNeuralOperator(const NetworkConfig& config, int dim, int inputChannels, int outputChannels, uint64_t seed)
      : VelocityNetwork(dim, inputChannels, outputChannels), config_(config) {
    at::Generator generator = at::detail::createCPUGenerator(seed);
    auto uniform = [&](std::vector<int64_t> shape, double bound) {
      return (at::rand(shape, generator, at::kFloat) * 2 - 1) * bound;
    };
    const int width = config.width, modes = config.modes;
    lift_ = parameters_.size();
    addParameter("lift.weight", uniform({width, inputChannels}, 1 / std::sqrt(double(inputChannels))));
    addParameter("lift.bias", uniform({width}, 1 / std::sqrt(double(inputChannels))));
    const int blocks = 1 << (dim - 1);
    std::vector<int64_t> spectralShape{width, width};
    for (int a = 0; a < dim; ++a) spectralShape.push_back(modes);
    spectralShape.push_back(2);  // real and imaginary parts (optimisers see real tensors)
    for (int l = 0; l < config.layers; ++l) {
      Layer layer;
      layer.spectral = parameters_.size();
      for (int j = 0; j < blocks; ++j)
        addParameter("layer" + std::to_string(l) + ".spectral" + std::to_string(j),
                     at::rand(spectralShape, generator, at::kFloat) / (width * width));
      layer.pointwise = parameters_.size();
      addParameter("layer" + std::to_string(l) + ".pointwise.weight", uniform({width, width}, 1 / std::sqrt(double(width))));
      addParameter("layer" + std::to_string(l) + ".pointwise.bias", uniform({width}, 1 / std::sqrt(double(width))));
      layers_.push_back(layer);
    }
    projectHidden_ = parameters_.size();
    addParameter("project.hidden.weight", uniform({config.hidden, width}, 1 / std::sqrt(double(width))));
    addParameter("project.hidden.bias", uniform({config.hidden}, 1 / std::sqrt(double(width))));
    projectOut_ = parameters_.size();
    // Small output at start: the operator begins as the explicit step.
    addParameter("project.out.weight", uniform({outputChannels, config.hidden}, 0.01 / std::sqrt(double(config.hidden))));
    addParameter("project.out.bias", at::zeros({outputChannels}));
  }

  at::Tensor forward(const at::Tensor& input) const override {
    const int d = dim_;
    // Zero padding by a fixed fraction of each axis (the domain is not periodic).
    std::vector<int64_t> pad;
    for (int a = d - 1; a >= 0; --a) {
      const int64_t n = input.size(2 + a);
      pad.insert(pad.end(), {0, static_cast<int64_t>(std::ceil(config_.padFraction * n))});
    }
    at::Tensor x = pointwise(at::constant_pad_nd(input, pad, 0), lift_);
    for (size_t l = 0; l < layers_.size(); ++l) {
      const at::Tensor y = spectral(x, layers_[l].spectral) + pointwise(x, layers_[l].pointwise);
      x = l + 1 < layers_.size() ? at::gelu(y) : y;
    }
    for (int a = 0; a < d; ++a) x = x.narrow(2 + a, 0, input.size(2 + a));
    return pointwise(at::gelu(pointwise(x, projectHidden_)), projectOut_);
  }

 private:
  struct Layer {
    size_t spectral = 0, pointwise = 0;
  };

  // Multiplies the lowest modes by complex weights: along every axis but the
  // last both the non-negative and the negative frequencies are kept (one
  // weight block per sign pattern), along the last (rfft) axis the first ones.
  at::Tensor spectral(const at::Tensor& x, size_t firstBlock) const {
    const int d = dim_;
    std::vector<int64_t> dims, sizes;
    for (int a = 0; a < d; ++a) {
      dims.push_back(2 + a);
      sizes.push_back(x.size(2 + a));
    }
    const at::Tensor xf = at::fft_rfftn(x, c10::nullopt, at::IntArrayRef(dims));
    std::vector<int64_t> kept(d);
    for (int a = 0; a < d; ++a)
      kept[a] = std::min<int64_t>(config_.modes, a + 1 < d ? sizes[a] / 2 : xf.size(2 + a));
    std::vector<int64_t> outShape{x.size(0), config_.width};
    for (int a = 0; a < d; ++a) outShape.push_back(xf.size(2 + a));
    at::Tensor out = at::zeros(outShape, xf.options());
    const char* equation = d == 2 ? "bixy,ioxy->boxy" : "bixyz,ioxyz->boxyz";
    for (int block = 0; block < (1 << (d - 1)); ++block) {
      at::Tensor weight = at::view_as_complex(parameter(firstBlock + block));
      at::Tensor input = xf, target = out;
      for (int a = 0; a < d; ++a) {
        const bool negative = a + 1 < d && (block >> a) & 1;
        const int64_t start = negative ? xf.size(2 + a) - kept[a] : 0;
        input = input.narrow(2 + a, start, kept[a]);
        target = target.narrow(2 + a, start, kept[a]);
        weight = weight.narrow(2 + a, 0, kept[a]);
      }
      target.copy_(at::einsum(equation, {input, weight}));
    }
    return at::fft_irfftn(out, at::IntArrayRef(sizes), at::IntArrayRef(dims));
  }

  NetworkConfig config_;
  size_t lift_ = 0, projectHidden_ = 0, projectOut_ = 0;
  std::vector<Layer> layers_;
};

}  // namespace

std::shared_ptr<VelocityNetwork> makeFourierNeuralOperator(const NetworkConfig& config, int dim, int inputChannels,
                                                           int outputChannels, uint64_t seed) {
  return std::make_shared<FourierNeuralOperator>(config, dim, inputChannels, outputChannels, seed);
}

}  // namespace jko
