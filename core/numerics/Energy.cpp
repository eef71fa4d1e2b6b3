#include "numerics/Energy.h"

#include <ATen/core/grad_mode.h>

#include <array>
#include <cmath>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "numerics/Errors.h"

namespace jko {
namespace {

constexpr double kPi = 3.14159265358979323846;

at::Tensor sumOverGrid(const at::Tensor& values) { return values.flatten(1).sum(1); }

bool sameNumber(double a, double b) {
  if (std::isnan(a) && std::isnan(b)) return true;
  return std::abs(a - b) <= 1e-12 * std::max({1.0, std::abs(a), std::abs(b)});
}

nlohmann::json numberOrNull(double value) {
  return std::isnan(value) ? nlohmann::json(nullptr) : nlohmann::json(value);
}

double numberFromJson(const nlohmann::json& json) {
  return json.is_null() ? std::numeric_limits<double>::quiet_NaN() : json.get<double>();
}

// 8-point Gauss-Legendre nodes and weights on [-1, 1].
constexpr std::array<double, 8> kGaussNodes{-0.9602898564975363, -0.7966664774136267, -0.5255324099163290,
                                            -0.1834346424956498, 0.1834346424956498,  0.5255324099163290,
                                            0.7966664774136267,  0.9602898564975363};
constexpr std::array<double, 8> kGaussWeights{0.1012285362903763, 0.2223810344533745, 0.3137066458778873,
                                              0.3626837833783620, 0.3626837833783620, 0.3137066458778873,
                                              0.2223810344533745, 0.1012285362903763};

// Integral of f(|z|) over the box prod_a [lower_a, lower_a + size_a] by tensor Gauss-Legendre.
double gaussBox(const std::function<double(double)>& f, int dim, const std::array<double, 3>& lower,
                const std::array<double, 3>& size) {
  double total = 0;
  const int count = dim == 2 ? 64 : 512;
  for (int q = 0; q < count; ++q) {
    int rest = q;
    double weight = 1, r2 = 0;
    for (int a = 0; a < dim; ++a) {
      const int k = rest % 8;
      rest /= 8;
      const double x = lower[a] + 0.5 * size[a] * (kGaussNodes[k] + 1);
      weight *= 0.5 * size[a] * kGaussWeights[k];
      r2 += x * x;
    }
    total += weight * f(std::sqrt(r2));
  }
  return total;
}

// Integral of f(|z|) over prod_a [0, size_a] with f integrably singular at the
// corner z = 0: the corner sub-box is refined dyadically, the others are
// smooth enough for Gauss-Legendre.
double cornerSingularIntegral(const std::function<double(double)>& f, int dim, std::array<double, 3> size, int depth) {
  double total = 0;
  for (int level = 0; level < depth; ++level) {
    std::array<double, 3> half{0.5 * size[0], 0.5 * size[1], 0.5 * size[2]};
    for (int corner = 1; corner < (1 << dim); ++corner) {
      std::array<double, 3> lower{0, 0, 0};
      for (int a = 0; a < dim; ++a)
        if (corner & (1 << a)) lower[a] = half[a];
      total += gaussBox(f, dim, lower, half);
    }
    size = half;
  }
  return total;
}

// Node coordinates per axis about the box centre (the three terms of the
// quadratic kernel's expansion stay of the size of the result), and one
// entry for an axis the grid does not have.
std::array<std::vector<double>, 3> centredCoordinates(const Grid& grid) {
  std::array<std::vector<double>, 3> x;
  for (int a = 0; a < 3; ++a) {
    const int64_t n = a < grid.dim ? grid.n[a] : 1;
    const double centre = a < grid.dim ? 0.5 * (grid.boxLower(a) + grid.boxUpper(a)) : 0.0;
    x[a].resize(n);
    for (int64_t i = 0; i < n; ++i) x[a][i] = a < grid.dim ? grid.origin[a] + i * grid.spacing[a] - centre : 0.0;
  }
  return x;
}

// The moments sum_k rho_k (1, x_k, |x_k|^2) of one density (without |h|).
struct QuadraticMoments {
  double M = 0, m2 = 0;
  std::array<double, 3> m1{0, 0, 0};
};

QuadraticMoments quadraticMoments(const std::array<std::vector<double>, 3>& x, const double* r) {
  const int64_t n0 = x[0].size(), n1 = x[1].size(), n2 = x[2].size();
  QuadraticMoments m;
  for (int64_t i = 0, k = 0; i < n0; ++i) {
    for (int64_t j = 0; j < n1; ++j) {
      // The line along the last axis, then its share of each moment.
      double line = 0, lineX = 0, lineX2 = 0;
      for (int64_t l = 0; l < n2; ++l, ++k) {
        line += r[k];
        lineX += r[k] * x[2][l];
        lineX2 += r[k] * x[2][l] * x[2][l];
      }
      m.M += line;
      m.m1[0] += line * x[0][i];
      m.m1[1] += line * x[1][j];
      m.m1[2] += lineX;
      m.m2 += line * (x[0][i] * x[0][i] + x[1][j] * x[1][j]) + lineX2;
    }
  }
  return m;
}

// Whether the quadratic kernel's hand loops below apply: a CPU tensor
// outside autograd (else the basis products, differentiable on any device).
bool momentLoopsApply(const at::Tensor& rho) {
  return rho.is_cpu() && !(rho.requires_grad() && at::GradMode::is_enabled());
}

// The moment form of the quadratic kernel's convolution (Energy::convolve)
// on CPU float64 densities (B, N), contiguous: one pass over each density
// for M, m_1, m_2 and one over the result, with the centred coordinates
// made per axis on the fly instead of read from the basis.
at::Tensor quadraticConvolution(const Grid& grid, double attraction, const at::Tensor& rho) {
  const std::array<std::vector<double>, 3> x = centredCoordinates(grid);
  const int64_t n0 = x[0].size(), n1 = x[1].size(), n2 = x[2].size(), N = n0 * n1 * n2;
  const double volume = grid.cellVolume();
  at::Tensor out = at::empty_like(rho);
  for (int64_t b = 0; b < rho.size(0); ++b) {
    const QuadraticMoments m = quadraticMoments(x, rho.data_ptr<double>() + b * N);
    const double half = 0.5 * attraction * volume;
    double* o = out.data_ptr<double>() + b * N;
    for (int64_t i = 0, k = 0; i < n0; ++i) {
      for (int64_t j = 0; j < n1; ++j) {
        const double partial =
            m.M * (x[0][i] * x[0][i] + x[1][j] * x[1][j]) + m.m2 - 2 * (m.m1[0] * x[0][i] + m.m1[1] * x[1][j]);
        for (int64_t l = 0; l < n2; ++l, ++k) o[k] = half * (partial + m.M * x[2][l] * x[2][l] - 2 * m.m1[2] * x[2][l]);
      }
    }
  }
  return out;
}

// (1/2) sum_j (W * rho)_j rho_j |h| for W = c |z|^2 / 2, per density (B,):
// with the moments taken with |h|, c/2 (M m_2 - |m_1|^2), one pass over
// the density and no field (the line search's evaluations need only the
// value).
at::Tensor quadraticInteractionEnergy(const Grid& grid, double attraction, const at::Tensor& rho) {
  const std::array<std::vector<double>, 3> x = centredCoordinates(grid);
  const int64_t N = rho.size(1);
  const double volume = grid.cellVolume();
  at::Tensor out = at::empty({rho.size(0)}, rho.options());
  for (int64_t b = 0; b < rho.size(0); ++b) {
    const QuadraticMoments m = quadraticMoments(x, rho.data_ptr<double>() + b * N);
    const double spread = m.M * m.m2 - (m.m1[0] * m.m1[0] + m.m1[1] * m.m1[1] + m.m1[2] * m.m1[2]);
    out.data_ptr<double>()[b] = 0.5 * attraction * volume * volume * spread;
  }
  return out;
}

}  // namespace

std::string toString(InternalKind kind) {
  switch (kind) {
    case InternalKind::Entropy:
      return "entropy";
    case InternalKind::PorousMedium:
      return "porous-medium";
    default:
      return "none";
  }
}

std::string toString(PotentialKind kind) {
  switch (kind) {
    case PotentialKind::Quadratic:
      return "quadratic";
    case PotentialKind::DoubleWell:
      return "double-well";
    case PotentialKind::Values:
      return "values";
    default:
      return "none";
  }
}

std::string toString(KernelKind kind) {
  switch (kind) {
    case KernelKind::Quadratic:
      return "quadratic";
    case KernelKind::AttractiveRepulsive:
      return "attractive-repulsive";
    case KernelKind::KellerSegel:
      return "keller-segel";
    default:
      return "none";
  }
}

PotentialKind potentialKindFromString(const std::string& name) {
  for (auto kind : {PotentialKind::None, PotentialKind::Quadratic, PotentialKind::DoubleWell, PotentialKind::Values})
    if (toString(kind) == name) return kind;
  throw InvalidParameter("potential", name, "allowed: none, quadratic, double-well, values");
}

KernelKind kernelKindFromString(const std::string& name) {
  for (auto kind : {KernelKind::None, KernelKind::Quadratic, KernelKind::AttractiveRepulsive, KernelKind::KellerSegel})
    if (toString(kind) == name) return kind;
  throw InvalidParameter("kernel", name, "allowed: none, quadratic, attractive-repulsive, keller-segel");
}

EnergySpec EnergySpec::fokkerPlanck(double D, double a) {
  EnergySpec spec;
  spec.preset = "fokker-planck";
  spec.internal = InternalKind::Entropy;
  spec.diffusion = D;
  spec.potential = PotentialKind::Quadratic;
  spec.potentialStrength = {a, a, a};
  return spec;
}

EnergySpec EnergySpec::heat(double D) {
  EnergySpec spec;
  spec.preset = "fokker-planck";
  spec.internal = InternalKind::Entropy;
  spec.diffusion = D;
  return spec;
}

EnergySpec EnergySpec::porousMedium(double m, double D) {
  EnergySpec spec;
  spec.preset = "porous-medium";
  spec.internal = InternalKind::PorousMedium;
  spec.diffusion = D;
  spec.exponent = m;
  return spec;
}

EnergySpec EnergySpec::aggregation(double attraction, double repulsion) {
  EnergySpec spec;
  spec.preset = "aggregation";
  spec.kernel = KernelKind::AttractiveRepulsive;
  spec.attraction = attraction;
  spec.repulsion = repulsion;
  spec.attractivePower = 2;
  spec.repulsivePower = 0;
  return spec;
}

EnergySpec EnergySpec::aggregationDiffusion(double D, double attraction) {
  EnergySpec spec;
  spec.preset = "aggregation-diffusion";
  spec.internal = InternalKind::Entropy;
  spec.diffusion = D;
  spec.kernel = KernelKind::Quadratic;
  spec.attraction = attraction;
  return spec;
}

EnergySpec EnergySpec::kellerSegel(double D, double chemotaxis) {
  EnergySpec spec;
  spec.preset = "keller-segel";
  spec.internal = InternalKind::Entropy;
  spec.diffusion = D;
  spec.kernel = KernelKind::KellerSegel;
  spec.attraction = chemotaxis;
  return spec;
}

EnergySpec EnergySpec::fromPreset(const std::string& name) {
  if (name == "fokker-planck") return fokkerPlanck();
  if (name == "porous-medium") return porousMedium();
  if (name == "aggregation") return aggregation();
  if (name == "aggregation-diffusion") return aggregationDiffusion();
  if (name == "keller-segel") return kellerSegel();
  throw InvalidParameter("energy", name,
                         "allowed presets: fokker-planck, porous-medium, aggregation, aggregation-diffusion, "
                         "keller-segel");
}

void EnergySpec::validate(int dim) const {
  auto finite = [](const std::string& name, double value) {
    if (!std::isfinite(value)) throw InvalidParameter(name, formatValue(value), "must be a finite number");
  };
  finite("D", diffusion);
  if (internal != InternalKind::None && diffusion < 0)
    throw InvalidParameter("D", formatValue(diffusion), "the diffusion coefficient must be >= 0");
  if (internal == InternalKind::PorousMedium && !(exponent > 1))
    throw InvalidParameter("m", formatValue(exponent), "the porous-medium exponent must be > 1");
  if (internal == InternalKind::Entropy && !(logFloor > 0))
    throw InvalidParameter("log floor", formatValue(logFloor), "must be > 0");
  if (potential == PotentialKind::Quadratic || potential == PotentialKind::DoubleWell) {
    for (int a = 0; a < dim; ++a) {
      finite("potential strength", potentialStrength[a]);
      if (!std::isnan(potentialCentre[a])) finite("potential centre", potentialCentre[a]);
    }
  }
  if (potential == PotentialKind::DoubleWell) {
    finite("well depth", wellDepth);
    if (!(wellHalfWidth > 0)) throw InvalidParameter("well half-width", formatValue(wellHalfWidth), "must be > 0");
  }
  if (potential == PotentialKind::Values && !potentialValues.defined())
    throw InvalidParameter("potential values", "none", "a potential of kind 'values' needs an array on the grid");
  if (kernel != KernelKind::None) {
    finite("attraction", attraction);
    finite("repulsion", repulsion);
    if (attraction < 0) throw InvalidParameter("attraction", formatValue(attraction), "must be >= 0");
  }
  if (kernel == KernelKind::AttractiveRepulsive) {
    if (repulsion < 0) throw InvalidParameter("repulsion", formatValue(repulsion), "must be >= 0");
    if (!(attractivePower > repulsivePower))
      throw InvalidParameter("attractive power", formatValue(attractivePower),
                             "must exceed the repulsive power " + formatValue(repulsivePower));
    if (!(repulsivePower > -dim))
      throw InvalidParameter("repulsive power", formatValue(repulsivePower),
                             "must be > -" + std::to_string(dim) + " so that the kernel is integrable");
    if (!(attractivePower > -dim))
      throw InvalidParameter("attractive power", formatValue(attractivePower), "must be > -" + std::to_string(dim));
  }
  if (kernel == KernelKind::KellerSegel && dim != 2)
    throw InvalidParameter("kernel", "keller-segel", "the Keller-Segel log kernel is defined in 2D only");
}

nlohmann::json EnergySpec::toJson() const {
  nlohmann::json json;
  json["preset"] = preset;
  json["internal"] = {{"kind", toString(internal)}, {"D", diffusion}, {"m", exponent}, {"log_floor", logFloor}};
  json["potential"] = {
      {"kind", toString(potential)},
      {"strength", std::vector<double>(potentialStrength.begin(), potentialStrength.end())},
      {"centre",
       {numberOrNull(potentialCentre[0]), numberOrNull(potentialCentre[1]), numberOrNull(potentialCentre[2])}},
      {"well_depth", wellDepth},
      {"well_half_width", wellHalfWidth},
      {"values_hash", potentialHash()}};
  json["kernel"] = {{"kind", toString(kernel)},
                    {"attraction", attraction},
                    {"repulsion", repulsion},
                    {"attractive_power", attractivePower},
                    {"repulsive_power", repulsivePower}};
  return json;
}

EnergySpec EnergySpec::fromJson(const nlohmann::json& json) {
  EnergySpec spec;
  spec.preset = json.at("preset").get<std::string>();
  const auto& internal = json.at("internal");
  const std::string internalKind = internal.at("kind").get<std::string>();
  spec.internal = internalKind == "entropy"         ? InternalKind::Entropy
                  : internalKind == "porous-medium" ? InternalKind::PorousMedium
                                                    : InternalKind::None;
  spec.diffusion = internal.at("D").get<double>();
  spec.exponent = internal.at("m").get<double>();
  spec.logFloor = internal.value("log_floor", spec.logFloor);
  const auto& potential = json.at("potential");
  spec.potential = potentialKindFromString(potential.at("kind").get<std::string>());
  for (int a = 0; a < 3; ++a) {
    spec.potentialStrength[a] = potential.at("strength").at(a).get<double>();
    spec.potentialCentre[a] = numberFromJson(potential.at("centre").at(a));
  }
  spec.wellDepth = potential.at("well_depth").get<double>();
  spec.wellHalfWidth = potential.at("well_half_width").get<double>();
  const auto& kernel = json.at("kernel");
  spec.kernel = kernelKindFromString(kernel.at("kind").get<std::string>());
  spec.attraction = kernel.at("attraction").get<double>();
  spec.repulsion = kernel.at("repulsion").get<double>();
  spec.attractivePower = kernel.at("attractive_power").get<double>();
  spec.repulsivePower = kernel.at("repulsive_power").get<double>();
  return spec;
}

std::string EnergySpec::describe() const {
  std::ostringstream out;
  out << preset << " (";
  std::string sep;
  if (internal == InternalKind::Entropy) out << sep << "D rho log rho, D=" << diffusion, sep = "; ";
  if (internal == InternalKind::PorousMedium)
    out << sep << "D rho^m/(m-1), m=" << exponent << ", D=" << diffusion, sep = "; ";
  if (potential == PotentialKind::Quadratic) {
    // a_k per axis where they differ (an anisotropic potential), so that two
    // specs that describe alike are alike.
    const auto& a = potentialStrength;
    out << sep << "quadratic potential a=";
    if (a[0] == a[1] && a[1] == a[2])
      out << a[0];
    else
      out << "(" << a[0] << ", " << a[1] << ", " << a[2] << ") along x, y, z";
    sep = "; ";
  }
  if (potential == PotentialKind::DoubleWell) out << sep << "double-well potential", sep = "; ";
  if (potential == PotentialKind::Values) out << sep << "potential from an array", sep = "; ";
  if (kernel == KernelKind::Quadratic) out << sep << "quadratic interaction c=" << attraction, sep = "; ";
  if (kernel == KernelKind::AttractiveRepulsive)
    out << sep << "interaction " << attraction << "|z|^" << attractivePower << "/" << attractivePower << " - "
        << repulsion << (repulsivePower == 0 ? " log|z|" : " |z|^q/q, q=" + formatValue(repulsivePower)),
        sep = "; ";
  if (kernel == KernelKind::KellerSegel) out << sep << "Keller-Segel kernel c=" << attraction, sep = "; ";
  out << ")";
  return out.str();
}

std::string EnergySpec::potentialHash() const {
  if (potential != PotentialKind::Values || !potentialValues.defined()) return "";
  const at::Tensor values = potentialValues.to(at::kCPU, at::kDouble).contiguous();
  uint64_t hash = 1469598103934665603ull;  // FNV-1a, 64 bit
  const auto* bytes = reinterpret_cast<const unsigned char*>(values.data_ptr<double>());
  for (size_t i = 0; i < static_cast<size_t>(values.numel()) * sizeof(double); ++i) {
    hash ^= bytes[i];
    hash *= 1099511628211ull;
  }
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(hash));
  return text;
}

