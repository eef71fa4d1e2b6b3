// The learned JKO operator (DESIGN.md §2.3): G_theta(rho) = deposit(S^-1 rho, tau v).
//
// Two forms, chosen by NetworkConfig::base and recorded in the operator file:
//
// "linearized" (the porous medium's default):
//   v = vL + c tanh(a) P(vL) + s_v beta tanh(b / beta),
// vL the linearised implicit JKO step on the density's own grid
// (numerics/LinearizedStep.h: exact implicit Euler for every mode a grid can
// hold, so fine detail moves as the true step moves it), P its average over
// blocks of NetworkConfig::baseBlock cells, a and b from the network on a
// coarse "network grid" (at most NetworkConfig::grid nodes per axis, the
// density averaged onto it), interpolated, and c = min(1, contrast / c0)
// (localContrast; 1 when NetworkConfig::gateContrast is 0). The factor on
// P(vL) stays in (0, 2), where no mode can grow; the correction is bounded.
// The explicit velocity is a network input only: it never reaches the
// density's grid.
//
// "resolvent" (operator files written before the linearised base existed,
// and the other presets):
//   v = up( a1 vE + (1 + a2) vR + b v_ref ),
// vE the explicit velocity -grad(dE/drho) and vR the same with the
// internal-energy part smoothed by the resolvent (1 - tau kappa Lap)^-1 with
// a fixed kappa, both on the network grid.
//
// With either base, step() then corrects the map tau v by
// NetworkConfig::gaussNewton Gauss-Newton iterations of the step's own
// objective (LinearizedStep::refine, the linearised step's model Hessian
// with the base's iterations, stabilisation and smoothing), never above
// staying put.
//
// In both the network maps the features (rho, vE, vR or the averaged vL,
// coordinates, V) on the network grid, so it sees the same inputs at every
// resolution and its cost does not grow with the grid. The network runs in
// float32; the density state and the push-forward stay in float64 so mass
// is exact.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "numerics/Energy.h"
#include "numerics/JkoObjective.h"
#include "numerics/LinearizedStep.h"
#include "numerics/Progress.h"
#include "operator/OperatorMetadata.h"
#include "operator/StepSymmetry.h"

namespace jko {

/// (max - min) / (max + min) of rho, (B, n...), over `2 radius + 1` nodes
/// per axis around each node (fewer at the walls), 0 where rho vanishes
/// throughout: the local contrast that scales the linearised base's gate.
/// Computed from rho's values only (no gradient), on the CPU, returned on
/// rho's device in float64.
at::Tensor localContrast(const at::Tensor& rho, int dim, int64_t radius);

class VelocityNetwork;

/// One step of the learned operator.
struct LearnedStep {
  at::Tensor next;      ///< rho_{k+1}, float64, same batching as the input
  at::Tensor velocity;  ///< v = u / tau, (B, dim, n...) or (dim, n...), float64
};

class LearnedOperator {
 public:
  /// A fresh (untrained) operator.
  LearnedOperator(OperatorMetadata metadata, std::shared_ptr<VelocityNetwork> network);
  ~LearnedOperator();

  /// Loads an operator file (.jko, this project's container) or a TorchScript
  /// module (.pt) exported from PyTorch with its metadata in the extra file
  /// "jko_metadata.json". Throws OperatorFileError with what is wrong.
  static std::shared_ptr<LearnedOperator> load(const std::string& path, const at::Device& device = at::kCPU);
  /// Saves to the .jko container through a temporary file and a rename.
  void save(const std::string& path) const;

  const OperatorMetadata& metadata() const { return metadata_; }
  OperatorMetadata& metadata() { return metadata_; }
  VelocityNetwork& network() { return *network_; }
  const VelocityNetwork& network() const { return *network_; }
  at::Device device() const { return device_; }
  void to(const at::Device& device);

  /// Refuses (OperatorFileError) what cannot work: another dimension, an
  /// energy and tau, when given, that no symmetry of the step relates to the
  /// operator's (StepSymmetry.h). Returns warnings for what may be
  /// inaccurate (operator/TrainingRangeCheck.h): a box or grid outside the
  /// training ranges, and, when `rho` is given, the mass or peak density of
  /// what the operator steps (c rho).
  std::vector<std::string> checkCompatible(const Grid& grid, const EnergySpec* energy = nullptr, double tau = 0,
                                           const at::Tensor& rho = {}) const;

