// The learned operator, its files, and Learn-to-Evolve training on tiny problems.
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "numerics/Errors.h"
#include "numerics/JkoObjective.h"
#include "numerics/ReferenceSolver.h"
#include "operator/LearnToEvolveTrainer.h"
#include "operator/LearnedOperator.h"
#include "operator/OperatorFile.h"
#include "operator/VelocityNetwork.h"
#include "runtime/Runtime.h"

namespace jko {
namespace {

namespace fs = std::filesystem;

std::string temporaryPath(const std::string& name) {
  return (fs::temp_directory_path() / ("jko_test_" + std::to_string(::getpid()) + "_" + name)).string();
}

TrainingOptions tinyTraining(uint64_t seed = 3) {
  TrainingOptions o = TrainingOptions::defaultsFor(EnergySpec::porousMedium(2, 1), 2);
  o.grid = 24;
  o.rounds = 2;
  o.epochs = 6;
  o.batch = 8;
  o.generated = 16;
  o.validation = 3;
  o.horizon = 4;
  o.seed = seed;
  o.network.width = 8;
  o.network.modes = 6;
  o.network.layers = 2;
  o.network.hidden = 16;
  return o;
}

// One trained tiny operator shared by the tests below.
const TrainingResult& trainedTiny() {
  static const TrainingResult result = [] {
    configureRuntime(2);
    return LearnToEvolveTrainer(tinyTraining()).train();
  }();
  return result;
}

at::Tensor heldOutDensities(const Grid& grid, int count) {
  DensityRanges ranges = TrainingOptions::defaultsFor(EnergySpec::porousMedium(2, 1), 2).densities;
  return at::stack(DensityGenerator(grid, ranges, 987654321).sample(count));
}

// A small porous-medium operator (m = 2, tau = 0.005; width 6, 4 modes, 2
// layers, projection 8) on the given base; a linearised base gates blocks
// of 4 cells.
OperatorMetadata smallPorousMetadata(int dim, int networkGrid, const std::string& base, double diffusivityScale) {
  OperatorMetadata m;
  m.dim = dim;
  m.energy = EnergySpec::porousMedium(2, 1);
  m.tau = 0.005;
  m.scales.diffusivity = diffusivityScale;
  m.network.width = 6;
  m.network.modes = 4;
  m.network.layers = 2;
  m.network.hidden = 8;
  m.network.grid = networkGrid;
  m.network.base = base;
  m.network.baseBlock = base == "linearized" ? 4 : 1;
  return m;
}

// Its network with random weights: outputs of order one (the initial output
// layer is tiny).
std::shared_ptr<VelocityNetwork> randomNetwork(const OperatorMetadata& m, uint64_t networkSeed, uint64_t weightSeed) {
  auto network = VelocityNetwork::create(m.network, m.dim, LearnedOperator::inputChannels(m),
                                         LearnedOperator::outputChannels(m), networkSeed);
  at::manual_seed(weightSeed);
  std::vector<std::pair<std::string, at::Tensor>> values;
  for (const auto& [name, tensor] : network->namedParameters())
    values.emplace_back(name, at::randn(tensor.sizes()) * (name.find("spectral") != std::string::npos ? 0.05 : 0.5));
  network->loadParameters(values);
  return network;
}

// A single small density steps on one thread without touching LibTorch's
// thread pools or other threads' settings.
TEST(Runtime, ScopedIntraOpThreadsRestoresTheCount) {
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  {
    const ScopedIntraOpThreads one(1);
    EXPECT_EQ(at::get_num_threads(), 1);
    int other = 0;
    std::thread([&] { other = at::get_num_threads(); }).join();
    EXPECT_EQ(other, 2);
  }
  EXPECT_EQ(at::get_num_threads(), 2);
  at::set_num_threads(threads);
}

TEST(LearnedOperator, ClosesMostOfTheObjectiveGapOnHeldOutDensities) {
  const auto& op = *trainedTiny().op;
  const Grid grid = Grid::unitBox(2, 24);
  const at::Tensor rho = heldOutDensities(grid, 6);
  const auto objective = op.objectiveOn(grid);
  const ReferenceSolver solver(objective);
  at::NoGradGuard noGrad;
  double closed = 0;
  for (int64_t i = 0; i < rho.size(0); ++i) {
    const JkoState state = objective->prepare(rho[i]);
    const double stay = objective->energy()(state.density).item<double>();
    const double reference = solver.step(rho[i]).objective;
    const at::Tensor u = op.metadata().tau * op.velocity(objective->energy(), state.density);
    const double learned = objective->evaluate(state, u).objective.item<double>();
    // Share of the gap between staying put and the reference minimiser closed.
    closed += (stay - learned) / (stay - reference) / rho.size(0);
  }
  // Beating a random network proves nothing: it must close at least half.
  EXPECT_GE(closed, 0.5);
}

TEST(LearnedOperator, OutputMassExactAndPositive) {
  const auto& op = *trainedTiny().op;
  const Grid grid = Grid::unitBox(2, 24);
  const at::Tensor rho = heldOutDensities(grid, 4);
  const LearnedStep step = op.step(rho, grid);
  const at::Tensor mass = rho.flatten(1).sum(1), massOut = step.next.flatten(1).sum(1);
  EXPECT_LT(((massOut - mass).abs() / mass).max().item<double>(), 1e-13);
  EXPECT_GE(step.next.min().item<double>(), 0.0);
  EXPECT_EQ(step.next.scalar_type(), at::kDouble);
  // And across resolutions: the same operator at 48^2.
  const Grid fine = Grid::unitBox(2, 48);
  const at::Tensor rhoFine = heldOutDensities(fine, 2);
  const LearnedStep fineStep = op.step(rhoFine, fine);
  EXPECT_LT(((fineStep.next.sum() - rhoFine.sum()).abs() / rhoFine.sum()).item<double>(), 1e-13);
}

// On grids finer than the network's, velocities are interpolated back by a
// loop with upsample_bilinear2d's arithmetic: the same numbers, also on a
// rectangular grid.
TEST(LearnedOperator, InterpolationMatchesBilinearUpsampling) {
  // An operator on the resolvent base, whose base velocity is interpolated
  // from the network grid (the linearised base lives on the density's grid).
  OperatorMetadata metadata = trainedTiny().op->metadata();
  metadata.network.base = "resolvent";
  const LearnedOperator op(metadata,
                           VelocityNetwork::create(metadata.network, 2, LearnedOperator::inputChannels(metadata),
                                                   LearnedOperator::outputChannels(metadata), 3));
  const Grid fine = Grid::box(2, {150, 130, 1}, {0, 0, 0}, {1, 1.2, 1});
  const auto energy = op.energyOn(fine);
  const at::Tensor rho = heldOutDensities(fine, 2);
  const at::Tensor interpolated = op.baseVelocity(*energy, rho);
  const at::Tensor coarse = op.networkInputs(*energy, rho).smoothedVelocity;
  ASSERT_LT(coarse.size(2), 150);
  const at::Tensor expected = at::upsample_bilinear2d(coarse, {150, 130}, false);
  ASSERT_EQ(interpolated.sizes(), expected.sizes());
  EXPECT_LT((interpolated - expected).abs().max().item<double>(), 1e-12 * expected.abs().max().item<double>());
}

// Inference builds the features, velocities and gates in loops; while
// autograd records (a density that requires grad) the tensor operations run
// instead. Both give the same numbers: on the network grid itself (40 x 36;
// 37 x 45, the middle row and column of the folded cosine bases), averaged
// onto it in whole 2 x 3 blocks by the loop (128 x 192), and in uneven
// blocks by LibTorch (100 x 70).
TEST(LearnedOperator, InferenceLoopsMatchTheTensorOperations) {
  const auto& op = *trainedTiny().op;
  auto relative = [](const at::Tensor& a, const at::Tensor& b) {
    return ((a - b).abs().max() / b.abs().max()).item<double>();
  };
  for (const auto& [n0, n1] : std::vector<std::pair<int64_t, int64_t>>{{40, 36}, {37, 45}, {128, 192}, {100, 70}}) {
    const Grid grid = Grid::box(2, {n0, n1, 1}, {0, 0, 0}, {1, 0.9, 1});
    const auto energy = op.energyOn(grid);
    const at::Tensor rho = heldOutDensities(grid, 2);
    const at::Tensor recorded = rho.clone().requires_grad_(true);
    const LearnedOperator::NetworkInputs fast = op.networkInputs(*energy, rho);
    const LearnedOperator::NetworkInputs tensor = op.networkInputs(*energy, recorded);
    EXPECT_LT(relative(fast.density, tensor.density.detach()), 1e-14) << n0 << " x " << n1;
    EXPECT_LT(relative(fast.explicitVelocity, tensor.explicitVelocity.detach()), 1e-13) << n0 << " x " << n1;
    EXPECT_LT(relative(fast.smoothedVelocity, tensor.smoothedVelocity.detach()), 1e-13) << n0 << " x " << n1;
    EXPECT_LT(relative(fast.features, tensor.features.detach()), 1e-6) << n0 << " x " << n1;
    // The velocity: fused network pass and gate loop against LibTorch's.
    EXPECT_LT(relative(op.velocity(*energy, rho), op.velocity(*energy, recorded).detach()), 1e-5) << n0 << " x " << n1;
  }
}

// The same in 3D, for both bases: the fused 3D network pass and the loops
// that average onto the network grid and the gate's blocks and interpolate
// back, against LibTorch's operations (adaptive pooling, trilinear upsampling).
TEST(LearnedOperator, InferenceLoopsMatchTheTensorOperationsIn3D) {
  configureRuntime(2);
  for (const std::string base : {"resolvent", "linearized"}) {
    OperatorMetadata m = smallPorousMetadata(3, 8, base, 1.2);
    m.network.baseCorrection = base == "linearized" ? 2 : 0;
    const LearnedOperator op(m, randomNetwork(m, 7, 8));
    // Whole blocks (16^3 and 8 x 16 x 24 onto 8^3), uneven ones (12 x 10 x 9: LibTorch's pooling).
    for (const auto& n : std::vector<std::array<int64_t, 3>>{{16, 16, 16}, {8, 16, 24}, {12, 10, 9}}) {
      const Grid grid = Grid::box(3, n, {0, 0, 0}, {1, 0.9, 1.2});
      const auto energy = op.energyOn(grid);
      const at::Tensor rho = heldOutDensities(grid, 1);
      const at::Tensor recorded = rho.clone().requires_grad_(true);
      const std::string what =
          base + ", " + std::to_string(n[0]) + " x " + std::to_string(n[1]) + " x " + std::to_string(n[2]);
      const at::Tensor expected = op.velocity(*energy, recorded).detach();
      ASSERT_GT(expected.abs().max().item<double>(), 0) << what;
      EXPECT_LT(((op.velocity(*energy, rho) - expected).abs().max() / expected.abs().max()).item<double>(), 1e-5)
          << what;
      const LearnedOperator::NetworkInputs fast = op.networkInputs(*energy, rho);
      const LearnedOperator::NetworkInputs tensor = op.networkInputs(*energy, recorded);
      for (const auto& [a, b] : {std::pair{fast.explicitVelocity, tensor.explicitVelocity},
                                 std::pair{fast.smoothedVelocity, tensor.smoothedVelocity}})
        EXPECT_LT(((a - b.detach()).abs().max() / b.abs().max()).item<double>(), 1e-13) << what;
      EXPECT_LT(((fast.features - tensor.features.detach()).abs().max()).item<double>(),
                1e-6 * tensor.features.abs().max().item<double>())
          << what;
    }
  }
}

// The contrast's sliding-window loops against LibTorch's max pooling, in 2D
// and 3D, on grids of unequal sides, with vacuum (0 there).
TEST(LearnedOperator, LocalContrastIsMaxPooling) {
  at::manual_seed(3);
  for (const auto& shape : std::vector<std::vector<int64_t>>{{2, 13, 20}, {1, 7, 12, 9}}) {
    const int dim = static_cast<int>(shape.size()) - 1;
    const at::Tensor rho = (at::rand(shape, at::kDouble) - 0.3).clamp_min(0);
    const int64_t r = 3, w = 2 * r + 1;
    const at::Tensor x = rho.unsqueeze(1);
    auto pool = [&](const at::Tensor& t) {
      return dim == 3 ? at::max_pool3d(t, {w, w, w}, {1, 1, 1}, {r, r, r}) : at::max_pool2d(t, {w, w}, {1, 1}, {r, r});
    };
    const at::Tensor hi = pool(x).squeeze(1), lo = pool(x.neg()).neg().squeeze(1);
    const at::Tensor expected = at::where(hi > 0, (hi - lo) / (hi + lo), at::zeros_like(hi));
    const at::Tensor c = localContrast(rho, dim, r);
    ASSERT_EQ(c.sizes(), rho.sizes());
    EXPECT_LT((c - expected).abs().max().item<double>(), 1e-15) << dim << "D";
    EXPECT_GT(c.max().item<double>(), 0.9);
  }
  EXPECT_EQ(localContrast(at::zeros({1, 8, 8}, at::kDouble), 2, 4).abs().max().item<double>(), 0);
  EXPECT_EQ(localContrast(at::full({1, 8, 8}, 0.3, at::kDouble), 2, 4).abs().max().item<double>(), 0);
}

// The gate scaled by the density's local contrast (gate_contrast c0): on a
// 2% cosine mode of a constant state the contrast is at most 0.02, so the
// gate, whatever the network says, moves the velocity by at most 0.02 / c0
// of the base's smooth part; the same network unscaled moves it by far more
// (the test could fail). At a vacuum front (contrast 1) the two agree.
TEST(LearnedOperator, GateScaledByContrastLeavesSmallModesToTheBase) {
  configureRuntime(2);
  OperatorMetadata m = smallPorousMetadata(2, 16, "linearized", 0.6);
  m.network.baseCorrection = 0;
  m.network.baseIterations = 2;
  const auto network = randomNetwork(m, 5, 9);
  const LearnedOperator unscaled(m, network);
  m.network.gateContrast = 0.5;
  const LearnedOperator scaled(m, network);

  const Grid grid = Grid::unitBox(2, 64);
  const auto energy = scaled.energyOn(grid);
  const at::Tensor x = grid.coordinate(0);
  const at::Tensor mode = (0.3 * (1 + 0.02 * at::cos(M_PI * 8 * x))).unsqueeze(0);
  const at::Tensor base = scaled.baseVelocity(*energy, mode);
  const double baseMax = base.abs().max().item<double>();
  ASSERT_GT(baseMax, 0);
  const double scaledShift = (scaled.velocity(*energy, mode) - base).abs().max().item<double>() / baseMax;
  const double unscaledShift = (unscaled.velocity(*energy, mode) - base).abs().max().item<double>() / baseMax;
  EXPECT_LE(scaledShift, 0.02 / 0.5 * 1.0001) << "unscaled: " << unscaledShift;
  EXPECT_GT(unscaledShift, 4 * scaledShift);

  // A compact bump: inside the support's edge the contrast is 1 and the gates agree there.
  const at::Tensor r2 = (x - 0.5).square() + (grid.coordinate(1) - 0.5).square();
  const at::Tensor bump = (0.5 * (1 - r2 / 0.09)).clamp_min(0).unsqueeze(0);
  const at::Tensor front = (r2 > 0.25 * 0.25) & (r2 < 0.3 * 0.3);
  const at::Tensor a = scaled.velocity(*energy, bump).select(1, 0)[0].masked_select(front);
  const at::Tensor b = unscaled.velocity(*energy, bump).select(1, 0)[0].masked_select(front);
  EXPECT_LT((a - b).abs().max().item<double>(), 1e-12 * b.abs().max().item<double>() + 1e-300);
}

// Gauss-Newton corrections of the learned map (NetworkConfig::gaussNewton),
// on either base: from a network of random weights (a poor map) on small
// tall cells, two corrections bring the step much closer to the reference
// solver's, the returned velocity is the corrected map's (its deposit is the
// frame), no frame rises above J(0), and the count survives a save and load.
class GaussNewtonOnBase : public ::testing::TestWithParam<std::string> {};

TEST_P(GaussNewtonOnBase, CorrectionsRefineTheLearnedMap) {
  at::NoGradGuard noGrad;
  configureRuntime(2);
  const bool linearized = GetParam() == "linearized";
  OperatorMetadata m = smallPorousMetadata(2, 16, GetParam(), 0.6);
  if (linearized) {
    m.network.baseCorrection = 2;
    m.network.baseIterations = 2;
  }
  m.network.gaussNewton = 2;
  LearnedOperator op(m, randomNetwork(m, 5, 11));
  ASSERT_EQ(op.gaussNewton(), 2);

  const Grid grid = Grid::unitBox(2, 48);
  const auto objective = std::make_shared<const JkoObjective>(std::make_shared<const Energy>(m.energy, grid), m.tau);
  at::Tensor rho = at::zeros(grid.shape(), at::kDouble);
  rho.narrow(0, 10, 2).narrow(1, 10, 2).fill_(0.2);
  rho.narrow(0, 30, 3).narrow(1, 20, 2).fill_(0.15);
  rho.narrow(0, 20, 8).narrow(1, 34, 6).fill_(0.1);
  const at::Tensor reference = ReferenceSolver(objective).step(rho).next;
  auto distance = [&](const at::Tensor& next) {
    return ((next - reference).abs().sum() / reference.abs().sum()).item<double>();
  };
  const LearnedStep corrected = op.step(rho, grid);
  op.setGaussNewton(0);
  const LearnedStep plain = op.step(rho, grid);
  EXPECT_LT(distance(corrected.next), 0.5 * distance(plain.next))
      << distance(corrected.next) << " against " << distance(plain.next);
  const JkoState state = objective->prepare(rho.unsqueeze(0));
  const JkoTerms terms = objective->evaluate(state, (m.tau * corrected.velocity).unsqueeze(0));
  EXPECT_LE(terms.objective.item<double>(), objective->energy()(state.density).item<double>());
  EXPECT_LT((objective->pushForward().limit(terms.deposited, objective->pushForward().mass(rho.unsqueeze(0)))[0] -
             corrected.next)
                .abs()
                .max()
                .item<double>(),
            1e-14);
  EXPECT_THROW(op.setGaussNewton(21), InvalidParameter);
  for (const int bad : {-1, 21}) {
    NetworkConfig config = m.network;
    config.gaussNewton = bad;
    EXPECT_THROW(config.validate(), InvalidParameter) << bad;
  }
  for (const double bad : {-0.1, 1.5, std::nan("")}) {
    NetworkConfig config = m.network;
    config.gateContrast = bad;
    EXPECT_THROW(config.validate(), InvalidParameter) << bad;
  }

  // The override (0 here) is not saved: the file keeps its own count.
  const std::string path = temporaryPath("gauss-newton-" + GetParam() + ".jko");
  op.save(path);
  EXPECT_EQ(LearnedOperator::load(path)->gaussNewton(), 2);
  std::filesystem::remove(path);
}

INSTANTIATE_TEST_SUITE_P(LearnedOperator, GaussNewtonOnBase, ::testing::Values("linearized", "resolvent"));

TEST(LearnedOperator, SaveLoadRoundTripIsBitForBit) {
  const auto& op = *trainedTiny().op;
  const std::string path = temporaryPath("roundtrip.jko");
  op.save(path);
  const auto loaded = LearnedOperator::load(path);
  const Grid grid = Grid::unitBox(2, 24);
  const at::Tensor rho = heldOutDensities(grid, 2);
  EXPECT_TRUE(at::equal(op.step(rho, grid).next, loaded->step(rho, grid).next));
  EXPECT_TRUE(loaded->metadata().energy.sameAs(op.metadata().energy));
  EXPECT_EQ(loaded->metadata().training["mode"], "learn-to-evolve");
  fs::remove(path);
}

TEST(LearnedOperator, RefusesCorruptedTruncatedAndMismatchedFiles) {
  const auto& op = *trainedTiny().op;
  const std::string path = temporaryPath("corrupt.jko");
  op.save(path);
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto writeBytes = [&](const std::string& contents) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  };
  auto expectRefusal = [&](const std::string& mention) {
    try {
      LearnedOperator::load(path);
      FAIL() << "expected a refusal mentioning " << mention;
    } catch (const OperatorFileError& e) {
      EXPECT_NE(std::string(e.what()).find(mention), std::string::npos) << e.what();
    }
  };
  std::string flipped = bytes;
  flipped[bytes.size() / 2] ^= 0x40;
  writeBytes(flipped);
  expectRefusal("checksum");
  writeBytes(bytes.substr(0, bytes.size() / 3));
  expectRefusal("corrupted or truncated");
  writeBytes("not an operator at all");
  expectRefusal("neither");
  fs::remove(path);
  expectRefusal("cannot open");

