// Invalid parameters and densities raise typed errors that name the problem.
#include <gtest/gtest.h>

#include <cmath>

#include "evaluation/ReferenceCases.h"
#include "numerics/Errors.h"
#include "numerics/JkoObjective.h"
#include "operator/LearnToEvolveTrainer.h"

namespace jko {
namespace {

template <typename Error, typename Function>
void expectErrorMentioning(Function&& f, const std::string& text) {
  try {
    f();
    FAIL() << "expected an error mentioning '" << text << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
  }
}

std::shared_ptr<const Energy> heatOn(const Grid& grid) {
  return std::make_shared<const Energy>(EnergySpec::heat(0.1), grid);
}

TEST(BadInput, NonPositiveTau) {
  const Grid grid = Grid::unitBox(2, 8);
  expectErrorMentioning<InvalidParameter>([&] { JkoObjective(heatOn(grid), 0.0); }, "tau");
  expectErrorMentioning<InvalidParameter>([&] { JkoObjective(heatOn(grid), -1.0); }, "tau = -1");
  expectErrorMentioning<InvalidParameter>([&] { makeReferenceCase("gaussian-step", 16, 2, -0.1); }, "tau");
  // A parameter the case does not take is named with the ones it does.
  CaseParameters attraction;
  attraction.attraction = 5;
  expectErrorMentioning<InvalidParameter>([&] { makeReferenceCase("gaussian-step", 16, 2, 0, -1, attraction); },
                                          "it takes D");
  CaseParameters exponent;
  exponent.exponent = 1;
  expectErrorMentioning<InvalidParameter>([&] { makeReferenceCase("barenblatt-flow", 16, 2, 0, -1, exponent); },
                                          "exponent m");
}

TEST(BadInput, PorousExponentAndDiffusion) {
  const Grid grid = Grid::unitBox(2, 8);
  expectErrorMentioning<InvalidParameter>([&] { Energy(EnergySpec::porousMedium(1.0), grid); }, "m = 1");
  expectErrorMentioning<InvalidParameter>([&] { Energy(EnergySpec::porousMedium(0.5), grid); }, "> 1");
  expectErrorMentioning<InvalidParameter>([&] { Energy(EnergySpec::heat(-0.2), grid); }, "D = -0.2");
  expectErrorMentioning<InvalidParameter>([&] { Energy(EnergySpec::fokkerPlanck(NAN), grid); }, "D");
}

TEST(BadInput, Densities) {
  const Grid grid = Grid::unitBox(2, 8);
  const JkoObjective objective(heatOn(grid), 0.01);
  at::Tensor rho = at::ones(grid.shape(), at::kDouble);
  rho[2][3] = -1;
  expectErrorMentioning<InvalidDensity>([&] { objective.prepare(rho); }, "negative");
  rho[2][3] = NAN;
  expectErrorMentioning<InvalidDensity>([&] { objective.prepare(rho); }, "NaN");
  expectErrorMentioning<InvalidDensity>([&] { objective.prepare(at::zeros(grid.shape(), at::kDouble)); }, "zero mass");
  // Finite values whose sum overflows: mass, limiter and energies would be inf or NaN.
  expectErrorMentioning<InvalidDensity>([&] { objective.prepare(at::full(grid.shape(), 1e307, at::kDouble)); },
                                        "total mass overflows");
  expectErrorMentioning<InvalidDensity>([&] { objective.prepare(at::ones({8, 9}, at::kDouble)); }, "does not fit");
  expectErrorMentioning<InvalidDensity>(
      [&] {
        objective.prepare(at::ones({2, 8, 8, 8}, at::kDouble));
      },
      "does not fit");
}

// validateDensity checks contiguous CPU float64 batches in one pass and
// anything else with tensor operations: the same refusals either way, for
// every sample of a batch.
TEST(BadInput, DensityBatchesOnBothPaths) {
  const Grid grid = Grid::unitBox(2, 8);
  for (const bool fastPath : {true, false}) {
    auto prepare = [&](const at::Tensor& batch) {
      // A transposed view is not contiguous: the tensor-operation path.
      return [batch, fastPath, &grid] {
        validateDensity(fastPath ? batch : batch.transpose(1, 2).contiguous().transpose(1, 2), grid);
      };
    };
    at::Tensor batch = at::ones({3, 8, 8}, at::kDouble);
    EXPECT_NO_THROW(prepare(batch)());
    batch[2][1][5] = INFINITY;
    expectErrorMentioning<InvalidDensity>(prepare(batch), "infinite");
    batch[2][1][5] = -0.5;
    expectErrorMentioning<InvalidDensity>(prepare(batch), "minimum -0.5");
    batch[2].zero_();
    expectErrorMentioning<InvalidDensity>(prepare(batch), "zero mass");
    batch[2].fill_(1);
    batch[1].fill_(1e307);
    expectErrorMentioning<InvalidDensity>(prepare(batch), "total mass overflows");
  }
  expectErrorMentioning<InvalidDensity>(
      [&] {
        at::Tensor single = at::ones({1, 8, 8}, at::kFloat);
        single[0][0][0] = -2;
        validateDensity(single, grid);
      },
      "negative");
}

TEST(BadInput, PotentialArrayOfTheWrongShape) {
  const Grid grid = Grid::unitBox(2, 8);
  EnergySpec spec;
  spec.potential = PotentialKind::Values;
  spec.potentialValues = at::zeros({8, 8, 8}, at::kDouble);
  expectErrorMentioning<InvalidParameter>([&] { Energy(spec, grid); }, "potential array shape");
  spec.potentialValues = at::zeros({8, 8}, at::kDouble);
  spec.potentialValues[1][1] = INFINITY;
  expectErrorMentioning<InvalidParameter>([&] { Energy(spec, grid); }, "finite");
}

TEST(BadInput, KernelsAndGrids) {
  EnergySpec ks;
  ks.kernel = KernelKind::KellerSegel;
  expectErrorMentioning<InvalidParameter>([&] { Energy(ks, Grid::unitBox(3, 8)); }, "2D only");
  EnergySpec ar = EnergySpec::aggregation();
  ar.repulsivePower = -2.5;
  expectErrorMentioning<InvalidParameter>([&] { Energy(ar, Grid::unitBox(2, 8)); }, "repulsive power");
  expectErrorMentioning<InvalidParameter>([&] { Grid::unitBox(4, 8); }, "dimension");
  expectErrorMentioning<InvalidParameter>([&] { Grid::unitBox(2, 1); }, "at least 2");
  expectErrorMentioning<InvalidParameter>([&] { EnergySpec::fromPreset("heat-death"); }, "fokker-planck");
}

// NaN and infinity pass a plain "< 0" or "> 0" test; they must not silently
// mean "no time cap" or an infinite step size.
TEST(BadInput, TrainingOptionsRejectNonFiniteSettings) {
  TrainingOptions o;
  o.maxSeconds = NAN;
  expectErrorMentioning<InvalidParameter>([&] { o.validate(); }, "maximum seconds");
  o.maxSeconds = 0;
  o.learningRate = INFINITY;
  expectErrorMentioning<InvalidParameter>([&] { o.validate(); }, "learning rate");
  o.learningRate = NAN;
  expectErrorMentioning<InvalidParameter>([&] { o.validate(); }, "learning rate");
}

}  // namespace
}  // namespace jko