  /// What a run that uses the operator for (energy, tau) from rho0 must know
  /// and say: the symmetry that relates the problem to the operator's (the
  /// identity when none does) and every warning, the symmetry's note first.
  /// `firstGuess` (the Auto solver): an unrelated problem is warned about;
  /// else it is refused like checkCompatible.
  struct Use {
    StepSymmetry symmetry;
    std::vector<std::string> notes, warnings;
  };
  Use checkUse(const Grid& grid, const EnergySpec& energy, double tau, const at::Tensor& rho0, bool firstGuess) const;

  /// What the network works from, on the network grid.
  struct NetworkInputs {
    Grid grid;                    ///< the network grid
    at::Tensor density;           ///< rho averaged onto it, (B, n_c...)
    at::Tensor explicitVelocity;  ///< vE, capped, (B, dim, n_c...), float64
    at::Tensor smoothedVelocity;  ///< vR, capped, (B, dim, n_c...), float64 (linearized base: vL averaged)
    at::Tensor features;          ///< (B, channels, n_c...), float32
    at::Tensor baseVelocity;      ///< linearized base: vL on the density's grid, (B, dim, n...), float64
    JkoState state;               ///< linearized base: the step's state of rho, for step()'s corrections too
  };
  static constexpr int64_t kSerialStepNodes = int64_t(1) << 16;
  /// localContrast's radius for the gate (NetworkConfig::gateContrast), in
  /// network-grid nodes: over 5 nodes instead of 9 the gate was cut inside
  /// the Barenblatt profile too (docs/design.md).
  static constexpr int64_t kGateContrastRadius = 4;

  /// The network grid for a density grid: at most NetworkConfig::grid nodes per axis.
  Grid networkGrid(const Grid& grid) const;
  NetworkInputs networkInputs(const Energy& energy, const at::Tensor& rho) const;

  /// What networkInputs and velocity do on the density's grid, the whole
  /// grid's (the serial forms above) or a rank's slab of it
  /// (parallel/DistributedLearnedStep.h); the network's grid is whole.
  struct FineGridWork {
    Grid grid;  ///< the density's whole grid
    /// A field on the density's grid (B, C..., n...) averaged onto a
    /// coarser grid (the network's, the gate's blocks): whole.
    std::function<at::Tensor(const at::Tensor&, const Grid&)> average;
    /// A whole coarse field (B, C, m...) interpolated onto the density's grid.
    std::function<at::Tensor(const at::Tensor&)> interpolate;
    /// The linearised base vL = u / tau on the density's grid; it may set
    /// the step's state (the serial form does).
    std::function<at::Tensor(JkoState&)> baseVelocity;
  };
  /// networkInputs from rho on the density's grid (whole or a slab), with
  /// `networkEnergy` the energy on the network grid.
  NetworkInputs networkInputs(const Energy& networkEnergy, const at::Tensor& rho, const FineGridWork& fine) const;
  /// velocity on the density's grid (whole or a slab).
  at::Tensor velocity(const NetworkInputs& in, const FineGridWork& fine) const;
  /// The energy of `spec` on the network grid for `grid`, a potential given
  /// by values averaged onto it (`averagedPotential`, whole, when given).
  std::shared_ptr<const Energy> networkEnergy(const EnergySpec& spec, const Grid& grid,
                                              const at::Tensor& averagedPotential) const;
  /// vR on the density grid: the velocity of the untrained operator (float64).
  at::Tensor baseVelocity(const Energy& energy, const at::Tensor& rho) const;
  /// The velocity field the operator predicts on `energy`'s grid,
  /// differentiable in the network parameters when grad mode is on.
  /// (B, dim, n...), float64.
  at::Tensor velocity(const Energy& energy, const at::Tensor& rho) const;
  /// The same from inputs already computed (networkInputs on the device).
  at::Tensor velocity(const Energy& energy, const NetworkInputs& in) const;

