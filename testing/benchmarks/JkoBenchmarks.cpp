#include "JkoBenchmarks.h"

#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <sys/resource.h>
#include <torch/cuda.h>
#include <torch/optim/adam.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <iostream>

#include "evaluation/ReferenceCases.h"
#include "numerics/Errors.h"
#include "numerics/JkoObjective.h"
#include "numerics/ReferenceSolver.h"
#include "numerics/StepCertificate.h"
#include "operator/DensityGenerator.h"
#include "operator/LearnToEvolveTrainer.h"
#include "operator/LearnedOperator.h"
#include "operator/SpectralConvolution.h"
#include "operator/VelocityNetwork.h"
#include "runtime/Runtime.h"

namespace jko::bench {
namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

// Waits for queued GPU work, so that timings cover it.
bool timingCuda = false;
void synchronize() {
  if (timingCuda) torch::cuda::synchronize();
}

// Median wall time in ms of `repeats` calls after two warm-up calls.
double medianMs(int repeats, const std::function<void()>& f) {
  f();
  f();
  synchronize();
  std::vector<double> times;
  for (int i = 0; i < repeats; ++i) {
    const auto start = Clock::now();
    f();
    synchronize();
    times.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  }
  return median(times);
}

double peakRssMb() {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;  // kilobytes on Linux
}

std::shared_ptr<LearnedOperator> untrainedOperator(const OperatorMetadata& like, int dim) {
  OperatorMetadata m = like;
  m.dim = dim;
  m.training = nlohmann::json::object();
  auto network =
      VelocityNetwork::create(m.network, dim, LearnedOperator::inputChannels(m), LearnedOperator::outputChannels(m), 1);
  return std::make_shared<LearnedOperator>(m, network);
}

at::Tensor sampleDensity(const Grid& grid, const OperatorMetadata& m) {
  DensityRanges ranges;
  ranges.peakMin = std::max(m.ranges.peakMin, 0.05);
  ranges.peakMax = std::max(m.ranges.peakMax, ranges.peakMin);
  return DensityGenerator(grid, ranges, 17).next("bumps");
}

// Sustained float32 matrix-product rate (GFLOP/s) and copy bandwidth (GB/s):
// the machine's ceilings the learned step is measured against.
std::pair<double, double> machineCeilings(int repeats) {
  const int64_t n = 512;
  const at::Tensor a = at::randn({n, n}), b = at::randn({n, n});
  const double gemmMs = medianMs(repeats, [&] { at::mm(a, b); });
  const at::Tensor big = at::randn({16 << 20});  // 64 MB
  at::Tensor copy = at::empty_like(big);
  const double copyMs = medianMs(repeats, [&] { copy.copy_(big); });
  return {2.0 * n * n * n / (gemmMs * 1e6), 2.0 * big.numel() * 4 / (copyMs * 1e6)};
}

// Floating-point work of one FNO forward pass on a network grid (batch 1).
double fnoFlops(const NetworkConfig& c, int dim, int64_t n, int inChannels, int outChannels) {
  double points = 1, padded = 1;
  for (int a = 0; a < dim; ++a) {
    points *= n;
    padded *= n + std::ceil(c.padFraction * n);
  }
  const double w = c.width;
  double flops = 2 * padded * inChannels * w;                       // lift
  const double fft = 2.5 * padded * std::log2(padded) * w * 2 * 2;  // rfft + irfft, real
  const double modes = std::pow(std::min<double>(c.modes, n), dim) * (1 << (dim - 1));
  flops += c.layers * (fft + 8 * modes * w * w + 2 * padded * w * w + 8 * padded * w);
  flops += 2 * points * w * c.hidden + 2 * points * c.hidden * outChannels;
  return flops;
}

}  // namespace

