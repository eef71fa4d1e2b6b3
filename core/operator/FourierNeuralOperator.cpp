#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <mutex>

#include "operator/FusedFourierForward.h"
#include "operator/SpectralConvolution.h"
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
      addParameter("layer" + std::to_string(l) + ".pointwise.weight",
                   uniform({width, width}, 1 / std::sqrt(double(width))));
      addParameter("layer" + std::to_string(l) + ".pointwise.bias", uniform({width}, 1 / std::sqrt(double(width))));
      layers_.push_back(layer);
    }
    projectHidden_ = parameters_.size();
    addParameter("project.hidden.weight", uniform({config.hidden, width}, 1 / std::sqrt(double(width))));
    addParameter("project.hidden.bias", uniform({config.hidden}, 1 / std::sqrt(double(width))));
    projectOut_ = parameters_.size();
    // Small output at start: the operator begins as the explicit step.
    addParameter("project.out.weight",
                 uniform({outputChannels, config.hidden}, 0.01 / std::sqrt(double(config.hidden))));
    addParameter("project.out.bias", at::zeros({outputChannels}));
  }

  // Activations are kept channels-last, (B, n..., C): the pointwise layers
  // are then one matrix product each (about 4x faster here than 1x1 convolutions).
  at::Tensor forward(const at::Tensor& input) const override {
    // One sample without autograd (a rollout step): the fused CPU pass.
    if (!at::GradMode::is_enabled() && input.dim() == dim_ + 2 && input.size(0) == 1 && input.is_cpu() &&
        input.scalar_type() == at::kFloat && parameter(0).is_cpu())
      return fusedForward(input.sizes().slice(2))->forward(input);
    const int d = dim_;
    std::vector<int64_t> toLast{0}, toFirst{0, d + 1};
    for (int a = 0; a < d; ++a) {
      toLast.push_back(2 + a);
      toFirst.push_back(1 + a);
    }
    toLast.push_back(1);
    // Zero padding by a fixed fraction of each axis (the domain is not periodic).
    std::vector<int64_t> pad{0, 0};
    for (int a = d - 1; a >= 0; --a)
      pad.insert(pad.end(), {0, static_cast<int64_t>(std::ceil(config_.padFraction * input.size(2 + a)))});
    at::Tensor x = dense(at::constant_pad_nd(input.permute(toLast), pad, 0), lift_);
    for (size_t l = 0; l < layers_.size(); ++l) {
      const at::Tensor y = spectral(x, l) + dense(x, layers_[l].pointwise);
      x = l + 1 < layers_.size() ? at::gelu(y) : y;
    }
    for (int a = 0; a < d; ++a) x = x.narrow(1 + a, 0, input.size(2 + a));
    return dense(at::gelu(dense(x, projectHidden_)), projectOut_).permute(toFirst);
  }

 private:
  struct ArrangedWeights {
    at::Tensor weight;
    std::vector<at::Tensor> sources;
    std::vector<int64_t> versions, kept;
  };
  struct Layer {
    size_t spectral = 0, pointwise = 0;
    mutable ArrangedWeights arranged;
  };

  // y = x W^T + b over the last (channel) axis.
  at::Tensor dense(const at::Tensor& x, size_t weightIndex) const {
    const at::Tensor& weight = parameter(weightIndex);
    const at::Tensor& bias = parameter(weightIndex + 1);
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
    shape.back() = weight.size(0);
    return at::addmm(bias, x.reshape({-1, x.size(-1)}), weight.t()).view(shape);
  }

  at::Tensor spectral(const at::Tensor& x, size_t layer) const {
    std::vector<at::Tensor> blocks;
    for (int block = 0; block < (1 << (dim_ - 1)); ++block)
      blocks.push_back(parameter(layers_[layer].spectral + block));
    const std::vector<int64_t> kept = keptModes(x.sizes().slice(1, dim_), config_.modes);
    if (at::GradMode::is_enabled()) return spectralConvolution(x, arrangeSpectralWeights(blocks, kept));
    return spectralConvolution(x, inferenceWeights(layer, blocks, kept));
  }

  // Inference arranges each layer's weights once (a copy of 74K complex
  // numbers per layer and step otherwise). The cache holds the parameter
  // tensors it was made from and their version counters: optimiser steps
  // and loadParameters bump the version, a move to another device replaces
  // the tensor.
  at::Tensor inferenceWeights(size_t layer, const std::vector<at::Tensor>& blocks,
                              const std::vector<int64_t>& kept) const {
    std::lock_guard<std::mutex> lock(cacheMutex_);
    ArrangedWeights& cached = layers_[layer].arranged;
    bool current = cached.weight.defined() && cached.kept == kept && cached.sources.size() == blocks.size();
    for (size_t j = 0; current && j < blocks.size(); ++j)
      current = cached.sources[j].is_same(blocks[j]) && cached.versions[j] == blocks[j]._version();
    if (!current) {
      cached.weight = arrangeSpectralWeights(blocks, kept);
      cached.sources = blocks;
      cached.versions.clear();
      for (const at::Tensor& block : blocks) cached.versions.push_back(block._version());
      cached.kept = kept;
    }
    return cached.weight;
  }

  // The fused pass for a grid of n nodes, rebuilt when the grid or any
  // parameter changes (same identity and version check as the weights above).
  std::shared_ptr<const FusedFourierForward> fusedForward(at::IntArrayRef n) const {
    std::lock_guard<std::mutex> lock(cacheMutex_);
    bool current = fused_ && fused_->fits(n) && fusedSources_.size() == parameters_.size();
    for (size_t j = 0; current && j < parameters_.size(); ++j)
      current =
          fusedSources_[j].is_same(parameters_[j].second) && fusedVersions_[j] == parameters_[j].second._version();
    if (!current) {
      FourierWeights w;
      w.liftWeight = parameter(lift_);
      w.liftBias = parameter(lift_ + 1);
      for (const Layer& layer : layers_) {
        w.spectral.emplace_back();
        for (int block = 0; block < (1 << (dim_ - 1)); ++block)
          w.spectral.back().push_back(parameter(layer.spectral + block));
        w.pointwiseWeight.push_back(parameter(layer.pointwise));
        w.pointwiseBias.push_back(parameter(layer.pointwise + 1));
      }
      w.hiddenWeight = parameter(projectHidden_);
      w.hiddenBias = parameter(projectHidden_ + 1);
      w.outWeight = parameter(projectOut_);
      w.outBias = parameter(projectOut_ + 1);
      fused_ = std::make_shared<const FusedFourierForward>(w, config_.modes, config_.padFraction, n);
      fusedSources_.clear();
      fusedVersions_.clear();
      for (const auto& entry : parameters_) {
        fusedSources_.push_back(entry.second);
        fusedVersions_.push_back(entry.second._version());
      }
    }
    return fused_;
  }

  NetworkConfig config_;
  size_t lift_ = 0, projectHidden_ = 0, projectOut_ = 0;
  std::vector<Layer> layers_;
  mutable std::mutex cacheMutex_;
  mutable std::shared_ptr<const FusedFourierForward> fused_;
  mutable std::vector<at::Tensor> fusedSources_;
  mutable std::vector<int64_t> fusedVersions_;
};

}  // namespace

std::shared_ptr<VelocityNetwork> makeFourierNeuralOperator(const NetworkConfig& config, int dim, int inputChannels,
                                                           int outputChannels, uint64_t seed) {
  return std::make_shared<FourierNeuralOperator>(config, dim, inputChannels, outputChannels, seed);
}

}  // namespace jko
