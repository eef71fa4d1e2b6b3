// Networks that map the operator's features (B, C_in, n...) to its output
// channels (B, C_out, n...), float32: a Fourier neural operator (default,
// resolution-independent), a U-Net, or a TorchScript module from PyTorch.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "operator/OperatorMetadata.h"

namespace jko {

class VelocityNetwork {
 public:
  virtual ~VelocityNetwork() = default;

  virtual at::Tensor forward(const at::Tensor& features) const = 0;
  /// Moves the parameters to `device` (kept float32).
  virtual void to(const at::Device& device);

  /// Named trainable parameters, in a fixed order (saved in operator files).
  const std::vector<std::pair<std::string, at::Tensor>>& namedParameters() const { return parameters_; }
  std::vector<at::Tensor> parameters() const;
  int64_t parameterCount() const;
  /// Copies values into the parameters; throws OperatorFileError on a
  /// missing name or a shape mismatch.
  void loadParameters(const std::vector<std::pair<std::string, at::Tensor>>& values);

  int dim() const { return dim_; }
  int inputChannels() const { return inputChannels_; }
  int outputChannels() const { return outputChannels_; }

  /// Builds the network of `config` with seeded random initial parameters.
  static std::shared_ptr<VelocityNetwork> create(const NetworkConfig& config, int dim, int inputChannels,
                                                 int outputChannels, uint64_t seed);

 protected:
  VelocityNetwork(int dim, int inputChannels, int outputChannels)
      : dim_(dim), inputChannels_(inputChannels), outputChannels_(outputChannels) {}
  at::Tensor& addParameter(const std::string& name, at::Tensor value);
  const at::Tensor& parameter(size_t index) const { return parameters_[index].second; }

  /// y = W x + b over channels at every node (a 1x1 convolution).
  at::Tensor pointwise(const at::Tensor& x, size_t weightIndex) const;
  /// 3^d convolution with zero padding.
  at::Tensor convolution3(const at::Tensor& x, size_t weightIndex) const;

  int dim_, inputChannels_, outputChannels_;
  std::vector<std::pair<std::string, at::Tensor>> parameters_;
};

/// Fourier neural operator (Li et al. 2021): lift, L layers of
/// GELU(spectral convolution + pointwise), projection. Inputs are zero-padded
/// by a fixed fraction of the grid per axis, so the kept modes are the same
/// physical frequencies at every resolution.
std::shared_ptr<VelocityNetwork> makeFourierNeuralOperator(const NetworkConfig& config, int dim, int inputChannels,
                                                           int outputChannels, uint64_t seed);

/// Two-level U-Net of 3^d convolutions (the alternative to measure against).
std::shared_ptr<VelocityNetwork> makeUNet(const NetworkConfig& config, int dim, int inputChannels, int outputChannels,
                                          uint64_t seed);

/// Reads the module's metadata JSON and returns (dim, input channels, output channels).
using NetworkShapeFromMetadata = std::function<std::tuple<int, int, int>(const std::string& metadataJson)>;

/// A TorchScript module (torch.jit.save) mapping (B, C_in, n...) to
/// (B, C_out, n...), with its metadata in the extra file "jko_metadata.json".
std::shared_ptr<VelocityNetwork> loadTorchScriptNetwork(const std::string& path, const NetworkShapeFromMetadata& shape);

}  // namespace jko
