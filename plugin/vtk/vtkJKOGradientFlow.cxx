#include "vtkJKOGradientFlow.h"

#include <c10/util/Exception.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vtkCellData.h>
#include <vtkDataArray.h>
#include <vtkDataSetAttributes.h>
#include <vtkDoubleArray.h>
#include <vtkFieldData.h>
#include <vtkImageData.h>
#include <vtkInformation.h>
#include <vtkInformationVector.h>
#include <vtkIntArray.h>
#include <vtkObjectFactory.h>
#include <vtkPointData.h>
#include <vtkStreamingDemandDrivenPipeline.h>
#include <vtkStringArray.h>
#include <vtkTable.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "JKOImageConversion.h"
#include "numerics/Energy.h"
#include "numerics/Errors.h"
#include "numerics/JkoObjective.h"
#include "numerics/ReferenceSolver.h"
#include "operator/LearnToEvolveTrainer.h"
#include "operator/LearnedOperator.h"
#include "runtime/Runtime.h"

vtkStandardNewMacro(vtkJKOGradientFlow);

namespace {

using jko::Error;

constexpr const char* kSolverNames[] = {"Reference solver", "Learned operator", "Learned + refine"};
// More frames than this are refused before anything is allocated (the
// TIME_STEPS vector alone would be megabytes).
constexpr int kMaximumSteps = 1000000;
// The panel's range: far more threads than cores only slows LibTorch down
// (100000 of them stalled a 32^2 update for more than nine minutes).
constexpr int kMaximumThreads = 256;

/// One frame of the rollout, float64 on the CPU.
struct Frame {
  at::Tensor density;   ///< rho_k, shape of the grid
  at::Tensor velocity;  ///< (dim, n...): the step leaving frame k (arriving, for the last frame)
  double time = 0, energy = 0, mass = 0;
  double transport = 0;  ///< (1/(2 tau)) sum w |u|^2 |h| of the step arriving at frame k
  double objective = 0;  ///< J of that step; E(rho_0) for frame 0
  int iterations = 0;    ///< L-BFGS iterations of that step
};

// 64-bit FNV-1a over raw bytes: fingerprints of training densities.
uint64_t fnv1a(const void* data, size_t size, uint64_t hash = 1469598103934665603ull) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < size; ++i) {
    hash ^= bytes[i];
    hash *= 1099511628211ull;
  }
  return hash;
}

std::string hashTensor(const at::Tensor& tensor, uint64_t hash = 1469598103934665603ull) {
  const at::Tensor values = tensor.to(at::kCPU, at::kDouble).contiguous();
  hash = fnv1a(values.data_ptr<double>(), sizeof(double) * values.numel(), hash);
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(hash));
  return text;
}

// A file's identity for the operator cache: size and modification time.
std::string fileStamp(const std::string& path) {
  struct stat status;
  if (stat(path.c_str(), &status) != 0) return "";
  std::ostringstream out;
  out << status.st_size << ":" << status.st_mtim.tv_sec << "." << status.st_mtim.tv_nsec;
  return out.str();
}

// What to change in the panel for a parameter that core's validation
// rejects (jko::InvalidParameter::parameter()), so that the message says
// what to do as well as what is wrong.
std::string remedy(const jko::InvalidParameter& error) {
  static const std::map<std::string, std::string> properties = {
      {"D", "Diffusion"},
      {"m", "Exponent"},
      {"attraction", "Attraction"},
      {"repulsion", "Repulsion"},
      {"attractive power", "Attractive Power"},
      {"repulsive power", "Repulsive Power"},
      {"potential strength", "Potential Strength"},
      {"potential centre", "Potential Centre"},
      {"well depth", "Well Depth"},
      {"well half-width", "Well Half Width"},
      {"rounds", "Training Rounds"},
      {"epochs", "Training Epochs"},
      {"batch", "Training Batch Size"},
      {"learning rate", "Training Learning Rate"},
      {"horizon", "Training Horizon"},
      {"generated densities", "Generated Densities"},
      {"validation densities", "Validation Densities"},
      {"maximum seconds", "Maximum Training Seconds"},
      {"tau", "Time Step"},
      {"device", "Device"},
  };
  if (error.parameter() == "kernel") return "Choose another Energy Preset, or a 2D input.";
  if (error.parameter() == "training grid")
    return "Training runs on the input's grid: resample the input (Resample To Image) to 8-1024 samples per axis.";
  const auto found = properties.find(error.parameter());
  return found != properties.end() ? "Change " + found->second + "." : std::string();
}

std::string arrayName(vtkAbstractArray* array) { return array && array->GetName() ? array->GetName() : "(unnamed)"; }

// The array selected for input array `idx` of `algorithm`, and whether it is
// cell data. Without a selection: the active point scalars, else the active
// cell scalars. ParaView leaves the index itself as the name when the input's
// arrays were unknown as the filter was created (a script that did not update
// the input first): that counts as no selection.
vtkDataArray* selectedArray(vtkAlgorithm* algorithm, int idx, vtkImageData* image, bool& cellData,
                            std::string& requestedName) {
  cellData = false;
  requestedName.clear();
  vtkInformationVector* arrays = algorithm->GetInformation()->Get(vtkAlgorithm::INPUT_ARRAYS_TO_PROCESS());
  vtkInformation* selection = arrays ? arrays->GetInformationObject(idx) : nullptr;
  const char* name =
      selection && selection->Has(vtkDataObject::FIELD_NAME()) ? selection->Get(vtkDataObject::FIELD_NAME()) : nullptr;
  if (name && name[0] != '\0') {
    requestedName = name;
    const int association = selection->Has(vtkDataObject::FIELD_ASSOCIATION())
                                ? selection->Get(vtkDataObject::FIELD_ASSOCIATION())
                                : vtkDataObject::FIELD_ASSOCIATION_POINTS;
    vtkDataArray* array = nullptr;
    if (association != vtkDataObject::FIELD_ASSOCIATION_CELLS) array = image->GetPointData()->GetArray(name);
    if (!array && association != vtkDataObject::FIELD_ASSOCIATION_POINTS) {
      array = image->GetCellData()->GetArray(name);
      cellData = array != nullptr || association == vtkDataObject::FIELD_ASSOCIATION_CELLS;
    }
    if (array || requestedName != std::to_string(idx)) return array;
    requestedName.clear();
    cellData = false;
  }
  if (vtkDataArray* scalars = image->GetPointData()->GetScalars()) return scalars;
  cellData = image->GetCellData()->GetScalars() != nullptr;
  return image->GetCellData()->GetScalars();
}

