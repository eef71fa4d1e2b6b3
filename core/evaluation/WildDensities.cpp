#include "evaluation/WildDensities.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "numerics/Errors.h"

namespace jko {
namespace {

constexpr double kPi = 3.14159265358979323846;

class Maker {
 public:
  Maker(const Grid& grid, uint64_t seed) : grid_(grid), random_(seed) {
    for (int a = 0; a < grid.dim; ++a)
      unit_[a] = ((grid.coordinate(a) - grid.boxLower(a)) / grid.boxLength(a)).expand(grid.shape()).contiguous();
  }

  const Grid& grid() const { return grid_; }
  int dim() const { return grid_.dim; }
  /// Box-relative coordinate in [0, 1] along axis a, shape of the grid.
  const at::Tensor& unit(int a) const { return unit_[a]; }
  double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(random_); }
  int integer(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(random_); }
  /// Independent normal values, one per node (pixel noise).
  at::Tensor noise() {
    std::normal_distribution<double> normal;
    at::Tensor out = at::empty(grid_.shape(), at::kDouble);
    double* p = out.data_ptr<double>();
    for (int64_t i = 0; i < out.numel(); ++i) p[i] = normal(random_);
    return out;
  }
  std::array<double, 3> point(double margin) {
    std::array<double, 3> p{0, 0, 0};
    for (int a = 0; a < dim(); ++a) p[a] = uniform(margin, 1 - margin);
    return p;
  }
  /// Squared distance to p, box-relative.
  at::Tensor distance2(const std::array<double, 3>& p) const {
    at::Tensor r2 = at::zeros(grid_.shape(), at::kDouble);
    for (int a = 0; a < dim(); ++a) r2 = r2 + (unit_[a] - p[a]) * (unit_[a] - p[a]);
    return r2;
  }
  /// Squared elliptic radius around c with semi-axes s, rotated by angle
  /// (in the plane of the first two axes).
  at::Tensor ellipse(const std::array<double, 3>& c, const std::array<double, 3>& s, double angle) const {
    const at::Tensor x = unit_[0] - c[0], y = unit_[1] - c[1];
    const at::Tensor xr = std::cos(angle) * x + std::sin(angle) * y;
    const at::Tensor yr = -std::sin(angle) * x + std::cos(angle) * y;
    at::Tensor r2 = (xr / s[0]) * (xr / s[0]) + (yr / s[1]) * (yr / s[1]);
    if (dim() == 3) r2 = r2 + ((unit_[2] - c[2]) / s[2]) * ((unit_[2] - c[2]) / s[2]);
    return r2;
  }
  /// Value noise: random values on a lattice of `cells` cells per axis,
  /// multilinear between them.
  at::Tensor valueNoise(int64_t cells) {
    std::vector<int64_t> lattice(dim(), cells + 1);
    at::Tensor values = at::empty(lattice, at::kDouble);
    double* p = values.data_ptr<double>();
    for (int64_t i = 0; i < values.numel(); ++i) p[i] = uniform(0, 1);
    // Interpolate axis by axis with index_select on the lattice.
    at::Tensor field = values;
    for (int a = 0; a < dim(); ++a) {
      const int64_t n = grid_.n[a];
      at::Tensor position = (at::arange(n, at::kDouble) + 0.5) / n * cells;
      at::Tensor low = position.floor().clamp_max(cells - 1).to(at::kLong);
      const at::Tensor w = (position - low.to(at::kDouble));
      std::vector<int64_t> view(dim(), 1);
      view[a] = n;
      field = field.index_select(a, low) * (1 - w).view(view) + field.index_select(a, low + 1) * w.view(view);
    }
    return field.contiguous();
  }
  /// One cell of blur: (1/4, 1/2, 1/4) along each axis, walls mirrored.
  at::Tensor blur(const at::Tensor& f) const {
    at::Tensor out = f;
    for (int a = 0; a < dim(); ++a) {
      const int64_t n = grid_.n[a];
      const at::Tensor left = at::cat({out.narrow(a, 0, 1), out.narrow(a, 0, n - 1)}, a);
      const at::Tensor right = at::cat({out.narrow(a, 1, n - 1), out.narrow(a, n - 1, 1)}, a);
      out = 0.25 * left + 0.5 * out + 0.25 * right;
    }
    return out;
  }

