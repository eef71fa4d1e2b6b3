#include "operator/LearnToEvolveTrainer.h"

#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <torch/optim/adam.h>
// clip_grad.h needs torch::Tensor declared before it.
// clang-format off
#include <torch/types.h>
#include <torch/nn/utils/clip_grad.h>
// clang-format on

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>
#include <sstream>
#include <type_traits>

#include "numerics/Errors.h"
#include "numerics/JkoObjective.h"
#include "numerics/ReferenceSolver.h"
#include "operator/OperatorFile.h"
#include "operator/VelocityNetwork.h"
#include "runtime/JsonNumber.h"
#include "runtime/Runtime.h"

namespace jko {
namespace {

using Clock = std::chrono::steady_clock;

// Densities with what the loss needs of them, stacked along dimension 0.
struct Dataset {
  at::Tensor density, masses, weights, mass;  // (N, n...), (N, n...), (N, n...), (N,)
  at::Tensor initialObjective;                // J(0) = E(rho), (N,)
  at::Tensor scale;                           // loss normaliser, (N,)
  int64_t size() const { return density.defined() ? density.size(0) : 0; }
};

// Held-out densities with the reference solver's objective, for checkpoint
// selection only (never in the loss).
struct Validation {
  JkoState state;
  at::Tensor initialObjective, referenceObjective;  // (V,)
};

Dataset makeDataset(const LearnedOperator& op, const JkoObjective& objective, const at::Tensor& rho) {
  at::NoGradGuard noGrad;
  Dataset data;
  const JkoState state = objective.prepare(rho);
  data.density = state.density;
  data.masses = state.masses;
  data.weights = state.weights;
  data.mass = state.mass;
  data.initialObjective = objective.energy()(state.density);
  // tau sum w |v0|^2 |h|: about twice the decrease of the explicit step,
  // so every sample weighs alike whatever its speed.
  const at::Tensor v0 = op.baseVelocity(objective.energy(), state.density);
  data.scale =
      objective.tau() * objective.grid().cellVolume() * (state.weights.unsqueeze(1) * v0 * v0).flatten(1).sum(1);
  return data;
}

Dataset concatenate(const Dataset& a, const Dataset& b) {
  if (a.size() == 0) return b;
  return {at::cat({a.density, b.density}),
          at::cat({a.masses, b.masses}),
          at::cat({a.weights, b.weights}),
          at::cat({a.mass, b.mass}),
          at::cat({a.initialObjective, b.initialObjective}),
          at::cat({a.scale, b.scale})};
}

// Normalised JKO loss (J(u) - J(0)) / scale per sample, averaged. `ownEnergy`:
// the objective's energy is another than the dataset's (a conditioned
// operator's draw), so J(0) and the scale are computed for it here.
at::Tensor batchLoss(const LearnedOperator& op, const JkoObjective& objective, const Dataset& data,
                     const at::Tensor& index, double scaleFloor, bool ownEnergy = false) {
  JkoState state;
  state.density = data.density.index_select(0, index);
  state.masses = data.masses.index_select(0, index);
  state.weights = data.weights.index_select(0, index);
  state.mass = data.mass.index_select(0, index);
  at::Tensor initial = data.initialObjective.index_select(0, index), scale = data.scale.index_select(0, index);
  if (ownEnergy) {
    at::NoGradGuard noGrad;
    const Dataset drawn = makeDataset(op, objective, state.density);
    initial = drawn.initialObjective;
    scale = drawn.scale;
  }
  const at::Tensor u = objective.tau() * op.velocity(objective.energy(), state.density);
  const JkoTerms terms = objective.evaluate(state, u);
  return ((terms.objective - initial) / scale.clamp_min(scaleFloor)).mean();
}

// A conditioned training's energy: the conditioned parameters drawn
// log-uniformly from their ranges (at `unit` in [0, 1]^4 when given: D,
// the potential's strength, m, the attraction).
EnergySpec drawnEnergy(const TrainingOptions& o, std::mt19937_64& random, const double* unit = nullptr) {
  EnergySpec e = o.energy;
  std::uniform_real_distribution<double> uniform(0, 1);
  auto draw = [&](const std::array<double, 2>& range, int i) {
    const double t = unit ? unit[i] : uniform(random);
    return range[0] * std::pow(range[1] / range[0], t);
  };
  if (o.conditioning.onDiffusion()) e.diffusion = draw(o.conditioning.diffusion, 0);
  if (o.conditioning.onPotentialStrength()) {
    const double a = draw(o.conditioning.potentialStrength, 1);
    for (int k = 0; k < 3; ++k)
      e.potentialStrength[k] = o.energy.potentialStrength[k] * a / o.energy.potentialStrength[0];
  }
  if (o.conditioning.onExponent()) e.exponent = draw(o.conditioning.exponent, 2);
  if (o.conditioning.onAttraction()) e.attraction = draw(o.conditioning.attraction, 3);
  return e;
}

std::shared_ptr<const JkoObjective> objectiveFor(const EnergySpec& energy, const Grid& grid, double tau) {
  return std::make_shared<const JkoObjective>(std::make_shared<const Energy>(energy, grid), tau);
}

// Mean over held-out densities of (J(G(rho)) - J_ref) / (J(0) - J_ref): the
// share of the step's objective decrease the operator misses.
double validationGap(const LearnedOperator& op, const JkoObjective& objective, const Validation& v) {
  at::NoGradGuard noGrad;
  const at::Tensor u = objective.tau() * op.velocity(objective.energy(), v.state.density);
  const at::Tensor J = objective.evaluate(v.state, u).objective;
  return ((J - v.referenceObjective) / (v.initialObjective - v.referenceObjective)).mean().item<double>();
}

// A validation set and the objective its reference steps solved.
struct ValidationGroup {
  std::shared_ptr<const JkoObjective> objective;
  Validation data;
};

// The validation gap. One energy: the mean over the states of the share of
// each step's decrease missed. A conditioned training's groups (one energy
// each): per group the share of the group's total decrease missed, averaged
// over the groups; the states of a strong potential reach equilibrium
// within the trajectory, and a mean of shares would be dominated by steps
// that barely decrease.
double validationGap(const LearnedOperator& op, const std::vector<ValidationGroup>& groups, bool conditioned) {
  if (!conditioned) return validationGap(op, *groups.front().objective, groups.front().data);
  at::NoGradGuard noGrad;
  double sum = 0;
  for (const ValidationGroup& g : groups) {
    const JkoObjective& objective = *g.objective;
    const at::Tensor u = objective.tau() * op.velocity(objective.energy(), g.data.state.density);
    const at::Tensor J = objective.evaluate(g.data.state, u).objective;
    sum += ((J - g.data.referenceObjective).sum() / (g.data.initialObjective - g.data.referenceObjective).sum())
               .item<double>();
  }
  return sum / groups.size();
}

std::vector<at::Tensor> cloneParameters(const VelocityNetwork& network) {
  std::vector<at::Tensor> out;
  for (const auto& entry : network.namedParameters()) out.push_back(entry.second.detach().clone());
  return out;
}

bool allFinite(const std::vector<at::Tensor>& tensors) {
  for (const at::Tensor& t : tensors)
    if (!at::isfinite(t).all().item<bool>()) return false;
  return true;
}

// A JSON number, or null for NaN and infinities (JSON has neither).

void restoreParameters(VelocityNetwork& network, const std::vector<at::Tensor>& values) {
  at::NoGradGuard noGrad;
  const auto& parameters = network.namedParameters();
  for (size_t i = 0; i < parameters.size(); ++i) parameters[i].second.copy_(values[i]);
}

// The key of a parameter in torch::optim's state map: a string of the
// TensorImpl address in LibTorch 1.x, the address itself in 2.x.
template <typename Key>
Key adamKey(const at::Tensor& parameter) {
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream key;
    key << parameter.unsafeGetTensorImpl();
    return key.str();
  } else {
    return static_cast<Key>(parameter.unsafeGetTensorImpl());
  }
}

using AdamStateKey = std::decay_t<decltype(std::declval<torch::optim::Adam&>().state().begin()->first)>;

}  // namespace