bool EnergySpec::sameAs(const EnergySpec& other, std::string* difference, int dim) const {
  auto differ = [&](const std::string& what, const std::string& mine, const std::string& theirs) {
    if (difference) *difference = what + ": " + mine + " vs " + theirs;
    return false;
  };
  if (internal != other.internal) return differ("internal energy", toString(internal), toString(other.internal));
  if (internal != InternalKind::None && !sameNumber(diffusion, other.diffusion))
    return differ("D", formatValue(diffusion), formatValue(other.diffusion));
  if (internal == InternalKind::PorousMedium && !sameNumber(exponent, other.exponent))
    return differ("m", formatValue(exponent), formatValue(other.exponent));
  if (potential != other.potential) return differ("potential", toString(potential), toString(other.potential));
  if (potential == PotentialKind::Quadratic || potential == PotentialKind::DoubleWell) {
    for (int a = 0; a < dim; ++a) {
      if (!sameNumber(potentialStrength[a], other.potentialStrength[a]))
        return differ("potential strength", formatValue(potentialStrength[a]), formatValue(other.potentialStrength[a]));
      if (!sameNumber(potentialCentre[a], other.potentialCentre[a]))
        return differ("potential centre", formatValue(potentialCentre[a]), formatValue(other.potentialCentre[a]));
    }
  }
  if (potential == PotentialKind::DoubleWell &&
      (!sameNumber(wellDepth, other.wellDepth) || !sameNumber(wellHalfWidth, other.wellHalfWidth)))
    return differ("double well", formatValue(wellDepth) + "/" + formatValue(wellHalfWidth),
                  formatValue(other.wellDepth) + "/" + formatValue(other.wellHalfWidth));
  if (potential == PotentialKind::Values && potentialHash() != other.potentialHash())
    return differ("potential values (hash)", potentialHash(), other.potentialHash());
  if (kernel != other.kernel) return differ("interaction kernel", toString(kernel), toString(other.kernel));
  if (kernel != KernelKind::None && !sameNumber(attraction, other.attraction))
    return differ("attraction", formatValue(attraction), formatValue(other.attraction));
  if (kernel == KernelKind::AttractiveRepulsive &&
      (!sameNumber(repulsion, other.repulsion) || !sameNumber(attractivePower, other.attractivePower) ||
       !sameNumber(repulsivePower, other.repulsivePower)))
    return differ("attractive-repulsive kernel", describe(), other.describe());
  return true;
}