// Checks a density array's values with messages that say what to do.
void checkDensityValues(const at::Tensor& rho, const jko::Grid& grid, const std::string& name) {
  const int64_t nonFinite = (~at::isfinite(rho)).sum().item<int64_t>();
  if (nonFinite > 0) {
    std::ostringstream message;
    message << "The density array '" << name << "' has " << nonFinite
            << " NaN or infinite values: a density must be finite everywhere. Replace them (e.g. with the "
               "Calculator) or choose another array.";
    throw Error(message.str());
  }
  const int64_t negative = (rho < 0).sum().item<int64_t>();
  if (negative > 0) {
    std::ostringstream message;
    message << "The density array '" << name << "' has " << negative << " negative values (minimum "
            << rho.min().item<double>() << "): a density must be non-negative. Clip it (e.g. Calculator: max(" << name
            << ", 0)) or choose another array.";
    throw Error(message.str());
  }
  const double mass = rho.sum().item<double>() * grid.cellVolume();
  if (std::isinf(mass)) {
    // Finite values whose sum (or the cell volume) overflows: every energy
    // and step of it would be infinite.
    std::ostringstream message;
    message << "The density array '" << name << "' has an infinite mass (maximum " << rho.max().item<double>()
            << ", cell volume " << grid.cellVolume()
            << "): its values or the image's spacing are too large for double precision. Rescale the density (e.g. "
               "with the Calculator) or the image.";
    throw Error(message.str());
  }
  if (!(mass > 0)) {
    std::ostringstream message;
    message << "The density array '" << name
            << "' has zero mass (it is zero everywhere): a gradient flow needs a positive density somewhere. "
               "Choose another array or time step of the input.";
    throw Error(message.str());
  }
}

vtkSmartPointer<vtkDoubleArray> scalarField(const char* name, double value) {
  auto array = vtkSmartPointer<vtkDoubleArray>::New();
  array->SetName(name);
  array->InsertNextValue(value);
  return array;
}

vtkSmartPointer<vtkStringArray> stringField(const char* name, const std::string& value) {
  auto array = vtkSmartPointer<vtkStringArray>::New();
  array->SetName(name);
  array->InsertNextValue(value);
  return array;
}

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

/// What one rollout starts from: the input's grid, its density and the energy.
struct Problem {
  jko::plugin::ImageGridMapping mapping;
  std::string arrayName;  ///< the density array
  at::Tensor rho0;        ///< float64 CPU, shape of the grid
  jko::EnergySpec energy;
  at::Device device = at::kCPU;
  std::string key;  ///< fingerprint of the geometry, density and potential values
};

vtkSmartPointer<vtkDoubleArray> column(const char* name, vtkIdType rows) {
  auto array = vtkSmartPointer<vtkDoubleArray>::New();
  array->SetName(name);
  array->SetNumberOfTuples(rows);
  return array;
}

}  // namespace

struct vtkJKOGradientFlow::Internals {
  // The cached rollout and what it was computed from.
  bool valid = false;
  vtkMTimeType filterTime = 0, inputTime = 0;
  std::string inputKey;     ///< content of the input the frames came from (Problem::key)
  std::string operatorKey;  ///< operator file and its stamp (learned modes)
  std::vector<Frame> frames;
  jko::plugin::ImageGridMapping mapping;
  vtkSmartPointer<vtkImageData> structure;  ///< the input's geometry, without arrays
  at::Tensor potential;                     ///< V on the grid, for display (undefined without)
  vtkSmartPointer<vtkTable> table;
  std::string solver, energy, operatorFile, operatorMetadata;

  // The last good output, kept when an update fails (DESIGN.md §4).
  vtkSmartPointer<vtkImageData> lastImage;
  vtkSmartPointer<vtkTable> lastTable;

  // The operator of the learned modes and where it came from.
  std::shared_ptr<jko::LearnedOperator> op;
  std::string opPath, opStamp, opDevice;
  /// After a training: the trained file, used until OperatorFile changes.
  std::string trainedPath, operatorFileAtTraining;

  // Panel information about the operator.
  std::string description, energyText;
  double opTau = 0;

  /// Recomputes the frames unless the cache is valid for the current
  /// properties and inputs; trains first when Train() asked for it.
  void update(vtkJKOGradientFlow* self, vtkInformationVector** inputVector);
  /// Writes frame k into the outputs.
  void writeFrame(vtkJKOGradientFlow* self, int k, vtkImageData* image, vtkTable* table) const;

  Problem readProblem(vtkJKOGradientFlow* self, vtkImageData* image) const;
  jko::EnergySpec panelEnergy(vtkJKOGradientFlow* self, const jko::plugin::ImageGridMapping& mapping,
                              const at::Tensor& potentialValues) const;
  void checkMemory(vtkJKOGradientFlow* self, const Problem& problem) const;
  at::Device chooseDevice(vtkJKOGradientFlow* self) const;
  std::vector<Frame> rolloutReference(vtkJKOGradientFlow* self, const Problem& problem) const;
  std::string operatorPath(vtkJKOGradientFlow* self) const;
  void loadOperator(vtkJKOGradientFlow* self);
  void checkOperator(vtkJKOGradientFlow* self, const Problem& problem) const;
  std::vector<Frame> rolloutLearned(vtkJKOGradientFlow* self, const Problem& problem, bool refine) const;
  void train(vtkJKOGradientFlow* self, const Problem& problem, vtkInformationVector** inputVector);
};

vtkJKOGradientFlow::vtkJKOGradientFlow() : Internal(new Internals) {
  this->SetNumberOfInputPorts(2);
  this->SetNumberOfOutputPorts(2);
}

vtkJKOGradientFlow::~vtkJKOGradientFlow() {
  this->SetOperatorFile(nullptr);
  this->SetTrainedOperatorFile(nullptr);
}

void vtkJKOGradientFlow::Train() {
  this->TrainingRequested = true;
  this->Modified();
}

const char* vtkJKOGradientFlow::GetOperatorDescription() { return this->Internal->description.c_str(); }
double vtkJKOGradientFlow::GetOperatorTimeStep() { return this->Internal->opTau; }
const char* vtkJKOGradientFlow::GetOperatorEnergy() { return this->Internal->energyText.c_str(); }

int vtkJKOGradientFlow::FillInputPortInformation(int port, vtkInformation* info) {
  // Any data object is accepted here so that a wrong type gets this filter's
  // own message; the XML domain offers image data only.
  info->Set(vtkAlgorithm::INPUT_REQUIRED_DATA_TYPE(), "vtkDataObject");
  if (port == 1) {
    info->Set(vtkAlgorithm::INPUT_IS_OPTIONAL(), 1);
    info->Set(vtkAlgorithm::INPUT_IS_REPEATABLE(), 1);
  }
  return 1;
}