  // An operator for porous medium m=2 asked to run Fokker-Planck, or 3D data.
  try {
    const EnergySpec fokkerPlanck = EnergySpec::fokkerPlanck();
    op.checkCompatible(Grid::unitBox(2, 24), &fokkerPlanck);
    FAIL();
  } catch (const OperatorFileError& e) {
    EXPECT_NE(std::string(e.what()).find("trained for porous-medium"), std::string::npos) << e.what();
  }
  const EnergySpec m3 = EnergySpec::porousMedium(3, 1);
  EXPECT_THROW(op.checkCompatible(Grid::unitBox(2, 24), &m3), OperatorFileError);
  try {
    op.checkCompatible(Grid::unitBox(3, 16));
    FAIL();
  } catch (const OperatorFileError& e) {
    EXPECT_NE(std::string(e.what()).find("2D densities; the data is 3D"), std::string::npos) << e.what();
  }
  // Its own energy at tau 0.01 is its step of twice the density (the step's symmetry): served.
  EXPECT_NO_THROW(op.checkCompatible(Grid::unitBox(2, 24), nullptr, 0.01));
  EXPECT_THROW(op.checkCompatible(Grid::unitBox(2, 24), &m3, 0.01), OperatorFileError);
  EXPECT_FALSE(op.checkCompatible(Grid::box(2, {24, 24, 1}, {0, 0, 0}, {3, 3, 1})).empty());  // box warning
}

TEST(LearnToEvolve, SameSeedAndThreadsGiveTheSameOperator) {
  configureRuntime(2);
  TrainingOptions o = tinyTraining(11);
  o.rounds = 2;
  o.epochs = 2;
  const auto a = LearnToEvolveTrainer(o).train().op;
  const auto b = LearnToEvolveTrainer(o).train().op;
  for (size_t i = 0; i < a->network().namedParameters().size(); ++i)
    EXPECT_TRUE(at::equal(a->network().namedParameters()[i].second, b->network().namedParameters()[i].second));
}

TEST(LearnToEvolve, LossFallsAndRoundsAreRecorded) {
  const nlohmann::json& summary = trainedTiny().summary;
  const auto& rounds = summary["per_round"];
  ASSERT_EQ(rounds.size(), 2u);
  // Training beats the untrained operator (on the linearised base: the
  // linearised step alone) on the held-out densities.
  EXPECT_LT(summary["best_validation_gap"].get<double>(), summary["initial_validation_gap"].get<double>());
  EXPECT_GT(rounds[1]["densities"].get<int>(), rounds[0]["densities"].get<int>());  // frames joined the set
  EXPECT_EQ(summary["optimizer_steps"].get<int>(), 2 * 6 * 2);
}

TEST(LearnToEvolve, ResumeAfterAnInterruptionGivesTheUninterruptedResult) {
  configureRuntime(2);
  TrainingOptions o = tinyTraining(5);
  o.rounds = 2;
  o.epochs = 2;
  const auto straight = LearnToEvolveTrainer(o).train().op;
  o.checkpoint = temporaryPath("checkpoint.jko");
  // Interrupt after the first round's checkpoint, then resume.
  EXPECT_THROW(LearnToEvolveTrainer(o).train(
                   [](const ProgressEvent& e) { return e.message.find("round 1/2 done") == std::string::npos; }),
               Cancelled);
  ASSERT_TRUE(fs::exists(o.checkpoint));
  TrainingOptions resumed = o;
  resumed.resume = true;
  const TrainingResult result = LearnToEvolveTrainer(resumed).train();
  EXPECT_EQ(result.summary["per_round"].size(), 2u);
  for (size_t i = 0; i < straight->network().namedParameters().size(); ++i)
    EXPECT_TRUE(
        at::equal(straight->network().namedParameters()[i].second, result.op->network().namedParameters()[i].second));
  fs::remove(o.checkpoint);
}

TEST(LearnToEvolve, InitialOnlyKeepsTheSameStepBudget) {
  configureRuntime(2);
  TrainingOptions o = tinyTraining(7);
  o.rounds = 2;
  o.epochs = 2;
  o.mode = "initial-only";
  const TrainingResult r = LearnToEvolveTrainer(o).train();
  EXPECT_EQ(r.summary["optimizer_steps"].get<int>(), 2 * 2 * 2);
  for (const auto& round : r.summary["per_round"]) EXPECT_EQ(round["densities"].get<int>(), 16);
}

TEST(VelocityNetwork, UNetAndThreeDimensionalFnoRun) {
  NetworkConfig unet;
  unet.kind = "unet";
  unet.unetBase = 4;
  const auto u = VelocityNetwork::create(unet, 2, 7, 4, 1);
  EXPECT_EQ(u->forward(at::randn({2, 7, 20, 18})).sizes(), at::IntArrayRef({2, 4, 20, 18}));
  NetworkConfig fno;
  fno.width = 4;
  fno.modes = 4;
  fno.layers = 2;
  fno.hidden = 8;
  const auto f = VelocityNetwork::create(fno, 3, 10, 5, 1);
  EXPECT_EQ(f->forward(at::randn({1, 10, 12, 10, 14})).sizes(), at::IntArrayRef({1, 5, 12, 10, 14}));
}

}  // namespace
}  // namespace jko