Energy::Energy(EnergySpec spec, Grid grid) : spec_(std::move(spec)), grid_(grid) {
  grid_.validate();
  spec_.validate(grid_.dim);
  const int d = grid_.dim;

  if (spec_.potential == PotentialKind::Values) {
    at::Tensor values = spec_.potentialValues.to(at::kCPU, at::kDouble).contiguous();
    if (values.sizes() != at::IntArrayRef(grid_.shape())) {
      std::ostringstream shape;
      shape << values.sizes();
      throw InvalidParameter("potential array shape", shape.str(),
                             "it must have the shape of the density grid (" + grid_.describe() + ")");
    }
    if (!at::isfinite(values).all().item<bool>())
      throw InvalidParameter("potential array", "non-finite values", "every potential value must be finite");
    potential_ = values;
  } else if (spec_.potential != PotentialKind::None) {
    potential_ = at::zeros(grid_.shape(), at::kDouble);
    for (int a = 0; a < d; ++a) {
      const double centre = std::isnan(spec_.potentialCentre[a]) ? 0.5 * (grid_.boxLower(a) + grid_.boxUpper(a))
                                                                 : spec_.potentialCentre[a];
      const at::Tensor offset = grid_.coordinate(a) - centre;
      if (spec_.potential == PotentialKind::DoubleWell && a == 0) {
        const at::Tensor s = offset * offset / (spec_.wellHalfWidth * spec_.wellHalfWidth) - 1.0;
        potential_ = potential_ + spec_.wellDepth * s * s;
      } else {
        potential_ = potential_ + 0.5 * spec_.potentialStrength[a] * offset * offset;
      }
    }
    potential_ = potential_.contiguous();
  }

  // The quadratic kernel needs no table: convolve() takes it by the
  // density's moments (quadraticBasis() builds one where autograd needs it).
  if (spec_.kernel != KernelKind::None && spec_.kernel != KernelKind::Quadratic) {
    std::vector<int64_t> padded, dims;
    for (int a = 0; a < d; ++a) {
      padded.push_back(2 * grid_.n[a]);
      dims.push_back(a);
    }
    const at::Tensor values = paddedInteractionKernel(spec_, grid_, 0, 2 * grid_.n[0]);
    kernelSpectrum_ = at::fft_rfftn(values, at::IntArrayRef(padded), at::IntArrayRef(dims)) * grid_.cellVolume();
  }
}