int vtkJKOGradientFlow::FillOutputPortInformation(int port, vtkInformation* info) {
  info->Set(vtkDataObject::DATA_TYPE_NAME(), port == 0 ? "vtkImageData" : "vtkTable");
  return 1;
}

int vtkJKOGradientFlow::RequestInformation(vtkInformation*, vtkInformationVector** inputVector,
                                           vtkInformationVector* outputVector) {
  vtkInformation* imageInfo = outputVector->GetInformationObject(0);
  vtkInformation* tableInfo = outputVector->GetInformationObject(1);
  // The frames replace whatever time steps the input has.
  for (vtkInformation* info : {imageInfo, tableInfo}) {
    info->Remove(vtkStreamingDemandDrivenPipeline::TIME_STEPS());
    info->Remove(vtkStreamingDemandDrivenPipeline::TIME_RANGE());
  }
  tableInfo->Remove(vtkStreamingDemandDrivenPipeline::WHOLE_EXTENT());

  const int steps = this->NumberOfSteps;
  if (this->TimeStep > 0 && std::isfinite(this->TimeStep) && std::isfinite(this->InitialTime) && steps >= 1 &&
      steps <= kMaximumSteps) {
    std::vector<double> times(steps + 1);
    for (int k = 0; k <= steps; ++k) times[k] = this->InitialTime + k * this->TimeStep;
    const double range[2] = {times.front(), times.back()};
    for (vtkInformation* info : {imageInfo, tableInfo}) {
      info->Set(vtkStreamingDemandDrivenPipeline::TIME_STEPS(), times.data(), steps + 1);
      info->Set(vtkStreamingDemandDrivenPipeline::TIME_RANGE(), range, 2);
    }
  }

  vtkInformation* inInfo = inputVector[0]->GetInformationObject(0);
  if (inInfo && inInfo->Has(vtkStreamingDemandDrivenPipeline::WHOLE_EXTENT()))
    imageInfo->CopyEntry(inInfo, vtkStreamingDemandDrivenPipeline::WHOLE_EXTENT());

  // Best effort, so that the panel shows the operator's energy and tau before
  // the first update; RequestData reports any error.
  if (this->Solver != REFERENCE) {
    try {
      this->Internal->loadOperator(this);
    } catch (...) {
    }
  }
  return 1;
}

int vtkJKOGradientFlow::RequestUpdateExtent(vtkInformation*, vtkInformationVector** inputVector,
                                            vtkInformationVector*) {
  for (int port = 0; port < 2; ++port) {
    for (int i = 0; i < inputVector[port]->GetNumberOfInformationObjects(); ++i) {
      vtkInformation* inInfo = inputVector[port]->GetInformationObject(i);
      // Scrubbing must not re-execute a temporal input (and so flush the
      // frames): the flow starts from whatever time the input holds.
      inInfo->Remove(vtkStreamingDemandDrivenPipeline::UPDATE_TIME_STEP());
      if (inInfo->Has(vtkStreamingDemandDrivenPipeline::WHOLE_EXTENT())) {
        inInfo->Set(vtkStreamingDemandDrivenPipeline::UPDATE_EXTENT(),
                    inInfo->Get(vtkStreamingDemandDrivenPipeline::WHOLE_EXTENT()), 6);
        inInfo->Set(vtkStreamingDemandDrivenPipeline::EXACT_EXTENT(), 1);
      }
      inInfo->Set(vtkStreamingDemandDrivenPipeline::UPDATE_PIECE_NUMBER(), 0);
      inInfo->Set(vtkStreamingDemandDrivenPipeline::UPDATE_NUMBER_OF_PIECES(), 1);
    }
  }
  return 1;
}

int vtkJKOGradientFlow::RequestData(vtkInformation*, vtkInformationVector** inputVector,
                                    vtkInformationVector* outputVector) {
  vtkImageData* image = vtkImageData::GetData(outputVector, 0);
  vtkTable* table = vtkTable::GetData(outputVector, 1);
  vtkInformation* imageInfo = outputVector->GetInformationObject(0);
  Internals& internal = *this->Internal;
  try {
    internal.update(this, inputVector);
    // Snap the requested time to its frame.
    const double tau = this->TimeStep, t0 = this->InitialTime;
    int k = 0;
    if (imageInfo->Has(vtkStreamingDemandDrivenPipeline::UPDATE_TIME_STEP())) {
      const double t = imageInfo->Get(vtkStreamingDemandDrivenPipeline::UPDATE_TIME_STEP());
      k = static_cast<int>(std::lround((t - t0) / tau));
    }
    k = std::clamp(k, 0, static_cast<int>(internal.frames.size()) - 1);
    internal.writeFrame(this, k, image, table);
    internal.lastImage = vtkSmartPointer<vtkImageData>::New();
    internal.lastImage->ShallowCopy(image);
    internal.lastTable = vtkSmartPointer<vtkTable>::New();
    internal.lastTable->ShallowCopy(table);
    this->SetProgressText(nullptr);
    return 1;
  } catch (const c10::Error& error) {
    vtkErrorMacro(<< "JKO Gradient Flow: LibTorch failed: " << error.what_without_backtrace());
  } catch (const jko::Cancelled&) {
    vtkErrorMacro(<< "JKO Gradient Flow: cancelled; the last complete output is kept.");
  } catch (const std::exception& error) {
    vtkErrorMacro(<< error.what());
  }
  // No half-written output: the last good one, or nothing.
  this->SetProgressText(nullptr);
  image->Initialize();
  table->Initialize();
  if (internal.lastImage) {
    image->ShallowCopy(internal.lastImage);
    table->ShallowCopy(internal.lastTable);
  }
  return 1;
}

