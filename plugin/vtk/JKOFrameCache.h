// The frames of one flow, computed lazily and kept: frame 0 is the input
// density; asking for frame k computes only the JKO steps up to k that are
// missing (by the reference solver, the learned operator, the operator
// refined by L-BFGS, or the Auto solver: learned, refined where its
// certificate fails) and keeps them until the rollout's settings or input
// change. Every step carries its certificate (numerics/StepCertificate). A
// stop request (the algorithm's abort flag) is honoured between two steps
// and between two L-BFGS iterations; the frames computed before it stay.
// Before a long computation the cache estimates its time; after each update
// it says how many frames were refined (or fail their certificate) and
// which frames left the operator's training range.
//
// On several MPI ranks every solver's steps are split over them
// (RolloutSetup::communicator; core's DistributedReferenceSolver and
// DistributedOperatorSolver): each rank keeps the slab of planes it owns of
// every frame, and every figure of a frame (energy, mass, certificate, the
// training-range checks) is the whole grid's. A stop request on any rank
// then stops all of them at the same iteration, since they compute each
// step together.
//
// Not wrapped: this header may include ATen.
#pragma once

#include <ATen/ATen.h>
#include <vtkSmartPointer.h>

#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "numerics/Energy.h"
#include "numerics/Grid.h"
#include "numerics/Progress.h"
#include "operator/AutoSolver.h"
#include "operator/StepSymmetry.h"
#include "operator/TrainingRangeCheck.h"

class vtkAlgorithm;
class vtkTable;

namespace jko {
class AutoSolver;
class Communicator;
class DistributedJkoObjective;
class DistributedOperatorSolver;
class DistributedReferenceSolver;
class Energy;
class SlabDecomposition;
class JkoObjective;
class LearnedOperator;
class ReferenceSolver;
class StepCertifier;
class TrainingRangeWatch;
struct RefinementTally;
}  // namespace jko

namespace jko::plugin {

enum class SolverKind { Reference = 0, Learned = 1, LearnedRefined = 2, Auto = 3 };
/// "Reference solver", "Learned operator", "Learned + refine", "Auto": the panel's names.
const char* solverName(SolverKind solver);
/// Whether the solver steps with a learned operator (every kind but the reference solver).
inline bool usesOperator(SolverKind solver) { return solver != SolverKind::Reference; }

/// One frame, float64 on the CPU, in the flow's units. A split rollout's
/// frames hold the rank's own planes (FrameCache::slabs()) of both fields.
struct Frame {
  at::Tensor density;   ///< rho_k, shape of the grid
  at::Tensor velocity;  ///< (dim, n...): u / tau of the step arriving at frame k (zero for frame 0)
  double energy = 0, mass = 0;
  double transport = 0;  ///< (1/(2 tau)) sum w |u|^2 |h| of the step arriving at frame k
  double objective = 0;  ///< J of that step; E(rho_0) for frame 0
  int iterations = 0;    ///< L-BFGS iterations of that step
  double seconds = 0;    ///< wall time of that step

  // The certificate of the step arriving at the frame (NaN for frame 0).
  static constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  double certificate = kNaN;  ///< StepCertificate::l1ErrorEstimate: the estimated relative L1 error
  double descent = kNaN;      ///< 1 when J(u) <= E(rho_k) (the descent guard holds), else 0
  double relativeGap = kNaN, w2Estimate = kNaN;
  /// StepCertificate::spreadMassFraction: the share of rho_k's mass the step
  /// spreads apart beyond what one particle per node resolves.
  double spreadMass = kNaN;
  bool underResolved() const { return spreadMass > StepCertificate::kUnderResolvedShare; }
  /// StepCertificate::gridScaleDefect of the step's map-form frame, and
  /// whether the grid-scale completion then damped that detail.
  double gridScaleDefect = kNaN;
  bool gridScaleCompleted = false;
  /// The frame keeps detail at the grid scale that the flow would have damped.
  bool keepsGridScaleDetail() const {
    return !gridScaleCompleted && gridScaleDefect > StepCertificate::kGridScaleDefectShare;
  }
  /// The learned step's certificate before a refinement (refined frames only).
  double learnedCertificate = kNaN;
  bool refined = false;
  int refineIterations = 0;
  /// "none", "descent", "certificate", "learned-step-failed" (Auto, core's
  /// RefineReason), or "refine-iterations" (Learned + refine refines every step).
  std::string refineReason = "none";
  /// The step met the reference solver's own stopping rule (the reference
  /// solver's steps and refinements that ran to it).
  bool converged = false;
  /// Auto took the reference solver's own step from u = 0 (core's
  /// CertifiedStep::fromScratch): only its stopping rule certifies the frame.
  bool fromScratch = false;
};

/// What a training-range warning adds in ParaView for `solver`.
std::string rangeAdvice(SolverKind solver);

/// Whether frame k is not certified: a learned (or refined) frame that fails
/// its descent guard or whose certificate is above `threshold` and that the
/// reference solver's own rule did not stop, or a reference frame (or an
/// Auto step from u = 0) whose L-BFGS stopped at its iteration cap. Frame 0
/// never is.
bool flagged(const Frame& frame, SolverKind solver, double threshold, int k);

/// What a rollout is a function of, besides the number of frames.
struct RolloutSetup {
  SolverKind solver = SolverKind::Reference;
  Grid grid;
  at::Tensor rho0;  ///< float64 CPU, shape of the grid
  EnergySpec energy;
  double tau = 0.005;
  int maxIterations = 2000;        ///< cap of a reference step's (and an Auto refinement's) L-BFGS iterations
  int refineIterations = 10;       ///< L-BFGS iterations after each learned step (Learned + refine)
  bool completeGridScale = false;  ///< the grid-scale completion of every solver's frames
  double threshold = AutoSolverOptions().threshold;  ///< certificate threshold: Auto refines above it, the others flag
  at::Device device = at::kCPU;
  std::shared_ptr<LearnedOperator> op;  ///< the learned modes' operator
  /// The learned modes: how the operator serves the panel's problem (the
  /// operator steps c rho, core's StepSymmetry.h); the identity for its own.
  StepSymmetry symmetry;
  std::string description;  ///< e.g. "480x640 grid": for the time estimate
  /// The ranks the steps are split over (null: not split).
  /// Every rank starts the rollout with the whole rho0 and keeps its slab,
  /// or with its slab alone (rho0IsSlab: the filter read only its planes).
  std::shared_ptr<const Communicator> communicator;
  bool rho0IsSlab = false;
};

/// How far FrameCache::extendTo got.
struct Extension {
  int last = 0;          ///< the last frame computed (<= the frame asked for)
  bool stopped = false;  ///< a stop request ended it before the frame asked for
  int computed = 0;      ///< steps computed by this call
};

class FrameCache {
 public:
  FrameCache();
  ~FrameCache();

