#include "vtkJKOGradientFlow.h"

#include <c10/util/Exception.h>
#include <vtkCellData.h>
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
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "JKOFlowInput.h"
#include "JKOFrameCache.h"
#include "JKOImageConversion.h"
#include "JKOLoadedOperator.h"
#include "JKOPieces.h"
#include "JKOSlabPieces.h"
#include "JKOTraining.h"
#include "numerics/Energy.h"
#include "numerics/Errors.h"
#include "operator/AutoSolver.h"
#include "operator/LearnedOperator.h"
#include "operator/TrainingRangeCheck.h"
#include "parallel/Communicator.h"
#include "parallel/DistributedReferenceSolver.h"
#include "parallel/SlabDecomposition.h"
#include "runtime/Runtime.h"

vtkStandardNewMacro(vtkJKOGradientFlow);

namespace {

using jko::Error;
using jko::plugin::SolverKind;

// More frames than this are refused before anything is allocated (the
// TIME_STEPS vector alone would be megabytes).
constexpr int kMaximumSteps = 1000000;
// The panel's range: far more threads than cores only slows LibTorch down
// (100000 of them stalled a 32^2 update for more than nine minutes).
constexpr int kMaximumThreads = 256;

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

vtkSmartPointer<vtkIntArray> integerField(const char* name, int value) {
  auto array = vtkSmartPointer<vtkIntArray>::New();
  array->SetName(name);
  array->InsertNextValue(value);
  return array;
}

bool contains(const std::string& text, const char* phrase) { return text.find(phrase) != std::string::npos; }

// The training-range warnings of a new rollout as one message: a line per
// quantity (core's sentence: quantity, value, trained range, what to do).
// The advice to turn on Fit To Unit Box is given once per rollout: here only
// when the image's box is not the operator's (an image in pixel units) and
// the step-length warning did not give it already.
std::string rangeMessage(const std::vector<jko::RangeWarning>& warnings, const std::string& operatorPath,
                         SolverKind solver, bool scaled, bool unitsSaid) {
  std::ostringstream message;
  message << "JKO Gradient Flow: the operator in '" << operatorPath << "' is used outside what it was trained on ("
          << warnings.size() << (warnings.size() == 1 ? " quantity" : " quantities") << "):";
  bool box = false;
  for (const jko::RangeWarning& w : warnings) {
    message << "\n- " << w.message;
    box = box || contains(w.quantity, "box length");
  }
  message << "\n" << jko::plugin::rangeAdvice(solver).substr(1);  // its leading space follows a sentence elsewhere
  if (box && !scaled && !unitsSaid)
    message << " If the image is in its own units (pixels), turn on Fit To Unit Box: the flow then runs on the image "
               "scaled to a longest side of 1 and a mass of 1.";
  return message.str();
}

}  // namespace

struct vtkJKOGradientFlow::Internals {
  jko::plugin::FrameCache frames;
  jko::plugin::LoadedOperator op;

  // What the output needs besides the cached frames.
  jko::plugin::ImageGridMapping mapping;    ///< the input image's samples
  jko::plugin::UnitBoxScaling scaling;      ///< Fit To Unit Box
  vtkSmartPointer<vtkImageData> structure;  ///< the input's geometry, without arrays
  at::Tensor potential;                     ///< V for display (a split rollout: the rank's planes), or undefined
  std::string energy, operatorFile, operatorMetadata;

  // The fast path skips reading the input when neither the properties, nor
  // the input data object, nor the operator file changed.
  bool valid = false;
  vtkMTimeType filterTime = 0, inputTime = 0;
  std::string operatorStamp;

  // The last good output, kept with its time when an update fails (DESIGN.md §4).
  std::vector<double> times;  ///< the frame times published, kept while the settings are invalid
  vtkSmartPointer<vtkImageData> lastImage;
  vtkSmartPointer<vtkTable> lastTable;
  double lastTime = 0;
  /// A split rollout stopped at an abort request: every rank re-executes on
  /// the next update (GetMTime).
  bool resumeSplit = false;

