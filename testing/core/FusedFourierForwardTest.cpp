// The fused inference pass of the Fourier neural operator against the
// LibTorch path it replaces for single 2D and 3D samples: same network, same
// input, outputs equal up to float rounding; and it follows parameter updates.
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "operator/VelocityNetwork.h"
#include "runtime/TaskTeam.h"

namespace jko {
namespace {

// Random parameters of order one everywhere (the initial output layer is
// tiny, which would hide errors in everything before it).
void randomise(VelocityNetwork& network, uint64_t seed) {
  at::manual_seed(seed);
  std::vector<std::pair<std::string, at::Tensor>> values;
  for (const auto& [name, tensor] : network.namedParameters()) {
    const double scale = name.find("spectral") != std::string::npos ? 0.05 : 0.5;
    values.emplace_back(name, at::randn(tensor.sizes()) * scale);
  }
  network.loadParameters(values);
}

// The LibTorch path (taken whenever autograd records) and the fused path.
void expectSameOutput(const VelocityNetwork& network, const at::Tensor& input, const std::string& what) {
  const at::Tensor expected = network.forward(input).detach();  // grad mode on: LibTorch path
  at::Tensor fused, batched;
  {
    at::NoGradGuard noGrad;
    fused = network.forward(input);
    batched = network.forward(at::cat({input, input}, 0));  // batches keep the LibTorch path
  }
  ASSERT_EQ(fused.sizes(), expected.sizes()) << what;
  const double scale = expected.abs().max().item<double>();
  ASSERT_GT(scale, 1e-2) << what;
  EXPECT_LT((fused - expected).abs().max().item<double>(), 1e-5 * scale) << what;
  EXPECT_LT((batched[1] - fused[0]).abs().max().item<double>(), 1e-5 * scale) << what;
}

// An FNO configuration: these fields, the default's others.
NetworkConfig fnoConfig(int width, int hidden, int layers) {
  NetworkConfig config;
  config.width = width;
  config.hidden = hidden;
  config.layers = layers;
  return config;
}

struct Case {
  int64_t n0, n1;
  NetworkConfig config;
};

TEST(FusedFourierForward, MatchesTheLibTorchPath) {
  std::vector<Case> cases;
  cases.push_back({64, 64, NetworkConfig{}});      // the default network (width 16)
  cases.push_back({37, 50, NetworkConfig{}});      // rectangular, odd, Nyquist mode kept on neither axis
  cases.push_back({64, 64, fnoConfig(8, 32, 4)});  // the porous-medium preset's network
  NetworkConfig small = fnoConfig(5, 7, 2);
  small.modes = 12;
  cases.push_back({8, 8, small});  // fewer nodes than modes: every frequency kept
  NetworkConfig unpadded = small;
  unpadded.modes = 3;
  unpadded.padFraction = 0;
  cases.push_back({6, 4, unpadded});  // 2 k = n on the first axis, Nyquist mode kept on the last
  cases.push_back({1, 9, unpadded});  // one row
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    auto network = VelocityNetwork::create(c.config, 2, 7, 4, 11 + i);
    randomise(*network, 20 + i);
    const at::Tensor input = at::randn({1, 7, c.n0, c.n1});
    expectSameOutput(*network, input, std::to_string(c.n0) + "x" + std::to_string(c.n1));
  }
}

// In 3D the pass adds the middle axis' transform between the last and the first.
TEST(FusedFourierForward, MatchesTheLibTorchPathIn3D) {
  struct Case3 {
    std::vector<int64_t> n;
    NetworkConfig config;
  };
  NetworkConfig bundled = fnoConfig(8, 32, 4);  // the 3D operators' network
  bundled.modes = 8;
  NetworkConfig small = fnoConfig(5, 7, 2);
  small.modes = 12;
  NetworkConfig unpadded = fnoConfig(3, 4, 2);
  unpadded.modes = 3;
  unpadded.padFraction = 0;
  std::vector<Case3> cases{
      {{32, 32, 32}, bundled}, {{13, 9, 11}, bundled},  // unequal, odd: other kept counts per axis
      {{6, 5, 7}, small},                               // fewer nodes than modes: every frequency kept
      {{6, 4, 4}, unpadded},                            // 2 k = n on the first two axes, Nyquist mode kept on the last
      {{1, 6, 5}, unpadded},                            // one slab
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case3& c = cases[i];
    auto network = VelocityNetwork::create(c.config, 3, 6, 3, 31 + i);
    randomise(*network, 40 + i);
    const at::Tensor input = at::randn({1, 6, c.n[0], c.n[1], c.n[2]});
    expectSameOutput(*network, input,
                     std::to_string(c.n[0]) + "x" + std::to_string(c.n[1]) + "x" + std::to_string(c.n[2]));
  }
}

// The fused pass caches rearranged weights: after an update of any
// parameter (an optimiser step, loading a file) it must use the new values,
// and a new grid needs new transform matrices.
TEST(FusedFourierForward, FollowsParameterUpdatesAndGrids) {
  auto network = VelocityNetwork::create(fnoConfig(6, 8, 2), 2, 3, 2, 5);
  randomise(*network, 6);
  const at::Tensor input = at::randn({1, 3, 20, 20});
  expectSameOutput(*network, input, "before the update");
  at::Tensor before;
  {
    at::NoGradGuard noGrad;
    before = network->forward(input);
    for (const auto& [name, tensor] : network->namedParameters())
      if (name == "layer1.spectral1" || name == "project.out.bias") tensor.add_(0.1);  // as an optimiser would
  }
  expectSameOutput(*network, input, "after an in-place update");
  {
    at::NoGradGuard noGrad;
    EXPECT_GT((network->forward(input) - before).abs().max().item<double>(), 1e-3);
  }
  randomise(*network, 7);
  expectSameOutput(*network, input, "after loadParameters");
  expectSameOutput(*network, at::randn({1, 3, 24, 16}), "another grid");
  expectSameOutput(*network, input, "the first grid again");
}

// The pass cuts the padded grid's first axis into one slab per thread of
// the task team: any count of slabs, even or not, gives the same numbers.
TEST(FusedFourierForward, SameResultOnAnyNumberOfThreads) {
  const int threads = taskTeamThreads();
  for (const int dim : {2, 3}) {
    auto network = VelocityNetwork::create(NetworkConfig{}, dim, 7, 4, 9);
    randomise(*network, 10);
    // 51 (2D) or 23 (3D) padded nodes on the first axis: uneven slabs.
    const at::Tensor input = dim == 2 ? at::randn({1, 7, 45, 38}) : at::randn({1, 7, 20, 14, 17});
    at::NoGradGuard noGrad;
    setTaskTeamThreads(1);
    const at::Tensor serial = network->forward(input);
    for (const int t : {2, 3, 4}) {
      setTaskTeamThreads(t);
      const at::Tensor parallel = network->forward(input);
      EXPECT_LT((parallel - serial).abs().max().item<double>(), 1e-6 * serial.abs().max().item<double>())
          << dim << "D, " << t << " threads";
    }
  }
  setTaskTeamThreads(threads);
}

// Non-finite features (a damaged operator file, a diverged training) give
// non-finite outputs, which the step refuses, as on the LibTorch path; the
// fused pass must not turn them into undefined behaviour on the way.
TEST(FusedFourierForward, CarriesNonFiniteValues) {
  for (const int dim : {2, 3}) {
    auto network = VelocityNetwork::create(fnoConfig(4, 4, 2), dim, 2, 2, 3);
    for (const float bad : {NAN, INFINITY, -INFINITY}) {
      at::Tensor input = dim == 2 ? at::randn({1, 2, 12, 12}) : at::randn({1, 2, 6, 7, 5});
      input.view({-1})[17] = bad;
      at::NoGradGuard noGrad;
      EXPECT_FALSE(at::isfinite(network->forward(input)).all().item<bool>()) << bad << ", " << dim << "D";
    }
  }
}

}  // namespace
}  // namespace jko
