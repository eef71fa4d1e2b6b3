#include "operator/DensityGenerator.h"

#include <algorithm>
#include <cmath>

#include "numerics/Errors.h"

namespace jko {
namespace {
constexpr double kPi = 3.14159265358979323846;

// (1 - r2)_+ for a scaled squared distance r2; when the profile falls
// between the nodes of a coarse grid (no node has r2 < 1), the node nearest
// its centre instead, so that a density never comes out empty (its
// rescaling would be 0/0: NaN).
at::Tensor compactProfile(const at::Tensor& r2) {
  const at::Tensor profile = (1.0 - r2).clamp_min(0);
  if (profile.max().item<double>() > 0) return profile;
  return (r2 == r2.min()).to(at::kDouble);
}
}  // namespace

const std::vector<std::string>& DensityGenerator::kindNames() {
  static const std::vector<std::string> names{"gaussian-mixture", "smooth-field", "ring", "bumps", "disk",
                                              "barenblatt"};
  return names;
}

DensityGenerator::DensityGenerator(const Grid& grid, DensityRanges ranges, uint64_t seed,
                                   std::vector<std::string> kinds)
    : grid_(grid), ranges_(ranges), random_(seed), kinds_(std::move(kinds)) {
  grid_.validate();
  if (kinds_.empty()) kinds_ = {"gaussian-mixture", "bumps", "smooth-field", "ring"};
  for (const auto& kind : kinds_)
    if (std::find(kindNames().begin(), kindNames().end(), kind) == kindNames().end())
      throw InvalidParameter("density kind", kind,
                             "allowed: gaussian-mixture, smooth-field, ring, bumps, disk, barenblatt");
  if (ranges_.peakMax > 0 && !(ranges_.peakMin > 0 && ranges_.peakMin <= ranges_.peakMax))
    throw InvalidParameter("peak range", formatValue(ranges_.peakMin), "need 0 < peak min <= peak max");
  if (ranges_.peakMax <= 0 && !(ranges_.massMin > 0 && ranges_.massMin <= ranges_.massMax))
    throw InvalidParameter("mass range", formatValue(ranges_.massMin), "need 0 < mass min <= mass max");
}

double DensityGenerator::uniform(double lo, double hi) {
  return std::uniform_real_distribution<double>(lo, hi)(random_);
}

at::Tensor DensityGenerator::centredSquaredDistance(const std::array<double, 3>& centre,
                                                    const std::array<double, 3>& scale) const {
  at::Tensor r2 = at::zeros(grid_.shape(), at::kDouble);
  for (int a = 0; a < grid_.dim; ++a) {
    const at::Tensor z = (grid_.coordinate(a) - centre[a]) / scale[a];
    r2 = r2 + z * z;
  }
  return r2;
}

at::Tensor DensityGenerator::scaled(const at::Tensor& shape) {
  const double peak = shape.max().item<double>();
  if (ranges_.peakMax > 0) {
    const double target = std::exp(uniform(std::log(ranges_.peakMin), std::log(ranges_.peakMax)));
    return shape * (target / peak);
  }
  const double mass = shape.sum().item<double>() * grid_.cellVolume();
  return shape * (uniform(ranges_.massMin, ranges_.massMax) / mass);
}

at::Tensor DensityGenerator::next() {
  const std::string& kind = kinds_[cursor_++ % kinds_.size()];
  return next(kind);
}

at::Tensor DensityGenerator::next(const std::string& kind) {
  const int d = grid_.dim;
  // Lengths relative to the box so densities look alike on any box.
  double length = 1e300;
  for (int a = 0; a < d; ++a) length = std::min(length, grid_.boxLength(a));
  auto randomCentre = [&](double margin) {
    std::array<double, 3> c{0, 0, 0};
    for (int a = 0; a < d; ++a) c[a] = grid_.boxLower(a) + grid_.boxLength(a) * uniform(margin, 1 - margin);
    return c;
  };
  auto isotropic = [](double s) { return std::array<double, 3>{s, s, s}; };
  at::Tensor shape;
  if (kind == "gaussian-mixture") {
    const int count = std::uniform_int_distribution<int>(1, 4)(random_);
    shape = at::zeros(grid_.shape(), at::kDouble);
    for (int j = 0; j < count; ++j) {
      std::array<double, 3> sigma;
      for (int a = 0; a < 3; ++a) sigma[a] = length * uniform(0.05, 0.12);
      shape =
          shape + uniform(0.3, 1.0) * at::exp(-0.5 * centredSquaredDistance(randomCentre(ranges_.margin + 0.1), sigma));
    }
  } else if (kind == "bumps") {
    // (A - q|x - c|^2)_+^(1/(m-1)): compact support with a front, like Barenblatt.
    const int count = std::uniform_int_distribution<int>(1, 3)(random_);
    const double power = 1.0 / (ranges_.bumpExponent - 1);
    shape = at::zeros(grid_.shape(), at::kDouble);
    for (int j = 0; j < count; ++j) {
      std::array<double, 3> radius;
      const double r = length * uniform(0.08, 0.22);
      for (int a = 0; a < 3; ++a) radius[a] = r * uniform(0.75, 1.33);
      const at::Tensor profile = compactProfile(centredSquaredDistance(randomCentre(ranges_.margin + 0.12), radius));
      shape = shape + uniform(0.4, 1.0) * profile.pow(power);
    }
  } else if (kind == "smooth-field") {
    // exp of a few random low Fourier modes, concentrated by a broad envelope.
    at::Tensor field = at::zeros(grid_.shape(), at::kDouble);
    for (int j = 0; j < 6; ++j) {
      at::Tensor phase = at::full(grid_.shape(), uniform(0, 2 * kPi), at::kDouble);
      for (int a = 0; a < d; ++a) {
        const double k = 2 * kPi * std::uniform_int_distribution<int>(0, 3)(random_) / grid_.boxLength(a);
        phase = phase + k * (grid_.coordinate(a) - grid_.boxLower(a));
      }
      field = field + uniform(0.2, 0.8) * at::cos(phase);
    }
    const at::Tensor envelope = centredSquaredDistance(randomCentre(0.3), isotropic(length * uniform(0.18, 0.3)));
    shape = at::exp(field - 0.5 * envelope);
  } else if (kind == "ring") {
    const std::array<double, 3> centre = randomCentre(0.35);
    const double radius = length * uniform(0.12, 0.22), width = length * uniform(0.03, 0.06);
    const at::Tensor r = centredSquaredDistance(centre, isotropic(1.0)).sqrt();
    shape = at::exp(-0.5 * (r - radius) * (r - radius) / (width * width));
  } else if (kind == "disk") {
    const at::Tensor r2 = centredSquaredDistance(randomCentre(0.3), isotropic(length * uniform(0.12, 0.2)));
    shape = (r2 <= 1.0).to(at::kDouble);
    if (shape.sum().item<double>() == 0) shape = (r2 == r2.min()).to(at::kDouble);
  } else {  // barenblatt
    const double power = 1.0 / (ranges_.bumpExponent - 1);
    shape =
        compactProfile(centredSquaredDistance(randomCentre(0.3), isotropic(length * uniform(0.12, 0.22)))).pow(power);
  }
  return scaled(shape).contiguous();
}

std::vector<at::Tensor> DensityGenerator::sample(int count) {
  std::vector<at::Tensor> out;
  for (int i = 0; i < count; ++i) out.push_back(next());
  return out;
}

}  // namespace jko
