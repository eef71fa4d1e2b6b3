// Energies of Wasserstein gradient flows (DESIGN.md §2.1):
//   E(rho) = int U(rho) + int V rho + 1/2 int int W(x - y) rho(x) rho(y),
// discretised on the nodes of a Grid as sums times the cell volume |h|.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <limits>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "numerics/Grid.h"

namespace jko {

enum class InternalKind { None, Entropy, PorousMedium };
enum class PotentialKind { None, Quadratic, DoubleWell, Values };
enum class KernelKind { None, Quadratic, AttractiveRepulsive, KellerSegel };

/// What an energy is made of. Presets fill it; every field can be set.
struct EnergySpec {
  std::string preset = "custom";

  /// Internal energy: U(r) = D r log r (Entropy) or U(r) = D r^m / (m - 1).
  InternalKind internal = InternalKind::None;
  double diffusion = 0;  ///< D
  double exponent = 2;   ///< m (porous medium)

  /// Potential V. Quadratic: sum_k a_k (x_k - b_k)^2 / 2. DoubleWell:
  /// depth ((x_0 - b_0)^2 / w^2 - 1)^2 + sum_{k>0} a_k (x_k - b_k)^2 / 2.
  /// Values: given on the grid nodes (potentialValues). A NaN centre means
  /// the centre of the box.
  PotentialKind potential = PotentialKind::None;
  std::array<double, 3> potentialStrength{1, 1, 1};  ///< a_k
  std::array<double, 3> potentialCentre{std::numeric_limits<double>::quiet_NaN(),
                                        std::numeric_limits<double>::quiet_NaN(),
                                        std::numeric_limits<double>::quiet_NaN()};  ///< b_k
  double wellDepth = 1;
  double wellHalfWidth = 0.25;
  at::Tensor potentialValues;  ///< shape of the grid, float64 (PotentialKind::Values)

  /// Interaction kernel W. Quadratic: c |z|^2 / 2. AttractiveRepulsive:
  /// c_a |z|^p / p - c_r |z|^q / q, with q = 0 meaning log|z|.
  /// KellerSegel (2D): c log|z| / (2 pi).
  KernelKind kernel = KernelKind::None;
  double attraction = 1;       ///< c, c_a
  double repulsion = 1;        ///< c_r
  double attractivePower = 2;  ///< p
  double repulsivePower = 0;   ///< q

  /// Floor of the clamped log of the entropy (DESIGN.md §2.2: vacuum).
  double logFloor = 1e-12;

  static EnergySpec fokkerPlanck(double D = 0.1, double a = 20);
  static EnergySpec heat(double D);
  static EnergySpec porousMedium(double m = 2, double D = 1);
  static EnergySpec aggregation(double attraction = 20, double repulsion = 1);
  static EnergySpec aggregationDiffusion(double D = 0.1, double attraction = 20);
  /// 2D Keller-Segel: D rho log rho + (c / (2 pi)) log|x - y|; mass above
  /// 8 pi D / c concentrates, below it spreads (DESIGN.md §5 case 5).
  static EnergySpec kellerSegel(double D = 0.1, double chemotaxis = 1);
  /// "fokker-planck", "porous-medium", "aggregation", "aggregation-diffusion",
  /// "keller-segel" (2D).
  static EnergySpec fromPreset(const std::string& name);

