#include "evaluation/ReferenceCases.h"

#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "numerics/Errors.h"
#include "numerics/ExactSolutions.h"
#include "numerics/JkoObjective.h"

namespace jko {
namespace {

std::array<double, 3> boxCentre(const Grid& grid) {
  std::array<double, 3> c{0, 0, 0};
  for (int a = 0; a < grid.dim; ++a) c[a] = 0.5 * (grid.boxLower(a) + grid.boxUpper(a));
  return c;
}

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t mid = values.size() / 2;
  return values.size() % 2 ? values[mid] : 0.5 * (values[mid - 1] + values[mid]);
}

// Fokker-Planck (or interaction) Gaussian cases: the JKO chain stays Gaussian.
void gaussianChain(ReferenceCase& c, exact::Gaussian g, const std::array<double, 3>& a, const std::array<double, 3>& b,
                   double D, bool interaction, double attraction) {
  c.initial = exact::density(c.grid, g);
  for (int k = 0; k < c.steps; ++k) {
    const exact::Gaussian next = interaction ? exact::quadraticInteractionStep(g, c.grid.dim, attraction, D, c.tau)
                                             : exact::fokkerPlanckStep(g, c.grid.dim, a, b, D, c.tau);
    if (k == 0) c.firstDisplacement = exact::gaussianDisplacement(c.grid, g, next);
    c.jkoChain.push_back(exact::density(c.grid, next));
    g = next;
  }
}

// Porous medium D rho^m/(m-1): the exact JKO chain of dilations from profile p.
void barenblattChain(ReferenceCase& c, exact::BarenblattProfile p, double D) {
  c.initial = exact::density(c.grid, p);
  for (int k = 0; k < c.steps; ++k) {
    if (k == 0)
      c.firstDisplacement =
          exact::dilationDisplacement(c.grid, p.centre, exact::barenblattDilation(p, c.grid.dim, D, c.tau));
    p = exact::barenblattStep(p, c.grid.dim, D, c.tau);
    c.jkoChain.push_back(exact::density(c.grid, p));
  }
}

}  // namespace

Stepper referenceStepper(std::shared_ptr<const ReferenceSolver> solver) {
  return [solver](const at::Tensor& rho, const StepOutput& previous) {
    const ReferenceStep step = solver->step(rho, previous.displacement);
    StepOutput out;
    out.next = step.next;
    out.displacement = step.displacement;
    out.objective = step.objective;
    out.energy = step.energy;
    out.transport = step.transport;
    out.iterations = step.iterations;
    out.converged = step.converged;
    return out;
  };
}

const std::vector<std::string>& referenceCaseNames() {
  static const std::vector<std::string> names{"gaussian-step",   "ou-step",         "ou-aniso-step", "interaction-step",
                                              "barenblatt-step", "barenblatt-flow", "ou-steady"};
  return names;
}

std::vector<std::string> caseParameterNames(const std::string& name) {
  if (name == "gaussian-step" || name == "ou-aniso-step") return {"D"};
  if (name == "ou-step" || name == "ou-steady") return {"D", "potential strength a"};
  if (name == "interaction-step") return {"D", "attraction"};
  if (name == "barenblatt-step" || name == "barenblatt-flow") return {"D", "exponent m"};
  return {};
}