  /// Validates the properties, reads the input unless nothing changed,
  /// trains first when Train() asked for it, and starts a new rollout when
  /// its settings or input changed.
  void prepare(vtkJKOGradientFlow* self, vtkInformationVector** inputVector);
  jko::EnergySpec panelEnergy(vtkJKOGradientFlow* self, const jko::plugin::FlowInput& input) const;
  /// The preset's energy with the panel's parameters, before any potential.
  static jko::EnergySpec presetEnergy(vtkJKOGradientFlow* self);
  /// From the panel, the input's whole extent and the density array of
  /// `image` (RequestUpdateExtent: the input of the last update, whose
  /// arrays say whether the density is point or cell data; empty before the
  /// first): the communicator when the reference solver's steps will be
  /// split over the ranks, else null. `slabExtent` gets this rank's slab of
  /// the input when the flow can start from it (not while training;
  /// `slabbed` says so), else the whole extent.
  /// On several ranks, `reason` says why the steps are not split.
  std::shared_ptr<const jko::Communicator> splitCandidate(vtkJKOGradientFlow* self, vtkInformation* inInfo,
                                                          vtkImageData* image, int slabExtent[6], bool& slabbed,
                                                          std::string* reason = nullptr) const;
  at::Device chooseDevice(vtkJKOGradientFlow* self) const;
  void checkMemory(vtkJKOGradientFlow* self, const jko::plugin::FlowInput& input, const jko::Communicator* split) const;
  /// Writes frame k (with the table of the frames computed up to the last
  /// one shown) into the outputs: the piece of the image `imageInfo` asks
  /// for (collective when the rollout is split).
  void writeFrame(vtkJKOGradientFlow* self, int k, vtkImageData* image, vtkTable* table,
                  vtkInformation* imageInfo) const;
  /// The threshold the frames are judged by: Auto's was fixed by its rollout
  /// (it is part of the key); the learned modes flag with the panel's.
  double thresholdFor(vtkJKOGradientFlow* self) const {
    const jko::plugin::RolloutSetup& setup = this->frames.setup();
    return setup.solver == SolverKind::Auto || !(self->CertificateThreshold > 0) ? setup.threshold
                                                                                 : self->CertificateThreshold;
  }
};

