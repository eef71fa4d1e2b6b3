// Self-supervised training of the learned JKO operator by Learn-to-Evolve
// (DESIGN.md §2.4): rounds alternate optimiser steps on the JKO objective
// over a growing set of densities with rollouts of the current operator
// (no gradient) from the initial densities, whose frames join the set. No
// numerically solved JKO trajectory enters the loss; the reference solver
// only scores held-out densities to pick the best checkpoint.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "numerics/Energy.h"
#include "numerics/Progress.h"
#include "operator/DensityGenerator.h"
#include "operator/LearnedOperator.h"

namespace jko {

struct TrainingOptions {
  EnergySpec energy = EnergySpec::porousMedium();
  int dim = 2;
  int64_t grid = 64;  ///< nodes per axis of the training grid
  /// Nodes per axis when the training grid is not square (all > 0), else unused.
  std::array<int64_t, 3> gridShape{0, 0, 0};
  std::array<double, 3> boxLower{0, 0, 0}, boxUpper{1, 1, 1};
  double tau = 0.005;
  NetworkConfig network;
  std::string mode = "learn-to-evolve";  ///< or "initial-only" (the ablation: same optimiser steps)
  int rounds = 8;
  int epochs = 30;  ///< per round; an epoch is ceil(initial densities / batch) optimiser steps
  int batch = 16;
  double learningRate = 2e-3;
  int horizon = 20;    ///< K: rollout length reached by the last round
  int generated = 64;  ///< random initial densities added to the user's
  int validation = 8;  ///< held-out random densities for checkpoint selection
  uint64_t seed = 1;
  double maxSeconds = 0;  ///< stop (and keep the best so far) after this long; 0: no cap
  std::string device = "cpu";
  DensityRanges densities;                 ///< the generator's ranges
  std::vector<at::Tensor> extraDensities;  ///< the user's initial densities, on the training grid
  std::string checkpoint;                  ///< written after every round when not empty
  bool resume = false;                     ///< continue from `checkpoint`

  /// The tuned defaults of a preset (network, rounds, ranges ...).
  static TrainingOptions defaultsFor(const EnergySpec& energy, int dim);
  /// Nodes per axis of the training grid (gridShape, else grid on every axis).
  std::array<int64_t, 3> cells() const;
  void validate() const;
};

struct TrainingResult {
  std::shared_ptr<LearnedOperator> op;  ///< the best checkpoint by validation
  nlohmann::json summary;               ///< per-round losses, validation gaps, seconds
};

class LearnToEvolveTrainer {
 public:
  explicit LearnToEvolveTrainer(TrainingOptions options);
  TrainingResult train(const ProgressCallback& progress = {});

 private:
  TrainingOptions options_;
};

}  // namespace jko
