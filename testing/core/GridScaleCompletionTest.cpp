// The grid-scale completion's operators (numerics/GridScaleCompletion):
// symmetric, positive semi-definite, zero on constants (so the completion
// keeps mass), and with the symbols the design asks for on a constant
// state, in 2D and 3D, on unequal spacings.
#include <gtest/gtest.h>

#include <cmath>

#include "numerics/GridScaleCompletion.h"
#include "runtime/Runtime.h"

namespace jko {
namespace {

double innerProduct(const at::Tensor& a, const at::Tensor& b) { return (a * b).sum().item<double>(); }

TEST(GridScaleCompletion, OperatorsAreSymmetricPositiveAndKeepMass) {
  configureRuntime(2);
  at::manual_seed(3);
  for (int dim : {2, 3}) {
    const Grid grid = Grid::box(dim, {13, 9, 7}, {0, 0, 0}, {1.3, 0.7, 0.5});
    const GridScaleCompletion completion(EnergySpec::porousMedium(2, 1), grid, 0.005);
    std::vector<int64_t> shape = grid.batchShape(2);
    const at::Tensor x = at::randn(shape, at::kDouble), y = at::randn(shape, at::kDouble);
    const at::Tensor D = completion.effectiveDiffusivity(at::rand(shape, at::kDouble));
    for (const bool scheme : {true, false}) {
      const auto apply = [&](const at::Tensor& t) {
        return scheme ? completion.schemeResponse(t, D) : completion.missingResponse(t, D);
      };
      const double xAy = innerProduct(x, apply(y)), yAx = innerProduct(y, apply(x));
      EXPECT_NEAR(xAy, yAx, 1e-12 * std::abs(xAy)) << dim << "D, scheme " << scheme;
      EXPECT_GT(innerProduct(x, apply(x)), 0) << dim << "D, scheme " << scheme;
      EXPECT_LT(apply(at::ones(shape, at::kDouble)).abs().max().item<double>(), 1e-9) << dim << "D";
      // Mass: the columns sum to zero too (symmetric), so sum(A x) = 0.
      EXPECT_LT(std::abs(apply(x).sum().item<double>()), 1e-9 * apply(x).abs().sum().item<double>());
    }
  }
}

// On a constant D_eff and a cosine away from the walls, the operators'
// symbols per axis: the scheme sin^2(theta) / h^2, the missing part
// (alpha s^2 + beta s^3) / h^2, s = sin^2(theta / 2), equal to theta^2 -
// sin^2(theta) at theta = pi / 2 and pi.
TEST(GridScaleCompletion, SymbolsCompleteTheImplicitStepAtTheGridScale) {
  configureRuntime(1);
  const int64_t n = 32;
  const Grid grid = Grid::box(3, {n, 8, 6}, {0, 0, 0}, {1, 0.5, 0.25});
  const GridScaleCompletion completion(EnergySpec::heat(0.3), grid, 0.005);
  const double h = grid.spacing[0];
  for (const double theta : {M_PI / 2, M_PI}) {
    const at::Tensor i = at::arange(n, at::kDouble).view({1, n, 1, 1});
    const at::Tensor mode = at::cos(theta * i).expand(grid.batchShape(1)).contiguous();
    const at::Tensor D = at::full_like(mode, 0.3);
    const auto symbol = [&](const at::Tensor& response) {
      const auto inner = [&](const at::Tensor& t) { return t.narrow(1, 4, n - 8); };
      return innerProduct(inner(response), inner(mode)) / innerProduct(inner(mode), inner(mode)) * h * h / 0.3;
    };
    const double scheme = symbol(completion.schemeResponse(mode, D));
    const double missing = symbol(completion.missingResponse(mode, D));
    EXPECT_NEAR(scheme, std::pow(std::sin(theta), 2), 1e-12) << theta;
    EXPECT_NEAR(scheme + missing, theta * theta, 1e-12) << theta;
  }
}

// Nothing to complete without an internal energy; with one the completion
// conserves mass and flattens a pixel checkerboard as the implicit step of
// the heat equation does (a 3D box, unequal spacing).
TEST(GridScaleCompletion, FlattensACheckerboardIn3D) {
  configureRuntime(2);
  const Grid grid = Grid::box(3, {24, 20, 16}, {0, 0, 0}, {1.2, 1, 0.8});
  EXPECT_FALSE(GridScaleCompletion(EnergySpec::aggregation(20, 1), grid, 0.005).active());
  const double D = 0.05, tau = 0.005;
  const GridScaleCompletion completion(EnergySpec::heat(D), grid, tau);
  at::Tensor parity = at::zeros(grid.shape(), at::kDouble);
  for (int a = 0; a < 3; ++a) parity = parity + at::round((grid.coordinate(a) - grid.origin[a]) / grid.spacing[a]);
  const at::Tensor checkerboard = at::cos(M_PI * parity);
  const at::Tensor rho = (1 + 0.01 * checkerboard).unsqueeze(0);
  const auto outcome = completion.complete(rho, GridScaleCompletion::wholeGrid());
  EXPECT_TRUE(outcome.converged);
  double lambda = 0;
  for (int a = 0; a < 3; ++a) lambda += M_PI * M_PI / (grid.spacing[a] * grid.spacing[a]);
  const double exact = 1 / (1 + tau * D * lambda);
  const auto inner = [](const at::Tensor& t) { return t.narrow(1, 3, 18).narrow(2, 3, 14).narrow(3, 3, 10); };
  const double factor = innerProduct(inner(outcome.next - 1), inner(checkerboard.unsqueeze(0))) /
                        innerProduct(inner(0.01 * checkerboard.unsqueeze(0)), inner(checkerboard.unsqueeze(0)));
  EXPECT_NEAR(factor, exact, 0.02 * exact);
  EXPECT_NEAR(outcome.next.sum().item<double>(), rho.sum().item<double>(), 1e-12 * rho.sum().item<double>());
}

}  // namespace
}  // namespace jko
