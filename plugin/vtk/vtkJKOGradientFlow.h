/**
 * @class   vtkJKOGradientFlow
 * @brief   Wasserstein gradient flow of a density on an image, one frame per JKO step.
 *
 * Input 0 is a vtkImageData (2D in any axis-aligned plane, or 3D; per-axis
 * spacing) with a point-data or cell-data array chosen with
 * SetInputArrayToProcess(0, ...) as the density rho_0 (a colour array gives
 * its luminance, a vector array its magnitude). The filter computes K steps
 * of the JKO scheme
 *
 *   rho_{k+1} = argmin_rho E(rho) + W2(rho, rho_k)^2 / (2 tau)
 *
 * in the map form of DESIGN.md §2.2, with the reference solver (L-BFGS on the
 * displacement), a learned operator loaded from an operator file, the
 * learned operator refined by a few reference iterations, or Auto: the
 * learned step, refined from the learned map by the reference solver's
 * L-BFGS where its descent guard or certificate fails (core's AutoSolver).
 * Output port 0 is temporal: TIME_STEPS = t0 + k tau, k = 0..K, and a
 * requested time snaps to its frame. Each frame holds "density", "velocity"
 * (u / tau of the step arriving at the frame; zero at frame 0) and field
 * data (time, energy, mass, transport cost, the step's certificate and
 * refinement, operator). Output port 1 is a vtkTable with one row per frame
 * of the panel (NaN until computed) with the same per-frame values.
 *
 * Output Messages: the quantities outside the operator's training (box,
 * grid, mass, peak; with Auto also time step and energy) when a rollout
 * starts and when a frame drifts out of range, and one line per run with how
 * many frames were refined and why (or fail their certificate).
 *
 * Frames are computed lazily and kept (jko::plugin::FrameCache): frame 0 at
 * once, frame k with only the steps up to k that are missing. The abort flag
 * stops a computation between two steps or two L-BFGS iterations and keeps
 * the frames computed before it. A change of the settings a rollout depends
 * on, or of the input's content, starts a new rollout; scrubbing time only
 * copies a cached frame (the filter removes UPDATE_TIME_STEP from its
 * upstream request, so a temporal input does not re-execute). The field
 * array "RolloutCount" counts rollouts.
 *
 * With FitToUnitBox the flow runs on the image mapped onto the unit box
 * (longest side 1) with unit mass; the frames come back in the image's own
 * geometry and units.
 *
 * Train() does not train: it marks a request and calls Modified(); the next
 * RequestData trains an operator by Learn-to-Evolve on the input density
 * (plus the images on the optional input 1 and generated densities), saves
 * it to TrainedOperatorFile and points OperatorFile at it, so that a saved
 * state or a trace loads it (jko::plugin::trainOperator).
 *
 * In a parallel run (mpirun pvbatch / pvserver) every rank reads the whole
 * input. Every solver's steps are split over the ranks (each rank computes
 * and keeps a slab of planes of every frame; core's DistributedReferenceSolver
 * and DistributedOperatorSolver); on CUDA every rank computes the same whole
 * frames. Output 0 gives the piece the pipeline asks for
 * (CAN_PRODUCE_SUB_EXTENT: the samples of UPDATE_EXTENT, put together from
 * the ranks' slabs by one exchange when the steps are split), output 1 has
 * its rows in piece 0 only, and warnings come from rank 0 (JKOPieces.h).
 * A split rollout's RequestData makes collective calls: the pipeline must
 * update every rank together, as ParaView does. Training needs a single rank.
 *
 * Errors (bad input, bad parameters, an operator that does not fit) are
 * reported with vtkErrorMacro; the last good output is kept, with its time.
 */
#ifndef vtkJKOGradientFlow_h
#define vtkJKOGradientFlow_h

#include <memory>  // for std::unique_ptr

#include "NeuralJKOFlowFiltersModule.h"  // for export macro
#include "vtkImageAlgorithm.h"

