// The pre-filtered quadratic B-spline push-forward (DESIGN.md §2.2).
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include "numerics/PushForward.h"
#include "runtime/Runtime.h"
#include "runtime/TaskTeam.h"

namespace jko {
namespace {

at::Tensor randomDensity(const Grid& grid, int64_t batch, uint64_t seed) {
  at::manual_seed(seed);
  return at::rand(grid.batchShape(batch), at::kDouble) + 0.05;
}

at::Tensor randomDisplacement(const Grid& grid, int64_t batch, double cells) {
  std::vector<int64_t> shape{batch, grid.dim};
  for (int a = 0; a < grid.dim; ++a) shape.push_back(grid.n[a]);
  at::Tensor u = at::randn(shape, at::kDouble);
  for (int a = 0; a < grid.dim; ++a) u.select(1, a).mul_(cells * grid.spacing[a]);
  return u;
}

// A raw deposit for the limiter: randomDensity with every stride-th node
// (in flat order) replaced by a value in (-depth, 0].
at::Tensor withNegativeNodes(const Grid& grid, int64_t batch, uint64_t seed, int64_t stride, double depth) {
  at::Tensor raw = randomDensity(grid, batch, seed);
  raw.flatten(1).index_put_({at::indexing::Slice(), at::indexing::Slice(0, at::indexing::None, stride)},
                            -depth * at::rand({batch, (grid.numNodes() + stride - 1) / stride}, at::kDouble));
  return raw;
}

class PushForwardInDimension : public ::testing::TestWithParam<int> {};

TEST_P(PushForwardInDimension, IdentityAtZeroDisplacement) {
  const int dim = GetParam();
  const Grid grid = Grid::box(dim, {12, 9, 7}, {0, 0, 0}, {1, 0.6, 0.9});
  const PushForward push(grid);
  const at::Tensor rho = randomDensity(grid, 2, 1);
  const at::Tensor u = at::zeros_like(randomDisplacement(grid, 2, 0));
  EXPECT_TRUE(at::allclose(push.deposit(push.prefilter(rho), u), rho, 1e-13, 1e-14));
  EXPECT_TRUE(at::allclose(push.apply(rho, u), rho, 1e-13, 1e-14));
}

TEST_P(PushForwardInDimension, PrefilterKeepsMassAndMatchesDenseSolve) {
  const int dim = GetParam();
  const Grid grid = Grid::box(dim, {10, 13, 6}, {0, 0, 0}, {1, 1, 1});
  const PushForward push(grid);
  const at::Tensor rho = randomDensity(grid, 3, 2);
  const at::Tensor m = push.prefilter(rho);
  EXPECT_TRUE(at::allclose(m.flatten(1).sum(1), rho.flatten(1).sum(1), 1e-13, 0));
  // The autograd path uses dense S^-1 products instead of the Thomas algorithm.
  const at::Tensor dense = push.prefilter(rho.clone().requires_grad_(true)).detach();
  EXPECT_TRUE(at::allclose(m, dense, 1e-12, 1e-13));
}

TEST_P(PushForwardInDimension, MassExactAndPositiveForLargeDisplacements) {
  const int dim = GetParam();
  const Grid grid = Grid::box(dim, {16, 11, 9}, {-1, 0, 0}, {1, 1, 1});
  const PushForward push(grid);
  const at::Tensor rho = randomDensity(grid, 2, 3);
  // Up to several cells, pushing mass against and beyond the walls.
  const at::Tensor out = push.apply(rho, randomDisplacement(grid, 2, 4.0));
  const at::Tensor mass = push.mass(rho), massOut = push.mass(out);
  EXPECT_LT(((massOut - mass).abs() / mass).max().item<double>(), 1e-12);
  EXPECT_GE(out.min().item<double>(), 0.0);
}

TEST_P(PushForwardInDimension, BatchSamplesAreIndependent) {
  const int dim = GetParam();
  const Grid grid = Grid::box(dim, {8, 10, 6}, {0, 0, 0}, {1, 1, 1});
  const PushForward push(grid);
  const at::Tensor rho = randomDensity(grid, 2, 4);
  const at::Tensor u = randomDisplacement(grid, 2, 1.5);
  const at::Tensor both = push.apply(rho, u);
  for (int64_t b = 0; b < 2; ++b)
    EXPECT_TRUE(at::allclose(both[b], push.apply(rho.narrow(0, b, 1), u.narrow(0, b, 1))[0], 1e-14, 1e-15));
}

TEST_P(PushForwardInDimension, FusedKernelMatchesTensorOperations) {
  const int dim = GetParam();
  const Grid grid = Grid::box(dim, {11, 9, 7}, {0, 0, 0}, {1, 0.7, 0.9});
  const PushForward push(grid);
  const at::Tensor m = push.prefilter(randomDensity(grid, 2, 6));
  // Large enough to clamp some particles at the walls.
  const at::Tensor u = randomDisplacement(grid, 2, 2.5);
  const at::Tensor mA = m.clone().requires_grad_(true), uA = u.clone().requires_grad_(true);
  const at::Tensor mB = m.clone().requires_grad_(true), uB = u.clone().requires_grad_(true);
  const at::Tensor fused = push.deposit(mA, uA);
  const at::Tensor reference = push.depositByTensorOperations(mB, uB);
  EXPECT_TRUE(at::allclose(fused, reference, 1e-13, 1e-14));
  const at::Tensor weights = at::randn_like(fused);
  (fused * weights).sum().backward();
  (reference * weights).sum().backward();
  EXPECT_TRUE(at::allclose(mA.grad(), mB.grad(), 1e-12, 1e-13));
  EXPECT_TRUE(at::allclose(uA.grad(), uB.grad(), 1e-10, 1e-11));
}

// The CPU solve splits the first axis into column chunks (here 420 columns
// per row) and runs the last axis eight lines at a time (350 lines): the
// same as the dense inverse.
TEST(PushForward, PrefilterInChunksMatchesDenseSolve) {
  const Grid grid = Grid::box(3, {5, 70, 6}, {0, 0, 0}, {0.5, 1, 0.6});
  const PushForward push(grid);
  const at::Tensor rho = randomDensity(grid, 1, 9);
  const at::Tensor dense = push.prefilter(rho.clone().requires_grad_(true)).detach();
  EXPECT_TRUE(at::allclose(push.prefilter(rho), dense, 1e-12, 1e-13));
}

// One density on a grid large enough that its particles are scattered in
// chunks on two threads (the second starting mid-row): the same deposit as
// the tensor operations.
TEST(PushForward, ChunkedDepositOfOneSampleMatchesTensorOperations) {
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  const Grid grid = Grid::box(2, {151, 123, 1}, {0, 0, 0}, {1, 0.8, 1});  // chunks split a row
  const PushForward push(grid);
  const at::Tensor m = push.prefilter(randomDensity(grid, 1, 8));
  const at::Tensor u = randomDisplacement(grid, 1, 2.5);
  const at::Tensor fused = push.deposit(m, u);
  at::set_num_threads(threads);
  EXPECT_TRUE(at::allclose(fused, push.depositByTensorOperations(m, u), 1e-13, 1e-14));
  EXPECT_NEAR(fused.sum().item<double>(), m.sum().item<double>(), 1e-12 * m.sum().item<double>());
}

TEST_P(PushForwardInDimension, FusedLimiterMatchesTensorOperations) {
  const int dim = GetParam();
  const Grid grid = Grid::box(dim, {9, 7, 6}, {0, 0, 0}, {1, 0.7, 0.9});
  const PushForward push(grid);
  // Mostly positive with scattered negative nodes, some at walls and corners.
  const at::Tensor raw = withNegativeNodes(grid, 2, 8, 5, 0.02);
  const at::Tensor target = push.mass(randomDensity(grid, 2, 9));
  const at::Tensor fused = push.limit(raw, target);
  EXPECT_TRUE(at::allclose(fused, push.limitByTensorOperations(raw, target), 1e-13, 1e-15));
  EXPECT_GE(fused.min().item<double>(), 0.0);
  EXPECT_TRUE(at::allclose(push.mass(fused), target, 1e-14, 0));
}

// The limiter works on fixed blocks of slabs along the first axis (here 3
// in 2D, 2 in 3D), in parallel for a single density: the same result as the
// tensor operations, and bit for bit the same on one thread or two, one
// sample or a batch.
TEST_P(PushForwardInDimension, BlockedLimiterMatchesTensorOperationsOnAnyThreads) {
  const int dim = GetParam();
  const Grid grid = dim == 2 ? Grid::box(2, {600, 7, 1}, {0, 0, 0}, {1, 0.2, 1})
                             : Grid::box(3, {13, 17, 11}, {0, 0, 0}, {1, 0.9, 0.8});
  const PushForward push(grid);
  // Negative nodes in every block, at block boundaries and at the walls.
  const at::Tensor raw = withNegativeNodes(grid, 3, 21, 3, 0.3);
  const at::Tensor target = push.mass(randomDensity(grid, 3, 22));
  const at::Tensor expected = push.limitByTensorOperations(raw, target);
  const int threads = at::get_num_threads(), teamThreads = taskTeamThreads();
  std::vector<at::Tensor> results;
  for (int team : {1, 2}) {
    setTaskTeamThreads(team);
    const ScopedIntraOpThreads one(1);  // a single density's step: the team runs the blocks
    at::Tensor single = at::cat({push.limit(raw.narrow(0, 0, 1), target.narrow(0, 0, 1)),
                                 push.limit(raw.narrow(0, 1, 2), target.narrow(0, 1, 2))});
    results.push_back(single);
  }
  at::set_num_threads(2);
  results.push_back(push.limit(raw, target));  // the batch: samples in parallel, blocks in sequence
  at::set_num_threads(threads);
  setTaskTeamThreads(teamThreads);
  for (const at::Tensor& result : results) {
    EXPECT_TRUE(at::allclose(result, expected, 1e-12, 1e-15));
    EXPECT_TRUE(at::equal(result, results[0]));
    EXPECT_GE(result.min().item<double>(), 0.0);
    EXPECT_TRUE(at::allclose(push.mass(result), target, 1e-14, 0));
  }
}

TEST_P(PushForwardInDimension, JacobianDeterminantOfLinearMaps) {
  const int dim = GetParam();
  const Grid grid = Grid::box(dim, {10, 8, 6}, {0, 0, 0}, {1, 0.8, 0.6});
  const PushForward push(grid);
  const at::Tensor rho = randomDensity(grid, 1, 12);
  // u = A (x - c): central and one-sided differences are exact, det(I + grad u) = det(I + A).
  auto displacement = [&](const at::Tensor& A) {
    std::vector<int64_t> shape{1, dim};
    for (int a = 0; a < dim; ++a) shape.push_back(grid.n[a]);
    at::Tensor u = at::zeros(shape, at::kDouble);
    for (int a = 0; a < dim; ++a)
      for (int b = 0; b < dim; ++b)
        u[0][a] += A[a][b].item<double>() * (grid.coordinate(b) - 0.5 * grid.boxLength(b)).expand(grid.shape());
    return u;
  };
  const at::Tensor stretch = at::eye(dim, at::kDouble) * -0.5;  // det 0.5^d: no fold
  const at::Tensor mirror = at::diag(at::tensor({-2.0, 0.0, 0.0}, at::kDouble).narrow(0, 0, dim));  // det -1
  at::Tensor mixed = at::tensor({0.5, 2.0, 0.0, 1.0, -0.5, 0.0, 0.0, 0.0, 0.0}, at::kDouble).view({3, 3});
  mixed = mixed.narrow(0, 0, dim).narrow(1, 0, dim);               // det(I + A) = -1.25
  const at::Tensor twoMirrors = at::eye(dim, at::kDouble) * -2.0;  // det (-1)^d: folds in 3D only
  for (const auto& [A, folded] : std::vector<std::pair<at::Tensor, double>>{
           {stretch, 0.0}, {mirror, 1.0}, {mixed, 1.0}, {twoMirrors, dim == 3 ? 1.0 : 0.0}}) {
    const at::Tensor u = displacement(A);
    const at::Tensor expected =
        at::full(grid.batchShape(1), at::det(at::eye(dim, at::kDouble) + A).item<double>(), at::kDouble);
    EXPECT_TRUE(at::allclose(push.jacobianDeterminant(u), expected, 1e-12, 1e-12)) << A;
    const PushForward::Folding fold = push.folding(rho, u);
    EXPECT_EQ(fold.nodeFraction.item<double>(), folded) << A;
    EXPECT_EQ(fold.massFraction.item<double>(), folded) << A;
    // Folded or not, the deposit stays a density of the same mass.
    const at::Tensor out = push.apply(rho, u);
    EXPECT_TRUE(at::isfinite(out).all().item<bool>());
    EXPECT_GE(out.min().item<double>(), 0.0);
    EXPECT_NEAR(push.mass(out).item<double>(), push.mass(rho).item<double>(), 1e-13 * push.mass(rho).item<double>());
  }
  EXPECT_EQ(push.folding(rho, at::zeros_like(displacement(stretch))).nodeFraction.item<double>(), 0.0);
}

INSTANTIATE_TEST_SUITE_P(TwoAndThreeD, PushForwardInDimension, ::testing::Values(2, 3));

TEST(PushForward, ReflectionFoldsEveryNodeAndDepositsTheMirrorImage) {
  const Grid grid = Grid::box(2, {12, 9, 1}, {0, 0, 0}, {1.2, 0.9, 0});
  const PushForward push(grid);
  const at::Tensor rho = randomDensity(grid, 1, 11);
  // T(x) = L - x along axis 0 takes node i exactly onto node n - 1 - i.
  at::Tensor u = at::zeros({1, 2, 12, 9}, at::kDouble);
  u[0][0] = (grid.boxLower(0) + grid.boxUpper(0) - 2 * grid.coordinate(0)).expand({12, 9});
  EXPECT_TRUE(at::allclose(push.apply(rho, u), rho.flip(1), 1e-12, 1e-13));
  EXPECT_EQ(push.folding(rho, u).nodeFraction.item<double>(), 1.0);
}

TEST(PushForward, QuadraticBSplineWeightsOfOneParticle) {
  // Non-square grid with unequal spacing: axis 0 has h = 0.1, axis 1 h = 0.25.
  const Grid grid = Grid::box(2, {10, 4, 1}, {0, 0, 0}, {1, 1, 0});
  const PushForward push(grid);
  at::Tensor masses = at::zeros(grid.batchShape(1), at::kDouble);
  masses[0][4][1] = 1;
  at::Tensor u = at::zeros({1, 2, 10, 4}, at::kDouble);
  const double d = 0.3;  // offset to the nearest node, in cells, along axis 0
  u[0][0][4][1] = (2 + d) * grid.spacing[0];
  const at::Tensor r = push.deposit(masses, u)[0];
  const at::Tensor along0 = r.sum(1), along1 = r.sum(0);
  EXPECT_NEAR(along0[5].item<double>(), 0.5 * (0.5 - d) * (0.5 - d), 1e-14);
  EXPECT_NEAR(along0[6].item<double>(), 0.75 - d * d, 1e-14);
  EXPECT_NEAR(along0[7].item<double>(), 0.5 * (0.5 + d) * (0.5 + d), 1e-14);
  EXPECT_NEAR(r.sum().item<double>(), 1.0, 1e-14);
  // Not moved along axis 1: the B-spline at zero offset, (1/8, 3/4, 1/8).
  EXPECT_NEAR(along1[0].item<double>(), 0.125, 1e-14);
  EXPECT_NEAR(along1[1].item<double>(), 0.75, 1e-14);
  EXPECT_NEAR(along1[2].item<double>(), 0.125, 1e-14);
}

TEST(PushForward, WallsFoldWeightsOntoEdgeNodes) {
  const Grid grid = Grid::unitBox(2, 8);
  const PushForward push(grid);
  at::Tensor masses = at::zeros(grid.batchShape(1), at::kDouble);
  masses[0][1][3] = 2;
  at::Tensor u = at::zeros({1, 2, 8, 8}, at::kDouble);
  u[0][0][1][3] = -5.0;  // far beyond the lower wall of axis 0
  const at::Tensor r = push.deposit(masses, u)[0];
  EXPECT_NEAR(r.sum().item<double>(), 2.0, 1e-14);
  EXPECT_NEAR(r.sum(1)[0].item<double>(), 2.0, 1e-14);  // all of it on the edge nodes of axis 0
}

TEST(PushForward, LimiterRemovesNegativeMassAndKeepsTotal) {
  const Grid grid = Grid::unitBox(2, 6);
  const PushForward push(grid);
  at::Tensor raw = at::full(grid.batchShape(1), 1.0, at::kDouble);
  raw[0][2][2] = -0.3;
  const at::Tensor target = push.mass(at::full(grid.batchShape(1), 1.0, at::kDouble));
  const at::Tensor limited = push.limit(raw, target);
  EXPECT_GE(limited.min().item<double>(), 0.0);
  EXPECT_NEAR(push.mass(limited).item<double>(), target.item<double>(), 1e-14);
}

}  // namespace
}  // namespace jko
