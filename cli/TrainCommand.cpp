// jko train: self-supervised Learn-to-Evolve training of a learned JKO operator.
#include <csignal>
#include <iomanip>
#include <iostream>
#include <memory>
#include <thread>

#include "Commands.h"
#include "EnergyOptions.h"
#include "FrameFiles.h"
#include "operator/LearnToEvolveTrainer.h"
#include "runtime/Runtime.h"

namespace jko::cli {
namespace {

struct TrainCommandOptions {
  EnergyOptions energy;
  int dim = 2, threads = 0;
  std::string out, network, base, mode, device = "cpu", checkpoint;
  std::vector<std::string> initial;
  std::vector<double> conditionD, conditionStrength, conditionExponent, conditionAttraction;
  TrainingOptions given;  // values of the options given; defaults come from the preset
  bool resume = false, quiet = false;
  std::map<std::string, CLI::Option*> options;
};

// Set by the first Ctrl-C (SIGINT) or SIGTERM: training stops at its next
// progress report and the output file is left as it was. The handler then
// restores the default, so a second Ctrl-C ends the process at once.
volatile std::sig_atomic_t interrupted = 0;

extern "C" void requestStop(int signal) {
  interrupted = 1;
  std::signal(signal, SIG_DFL);
}

// Installs requestStop for the lifetime of the object.
class InterruptGuard {
 public:
  InterruptGuard() {
    interrupted = 0;
    previousInterrupt_ = std::signal(SIGINT, requestStop);
    previousTerminate_ = std::signal(SIGTERM, requestStop);
  }
  ~InterruptGuard() {
    std::signal(SIGINT, previousInterrupt_);
    std::signal(SIGTERM, previousTerminate_);
  }