class NEURALJKOFLOWFILTERS_EXPORT vtkJKOGradientFlow : public vtkImageAlgorithm {
 public:
  static vtkJKOGradientFlow* New();
  vtkTypeMacro(vtkJKOGradientFlow, vtkImageAlgorithm);
  void PrintSelf(ostream& os, vtkIndent indent) override;

  enum Solvers { REFERENCE = 0, LEARNED = 1, LEARNED_REFINED = 2, AUTO = 3 };
  enum EnergyPresets {
    POROUS_MEDIUM = 0,
    FOKKER_PLANCK = 1,
    AGGREGATION = 2,
    AGGREGATION_DIFFUSION = 3,
    KELLER_SEGEL = 4
  };
  enum Potentials { NO_POTENTIAL = 0, QUADRATIC_POTENTIAL = 1, DOUBLE_WELL_POTENTIAL = 2, ARRAY_POTENTIAL = 3 };
  enum Devices { CPU = 0, CUDA = 1 };
  enum TrainingModes { LEARN_TO_EVOLVE = 0, INITIAL_ONLY = 1 };

  ///@{
  /// How each step is computed. (The proxy makes it AUTO when an operator
  /// file is set on a filter whose solver was never chosen.)
  vtkSetClampMacro(Solver, int, REFERENCE, AUTO);
  vtkGetMacro(Solver, int);
  ///@}

  ///@{
  /// The certificate threshold: the largest estimated relative L1 error
  /// (StepCertificate::l1ErrorEstimate) a frame may have. Auto refines the
  /// learned steps above it (or failing their descent guard); the learned
  /// modes flag them. Defaults to the Auto solver's own default.
  vtkSetMacro(CertificateThreshold, double);
  vtkGetMacro(CertificateThreshold, double);
  /// jko::AutoSolverOptions().threshold, for the panel's default to be checked against.
  double GetDefaultCertificateThreshold();
  ///@}

  ///@{
  /// The energy: a preset (internal energy and interaction kernel) plus the
  /// potential chosen with SetPotential.
  vtkSetClampMacro(EnergyPreset, int, POROUS_MEDIUM, KELLER_SEGEL);
  vtkGetMacro(EnergyPreset, int);
  /// D of D rho log rho or D rho^m / (m - 1).
  vtkSetMacro(Diffusion, double);
  vtkGetMacro(Diffusion, double);
  /// m of the porous medium.
  vtkSetMacro(Exponent, double);
  vtkGetMacro(Exponent, double);
  ///@}

  ///@{
  /// The potential V. Quadratic: sum_k a_k (x_k - b_k)^2 / 2; double well:
  /// depth ((x - b_0)^2 / w^2 - 1)^2 + the quadratic in the other axes; array:
  /// the array chosen with SetInputArrayToProcess(1, ...).
  vtkSetClampMacro(Potential, int, NO_POTENTIAL, ARRAY_POTENTIAL);
  vtkGetMacro(Potential, int);
  vtkSetVector3Macro(PotentialStrength, double);
  vtkGetVector3Macro(PotentialStrength, double);
  /// Centre b at the centre of the box when on, else PotentialCentre.
  vtkSetMacro(PotentialCentredInBox, vtkTypeBool);
  vtkGetMacro(PotentialCentredInBox, vtkTypeBool);
  vtkBooleanMacro(PotentialCentredInBox, vtkTypeBool);
  vtkSetVector3Macro(PotentialCentre, double);
  vtkGetVector3Macro(PotentialCentre, double);
  vtkSetMacro(WellDepth, double);
  vtkGetMacro(WellDepth, double);
  vtkSetMacro(WellHalfWidth, double);
  vtkGetMacro(WellHalfWidth, double);
  ///@}

