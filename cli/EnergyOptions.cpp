#include "EnergyOptions.h"

#include <sstream>

#include "numerics/Errors.h"

namespace jko::cli {

void EnergyOptions::addTo(CLI::App& app, bool presetRequired) {
  auto* option = app.add_option("--energy", preset, "Energy preset")
                     ->check(CLI::IsMember(
                         {"fokker-planck", "porous-medium", "aggregation", "aggregation-diffusion", "keller-segel"}));
  if (presetRequired) option->required();
  DOption = app.add_option("--D", D, "Diffusion coefficient D (entropy D rho log rho, or D rho^m/(m-1))");
  mOption = app.add_option("--m", m, "Porous-medium exponent m > 1");
  potentialOption = app.add_option("--potential", potential, "Potential: none, quadratic, double-well")
                        ->check(CLI::IsMember({"none", "quadratic", "double-well"}));
  strengthOption = app.add_option("--potential-strength", potentialStrength, "a in V = a |x - b|^2 / 2");
  centreOption = app.add_option("--potential-centre", potentialCentre, "b as x,y[,z] (default: the box centre)");
  kernelOption =
      app.add_option("--kernel", kernel, "Interaction kernel: none, quadratic, attractive-repulsive, keller-segel")
          ->check(CLI::IsMember({"none", "quadratic", "attractive-repulsive", "keller-segel"}));
  attractionOption = app.add_option("--attraction", attraction, "Kernel attraction coefficient");
  repulsionOption = app.add_option("--repulsion", repulsion, "Kernel repulsion coefficient");
  attractivePowerOption = app.add_option("--attractive-power", attractivePower, "p in |z|^p/p");
  repulsivePowerOption = app.add_option("--repulsive-power", repulsivePower, "q in |z|^q/q (0: log|z|)");
}

EnergySpec EnergyOptions::spec() const { return over(EnergySpec::fromPreset(preset)); }

bool EnergyOptions::anyGiven() const {
  for (const CLI::Option* o : {DOption, mOption, potentialOption, strengthOption, centreOption, kernelOption,
                               attractionOption, repulsionOption, attractivePowerOption, repulsivePowerOption})
    if (o && o->count()) return true;
  return given();
}

EnergySpec EnergyOptions::over(const EnergySpec& base) const {
  EnergySpec s = given() ? EnergySpec::fromPreset(preset) : base;
  if (DOption->count()) s.diffusion = D;
  if (mOption->count()) s.exponent = m;
  if (potentialOption->count()) s.potential = potentialKindFromString(potential);
  if (strengthOption->count()) s.potentialStrength = {potentialStrength, potentialStrength, potentialStrength};
  if (centreOption->count()) {
    std::istringstream in(potentialCentre);
    std::string item;
    for (int a = 0; a < 3 && std::getline(in, item, ','); ++a) {
      try {
        s.potentialCentre[a] = std::stod(item);
      } catch (const std::exception&) {
        throw InvalidParameter("--potential-centre", potentialCentre, "give numbers as x,y[,z]");
      }
    }
  }
  if (kernelOption->count()) s.kernel = kernelKindFromString(kernel);
  if (attractionOption->count()) s.attraction = attraction;
  if (repulsionOption->count()) s.repulsion = repulsion;
  if (attractivePowerOption->count()) s.attractivePower = attractivePower;
  if (repulsivePowerOption->count()) s.repulsivePower = repulsivePower;
  if (s.kernel == KernelKind::AttractiveRepulsive && !attractivePowerOption->count() && s.attractivePower == 0)
    s.attractivePower = 2;
  return s;
}

}  // namespace jko::cli
