#include "evaluation/ModeDecay.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "numerics/Errors.h"
#include "runtime/JsonNumber.h"

namespace jko {
namespace {

constexpr double kPi = 3.14159265358979323846;

// cos(pi k (x_a - lower_a) / L_a) at the nodes along one axis, broadcastable.
at::Tensor cosineAlong(const Grid& grid, int axis, int64_t k) {
  return at::cos(kPi * k * (grid.coordinate(axis) - grid.boxLower(axis)) / grid.boxLength(axis));
}

double project(const at::Tensor& field, const at::Tensor& mode) {
  return (field * mode).sum().item<double>() / (mode * mode).sum().item<double>();
}

}  // namespace

std::vector<int64_t> defaultWavenumbers(const Grid& grid) {
  int64_t n = grid.n[0];
  for (int a = 1; a < grid.dim; ++a) n = std::min(n, grid.n[a]);
  std::vector<int64_t> ks;
  for (int64_t k = 1; k <= n / 2; k *= 2) ks.push_back(k);
  return ks;
}

double effectiveDiffusivity(const EnergySpec& e, double level) {
  if (e.internal == InternalKind::Entropy) return e.diffusion;
  if (e.internal == InternalKind::PorousMedium) return e.diffusion * e.exponent * std::pow(level, e.exponent - 1);
  return 0;
}

nlohmann::json evaluateModeDecay(const ModeDecayOptions& o, const Stepper& solver, const Stepper& reference,
                                 const std::string& solverName, const ProgressCallback& progress) {
  const Grid& grid = o.grid;
  grid.validate();
  const double level = o.level > 0 ? o.level : (o.energy.internal == InternalKind::PorousMedium ? 0.3 : 1.0);
  if (!(o.amplitude > 0 && o.amplitude < 1))
    throw InvalidParameter("mode amplitude", formatValue(o.amplitude), "must be in (0, 1) (a fraction of rho0)");
  const std::vector<int64_t> ks = o.wavenumbers.empty() ? defaultWavenumbers(grid) : o.wavenumbers;
  int64_t nMin = grid.n[0];
  for (int a = 1; a < grid.dim; ++a) nMin = std::min(nMin, grid.n[a]);
  const bool pureInternal = o.energy.potential == PotentialKind::None && o.energy.kernel == KernelKind::None &&
                            o.energy.internal != InternalKind::None;
  const double Deff = effectiveDiffusivity(o.energy, level);
  const at::Tensor constant = at::full(grid.shape(), level, at::kDouble);

  // The step of the constant state itself (steady for a purely internal
  // energy; the projection subtracts it either way).
  auto run = [&](const Stepper& stepper, const at::Tensor& rho) {
    return stepper(rho, StepOutput{}).next.to(at::kDouble);
  };
  const at::Tensor baseSolver = run(solver, constant);
  const at::Tensor baseReference = reference ? run(reference, constant) : baseSolver;

  std::vector<std::string> directions;
  const char* axisNames[3] = {"x", "y", "z"};
  for (int a = 0; a < grid.dim; ++a) directions.push_back(axisNames[a]);
  directions.push_back("diagonal");

  nlohmann::json out;
  out["case"] = "mode-decay";
  out["solver"] = solverName;
  out["grid"] = grid.n[0];
  out["grid_shape"] = grid.shape();
  out["dim"] = grid.dim;
  out["tau"] = o.tau;
  out["energy_spec"] = o.energy.describe();
  out["level"] = level;
  out["amplitude"] = o.amplitude * level;
  out["effective_diffusivity"] = Deff;
  out["formula"] =
      pureInternal ? "1 / (1 + tau D_eff lambda_k), D_eff = rho0 U''(rho0)" : "none (not a pure internal energy)";

  double maxAbs = 0, maxDiff = 0, maxRel = 0;
  int growing = 0;
  const int total = static_cast<int>(ks.size() * directions.size());
  int done = 0;
  const auto start = std::chrono::steady_clock::now();
  nlohmann::json perDirection = nlohmann::json::object();
  for (size_t dIndex = 0; dIndex < directions.size(); ++dIndex) {
    const std::string& direction = directions[dIndex];
    std::vector<int64_t> kList;
    std::vector<double> fs, fr;
    nlohmann::json ff = nlohmann::json::array();
    for (int64_t k : ks) {
      at::Tensor mode;
      double lambda = 0;
      if (direction == "diagonal") {
        mode = at::ones(grid.shape(), at::kDouble);
        for (int a = 0; a < grid.dim; ++a) {
          mode = mode * cosineAlong(grid, a, k);
          lambda += std::pow(kPi * k / grid.boxLength(a), 2);
        }
      } else {
        const int a = static_cast<int>(dIndex);
        if (k > grid.n[a] / 2) continue;
        mode = cosineAlong(grid, a, k).expand(grid.shape()).contiguous();
        lambda = std::pow(kPi * k / grid.boxLength(a), 2);
      }
      const double A = o.amplitude * level;
      const at::Tensor rho = constant + A * mode;
      const double factorSolver = project(run(solver, rho) - baseSolver, mode) / A;
      const double factorReference = reference ? project(run(reference, rho) - baseReference, mode) / A : factorSolver;
      const double formula = pureInternal ? 1.0 / (1.0 + o.tau * Deff * lambda) : std::nan("");
      kList.push_back(k);
      fs.push_back(factorSolver);
      fr.push_back(factorReference);
      ff.push_back(finiteOrNull(formula));
      maxAbs = std::max(maxAbs, std::abs(factorSolver));
      if (std::abs(factorSolver) > 1) ++growing;
      if (4 * k <= nMin) maxDiff = std::max(maxDiff, std::abs(factorSolver - factorReference));
      if (pureInternal && 8 * k <= nMin) maxRel = std::max(maxRel, std::abs(factorReference - formula) / formula);
      ++done;
      ProgressEvent event;
      event.stage = "mode decay";
      event.fraction = static_cast<double>(done) / total;
      event.message = direction + " mode k = " + std::to_string(k);
      reportProgress(progress, event);
    }
    perDirection[direction] = {{"k", kList}, {"solver", fs}, {"reference", fr}, {"formula", ff}};
  }
  out["modes"] = perDirection;
  out["max_abs_factor"] = maxAbs;
  out["growing_modes"] = growing;
  out["solver_reference_max_abs_diff"] = maxDiff;
  out["reference_formula_max_rel_error"] = pureInternal ? nlohmann::json(maxRel) : nlohmann::json();
  out["gates"] = {
      {"no_mode_grows", growing == 0},
      {"solver_within_0.05_of_reference_k_le_n4", maxDiff <= 0.05},
      {"reference_within_5pct_of_formula_k_le_n8", pureInternal ? nlohmann::json(maxRel <= 0.05) : nlohmann::json()}};
  out["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

}  // namespace jko
