#include "numerics/ExactSolutions.h"

#include <cmath>

#include "numerics/Errors.h"

namespace jko::exact {
namespace {
constexpr double kPi = 3.14159265358979323846;

at::Tensor squaredDistance(const Grid& grid, const std::array<double, 3>& centre) {
  at::Tensor r2 = at::zeros(grid.shape(), at::kDouble);
  for (int a = 0; a < grid.dim; ++a) {
    const at::Tensor offset = grid.coordinate(a) - centre[a];
    r2 = r2 + offset * offset;
  }
  return r2;
}

// Integral of (1 - |z|^2)_+^p over R^d.
double unitProfileMass(int dim, double p) {
  return std::pow(kPi, 0.5 * dim) * std::tgamma(p + 1) / std::tgamma(p + 1 + 0.5 * dim);
}
}  // namespace

at::Tensor density(const Grid& grid, const Gaussian& g) {
  at::Tensor exponent = at::zeros(grid.shape(), at::kDouble);
  double normalisation = g.mass;
  for (int a = 0; a < grid.dim; ++a) {
    const at::Tensor z = (grid.coordinate(a) - g.mean[a]) / g.sigma[a];
    exponent = exponent - 0.5 * z * z;
    normalisation /= std::sqrt(2 * kPi) * g.sigma[a];
  }
  return normalisation * at::exp(exponent);
}

Gaussian fokkerPlanckStep(const Gaussian& g, int dim, const std::array<double, 3>& a, const std::array<double, 3>& b,
                          double D, double tau) {
  Gaussian next = g;
  for (int k = 0; k < dim; ++k) {
    const double c = 1 + a[k] * tau;
    next.mean[k] = b[k] + (g.mean[k] - b[k]) / c;
    next.sigma[k] = (g.sigma[k] + std::sqrt(g.sigma[k] * g.sigma[k] + 4 * c * D * tau)) / (2 * c);
  }
  return next;
}

Gaussian quadraticInteractionStep(const Gaussian& g, int dim, double c, double D, double tau) {
  const double a = c * g.mass;
  return fokkerPlanckStep(g, dim, {a, a, a}, g.mean, D, tau);
}

at::Tensor gaussianDisplacement(const Grid& grid, const Gaussian& from, const Gaussian& to) {
  std::vector<at::Tensor> components;
  for (int a = 0; a < grid.dim; ++a) {
    const at::Tensor x = grid.coordinate(a);
    components.push_back(to.mean[a] + (to.sigma[a] / from.sigma[a]) * (x - from.mean[a]) - x);
  }
  return at::stack(components, 0);
}

at::Tensor density(const Grid& grid, const BarenblattProfile& p) {
  const at::Tensor base = (p.A - p.q * squaredDistance(grid, p.centre)).clamp_min(0);
  return p.m == 2 ? base : base.pow(1.0 / (p.m - 1));
}

double mass(const BarenblattProfile& p, int dim) {
  const double exponent = 1.0 / (p.m - 1);
  return std::pow(p.A, exponent) * std::pow(p.A / p.q, 0.5 * dim) * unitProfileMass(dim, exponent);
}

double barenblattDilation(const BarenblattProfile& p, int dim, double D, double tau) {
  const double c = 2 * p.m * p.q * D * tau / (p.m - 1);
  const double power = dim * (p.m - 1) + 1;
  // f(lambda) = lambda - 1 - c lambda^-power is increasing; Newton from 1 + c.
  double lambda = 1 + c;
  for (int i = 0; i < 100; ++i) {
    const double f = lambda - 1 - c * std::pow(lambda, -power);
    const double df = 1 + c * power * std::pow(lambda, -power - 1);
    const double next = lambda - f / df;
    if (std::abs(next - lambda) < 1e-15 * lambda) return next;
    lambda = next;
  }
  return lambda;
}

BarenblattProfile barenblattStep(const BarenblattProfile& p, int dim, double D, double tau) {
  const double lambda = barenblattDilation(p, dim, D, tau);
  BarenblattProfile next = p;
  next.A = p.A * std::pow(lambda, -dim * (p.m - 1));
  next.q = p.q * std::pow(lambda, -(dim * (p.m - 1) + 2));
  return next;
}

at::Tensor dilationDisplacement(const Grid& grid, const std::array<double, 3>& centre, double lambda) {
  std::vector<at::Tensor> components;
  for (int a = 0; a < grid.dim; ++a) components.push_back((lambda - 1) * (grid.coordinate(a) - centre[a]));
  return at::stack(components, 0);
}

BarenblattProfile barenblattSolution(double t, double totalMass, int dim, double m,
                                     const std::array<double, 3>& centre) {
  if (!(t > 0)) throw InvalidParameter("Barenblatt time", formatValue(t), "must be > 0");
  if (!(totalMass > 0)) throw InvalidParameter("mass", formatValue(totalMass), "must be > 0");
  if (!(m > 1)) throw InvalidParameter("m", formatValue(m), "the porous-medium exponent must be > 1");
  const double alpha = dim / (dim * (m - 1) + 2), beta = alpha / dim, k = (m - 1) * beta / (2 * m);
  const double exponent = 1.0 / (m - 1);
  // mass = C^(1/(m-1) + d/2) k^(-d/2) * int (1 - |z|^2)_+^(1/(m-1)) dz.
  const double C =
      std::pow(totalMass * std::pow(k, 0.5 * dim) / unitProfileMass(dim, exponent), 1.0 / (exponent + 0.5 * dim));
  BarenblattProfile p;
  p.m = m;
  p.centre = centre;
  p.A = C * std::pow(t, -alpha * (m - 1));
  p.q = k * std::pow(t, -alpha * (m - 1) - 2 * beta);
  return p;
}

}  // namespace jko::exact
