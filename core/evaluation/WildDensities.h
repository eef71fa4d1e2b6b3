// Densities of the kinds users load into ParaView, made by generators that
// training never uses (the "wild" suite of `jko compare --suite wild`):
// photographs, terrain, medical scans, microscope cells, strokes and fine
// stripes. Each family mixes structure on the box's scale with detail at
// the scale of the grid's own cells (pixel noise, one-cell edges, thin
// strokes), so the same family is sharper on a finer grid, as a picture is.
// The training generator (operator/DensityGenerator.h) shares no code with
// these: other constructions, not only other seeds.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "numerics/Grid.h"

namespace jko {

/// "photo", "terrain", "scan", "cells", "strokes", "stripes".
const std::vector<std::string>& wildFamilies();

/// Whether the family leaves empty (vacuum) regions.
bool wildFamilyHasVacuum(const std::string& family);

/// A density of the family on `grid` (float64, shape of the grid, >= 0,
/// peak 1), deterministic in (family, seed, grid). 2D and 3D.
at::Tensor wildDensity(const Grid& grid, const std::string& family, uint64_t seed);

}  // namespace jko