void vtkJKOGradientFlow::Internals::update(vtkJKOGradientFlow* self, vtkInformationVector** inputVector) {
  vtkDataObject* input = vtkDataObject::GetData(inputVector[0], 0);
  vtkImageData* image = vtkImageData::SafeDownCast(input);
  if (!image) {
    if (!input) throw Error("JKO Gradient Flow has no input: connect an image with a density array.");
    throw Error(std::string("The input is a ") + input->GetClassName() +
                ", not image data: JKO Gradient Flow needs a vtkImageData with a density array (resample other data "
                "with Resample To Image first).");
  }
  // Fast path: neither the properties, nor the input data object, nor the
  // operator file (rewritten by a training elsewhere) changed.
  const bool training = self->TrainingRequested;
  const vtkMTimeType filterTime = self->GetMTime(), inputTime = image->GetMTime();
  std::string operatorKey;
  if (self->Solver != REFERENCE) {
    const std::string path = this->operatorPath(self);
    operatorKey = path + "@" + fileStamp(path);
  }
  const bool sameSettings =
      !training && this->valid && filterTime == this->filterTime && operatorKey == this->operatorKey;
  if (sameSettings && inputTime == this->inputTime) return;
  if (!(self->TimeStep > 0) || !std::isfinite(self->TimeStep)) {
    std::ostringstream message;
    message << "Time Step (tau) is " << self->TimeStep << ": it must be a positive number, e.g. 0.005.";
    throw Error(message.str());
  }
  if (self->NumberOfSteps < 1 || self->NumberOfSteps > kMaximumSteps) {
    std::ostringstream message;
    message << "Number Of Steps is " << self->NumberOfSteps << ": choose between 1 and " << kMaximumSteps << ".";
    throw Error(message.str());
  }
  if (!std::isfinite(self->InitialTime)) {
    std::ostringstream message;
    message << "Initial Time is " << self->InitialTime << ": give a finite number, e.g. 0.";
    throw Error(message.str());
  }
  if (self->NumberOfThreads < 0 || self->NumberOfThreads > kMaximumThreads)
    throw Error("Number Of Threads is " + std::to_string(self->NumberOfThreads) +
                ": choose between 0 (all cores) and " + std::to_string(kMaximumThreads) + ".");
  jko::configureRuntime(self->NumberOfThreads > 0 ? self->NumberOfThreads
                                                  : static_cast<int>(std::thread::hardware_concurrency()));

  Problem problem = this->readProblem(self, image);
  // ParaView may hand over a new data object with the same content (its
  // pass-through post filter re-executes): compare the content too.
  const std::string inputKey = problem.key;
  if (sameSettings && inputKey == this->inputKey) {
    this->inputTime = inputTime;
    return;
  }
  self->TrainingRequested = false;  // one request, one training, even if it fails
  this->checkMemory(self, problem);

  if (training) this->train(self, problem, inputVector);

  std::vector<Frame> frames;
  std::string operatorFile, operatorMetadata;
  if (self->Solver == REFERENCE) {
    frames = this->rolloutReference(self, problem);
  } else {
    this->loadOperator(self);
    this->checkOperator(self, problem);
    frames = this->rolloutLearned(self, problem, self->Solver == LEARNED_REFINED);
    operatorFile = this->opPath;
    operatorMetadata = this->op->metadata().toJson().dump();
  }

  // A step that overflowed gives an error, never NaN frames.
  for (size_t k = 1; k < frames.size(); ++k) {
    const Frame& frame = frames[k];
    if (!std::isfinite(frame.energy) || !std::isfinite(frame.mass) || !at::isfinite(frame.density).all().item<bool>() ||
        !at::isfinite(frame.velocity).all().item<bool>())
      throw Error("JKO step " + std::to_string(k) +
                  " gave NaN or infinite values: the density or the energy's parameters are out of range for this "
                  "solver. Lower Time Step or the energy's parameters, or rescale the density.");
  }

  // Diagnostics table: one row per frame.
  auto table = vtkSmartPointer<vtkTable>::New();
  const vtkIdType rows = static_cast<vtkIdType>(frames.size());
  auto time = column("Time", rows), energy = column("Energy", rows), mass = column("Mass", rows);
  auto transport = column("TransportCost", rows), objective = column("Objective", rows);
  auto step = vtkSmartPointer<vtkIntArray>::New(), iterations = vtkSmartPointer<vtkIntArray>::New();
  step->SetName("Step");
  step->SetNumberOfTuples(rows);
  iterations->SetName("Iterations");
  iterations->SetNumberOfTuples(rows);
  for (vtkIdType k = 0; k < rows; ++k) {
    const Frame& frame = frames[k];
    time->SetValue(k, frame.time);
    step->SetValue(k, static_cast<int>(k));
    energy->SetValue(k, frame.energy);
    mass->SetValue(k, frame.mass);
    transport->SetValue(k, frame.transport);
    objective->SetValue(k, frame.objective);
    iterations->SetValue(k, frame.iterations);
  }
  for (vtkAbstractArray* array :
       std::initializer_list<vtkAbstractArray*>{time, step, energy, mass, transport, objective, iterations})
    table->AddColumn(array);

  // Commit: nothing above has touched the cache.
  this->frames = std::move(frames);
  this->mapping = problem.mapping;
  this->structure = vtkSmartPointer<vtkImageData>::New();
  this->structure->CopyStructure(image);
  {
    const jko::Energy energyOnGrid(problem.energy, problem.mapping.grid);
    this->potential = energyOnGrid.potentialOnGrid();
  }
  this->table = table;
  this->solver = kSolverNames[self->Solver];
  this->energy = problem.energy.describe();
  this->operatorFile = operatorFile;
  this->operatorMetadata = operatorMetadata;
  this->filterTime = filterTime;
  this->inputTime = inputTime;
  this->inputKey = inputKey;
  this->operatorKey = self->Solver != REFERENCE ? this->opPath + "@" + this->opStamp : std::string();
  this->valid = true;
  ++self->RolloutCount;
}

Problem vtkJKOGradientFlow::Internals::readProblem(vtkJKOGradientFlow* self, vtkImageData* image) const {
  Problem problem;
  bool cellData = false;
  std::string requested;
  vtkDataArray* array = selectedArray(self, 0, image, cellData, requested);
  if (!array) {
    if (!requested.empty())
      throw Error("The input has no " + std::string(cellData ? "cell" : "point") + "-data array named '" + requested +
                  "': choose an existing scalar array as the Density.");
    throw Error(
        "The input has no point-data scalar array to use as the density: choose one as the Density, or add one "
        "(e.g. with the Calculator or JKO Initial Density).");
  }
  problem.arrayName = arrayName(array);
  problem.mapping = jko::plugin::mapImage(image, cellData);
  problem.rho0 = jko::plugin::toDensity(array, problem.mapping);
  checkDensityValues(problem.rho0, problem.mapping.grid, problem.arrayName);

  at::Tensor potentialValues;
  if (self->Potential == ARRAY_POTENTIAL) {
    bool potentialCells = false;
    std::string potentialName;
    vtkDataArray* potential = selectedArray(self, 1, image, potentialCells, potentialName);
    if (!potential || potentialName.empty())
      throw Error("Potential is 'From array' but no Potential Array is chosen" +
                  (potentialName.empty() ? std::string() : " ('" + potentialName + "' is not on the input)") +
                  ": choose a scalar array of the input as the potential V.");
    if (potentialCells != cellData)
      throw Error("The potential array '" + potentialName + "' is " + (potentialCells ? "cell" : "point") +
                  " data but the density is " + (cellData ? "cell" : "point") +
                  " data: choose arrays of the same kind (Point Data To Cell Data converts).");
    potentialValues = jko::plugin::toDensity(potential, problem.mapping, "the Potential Array");
    if (!at::isfinite(potentialValues).all().item<bool>())
      throw Error("The potential array '" + potentialName +
                  "' has NaN or infinite values: V must be finite. Replace them (e.g. with the Calculator) or choose "
                  "another Potential Array.");
  }
  problem.energy = this->panelEnergy(self, problem.mapping, potentialValues);
  try {
    problem.energy.validate(problem.mapping.grid.dim);
  } catch (const jko::InvalidParameter& error) {
    throw Error(std::string("Energy: ") + error.what() + ". " + remedy(error));
  }
  problem.device = this->chooseDevice(self);

  std::ostringstream key;
  key.precision(17);
  int extent[6];
  image->GetExtent(extent);
  for (int value : extent) key << value << " ";
  for (int a = 0; a < 3; ++a) key << image->GetOrigin()[a] << " " << image->GetSpacing()[a] << " ";
  key << cellData << " " << hashTensor(problem.rho0) << " "
      << (potentialValues.defined() ? hashTensor(potentialValues) : std::string("-"));
  problem.key = key.str();
  return problem;
}

