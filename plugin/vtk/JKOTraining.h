// Training an operator from the flow filter's panel (Learn-to-Evolve,
// DESIGN.md §2.4) on the filter's input density, the images on its
// Training Densities port and generated densities; saved to the Trained
// Operator File through a temporary file and a rename. An operator already
// saved there for exactly the same request is loaded instead (how a traced
// session replays a training without training again).
//
// Not wrapped: this header may include ATen.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>

#include "JKOFlowInput.h"
#include "numerics/Energy.h"

class vtkAlgorithm;
class vtkInformationVector;

namespace jko::plugin {

struct TrainingSettings {
  std::string path;  ///< Trained Operator File
  bool initialOnly = false;
  int rounds = 8, epochs = 40, batch = 16;
  double learningRate = 2e-3;
  int horizon = 20, generated = 64, validation = 8;
  uint64_t seed = 1;
  double maxSeconds = 600;
  bool reuse = true;  ///< Reuse Trained Operator
  /// MPI ranks running the filter together: a training needs one (a saved
  /// operator for the same request is still reused).
  int ranks = 1;
};

struct TrainingOutcome {
  std::string path;     ///< where the operator is
  bool reused = false;  ///< loaded from an earlier identical training
};

/// Trains an operator for `energy` and `tau` on the flow's grid. Densities
/// of `trainingImages` (the filter's input port 1) join the input's. Reports
/// progress on `algorithm` and stops at its abort flag (jko::Cancelled).
/// Throws Error with what to do; a failed or stopped training leaves the
/// file at `settings.path` as it was. On several ranks only a reusable
/// operator is loaded; anything else is an error on every rank alike.
TrainingOutcome trainOperator(const TrainingSettings& settings, const FlowInput& input, const EnergySpec& energy,
                              double tau, const at::Device& device, vtkInformationVector* trainingImages,
                              vtkAlgorithm* algorithm);

}  // namespace jko::plugin
