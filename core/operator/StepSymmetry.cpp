#include "operator/StepSymmetry.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <vector>

#include "numerics/Errors.h"
#include "operator/LearnedOperator.h"
#include "operator/TrainingRangeCheck.h"

namespace jko {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string number(double value) { return formatValue(value, 4); }

// The interaction's strength: the attraction, or the repulsion of a purely
// repulsive kernel.
double interactionStrength(const EnergySpec& e) {
  return e.attraction != 0 || e.kernel != KernelKind::AttractiveRepulsive ? e.attraction : e.repulsion;
}

// Whether the operator's conditioning takes up the density's scale, leaving
// the density symmetry's c free to bring the mass into the trained masses:
// the porous medium's D conditioned on (no interaction), or the
// interaction's attraction conditioned on (no porous medium).
bool conditioningTakesUpMass(const EnergySpec& e, const Conditioning& k) {
  if (e.internal == InternalKind::PorousMedium && e.kernel == KernelKind::None) return k.onDiffusion();
  if (e.kernel != KernelKind::None && e.internal != InternalKind::PorousMedium) return k.onAttraction();
  return false;
}

}  // namespace

double homogeneityDegree(const EnergySpec& e) {
  double degree = kNaN;
  auto part = [&](double p) {
    if (std::isnan(degree))
      degree = p;
    else if (std::abs(degree - p) > 1e-12)
      degree = -1;  // two parts of different degrees
  };
  if (e.internal == InternalKind::Entropy) part(1);  // D c rho log(c rho) = c D rho log rho + (D c log c) rho
  if (e.internal == InternalKind::PorousMedium) part(e.exponent);
  if (e.potential != PotentialKind::None) part(1);
  if (e.kernel != KernelKind::None) part(2);
  return degree > 0 ? degree : kNaN;
}

EnergySpec scaledEnergy(const EnergySpec& energy, double s, double c) {
  EnergySpec e = energy;
  if (e.internal == InternalKind::Entropy) e.diffusion = s * energy.diffusion;
  if (e.internal == InternalKind::PorousMedium)
    e.diffusion = s * energy.diffusion * std::pow(c, -(energy.exponent - 1));
  if (e.potential == PotentialKind::Quadratic || e.potential == PotentialKind::DoubleWell)
    for (double& a : e.potentialStrength) a *= s;
  if (e.potential == PotentialKind::DoubleWell) e.wellDepth = s * energy.wellDepth;
  if (e.potential == PotentialKind::Values && s != 1 && energy.potentialValues.defined())
    e.potentialValues = energy.potentialValues * s;
  if (e.kernel != KernelKind::None) {
    e.attraction = s * energy.attraction / c;
    e.repulsion = s * energy.repulsion / c;
  }
  return e;
}

