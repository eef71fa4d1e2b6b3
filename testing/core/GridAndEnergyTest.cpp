// Grid conventions and energy values against closed forms (DESIGN.md §2.1, §5).
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "numerics/Energy.h"
#include "numerics/ExactSolutions.h"
#include "numerics/Grid.h"

namespace jko {
namespace {

constexpr double kPi = 3.14159265358979323846;

TEST(Grid, CellCentredNodesAndClosedBox) {
  const Grid grid = Grid::box(2, {4, 5, 1}, {0, -1, 0}, {2, 1.5, 0});
  EXPECT_DOUBLE_EQ(grid.spacing[0], 0.5);
  EXPECT_DOUBLE_EQ(grid.spacing[1], 0.5);
  EXPECT_DOUBLE_EQ(grid.origin[0], 0.25);
  EXPECT_DOUBLE_EQ(grid.origin[1], -0.75);
  EXPECT_DOUBLE_EQ(grid.boxLower(1), -1);
  EXPECT_DOUBLE_EQ(grid.boxUpper(1), 1.5);
  EXPECT_EQ(grid.numNodes(), 20);
  const at::Tensor x = grid.coordinate(0), y = grid.coordinate(1);
  ASSERT_EQ(x.sizes(), at::IntArrayRef({4, 5}));
  // Tensor dimension a is spatial axis a.
  EXPECT_DOUBLE_EQ(x[3][0].item<double>(), 1.75);
  EXPECT_DOUBLE_EQ(y[0][4].item<double>(), 1.25);
}

TEST(Energy, EntropyOfAnisotropicGaussian) {
  const Grid grid = Grid::unitBox(2, 128);
  exact::Gaussian g;
  g.mass = 0.7;
  g.sigma = {0.07, 0.09, 0};
  const double D = 0.3;
  const Energy energy(EnergySpec::heat(D), grid);
  const double value = energy(exact::density(grid, g).unsqueeze(0)).item<double>();
  // int rho log rho = M log M - M (sum_k log(2 pi sigma_k^2) / 2 + d / 2).
  const double expected =
      D * g.mass *
      (std::log(g.mass) -
       0.5 * (std::log(2 * kPi * g.sigma[0] * g.sigma[0]) + std::log(2 * kPi * g.sigma[1] * g.sigma[1])) - 1.0);
  // The box cuts the tails at 5.6 sigma: about 1e-6 of the value.
  EXPECT_NEAR(value, expected, 1e-5 * std::abs(expected));
}

TEST(Energy, QuadraticInteractionOfGaussian) {
  const Grid grid = Grid::unitBox(2, 96);
  exact::Gaussian g;
  g.mass = 1.3;
  g.mean = {0.45, 0.52, 0};
  g.sigma = {0.08, 0.08, 0};
  EnergySpec spec;
  spec.kernel = KernelKind::Quadratic;
  spec.attraction = 5;
  const Energy energy(spec, grid);
  const double value = energy(exact::density(grid, g).unsqueeze(0)).item<double>();
  // 1/2 int int c |x-y|^2/2 rho rho = c M^2 d sigma^2 / 2.
  const double expected = spec.attraction * g.mass * g.mass * 2 * 0.08 * 0.08 / 2;
  EXPECT_NEAR(value, expected, 1e-5 * expected);  // tails cut at 5.6 sigma
}

TEST(Energy, PorousMediumOfBarenblattProfile) {
  const Grid grid = Grid::unitBox(2, 128);
  exact::BarenblattProfile p;
  p.A = 0.4;
  p.q = 10;
  const Energy energy(EnergySpec::porousMedium(2, 1.5), grid);
  const double value = energy(exact::density(grid, p).unsqueeze(0)).item<double>();
  // D/(m-1) int (A - q r^2)_+^2 = D pi A^3 / (3 q) for m = 2 in 2D.
  const double expected = 1.5 * kPi * std::pow(p.A, 3) / (3 * p.q);
  EXPECT_NEAR(value, expected, 1e-3 * expected);
  // And the profile's mass against its closed form.
  const double discreteMass = exact::density(grid, p).sum().item<double>() * grid.cellVolume();
  EXPECT_NEAR(discreteMass, exact::mass(p, 2), 1e-3 * discreteMass);
}

TEST(Energy, PotentialEnergyIsMeanOfV) {
  const Grid grid = Grid::box(2, {64, 48, 1}, {0, 0, 0}, {1, 0.75, 0});
  exact::Gaussian g;
  g.mean = {0.4, 0.35, 0};
  g.sigma = {0.06, 0.05, 0};
  EnergySpec spec = EnergySpec::fokkerPlanck(0, 1);
  spec.internal = InternalKind::None;
  spec.potentialStrength = {3, 7, 0};
  const Energy energy(spec, grid);
  const double value = energy(exact::density(grid, g).unsqueeze(0)).item<double>();
  // sum_k a_k ((mu_k - b_k)^2 + sigma_k^2) / 2 with b the box centre (0.5, 0.375).
  const double expected = 0.5 * 3 * (0.01 + 0.0036) + 0.5 * 7 * (0.025 * 0.025 + 0.0025);
  EXPECT_NEAR(value, expected, 1e-8);
}

TEST(Energy, LogKernelCellAverageMatchesClosedForm) {
  const Grid grid = Grid::box(2, {16, 16, 1}, {0, 0, 0}, {1, 0.5, 0});
  EnergySpec spec;
  spec.kernel = KernelKind::KellerSegel;
  spec.attraction = 1;
  const Energy energy(spec, grid);
  // int_0^a int_0^b ln(x^2 + y^2) = ab ln(a^2+b^2) - 3ab + a^2 atan(b/a) + b^2 atan(a/b).
  const double a = grid.spacing[0] / 2, b = grid.spacing[1] / 2;
  const double F = a * b * std::log(a * a + b * b) - 3 * a * b + a * a * std::atan(b / a) + b * b * std::atan(a / b);
  const double meanLog = 0.5 * F / (a * b);
  EXPECT_NEAR(energy.kernelCellAverageAtZero(), meanLog / (2 * kPi), 1e-9);
}

// (W * rho)_j = sum_k W(x_j - x_k) rho_k |h| summed directly, W(0) the cell average.
at::Tensor directConvolution(const Energy& energy, const at::Tensor& rho) {
  const Grid& grid = energy.grid();
  const at::Tensor x = grid.coordinates().reshape({grid.dim, -1});
  const at::Tensor flat = rho.reshape({rho.size(0), -1});
  const int64_t N = x.size(1);
  at::Tensor W = at::empty({N, N}, at::kDouble);
  for (int64_t j = 0; j < N; ++j) {
    for (int64_t k = 0; k < N; ++k) {
      const double r = (x.select(1, j) - x.select(1, k)).norm().item<double>();
      W[j][k] = j == k ? energy.kernelCellAverageAtZero() : energy.kernel(r);
    }
  }
  return at::matmul(flat, W.t()).reshape(rho.sizes()) * grid.cellVolume();
}

TEST(Energy, ConvolutionIsTheDirectSum) {
  // The quadratic kernel by its moments, the others by the zero-padded FFT:
  // both the same sum, on a non-square grid with unequal spacing off the
  // origin, a batch of two, and in 3D.
  at::manual_seed(11);
  const std::vector<Grid> grids{Grid::box(2, {9, 6, 1}, {-0.3, 0.2, 0}, {1.2, 0.8, 0}),
                                Grid::box(3, {5, 4, 3}, {0, 0, 0}, {1, 0.6, 0.9})};
  const EnergySpec repulsive = EnergySpec::aggregation(3, 0.5);  // |z|^2/2 attraction, log repulsion
  for (const Grid& grid : grids) {
    for (const EnergySpec& spec : {EnergySpec::aggregationDiffusion(0.1, 7), repulsive}) {
      const Energy energy(spec, grid);
      const at::Tensor rho = at::rand(grid.batchShape(2), at::kDouble);
      const at::Tensor expected = directConvolution(energy, rho);
      const double scale = expected.abs().max().item<double>();
      EXPECT_LT((energy.convolve(rho) - expected).abs().max().item<double>(), 1e-12 * scale)
          << spec.describe() << ", " << grid.dim << "D";
      // float32 densities come back as float32, with float32's rounding.
      const at::Tensor single = energy.convolve(rho.to(at::kFloat));
      EXPECT_EQ(single.scalar_type(), at::kFloat);
      EXPECT_LT((single.to(at::kDouble) - expected).abs().max().item<double>(), 1e-5 * scale);
      // Under autograd (the quadratic kernel's differentiable path): the same
      // values, and the gradient of sum(w (W * rho)) is W * w (W is even).
      const at::Tensor tracked = rho.clone().requires_grad_(true), w = at::rand_like(rho);
      const at::Tensor convolved = energy.convolve(tracked);
      EXPECT_LT((convolved.detach() - expected).abs().max().item<double>(), 1e-12 * scale);
      const at::Tensor gradient = torch::autograd::grad({(convolved * w).sum()}, {tracked})[0];
      const at::Tensor adjoint = directConvolution(energy, w);
      EXPECT_LT((gradient - adjoint).abs().max().item<double>(), 1e-12 * adjoint.abs().max().item<double>());
      // The interaction energy (1/2) sum (W * rho) rho |h|: for the quadratic
      // kernel from the moments alone (no field), else from the convolution;
      // the same as from the direct sum, and as from a convolution given.
      const at::Tensor direct = 0.5 * grid.cellVolume() * (expected * rho).reshape({2, -1}).sum(1);
      const at::Tensor interaction = energy.parts(rho).interaction;
      EXPECT_LT((interaction - direct).abs().max().item<double>(), 1e-12 * direct.abs().max().item<double>())
          << spec.describe() << ", " << grid.dim << "D";
      EXPECT_LT((energy.parts(rho, energy.convolve(rho)).interaction - direct).abs().max().item<double>(),
                1e-12 * direct.abs().max().item<double>());
    }
  }
}

TEST(Energy, FirstVariationIsTheGradientOverCellVolume) {
  const Grid grid = Grid::box(2, {20, 16, 1}, {0, 0, 0}, {1, 0.8, 0});
  at::manual_seed(3);
  const at::Tensor rho = (at::rand(grid.batchShape(1), at::kDouble) + 0.1).requires_grad_(true);
  std::vector<EnergySpec> specs{EnergySpec::fokkerPlanck(0.2, 3), EnergySpec::porousMedium(2.5, 0.7),
                                EnergySpec::aggregation(10, 1), EnergySpec::aggregationDiffusion(0.1, 4)};
  for (const EnergySpec& spec : specs) {
    const Energy energy(spec, grid);
    const at::Tensor gradient = torch::autograd::grad({energy(rho).sum()}, {rho})[0];
    const at::Tensor variation = energy.firstVariation(rho.detach());
    EXPECT_TRUE(at::allclose(gradient / grid.cellVolume(), variation, 1e-9, 1e-9)) << spec.describe();
  }
}

TEST(EnergySpec, JsonRoundTripAndDifferences) {
  EnergySpec spec = EnergySpec::porousMedium(3, 0.5);
  const EnergySpec copy = EnergySpec::fromJson(nlohmann::json::parse(spec.toJson().dump()));
  EXPECT_TRUE(spec.sameAs(copy));
  std::string difference;
  EXPECT_FALSE(spec.sameAs(EnergySpec::porousMedium(2, 0.5), &difference));
  EXPECT_NE(difference.find("m"), std::string::npos);
  EXPECT_FALSE(spec.sameAs(EnergySpec::fokkerPlanck(), &difference));
  EXPECT_NE(difference.find("internal energy"), std::string::npos);
  const EnergySpec fp = EnergySpec::fokkerPlanck(0.1, 4);
  EXPECT_TRUE(fp.sameAs(EnergySpec::fromJson(fp.toJson())));
  // The unused third axis of a 2D potential does not count in 2D.
  EnergySpec fp2 = fp;
  fp2.potentialStrength[2] = 0;
  EXPECT_TRUE(fp.sameAs(fp2, nullptr, 2));
  EXPECT_FALSE(fp.sameAs(fp2, &difference, 3));
  EXPECT_NE(difference.find("potential strength"), std::string::npos);
  // The description names every axis's strength where they differ.
  EXPECT_NE(fp.describe().find("a=4)"), std::string::npos) << fp.describe();
  EnergySpec anisotropic = fp;
  anisotropic.potentialStrength = {20, 5, 12};
  EXPECT_NE(anisotropic.describe().find("a=(20, 5, 12) along x, y, z"), std::string::npos) << anisotropic.describe();
}

}  // namespace
}  // namespace jko