  /// One step without gradients. rho: (n...) or (B, n...), on any device.
  /// One density on at most kSerialStepNodes nodes steps on one CPU thread.
  /// `energy`: the energy to step, at the operator's tau, for a conditioned
  /// operator (OperatorMetadata::conditioning; StepSymmetry finds it for a
  /// panel); the operator's own when null. `correctionTolerance` > 0: a
  /// density's Gauss-Newton corrections stop once the certificate puts its
  /// map within this relative L1 distance of the step's minimiser (the Auto
  /// solver, which accepts such a map anyway); 0: every correction.
  LearnedStep step(const at::Tensor& rho, const Grid& grid, const EnergySpec* energy = nullptr,
                   double correctionTolerance = 0) const;

  /// Gauss-Newton corrections of the learned map in step() (0 for a
  /// TorchScript network): the file's NetworkConfig::gaussNewton unless set
  /// here.
  int gaussNewton() const;
  /// Overrides the file's count (0 to 20) for this operator object; set it
  /// before stepping from several threads.
  void setGaussNewton(int corrections);
  /// Conjugate-gradient iterations of each further correction taken as a
  /// Gauss-Newton step at the map (LinearizedStepOptions::
  /// furtherNewtonIterations; 0, the default: quasi-Newton). Set it before
  /// stepping from several threads.
  int furtherNewton() const { return furtherNewton_; }
  void setFurtherNewton(int iterations);
  /// K steps from rho0 (n...): frames 1..K.
  std::vector<LearnedStep> rollout(const at::Tensor& rho0, const Grid& grid, int steps,
                                   const ProgressCallback& progress = {}) const;

  /// Channels of the network for an operator's metadata.
  static int inputChannels(const OperatorMetadata& metadata);
  static int outputChannels(const OperatorMetadata& metadata);

  /// The energy of the operator bound to `grid` (cached for the last grid).
  std::shared_ptr<const Energy> energyOn(const Grid& grid) const;
  /// The JKO objective of the operator's energy (or `energy`, for a
  /// conditioned operator) and tau on `grid`, cached for the last one.
  std::shared_ptr<const JkoObjective> objectiveOn(const Grid& grid, const EnergySpec* energy = nullptr) const;
  /// The options of the linearised step the "linearized" base takes (its
  /// iterations, stabilisation and smoothing, the file's).
  LinearizedStepOptions baseOptions() const;
  /// The linearised step (the "linearized" base) on that objective, cached.
  std::shared_ptr<const LinearizedStep> linearizedOn(const std::shared_ptr<const JkoObjective>& objective) const;

 private:
  OperatorMetadata metadata_;
  std::shared_ptr<VelocityNetwork> network_;
  at::Device device_ = at::kCPU;
  std::shared_ptr<const Energy> networkEnergy(const Energy& energy) const;
  /// The serial FineGridWork: the whole grid of `energy`.
  FineGridWork wholeGridWork(const Energy& energy) const;
  /// Whether cached values for energy `a` serve `b` (always, unless conditioned).
  bool sameEnergy(const EnergySpec& a, const EnergySpec& b) const;

  /// What the features need that depends on the network grid only.
  struct FeatureConstants {
    Grid grid;
    EnergySpec energy;  ///< a conditioned operator's constants depend on it
    at::Device device = at::kCPU;
    /// The orthonormal DCT-II matrices of the axes (n_a x n_a) and the gain
    /// of the resolvent on the cosine modes, 1 / (1 + c sum_a (2 - 2 cos(pi j_a / n_a)) / h_a^2).
    std::array<at::Tensor, 3> cosines;
    at::Tensor resolventGain;
    /// The same bases folded by Q[n-1-i][k] = (-1)^k Q[i][k]: rows up to
    /// the middle, even and odd modes apart; the gain with its modes in that
    /// order (even, then odd, along each axis). CPU only.
    at::Tensor evenCosines0, oddCosines0, evenCosines1, oddCosines1, foldedGain;
    at::Tensor fixedChannels;  ///< (1, C, n...): the coordinates and V, scaled
  };
  std::shared_ptr<const FeatureConstants> featureConstants(const Energy& energy, const at::Device& device) const;

  mutable std::shared_ptr<const JkoObjective> cachedObjective_;
  mutable std::shared_ptr<const LinearizedStep> cachedLinearized_;
  int gaussNewtonOverride_ = -1;  ///< setGaussNewton; -1: the file's
  int furtherNewton_ = 0;         ///< setFurtherNewton
  mutable std::shared_ptr<const Energy> cachedNetworkEnergy_;
  mutable std::shared_ptr<const FeatureConstants> cachedFeatureConstants_;
};

}  // namespace jko