 private:
  Grid grid_;
  std::mt19937_64 random_;
  std::array<at::Tensor, 3> unit_;
};

// A mosaic of Voronoi cells, each shaded by its own linear ramp, with sharp
// edges and pixel noise: box-filling like a photograph.
at::Tensor photo(Maker& g) {
  const int sites = g.integer(8, 30);
  at::Tensor best = at::full(g.grid().shape(), 1e9, at::kDouble);
  at::Tensor value = at::zeros(g.grid().shape(), at::kDouble);
  for (int s = 0; s < sites; ++s) {
    const auto p = g.point(0);
    const at::Tensor d2 = g.distance2(p);
    at::Tensor shade = at::full(g.grid().shape(), g.uniform(0.15, 1.0), at::kDouble);
    for (int a = 0; a < g.dim(); ++a) shade = shade + g.uniform(-0.6, 0.6) * (g.unit(a) - p[a]);
    const at::Tensor closer = d2 < best;
    best = at::where(closer, d2, best);
    value = at::where(closer, shade, value);
  }
  return (value + 0.04 * g.noise()).clamp_min(0.02);
}

// Ridged multifractal terrain from value noise, octaves down to the cell.
at::Tensor terrain(Maker& g) {
  int64_t n = g.grid().n[0];
  for (int a = 1; a < g.dim(); ++a) n = std::min(n, g.grid().n[a]);
  at::Tensor signal = at::zeros(g.grid().shape(), at::kDouble);
  double weight = 1;
  for (int64_t cells = 2; cells <= n / 2; cells *= 2, weight *= 0.55) {
    const at::Tensor v = g.valueNoise(cells);
    const at::Tensor ridge = 1.0 - (2.0 * v - 1.0).abs();
    signal = signal + weight * ridge * ridge;
  }
  signal = (signal - signal.mean()) / signal.std().clamp_min(1e-12);
  return at::exp(g.uniform(0.6, 1.0) * signal);
}

// A phantom like a medical scan: a body (an ellipse or ellipsoid) of tissue
// with organs of other densities and a thin bright shell, noise inside,
// nothing outside.
at::Tensor scan(Maker& g) {
  const double angle = g.uniform(0, kPi);
  const std::array<double, 3> centre{g.uniform(0.45, 0.55), g.uniform(0.45, 0.55), g.uniform(0.45, 0.55)};
  const std::array<double, 3> axes{g.uniform(0.33, 0.44), g.uniform(0.25, 0.4), g.uniform(0.3, 0.42)};
  const at::Tensor body = g.ellipse(centre, axes, angle);
  const double cell = 1.0 / g.grid().n[0];
  const double shell = g.uniform(1.5, 3.0) * cell / std::min(axes[0], axes[1]);
  at::Tensor value = (body <= 1.0).to(at::kDouble) * g.uniform(0.3, 0.5);
  value = value + ((body <= 1.0) & (body > (1 - shell) * (1 - shell))).to(at::kDouble) * g.uniform(0.4, 0.7);
  const int organs = g.integer(3, 7);
  for (int o = 0; o < organs; ++o) {
    std::array<double, 3> c{}, s{};
    for (int a = 0; a < 3; ++a) {
      c[a] = centre[a] + g.uniform(-0.5, 0.5) * axes[a];
      s[a] = g.uniform(0.04, 0.14);
    }
    value = value + (g.ellipse(c, s, g.uniform(0, kPi)) <= 1.0).to(at::kDouble) * g.uniform(-0.25, 0.6);
  }
  const at::Tensor inside = (body <= 1.0).to(at::kDouble);
  return ((value + 0.03 * g.noise()) * inside).clamp_min(0);
}

// Cells under a microscope: many small bright domes on a faint, noisy,
// almost empty background.
at::Tensor cells(Maker& g) {
  at::Tensor value = (0.004 + 0.002 * g.noise()).clamp_min(0);
  const int count = g.integer(20, 60);
  for (int c = 0; c < count; ++c) {
    const double r = g.uniform(0.012, 0.045);
    std::array<double, 3> s{r * g.uniform(0.7, 1.4), r * g.uniform(0.7, 1.4), r};
    const at::Tensor e = g.ellipse(g.point(0.05), s, g.uniform(0, kPi));
    value = value + g.uniform(0.3, 1.0) * (1.0 - e).clamp_min(0).sqrt();
  }
  return value;
}

// Thin strokes (quadratic Bezier curves and circular arcs) one to three
// cells wide, nothing around them. Each curve is sampled at a quarter cell
// and only the nodes within its width of a sample are touched.
at::Tensor strokes(Maker& g) {
  const Grid& grid = g.grid();
  const int d = grid.dim;
  std::array<int64_t, 3> n{1, 1, 1};
  for (int a = 0; a < d; ++a) n[a] = grid.n[a];
  int64_t nMax = std::max({n[0], n[1], d == 3 ? n[2] : 1});
  at::Tensor value = at::zeros(grid.shape(), at::kDouble);
  double* v = value.data_ptr<double>();
  const int count = g.integer(4, 10);
  for (int c = 0; c < count; ++c) {
    const double width = g.uniform(0.6, 1.6) / static_cast<double>(nMax);  // box-relative
    const double brightness = g.uniform(0.4, 1.0);
    const bool arc = g.uniform(0, 1) < 0.35;
    const auto p0 = g.point(0.1), p1 = g.point(0.1), p2 = g.point(0.1);
    const double radius = g.uniform(0.08, 0.3), start = g.uniform(0, 2 * kPi), sweep = g.uniform(1, 5);
    const int samples = 4 * static_cast<int>(nMax) * 4;
    for (int k = 0; k <= samples; ++k) {
      const double t = static_cast<double>(k) / samples;
      std::array<double, 3> q{};
      for (int a = 0; a < 3; ++a) {
        if (arc)
          q[a] = p0[a] + (a == 0   ? radius * std::cos(start + sweep * t)
                          : a == 1 ? radius * std::sin(start + sweep * t)
                                   : (t - 0.5) * radius);
        else
          q[a] = (1 - t) * (1 - t) * p0[a] + 2 * t * (1 - t) * p1[a] + t * t * p2[a];
      }
      std::array<int64_t, 3> lo{0, 0, 0}, hi{0, 0, 0};
      for (int a = 0; a < d; ++a) {
        lo[a] = std::max<int64_t>(0, static_cast<int64_t>(std::floor((q[a] - width) * n[a] - 0.5)));
        hi[a] = std::min<int64_t>(n[a] - 1, static_cast<int64_t>(std::ceil((q[a] + width) * n[a] - 0.5)));
      }
      for (int64_t i = lo[0]; i <= hi[0]; ++i)
        for (int64_t j = lo[1]; j <= hi[1]; ++j)
          for (int64_t l = lo[2]; l <= hi[2]; ++l) {
            const std::array<int64_t, 3> index{i, j, l};
            double r2 = 0;
            for (int a = 0; a < d; ++a) {
              const double x = (index[a] + 0.5) / n[a] - q[a];
              r2 += x * x;
            }
            if (r2 <= width * width) {
              double& cell = v[(i * n[1] + j) * (d == 3 ? n[2] : 1) + (d == 3 ? l : 0)];
              cell = std::max(cell, brightness);
            }
          }
    }
  }
  return g.blur(value);
}

// Fine stripes (wavelengths of 3 to 12 cells) on a background, under a broad
// envelope: the stiffest modes a step must damp.
at::Tensor stripes(Maker& g) {
  at::Tensor value = at::full(g.grid().shape(), 0.5, at::kDouble);
  const int waves = g.integer(2, 3);
  at::Tensor pattern = at::zeros(g.grid().shape(), at::kDouble);
  for (int w = 0; w < waves; ++w) {
    const double cellsPerWave = g.uniform(3, 12);
    const double angle = g.uniform(0, kPi);
    const double k = 2 * kPi * g.grid().n[0] / cellsPerWave;
    at::Tensor phase = at::full(g.grid().shape(), g.uniform(0, 2 * kPi), at::kDouble);
    phase = phase + k * (std::cos(angle) * g.unit(0) + std::sin(angle) * g.unit(1));
    if (g.dim() == 3) phase = phase + 0.5 * k * g.unit(2);
    pattern = pattern + g.uniform(0.1, 0.25) * at::cos(phase);
  }
  const at::Tensor envelope = at::exp(-g.distance2(g.point(0.3)) / (2 * std::pow(g.uniform(0.15, 0.3), 2)));
  return (value + pattern * envelope).clamp_min(0.05);
}

}  // namespace