TrainingOptions TrainingOptions::defaultsFor(const EnergySpec& energy, int dim) {
  TrainingOptions o;
  o.energy = energy;
  o.dim = dim;
  o.grid = dim == 2 ? 64 : 32;
  // The network works on the training grid; in 3D a 64^3 network grid would
  // cost ~8x a 32^3 one per step.
  o.network.grid = dim == 2 ? 64 : 32;
  if (energy.internal == InternalKind::PorousMedium) {
    // Speed grows like rho^(m-1): cover the peaks users meet on a unit box.
    o.densities.peakMin = 0.03;
    o.densities.peakMax = 1.0;
    // The network gates the smooth part (blocks of 4 cells) of the
    // linearised implicit step on the density's own grid, two CG iterations
    // (docs/design.md, "Fine detail and the linearised base").
    o.network.base = "linearized";
    o.network.baseCorrection = 0;
    o.network.baseBlock = 4;
    o.network.baseIterations = 2;
    // The gate is scaled by the local contrast over 0.5: without it the gate
    // sat near 0.1-0.2 on constant states and fine modes decayed up to 0.16
    // too fast (docs/design.md, "The gate and the density's contrast").
    o.network.gateContrast = 0.5;
    o.densities.bumpExponent = energy.exponent;
    // Half the width and projection of the other presets: the network of a
    // step costs 0.33 ms instead of 0.76, and the errors stay within the
    // spread between seeds (docs/design.md, "Network width").
    if (dim == 2) {
      o.network.width = 8;
      o.network.hidden = 32;
    }
  } else if (energy.kernel != KernelKind::None) {
    o.densities.massMin = 0.5;
    o.densities.massMax = 1.5;
  } else {
    o.densities.massMin = 0.5;
    o.densities.massMax = 2.0;
  }
  // Gauss-Newton corrections of the learned map at every step (not in
  // training, whose loss is the map's own objective; docs/design.md,
  // "Gauss-Newton corrections of the learned map", "... for every preset",
  // "Corrections until certified"). In 3D as measured there: two for the
  // porous medium (its wild suite from 3.0% to 0.45%), four for the others.
  // In 2D eight, with six line-search trials: the porous-medium wild suite
  // at 128^2 from 1.84% to 0.89% (worst density 5.6% to 3.0%), the
  // Fokker-Planck one at 64^2 from 2.13% to 1.70%; aggregation four, as its
  // reference steps are cheap and eight made its learned steps cost 0.83 of
  // them for 0.003% instead of 0.022%. Keller-Segel's concave kernel is not
  // measured: none.
  const bool porous = energy.internal == InternalKind::PorousMedium;
  if (porous || energy.kernel != KernelKind::KellerSegel) {
    if (dim == 3)
      o.network.gaussNewton = porous ? 2 : 4;
    else
      o.network.gaussNewton = energy.internal == InternalKind::None ? 4 : 8;
  }
  return o;
}

