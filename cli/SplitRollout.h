// `mpirun -np N jko rollout --solver reference|linearized|learned|refine|auto
// ...`: every solver's steps split over the ranks by slabs of planes
// (core/parallel).
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>

#include "FrameFiles.h"
#include "numerics/Energy.h"
#include "numerics/Grid.h"
#include "numerics/LinearizedStep.h"
#include "operator/LearnedOperator.h"
#include "parallel/Communicator.h"

namespace jko::cli {

struct SplitRolloutRequest {
  Grid grid;
  at::Tensor initial;                       ///< the whole initial density (generated), or
  std::shared_ptr<const DensityFile> file;  ///< the file each rank reads its planes from
  double mass = 0, peak = 0;                ///< rescale the initial density to these (0: as it is)
  EnergySpec energy;
  std::string solver = "reference";  ///< or "linearized", "learned", "refine", "auto"
  LinearizedStepOptions linearized;
  std::shared_ptr<const LearnedOperator> learned;  ///< the operator of "learned", "refine" and "auto"
  double threshold = 0.004;                        ///< a learned frame's certificate threshold (auto refines above it)
  int refineIterations = 10;                       ///< L-BFGS iterations after each learned step (refine)
  double tau = 0.005;
  int steps = 20, maxIterations = 2000, writeEvery = 1;
  bool completeGridScale = false;  ///< the reference solver's grid-scale completion
  std::string out = "frames", prefix = "frame";
  bool json = false;
};

/// Runs the rollout on every rank (collective); every rank writes its piece
/// of each frame (a .vti of its planes), rank 0 the .pvti of each frame, the
/// .pvd and the report: per step its time, L-BFGS
/// iterations (reference) and certificate (learned: the frames that fail
/// it, named on stderr as the serial rollout names them; refine and auto:
/// the frames refined and why), energy, mass drift, each rank's planes and
/// peak memory, and the warnings of the serial rollout (steps stopped at the
/// iteration cap, under-resolved steps).
void runSplitRollout(SplitRolloutRequest request, std::shared_ptr<const Communicator> communicator);

}  // namespace jko::cli