  ///@{
  /// Interaction: c_a |z|^p / p - c_r |z|^q / q (aggregation, q = 0: log),
  /// c |z|^2 / 2 (aggregation-diffusion), c log|z| / (2 pi) (Keller-Segel).
  vtkSetMacro(Attraction, double);
  vtkGetMacro(Attraction, double);
  vtkSetMacro(Repulsion, double);
  vtkGetMacro(Repulsion, double);
  vtkSetMacro(AttractivePower, double);
  vtkGetMacro(AttractivePower, double);
  vtkSetMacro(RepulsivePower, double);
  vtkGetMacro(RepulsivePower, double);
  ///@}

  ///@{
  /// tau, the number of steps K (frames 0..K) and the time t0 of frame 0.
  vtkSetMacro(TimeStep, double);
  vtkGetMacro(TimeStep, double);
  vtkSetMacro(NumberOfSteps, int);
  vtkGetMacro(NumberOfSteps, int);
  vtkSetMacro(InitialTime, double);
  vtkGetMacro(InitialTime, double);
  ///@}

  ///@{
  /// Run the flow on the image mapped onto the unit box (its longest side
  /// becomes 1) with unit mass; frames are mapped back to the image's units.
  vtkSetMacro(FitToUnitBox, vtkTypeBool);
  vtkGetMacro(FitToUnitBox, vtkTypeBool);
  vtkBooleanMacro(FitToUnitBox, vtkTypeBool);
  ///@}

  ///@{
  /// L-BFGS iterations: the cap of a reference step (and of an Auto
  /// refinement), and the iterations of the refinement that follows each
  /// learned step (Learned + refine).
  vtkSetMacro(MaximumIterations, int);
  vtkGetMacro(MaximumIterations, int);
  vtkSetMacro(RefineIterations, int);
  vtkGetMacro(RefineIterations, int);
  ///@}

  ///@{
  /// The reference solver's grid-scale completion (numerics/
  /// GridScaleCompletion): detail at the pixel scale decays as in the exact
  /// step. Off by default.
  vtkSetMacro(CompleteGridScale, vtkTypeBool);
  vtkGetMacro(CompleteGridScale, vtkTypeBool);
  vtkBooleanMacro(CompleteGridScale, vtkTypeBool);
  ///@}

  ///@{
  /// The operator file (.jko or TorchScript .pt) of the learned modes.
  vtkSetFilePathMacro(OperatorFile);
  vtkGetFilePathMacro(OperatorFile);
  ///@}

  ///@{
  /// Where to compute (CPU or CUDA) and with how many CPU threads (0: all cores).
  vtkSetClampMacro(Device, int, CPU, CUDA);
  vtkGetMacro(Device, int);
  vtkSetMacro(NumberOfThreads, int);
  vtkGetMacro(NumberOfThreads, int);
  ///@}

  ///@{
  /// Training by Learn-to-Evolve (DESIGN.md §2.4).
  vtkSetMacro(TrainingRounds, int);
  vtkGetMacro(TrainingRounds, int);
  vtkSetMacro(TrainingEpochs, int);
  vtkGetMacro(TrainingEpochs, int);
  vtkSetMacro(TrainingBatchSize, int);
  vtkGetMacro(TrainingBatchSize, int);
  vtkSetMacro(TrainingLearningRate, double);
  vtkGetMacro(TrainingLearningRate, double);
  vtkSetMacro(TrainingHorizon, int);
  vtkGetMacro(TrainingHorizon, int);
  vtkSetMacro(GeneratedDensities, int);
  vtkGetMacro(GeneratedDensities, int);
  /// Held-out generated densities that pick the best round (never trained on).
  vtkSetMacro(ValidationDensities, int);
  vtkGetMacro(ValidationDensities, int);
  vtkSetMacro(TrainingSeed, int);
  vtkGetMacro(TrainingSeed, int);
  vtkSetClampMacro(TrainingMode, int, LEARN_TO_EVOLVE, INITIAL_ONLY);
  vtkGetMacro(TrainingMode, int);
  vtkSetMacro(MaximumTrainingSeconds, double);
  vtkGetMacro(MaximumTrainingSeconds, double);
  vtkSetFilePathMacro(TrainedOperatorFile);
  vtkGetFilePathMacro(TrainedOperatorFile);
  /// Load instead of train when TrainedOperatorFile already holds an operator
  /// trained with the same settings and densities (how a traced session replays).
  vtkSetMacro(ReuseTrainedOperator, vtkTypeBool);
  vtkGetMacro(ReuseTrainedOperator, vtkTypeBool);
  vtkBooleanMacro(ReuseTrainedOperator, vtkTypeBool);
  ///@}