std::array<int64_t, 3> TrainingOptions::cells() const {
  bool shaped = true;
  for (int a = 0; a < dim; ++a) shaped = shaped && gridShape[a] > 0;
  return shaped ? gridShape : std::array<int64_t, 3>{grid, grid, grid};
}

void TrainingOptions::validate() const {
  energy.validate(dim);
  network.validate();
  conditioning.validate();
  if (conditioning.onDiffusion() &&
      (energy.internal == InternalKind::None || energy.diffusion < conditioning.diffusion[0] * (1 - 1e-9) ||
       energy.diffusion > conditioning.diffusion[1] * (1 + 1e-9)))
    throw InvalidParameter("conditioned D range",
                           formatValue(conditioning.diffusion[0]) + " to " + formatValue(conditioning.diffusion[1]),
                           "it needs an internal energy whose D (" + formatValue(energy.diffusion) + ") lies inside");
  if (conditioning.onPotentialStrength() &&
      (energy.potential != PotentialKind::Quadratic ||
       energy.potentialStrength[0] < conditioning.potentialStrength[0] * (1 - 1e-9) ||
       energy.potentialStrength[0] > conditioning.potentialStrength[1] * (1 + 1e-9)))
    throw InvalidParameter(
        "conditioned potential strength range",
        formatValue(conditioning.potentialStrength[0]) + " to " + formatValue(conditioning.potentialStrength[1]),
        "it needs a quadratic potential whose strength (" + formatValue(energy.potentialStrength[0]) + ") lies inside");
  if (conditioning.onExponent() &&
      (energy.internal != InternalKind::PorousMedium || energy.exponent < conditioning.exponent[0] * (1 - 1e-9) ||
       energy.exponent > conditioning.exponent[1] * (1 + 1e-9)))
    throw InvalidParameter(
        "conditioned exponent m range",
        formatValue(conditioning.exponent[0]) + " to " + formatValue(conditioning.exponent[1]),
        "it needs a porous-medium energy whose m (" + formatValue(energy.exponent) + ") lies inside");
  // The attraction alone is drawn: a repulsion would change its ratio to it.
  if (conditioning.onAttraction()) {
    const std::string range =
        formatValue(conditioning.attraction[0]) + " to " + formatValue(conditioning.attraction[1]);
    if (energy.kernel == KernelKind::None)
      throw InvalidParameter("conditioned attraction range", range,
                             "it needs an interaction kernel; this energy has none");
    if (energy.kernel == KernelKind::AttractiveRepulsive && energy.repulsion != 0)
      throw InvalidParameter("conditioned attraction range", range,
                             "the attraction alone is conditioned on: the kernel's repulsion (" +
                                 formatValue(energy.repulsion) + ") must be 0");
    if (energy.attraction < conditioning.attraction[0] * (1 - 1e-9) ||
        energy.attraction > conditioning.attraction[1] * (1 + 1e-9))
      throw InvalidParameter("conditioned attraction range", range,
                             "it must hold the energy's attraction (" + formatValue(energy.attraction) + ")");
  }
  if (dim != 2 && dim != 3) throw InvalidParameter("dim", formatValue(dim), "must be 2 or 3");
  for (int a = 0; a < dim; ++a)
    if (cells()[a] < 8 || cells()[a] > 1024)
      throw InvalidParameter("training grid", formatValue(cells()[a]), "must have 8 to 1024 nodes per axis");
  if (!(tau > 0)) throw InvalidParameter("tau", formatValue(tau), "the time step must be > 0");
  if (mode != "learn-to-evolve" && mode != "initial-only")
    throw InvalidParameter("mode", mode, "allowed: learn-to-evolve, initial-only");
  if (rounds < 1) throw InvalidParameter("rounds", formatValue(rounds), "must be >= 1");
  if (epochs < 1) throw InvalidParameter("epochs", formatValue(epochs), "must be >= 1");
  if (batch < 1) throw InvalidParameter("batch", formatValue(batch), "must be >= 1");
  if (!(learningRate > 0) || !std::isfinite(learningRate))
    throw InvalidParameter("learning rate", formatValue(learningRate), "must be a finite number > 0");
  if (horizon < 1) throw InvalidParameter("horizon", formatValue(horizon), "must be >= 1");
  if (generated < 0) throw InvalidParameter("generated densities", formatValue(generated), "must be >= 0");
  if (generated == 0 && extraDensities.empty())
    throw InvalidParameter("generated densities", "0", "with no densities of your own, generate at least one");
  if (validation < 1) throw InvalidParameter("validation densities", formatValue(validation), "must be >= 1");
  if (!(maxSeconds >= 0))
    throw InvalidParameter("maximum seconds", formatValue(maxSeconds), "must be >= 0 (0: no cap)");
  if (maxNonFiniteSteps < 1)
    throw InvalidParameter("maximum non-finite steps", formatValue(maxNonFiniteSteps), "must be >= 1");
  if (device != "cpu" && device != "cuda") throw InvalidParameter("device", device, "allowed: cpu, cuda");
  if (device == "cuda" && !cudaAvailable())
    throw InvalidParameter("device", "cuda", "this LibTorch build has no CUDA device; use cpu");
  for (int a = 0; a < dim; ++a)
    if (!(boxUpper[a] > boxLower[a]))
      throw InvalidParameter("box", formatValue(boxUpper[a]), "upper must exceed lower");
  if (resume && checkpoint.empty()) throw InvalidParameter("resume", "true", "resuming needs a checkpoint file");
}