vtkJKOGradientFlow::vtkJKOGradientFlow()
    : CertificateThreshold(jko::AutoSolverOptions().threshold), Internal(new Internals) {
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

vtkMTimeType vtkJKOGradientFlow::GetMTime() {
  vtkMTimeType time = this->Superclass::GetMTime();
  if (this->Internal && this->Internal->resumeSplit) {
    // A stamp taken now is newer than the stopped update's output on every rank.
    vtkTimeStamp now;
    now.Modified();
    time = std::max(time, now.GetMTime());
  }
  return time;
}

double vtkJKOGradientFlow::GetDefaultCertificateThreshold() { return jko::AutoSolverOptions().threshold; }

const char* vtkJKOGradientFlow::GetOperatorDescription() { return this->Internal->op.description().c_str(); }
double vtkJKOGradientFlow::GetOperatorTimeStep() { return this->Internal->op.tau(); }
const char* vtkJKOGradientFlow::GetOperatorEnergy() { return this->Internal->op.energyText().c_str(); }

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
  tableInfo->Remove(vtkAlgorithm::CAN_PRODUCE_SUB_EXTENT());
  // Each rank outputs the piece asked of it.
  jko::plugin::declareSubExtents(imageInfo);

  const int steps = this->NumberOfSteps;
  std::vector<double>& times = this->Internal->times;
  if (this->TimeStep > 0 && std::isfinite(this->TimeStep) && std::isfinite(this->InitialTime) && steps >= 1 &&
      steps <= kMaximumSteps) {
    times.resize(steps + 1);
    for (int k = 0; k <= steps; ++k) times[k] = this->InitialTime + k * this->TimeStep;
  }
  // Invalid settings (RequestData says which) keep the last good frames'
  // times, so that the view keeps showing the last good frame at its time.
  if (!times.empty()) {
    const double range[2] = {times.front(), times.back()};
    for (vtkInformation* info : {imageInfo, tableInfo}) {
      info->Set(vtkStreamingDemandDrivenPipeline::TIME_STEPS(), times.data(), static_cast<int>(times.size()));
      info->Set(vtkStreamingDemandDrivenPipeline::TIME_RANGE(), range, 2);
    }
  }

  vtkInformation* inInfo = inputVector[0]->GetInformationObject(0);
  if (inInfo && inInfo->Has(vtkStreamingDemandDrivenPipeline::WHOLE_EXTENT()))
    imageInfo->CopyEntry(inInfo, vtkStreamingDemandDrivenPipeline::WHOLE_EXTENT());

  // Best effort, so that the panel shows the operator before the first
  // update; RequestData reports any error.
  if (this->Solver != REFERENCE) {
    try {
      this->Internal->op.load(this->OperatorFile ? this->OperatorFile : "", this->Internal->chooseDevice(this),
                              jko::plugin::solverName(static_cast<SolverKind>(this->Solver)));
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
      // Split steps start from each rank's slab of the density; everything
      // else from the whole image on every rank.
      int slab[6];
      bool slabbed = false;
      if (port == 0 && i == 0 &&
          this->Internal->splitCandidate(this, inInfo, vtkImageData::GetData(inInfo), slab, slabbed) && slabbed)
        jko::plugin::requestInputExtent(inInfo, slab);
      else
        jko::plugin::requestWholeInput(inInfo);
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
    internal.prepare(this, inputVector);
    // Snap the requested time to its frame.
    int k = 0;
    if (imageInfo->Has(vtkStreamingDemandDrivenPipeline::UPDATE_TIME_STEP())) {
      const double t = imageInfo->Get(vtkStreamingDemandDrivenPipeline::UPDATE_TIME_STEP());
      k = static_cast<int>(std::clamp<double>(std::round((t - this->InitialTime) / this->TimeStep), 0.0,
                                              static_cast<double>(this->NumberOfSteps)));
    }
    const jko::plugin::Extension extension = internal.frames.extendTo(k, this, this->NumberOfSteps);
    internal.resumeSplit = extension.stopped && internal.frames.slabs();
    // The pieces of a parallel run: this rank's sub-extent, the table's rows in piece 0.
    internal.writeFrame(this, extension.last, image, table, imageInfo);
    vtkInformation* tableInfo = outputVector->GetInformationObject(1);
    jko::plugin::keepRowsInFirstPiece(table, tableInfo);
    jko::plugin::stampPiece(image, imageInfo);
    jko::plugin::stampPiece(table, tableInfo);
    internal.lastImage = vtkSmartPointer<vtkImageData>::New();
    internal.lastImage->ShallowCopy(image);
    internal.lastTable = vtkSmartPointer<vtkTable>::New();
    internal.lastTable->ShallowCopy(table);
    internal.lastTime = this->InitialTime + extension.last * this->TimeStep;
    this->SetProgressText(nullptr);
    if (extension.stopped && jko::plugin::reportsMessages())
      vtkWarningMacro(<< "JKO Gradient Flow: stopped at the abort request before frame " << extension.last + 1 << " of "
                      << k << ". Frames 0-" << extension.last << " are kept and frame " << extension.last
                      << " (t = " << internal.lastTime
                      << ") is shown; clear the abort flag and update again to continue from there.");
    return 1;
  } catch (const c10::Error& error) {
    vtkErrorMacro(<< "JKO Gradient Flow: LibTorch failed: " << error.what_without_backtrace());
  } catch (const jko::Cancelled&) {
    vtkErrorMacro(<< "JKO Gradient Flow: cancelled; the last complete output is kept.");
  } catch (const std::exception& error) {
    vtkErrorMacro(<< error.what());
  }
  // No half-written output: the last good one with its own time, or nothing.
  this->SetProgressText(nullptr);
  image->Initialize();
  table->Initialize();
  if (internal.lastImage) {
    image->ShallowCopy(internal.lastImage);
    table->ShallowCopy(internal.lastTable);
    image->GetInformation()->Set(vtkDataObject::DATA_TIME_STEP(), internal.lastTime);
    table->GetInformation()->Set(vtkDataObject::DATA_TIME_STEP(), internal.lastTime);
  }
  return 1;
}

void vtkJKOGradientFlow::Internals::prepare(vtkJKOGradientFlow* self, vtkInformationVector** inputVector) {
  vtkDataObject* inputObject = vtkDataObject::GetData(inputVector[0], 0);
  vtkImageData* image = vtkImageData::SafeDownCast(inputObject);
  if (!image) {
    if (!inputObject) throw Error("JKO Gradient Flow has no input: connect an image with a density array.");
    throw Error(std::string("The input is a ") + inputObject->GetClassName() +
                ", not image data: JKO Gradient Flow needs a vtkImageData with a density array (resample other data "
                "with Resample To Image first).");
  }
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

  const SolverKind solver = static_cast<SolverKind>(self->Solver);
  const bool learned = jko::plugin::usesOperator(solver);
  if (learned && (!(self->CertificateThreshold > 0) || !std::isfinite(self->CertificateThreshold))) {
    std::ostringstream message;
    message << "Certificate Threshold is " << self->CertificateThreshold
            << ": it is the estimated relative L1 error a frame may have and must be a number > 0, e.g. "
            << jko::AutoSolverOptions().threshold << " (the default).";
    throw Error(message.str());
  }
  const std::string operatorFile = self->OperatorFile ? self->OperatorFile : "";
  const bool training = self->TrainingRequested;
  const vtkMTimeType filterTime = self->GetMTime(), inputTime = image->GetMTime();
  const std::string operatorStamp = learned ? operatorFile + "@" + jko::plugin::fileStamp(operatorFile) : "";
  bool unchanged = !training && this->valid && filterTime == this->filterTime && inputTime == this->inputTime &&
                   operatorStamp == this->operatorStamp;
  // Ranks whose steps are split go on together or return together: a filter
  // modified on one rank alone (its abort flag set and cleared) would
  // otherwise call the rollout's collectives alone.
  vtkInformation* inInfo = inputVector[0]->GetInformationObject(0);
  int slabExtent[6];
  bool slabbed = false;
  std::string unsplit;  // why the steps are not split, on several ranks
  const std::shared_ptr<const jko::Communicator> split =
      this->splitCandidate(self, inInfo, image, slabExtent, slabbed, &unsplit);
  if (split) unchanged = split->max(unchanged ? 0.0 : 1.0) == 0;
  if (unchanged) return;

  jko::configureRuntime(self->NumberOfThreads > 0 ? self->NumberOfThreads
                                                  : static_cast<int>(std::thread::hardware_concurrency()));
  int wholeExtent[6];
  if (inInfo && inInfo->Has(vtkStreamingDemandDrivenPipeline::WHOLE_EXTENT()))
    inInfo->Get(vtkStreamingDemandDrivenPipeline::WHOLE_EXTENT(), wholeExtent);
  else
    image->GetExtent(wholeExtent);
  // A rollout split over the ranks starts from each rank's planes: its
  // slab, as RequestUpdateExtent asked for it, or the whole image (a first
  // update) cut to them, whichever arrived (ranks may differ in that).
  const jko::plugin::FlowInput input =
      split && slabbed
          ? jko::plugin::readFlowSlab(self, image, wholeExtent, split, self->Potential == ARRAY_POTENTIAL,
                                      self->FitToUnitBox)
          : jko::plugin::readFlowInput(self, image, self->Potential == ARRAY_POTENTIAL, self->FitToUnitBox);
  const jko::EnergySpec energy = this->panelEnergy(self, input);
  const at::Device device = this->chooseDevice(self);
  // One request, one training, even if it fails; the fast path opens again
  // only once everything below has succeeded.
  this->valid = false;
  self->TrainingRequested = false;
  this->checkMemory(self, input, split.get());

  if (training) {
    jko::plugin::TrainingSettings settings;
    settings.path = self->TrainedOperatorFile ? self->TrainedOperatorFile : "";
    settings.initialOnly = self->TrainingMode == INITIAL_ONLY;
    settings.rounds = self->TrainingRounds;
    settings.epochs = self->TrainingEpochs;
    settings.batch = self->TrainingBatchSize;
    settings.learningRate = self->TrainingLearningRate;
    settings.horizon = self->TrainingHorizon;
    settings.generated = self->GeneratedDensities;
    settings.validation = self->ValidationDensities;
    settings.seed = static_cast<uint64_t>(self->TrainingSeed);
    settings.maxSeconds = self->MaximumTrainingSeconds;
    settings.reuse = self->ReuseTrainedOperator;
    settings.ranks = jko::plugin::processPlace().ranks;
    const jko::plugin::TrainingOutcome outcome =
        jko::plugin::trainOperator(settings, input, energy, self->TimeStep, device, inputVector[1], self);
    // Operator File names the trained file from now on, so that a saved state
    // or a trace loads it. Set without Modified(): the frames computed so far
    // do not depend on it unless they are learned, and those are keyed by the
    // file below; a client copies the value into its property (TrainingCount).
    if (operatorFile != outcome.path) {
      delete[] self->OperatorFile;
      self->OperatorFile = new char[outcome.path.size() + 1];
      std::strcpy(self->OperatorFile, outcome.path.c_str());
    }
    ++self->TrainingCount;
    // Best effort, so that the panel describes the new operator whatever the solver.
    try {
      this->op.load(outcome.path, device, jko::plugin::solverName(solver));
    } catch (const Error&) {
    }
  }

  // Everything the frames are a function of, besides how many there are.
  std::ostringstream key;
  key.precision(17);
  key << input.key << "|" << static_cast<int>(solver) << "|" << energy.toJson().dump() << energy.potentialHash() << "|"
      << self->TimeStep << "|" << device.str() << "|" << self->NumberOfThreads;
  // A split rollout's frames hold slabs (and differ from one process's by rounding).
  if (split) key << "|split over " << split->size();
  jko::plugin::RolloutSetup setup;
  std::vector<jko::RangeWarning> rangeWarnings;
  if (solver == SolverKind::Reference || solver == SolverKind::Auto) key << "|" << self->MaximumIterations;
  key << "|completion " << (self->CompleteGridScale ? 1 : 0);
  if (learned) {
    const std::string path = self->OperatorFile ? self->OperatorFile : "";
    this->op.load(path, device, jko::plugin::solverName(solver));
    // The mass and peak of the whole density (over the ranks' slabs).
    jko::DensitySummary density = jko::DensitySummary::of(input.grid, input.rho0);
    if (input.slab) {
      density.mass = split->sum(density.mass);
      density.peak = split->max(density.peak);
    }
    rangeWarnings = this->op.check(energy, self->TimeStep, input.grid, density, input.mapping.imageAxis,
                                   solver == SolverKind::Auto, &setup.symmetry);
    key << "|" << this->op.path() << "@" << this->op.stamp();
    if (solver == SolverKind::LearnedRefined) key << "|" << self->RefineIterations;
    // Auto refines against the threshold; the other modes only flag frames
    // with it (the table applies it), so their frames do not depend on it.
    if (solver == SolverKind::Auto) key << "|" << self->CertificateThreshold;
    setup.op = this->op.op();
  }
  // A split rollout's ranks hold different slabs (and keys): they start
  // again together.
  bool restart = !this->frames.holds(key.str());
  if (split) restart = split->max(restart ? 1.0 : 0.0) > 0;
  if (restart) {
    setup.solver = solver;
    setup.grid = input.grid;
    setup.rho0 = input.rho0;
    setup.rho0IsSlab = input.slab;
    setup.energy = energy;
    setup.tau = self->TimeStep;
    setup.maxIterations = self->MaximumIterations;
    setup.completeGridScale = self->CompleteGridScale != 0;
    setup.refineIterations = self->RefineIterations;
    setup.threshold = self->CertificateThreshold;
    setup.device = device;
    setup.description = input.mapping.describe();
    setup.communicator = split;
    this->frames.clear();
    this->frames.start(setup, key.str());
    ++self->RolloutCount;
    const bool say = jko::plugin::reportsMessages();
    if (say && this->frames.slabs()) {
      const jko::SlabDecomposition& slabs = *this->frames.slabs();
      std::ostringstream line;
      std::string solverText = jko::plugin::solverName(solver);
      solverText[0] = static_cast<char>(std::tolower(solverText[0]));
      line << "JKO Gradient Flow: the " << solverText << (solver == SolverKind::Auto ? " solver" : "")
           << "'s steps are split over " << slabs.ranks() << " ranks, each computing and keeping a slab of "
           << slabs.owned(slabs.ranks() - 1).planes() << "-" << slabs.owned(0).planes() << " planes along "
           << "xyz"[input.mapping.imageAxis[0]] << " of every frame.\n";
      vtkOutputWindowDisplayText(line.str().c_str());
    } else if (say && !unsplit.empty()) {
      vtkOutputWindowDisplayText(("JKO Gradient Flow: every one of the " +
                                  std::to_string(jko::plugin::processPlace().ranks) +
                                  " ranks computes the whole frames and outputs its piece: " + unsplit + ".\n")
                                     .c_str());
    }
    if (say && !input.reduction.empty())
      vtkWarningWithObjectMacro(self, << "The array '" << input.arrayName << "' has "
                                      << (input.reduction == "its magnitude" ? "several" : "colour")
                                      << " components: the density is " << input.reduction
                                      << ". For another choice make a scalar array with the Calculator and choose it "
                                         "as the Density.");
    if (say && setup.symmetry.exact && !setup.symmetry.note.empty() && solver != SolverKind::Auto)
      vtkOutputWindowDisplayText(("JKO Gradient Flow: " + setup.symmetry.note + ".\n").c_str());
    const std::string scale = input.slab ? jko::plugin::stepLengthWarning(energy, input, self->TimeStep, split)
                                         : jko::plugin::stepLengthWarning(energy, input, self->TimeStep);
    if (say && !scale.empty()) vtkWarningWithObjectMacro(self, << scale);
    // Said when a rollout starts, not on every update that reuses its frames.
    if (say && !rangeWarnings.empty())
      vtkWarningWithObjectMacro(self, << rangeMessage(rangeWarnings, this->op.path(), solver, input.scaling.active,
                                                      contains(scale, "Fit To Unit Box")));

    this->mapping = input.mapping;
    this->scaling = input.scaling;
    this->structure = vtkSmartPointer<vtkImageData>::New();
    this->structure->CopyStructure(image);
    this->structure->SetExtent(wholeExtent);  // a slab's image is the whole image's part
    // V for display: the rank's planes of a split rollout.
    this->potential = this->frames.splitObjective() ? this->frames.splitObjective()->potentialOnOwned()
                                                    : jko::Energy(energy, input.grid).potentialOnGrid();
    this->energy = energy.describe();
    this->operatorFile = learned ? this->op.path() : std::string();
    this->operatorMetadata = learned ? this->op.op()->metadata().toJson().dump() : std::string();
  }
  this->filterTime = filterTime;
  this->inputTime = inputTime;
  this->operatorStamp = learned ? std::string(self->OperatorFile ? self->OperatorFile : "") + "@" +
                                      jko::plugin::fileStamp(self->OperatorFile ? self->OperatorFile : "")
                                : "";
  this->valid = true;
}

jko::EnergySpec vtkJKOGradientFlow::Internals::presetEnergy(vtkJKOGradientFlow* self) {
  jko::EnergySpec spec;
  switch (self->EnergyPreset) {
    case POROUS_MEDIUM:
      spec = jko::EnergySpec::porousMedium(self->Exponent, self->Diffusion);
      break;
    case FOKKER_PLANCK:
      spec = jko::EnergySpec::heat(self->Diffusion);  // the potential is the panel's (panelEnergy)
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
  return spec;
}

jko::EnergySpec vtkJKOGradientFlow::Internals::panelEnergy(vtkJKOGradientFlow* self,
                                                           const jko::plugin::FlowInput& input) const {
  const jko::plugin::ImageGridMapping& mapping = input.mapping;
  jko::EnergySpec spec = presetEnergy(self);
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
        // The centre is given in the image's coordinates, whatever the flow's units.
        spec.potentialCentre[a] = self->PotentialCentredInBox || a >= mapping.grid.dim
                                      ? std::numeric_limits<double>::quiet_NaN()
                                      : input.scaling.toUnitBox(a, self->PotentialCentre[axis]);
      }
      spec.wellDepth = self->WellDepth;
      spec.wellHalfWidth = self->WellHalfWidth;
      break;
    case ARRAY_POTENTIAL:
      spec.potential = jko::PotentialKind::Values;
      spec.potentialValues = input.potentialValues;
      break;
    default:
      break;
  }
  try {
    spec.validate(input.grid.dim);
  } catch (const jko::InvalidParameter& error) {
    throw Error(std::string("Energy: ") + error.what() + ". " + jko::plugin::panelRemedy(error));
  }
  return spec;
}