  /// Removes every connection of input 1 (the training densities).
  void RemoveAllTrainingDensities() { this->RemoveAllInputConnections(1); }

  /**
   * Requests a training run: the next update trains (with UpdateProgress and
   * progress text), saves to TrainedOperatorFile and uses the new operator.
   */
  void Train();

  ///@{
  /// Information for the panel: rollouts run so far, trainings completed (a
  /// client copies OperatorFile after each), and a description of the
  /// operator of the learned modes (several lines; empty when none is loaded).
  vtkGetMacro(RolloutCount, int);
  vtkGetMacro(TrainingCount, int);
  const char* GetOperatorDescription();
  double GetOperatorTimeStep();
  const char* GetOperatorEnergy();
  ///@}

 protected:
  vtkJKOGradientFlow();
  ~vtkJKOGradientFlow() override;

  int FillInputPortInformation(int port, vtkInformation* info) override;
  int FillOutputPortInformation(int port, vtkInformation* info) override;
  int RequestInformation(vtkInformation*, vtkInformationVector**, vtkInformationVector*) override;
  int RequestUpdateExtent(vtkInformation*, vtkInformationVector**, vtkInformationVector*) override;
  int RequestData(vtkInformation*, vtkInformationVector**, vtkInformationVector*) override;
  /// While a split rollout that an abort request stopped waits to go on,
  /// newer than any output: the next update then executes on every rank,
  /// not only on the one whose cleared abort flag modified its filter (the
  /// others would wait for it in the step's first collective call).
  vtkMTimeType GetMTime() override;

  int Solver = REFERENCE;
  double CertificateThreshold;
  int EnergyPreset = POROUS_MEDIUM;
  double Diffusion = 1;
  double Exponent = 2;
  int Potential = NO_POTENTIAL;
  double PotentialStrength[3] = {20, 20, 20};
  vtkTypeBool PotentialCentredInBox = 1;
  double PotentialCentre[3] = {0.5, 0.5, 0.5};
  double WellDepth = 1;
  double WellHalfWidth = 0.25;
  double Attraction = 20;
  double Repulsion = 1;
  double AttractivePower = 2;
  double RepulsivePower = 0;
  double TimeStep = 0.005;
  int NumberOfSteps = 10;
  double InitialTime = 0;
  vtkTypeBool FitToUnitBox = 0;
  int MaximumIterations = 2000;
  int RefineIterations = 10;
  vtkTypeBool CompleteGridScale = 0;
  char* OperatorFile = nullptr;
  int Device = CPU;
  int NumberOfThreads = 0;
  int TrainingRounds = 8;
  int TrainingEpochs = 40;
  int TrainingBatchSize = 16;
  double TrainingLearningRate = 2e-3;
  int TrainingHorizon = 20;
  int GeneratedDensities = 64;
  int ValidationDensities = 8;
  int TrainingSeed = 1;
  int TrainingMode = LEARN_TO_EVOLVE;
  double MaximumTrainingSeconds = 600;
  char* TrainedOperatorFile = nullptr;
  vtkTypeBool ReuseTrainedOperator = 1;

  bool TrainingRequested = false;
  int RolloutCount = 0;
  int TrainingCount = 0;

 private:
  vtkJKOGradientFlow(const vtkJKOGradientFlow&) = delete;
  void operator=(const vtkJKOGradientFlow&) = delete;

  struct Internals;
  std::unique_ptr<Internals> Internal;
};

#endif