  /// Whether the frames held were computed for `key`.
  bool holds(const std::string& key) const { return !frames_.empty() && key == key_; }
  /// Forgets every frame and starts a rollout of `setup` at frame 0 (its
  /// energy evaluated here: an input the energy overflows on is refused).
  void start(RolloutSetup setup, const std::string& key);
  void clear();

  /// Computes the missing frames up to `k`, with progress and stop checks on
  /// `algorithm`; returns how far it got. A step that gives NaN or infinite
  /// values throws Error (the frames before it stay). Frames whose density
  /// leaves the operator's training range are warned about (once per
  /// quantity and rollout), and one line says how many frames of the
  /// rollout were refined or fail their certificate: a warning when one of
  /// this call's frames is not certified (flagged), else plain text when
  /// Auto refined one of them or the call reached `runEnd`, the panel's last
  /// frame (so a clean run is said once).
  Extension extendTo(int k, vtkAlgorithm* algorithm, int runEnd);

  int size() const { return static_cast<int>(frames_.size()); }
  const Frame& frame(int k) const { return frames_.at(k); }
  const RolloutSetup& setup() const { return setup_; }
  /// Mean wall time of the steps computed so far (0 before the first).
  double secondsPerStep() const;

  /// The slabs of a split rollout (whose frames hold this rank's planes); null otherwise.
  const SlabDecomposition* slabs() const { return slabs_.get(); }
  const DistributedJkoObjective* splitObjective() const { return splitObjective_.get(); }

  /// The refinements (Auto) or certificate failures (the others) of the
  /// frames computed so far, in core's tally.
  const RefinementTally& tally() const { return *tally_; }

  /// One row per frame 0..rows-1: Time (t0 + k tau), Step, Energy, Mass,
  /// TransportCost, Objective, Iterations, the certificate (Certificate,
  /// Descent, RelativeGap, W2Estimate, LearnedCertificate, Flagged against
  /// `threshold`, CertificateThreshold), Refined, RefineIterations,
  /// RefineReason, Computed (1 for the frames that exist; the others have NaN
  /// values, 0 in the integer columns and an empty RefineReason).
  vtkSmartPointer<vtkTable> table(int rows, double t0, double threshold) const;

 private:
  double estimateSecondsPerStep() const;
  void warnIfLong(int from, int to, double secondsPerStep, bool measured, vtkAlgorithm* algorithm);
  Frame step(int k, const ProgressCallback& report);
  /// The split reference step (slabs_) to frame k.
  Frame splitStep(const ProgressCallback& report);
  /// The split step of a solver that starts from the operator's, and what
  /// core's tally counts of it.
  Frame splitOperatorStep(const ProgressCallback& report, CertifiedStep& tallied);
  /// What the training-range checks read of a frame's density (over the
  /// ranks of a split rollout: collective).
  DensitySummary summaryOf(const at::Tensor& density) const;
  /// Whether to stop: the algorithm's abort flag, agreed over the ranks of a
  /// split rollout (any rank's flag stops them all). Collective when split.
  bool stopRequested(vtkAlgorithm* algorithm) const;
  /// E and the mass of a frame's density (its slab when split: collective).
  double energyOf(const at::Tensor& density) const;
  double massOf(const at::Tensor& density) const;
  /// The one line of a call that computed frames first..last of a run whose
  /// last frame is `runEnd`.
  void reportRun(int first, int last, int runEnd, vtkAlgorithm* algorithm) const;

  RolloutSetup setup_;
  std::string key_;
  std::vector<Frame> frames_;
  at::Tensor current_, warmStart_;  ///< the last frame's density and displacement, on the setup's device
  std::shared_ptr<const Energy> energy_;
  std::shared_ptr<const JkoObjective> objective_;
  std::unique_ptr<ReferenceSolver> solver_;    ///< reference steps, or the refinement of learned ones
  std::unique_ptr<AutoSolver> auto_;           ///< every learned step, certified (and refined for Auto)
  std::unique_ptr<StepCertifier> certifier_;   ///< the reference solver's certificates
  std::unique_ptr<TrainingRangeWatch> watch_;  ///< the frames' mass and peak against the operator's training
  std::unique_ptr<RefinementTally> tally_;
  std::unique_ptr<SlabDecomposition> slabs_;                       ///< a split rollout's planes
  std::shared_ptr<const DistributedJkoObjective> splitObjective_;  ///< and its objective
  std::unique_ptr<DistributedReferenceSolver> splitSolver_;
  std::unique_ptr<DistributedOperatorSolver> splitOperator_;  ///< the learned modes' split steps
  double warnedSeconds_ = 0;                                  ///< the largest estimate said so far in this rollout
};

}  // namespace jko::plugin