LearnToEvolveTrainer::LearnToEvolveTrainer(TrainingOptions options) : options_(std::move(options)) {
  options_.validate();
}

TrainingResult LearnToEvolveTrainer::train(const ProgressCallback& progress) {
  const TrainingOptions& o = options_;
  const auto start = Clock::now();
  const at::Device device = o.device == "cuda" ? at::Device(at::kCUDA) : at::Device(at::kCPU);
  const Grid grid = Grid::box(o.dim, o.cells(), o.boxLower, o.boxUpper);
  auto energy = std::make_shared<const Energy>(o.energy, grid);
  const JkoObjective objective(energy, o.tau);
  std::mt19937_64 random(o.seed);

  // 1. Initial densities S0: the user's plus generated ones; held-out ones for validation.
  std::vector<at::Tensor> initial;
  for (const at::Tensor& rho : o.extraDensities) {
    if (rho.sizes() != at::IntArrayRef(grid.shape()))
      throw InvalidDensity("a training density has a shape other than the training grid's (" + grid.describe() + ")");
    initial.push_back(rho.to(at::kCPU, at::kDouble));
  }
  DensityGenerator generator(grid, o.densities, o.seed);
  for (const at::Tensor& rho : generator.sample(o.generated)) initial.push_back(rho);
  const at::Tensor S0 = at::stack(initial).to(device);
  validateDensity(S0, grid);
  DensityGenerator heldOut(grid, o.densities, o.seed ^ 0x5eedull);
  const std::vector<at::Tensor> validationInitial = heldOut.sample(o.validation);

  // 2. Metadata: fixed feature scales and the ranges trained on.
  OperatorMetadata metadata;
  metadata.dim = o.dim;
  metadata.energy = o.energy;
  metadata.tau = o.tau;
  metadata.conditioning = o.conditioning;
  metadata.network = o.network;
  {
    at::NoGradGuard noGrad;
    const at::Tensor peaks = std::get<0>(S0.flatten(1).max(1));
    const at::Tensor masses = S0.flatten(1).sum(1) * grid.cellVolume();
    metadata.scales.density = peaks.mean().item<double>();
    metadata.ranges.peakMin = peaks.min().item<double>();
    metadata.ranges.peakMax = peaks.max().item<double>();
    metadata.ranges.massMin = masses.min().item<double>();
    metadata.ranges.massMax = masses.max().item<double>();
    metadata.ranges.gridMin = *std::min_element(grid.n.begin(), grid.n.begin() + o.dim);
    metadata.ranges.gridMax = *std::max_element(grid.n.begin(), grid.n.begin() + o.dim);
    for (int a = 0; a < o.dim; ++a) metadata.ranges.boxLength[a] = grid.boxLength(a);
    const at::Tensor potential = energy->potentialOnGrid(device);
    if (potential.defined())
      metadata.scales.potential = std::max((potential - potential.mean()).abs().max().item<double>(), 1e-12);
  }
  // kappa of the resolvent: the diffusivity of the linearised internal energy
  // at the largest peak trained on (the stiffest case).
  if (o.energy.internal == InternalKind::Entropy) metadata.scales.diffusivity = o.energy.diffusion;
  if (o.energy.internal == InternalKind::PorousMedium)
    metadata.scales.diffusivity =
        o.energy.diffusion * o.energy.exponent * std::pow(metadata.ranges.peakMax, o.energy.exponent - 1);
  auto network = VelocityNetwork::create(o.network, o.dim, LearnedOperator::inputChannels(metadata),
                                         LearnedOperator::outputChannels(metadata), o.seed);
  auto op = std::make_shared<LearnedOperator>(metadata, network);
  op->to(device);
  {
    // Velocity scale: mass-weighted RMS of the explicit velocity over S0.
    at::NoGradGuard noGrad;
    const at::Tensor v0 = op->baseVelocity(*energy, S0);
    const double rms = ((S0.unsqueeze(1) * v0 * v0).sum() / (S0.sum() * o.dim)).sqrt().item<double>();
    op->metadata().scales.velocity = rms > 0 ? rms : 1.0;
  }

  // 3. Validation: reference steps from held-out densities and from frames
  //    along their reference trajectories (objective values only). A
  //    conditioned training validates each density at its own energy: the
  //    corners and the middle of the conditioned ranges in turn.
  std::vector<ValidationGroup> validation;
  {
    ReferenceSolverOptions solverOptions;
    solverOptions.objectiveTolerance = 1e-8;
    solverOptions.gradientTolerance = 1e-5;
    const double corners[5][4] = {{0, 0, 0, 0}, {1, 1, 1, 1}, {0, 1, 1, 1}, {1, 0, 0, 0}, {0.5, 0.5, 0.5, 0.5}};
    std::vector<std::shared_ptr<const JkoObjective>> objectives;
    std::vector<std::vector<at::Tensor>> states;
    std::vector<std::vector<double>> reference;
    // Frames 0, K/4 and K/2 of each reference trajectory (later frames move little).
    const std::vector<int> checkpoints{0, std::max(1, o.horizon / 4), std::max(2, o.horizon / 2)};
    for (size_t i = 0; i < validationInitial.size(); ++i) {
      if (i == 0 || o.conditioning.any()) {
        objectives.push_back(o.conditioning.any() ? objectiveFor(drawnEnergy(o, random, corners[i % 5]), grid, o.tau)
                                                  : std::make_shared<const JkoObjective>(energy, o.tau));
        states.emplace_back();
        reference.emplace_back();
      }
      const ReferenceSolver solver(objectives.back(), solverOptions);
      at::Tensor rho = validationInitial[i];
      at::Tensor warm;
      for (int k = 0; k <= checkpoints.back(); ++k) {
        // Lets a caller cancel within a trajectory (a few seconds each on big grids).
        const ProgressCallback withinTrajectory = [&](const ProgressEvent&) {
          ProgressEvent event;
          event.stage = "validation";
          event.message = "reference trajectory " + std::to_string(i + 1) + "/" +
                          std::to_string(validationInitial.size()) + " for validation, step " + std::to_string(k + 1);
          return !progress || progress(event);
        };
        const ReferenceStep step = solver.step(rho, warm, withinTrajectory);
        if (std::find(checkpoints.begin(), checkpoints.end(), k) != checkpoints.end()) {
          states.back().push_back(rho);
          reference.back().push_back(step.objective);
        }
        rho = step.next;
        warm = step.displacement;
      }
      ProgressEvent event;
      event.stage = "validation";
      event.fraction = 0;
      event.message = "reference trajectory " + std::to_string(i + 1) + "/" + std::to_string(validationInitial.size()) +
                      " for validation";
      reportProgress(progress, event);
    }
    at::NoGradGuard noGrad;
    for (size_t g = 0; g < objectives.size(); ++g) {
      ValidationGroup group;
      group.objective = objectives[g];
      group.data.state = objectives[g]->prepare(at::stack(states[g]).to(device));
      group.data.initialObjective = objectives[g]->energy()(group.data.state.density);
      group.data.referenceObjective = at::tensor(reference[g], at::kDouble).to(device);
      validation.push_back(std::move(group));
    }
  }

  // 4. Optimiser and the training set B = S0.
  torch::optim::Adam optimizer(op->network().parameters(), torch::optim::AdamOptions(o.learningRate));
  const Dataset initialSet = makeDataset(*op, objective, S0);
  Dataset data = initialSet;
  const int64_t stepsPerEpoch = (S0.size(0) + o.batch - 1) / o.batch;
  const int64_t stepsPerRound = o.epochs * stepsPerEpoch;
  const int64_t totalSteps = stepsPerRound * o.rounds;

  int firstRound = 1;
  double bestGap = std::numeric_limits<double>::infinity();
  int bestRound = 0;
  std::vector<at::Tensor> best = cloneParameters(op->network());
  nlohmann::json rounds = nlohmann::json::array();
  int64_t nonFiniteSteps = 0;     // skipped optimiser steps, whole run
  double learningRateFactor = 1;  // halved by every skipped step

  auto saveCheckpoint = [&](int round) {
    if (o.checkpoint.empty()) return;
    OperatorArchive archive;
    nlohmann::json meta = op->metadata().toJson();
    std::ostringstream randomState;
    randomState << random;
    meta["checkpoint"] = {{"round", round},
                          {"best_gap", finiteOrNull(bestGap)},
                          {"best_round", bestRound},
                          {"random", randomState.str()},
                          {"rounds", rounds},
                          {"seed", o.seed},
                          {"mode", o.mode},
                          {"nonfinite_steps", nonFiniteSteps},
                          {"learning_rate_factor", learningRateFactor}};
    archive.metadata = meta;
    const auto& parameters = op->network().namedParameters();
    // Skipped steps keep the parameters finite; this refuses to write a
    // checkpoint should anything else ever break that.
    std::vector<at::Tensor> current;
    for (const auto& entry : parameters) current.push_back(entry.second);
    if (!allFinite(current) || !allFinite(best))
      throw TrainingDiverged("the network's parameters are not finite after round " + std::to_string(round) +
                                 "; the checkpoint " + o.checkpoint + " was not overwritten",
                             nullptr, nlohmann::json());
    for (size_t i = 0; i < parameters.size(); ++i) {
      archive.tensors.emplace_back(parameters[i].first, parameters[i].second);
      archive.tensors.emplace_back("best." + parameters[i].first, best[i]);
      auto it = optimizer.state().find(adamKey<AdamStateKey>(parameters[i].second));
      if (it != optimizer.state().end()) {
        auto& state = static_cast<torch::optim::AdamParamState&>(*it->second);
        archive.tensors.emplace_back("adam.exp_avg." + parameters[i].first, state.exp_avg());
        archive.tensors.emplace_back("adam.exp_avg_sq." + parameters[i].first, state.exp_avg_sq());
        archive.tensors.emplace_back("adam.step." + parameters[i].first,
                                     at::full({1}, static_cast<int64_t>(state.step()), at::kLong));
      }
    }
    archive.tensors.emplace_back("dataset.density", data.density);
    writeOperatorArchive(o.checkpoint, archive);
  };

  if (o.resume) {
    const OperatorArchive archive = readOperatorArchive(o.checkpoint);
    const nlohmann::json& meta = archive.metadata;
    if (!meta.contains("checkpoint"))
      throw OperatorFileError(o.checkpoint + " is an operator file, not a training checkpoint");
    const OperatorMetadata saved = OperatorMetadata::fromJson(meta);
    std::string difference;
    if (!saved.energy.sameAs(o.energy, &difference, o.dim) || saved.dim != o.dim ||
        std::abs(saved.tau - o.tau) > 1e-12 || saved.conditioning.toJson() != o.conditioning.toJson() ||
        meta["checkpoint"]["seed"].get<uint64_t>() != o.seed || meta["checkpoint"]["mode"] != o.mode)
      throw OperatorFileError(o.checkpoint +
                              " was written by a different training (energy, dimension, tau, conditioning, seed "
                              "or mode differ" +
                              (difference.empty() ? "" : ": " + difference) + ")");
    op->metadata().scales = saved.scales;
    op->network().loadParameters(archive.tensors);
    std::vector<std::pair<std::string, at::Tensor>> bestValues;
    const auto& parameters = op->network().namedParameters();
    for (size_t i = 0; i < parameters.size(); ++i) {
      for (const auto& [name, tensor] : archive.tensors) {
        if (name == "best." + parameters[i].first) best[i] = tensor.to(device);
      }
      auto find = [&](const std::string& name) -> at::Tensor {
        for (const auto& entry : archive.tensors)
          if (entry.first == name) return entry.second;
        return {};
      };
      const at::Tensor expAvg = find("adam.exp_avg." + parameters[i].first);
      if (expAvg.defined()) {
        auto state = std::make_unique<torch::optim::AdamParamState>();
        state->exp_avg(expAvg.to(device));
        state->exp_avg_sq(find("adam.exp_avg_sq." + parameters[i].first).to(device));
        state->step(find("adam.step." + parameters[i].first).item<int64_t>());
        optimizer.state()[adamKey<AdamStateKey>(parameters[i].second)] = std::move(state);
      }
    }
    for (const auto& [name, tensor] : archive.tensors)
      if (name == "dataset.density") data = makeDataset(*op, objective, tensor.to(device));
    std::istringstream randomState(meta["checkpoint"]["random"].get<std::string>());
    randomState >> random;
    firstRound = meta["checkpoint"]["round"].get<int>() + 1;
    bestGap = meta["checkpoint"]["best_gap"].is_null() ? std::numeric_limits<double>::infinity()
                                                       : meta["checkpoint"]["best_gap"].get<double>();
    bestRound = meta["checkpoint"]["best_round"].get<int>();
    rounds = meta["checkpoint"]["rounds"];
    nonFiniteSteps = meta["checkpoint"].value("nonfinite_steps", int64_t(0));
    learningRateFactor = meta["checkpoint"].value("learning_rate_factor", 1.0);
  }

  const double scaleFloor = 1e-3 * initialSet.scale.median().item<double>();
  // The untrained operator's gap (on the linearised base: the linearised
  // step alone), the mark training has to beat.
  const double initialGap = o.resume ? std::nan("") : validationGap(*op, validation, o.conditioning.any());
  bool stopped = false;
  int consecutiveNonFinite = 0;
  int64_t step = (firstRound - 1) * stepsPerRound;
  // The summary of the run so far (also the payload of TrainingDiverged).
  auto summarize = [&] {
    return nlohmann::json{{"mode", o.mode},
                          {"seed", o.seed},
                          {"rounds", o.rounds},
                          {"epochs", o.epochs},
                          {"batch", o.batch},
                          {"learning_rate", o.learningRate},
                          {"horizon", o.horizon},
                          {"generated", o.generated},
                          {"user_densities", o.extraDensities.size()},
                          {"grid", std::vector<int64_t>(grid.n.begin(), grid.n.begin() + o.dim)},
                          {"optimizer_steps", step},
                          {"steps_per_round", stepsPerRound},
                          {"seconds", std::chrono::duration<double>(Clock::now() - start).count()},
                          {"stopped_at_time_cap", stopped},
                          {"stopped_non_finite", false},
                          {"best_round", bestRound},
                          {"best_validation_gap", finiteOrNull(bestGap)},
                          {"initial_validation_gap", finiteOrNull(initialGap)},
                          {"nonfinite_steps", nonFiniteSteps},
                          {"learning_rate_factor", learningRateFactor},
                          {"per_round", rounds},
                          {"threads", at::get_num_threads()},
                          {"device", o.device},
                          {"parameters", op->network().parameterCount()}};
  };
  for (int round = firstRound; round <= o.rounds && !stopped; ++round) {
    double lossSum = 0;
    int64_t lossCount = 0, roundNonFinite = 0;
    for (int64_t s = 0; s < stepsPerRound; ++s, ++step) {
      // Cosine decay of the learning rate to 5% over the whole run.
      const double lr =
          learningRateFactor * o.learningRate * (0.05 + 0.95 * 0.5 * (1 + std::cos(M_PI * step / double(totalSteps))));
      for (auto& group : optimizer.param_groups()) static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
      std::vector<int64_t> picks(std::min<int64_t>(o.batch, data.size()));
      for (auto& p : picks) p = std::uniform_int_distribution<int64_t>(0, data.size() - 1)(random);
      const at::Tensor index = at::tensor(picks, at::kLong).to(device);
      optimizer.zero_grad();
      // A conditioned training draws the energy of every optimiser step.
      at::Tensor loss = o.conditioning.any() ? batchLoss(*op, *objectiveFor(drawnEnergy(o, random), grid, o.tau), data,
                                                         index, scaleFloor, true)
                                             : batchLoss(*op, objective, data, index, scaleFloor);
      if (o.lossHookForTesting) loss = o.lossHookForTesting(step, loss);
      // One non-finite loss or gradient would make the parameters and Adam's
      // moments NaN for good: such a step is skipped instead, before
      // optimizer.step() touches either, and the learning rate is lowered.
      const double lossValue = loss.item<double>();
      const char* fault = std::isfinite(lossValue) ? nullptr : "loss";
      if (!fault) {
        loss.backward();
        if (!std::isfinite(torch::nn::utils::clip_grad_norm_(op->network().parameters(), 10.0))) fault = "gradient";
      }
      if (!fault) {
        optimizer.step();
        lossSum += lossValue;
        ++lossCount;
        consecutiveNonFinite = 0;
      } else {
        optimizer.zero_grad();
        ++nonFiniteSteps, ++roundNonFinite, ++consecutiveNonFinite;
        learningRateFactor *= 0.5;
        std::ostringstream message;
        message << "round " << round << "/" << o.rounds << ", optimiser step " << step + 1 << ": non-finite " << fault
                << ", step skipped, learning rate lowered to " << learningRateFactor * o.learningRate << " ("
                << consecutiveNonFinite << " in a row, " << nonFiniteSteps << " in all)";
        if (consecutiveNonFinite >= o.maxNonFiniteSteps) {
          nlohmann::json summary = summarize();
          summary["stopped_non_finite"] = true;
          restoreParameters(op->network(), best);
          op->metadata().training = summary;
          op->to(at::kCPU);
          std::ostringstream what;
          what << "training stopped: " << consecutiveNonFinite
               << " optimiser steps in a row gave a non-finite loss or gradient (last: " << message.str() << "). ";
          if (bestRound == 0)
            what << "No round was completed, so nothing was written. ";
          else if (o.checkpoint.empty())
            what << "Nothing was written (no checkpoint file); the best finite parameters so far (round " << bestRound
                 << ", validation gap " << bestGap << ") are kept. ";
          else
            what << "The checkpoint " << o.checkpoint << " keeps the last completed round, with the best finite "
                 << "parameters so far (round " << bestRound << ", validation gap " << bestGap
                 << "); nothing non-finite was written: resume from it. ";
          what << "Try a lower learning rate, a smaller tau, or initial densities inside the ranges of the energy";
          throw TrainingDiverged(what.str(), op, summary);
        }
        ProgressEvent event;
        event.stage = "training";
        event.round = round;
        event.fraction = static_cast<double>(step + 1) / totalSteps;
        event.message = message.str();
        reportProgress(progress, event);
      }
      const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
      if (s % 10 == 0 || s + 1 == stepsPerRound) {
        ProgressEvent event;
        event.stage = "training";
        event.round = round;
        event.epoch = static_cast<int>(s / stepsPerEpoch) + 1;
        event.loss = lossCount ? lossSum / lossCount : std::numeric_limits<double>::quiet_NaN();
        event.fraction = static_cast<double>(step + 1) / totalSteps;
        std::ostringstream message;
        message << "round " << round << "/" << o.rounds << ", epoch " << event.epoch << "/" << o.epochs << ", loss "
                << event.loss << ", " << data.size() << " densities, " << static_cast<int>(elapsed) << " s";
        if (nonFiniteSteps > 0) message << ", " << nonFiniteSteps << " non-finite steps skipped";
        event.message = message.str();
        reportProgress(progress, event);
      }
      if (o.maxSeconds > 0 && elapsed > o.maxSeconds) {
        stopped = true;
        break;
      }
    }

    const double gap = validationGap(*op, validation, o.conditioning.any());
    if (gap < bestGap) {
      bestGap = gap;
      bestRound = round;
      best = cloneParameters(op->network());
    }
    nlohmann::json record = {{"round", round},
                             {"loss", lossCount ? finiteOrNull(lossSum / lossCount) : nlohmann::json()},
                             {"validation_gap", finiteOrNull(gap)},
                             {"densities", data.size()},
                             {"nonfinite_steps", roundNonFinite},
                             {"seconds", std::chrono::duration<double>(Clock::now() - start).count()}};

    // Learn-to-Evolve: roll the current operator out from S0 (no gradient),
    // horizon growing to K by the last round, and train on all frames.
    if (o.mode == "learn-to-evolve" && round < o.rounds && !stopped) {
      const int horizon =
          o.rounds > 1 ? std::min<int>(o.horizon, (o.horizon * round + o.rounds - 2) / (o.rounds - 1)) : o.horizon;
      std::vector<at::Tensor> frames{S0};
      if (o.conditioning.any()) {
        // Four chunks of S0, each rolled out at an energy of its own draw.
        std::vector<std::vector<at::Tensor>> chunks(horizon);
        for (const at::Tensor& chunk : S0.chunk(4)) {
          const EnergySpec drawn = drawnEnergy(o, random);
          at::Tensor rho = chunk;
          for (int k = 0; k < horizon; ++k) {
            rho = op->step(rho, grid, &drawn).next;
            chunks[k].push_back(rho);
          }
        }
        for (int k = 0; k < horizon; ++k) frames.push_back(at::cat(chunks[k]));
      } else {
        at::Tensor rho = S0;
        for (int k = 0; k < horizon; ++k) {
          rho = op->step(rho, grid).next;
          frames.push_back(rho);
        }
      }
      data = concatenate(
          initialSet, makeDataset(*op, objective, at::cat(std::vector<at::Tensor>(frames.begin() + 1, frames.end()))));
      record["horizon"] = horizon;
    }
    rounds.push_back(record);
    ProgressEvent event;
    event.stage = "training";
    event.round = round;
    event.fraction = static_cast<double>(step) / totalSteps;
    event.loss = lossCount ? lossSum / lossCount : std::numeric_limits<double>::quiet_NaN();
    std::ostringstream message;
    message << "round " << round << "/" << o.rounds << " done: validation gap " << gap << " (best " << bestGap
            << " in round " << bestRound << ")";
    event.message = message.str();
    saveCheckpoint(round);
    reportProgress(progress, event);
  }

  restoreParameters(op->network(), best);
  if (!allFinite(best))
    throw TrainingDiverged("training ended with non-finite parameters; no operator was produced", nullptr, summarize());
  const nlohmann::json summary = summarize();
  op->metadata().training = summary;
  op->to(at::kCPU);
  return {op, summary};
}

}  // namespace jko
