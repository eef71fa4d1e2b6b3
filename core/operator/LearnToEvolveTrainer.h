// Self-supervised training of the learned JKO operator by Learn-to-Evolve
// (DESIGN.md §2.4): rounds alternate optimiser steps on the JKO objective
// over a growing set of densities with rollouts of the current operator
// (no gradient) from the initial densities, whose frames join the set. No
// numerically solved JKO trajectory enters the loss; the reference solver
// only scores held-out densities to pick the best checkpoint.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "numerics/Energy.h"
#include "numerics/Errors.h"
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
  /// Train one operator for a range of energy parameters (at this tau): each
  /// optimiser step, each rollout chunk and each validation density draws
  /// them log-uniformly from these ranges (the energy's own values must lie
  /// inside), and the network sees them as input channels.
  Conditioning conditioning;
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
  /// An optimiser step whose loss or gradient is not finite is skipped
  /// (parameters and Adam state untouched) and halves the learning rate for
  /// the rest of the run; this many in a row stop training (TrainingDiverged).
  int maxNonFiniteSteps = 10;
  /// Test only (fault injection): when set, called with the optimiser step
  /// index and that step's loss before the backward pass; what it returns
  /// replaces the loss, e.g. a NaN to exercise the non-finite guard. Leave
  /// empty in real use.
  std::function<at::Tensor(int64_t step, const at::Tensor& loss)> lossHookForTesting;

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

/// Training stopped because too many optimiser steps in a row gave a
/// non-finite loss or gradient. The best finite parameters are kept: in the
/// checkpoint file (when there is one, as written after the last completed
/// round) and in bestOperator(); nothing non-finite is ever written.
class TrainingDiverged : public Error {
 public:
  TrainingDiverged(const std::string& message, std::shared_ptr<LearnedOperator> best, nlohmann::json summary)
      : Error(message), best_(std::move(best)), summary_(std::move(summary)) {}
  /// The best checkpoint by validation so far, all parameters finite (the
  /// initial network when no round was completed).
  const std::shared_ptr<LearnedOperator>& bestOperator() const { return best_; }
  /// The training summary up to the failure.
  const nlohmann::json& summary() const { return summary_; }

 private:
  std::shared_ptr<LearnedOperator> best_;
  nlohmann::json summary_;
};

class LearnToEvolveTrainer {
 public:
  explicit LearnToEvolveTrainer(TrainingOptions options);
  TrainingResult train(const ProgressCallback& progress = {});

 private:
  TrainingOptions options_;
};

}  // namespace jko