StepSymmetry relateToOperator(const OperatorMetadata& m, const EnergySpec& energy, double tau, int dim, double mass) {
  StepSymmetry out;
  if (!(tau > 0) || !(m.tau > 0)) {
    out.difference = "tau: " + number(m.tau) + " vs " + number(tau);
    return out;
  }
  const EnergySpec& e0 = m.energy;
  const Conditioning& conditioning = m.conditioning;
  const double s = tau / m.tau;
  const bool porous = energy.internal == InternalKind::PorousMedium && e0.internal == InternalKind::PorousMedium;
  const bool interaction = energy.kernel != KernelKind::None && energy.kernel == e0.kernel;
  // An operator conditioned on the porous medium's D (or the interaction's
  // attraction) steps any D (A) in its range: the density's symmetry is then
  // free to bring the mass into the trained masses, as for entropy and
  // potential energies.
  const bool scaleTaken = (porous || interaction) && conditioningTakesUpMass(energy, conditioning);
  // c is fixed by the parts that are not of degree 1 in the density.
  double c = kNaN;
  if (porous && !scaleTaken &&
      (conditioning.onExponent() || std::abs(energy.exponent - e0.exponent) <= 1e-12 * e0.exponent) &&
      e0.diffusion > 0 && energy.diffusion > 0)
    c = std::pow(s * energy.diffusion / e0.diffusion, 1 / (energy.exponent - 1));
  else if (energy.kernel != KernelKind::None && energy.kernel == e0.kernel && interactionStrength(e0) != 0 &&
           interactionStrength(energy) / interactionStrength(e0) > 0)
    c = s * interactionStrength(energy) / interactionStrength(e0);
  const bool massFree = energy.internal != InternalKind::PorousMedium && energy.kernel == KernelKind::None;
  if (massFree || scaleTaken) {
    // Entropy and potential only: the map does not depend on the mass. A
    // conditioned D of the porous medium or attraction: the scaled
    // parameter carries the mass, and c is chosen in the trained masses
    // where the scaled parameter then lies in its range too
    // (D' = s D c^-(m-1), A' = s A / c).
    c = 1;
    double massLow = 0, massHigh = std::numeric_limits<double>::infinity();
    if (m.ranges.hasMasses() && mass > 0) {
      massLow = m.ranges.massMin / mass;
      massHigh = m.ranges.massMax / mass;
      c = std::clamp(1.0, massLow, massHigh);
    }
    if (scaleTaken) {
      double low = massLow, high = massHigh;
      if (porous && energy.diffusion > 0) {
        const double power = 1 / (energy.exponent - 1);
        low = std::pow(s * energy.diffusion / conditioning.diffusion[1], power);
        high = std::pow(s * energy.diffusion / conditioning.diffusion[0], power);
      } else if (interaction && energy.attraction > 0) {
        low = s * energy.attraction / conditioning.attraction[1];
        high = s * energy.attraction / conditioning.attraction[0];
      }
      // What a user can change so that the two ranges meet: with
      // P' = s P c^-q (q = m - 1, or 1 for the attraction) and c M in
      // [Mmin, Mmax], the problem's P at this mass lies in
      // [Pmin (Mmin/M)^q / s, Pmax (Mmax/M)^q / s], and its mass at this P in
      // [Mmin (Pmin / sP)^(1/q), Mmax (Pmax / sP)^(1/q)].
      const std::array<double, 2>& range = porous ? conditioning.diffusion : conditioning.attraction;
      const double value = porous ? energy.diffusion : energy.attraction;
      const double q = porous ? energy.exponent - 1 : 1;
      if (m.ranges.hasMasses() && mass > 0 && value > 0 && q > 0) {
        out.reach.parameter = porous ? "Diffusion" : "Attraction";
        out.reach.value = value;
        out.reach.low = range[0] * std::pow(m.ranges.massMin / mass, q) / s;
        out.reach.high = range[1] * std::pow(m.ranges.massMax / mass, q) / s;
        out.reach.massLow = m.ranges.massMin * std::pow(range[0] / (s * value), 1 / q);
        out.reach.massHigh = m.ranges.massMax * std::pow(range[1] / (s * value), 1 / q);
      }
      // Where the two ranges meet; else the parameter's range, nearest the
      // trained masses: the range checks on c rho then warn about the mass,
      // as for a c that the energy fixes.
      if (std::max(low, massLow) <= std::min(high, massHigh))
        c = std::clamp(c, std::max(low, massLow), std::min(high, massHigh));
      else if (low <= high)
        c = std::clamp(c, low, high);
    }
  }
  if (!std::isfinite(c) || !(c > 0)) c = 1;  // nothing relates the parts: sameAs below names the difference
  // What no scaling changes first (the parts, m, powers, centres), then the
  // scaled strengths.
  EnergySpec shape = energy;
  shape.diffusion = e0.diffusion;
  shape.potentialStrength = e0.potentialStrength;
  shape.wellDepth = e0.wellDepth;
  shape.attraction = e0.attraction;
  shape.repulsion = e0.repulsion;
  if (porous && conditioning.onExponent()) shape.exponent = e0.exponent;
  std::string difference;
  if (energy.potential != PotentialKind::Values && !shape.sameAs(e0, &difference, dim)) {
    out.difference = difference;
    return out;
  }
  // A conditioned operator steps the scaled energy itself where its
  // conditioned parameters lie in their ranges.
  const EnergySpec scaled = scaledEnergy(energy, s, c);
  EnergySpec compared = scaled;
  auto inside = [](double value, const std::array<double, 2>& range) {
    return value >= range[0] * (1 - 1e-9) && value <= range[1] * (1 + 1e-9);
  };
  if (conditioning.onDiffusion() && scaled.internal == e0.internal) {
    if (!inside(scaled.diffusion, conditioning.diffusion)) {
      out.difference = "D: " + number(scaled.diffusion) + " at the operator's tau, outside its range [" +
                       number(conditioning.diffusion[0]) + ", " + number(conditioning.diffusion[1]) + "]";
      return out;
    }
    compared.diffusion = e0.diffusion;
  }
  if (conditioning.onPotentialStrength() && scaled.potential == e0.potential) {
    const double ratio = scaled.potentialStrength[0] / e0.potentialStrength[0];
    for (int a = 1; a < dim; ++a)
      if (std::abs(scaled.potentialStrength[a] / e0.potentialStrength[a] - ratio) > 1e-9 * ratio) {
        out.difference = "potential strength: the axes are scaled unlike the operator's (" +
                         number(scaled.potentialStrength[0]) + " and " + number(scaled.potentialStrength[a]) + ")";
        return out;
      }
    if (!inside(scaled.potentialStrength[0], conditioning.potentialStrength)) {
      out.difference = "potential strength: " + number(scaled.potentialStrength[0]) +
                       " at the operator's tau, outside its range [" + number(conditioning.potentialStrength[0]) +
                       ", " + number(conditioning.potentialStrength[1]) + "]";
      return out;
    }
    compared.potentialStrength = e0.potentialStrength;
  }
  if (conditioning.onAttraction() && interaction) {
    if (!inside(scaled.attraction, conditioning.attraction)) {
      out.difference = "attraction A: " + number(scaled.attraction) +
                       " at the operator's tau and mass scale, outside its range [" +
                       number(conditioning.attraction[0]) + ", " + number(conditioning.attraction[1]) + "]";
      return out;
    }
    compared.attraction = e0.attraction;
  }
  if (porous && conditioning.onExponent()) {
    if (!inside(scaled.exponent, conditioning.exponent)) {
      out.difference = "exponent m: " + number(scaled.exponent) + ", outside the operator's range [" +
                       number(conditioning.exponent[0]) + ", " + number(conditioning.exponent[1]) + "]";
      return out;
    }
    compared.exponent = e0.exponent;
  }
  if (!compared.sameAs(e0, &difference, dim)) {
    out.difference = difference + (s != 1 || c != 1 ? " (at the operator's tau and mass scale)" : "");
    return out;
  }
  out.exact = true;
  out.conditioned = conditioning.any() && !scaled.sameAs(e0, nullptr, dim);
  if (out.conditioned) out.operatorEnergy = scaled;
  out.densityFactor = std::abs(c - 1) <= 1e-12 ? 1 : c;
  out.timeFactor = std::abs(s - 1) <= 1e-12 ? 1 : s;
  if (out.identity()) return out;
  std::ostringstream note;
  if (out.conditioned && out.densityFactor == 1 && out.timeFactor == 1) {
    note << "the operator, conditioned on its energy's parameters, steps " << energy.describe()
         << " (inside the ranges it was trained on)";
    out.note = note.str();
    return out;
  }
  note << "the step of " << energy.describe() << " at tau = " << number(tau);
  note << (out.densityFactor != 1 ? " is 1/c times" : " is");
  note << " the operator's step (" << (out.conditioned ? out.operatorEnergy : e0).describe()
       << (out.conditioned ? ", inside its conditioned ranges" : "") << ", tau = " << number(m.tau) << ")";
  if (out.densityFactor != 1) {
    note << " of c rho, c = " << number(out.densityFactor);
    if (mass > 0) note << " (mass " << number(mass * out.densityFactor) << ")";
  }
  note << ": exact, by the step's symmetries in time and density";
  if (massFree && out.densityFactor != 1)
    note << " (for entropy and potential energies the map does not depend on the mass)";
  if (scaleTaken && out.densityFactor != 1)
    note << (porous ? " (the porous medium's D, conditioned on, takes up the density's scale)"
                    : " (the attraction, conditioned on, takes up the density's scale)");
  out.note = note.str();
  return out;
}