at::Device vtkJKOGradientFlow::Internals::chooseDevice(vtkJKOGradientFlow* self) const {
  if (self->Device != CUDA) return at::kCPU;
  if (!jko::cudaAvailable())
    throw Error("Device is CUDA but this LibTorch (" + jko::libtorchVersion() +
                ") has no CUDA device here: set Device to CPU.");
  return at::Device(at::kCUDA);
}

std::shared_ptr<const jko::Communicator> vtkJKOGradientFlow::Internals::splitCandidate(vtkJKOGradientFlow* self,
                                                                                       vtkInformation* inInfo,
                                                                                       vtkImageData* image,
                                                                                       int slabExtent[6], bool& slabbed,
                                                                                       std::string* reason) const {
  slabbed = false;
  auto refuse = [&](const std::string& why) {
    if (reason) *reason = why;
    return nullptr;
  };
  if (!inInfo || !inInfo->Has(vtkStreamingDemandDrivenPipeline::WHOLE_EXTENT())) return refuse("");
  inInfo->Get(vtkStreamingDemandDrivenPipeline::WHOLE_EXTENT(), slabExtent);
  const int ranks = jko::plugin::processPlace().ranks;
  if (ranks < 2) return refuse("");
  if (self->Device != CPU) return refuse("a split step runs on the CPU (Device)");
  // The density's samples, points or cells: the array the filter would take
  // from `image`, or before the first update the selected array among those
  // the input's information announces (XML readers list theirs). Without
  // either the image is read whole (RequestData then knows, or says what is
  // missing).
  bool cellData = false;
  std::string requested;
  if (!(image && jko::plugin::selectedArray(self, 0, image, cellData, requested)) &&
      !jko::plugin::announcedAssociation(self, 0, inInfo, cellData))
    return refuse("");
  auto whole = vtkSmartPointer<vtkImageData>::New();
  whole->SetExtent(slabExtent);
  jko::plugin::ImageGridMapping mapping;
  try {
    mapping = jko::plugin::mapImage(whole, cellData);
  } catch (const Error&) {
    return refuse("");  // RequestData reads the whole image and says what is wrong
  }
  if (mapping.grid.n[0] < 2 * static_cast<int64_t>(ranks))
    return refuse(std::string("the image has ") + std::to_string(mapping.grid.n[0]) + " samples along " +
                  "xyz"[mapping.imageAxis[0]] + ", fewer than 2 per rank");
  std::shared_ptr<const jko::Communicator> communicator = jko::plugin::pipelineCommunicator();
  if (!communicator) return refuse("this plugin or ParaView was built without MPI");
  // A slab of the input when the flow needs nothing else of the whole image.
  if (!self->TrainingRequested) {
    const jko::SlabDecomposition::Range own = jko::SlabDecomposition(mapping.grid, communicator).owned();
    const int axis = mapping.imageAxis[0], first = slabExtent[2 * axis];
    slabExtent[2 * axis] = first + static_cast<int>(own.lo);
    slabExtent[2 * axis + 1] = first + static_cast<int>(own.hi) - (cellData ? 0 : 1);
    slabbed = true;
  }
  if (reason) reason->clear();
  return communicator;
}