nlohmann::json runBenchmarks(const BenchOptions& o) {
  configureRuntime(o.threads);
  at::NoGradGuard noGrad;
  nlohmann::json out;
  out["threads"] = at::get_num_threads();
  out["blas"] = loadedBlas();
  out["libtorch"] = libtorchVersion();
  out["repeats"] = o.repeats;
  out["statistic"] = "median";

  std::shared_ptr<LearnedOperator> op;
  if (!o.operatorFile.empty()) {
    op = LearnedOperator::load(o.operatorFile);
    out["operator"] = o.operatorFile;
  } else {
    OperatorMetadata m;
    m.energy = EnergySpec::porousMedium();
    m.scales.diffusivity = 1.2;
    op = untrainedOperator(m, 2);
    out["operator"] = "untrained default network (same cost as a trained one)";
  }
  const OperatorMetadata& meta = op->metadata();
  if (meta.dim != 2)
    throw InvalidParameter("--operator", o.operatorFile,
                           "is a " + std::to_string(meta.dim) +
                               "D operator; the 2D steps need a 2D one "
                               "(a 3D operator goes to --operator-3d)");
  out["network"] = meta.network.toJson();
  // A 3D operator: the one given, else one of the 3D defaults (its network
  // grid is 32 per axis). Loaded and checked here, before any timing.
  std::shared_ptr<LearnedOperator> op3;
  if (!o.operatorFile3d.empty()) {
    op3 = LearnedOperator::load(o.operatorFile3d);
    if (op3->metadata().dim != 3)
      throw InvalidParameter("--operator-3d", o.operatorFile3d,
                             "is a " + std::to_string(op3->metadata().dim) +
                                 "D operator; give a 3D one (jko train --dim 3), or leave the option out");
    out["operator_3d"] = o.operatorFile3d;
  } else {
    OperatorMetadata meta3 = meta;
    meta3.network = TrainingOptions::defaultsFor(meta.energy, 3).network;
    op3 = untrainedOperator(meta3, 3);
    out["operator_3d"] = "untrained network of the 3D defaults";
  }
  if (o.device == "cuda" && !cudaAvailable())
    throw InvalidParameter("device", "cuda", "this LibTorch build has no CUDA device; use cpu");
  const at::Device device = o.device == "cuda" ? at::Device(at::kCUDA) : at::Device(at::kCPU);
  timingCuda = device.is_cuda();
  out["device"] = o.device;
  op->to(device);

  // 1. Learned step, batch 1.
  std::vector<int64_t> sizes2 = o.quick ? std::vector<int64_t>{64, 128} : std::vector<int64_t>{64, 128, 256, 512};
  std::map<int64_t, double> learned;
  for (int64_t n : sizes2) {
    const Grid grid = Grid::unitBox(2, n);
    const at::Tensor rho = sampleDensity(grid, meta).to(device);
    learned[n] = medianMs(o.repeats, [&] { op->step(rho, grid); });
    out["learned_step_ms_" + std::to_string(n)] = learned[n];
    std::cerr << "learned step " << n << "^2: " << learned[n] << " ms\n";
  }
  // Batched steps (many densities at once), per density.
  for (int64_t batch : {16, 64}) {
    if (o.quick || (!device.is_cuda() && batch > 16)) continue;
    const Grid grid = Grid::unitBox(2, 256);
    const at::Tensor rho = sampleDensity(grid, meta).to(device).unsqueeze(0).expand({batch, 256, 256}).contiguous();
    const double ms = medianMs(std::max(3, o.repeats / 3), [&] { op->step(rho, grid); });
    out["learned_step_ms_256_batch" + std::to_string(batch) + "_per_density"] = ms / batch;
    std::cerr << "learned step 256^2, batch " << batch << ": " << ms / batch << " ms per density\n";
  }
  op3->to(device);
  out["network_3d"] = op3->metadata().network.toJson();
  const std::vector<int64_t> sizes3 =
      o.quick ? std::vector<int64_t>{32}
              : (o.operatorFile3d.empty() ? std::vector<int64_t>{32, 64} : std::vector<int64_t>{32, 64, 128});
  for (int64_t n : sizes3) {
    const Grid grid = Grid::unitBox(3, n);
    const at::Tensor rho = sampleDensity(grid, op3->metadata()).to(device);
    const double ms = medianMs(std::max(3, o.repeats / 3), [&] { op3->step(rho, grid); });
    out["learned_step_ms_" + std::to_string(n) + "_3d"] = ms;
    std::cerr << "learned step " << n << "^3: " << ms << " ms\n";
  }

  // The certificate of a learned step (numerics/StepCertificate): descent
  // guard, J and g . H0 g by the fused gradient pass; budget: one learned
  // step. Against it, the same gradient by autograd (forward and backward).
  for (int64_t n : sizes2) {
    if (device.is_cuda()) break;
    const Grid grid = Grid::unitBox(2, n);
    const at::Tensor rho = sampleDensity(grid, meta);
    const auto objective = op->objectiveOn(grid);
    const StepCertifier certifier(objective);
    const at::Tensor u = meta.tau * op->step(rho, grid).velocity;
    const std::string suffix = "_" + std::to_string(n);
    out["certificate_ms" + suffix] = medianMs(o.repeats, [&] { certifier.certify(rho, u); });
    out["certificate_over_learned_step" + suffix] = out["certificate_ms" + suffix].get<double>() / learned[n];
    // What a rollout pays per frame: E(rho_k) came with the previous frame
    // (the filter and `jko rollout` hand it in).
    const double energy = objective->energy()(rho.unsqueeze(0)).item<double>();
    out["certificate_in_rollout_ms" + suffix] = medianMs(o.repeats, [&] { certifier.certify(rho, u, energy); });
    out["certificate_in_rollout_over_learned_step" + suffix] =
        out["certificate_in_rollout_ms" + suffix].get<double>() / learned[n];
    const JkoState state = objective->prepare(rho);
    out["objective_gradient_fused_ms" + suffix] = medianMs(o.repeats, [&] { certifier.gradient(state, u); });
    out["objective_gradient_autograd_ms" + suffix] =
        medianMs(o.repeats, [&] { certifier.gradientByAutograd(state, u); });
    std::cerr << "certificate " << n << "^2: " << out["certificate_ms" + suffix].get<double>() << " ms\n";
  }

  // Where a 128^2 step goes: features on the network grid, the network,
  // the push-forward (prefilter, deposit, limiter); and one spectral layer.
  // On the threads a single density's step uses (LearnedOperator::step).
  {
    const ScopedIntraOpThreads stepThreads(
        Grid::unitBox(2, 128).numNodes() <= LearnedOperator::kSerialStepNodes && !device.is_cuda() ? 1 : 0);
    const Grid grid = Grid::unitBox(2, 128);
    const at::Tensor rho = sampleDensity(grid, meta).to(device, at::kDouble).unsqueeze(0);
    const auto objective = op->objectiveOn(grid);
    const PushForward& push = objective->pushForward();
    const LearnedOperator::NetworkInputs in = op->networkInputs(objective->energy(), rho);
    const at::Tensor v = op->velocity(objective->energy(), rho);
    out["learned_step_parts_ms_128"] = {
        {"features", medianMs(o.repeats, [&] { op->networkInputs(objective->energy(), rho); })},
        {"network", medianMs(o.repeats, [&] { op->network().forward(in.features); })},
        {"push_forward", medianMs(o.repeats, [&] { push.apply(rho, meta.tau * v); })}};
    if (meta.network.kind == "fno") {
      const int64_t padded = in.grid.n[0] + static_cast<int64_t>(std::ceil(meta.network.padFraction * in.grid.n[0]));
      const int width = meta.network.width;
      const at::Tensor x = at::randn({1, padded, padded, width}, at::TensorOptions().device(device));
      std::vector<at::Tensor> blocks(
          2, at::randn({width, width, meta.network.modes, meta.network.modes, 2}, at::TensorOptions().device(device)));
      const at::Tensor weight = arrangeSpectralWeights(blocks, keptModes(x.sizes().slice(1, 2), meta.network.modes));
      out["spectral_layer_ms_" + std::to_string(padded)] = medianMs(o.repeats, [&] { spectralConvolution(x, weight); });
    }
  }

  // 2. Reference solver step (barenblatt-flow, the tolerance of `jko eval`).
  ReferenceSolverOptions solverOptions;
  out["reference_tolerance"] = {{"objective", solverOptions.objectiveTolerance},
                                {"gradient", solverOptions.gradientTolerance}};
  // 256^2 (1.3 s a step): the first 6 of the 20 steps.
  for (int64_t n : o.quick ? std::vector<int64_t>{64} : std::vector<int64_t>{64, 128, 256}) {
    const ReferenceCase c = makeReferenceCase("barenblatt-flow", n, 2, 0, n > 128 ? 6 : -1);
    const ReferenceSolver solver(
        std::make_shared<const JkoObjective>(std::make_shared<const Energy>(c.energy, c.grid), c.tau), solverOptions);
    std::vector<double> times;
    at::Tensor rho = c.initial, warm;
    for (int k = 0; k < c.steps; ++k) {
      const auto start = Clock::now();
      const ReferenceStep step = solver.step(rho, warm);
      times.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
      rho = step.next;
      warm = step.displacement;
    }
    const double ms = median(times);
    out["reference_step_ms_" + std::to_string(n)] = ms;
    if (learned.count(n)) out["reference_over_learned_" + std::to_string(n)] = ms / learned[n];
    std::cerr << "reference step " << n << "^2: " << ms << " ms\n";
  }
  if (learned.count(128)) out["classical_back_and_forth_over_learned_128"] = 1200.0 / learned[128];

  // 3. Push-forward and each energy alone, 128^2 (float64).
  {
    const Grid grid = Grid::unitBox(2, 128);
    const PushForward push(grid);
    const at::Tensor rho = sampleDensity(grid, meta).unsqueeze(0);
    const at::Tensor u = 0.3 * grid.spacing[0] * at::randn({1, 2, 128, 128}, at::kDouble);
    out["prefilter_ms_128"] = medianMs(o.repeats, [&] { push.prefilter(rho); });
    const at::Tensor m = push.prefilter(rho);
    out["deposit_ms_128"] = medianMs(o.repeats, [&] { push.deposit(m, u); });
    // Before the fused kernel: the same deposit as ~40 tensor operations.
    out["deposit_tensor_ops_ms_128"] = medianMs(o.repeats, [&] { push.depositByTensorOperations(m, u); });
    {
      at::AutoGradMode grad(true);
      const at::Tensor uGrad = u.clone().requires_grad_(true);
      out["deposit_forward_backward_ms_128"] = medianMs(o.repeats, [&] { push.deposit(m, uGrad).sum().backward(); });
      out["deposit_tensor_ops_forward_backward_ms_128"] =
          medianMs(o.repeats, [&] { push.depositByTensorOperations(m, uGrad).sum().backward(); });
    }
    out["push_forward_ms_128"] = medianMs(o.repeats, [&] { push.apply(rho, u); });
    const at::Tensor raw = push.deposit(m, u), target = push.mass(rho);
    out["limit_ms_128"] = medianMs(o.repeats, [&] { push.limit(raw, target); });
    // Before the fused limiter.
    out["limit_tensor_ops_ms_128"] = medianMs(o.repeats, [&] { push.limitByTensorOperations(raw, target); });
    for (const std::string& preset : {"fokker-planck", "porous-medium", "aggregation", "aggregation-diffusion"}) {
      const Energy energy(EnergySpec::fromPreset(preset), grid);
      out["energy_ms_128_" + preset] = medianMs(o.repeats, [&] { energy(rho); });
    }
  }

  // 4. Training throughput: optimiser steps of the default batch on 64^2.
  {
    at::AutoGradMode grad(true);
    TrainingOptions t = TrainingOptions::defaultsFor(meta.energy, 2);
    auto trainee = untrainedOperator(meta, 2);
    trainee->to(device);
    const Grid grid = Grid::unitBox(2, t.grid);
    const auto objective = trainee->objectiveOn(grid);
    DensityGenerator generator(grid, t.densities, 3);
    const at::Tensor batch = at::stack(generator.sample(t.batch)).to(device);
    const JkoState state = objective->prepare(batch);
    torch::optim::Adam adam(trainee->network().parameters(), torch::optim::AdamOptions(1e-4));
    const double ms = medianMs(std::max(5, o.repeats / 2), [&] {
      adam.zero_grad();
      const at::Tensor u = t.tau * trainee->velocity(objective->energy(), state.density);
      objective->evaluate(state, u).objective.mean().backward();
      adam.step();
    });
    out["train_step_ms"] = ms;
    out["train_batch"] = t.batch;
    out["train_samples_per_s"] = t.batch / (ms / 1000.0);
    std::cerr << "training: " << t.batch / (ms / 1000.0) << " samples/s\n";
  }

  // 5. The floor: network work against this CPU's ceilings.
  if (!device.is_cuda()) {
    const auto [gflops, bandwidth] = machineCeilings(o.repeats);
    out["machine_gemm_gflops"] = gflops;
    out["machine_copy_gb_per_s"] = bandwidth;
    for (int64_t n : sizes2) {
      const int64_t networkNodes = std::min<int64_t>(n, meta.network.grid);
      const double flops = fnoFlops(meta.network, 2, networkNodes, LearnedOperator::inputChannels(meta),
                                    LearnedOperator::outputChannels(meta));
      // The push-forward streams ~40 float64 numbers per node (prefilter, 9-point deposit, limiter).
      const double bytes = 40.0 * 8 * n * n;
      const double floorMs = flops / (gflops * 1e6) + bytes / (bandwidth * 1e6);
      out["learned_floor_ms_" + std::to_string(n)] = floorMs;
      out["learned_over_floor_" + std::to_string(n)] = learned[n] / floorMs;
    }
  }
  out["peak_rss_mb"] = peakRssMb();
  return out;
}

}  // namespace jko::bench