const std::vector<std::string>& wildFamilies() {
  static const std::vector<std::string> names{"photo", "terrain", "scan", "cells", "strokes", "stripes"};
  return names;
}

bool wildFamilyHasVacuum(const std::string& family) { return family == "scan" || family == "strokes"; }

at::Tensor wildDensity(const Grid& grid, const std::string& family, uint64_t seed) {
  grid.validate();
  // The family's name enters the seed: seed 1 of two families differ.
  uint64_t mixed = seed * 0x9E3779B97F4A7C15ull;
  for (char c : family) mixed = (mixed ^ static_cast<unsigned char>(c)) * 0x100000001B3ull;
  Maker g(grid, mixed);
  at::Tensor rho;
  if (family == "photo")
    rho = photo(g);
  else if (family == "terrain")
    rho = terrain(g);
  else if (family == "scan")
    rho = scan(g);
  else if (family == "cells")
    rho = cells(g);
  else if (family == "strokes")
    rho = strokes(g);
  else if (family == "stripes")
    rho = stripes(g);
  else
    throw InvalidParameter("wild density family", family, "allowed: photo, terrain, scan, cells, strokes, stripes");
  rho = rho.clamp_min(0).contiguous();
  const double peak = rho.max().item<double>();
  if (!(peak > 0)) rho = at::ones_like(rho);
  return (rho / rho.max()).contiguous();
}

}  // namespace jko