jko::EnergySpec vtkJKOGradientFlow::Internals::panelEnergy(vtkJKOGradientFlow* self,
                                                           const jko::plugin::ImageGridMapping& mapping,
                                                           const at::Tensor& potentialValues) const {
  jko::EnergySpec spec;
  switch (self->EnergyPreset) {
    case POROUS_MEDIUM:
      spec = jko::EnergySpec::porousMedium(self->Exponent, self->Diffusion);
      break;
    case FOKKER_PLANCK:
      spec = jko::EnergySpec::heat(self->Diffusion);  // the potential is chosen below
      break;
    case AGGREGATION:
      spec = jko::EnergySpec::aggregation(self->Attraction, self->Repulsion);
      spec.attractivePower = self->AttractivePower;
      spec.repulsivePower = self->RepulsivePower;
      break;
    case AGGREGATION_DIFFUSION:
      spec = jko::EnergySpec::aggregationDiffusion(self->Diffusion, self->Attraction);
      break;
    case KELLER_SEGEL:
      spec = jko::EnergySpec::kellerSegel(self->Diffusion, self->Attraction);
      break;
  }
  // Potential parameters are given per image axis (x, y, z); grid axis a is
  // image axis mapping.imageAxis[a].
  spec.potential = jko::PotentialKind::None;
  switch (self->Potential) {
    case QUADRATIC_POTENTIAL:
    case DOUBLE_WELL_POTENTIAL:
      spec.potential =
          self->Potential == QUADRATIC_POTENTIAL ? jko::PotentialKind::Quadratic : jko::PotentialKind::DoubleWell;
      for (int a = 0; a < 3; ++a) {
        const int axis = mapping.imageAxis[a];
        // NaN is core's "centre of the box": a NaN in the panel must not silently mean that.
        if (!self->PotentialCentredInBox && a < mapping.grid.dim && std::isnan(self->PotentialCentre[axis]))
          throw Error(std::string("Potential Centre is nan along ") + "xyz"[axis] +
                      ": give a finite centre, or turn on Potential Centred In Box.");
        spec.potentialStrength[a] = a < mapping.grid.dim ? self->PotentialStrength[axis] : 0.0;
        spec.potentialCentre[a] = self->PotentialCentredInBox || a >= mapping.grid.dim
                                      ? std::numeric_limits<double>::quiet_NaN()
                                      : self->PotentialCentre[axis];
      }
      spec.wellDepth = self->WellDepth;
      spec.wellHalfWidth = self->WellHalfWidth;
      break;
    case ARRAY_POTENTIAL:
      spec.potential = jko::PotentialKind::Values;
      spec.potentialValues = potentialValues;
      break;
    default:
      break;
  }
  return spec;
}

void vtkJKOGradientFlow::Internals::checkMemory(vtkJKOGradientFlow* self, const Problem& problem) const {
  const jko::Grid& grid = problem.mapping.grid;
  const double nodes = static_cast<double>(grid.numNodes()), dim = grid.dim, bytes = sizeof(double);
  const double frames = self->NumberOfSteps + 1.0;
  // Cached frames (density + velocity), the L-BFGS history (2 x 20 vectors of
  // dim x nodes) with its temporaries, and the output arrays of one frame.
  const double needed = frames * nodes * (1 + dim) * bytes + nodes * dim * bytes * (2 * 20 + 30) + nodes * 8 * bytes;
  const double available = jko::plugin::availableMemory();
  if (needed > 0.8 * available) {
    std::ostringstream message;
    message << "The " << static_cast<long long>(frames) << " frames on the " << problem.mapping.describe()
            << " need about " << jko::plugin::describeBytes(needed) << " of memory but only "
            << jko::plugin::describeBytes(available)
            << " is available: reduce Number Of Steps or the grid (e.g. Resample To Image with fewer samples).";
    throw Error(message.str());
  }
}

at::Device vtkJKOGradientFlow::Internals::chooseDevice(vtkJKOGradientFlow* self) const {
  if (self->Device != CUDA) return at::kCPU;
  if (!jko::cudaAvailable())
    throw Error("Device is CUDA but this LibTorch (" + jko::libtorchVersion() +
                ") has no CUDA device here: set Device to CPU.");
  return at::Device(at::kCUDA);
}

// Progress of step k of K, given the L-BFGS iteration inside the step: the
// iteration count is unknown in advance, so the share of the step grows like
// i / (i + 100).
static double stepFraction(int k, int steps, double iterations) {
  return (k + iterations / (iterations + 100.0)) / steps;
}

namespace {
// Frame 0: the input density, its energy (also its "objective") and mass.
Frame initialFrame(const Problem& problem, const jko::Energy& energy, double time) {
  Frame frame;
  frame.density = problem.rho0;
  frame.time = time;
  frame.energy = energy(problem.rho0.unsqueeze(0)).item<double>();
  frame.objective = frame.energy;
  frame.mass = problem.rho0.sum().item<double>() * energy.grid().cellVolume();
  if (!std::isfinite(frame.energy)) {
    std::ostringstream message;
    message << "The energy of the input density is " << frame.energy << " (" << energy.spec().describe()
            << "): the density's values (maximum " << problem.rho0.max().item<double>()
            << ") are too large for it in double precision. Rescale the density (e.g. with the Calculator) or lower "
               "the energy's parameters.";
    throw Error(message.str());
  }
  return frame;
}
}  // namespace

