// The solvers that start from a learned operator's step (operator/
// AutoSolver.h: Learned, Refine, Auto) split over ranks: the operator's step
// by DistributedLearnedStep (through the step's symmetries, as the serial
// solvers take it), its certificate, and the refinements by the split
// reference solver's L-BFGS, each rank holding its planes. The decisions
// (the verdict on a learned frame, from where and how far to refine it) are
// the serial solver's functions.
#pragma once

#include <ATen/ATen.h>

#include <limits>
#include <memory>
#include <mutex>
#include <string>

#include "operator/AutoSolver.h"
#include "parallel/DistributedLearnedStep.h"
#include "parallel/DistributedReferenceSolver.h"

namespace jko {

class DistributedOperatorSolver {
 public:
  /// `objective` is the problem solved (energy, tau, the ranks' planes); the
  /// operator's step is its first guess, as for OperatorSolver. Throws
  /// InvalidParameter for an operator the split learned step refuses.
  /// Collective.
  DistributedOperatorSolver(std::shared_ptr<const LearnedOperator> op,
                            std::shared_ptr<const DistributedJkoObjective> objective, OperatorSolver::Mode mode,
                            AutoSolverOptions autoOptions = {}, ReferenceSolverOptions refine = {});

  const DistributedJkoObjective& objective() const { return *objective_; }
  OperatorSolver::Mode mode() const { return mode_; }
  const AutoSolverOptions& autoOptions() const { return autoOptions_; }

  /// One step from the prepared state of rho_k's owned planes: `next`
  /// (planes, ...) and `displacement` (dim, planes, ...) the owned planes of
  /// OperatorSolver::step's, the certificates the whole grid's.
  /// `energyOfRho`: E(rho_k) when the caller has it. Collective.
  CertifiedStep step(const DistributedJkoObjective::State& state, const ProgressCallback& progress = {},
                     double energyOfRho = std::numeric_limits<double>::quiet_NaN()) const;

 private:
  /// The operator's step for the state's density, through the step's
  /// symmetry, certified, with the verdict (AutoSolver::certifiedGuess).
  CertifiedStep certifiedGuess(const DistributedJkoObjective::State& state, double energyOfRho,
                               double correctionTolerance) const;
  /// The split learned step on the operator's problem (its energy, or the
  /// one its conditioning steps, at its tau), kept while that stays.
  const DistributedLearnedStep& learnedStepFor(const StepSymmetry& symmetry) const;

  std::shared_ptr<const LearnedOperator> op_;
  std::shared_ptr<const DistributedJkoObjective> objective_;
  OperatorSolver::Mode mode_;
  AutoSolverOptions autoOptions_;
  ReferenceSolverOptions refine_;
  mutable std::mutex mutex_;
  mutable std::string learnedKey_;
  mutable std::unique_ptr<DistributedLearnedStep> learned_;
};

}  // namespace jko