 private:
  void (*previousInterrupt_)(int);
  void (*previousTerminate_)(int);
};

}  // namespace

void addTrainCommand(CLI::App& app) {
  auto o = std::make_shared<TrainCommandOptions>();
  CLI::App* train = app.add_subcommand("train", "Train a learned JKO operator (self-supervised, Learn-to-Evolve)");
  o->energy.addTo(*train, true);
  auto& g = o->given;
  auto add = [&](const std::string& name, auto& value, const std::string& help) {
    o->options[name] = train->add_option(name, value, help);
    return o->options[name];
  };
  train->add_option("--dim", o->dim, "Dimension, 2 or 3")->check(CLI::IsMember({2, 3}))->capture_default_str();
  add("--grid", g.grid, "Nodes per axis of the training grid (default 64 in 2D, 32 in 3D)");
  add("--tau", g.tau, "Time step of the operator (default 0.005)");
  add("--horizon", g.horizon, "Rollout horizon K reached by the last round");
  add("--rounds", g.rounds, "Learn-to-Evolve rounds");
  add("--epochs", g.epochs, "Epochs per round (an epoch: initial densities / batch optimiser steps)");
  add("--batch", g.batch, "Densities per optimiser step");
  add("--lr", g.learningRate, "Adam learning rate (cosine decay to 5%)");
  add("--seed", g.seed, "Seed of the generated densities, the network and the batches");
  add("--generated", g.generated, "Random initial densities to generate");
  add("--validation", g.validation, "Held-out random densities for checkpoint selection");
  add("--max-seconds", g.maxSeconds, "Stop after this many seconds and keep the best so far (0: no cap)");
  add("--width", g.network.width, "FNO width");
  add("--modes", g.network.modes, "FNO Fourier modes per axis");
  add("--layers", g.network.layers, "FNO layers");
  add("--network-grid", g.network.grid, "The network works on at most this many nodes per axis");
  add("--hidden", g.network.hidden, "FNO projection width");
  add("--base-correction", g.network.baseCorrection,
      "Linearized base: the network's correction, at most this many velocity scales (0: a gate only)");
  add("--base-iterations", g.network.baseIterations, "Linearized base: conjugate-gradient iterations");
  train->add_flag("--base-smooth-inputs", o->given.network.baseSmoothInputs,
                  "Linearized base: the network sees its inputs averaged over the gate's blocks");
  add("--base-smoothing", g.network.baseSmoothing,
      "Linearized base: Gauss-Seidel sweeps before and after each coarse correction");
  add("--base-block", g.network.baseBlock,
      "Linearized base: the network's gate acts on the base averaged over blocks of this many cells");
  add("--gate-contrast", g.network.gateContrast,
      "Linearized base: the gate is scaled by the density's local contrast over this value (0: unscaled)");
  add("--gauss-newton", g.network.gaussNewton,
      "Gauss-Newton corrections of the learned map at every step (0: none; default: the preset's, in 2D 8 and 4 "
      "for aggregation, in 3D 2 for the porous medium and 4 for the others, none for Keller-Segel)");
  add("--peak-min", g.densities.peakMin, "Smallest peak density generated (porous medium)");
  add("--peak-max", g.densities.peakMax, "Largest peak density generated (porous medium)");
  train->add_option("--network", o->network, "Network: fno or unet")->check(CLI::IsMember({"fno", "unet"}));
  train
      ->add_option("--base", o->base,
                   "What the network gates and corrects: linearized (the linearised implicit step on the density's "
                   "grid; the porous medium's default) or resolvent")
      ->check(CLI::IsMember({"linearized", "resolvent"}));
  train
      ->add_option("--condition-D", o->conditionD,
                   "MIN,MAX: one operator for every D in this range (at --tau; other time steps reach it through "
                   "the step's symmetries); the network sees D as an input")
      ->delimiter(',')
      ->expected(2);
  train
      ->add_option("--condition-potential-strength", o->conditionStrength,
                   "MIN,MAX: the same for the quadratic potential's strength a")
      ->delimiter(',')
      ->expected(2);
  train
      ->add_option("--condition-m", o->conditionExponent,
                   "MIN,MAX: the same for the porous medium's exponent m (the density's symmetry then no longer "
                   "fixes its mass: pair it with --condition-D)")
      ->delimiter(',')
      ->expected(2);
  train
      ->add_option("--condition-attraction", o->conditionAttraction,
                   "MIN,MAX: the same for the interaction's attraction A (a kernel without repulsion; the density's "
                   "symmetry then brings any mass into the trained masses)")
      ->delimiter(',')
      ->expected(2);
  train->add_option("--mode", o->mode, "learn-to-evolve or initial-only (the ablation)")
      ->check(CLI::IsMember({"learn-to-evolve", "initial-only"}));
  train->add_option("--device", o->device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  train->add_option("--threads", o->threads, "LibTorch threads (default: all cores)");
  train->add_option("--initial", o->initial, "Initial densities of your own (.vti or .npy on the training grid)");
  train->add_option("--checkpoint", o->checkpoint, "Checkpoint file written after every round");
  train->add_flag("--resume", o->resume, "Continue from --checkpoint");
  train->add_option("--out", o->out, "Output operator file (.jko)")->required();
  train->add_flag("--quiet", o->quiet, "No progress line");

  train->callback([o] {
    configureRuntime(o->threads > 0 ? o->threads : static_cast<int>(std::thread::hardware_concurrency()));
    TrainingOptions options = TrainingOptions::defaultsFor(o->energy.spec(), o->dim);
    const TrainingOptions& g = o->given;
    auto given = [&](const char* name) { return o->options.at(name)->count() > 0; };
    if (given("--grid")) options.grid = g.grid;
    if (given("--tau")) options.tau = g.tau;
    if (given("--horizon")) options.horizon = g.horizon;
    if (given("--rounds")) options.rounds = g.rounds;
    if (given("--epochs")) options.epochs = g.epochs;
    if (given("--batch")) options.batch = g.batch;
    if (given("--lr")) options.learningRate = g.learningRate;
    if (given("--seed")) options.seed = g.seed;
    if (given("--generated")) options.generated = g.generated;
    if (given("--validation")) options.validation = g.validation;
    if (given("--max-seconds")) options.maxSeconds = g.maxSeconds;
    if (given("--width")) options.network.width = g.network.width;
    if (given("--modes")) options.network.modes = g.network.modes;
    if (given("--layers")) options.network.layers = g.network.layers;
    if (given("--network-grid")) options.network.grid = g.network.grid;
    if (given("--hidden")) options.network.hidden = g.network.hidden;
    if (given("--base-correction")) options.network.baseCorrection = g.network.baseCorrection;
    if (given("--base-iterations")) options.network.baseIterations = g.network.baseIterations;
    if (given("--base-smoothing")) options.network.baseSmoothing = g.network.baseSmoothing;
    if (g.network.baseSmoothInputs) options.network.baseSmoothInputs = true;
    if (given("--base-block")) options.network.baseBlock = g.network.baseBlock;
    if (given("--gate-contrast")) options.network.gateContrast = g.network.gateContrast;
    if (given("--gauss-newton")) options.network.gaussNewton = g.network.gaussNewton;
    if (given("--peak-min")) options.densities.peakMin = g.densities.peakMin;
    if (given("--peak-max")) options.densities.peakMax = g.densities.peakMax;
    if (!o->network.empty()) options.network.kind = o->network;
    if (!o->base.empty()) options.network.base = o->base;
    if (!o->mode.empty()) options.mode = o->mode;
    if (o->conditionD.size() == 2) options.conditioning.diffusion = {o->conditionD[0], o->conditionD[1]};
    if (o->conditionStrength.size() == 2)
      options.conditioning.potentialStrength = {o->conditionStrength[0], o->conditionStrength[1]};
    if (o->conditionExponent.size() == 2)
      options.conditioning.exponent = {o->conditionExponent[0], o->conditionExponent[1]};
    if (o->conditionAttraction.size() == 2)
      options.conditioning.attraction = {o->conditionAttraction[0], o->conditionAttraction[1]};
    options.device = o->device;
    options.checkpoint = o->checkpoint;
    options.resume = o->resume;
    for (const std::string& path : o->initial) {
      Grid fileGrid;
      options.extraDensities.push_back(readDensity(path, "", fileGrid));
    }
    LearnToEvolveTrainer trainer(options);
    // The output file is written only after training succeeded, through a
    // temporary file and a rename: an interrupted or failed training leaves
    // an existing file byte for byte as it was.
    const std::string untouched = " " + o->out + " was not written (a file there is left as it was)";
    const std::string resumeHint = o->checkpoint.empty()
                                       ? ""
                                       : "; the checkpoint " + o->checkpoint +
                                             " (when written) holds the last completed round: continue with --resume";
    TrainingResult result;
    try {
      InterruptGuard guard;
      result = trainer.train([&](const ProgressEvent& e) {
        if (!o->quiet) std::cerr << "\r" << std::left << std::setw(100) << e.message << std::flush;
        return interrupted == 0;
      });
    } catch (const Cancelled&) {
      if (!o->quiet) std::cerr << "\n";
      throw Error("training interrupted:" + untouched + resumeHint);
    } catch (const TrainingDiverged& e) {
      if (!o->quiet) std::cerr << "\n";
      throw Error(std::string(e.what()) + " (--lr, --tau, --initial; --resume --checkpoint);" + untouched);
    }
    if (!o->quiet) std::cerr << "\n";
    const int64_t skipped = result.summary.value("nonfinite_steps", int64_t(0));
    if (skipped > 0)
      std::cerr << "jko: warning: " << skipped
                << " optimiser steps had a non-finite loss or gradient and were skipped; the learning rate ended at "
                << result.summary["learning_rate_factor"].get<double>() << " times its schedule\n";
    result.op->save(o->out);
    std::cout << "saved " << o->out << ": " << options.energy.describe() << ", tau " << options.tau << ", "
              << result.summary["optimizer_steps"] << " optimiser steps in " << std::fixed << std::setprecision(1)
              << result.summary["seconds"].get<double>() << " s, best validation gap " << std::setprecision(4)
              << result.summary["best_validation_gap"].get<double>() << " (round " << result.summary["best_round"]
              << ")\n";
  });
}

}  // namespace jko::cli