double interactionKernel(const EnergySpec& spec, double r) {
  switch (spec.kernel) {
    case KernelKind::Quadratic:
      return spec.attraction * 0.5 * r * r;
    case KernelKind::AttractiveRepulsive: {
      const double p = spec.attractivePower, q = spec.repulsivePower;
      const double attractive = spec.attraction * std::pow(r, p) / p;
      const double repulsive = q == 0 ? std::log(r) : std::pow(r, q) / q;
      return attractive - spec.repulsion * repulsive;
    }
    case KernelKind::KellerSegel:
      return spec.attraction * std::log(r) / (2 * kPi);
    default:
      return 0;
  }
}

double interactionKernelCellAverageAtZero(const EnergySpec& spec, const Grid& grid) {
  const bool singular =
      spec.kernel == KernelKind::KellerSegel ||
      (spec.kernel == KernelKind::AttractiveRepulsive && (spec.repulsivePower <= 0 || spec.attractivePower <= 0));
  if (!singular) return spec.kernel == KernelKind::None ? 0.0 : interactionKernel(spec, 0.0);
  // W is radial, so its mean over [-h/2, h/2]^d equals its mean over [0, h/2]^d.
  std::array<double, 3> half{0.5 * grid.spacing[0], 0.5 * grid.spacing[1], 0.5 * grid.spacing[2]};
  double volume = 1;
  for (int a = 0; a < grid.dim; ++a) volume *= half[a];
  return cornerSingularIntegral([&spec](double r) { return interactionKernel(spec, r); }, grid.dim, half, 40) / volume;
}