void vtkJKOGradientFlow::Internals::checkMemory(vtkJKOGradientFlow* self, const jko::plugin::FlowInput& input,
                                                const jko::Communicator* split) const {
  const jko::Grid& grid = input.grid;
  // A split rollout's frames and solver hold a slab of the grid on each rank.
  const double nodes = static_cast<double>(grid.numNodes()) / (split ? split->size() : 1), dim = grid.dim,
               bytes = sizeof(double);
  const double frames = self->NumberOfSteps + 1.0;
  // Cached frames (density + velocity), the L-BFGS history (2 x 20 vectors of
  // dim x nodes) with its temporaries, and the output arrays of one frame.
  const double needed = frames * nodes * (1 + dim) * bytes + nodes * dim * bytes * (2 * 20 + 30) + nodes * 8 * bytes;
  const double available = jko::plugin::availableMemory();
  bool short_ = needed > 0.8 * available;
  // All ranks of a split rollout refuse together, or none waits for the others.
  if (split) short_ = split->max(short_ ? 1.0 : 0.0) > 0;
  if (short_) {
    std::ostringstream message;
    message << "The " << static_cast<long long>(frames) << " frames on the " << input.mapping.describe()
            << " need about " << jko::plugin::describeBytes(needed) << " of memory but only "
            << jko::plugin::describeBytes(available)
            << " is available: reduce Number Of Steps or the grid (e.g. Resample To Image with fewer samples).";
    throw Error(message.str());
  }
}