std::vector<Frame> vtkJKOGradientFlow::Internals::rolloutReference(vtkJKOGradientFlow* self,
                                                                   const Problem& problem) const {
  const jko::Grid& grid = problem.mapping.grid;
  const double tau = self->TimeStep;
  const int steps = self->NumberOfSteps;
  const auto energy = std::make_shared<const jko::Energy>(problem.energy, grid);
  const auto objective = std::make_shared<const jko::JkoObjective>(energy, tau);
  jko::ReferenceSolverOptions options;
  options.maxIterations = std::max(1, self->MaximumIterations);
  // Large grids take ~10 ms per iteration: report often enough that the
  // progress bar never looks frozen.
  options.progressInterval = 5;
  const jko::ReferenceSolver solver(objective, options);

  std::vector<Frame> frames{initialFrame(problem, *energy, self->InitialTime)};

  at::Tensor rho = problem.rho0.to(problem.device), warmStart;
  for (int k = 0; k < steps; ++k) {
    const std::string prefix = "JKO step " + std::to_string(k + 1) + " of " + std::to_string(steps) + ": ";
    self->SetProgressText((prefix + "reference solver").c_str());
    self->UpdateProgress(stepFraction(k, steps, 0));
    const jko::ReferenceStep step = solver.step(rho, warmStart, [&](const jko::ProgressEvent& event) {
      const double iterations = event.fraction * options.maxIterations;
      self->SetProgressText((prefix + event.message).c_str());
      self->UpdateProgress(stepFraction(k, steps, iterations));
      return !self->GetAbortExecute();
    });
    if (self->GetAbortExecute()) throw jko::Cancelled();
    rho = step.next;
    warmStart = step.displacement;
    Frame frame;
    frame.density = step.next.to(at::kCPU, at::kDouble);
    frame.time = self->InitialTime + (k + 1) * tau;
    frame.energy = (*energy)(frame.density.unsqueeze(0)).item<double>();
    frame.mass = frame.density.sum().item<double>() * grid.cellVolume();
    frame.transport = step.transport;
    frame.objective = step.objective;
    frame.iterations = step.iterations;
    frames.back().velocity = step.displacement.to(at::kCPU, at::kDouble) / tau;  // the step leaving frame k
    frames.push_back(frame);
  }
  frames.back().velocity = frames[frames.size() - 2].velocity;  // steps >= 1
  self->UpdateProgress(1.0);
  return frames;
}

std::string vtkJKOGradientFlow::Internals::operatorPath(vtkJKOGradientFlow* self) const {
  const std::string file = self->OperatorFile ? self->OperatorFile : "";
  if (!this->trainedPath.empty() && file == this->operatorFileAtTraining) return this->trainedPath;
  return file;
}

void vtkJKOGradientFlow::Internals::writeFrame(vtkJKOGradientFlow* self, int k, vtkImageData* output,
                                               vtkTable* tableOutput) const {
  const Frame& frame = this->frames[k];
  auto image = vtkSmartPointer<vtkImageData>::New();
  image->CopyStructure(this->structure);
  vtkDataSetAttributes* attributes =
      this->mapping.cellData ? static_cast<vtkDataSetAttributes*>(image->GetCellData()) : image->GetPointData();
  attributes->SetScalars(jko::plugin::toScalarArray(frame.density, this->mapping, "density"));
  attributes->SetVectors(jko::plugin::toVectorArray(frame.velocity, this->mapping, "velocity"));
  if (this->potential.defined())
    attributes->AddArray(jko::plugin::toScalarArray(this->potential, this->mapping, "potential"));

  vtkFieldData* field = image->GetFieldData();
  field->AddArray(scalarField("Time", frame.time));
  auto stepArray = vtkSmartPointer<vtkIntArray>::New();
  stepArray->SetName("Step");
  stepArray->InsertNextValue(k);
  field->AddArray(stepArray);
  field->AddArray(scalarField("Energy", frame.energy));
  field->AddArray(scalarField("Mass", frame.mass));
  field->AddArray(scalarField("TransportCost", frame.transport));
  field->AddArray(scalarField("Objective", frame.objective));
  field->AddArray(scalarField("TimeStep", self->TimeStep));
  auto rollouts = vtkSmartPointer<vtkIntArray>::New();
  rollouts->SetName("RolloutCount");
  rollouts->InsertNextValue(self->RolloutCount);
  field->AddArray(rollouts);
  field->AddArray(stringField("Solver", this->solver));
  field->AddArray(stringField("EnergyDescription", this->energy));
  field->AddArray(stringField("OperatorFile", this->operatorFile));
  field->AddArray(stringField("OperatorMetadata", this->operatorMetadata));

  output->ShallowCopy(image);
  output->GetInformation()->Set(vtkDataObject::DATA_TIME_STEP(), frame.time);
  tableOutput->ShallowCopy(this->table);
  tableOutput->GetInformation()->Set(vtkDataObject::DATA_TIME_STEP(), frame.time);
}

void vtkJKOGradientFlow::Internals::loadOperator(vtkJKOGradientFlow* self) {
  const std::string path = this->operatorPath(self);
  if (path.empty())
    throw Error(std::string("Solver is '") + kSolverNames[self->Solver] +
                "' but no operator is chosen: set Operator File to a .jko (or TorchScript .pt) file, or press Train "
                "to train one.");
  const at::Device device = this->chooseDevice(self);
  const std::string stamp = fileStamp(path);
  if (stamp.empty())
    throw Error("Operator File '" + path +
                "' does not exist: choose an existing operator file (.jko or .pt), or press Train to train one.");
  if (this->op && path == this->opPath && stamp == this->opStamp && device.str() == this->opDevice) return;
  this->op.reset();
  this->description.clear();
  this->energyText.clear();
  this->opTau = 0;
  try {
    this->op = jko::LearnedOperator::load(path, device);
  } catch (const c10::Error& error) {
    throw Error("Operator File '" + path + "' cannot be read (" + error.what_without_backtrace() +
                "): choose a valid operator file (.jko or .pt), or press Train to train one.");
  } catch (const std::exception& error) {
    throw Error("Operator File '" + path + "' cannot be read (" + error.what() +
                "): choose a valid operator file (.jko or .pt), or press Train to train one.");
  }
  this->opPath = path;
  this->opStamp = stamp;
  this->opDevice = device.str();
  const jko::OperatorMetadata& metadata = this->op->metadata();
  std::ostringstream description;
  description << metadata.dim << "D " << metadata.network.kind << " operator for " << metadata.energy.describe()
              << ", tau " << metadata.tau;
  if (metadata.training.contains("mode"))
    description << "; trained by " << metadata.training.value("mode", std::string()) << " on grids of "
                << metadata.ranges.gridMin
                << (metadata.ranges.gridMax != metadata.ranges.gridMin ? "-" + std::to_string(metadata.ranges.gridMax)
                                                                       : std::string())
                << " nodes per axis";
  description << " (" << path << ")";
  this->description = description.str();
  this->energyText = metadata.energy.describe();
  this->opTau = metadata.tau;
}

