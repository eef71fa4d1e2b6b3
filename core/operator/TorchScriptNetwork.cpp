// Operators trained in PyTorch: a TorchScript module whose forward maps the
// features (B, C_in, n...) to (B, C_out, n...), with the operator metadata
// as the extra file "jko_metadata.json" (see examples/export_torchscript.py).
#include <torch/script.h>

#include <sstream>

#include "numerics/Errors.h"
#include "operator/VelocityNetwork.h"

namespace jko {
namespace {

class TorchScriptNetwork : public VelocityNetwork {
 public:
  TorchScriptNetwork(torch::jit::Module module, int dim, int inputChannels, int outputChannels)
      : VelocityNetwork(dim, inputChannels, outputChannels), module_(std::move(module)) {
    module_.eval();
  }

  at::Tensor forward(const at::Tensor& features) const override {
    const at::Tensor out = module_.forward({features}).toTensor();
    if (out.dim() != features.dim() || out.size(0) != features.size(0) || out.size(1) != outputChannels_) {
      std::ostringstream message;
      message << "the TorchScript operator returned shape " << out.sizes() << " for input " << features.sizes()
              << "; it must return (batch, " << outputChannels_ << ", grid...)";
      throw OperatorFileError(message.str());
    }
    for (int a = 0; a < dim_; ++a)
      if (out.size(2 + a) != features.size(2 + a))
        throw OperatorFileError("the TorchScript operator changed the grid size; it must keep it");
    return out.to(at::kFloat);
  }

  void to(const at::Device& device) override { module_.to(device); }

 private:
  mutable torch::jit::Module module_;
};

}  // namespace

std::shared_ptr<VelocityNetwork> loadTorchScriptNetwork(const std::string& path,
                                                        const NetworkShapeFromMetadata& shape) {
  torch::jit::ExtraFilesMap extra{{"jko_metadata.json", ""}};
  torch::jit::Module module;
  try {
    module = torch::jit::load(path, at::Device(at::kCPU), extra);
  } catch (const c10::Error& e) {
    throw OperatorFileError(path + " is not a readable TorchScript module: " + e.what_without_backtrace());
  }
  if (extra["jko_metadata.json"].empty())
    throw OperatorFileError(path +
                            " has no extra file 'jko_metadata.json' with the operator metadata; export it with "
                            "_extra_files (see examples/export_torchscript.py)");
  const auto [dim, inputChannels, outputChannels] = shape(extra["jko_metadata.json"]);
  return std::make_shared<TorchScriptNetwork>(std::move(module), dim, inputChannels, outputChannels);
}

}  // namespace jko
