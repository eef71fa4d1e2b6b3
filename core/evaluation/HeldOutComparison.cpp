#include "evaluation/HeldOutComparison.h"

#include "evaluation/ReferenceCases.h"
#include "numerics/ReferenceSolver.h"
#include "operator/DensityGenerator.h"
#include "operator/LearnToEvolveTrainer.h"

namespace jko {

nlohmann::json compareWithReference(const LearnedOperator& op, const HeldOutOptions& o,
                                    const ProgressCallback& progress) {
  const OperatorMetadata& m = op.metadata();
  std::array<int64_t, 3> cells{o.grid, o.grid, o.grid};
  std::array<double, 3> upper{m.ranges.boxLength[0], m.ranges.boxLength[1], m.ranges.boxLength[2]};
  const Grid grid = Grid::box(m.dim, cells, {0, 0, 0}, upper);
  DensityRanges ranges = TrainingOptions::defaultsFor(m.energy, m.dim).densities;
  DensityGenerator generator(grid, ranges, o.seed);
  const ReferenceSolver solver(op.objectiveOn(grid));

  std::vector<double> perFrame(o.steps, 0.0);
  nlohmann::json perDensity = nlohmann::json::array();
  for (int i = 0; i < o.densities; ++i) {
    const at::Tensor rho0 = generator.next();
    const auto reference = solver.rollout(rho0, o.steps);
    const auto learned = op.rollout(rho0, grid, o.steps);
    std::vector<double> errors;
    for (int k = 0; k < o.steps; ++k) {
      errors.push_back(relativeL1(learned[k].next, reference[k].next));
      perFrame[k] += errors.back() / o.densities;
    }
    perDensity.push_back(errors);
    ProgressEvent event;
    event.stage = "held-out comparison";
    event.fraction = double(i + 1) / o.densities;
    event.message = "held-out density " + std::to_string(i + 1) + "/" + std::to_string(o.densities);
    reportProgress(progress, event);
  }
  double mean = 0;
  for (double e : perFrame) mean += e / o.steps;
  return {{"densities", o.densities},
          {"steps", o.steps},
          {"grid", o.grid},
          {"seed", o.seed},
          {"rel_l1_per_frame", perFrame},
          {"rel_l1_mean", mean},
          {"rel_l1_final", perFrame.back()},
          {"rel_l1_per_density", perDensity}};
}

}  // namespace jko
