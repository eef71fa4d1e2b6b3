// Conversion between vtkImageData arrays and core's density tensors, and the
// memory check the plugin's filters share.
//
// VTK stores an image array x-fastest, i.e. as a C array of shape
// (nz, ny, nx); core wants a tensor whose dimension a is spatial axis a,
// shape (n0, n1[, n2]) (Grid.h). The samples are cell-centred (DESIGN.md
// §2.2): a point-data sample i sits at origin + i h and is the centre of a
// cell of size h; a cell-data sample is the centre of its VTK cell. A 2D image
// may lie in any axis-aligned plane: its two non-degenerate image axes become
// grid axes 0 and 1, and velocities map back to the matching 3D components.
//
// Not wrapped: this header may include ATen.
#pragma once

#include <ATen/ATen.h>
#include <vtkSmartPointer.h>

#include <array>
#include <string>

#include "numerics/Grid.h"

class vtkDataArray;
class vtkDoubleArray;
class vtkImageData;

namespace jko::plugin {

/// How the samples of one image array map onto a core Grid.
struct ImageGridMapping {
  Grid grid;
  std::array<int, 3> imageAxis{0, 1, 2};    ///< image axis (0 x, 1 y, 2 z) carrying grid axis a
  std::array<int64_t, 3> samples{1, 1, 1};  ///< samples per image axis (points or cells)
  bool cellData = false;

  int64_t numSamples() const { return samples[0] * samples[1] * samples[2]; }
  /// e.g. "64x48 grid in the x-z plane, spacing 0.01 x 0.02".
  std::string describe() const;
};

/// The grid of the point (or cell) samples of `image`. Throws jko::Error with
/// a sentence a user can act on for a rotated image (non-identity direction
/// matrix), a non-positive spacing, or fewer than two axes with two or more
/// samples.
ImageGridMapping mapImage(vtkImageData* image, bool cellData);

/// The 1-component `array` of the mapped image as a float64 tensor of the
/// grid's shape (a copy). `role` names what the array is for in the message
/// about a multi-component array.
at::Tensor toDensity(vtkDataArray* array, const ImageGridMapping& mapping, const char* role = "the density");

/// A float64 tensor of the grid's shape as a 1-component VTK array.
vtkSmartPointer<vtkDoubleArray> toScalarArray(const at::Tensor& density, const ImageGridMapping& mapping,
                                              const char* name);

/// A velocity (dim, n...) as a 3-component VTK array: grid component a goes to
/// image component imageAxis[a]; the component normal to a 2D image is zero.
vtkSmartPointer<vtkDoubleArray> toVectorArray(const at::Tensor& velocity, const ImageGridMapping& mapping,
                                              const char* name);

/// Memory the system can still give, in bytes: MemAvailable of /proc/meminfo,
/// else the free physical pages. The filters refuse work that would not fit
/// rather than let the allocator take the session down.
double availableMemory();
/// e.g. "3.2 GiB", "512 MiB".
std::string describeBytes(double bytes);

}  // namespace jko::plugin
