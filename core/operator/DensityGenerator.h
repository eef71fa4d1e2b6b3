// Seeded random initial densities for training and for the "JKO Initial
// Density" source: Gaussian mixtures, smooth random fields, rings,
// compactly supported (Barenblatt-like) bumps, uniform disks.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "numerics/Grid.h"

namespace jko {

struct DensityRanges {
  /// Peak density drawn log-uniformly in [peakMin, peakMax] (when > 0) ...
  double peakMin = 0, peakMax = 0;
  /// ... else the mass drawn uniformly in [massMin, massMax].
  double massMin = 1, massMax = 1;
  /// Exponent of the compact bumps (A - q|x|^2)_+^(1/(m-1)).
  double bumpExponent = 2;
  /// Keep blobs this far (fraction of the box) from the walls.
  double margin = 0.15;
};

class DensityGenerator {
 public:
  /// Kinds: "gaussian-mixture", "smooth-field", "ring", "bumps", "disk",
  /// "barenblatt", and densities like the ones users load: "box-field"
  /// (filling the box, structure down to the cell), "box-vacuum" (patches
  /// with vacuum between them, touching the walls), "shapes" (sharp-edged
  /// squares, triangles and disks), "filaments" (lines half a cell to three
  /// cells wide), "noisy" (pixel noise on a background), "near-constant" (a
  /// constant state with a small perturbation on every scale). An empty list means
  /// the training mix (trainingKinds()).
  DensityGenerator(const Grid& grid, DensityRanges ranges, uint64_t seed, std::vector<std::string> kinds = {});

  /// The next random density (float64, shape of the grid), its kind cycling
  /// through the list.
  at::Tensor next();
  at::Tensor next(const std::string& kind);
  /// The kind next() draws next.
  const std::string& nextKind() const { return kinds_[cursor_ % kinds_.size()]; }
  std::vector<at::Tensor> sample(int count);

  static const std::vector<std::string>& kindNames();
  /// All but "disk" and "barenblatt" (kept out of training: exact cases use them).
  static const std::vector<std::string>& trainingKinds();

 private:
  double uniform(double lo, double hi);
  at::Tensor centredSquaredDistance(const std::array<double, 3>& centre, const std::array<double, 3>& scale) const;
  at::Tensor scaled(const at::Tensor& shape);
  at::Tensor whiteNoise();
  at::Tensor powerLawField(double beta);

  Grid grid_;
  DensityRanges ranges_;
  std::mt19937_64 random_;
  std::vector<std::string> kinds_;
  size_t cursor_ = 0;
};

}  // namespace jko
