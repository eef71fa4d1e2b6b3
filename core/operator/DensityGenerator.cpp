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
  static const std::vector<std::string> names{
      "gaussian-mixture", "smooth-field", "ring",   "bumps",     "disk",  "barenblatt",
      "box-field",        "box-vacuum",   "shapes", "filaments", "noisy", "near-constant"};
  return names;
}

const std::vector<std::string>& DensityGenerator::trainingKinds() {
  static const std::vector<std::string> names{"gaussian-mixture", "box-field", "bumps",     "shapes", "smooth-field",
                                              "box-vacuum",       "ring",      "filaments", "noisy",  "near-constant"};
  return names;
}

DensityGenerator::DensityGenerator(const Grid& grid, DensityRanges ranges, uint64_t seed,
                                   std::vector<std::string> kinds)
    : grid_(grid), ranges_(ranges), random_(seed), kinds_(std::move(kinds)) {
  grid_.validate();
  if (kinds_.empty()) kinds_ = trainingKinds();
  for (const auto& kind : kinds_)
    if (std::find(kindNames().begin(), kindNames().end(), kind) == kindNames().end()) {
      std::string allowed = "allowed:";
      for (const auto& name : kindNames()) allowed += " " + name;
      throw InvalidParameter("density kind", kind, allowed);
    }
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

at::Tensor DensityGenerator::whiteNoise() {
  std::normal_distribution<double> normal;
  at::Tensor out = at::empty(grid_.shape(), at::kDouble);
  double* p = out.data_ptr<double>();
  for (int64_t i = 0; i < out.numel(); ++i) p[i] = normal(random_);
  return out;
}

// A Gaussian random field with power spectrum |k|^-beta (white noise
// filtered in Fourier space, periodic), zero mean, unit standard deviation:
// structure on every scale down to the cell, rougher as beta falls.
at::Tensor DensityGenerator::powerLawField(double beta) {
  const int d = grid_.dim;
  std::vector<int64_t> dims;
  for (int a = 0; a < d; ++a) dims.push_back(a);
  const at::Tensor spectrum = at::fft_rfftn(whiteNoise(), c10::nullopt, dims);
  at::Tensor k2 = at::zeros(spectrum.sizes(), at::kDouble);
  for (int a = 0; a < d; ++a) {
    const int64_t n = grid_.n[a];
    at::Tensor k = a + 1 < d ? at::fft_fftfreq(n, 1.0 / n, at::kDouble) : at::fft_rfftfreq(n, 1.0 / n, at::kDouble);
    std::vector<int64_t> view(d, 1);
    view[a] = k.size(0);
    k2 = k2 + (k * k).view(view);
  }
  const at::Tensor filter = at::where(k2 > 0, k2.pow(-beta / 4), at::zeros_like(k2));
  std::vector<int64_t> sizes(grid_.n.begin(), grid_.n.begin() + d);
  at::Tensor field = at::fft_irfftn(spectrum * filter, sizes, dims);
  field = field - field.mean();
  return field / field.std().clamp_min(1e-300);
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
  } else if (kind == "box-field") {
    // Filling the whole box, walls included: exp of a power-law field.
    shape = at::exp(uniform(0.2, 1.0) * powerLawField(uniform(1.5, 4.0)));
  } else if (kind == "box-vacuum") {
    // Patches reaching the walls with vacuum between them: the positive
    // part of a shifted power-law field, to a power.
    const at::Tensor f = powerLawField(uniform(2.0, 4.0)) - uniform(-0.3, 0.9);
    shape = f.clamp_min(0).pow(uniform(0.5, 1.5));
    if (shape.max().item<double>() == 0) shape = (f == f.max()).to(at::kDouble);
  } else if (kind == "shapes") {
    // Sharp-edged squares, triangles and disks on a background (or vacuum),
    // blurred by at most one cell.
    const double background = uniform(0, 1) < 0.4 ? 0.0 : uniform(0.02, 0.3);
    shape = at::full(grid_.shape(), background, at::kDouble);
    const int count = std::uniform_int_distribution<int>(2, 7)(random_);
    for (int j = 0; j < count; ++j) {
      const std::array<double, 3> c = randomCentre(0.05);
      const double size = length * uniform(0.04, 0.2), angle = uniform(0, 2 * kPi);
      const at::Tensor x = grid_.coordinate(0) - c[0], y = grid_.coordinate(1) - c[1];
      const at::Tensor xr = std::cos(angle) * x + std::sin(angle) * y, yr = -std::sin(angle) * x + std::cos(angle) * y;
      at::Tensor inside;
      const int type = std::uniform_int_distribution<int>(0, 2)(random_);
      if (type == 0) {
        inside = (xr.abs() <= size) & (yr.abs() <= size * uniform(0.3, 1.0));
      } else if (type == 1) {
        inside = (yr >= -size) & (yr <= size - 2 * xr.abs());
      } else {
        inside = (xr * xr + yr * yr) <= size * size;
      }
      if (grid_.dim == 3) inside = inside & ((grid_.coordinate(2) - c[2]).abs() <= size);
      shape = at::where(inside.expand(grid_.shape()), at::full(grid_.shape(), uniform(0.2, 1.0), at::kDouble), shape);
    }
    if (uniform(0, 1) < 0.5) {
      for (int a = 0; a < grid_.dim; ++a) {
        const int64_t n = grid_.n[a];
        const at::Tensor left = at::cat({shape.narrow(a, 0, 1), shape.narrow(a, 0, n - 1)}, a);
        const at::Tensor right = at::cat({shape.narrow(a, 1, n - 1), shape.narrow(a, n - 1, 1)}, a);
        shape = 0.25 * left + 0.5 * shape + 0.25 * right;
      }
    }
  } else if (kind == "filaments") {
    // Thin straight and bent filaments (Gaussian tubes around segments,
    // half a cell to three cells wide), on a faint background or vacuum.
    double cell = 1e300;
    for (int a = 0; a < grid_.dim; ++a) cell = std::min(cell, grid_.spacing[a]);
    shape = at::full(grid_.shape(), uniform(0, 1) < 0.5 ? 0.0 : uniform(0.005, 0.05), at::kDouble);
    const int count = std::uniform_int_distribution<int>(2, 8)(random_);
    for (int j = 0; j < count; ++j) {
      std::array<double, 3> p = randomCentre(0.05);
      const double width = cell * uniform(0.5, 3.0), brightness = uniform(0.3, 1.0);
      const int pieces = std::uniform_int_distribution<int>(1, 4)(random_);
      for (int piece = 0; piece < pieces; ++piece) {
        const std::array<double, 3> q = randomCentre(0.05);
        // Squared distance to the segment p-q.
        at::Tensor dot = at::zeros(grid_.shape(), at::kDouble);
        double len2 = 0;
        for (int a = 0; a < grid_.dim; ++a) {
          dot = dot + (grid_.coordinate(a) - p[a]) * (q[a] - p[a]);
          len2 += (q[a] - p[a]) * (q[a] - p[a]);
        }
        const at::Tensor t = (dot / std::max(len2, 1e-300)).clamp(0, 1);
        at::Tensor d2 = at::zeros(grid_.shape(), at::kDouble);
        for (int a = 0; a < grid_.dim; ++a) {
          const at::Tensor diff = grid_.coordinate(a) - (p[a] + t * (q[a] - p[a]));
          d2 = d2 + diff * diff;
        }
        shape = at::maximum(shape, brightness * at::exp(-0.5 * d2 / (width * width)));
        p = q;
      }
    }
  } else if (kind == "near-constant") {
    // A constant state with a small perturbation on every scale (1-20%): the
    // linear response of the step, which every density's fine detail sees.
    shape = (1.0 + uniform(0.01, 0.2) * powerLawField(uniform(0.0, 3.0))).clamp_min(0.05);
  } else if (kind == "noisy") {
    // A smooth density with pixel noise of 5-30% on a background.
    const at::Tensor smooth = at::exp(uniform(0.3, 0.8) * powerLawField(4.0));
    shape = (smooth * (1.0 + uniform(0.05, 0.3) * whiteNoise())).clamp_min(0) + uniform(0, 0.2);
  } else {  // barenblatt
    const double power = 1.0 / (ranges_.bumpExponent - 1);
    shape =
        compactProfile(centredSquaredDistance(randomCentre(0.3), isotropic(length * uniform(0.12, 0.22)))).pow(power);
  }
  // A coarse grid can miss every shape, segment or patch: then the node
  // nearest a random point carries the density (never an empty one, whose
  // rescaling would be 0/0).
  if (!(shape.max().item<double>() > 0)) {
    const at::Tensor r2 = centredSquaredDistance(randomCentre(0.1), isotropic(1.0));
    shape = (r2 == r2.min()).to(at::kDouble);
  }
  return scaled(shape).contiguous();
}

std::vector<at::Tensor> DensityGenerator::sample(int count) {
  std::vector<at::Tensor> out;
  for (int i = 0; i < count; ++i) out.push_back(next());
  return out;
}

}  // namespace jko
