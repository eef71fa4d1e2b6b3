#include "JKOTraining.h"

#include <unistd.h>
#include <vtkAlgorithm.h>
#include <vtkCellData.h>
#include <vtkDataArray.h>
#include <vtkDataObject.h>
#include <vtkImageData.h>
#include <vtkInformationVector.h>
#include <vtkPointData.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "JKOLoadedOperator.h"
#include "numerics/Errors.h"
#include "operator/LearnToEvolveTrainer.h"
#include "operator/LearnedOperator.h"

namespace jko::plugin {
namespace {

// Where a training will save: refused before training when it cannot be
// written, so that no time is spent and no temporary is left behind.
void checkTrainedOperatorPath(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code error;
  if (fs::is_directory(path, error))
    throw Error("Trained Operator File '" + path + "' is a folder: choose a file in it (e.g. '" +
                (fs::path(path) / "operator.jko").string() + "'), then press Train again.");
  fs::path folder = fs::path(path).parent_path();
  if (folder.empty()) folder = ".";
  if (!fs::is_directory(folder, error))
    throw Error("The folder '" + folder.string() + "' of Trained Operator File '" + path +
                "' does not exist: create it or choose another folder, then press Train again.");
  if (access(folder.c_str(), W_OK) != 0)
    throw Error("The folder '" + folder.string() + "' of Trained Operator File '" + path +
                "' is not writable: choose a folder you can write to, then press Train again.");
}

// The densities of the Training Densities port, in the flow's units.
std::vector<at::Tensor> trainingDensities(const FlowInput& input, vtkInformationVector* images) {
  std::vector<at::Tensor> densities;
  const bool cellData = input.mapping.cellData;
  for (int i = 0; images && i < images->GetNumberOfInformationObjects(); ++i) {
    vtkDataObject* object = vtkDataObject::GetData(images, i);
    vtkImageData* extra = vtkImageData::SafeDownCast(object);
    const std::string which = "Training density " + std::to_string(i + 1);
    if (!extra)
      throw Error(which + " is " + (object ? std::string("a ") + object->GetClassName() : std::string("missing")) +
                  ", not image data: connect images on the input's grid to Training Densities.");
    vtkDataSetAttributes* attributes =
        cellData ? static_cast<vtkDataSetAttributes*>(extra->GetCellData()) : extra->GetPointData();
    vtkDataArray* array = attributes->GetArray(input.arrayName.c_str());
    if (!array) array = attributes->GetScalars();
    if (!array)
      throw Error(which + " has no array '" + input.arrayName + "' and no active scalars: give it a density array.");
    const ImageGridMapping mapping = mapImage(extra, cellData);
    if (!mapping.grid.sameAs(input.mapping.grid))
      throw Error(which + " is a " + mapping.describe() + " but training runs on the input's " +
                  input.mapping.describe() + ": resample it onto the input's grid (Resample To Image).");
    at::Tensor rho = samplesOf(array, mapping, nullptr);
    try {
      checkDensityValues(rho, mapping.grid, arrayName(array));
    } catch (const Error& error) {
      throw Error(which + ": " + error.what());
    }
    // Fit To Unit Box gives every density unit mass, as it does the input's.
    if (input.scaling.active) rho = rho / UnitBoxScaling::fit(mapping.grid, rho).density;
    densities.push_back(rho);
  }
  return densities;
}

}  // namespace

TrainingOutcome trainOperator(const TrainingSettings& settings, const FlowInput& input, const EnergySpec& energy,
                              double tau, const at::Device& device, vtkInformationVector* trainingImages,
                              vtkAlgorithm* algorithm) {
  const std::string& path = settings.path;
  if (path.empty())
    throw Error("Trained Operator File is empty: choose where to save the operator, then press Train again.");
  const Grid& grid = input.grid;
  const int dim = grid.dim;

  // The trainer works on the flow's own grid and box.
  TrainingOptions options = TrainingOptions::defaultsFor(energy, dim);
  options.energy = energy;
  options.dim = dim;
  options.gridShape = grid.n;
  for (int a = 0; a < dim; ++a) {
    options.boxLower[a] = grid.boxLower(a);
    options.boxUpper[a] = grid.boxUpper(a);
  }
  options.tau = tau;
  options.mode = settings.initialOnly ? "initial-only" : "learn-to-evolve";
  options.rounds = settings.rounds;
  options.epochs = settings.epochs;
  options.batch = settings.batch;
  options.learningRate = settings.learningRate;
  options.horizon = settings.horizon;
  options.generated = settings.generated;
  options.validation = settings.validation;
  options.seed = settings.seed;
  options.maxSeconds = settings.maxSeconds;
  options.device = device.is_cuda() ? "cuda" : "cpu";
  options.extraDensities.push_back(input.rho0);
  for (const at::Tensor& rho : trainingDensities(input, trainingImages)) options.extraDensities.push_back(rho);
  // Cover the user's densities with the generator's ranges: porous-medium and
  // interaction speeds depend on the absolute density (DESIGN.md §2.3).
  for (const at::Tensor& rho : options.extraDensities) {
    const double peak = rho.max().item<double>(), mass = rho.sum().item<double>() * grid.cellVolume();
    if (options.densities.peakMax > 0) {
      options.densities.peakMin = std::min(options.densities.peakMin, peak);
      options.densities.peakMax = std::max(options.densities.peakMax, peak);
    } else {
      options.densities.massMin = std::min(options.densities.massMin, mass);
      options.densities.massMax = std::max(options.densities.massMax, mass);
    }
  }

  // What the operator is a function of; a saved operator with the same
  // request is loaded instead of trained again (a traced session replays).
  nlohmann::json request = {
      {"energy", options.energy.toJson()},
      {"dim", dim},
      {"grid", std::vector<int64_t>(grid.n.begin(), grid.n.begin() + dim)},
      {"box_lower", std::vector<double>(options.boxLower.begin(), options.boxLower.begin() + dim)},
      {"box_upper", std::vector<double>(options.boxUpper.begin(), options.boxUpper.begin() + dim)},
      {"tau", options.tau},
      {"mode", options.mode},
      {"rounds", options.rounds},
      {"epochs", options.epochs},
      {"batch", options.batch},
      {"learning_rate", options.learningRate},
      {"horizon", options.horizon},
      {"generated", options.generated},
      {"validation", options.validation},
      {"seed", options.seed},
      {"max_seconds", options.maxSeconds},
      {"densities", nlohmann::json::array()}};
  for (const at::Tensor& rho : options.extraDensities) request["densities"].push_back(hashTensor(rho));

  if (settings.reuse && !fileStamp(path).empty()) {
    try {
      const auto saved = LearnedOperator::load(path, at::kCPU);
      if (saved->metadata().training.value("plugin_request", nlohmann::json()) == request) {
        algorithm->SetProgressText(("Training: reusing the operator trained with these settings in " + path).c_str());
        return {path, true};
      }
    } catch (const std::exception&) {
      // Not a usable operator: train and overwrite it.
    }
  }
  // Each rank would train the same operator and write the same file: a
  // parallel server refuses, on every rank alike, so that no rank waits for
  // another (a saved training for this request was reused above).
  if (settings.ranks > 1)
    throw Error("Training runs in one process, and this pipeline runs on " + std::to_string(settings.ranks) +
                " MPI ranks (mpirun pvserver or pvbatch): train in pvpython or in ParaView without a parallel server "
                "(or with jko train), then set Operator File to the saved operator here. A Trained Operator File that "
                "already holds an operator trained with these settings is loaded instead of training.");
  // Refused before minutes of training, not after.
  checkTrainedOperatorPath(path);
  // Core's checks let these through: a NaN cap would mean no cap, and an infinite rate can only diverge.
  if (std::isnan(options.maxSeconds))
    throw Error("Maximum Training Seconds is nan: give a number of seconds >= 0 (0: no cap).");
  if (!std::isfinite(options.learningRate)) {
    std::ostringstream message;
    message << "Training Learning Rate is " << options.learningRate << ": give a positive finite number, e.g. 0.002.";
    throw Error(message.str());
  }
  std::unique_ptr<LearnToEvolveTrainer> trainer;
  try {
    trainer = std::make_unique<LearnToEvolveTrainer>(options);
  } catch (const InvalidParameter& error) {
    throw Error(std::string("Training: ") + error.what() + ". " + panelRemedy(error));
  }
  algorithm->SetProgressText("Training: preparing");
  algorithm->UpdateProgress(0);
  TrainingResult result = trainer->train([algorithm](const ProgressEvent& event) {
    std::string text = "Training: " + event.message;
    if (event.message.empty()) {
      std::ostringstream out;
      out << "Training: round " << event.round << ", epoch " << event.epoch << ", loss " << event.loss;
      text = out.str();
    }
    algorithm->SetProgressText(text.c_str());
    algorithm->UpdateProgress(std::clamp(event.fraction, 0.0, 1.0));
    return !algorithm->GetAbortExecute();
  });
  result.op->metadata().training["plugin_request"] = request;
  try {
    result.op->save(path);
  } catch (const std::exception& error) {
    throw Error("The trained operator could not be saved to '" + path + "' (" + error.what() +
                "): choose a writable Trained Operator File and press Train again.");
  }
  if (result.summary.value("stopped_at_time_cap", false))
    vtkWarningWithObjectMacro(
        algorithm, << "Training stopped at Maximum Training Seconds (" << options.maxSeconds << " s) in round "
                   << result.summary.value("per_round", nlohmann::json::array()).size() << " of " << options.rounds
                   << ": the operator saved to '" << path
                   << "' is the best so far and may be undertrained. Raise Maximum Training Seconds (0: no cap) and "
                      "press Train again for a full training.");
  return {path, false};
}

}  // namespace jko::plugin
