// The frames of one flow, computed lazily and kept: frame 0 is the input
// density; asking for frame k computes only the JKO steps up to k that are
// missing (by the reference solver, the learned operator, or the operator
// refined by L-BFGS) and keeps them until the rollout's settings or input
// change. A stop request (the algorithm's abort flag) is honoured between
// two steps and between two L-BFGS iterations; the frames computed before it
// stay. Before a long computation the cache estimates its time.
//
// Not wrapped: this header may include ATen.
#pragma once

#include <ATen/ATen.h>
#include <vtkSmartPointer.h>

#include <memory>
#include <string>
#include <vector>

#include "numerics/Energy.h"
#include "numerics/Grid.h"
#include "numerics/Progress.h"

class vtkAlgorithm;
class vtkTable;

namespace jko {
class Energy;
class JkoObjective;
class LearnedOperator;
class ReferenceSolver;
}  // namespace jko

namespace jko::plugin {

enum class SolverKind { Reference = 0, Learned = 1, LearnedRefined = 2 };
/// "Reference solver", "Learned operator", "Learned + refine": the panel's names.
const char* solverName(SolverKind solver);

/// One frame, float64 on the CPU, in the flow's units.
struct Frame {
  at::Tensor density;   ///< rho_k, shape of the grid
  at::Tensor velocity;  ///< (dim, n...): u / tau of the step arriving at frame k (zero for frame 0)
  double energy = 0, mass = 0;
  double transport = 0;  ///< (1/(2 tau)) sum w |u|^2 |h| of the step arriving at frame k
  double objective = 0;  ///< J of that step; E(rho_0) for frame 0
  int iterations = 0;    ///< L-BFGS iterations of that step
  double seconds = 0;    ///< wall time of that step
};

/// What a rollout is a function of, besides the number of frames.
struct RolloutSetup {
  SolverKind solver = SolverKind::Reference;
  Grid grid;
  at::Tensor rho0;  ///< float64 CPU, shape of the grid
  EnergySpec energy;
  double tau = 0.005;
  int maxIterations = 2000;   ///< cap of a reference step's L-BFGS iterations
  int refineIterations = 10;  ///< L-BFGS iterations after each learned step
  at::Device device = at::kCPU;
  std::shared_ptr<LearnedOperator> op;  ///< the learned modes' operator
  std::string description;              ///< e.g. "480x640 grid": for the time estimate
};

/// How far FrameCache::extendTo got.
struct Extension {
  int last = 0;          ///< the last frame computed (<= the frame asked for)
  bool stopped = false;  ///< a stop request ended it before the frame asked for
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
  /// values throws Error (the frames before it stay).
  Extension extendTo(int k, vtkAlgorithm* algorithm);

  int size() const { return static_cast<int>(frames_.size()); }
  const Frame& frame(int k) const { return frames_.at(k); }
  const RolloutSetup& setup() const { return setup_; }
  /// Mean wall time of the steps computed so far (0 before the first).
  double secondsPerStep() const;

  /// One row per frame 0..rows-1: Time (t0 + k tau), Step, Energy, Mass,
  /// TransportCost, Objective, Iterations, Computed (1 for the frames that
  /// exist; the others have NaN values and 0 iterations).
  vtkSmartPointer<vtkTable> table(int rows, double t0) const;

 private:
  double estimateSecondsPerStep() const;
  void warnIfLong(int from, int to, double secondsPerStep, bool measured, vtkAlgorithm* algorithm);
  Frame step(int k, const ProgressCallback& report);

  RolloutSetup setup_;
  std::string key_;
  std::vector<Frame> frames_;
  at::Tensor current_, warmStart_;  ///< the last frame's density and displacement, on the setup's device
  std::shared_ptr<const Energy> energy_;
  std::shared_ptr<const JkoObjective> objective_;
  std::unique_ptr<ReferenceSolver> solver_;  ///< reference steps, or the refinement of learned ones
  double warnedSeconds_ = 0;                 ///< the largest estimate said so far in this rollout
};

}  // namespace jko::plugin