at::Tensor paddedInteractionKernel(const EnergySpec& spec, const Grid& grid, int64_t lo, int64_t hi) {
  // Offsets o_a = i_a h_a for i_a < n_a and (i_a - 2 n_a) h_a above:
  // o in (-n_a, n_a) cells, the zero padding's wrap-around.
  const int d = grid.dim;
  std::vector<int64_t> shape;
  at::Tensor r2;
  for (int a = 0; a < d; ++a) {
    const int64_t n = grid.n[a];
    at::Tensor index = a == 0 ? at::arange(lo, hi, at::kDouble) : at::arange(2 * n, at::kDouble);
    const at::Tensor offsets = at::where(index < n, index, index - 2.0 * n) * grid.spacing[a];
    shape.push_back(index.numel());
    std::vector<int64_t> view(d, 1);
    view[a] = index.numel();
    const at::Tensor square = (offsets * offsets).view(view);
    r2 = r2.defined() ? r2 + square : square;
  }
  const at::Tensor distance = r2.expand(shape).sqrt().contiguous();
  at::Tensor values = at::empty_like(distance);
  const double* dist = distance.data_ptr<double>();
  double* out = values.data_ptr<double>();
  for (int64_t i = 0; i < distance.numel(); ++i) out[i] = dist[i] > 0 ? interactionKernel(spec, dist[i]) : 0;
  if (lo == 0 && hi > 0) out[0] = interactionKernelCellAverageAtZero(spec, grid);
  // Offset n_a (never reached with zero padding) carries no weight.
  if (grid.n[0] >= lo && grid.n[0] < hi) values.select(0, grid.n[0] - lo).zero_();
  for (int a = 1; a < d; ++a) values.select(a, grid.n[a]).zero_();
  return values;
}