void vtkJKOGradientFlow::Internals::checkOperator(vtkJKOGradientFlow* self, const Problem& problem) const {
  const jko::OperatorMetadata& metadata = this->op->metadata();
  const jko::Grid& grid = problem.mapping.grid;
  const std::string where = "The operator in '" + this->opPath + "'";
  if (metadata.dim != grid.dim)
    throw Error(where + " is for " + std::to_string(metadata.dim) + "D densities but the input is " +
                std::to_string(grid.dim) + "D: choose a " + std::to_string(grid.dim) +
                "D operator or press Train to train one.");
  // In the learned modes the energy and tau are the operator's: a panel value
  // that contradicts it is an error, never silently overridden.
  std::string difference;
  if (!metadata.energy.sameAs(problem.energy, &difference, problem.mapping.grid.dim))
    throw Error(where + " was trained for the energy " + metadata.energy.describe() + " but the panel's energy is " +
                problem.energy.describe() + " (" + difference +
                "): set the energy to the operator's (shown as Operator Energy) or press Train to train an operator "
                "for this energy.");
  if (std::abs(metadata.tau - self->TimeStep) > 1e-9 * metadata.tau) {
    std::ostringstream message;
    message << where << " was trained for tau = " << metadata.tau << " but Time Step is " << self->TimeStep
            << ": set Time Step to " << metadata.tau
            << " or press Train to train an operator for tau = " << self->TimeStep << ".";
    throw Error(message.str());
  }
  try {
    for (const std::string& warning : this->op->checkCompatible(grid, &problem.energy, self->TimeStep))
      vtkWarningWithObjectMacro(self, << "The operator may be inaccurate here: " << warning << ".");
  } catch (const jko::OperatorFileError& error) {
    throw Error(where + " does not fit the input: " + error.what() + ".");
  }
}

std::vector<Frame> vtkJKOGradientFlow::Internals::rolloutLearned(vtkJKOGradientFlow* self, const Problem& problem,
                                                                 bool refine) const {
  const jko::Grid& grid = problem.mapping.grid;
  const double tau = self->TimeStep;
  const int steps = self->NumberOfSteps;
  // Diagnostics on the CPU with the panel's energy (equal to the operator's).
  const auto energy = std::make_shared<const jko::Energy>(problem.energy, grid);
  const auto objective = std::make_shared<const jko::JkoObjective>(energy, tau);
  jko::ReferenceSolverOptions options;
  options.maxIterations = std::max(1, self->RefineIterations);
  const jko::ReferenceSolver refiner(this->op->objectiveOn(grid), options);

  std::vector<Frame> frames{initialFrame(problem, *energy, self->InitialTime)};

  at::Tensor rho = problem.rho0.to(problem.device);
  for (int k = 0; k < steps; ++k) {
    const std::string prefix = "JKO step " + std::to_string(k + 1) + " of " + std::to_string(steps) + ": ";
    self->SetProgressText((prefix + (refine ? "learned operator + refine" : "learned operator")).c_str());
    self->UpdateProgress(static_cast<double>(k) / steps);
    if (self->GetAbortExecute()) throw jko::Cancelled();
    const jko::LearnedStep learned = this->op->step(rho, grid);
    Frame frame;
    at::Tensor displacement;
    if (refine) {
      const jko::ReferenceStep step = refiner.step(rho, tau * learned.velocity);
      rho = step.next;
      displacement = step.displacement;
      frame.iterations = step.iterations;
    } else {
      rho = learned.next;
      displacement = tau * learned.velocity;
    }
    frame.density = rho.to(at::kCPU, at::kDouble);
    displacement = displacement.to(at::kCPU, at::kDouble);
    {
      // The step's transport cost and objective, J(u) of DESIGN.md §2.2.
      at::NoGradGuard noGrad;
      const jko::JkoState state = objective->prepare(frames.back().density);
      const jko::JkoTerms terms = objective->evaluate(state, displacement.unsqueeze(0));
      frame.transport = terms.transport.item<double>();
      frame.objective = terms.objective.item<double>();
    }
    frame.time = self->InitialTime + (k + 1) * tau;
    frame.energy = (*energy)(frame.density.unsqueeze(0)).item<double>();
    frame.mass = frame.density.sum().item<double>() * grid.cellVolume();
    frames.back().velocity = displacement / tau;
    frames.push_back(frame);
  }
  frames.back().velocity = frames[frames.size() - 2].velocity;
  self->UpdateProgress(1.0);
  return frames;
}

