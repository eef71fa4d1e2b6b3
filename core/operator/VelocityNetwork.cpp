#include "operator/VelocityNetwork.h"

#include <ATen/core/grad_mode.h>

#include <sstream>

#include "numerics/Errors.h"

namespace jko {

void VelocityNetwork::to(const at::Device& device) {
  // Tensors already in place are kept: an optimiser holding them stays valid.
  for (auto& [name, tensor] : parameters_) {
    if (tensor.device() == device && tensor.scalar_type() == at::kFloat) continue;
    const bool grad = tensor.requires_grad();
    tensor = tensor.detach().to(device, at::kFloat).requires_grad_(grad);
  }
}

std::vector<at::Tensor> VelocityNetwork::parameters() const {
  std::vector<at::Tensor> out;
  for (const auto& entry : parameters_) out.push_back(entry.second);
  return out;
}

int64_t VelocityNetwork::parameterCount() const {
  int64_t count = 0;
  for (const auto& entry : parameters_) count += entry.second.numel();
  return count;
}

void VelocityNetwork::loadParameters(const std::vector<std::pair<std::string, at::Tensor>>& values) {
  at::NoGradGuard noGrad;
  for (auto& [name, tensor] : parameters_) {
    const at::Tensor* found = nullptr;
    for (const auto& [otherName, value] : values)
      if (otherName == name) found = &value;
    if (!found) throw OperatorFileError("the operator file lacks the network parameter '" + name + "'");
    if (found->sizes() != tensor.sizes()) {
      std::ostringstream message;
      message << "the network parameter '" << name << "' has shape " << found->sizes() << " in the file but "
              << tensor.sizes() << " in the network its metadata describes";
      throw OperatorFileError(message.str());
    }
    tensor.copy_(found->to(tensor.device(), tensor.scalar_type()));
  }
}

at::Tensor& VelocityNetwork::addParameter(const std::string& name, at::Tensor value) {
  parameters_.emplace_back(name, value.to(at::kFloat).contiguous().requires_grad_(true));
  return parameters_.back().second;
}

at::Tensor VelocityNetwork::pointwise(const at::Tensor& x, size_t weightIndex) const {
  const at::Tensor& weight = parameter(weightIndex);
  const at::Tensor& bias = parameter(weightIndex + 1);
  std::vector<int64_t> kernel{weight.size(0), weight.size(1)};
  for (int a = 0; a < dim_; ++a) kernel.push_back(1);
  return dim_ == 2 ? at::conv2d(x, weight.view(kernel), bias) : at::conv3d(x, weight.view(kernel), bias);
}

at::Tensor VelocityNetwork::convolution3(const at::Tensor& x, size_t weightIndex) const {
  const at::Tensor& weight = parameter(weightIndex);
  const at::Tensor& bias = parameter(weightIndex + 1);
  return dim_ == 2 ? at::conv2d(x, weight, bias, 1, 1) : at::conv3d(x, weight, bias, 1, 1);
}

std::shared_ptr<VelocityNetwork> VelocityNetwork::create(const NetworkConfig& config, int dim, int inputChannels,
                                                         int outputChannels, uint64_t seed) {
  config.validate();
  if (config.kind == "fno") return makeFourierNeuralOperator(config, dim, inputChannels, outputChannels, seed);
  if (config.kind == "unet") return makeUNet(config, dim, inputChannels, outputChannels, seed);
  throw InvalidParameter("network", config.kind, "a TorchScript network is loaded, not created");
}

}  // namespace jko