void vtkJKOGradientFlow::Internals::writeFrame(vtkJKOGradientFlow* self, int k, vtkImageData* output,
                                               vtkTable* tableOutput, vtkInformation* imageInfo) const {
  const jko::plugin::Frame& frame = this->frames.frame(k);
  const double time = self->InitialTime + k * self->TimeStep;
  // The piece asked for: its samples cut from the frame, or put together
  // from the ranks' slabs of a split rollout (density and velocity in one
  // exchange).
  int whole[6], extent[6];
  this->structure->GetExtent(whole);
  jko::plugin::requestedExtent(imageInfo, whole, extent);
  const jko::plugin::SampleBox box = jko::plugin::samplesOfExtent(extent, whole, this->mapping);
  const jko::plugin::ImageGridMapping piece = jko::plugin::pieceMapping(this->mapping, box);
  const int dim = this->mapping.grid.dim;
  at::Tensor density, velocity, potential;
  if (const jko::SlabDecomposition* slabs = this->frames.slabs()) {
    std::vector<at::Tensor> channels{frame.density.unsqueeze(0), frame.velocity};
    if (this->potential.defined()) channels.push_back(this->potential.unsqueeze(0));
    const at::Tensor fields = jko::plugin::gatherBox(at::cat(channels), *slabs, box);
    density = fields[0];
    velocity = fields.narrow(0, 1, dim);
    if (this->potential.defined()) potential = fields[1 + dim];
  } else {
    density = jko::plugin::cropToBox(frame.density.unsqueeze(0), box, dim)[0];
    velocity = jko::plugin::cropToBox(frame.velocity, box, dim);
    if (this->potential.defined()) potential = jko::plugin::cropToBox(this->potential.unsqueeze(0), box, dim)[0];
  }
  auto image = vtkSmartPointer<vtkImageData>::New();
  image->CopyStructure(this->structure);
  image->SetExtent(extent);
  vtkDataSetAttributes* attributes =
      this->mapping.cellData ? static_cast<vtkDataSetAttributes*>(image->GetCellData()) : image->GetPointData();
  // Back to the image's units (Fit To Unit Box): rho = rho' M / L^d, v = v' L.
  if (this->scaling.active) {
    density = density * this->scaling.density;
    velocity = velocity * this->scaling.length;
  }
  attributes->SetScalars(jko::plugin::toScalarArray(density, piece, "density"));
  attributes->SetVectors(jko::plugin::toVectorArray(velocity, piece, "velocity"));
  if (potential.defined()) attributes->AddArray(jko::plugin::toScalarArray(potential, piece, "potential"));

  vtkFieldData* field = image->GetFieldData();
  field->AddArray(scalarField("Time", time));
  auto stepArray = vtkSmartPointer<vtkIntArray>::New();
  stepArray->SetName("Step");
  stepArray->InsertNextValue(k);
  field->AddArray(stepArray);
  field->AddArray(scalarField("Energy", frame.energy));
  field->AddArray(scalarField("Mass", frame.mass));
  field->AddArray(scalarField("TransportCost", frame.transport));
  field->AddArray(scalarField("Objective", frame.objective));
  field->AddArray(integerField("Iterations", frame.iterations));
  // The certificate of the step arriving at the frame, as in the table's row.
  const SolverKind solver = this->frames.setup().solver;
  const double threshold = this->thresholdFor(self);
  field->AddArray(scalarField("Certificate", frame.certificate));
  field->AddArray(scalarField("Descent", frame.descent));
  field->AddArray(scalarField("RelativeGap", frame.relativeGap));
  field->AddArray(scalarField("W2Estimate", frame.w2Estimate));
  field->AddArray(scalarField("SpreadMass", frame.spreadMass));
  field->AddArray(integerField("UnderResolved", frame.underResolved() ? 1 : 0));
  field->AddArray(scalarField("GridScaleDefect", frame.gridScaleDefect));
  field->AddArray(integerField("GridScaleCompleted", frame.gridScaleCompleted ? 1 : 0));
  field->AddArray(scalarField("LearnedCertificate", frame.learnedCertificate));
  field->AddArray(scalarField("CertificateThreshold", threshold));
  field->AddArray(integerField("Refined", frame.refined ? 1 : 0));
  field->AddArray(integerField("RefineIterations", frame.refineIterations));
  field->AddArray(stringField("RefineReason", frame.refineReason));
  field->AddArray(integerField("Flagged", jko::plugin::flagged(frame, solver, threshold, k) ? 1 : 0));
  field->AddArray(scalarField("TimeStep", self->TimeStep));
  // The ranks the frame's steps were split over (1: computed whole).
  field->AddArray(integerField("SplitRanks", this->frames.slabs() ? this->frames.slabs()->ranks() : 1));
  auto rollouts = vtkSmartPointer<vtkIntArray>::New();
  rollouts->SetName("RolloutCount");
  rollouts->InsertNextValue(self->RolloutCount);
  field->AddArray(rollouts);
  if (this->scaling.active) {
    // The flow's units: lengths / UnitBoxLength, densities / UnitBoxDensity.
    field->AddArray(scalarField("UnitBoxLength", this->scaling.length));
    field->AddArray(scalarField("UnitBoxDensity", this->scaling.density));
  }
  field->AddArray(stringField("Solver", jko::plugin::solverName(this->frames.setup().solver)));
  field->AddArray(stringField("EnergyDescription", this->energy));
  field->AddArray(stringField("OperatorFile", this->operatorFile));
  field->AddArray(stringField("OperatorMetadata", this->operatorMetadata));

  output->ShallowCopy(image);
  output->GetInformation()->Set(vtkDataObject::DATA_TIME_STEP(), time);
  // One row per frame of the panel; those not computed yet hold NaN.
  tableOutput->ShallowCopy(this->frames.table(self->NumberOfSteps + 1, self->InitialTime, threshold));
  tableOutput->GetInformation()->Set(vtkDataObject::DATA_TIME_STEP(), time);
}

void vtkJKOGradientFlow::PrintSelf(ostream& os, vtkIndent indent) {
  this->Superclass::PrintSelf(os, indent);
  os << indent << "Solver: " << jko::plugin::solverName(static_cast<SolverKind>(this->Solver)) << "\n";
  os << indent << "CertificateThreshold: " << this->CertificateThreshold << "\n";
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
  os << indent << "FitToUnitBox: " << this->FitToUnitBox << "\n";
  os << indent << "MaximumIterations: " << this->MaximumIterations << "\n";
  os << indent << "RefineIterations: " << this->RefineIterations << "\n";
  os << indent << "CompleteGridScale: " << this->CompleteGridScale << "\n";
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
  os << indent << "TrainingCount: " << this->TrainingCount << "\n";
}