ReferenceCase makeReferenceCase(const std::string& name, int64_t n, int dim, double tau, int steps,
                                const CaseParameters& parameters) {
  if (std::find(referenceCaseNames().begin(), referenceCaseNames().end(), name) == referenceCaseNames().end())
    throw InvalidParameter("case", name,
                           "allowed: gaussian-step, ou-step, ou-aniso-step, interaction-step, barenblatt-step, "
                           "barenblatt-flow, ou-steady");
  if (dim != 2 && dim != 3) throw InvalidParameter("dim", formatValue(dim), "must be 2 or 3");
  if (n < 8) throw InvalidParameter("grid", formatValue(n), "needs at least 8 nodes per axis");
  if (tau < 0 || std::isnan(tau)) throw InvalidParameter("tau", formatValue(tau), "the time step must be > 0");
  // Each given parameter: one the case takes, and a value its exact answer
  // holds for.
  const std::vector<std::string> takes = caseParameterNames(name);
  std::string takesText;
  for (const std::string& t : takes) takesText += (takesText.empty() ? "" : ", ") + t;
  auto parameter = [&](const std::optional<double>& given, const char* label, double fallback, double above) {
    if (!given) return fallback;
    if (std::find(takes.begin(), takes.end(), label) == takes.end())
      throw InvalidParameter(label, formatValue(*given),
                             "the case " + name + " has no such parameter (it takes " +
                                 (takesText.empty() ? std::string("none") : takesText) + ")");
    if (!(std::isfinite(*given) && *given > above))
      throw InvalidParameter(label, formatValue(*given), "must be a number > " + formatValue(above));
    return *given;
  };
  const double D = parameter(parameters.diffusion, "D", name.rfind("barenblatt", 0) == 0 ? 1.0 : 0.1, 0);
  const double strength = parameter(parameters.potentialStrength, "potential strength a", 20, 0);
  const double attraction = parameter(parameters.attraction, "attraction", 20, 0);
  const double m = parameter(parameters.exponent, "exponent m", 2, 1);

  ReferenceCase c;
  c.name = name;
  c.tau = tau > 0 ? tau : 0.005;
  c.oneStep = name.size() > 5 && name.compare(name.size() - 5, 5, "-step") == 0;
  c.steps = steps >= 0 ? steps : (name == "barenblatt-flow" ? 20 : name == "ou-steady" ? 60 : 1);
  if (c.steps < 1) throw InvalidParameter("steps", formatValue(steps), "must be >= 1");
  c.grid = Grid::unitBox(dim, n);
  // Coarser 3D grids resolve a wider Gaussian.
  const double sigma = dim == 2 ? 0.08 : 0.12;

  if (name == "gaussian-step") {
    c.energy = EnergySpec::heat(D);
    exact::Gaussian g;
    g.sigma = {sigma, sigma, sigma};
    gaussianChain(c, g, {0, 0, 0}, boxCentre(c.grid), D, false, 0);
  } else if (name == "ou-step") {
    c.energy = EnergySpec::fokkerPlanck(D, strength);
    exact::Gaussian g;
    g.mean = {0.42, 0.55, 0.46};
    g.sigma = {sigma, sigma, sigma};
    gaussianChain(c, g, {strength, strength, strength}, boxCentre(c.grid), D, false, 0);
  } else if (name == "ou-aniso-step") {
    // Non-square grid, unequal spacing and a different a_k per axis: catches
    // swapped axes, transposed arrays and wrong spacing.
    const std::array<double, 3> a{20, 5, 12};
    std::array<int64_t, 3> cells{n, std::max<int64_t>(8, (2 * n) / 3), std::max<int64_t>(8, (5 * n) / 6)};
    c.grid = Grid::box(dim, cells, {0, 0, 0}, {1, 0.8, 0.9});
    c.energy = EnergySpec::fokkerPlanck(D, 1);
    c.energy.potentialStrength = a;
    exact::Gaussian g;
    g.mean = {0.45, 0.37, 0.47};
    g.sigma = {0.7 * sigma, 1.2 * sigma, sigma};
    gaussianChain(c, g, a, boxCentre(c.grid), D, false, 0);
  } else if (name == "interaction-step") {
    c.energy = EnergySpec::aggregationDiffusion(D, attraction);
    exact::Gaussian g;
    g.mean = {0.48, 0.53, 0.5};
    g.sigma = {1.25 * sigma, 1.25 * sigma, 1.25 * sigma};
    gaussianChain(c, g, {0, 0, 0}, {0, 0, 0}, D, true, attraction);
  } else if (name == "barenblatt-step") {
    c.energy = EnergySpec::porousMedium(m, D);
    exact::BarenblattProfile p;
    p.m = m;
    p.q = 10;
    const double radius = dim == 2 ? 0.2 : 0.25;
    p.A = p.q * radius * radius;
    barenblattChain(c, p, D);
  } else if (name == "barenblatt-flow") {
    // Box [0,1]^d, mass 0.02, the Barenblatt solution of rho_t = Lap rho^m at
    // t0 = 0.005; with D the flow is rho_t = D Lap rho^m, i.e. that solution
    // at t0 + D t.
    const double mass = 0.02, t0 = 0.005;
    c.energy = EnergySpec::porousMedium(m, D);
    exact::BarenblattProfile p = exact::barenblattSolution(t0, mass, dim, m, {0.5, 0.5, 0.5});
    barenblattChain(c, p, D);
    for (int k = 0; k < c.steps; ++k)
      c.pde.push_back(
          exact::density(c.grid, exact::barenblattSolution(t0 + D * (k + 1) * c.tau, mass, dim, m, {0.5, 0.5, 0.5})));
  } else if (name == "ou-steady") {
    // Gibbs state N(b, D/a) (sigma 0.071: the Fokker-Planck preset), from an
    // off-centre narrower Gaussian.
    c.energy = EnergySpec::fokkerPlanck(D, strength);
    exact::Gaussian g;
    g.mean = {0.4, 0.58, 0.45};
    g.sigma = {0.06, 0.06, 0.06};
    gaussianChain(c, g, {strength, strength, strength}, boxCentre(c.grid), D, false, 0);
    c.steadyVariance.assign(dim, D / strength);
  }
  return c;
}