void vtkJKOGradientFlow::Internals::train(vtkJKOGradientFlow* self, const Problem& problem,
                                          vtkInformationVector** inputVector) {
  const std::string path = self->TrainedOperatorFile ? self->TrainedOperatorFile : "";
  if (path.empty())
    throw Error("Trained Operator File is empty: choose where to save the operator, then press Train again.");
  const jko::Grid& grid = problem.mapping.grid;
  const int dim = grid.dim;

  // The trainer works on the input's own grid and box.
  jko::TrainingOptions options = jko::TrainingOptions::defaultsFor(problem.energy, dim);
  options.energy = problem.energy;
  options.dim = dim;
  options.gridShape = grid.n;
  for (int a = 0; a < dim; ++a) {
    options.boxLower[a] = grid.boxLower(a);
    options.boxUpper[a] = grid.boxUpper(a);
  }
  options.tau = self->TimeStep;
  options.mode = self->TrainingMode == INITIAL_ONLY ? "initial-only" : "learn-to-evolve";
  options.rounds = self->TrainingRounds;
  options.epochs = self->TrainingEpochs;
  options.batch = self->TrainingBatchSize;
  options.learningRate = self->TrainingLearningRate;
  options.horizon = self->TrainingHorizon;
  options.generated = self->GeneratedDensities;
  options.validation = self->ValidationDensities;
  options.seed = static_cast<uint64_t>(self->TrainingSeed);
  options.maxSeconds = self->MaximumTrainingSeconds;
  options.device = problem.device.is_cuda() ? "cuda" : "cpu";
  const jko::Grid trainingGrid = jko::Grid::box(dim, options.cells(), options.boxLower, options.boxUpper);
  options.extraDensities.push_back(problem.rho0);
  for (int i = 0; i < inputVector[1]->GetNumberOfInformationObjects(); ++i) {
    vtkDataObject* object = vtkDataObject::GetData(inputVector[1], i);
    vtkImageData* extra = vtkImageData::SafeDownCast(object);
    const std::string which = "Training density " + std::to_string(i + 1);
    if (!extra)
      throw Error(which + " is " + (object ? std::string("a ") + object->GetClassName() : std::string("missing")) +
                  ", not image data: connect images on the input's grid to Training Densities.");
    const bool cellData = problem.mapping.cellData;
    vtkDataSetAttributes* attributes =
        cellData ? static_cast<vtkDataSetAttributes*>(extra->GetCellData()) : extra->GetPointData();
    vtkDataArray* array = attributes->GetArray(problem.arrayName.c_str());
    if (!array) array = attributes->GetScalars();
    if (!array)
      throw Error(which + " has no array '" + problem.arrayName + "' and no active scalars: give it a density array.");
    const jko::plugin::ImageGridMapping extraMapping = jko::plugin::mapImage(extra, cellData);
    if (!extraMapping.grid.sameAs(trainingGrid))
      throw Error(which + " is a " + extraMapping.describe() + " but training runs on " + trainingGrid.describe() +
                  ": resample it onto the input's grid (Resample To Image).");
    const at::Tensor rho = jko::plugin::toDensity(array, extraMapping);
    try {
      checkDensityValues(rho, trainingGrid, arrayName(array));
    } catch (const Error& error) {
      throw Error(which + ": " + error.what());
    }
    options.extraDensities.push_back(rho);
  }
  // Cover the user's densities with the generator's ranges: porous-medium and
  // interaction speeds depend on the absolute density (DESIGN.md §2.3).
  for (const at::Tensor& rho : options.extraDensities) {
    const double peak = rho.max().item<double>(), mass = rho.sum().item<double>() * trainingGrid.cellVolume();
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

  bool reused = false;
  if (self->ReuseTrainedOperator && !fileStamp(path).empty()) {
    try {
      const auto saved = jko::LearnedOperator::load(path, at::kCPU);
      reused = saved->metadata().training.value("plugin_request", nlohmann::json()) == request;
    } catch (const std::exception&) {
      // Not a usable operator: train and overwrite it.
    }
  }
  if (reused) {
    self->SetProgressText(("Training: reusing the operator trained with these settings in " + path).c_str());
  } else {
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
    std::unique_ptr<jko::LearnToEvolveTrainer> trainer;
    try {
      trainer = std::make_unique<jko::LearnToEvolveTrainer>(options);
    } catch (const jko::InvalidParameter& error) {
      throw Error(std::string("Training: ") + error.what() + ". " + remedy(error));
    }
    self->SetProgressText("Training: preparing");
    self->UpdateProgress(0);
    jko::TrainingResult result = trainer->train([self](const jko::ProgressEvent& event) {
      std::string text = "Training: " + event.message;
      if (event.message.empty()) {
        std::ostringstream out;
        out << "Training: round " << event.round << ", epoch " << event.epoch << ", loss " << event.loss;
        text = out.str();
      }
      self->SetProgressText(text.c_str());
      self->UpdateProgress(std::clamp(event.fraction, 0.0, 1.0));
      return !self->GetAbortExecute();
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
          self, << "Training stopped at Maximum Training Seconds (" << options.maxSeconds << " s) in round "
                << result.summary.value("per_round", nlohmann::json::array()).size() << " of " << options.rounds
                << ": the operator saved to '" << path
                << "' is the best so far and may be undertrained. Raise Maximum Training Seconds (0: no cap) and "
                   "press Train again for a full training.");
  }
  // From now on the learned modes use the trained file (until Operator File changes).
  this->trainedPath = path;
  this->operatorFileAtTraining = self->OperatorFile ? self->OperatorFile : "";
  this->op.reset();
  this->loadOperator(self);
}

void vtkJKOGradientFlow::PrintSelf(ostream& os, vtkIndent indent) {
  this->Superclass::PrintSelf(os, indent);
  os << indent << "Solver: " << kSolverNames[this->Solver] << "\n";
  os << indent << "EnergyPreset: " << this->EnergyPreset << "\n";
  os << indent << "Diffusion: " << this->Diffusion << "\n";
  os << indent << "Exponent: " << this->Exponent << "\n";
  os << indent << "Potential: " << this->Potential << "\n";
  os << indent << "PotentialStrength: " << this->PotentialStrength[0] << " " << this->PotentialStrength[1] << " "
     << this->PotentialStrength[2] << "\n";
  os << indent << "PotentialCentredInBox: " << this->PotentialCentredInBox << "\n";
  os << indent << "PotentialCentre: " << this->PotentialCentre[0] << " " << this->PotentialCentre[1] << " "
     << this->PotentialCentre[2] << "\n";
  os << indent << "WellDepth: " << this->WellDepth << "\n";
  os << indent << "WellHalfWidth: " << this->WellHalfWidth << "\n";
  os << indent << "Attraction: " << this->Attraction << "\n";
  os << indent << "Repulsion: " << this->Repulsion << "\n";
  os << indent << "AttractivePower: " << this->AttractivePower << "\n";
  os << indent << "RepulsivePower: " << this->RepulsivePower << "\n";
  os << indent << "TimeStep: " << this->TimeStep << "\n";
  os << indent << "NumberOfSteps: " << this->NumberOfSteps << "\n";
  os << indent << "InitialTime: " << this->InitialTime << "\n";
  os << indent << "MaximumIterations: " << this->MaximumIterations << "\n";
  os << indent << "RefineIterations: " << this->RefineIterations << "\n";
  os << indent << "OperatorFile: " << (this->OperatorFile ? this->OperatorFile : "(none)") << "\n";
  os << indent << "Device: " << (this->Device == CUDA ? "CUDA" : "CPU") << "\n";
  os << indent << "NumberOfThreads: " << this->NumberOfThreads << "\n";
  os << indent << "TrainingRounds: " << this->TrainingRounds << "\n";
  os << indent << "TrainingEpochs: " << this->TrainingEpochs << "\n";
  os << indent << "TrainingBatchSize: " << this->TrainingBatchSize << "\n";
  os << indent << "TrainingLearningRate: " << this->TrainingLearningRate << "\n";
  os << indent << "TrainingHorizon: " << this->TrainingHorizon << "\n";
  os << indent << "GeneratedDensities: " << this->GeneratedDensities << "\n";
  os << indent << "ValidationDensities: " << this->ValidationDensities << "\n";
  os << indent << "TrainingSeed: " << this->TrainingSeed << "\n";
  os << indent << "TrainingMode: " << (this->TrainingMode == INITIAL_ONLY ? "initial-only" : "learn-to-evolve") << "\n";
  os << indent << "MaximumTrainingSeconds: " << this->MaximumTrainingSeconds << "\n";
  os << indent << "TrainedOperatorFile: " << (this->TrainedOperatorFile ? this->TrainedOperatorFile : "(none)") << "\n";
  os << indent << "ReuseTrainedOperator: " << this->ReuseTrainedOperator << "\n";
  os << indent << "TrainingRequested: " << this->TrainingRequested << "\n";
  os << indent << "RolloutCount: " << this->RolloutCount << "\n";
}