double Energy::kernel(double r) const { return interactionKernel(spec_, r); }

double Energy::kernelCellAverageAtZero() const { return interactionKernelCellAverageAtZero(spec_, grid_); }

at::Tensor Energy::onDevice(const at::Tensor& cpu, const at::Device& device) const {
  if (device.is_cpu()) return cpu;
  std::lock_guard<std::mutex> lock(cacheMutex_);
  at::Tensor& cached = &cpu == &potential_ ? potentialDevice_ : kernelSpectrumDevice_;
  if (!cached.defined() || cached.device() != device) cached = cpu.to(device);
  return cached;
}

at::Tensor Energy::quadraticBasis(const at::Device& device) const {
  std::lock_guard<std::mutex> lock(cacheMutex_);
  if (!quadraticBasis_.defined() || quadraticBasis_.device() != device) {
    // The basis P = (1, |x - c|^2, x_a - c_a) on the nodes and the weights
    // Q = c|h|/2 (|x - c|^2, 1, -2 (x_a - c_a)), so that W * rho = (rho Q^T) P,
    // about the box centre c: |x - y|^2 does not depend on c, and centred
    // coordinates keep the terms of the expansion of the size of the result.
    const int d = grid_.dim;
    const int64_t N = grid_.numNodes();
    at::Tensor basis = at::empty({2, d + 2, N}, at::kDouble);
    at::Tensor square = at::zeros(grid_.shape(), at::kDouble);
    for (int a = 0; a < d; ++a) {
      const at::Tensor offset = grid_.coordinate(a) - 0.5 * (grid_.boxLower(a) + grid_.boxUpper(a));
      square = square + offset * offset;
      basis[0][a + 2].copy_(offset.expand(grid_.shape()).reshape({N}));
      basis[1][a + 2].copy_(-2.0 * offset.expand(grid_.shape()).reshape({N}));
    }
    basis[0][0].fill_(1.0);
    basis[0][1].copy_(square.reshape({N}));
    basis[1][0].copy_(square.reshape({N}));
    basis[1][1].fill_(1.0);
    basis[1].mul_(0.5 * spec_.attraction * grid_.cellVolume());
    quadraticBasis_ = basis.to(device);
  }
  return quadraticBasis_;
}