double relativeL1(const at::Tensor& a, const at::Tensor& b) {
  return ((a - b).abs().sum() / b.abs().sum()).item<double>();
}

std::vector<double> axisVariances(const at::Tensor& rho, const Grid& grid) {
  std::vector<double> variances;
  const at::Tensor total = rho.sum();
  for (int a = 0; a < grid.dim; ++a) {
    const at::Tensor x = grid.coordinate(a);
    const at::Tensor mean = (rho * x).sum() / total;
    variances.push_back((((x - mean) * (x - mean)) * rho).sum().item<double>() / total.item<double>());
  }
  return variances;
}

nlohmann::json evaluateCase(const ReferenceCase& c, const Stepper& stepper, const std::string& solver,
                            const ProgressCallback& progress, ReferenceCheck* referenceCheck) {
  const auto energy = std::make_shared<const Energy>(c.energy, c.grid);
  const auto objectivePointer = std::make_shared<const JkoObjective>(energy, c.tau);
  const JkoObjective& objective = *objectivePointer;
  const StepCertifier certifier(objectivePointer);
  const double volume = c.grid.cellVolume();
  const double mass0 = c.initial.sum().item<double>() * volume;

  nlohmann::json out;
  out["case"] = c.name;
  out["solver"] = solver;
  out["grid"] = c.grid.n[0];
  out["grid_shape"] = c.grid.shape();
  out["spacing"] = std::vector<double>(c.grid.spacing.begin(), c.grid.spacing.begin() + c.grid.dim);
  out["dim"] = c.grid.dim;
  out["tau"] = c.tau;
  out["steps"] = c.steps;
  out["energy_spec"] = c.energy.describe();

  std::vector<double> relL1, relL1Jko, stepError, ms, objectives, energies, transports, gaps, referenceErrors,
      referenceMs, referenceObjectives;
  std::vector<int> iterations, refineIterations;
  std::vector<bool> converged, refined;
  std::vector<std::string> refineReasons;
  nlohmann::json certificates = nlohmann::json::array(), learnedCertificates = nlohmann::json::array();
  bool anyLearnedCertificate = false;
  double massDrift = 0, minDensity = c.initial.min().item<double>(), energyIncreaseMax = -1e300;
  double previousEnergy = (*energy)(c.initial.unsqueeze(0)).item<double>();
  at::Tensor rho = c.initial;
  StepOutput previous;
  for (int k = 0; k < c.steps; ++k) {
    const auto start = std::chrono::steady_clock::now();
    StepOutput step = stepper(rho, previous);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    const at::Tensor next = step.next.to(at::kDouble);

    const at::Tensor& exactNext = c.jkoChain[k];
    const at::Tensor& exactPrevious = k == 0 ? c.initial : c.jkoChain[k - 1];
    relL1Jko.push_back(relativeL1(next, exactNext));
    relL1.push_back(c.pde.empty() ? relL1Jko.back() : relativeL1(next, c.pde[k]));
    stepError.push_back((next - exactNext).abs().sum().item<double>() /
                        (exactNext - exactPrevious).abs().sum().item<double>());
    massDrift = std::max(massDrift, std::abs(next.sum().item<double>() * volume - mass0) / mass0);
    minDensity = std::min(minDensity, next.min().item<double>());
    const double e = (*energy)(next.unsqueeze(0)).item<double>();
    energyIncreaseMax = std::max(energyIncreaseMax, e - previousEnergy);
    previousEnergy = e;
    energies.push_back(e);
    objectives.push_back(step.objective);
    transports.push_back(step.transport);
    iterations.push_back(step.iterations);
    converged.push_back(step.converged);
    if (!step.certificate && step.displacement.defined()) step.certificate = certifier.certify(rho, step.displacement);
    if (step.certificate && !std::isfinite(step.certificate->gridScaleDefect))
      step.certificate->gridScaleDefect = certifier.gridScaleDefect(next);  // the frame's grid-scale check
    certificates.push_back(step.certificate ? step.certificate->toJson() : nlohmann::json());
    learnedCertificates.push_back(step.learnedCertificate ? step.learnedCertificate->toJson() : nlohmann::json());
    anyLearnedCertificate = anyLearnedCertificate || step.learnedCertificate.has_value();
    refined.push_back(step.refined);
    refineIterations.push_back(step.refineIterations);
    refineReasons.push_back(step.refineReason);
    if (referenceCheck) {
      const ReferenceCheck::Result r = referenceCheck->check(rho, next);
      referenceErrors.push_back(r.relativeL1);
      referenceMs.push_back(r.milliseconds);
      referenceObjectives.push_back(r.objective);
    }
    if (k == 0 && c.firstDisplacement.defined()) {
      // "Found the minimiser": compare with the exact answer pushed through the same deposit.
      at::NoGradGuard noGrad;
      const JkoState state = objective.prepare(c.initial);
      const double exactObjective =
          objective.evaluate(state, c.firstDisplacement.unsqueeze(0)).objective.item<double>();
      const double stay =
          objective.evaluate(state, at::zeros_like(c.firstDisplacement).unsqueeze(0)).objective.item<double>();
      out["objective_exact_map"] = exactObjective;
      out["objective_stay"] = stay;
      out["objective_gap_first"] = (step.objective - exactObjective) / std::abs(stay - exactObjective);
    }
    rho = next;
    previous = step;
    ProgressEvent event;
    event.stage = "evaluation";
    event.step = k + 1;
    event.fraction = static_cast<double>(k + 1) / c.steps;
    event.message = c.name + " step " + std::to_string(k + 1) + "/" + std::to_string(c.steps);
    reportProgress(progress, event);
  }
  out["rel_l1"] = relL1;
  out["rel_l1_final"] = relL1.back();
  out["rel_l1_jko"] = relL1Jko;
  out["rel_l1_jko_final"] = relL1Jko.back();
  out["step_error"] = stepError;
  if (c.oneStep) out["step_error_final"] = stepError.back();
  out["ms_per_step"] = ms;
  out["ms_per_step_median"] = median(ms);
  out["mass_drift_max"] = massDrift;
  out["min_density"] = minDensity;
  out["energy"] = energies;
  out["energy_increase_max"] = energyIncreaseMax;
  out["objective"] = objectives;
  out["transport"] = transports;
  out["iterations"] = iterations;
  out["converged"] = converged;
  out["certificate"] = certificates;
  if (anyLearnedCertificate) out["learned_certificate"] = learnedCertificates;
  out["refined"] = refined;
  out["refine_iterations"] = refineIterations;
  out["refine_reason"] = refineReasons;
  if (referenceCheck) {
    out["reference_rel_l1"] = referenceErrors;
    out["reference_ms"] = referenceMs;
    out["reference_objective"] = referenceObjectives;
  }
  if (!c.steadyVariance.empty()) {
    const std::vector<double> variances = axisVariances(rho, c.grid);
    std::vector<double> errors;
    double worst = 0;
    for (size_t a = 0; a < variances.size(); ++a) {
      errors.push_back((variances[a] - c.steadyVariance[a]) / c.steadyVariance[a]);
      worst = std::max(worst, std::abs(errors.back()));
    }
    out["variance"] = variances;
    out["variance_exact"] = c.steadyVariance;
    out["variance_error_axes"] = errors;
    out["variance_error"] = worst;
  }
  return out;
}

}  // namespace jko
