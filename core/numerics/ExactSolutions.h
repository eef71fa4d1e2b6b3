// Exact answers of DESIGN.md §5, used as test oracles and in the evaluation.
#pragma once

#include <ATen/ATen.h>

#include <array>

#include "numerics/Grid.h"

namespace jko::exact {

/// mass * N(mean, diag(sigma^2)), sampled at the nodes.
struct Gaussian {
  std::array<double, 3> mean{0.5, 0.5, 0.5};
  std::array<double, 3> sigma{0.1, 0.1, 0.1};
  double mass = 1;
};

at::Tensor density(const Grid& grid, const Gaussian& gaussian);

/// One JKO step of E = int sum_k a_k (x_k - b_k)^2 / 2 rho + D int rho log rho
/// from a Gaussian (DESIGN.md §5 case 1, per axis):
///   mu' = b + (mu - b) / (1 + a tau),
///   s = (sigma + sqrt(sigma^2 + 4 (1 + a tau) D tau)) / (2 (1 + a tau)).
Gaussian fokkerPlanckStep(const Gaussian& gaussian, int dim, const std::array<double, 3>& a,
                          const std::array<double, 3>& b, double D, double tau);

/// One JKO step of the quadratic interaction c|z|^2/2 plus diffusion D (case 2):
/// case 1 with a = c M and b the centre of mass.
Gaussian quadraticInteractionStep(const Gaussian& gaussian, int dim, double c, double D, double tau);

/// The optimal map of a step between two Gaussians, T(x) = mu' + (s/sigma)(x - mu),
/// as a displacement T(x) - x on the nodes, (dim, n...).
at::Tensor gaussianDisplacement(const Grid& grid, const Gaussian& from, const Gaussian& to);

/// rho = (A - q |x - x0|^2)_+^(1/(m-1)), the porous-medium profile of case 3.
struct BarenblattProfile {
  double A = 1, q = 1, m = 2;
  std::array<double, 3> centre{0.5, 0.5, 0.5};
};

at::Tensor density(const Grid& grid, const BarenblattProfile& profile);
double mass(const BarenblattProfile& profile, int dim);

/// The dilation factor lambda > 1 of one JKO step of D rho^m/(m-1) from the
/// profile: lambda - 1 = (2 m q D tau / (m - 1)) lambda^-(d(m-1)+1).
double barenblattDilation(const BarenblattProfile& profile, int dim, double D, double tau);

/// The profile after that step: the dilation by lambda with mass kept,
/// A' = A lambda^-d(m-1), q' = q lambda^-(d(m-1)+2).
BarenblattProfile barenblattStep(const BarenblattProfile& profile, int dim, double D, double tau);

/// The dilation map's displacement (lambda - 1)(x - x0), (dim, n...).
at::Tensor dilationDisplacement(const Grid& grid, const std::array<double, 3>& centre, double lambda);

/// The Barenblatt solution of rho_t = Lap rho^m at time t > 0 with the given
/// mass, centred at `centre`:
///   rho = t^-alpha (C - k |x|^2 t^(-2 beta))_+^(1/(m-1)),
///   alpha = d / (d(m-1)+2), beta = alpha / d, k = (m-1) beta / (2m).
BarenblattProfile barenblattSolution(double t, double mass, int dim, double m, const std::array<double, 3>& centre);

}  // namespace jko::exact