at::Tensor Energy::potentialOnGrid(const at::Device& device) const {
  if (!potential_.defined()) return {};
  return onDevice(potential_, device);
}

at::Tensor Energy::equilibrium(double mass) const {
  if (spec_.kernel != KernelKind::None || spec_.internal == InternalKind::None || !(spec_.diffusion > 0)) return {};
  if (!(mass > 0) || !std::isfinite(mass))
    throw InvalidParameter("mass", formatValue(mass), "the equilibrium needs a positive finite mass");
  const double volume = grid_.cellVolume();
  const at::Tensor V = potential_.defined() ? potential_ : at::zeros(grid_.shape(), at::kDouble);
  // Shifting V by its minimum changes neither density but keeps the
  // exponent in [-inf, 0]: exp(-V/D) alone underflows to 0 everywhere
  // (Z = 0, a NaN density) once min V / D > 745.
  const at::Tensor shifted = V - V.min();
  at::Tensor rho;
  if (spec_.internal == InternalKind::Entropy) {
    rho = at::exp(-shifted / spec_.diffusion);  // 1 at the minimum of V, so Z >= |h|
  } else {
    // rho(C) = ((m-1)/(D m) (C - V))_+^(1/(m-1)); its mass grows with C from
    // 0 at C = min V: bracket, then bisect.
    const double m = spec_.exponent, factor = (m - 1) / (spec_.diffusion * m);
    auto profile = [&](double C) { return (factor * (C - shifted)).clamp_min(0).pow(1.0 / (m - 1)); };
    auto massOf = [&](double C) { return profile(C).sum().item<double>() * volume; };
    double lower = 0, upper = 1;
    for (int i = 0; massOf(upper) < mass; ++i) {
      if (i == 1000) throw InvalidParameter("mass", formatValue(mass), "too large for a finite equilibrium");
      lower = upper, upper *= 2;
    }
    for (int i = 0; i < 200 && upper - lower > 1e-15 * upper; ++i) {
      const double middle = 0.5 * (lower + upper);
      (massOf(middle) < mass ? lower : upper) = middle;
    }
    rho = profile(upper);
  }
  return (rho * (mass / (rho.sum().item<double>() * volume))).contiguous();
}