  /// Throws InvalidParameter naming the offending parameter.
  void validate(int dim) const;
  /// Parameters that define the energy (not potentialValues, see potentialHash).
  nlohmann::json toJson() const;
  static EnergySpec fromJson(const nlohmann::json& json);
  /// A one-line description, e.g. "porous medium (m=2, D=1)".
  std::string describe() const;
  /// FNV-1a hash of the potential values on the grid ("" when analytic).
  std::string potentialHash() const;
  /// Whether two specs define the same energy in `dim` dimensions (per-axis
  /// potential parameters beyond them do not count); `difference` says what differs.
  bool sameAs(const EnergySpec& other, std::string* difference = nullptr, int dim = 3) const;
};

std::string toString(InternalKind kind);
std::string toString(PotentialKind kind);
std::string toString(KernelKind kind);
PotentialKind potentialKindFromString(const std::string& name);
KernelKind kernelKindFromString(const std::string& name);

/// W(z) of `spec`'s kernel for a distance |z| > 0.
double interactionKernel(const EnergySpec& spec, double distance);
/// Mean of W over the cell [-h/2, h/2]^d around z = 0 (finite where W is
/// singular at 0: log and negative powers).
double interactionKernelCellAverageAtZero(const EnergySpec& spec, const Grid& grid);
/// Planes [lo, hi) along the first axis of W on the zero-padded grid of
/// 2 n_a nodes per axis (offsets i h for i < n_a, (i - 2 n_a) h above; the
/// cell average at offset 0, nothing at offset n_a): the table whose
/// transform the convolution multiplies by (Energy::convolve, and split
/// over ranks in parallel/SlabConvolution).
at::Tensor paddedInteractionKernel(const EnergySpec& spec, const Grid& grid, int64_t lo, int64_t hi);

/// Per-sample values of the three parts, each of shape (B,).
struct EnergyParts {
  at::Tensor internal, potential, interaction;
  at::Tensor total() const { return internal + potential + interaction; }
};

/// An energy bound to a grid: evaluates E and its first variation on batched
/// densities (B, n0, n1[, n2]), differentiably.
class Energy {
 public:
  Energy(EnergySpec spec, Grid grid);

  const EnergySpec& spec() const { return spec_; }
  const Grid& grid() const { return grid_; }

  at::Tensor operator()(const at::Tensor& rho) const { return parts(rho).total(); }
  EnergyParts parts(const at::Tensor& rho) const { return parts(rho, at::Tensor()); }
  /// The same with `convolved` = convolve(rho) computed by the caller
  /// (undefined: computed here), for callers that need W * rho too.
  EnergyParts parts(const at::Tensor& rho, const at::Tensor& convolved) const;
  /// delta E / delta rho = U'(rho) + V + W * rho on the nodes.
  at::Tensor firstVariation(const at::Tensor& rho) const;
  /// U'(rho), the internal energy's part of the first variation.
  at::Tensor internalVariation(const at::Tensor& rho) const;

  /// V on the nodes (float64, shape of the grid); undefined when there is none.
  at::Tensor potentialOnGrid(const at::Device& device = at::kCPU) const;

  /// The minimiser of E among densities of total mass `mass` on this grid,
  /// where it has a closed form (DESIGN.md §5 case 5): for D rho log rho + V
  /// the Gibbs density M exp(-V/D) / Z, for D rho^m/(m-1) + V the profile
  /// ((m-1)/(D m) (C - V))_+^(1/(m-1)) with C fixed by the mass, uniform
  /// without a potential. Computed without overflow or underflow whatever
  /// V/D. Undefined (no closed form) with an interaction kernel, without an
  /// internal energy or with D = 0. Float64 CPU, shape of the grid.
  at::Tensor equilibrium(double mass) const;
  /// (W * rho)_j = sum_k W(x_j - x_k) rho_k |h|: for the quadratic kernel
  /// by the density's moments, otherwise by zero-padded FFT.
  at::Tensor convolve(const at::Tensor& rho) const;
  /// W(z) for a distance |z| > 0 (exposed for tests).
  double kernel(double distance) const;
  /// Mean of W over the cell [-h/2, h/2]^d around z = 0.
  double kernelCellAverageAtZero() const;

 private:
  at::Tensor onDevice(const at::Tensor& cpu, const at::Device& device) const;
  at::Tensor quadraticBasis(const at::Device& device) const;

  EnergySpec spec_;
  Grid grid_;
  at::Tensor potential_;       ///< float64 CPU
  at::Tensor kernelSpectrum_;  ///< rfftn of the padded kernel times |h|, CPU (not quadratic)
  mutable std::mutex cacheMutex_;
  mutable at::Tensor potentialDevice_, kernelSpectrumDevice_;
  /// Quadratic kernel, built on first use under autograd or on another
  /// device: the basis P and the weights Q of the moment form
  /// (W * rho = (rho Q^T) P), shape (2, d + 2, N), float64 on that device.
  mutable at::Tensor quadraticBasis_;
};

}  // namespace jko