std::string describeCoverage(const OperatorMetadata& m) {
  const EnergySpec& e = m.energy;
  const bool massFree = e.internal != InternalKind::PorousMedium && e.kernel == KernelKind::None;
  const bool masses = m.ranges.hasMasses();
  auto massBand = [&](double value, double power) {
    if (!masses) return "= " + number(value) + " M^" + number(power) + " at the trained masses";
    return "in [" + number(value * std::pow(m.ranges.massMin, power)) + ", " +
           number(value * std::pow(m.ranges.massMax, power)) + "]";
  };
  std::vector<std::string> groups;
  const Conditioning& k = m.conditioning;
  auto conditioned = [&](const std::array<double, 2>& range) {
    return "in [" + number(m.tau * range[0]) + ", " + number(m.tau * range[1]) + "]";
  };
  const bool massChosen = conditioningTakesUpMass(e, k);
  auto trainedMasses = [&] {
    return " at the trained masses" +
           (masses ? " [" + number(m.ranges.massMin) + ", " + number(m.ranges.massMax) + "]" : std::string());
  };
  if (e.internal == InternalKind::Entropy)
    groups.push_back("tau D " + (k.onDiffusion() ? conditioned(k.diffusion) : "= " + number(m.tau * e.diffusion)));
  if (e.internal == InternalKind::PorousMedium) {
    const std::string exponent = k.onExponent() ? "m in [" + number(k.exponent[0]) + ", " + number(k.exponent[1]) + "]"
                                                : "m = " + number(e.exponent);
    if (massChosen)
      groups.push_back("tau D " + conditioned(k.diffusion) + trainedMasses() +
                       ", other masses at the same tau D M^(m-1) (" + exponent + ")");
    else
      groups.push_back("tau D M^(m-1) " + massBand(m.tau * e.diffusion, e.exponent - 1) + " (" + exponent + ")");
  }
  if (e.potential == PotentialKind::Quadratic || e.potential == PotentialKind::DoubleWell) {
    std::string strengths;
    for (int a = 0; a < m.dim; ++a) {
      if (e.potential == PotentialKind::DoubleWell && a == 0) continue;
      strengths += (strengths.empty() ? "" : ", ") + number(m.tau * e.potentialStrength[a]);
    }
    if (k.onPotentialStrength())
      groups.push_back("tau a " + conditioned(k.potentialStrength) + " (the same on every axis)");
    else if (!strengths.empty())
      groups.push_back("tau a = " + strengths);
    if (e.potential == PotentialKind::DoubleWell) groups.push_back("tau (well depth) = " + number(m.tau * e.wellDepth));
  }
  if (e.potential == PotentialKind::Values) groups.push_back("the potential array at tau = " + number(m.tau));
  if (e.kernel != KernelKind::None && k.onAttraction() && massChosen) {
    groups.push_back("tau A " + conditioned(k.attraction) + trainedMasses() +
                     ", other masses at the same tau A M (A the attraction)");
  } else if (e.kernel != KernelKind::None) {
    groups.push_back("tau A M " + massBand(m.tau * e.attraction, 1) + " (A the attraction)");
    if (e.kernel == KernelKind::AttractiveRepulsive && e.repulsion != 0)
      groups.push_back("tau A / (tau R) = " + number(e.attraction / e.repulsion) + " (R the repulsion)");
  }
  std::ostringstream out;
  out << (k.any() ? "serves (trained over its conditioned ranges, and exactly through the step's symmetries in time "
                    "and density) every Time Step tau and energy parameters with "
                  : "serves, exactly (symmetries of the step in time and density), every Time Step tau and energy "
                    "parameters with ");
  for (size_t i = 0; i < groups.size(); ++i) out << (i ? "; " : "") << groups[i];
  out << (massFree     ? "; at any mass M (its map does not depend on the mass)"
          : massChosen ? "; M the density's mass (the operator steps c rho, c bringing M into the trained masses)"
                       : "; M the density's mass (the operator steps c rho, c fixed by the groups)");
  return out.str();
}

LearnedStep stepThroughSymmetry(const LearnedOperator& op, const StepSymmetry& symmetry, const at::Tensor& rho,
                                const Grid& grid, double correctionTolerance) {
  const double c = symmetry.densityFactor;
  // The tolerance is a relative L1 distance: the same for rho and c rho.
  LearnedStep step = op.step(c == 1 ? rho : rho * c, grid, symmetry.conditioned ? &symmetry.operatorEnergy : nullptr,
                             correctionTolerance);
  if (c != 1) step.next = step.next / c;
  // Same map u = tau0 v0; the problem's velocity is u / tau = v0 / s.
  if (symmetry.timeFactor != 1) step.velocity = step.velocity / symmetry.timeFactor;
  return step;
}

}  // namespace jko