at::Tensor Energy::convolve(const at::Tensor& rho) const {
  const int d = grid_.dim;
  if (spec_.kernel == KernelKind::Quadratic) {
    // W(z) = c |z|^2 / 2 expands the discrete sum exactly:
    //   (W * rho)_j = c/2 (M |x_j|^2 - 2 x_j . m_1 + m_2),
    // M = sum_k rho_k |h|, m_1 = sum_k x_k rho_k |h|, m_2 = sum_k |x_k|^2 rho_k |h|
    // (the same sum the zero-padded FFT takes, in O(N) instead of two
    // transforms on 2^d N nodes; docs/design.md, "The quadratic interaction
    // by its moments").
    // On CPU without autograd by one pass over the density and one over the
    // result; else two products with the basis (d + 2 rows), differentiable
    // and on any device. Tested against each other and the direct sum.
    const at::Tensor flat = rho.to(at::kDouble).reshape({rho.size(0), -1});
    if (momentLoopsApply(flat))
      return quadraticConvolution(grid_, spec_.attraction, flat.contiguous()).view(rho.sizes()).to(rho.scalar_type());
    const at::Tensor basis = quadraticBasis(rho.device());
    return at::matmul(at::matmul(flat, basis[1].t()), basis[0]).view(rho.sizes()).to(rho.scalar_type());
  }
  // The zero-padded transform on 2 n_a nodes per axis, pruned: one axis
  // at a time, each padded by the transform's length, so that the rows of
  // padding are never transformed (forward: the last axis on n_0 ... n_{d-2}
  // rows only, ...), and the inverse stops at the first n_a nodes of each
  // axis. About half the work of the full transforms (as in
  // parallel/SlabConvolution, which adds the transposes).
  const at::Tensor spectrum = onDevice(kernelSpectrum_, rho.device());
  const int last = d;  // dimension of the last axis in (B, n_0, ..., n_{d-1})
  at::Tensor x = at::fft_rfft(rho.to(at::kDouble), 2 * grid_.n[d - 1], last);
  for (int a = d - 2; a >= 0; --a) x = at::fft_fft(x, 2 * grid_.n[a], a + 1);
  x = x * spectrum;
  for (int a = 0; a <= d - 2; ++a) x = at::fft_ifft(x, 2 * grid_.n[a], a + 1).narrow(a + 1, 0, grid_.n[a]);
  return at::fft_irfft(x, 2 * grid_.n[d - 1], last).narrow(last, 0, grid_.n[d - 1]).contiguous().to(rho.scalar_type());
}

EnergyParts Energy::parts(const at::Tensor& rho, const at::Tensor& convolved) const {
  const double volume = grid_.cellVolume();
  const at::Tensor zero = at::zeros({rho.size(0)}, rho.options());
  EnergyParts parts{zero, zero, zero};
  if (spec_.internal == InternalKind::Entropy) {
    // Clamped log (DESIGN.md §2.2): finite value and gradient in vacuum.
    // Summed as (rho |h|) log rho: a cell's mass is at most the total mass
    // and log rho at most ~710, whereas rho log rho alone overflows from
    // rho ~ 1e305 on (huge densities on tiny cells).
    parts.internal = spec_.diffusion * sumOverGrid((rho * volume) * at::log(rho.clamp_min(spec_.logFloor)));
  } else if (spec_.internal == InternalKind::PorousMedium) {
    const double m = spec_.exponent;
    parts.internal = spec_.diffusion / (m - 1) * volume * sumOverGrid(rho.clamp_min(0).pow(m));
  }
  if (potential_.defined())
    parts.potential = volume * sumOverGrid(rho * potentialOnGrid(rho.device()).to(rho.scalar_type()));
  if (spec_.kernel == KernelKind::Quadratic && !convolved.defined() && rho.scalar_type() == at::kDouble &&
      momentLoopsApply(rho))
    parts.interaction =
        quadraticInteractionEnergy(grid_, spec_.attraction, rho.reshape({rho.size(0), -1}).contiguous());
  else if (spec_.kernel != KernelKind::None)
    parts.interaction = 0.5 * volume * sumOverGrid((convolved.defined() ? convolved : convolve(rho)) * rho);
  return parts;
}

at::Tensor Energy::internalVariation(const at::Tensor& rho) const {
  if (spec_.internal == InternalKind::Entropy) return spec_.diffusion * (at::log(rho.clamp_min(spec_.logFloor)) + 1.0);
  if (spec_.internal == InternalKind::PorousMedium) {
    const double m = spec_.exponent;
    return spec_.diffusion * m / (m - 1) * rho.clamp_min(0).pow(m - 1);
  }
  return at::zeros_like(rho);
}

at::Tensor Energy::firstVariation(const at::Tensor& rho) const {
  at::Tensor variation = internalVariation(rho);
  if (potential_.defined()) variation = variation + potentialOnGrid(rho.device()).to(rho.scalar_type());
  if (spec_.kernel != KernelKind::None) variation = variation + convolve(rho);
  return variation;
}

}  // namespace jko
