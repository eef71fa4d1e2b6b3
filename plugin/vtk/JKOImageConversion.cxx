#include "JKOImageConversion.h"

#include <unistd.h>
#include <vtkDataArray.h>
#include <vtkDoubleArray.h>
#include <vtkImageData.h>
#include <vtkMatrix3x3.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include "numerics/Errors.h"

namespace jko::plugin {
namespace {

constexpr const char* kAxisNames[3] = {"x", "y", "z"};

// The image-order tensor (s0, s1, s2) of a grid-shaped tensor: inactive image
// axes are inserted as dimensions of size 1 (grid axes keep their order).
at::Tensor toImageOrder(const at::Tensor& gridShaped, const ImageGridMapping& mapping) {
  return gridShaped.reshape({mapping.samples[0], mapping.samples[1], mapping.samples[2]});
}

vtkSmartPointer<vtkDoubleArray> fromImageOrder(const at::Tensor& imageOrder, int components, const char* name) {
  // (s0, s1, s2[, c]) -> (s2, s1, s0[, c]): VTK's x-fastest order.
  const at::Tensor vtkOrder = components == 1 ? imageOrder.permute({2, 1, 0}) : imageOrder.permute({2, 1, 0, 3});
  const at::Tensor values = vtkOrder.to(at::kCPU, at::kDouble).contiguous();
  auto array = vtkSmartPointer<vtkDoubleArray>::New();
  array->SetName(name);
  array->SetNumberOfComponents(components);
  array->SetNumberOfTuples(values.numel() / components);
  std::memcpy(array->GetPointer(0), values.data_ptr<double>(), sizeof(double) * values.numel());
  return array;
}

}  // namespace

std::string ImageGridMapping::describe() const {
  std::ostringstream out;
  for (int a = 0; a < grid.dim; ++a) out << (a ? "x" : "") << grid.n[a];
  out << (grid.dim == 2 ? " grid in the " : " grid");
  if (grid.dim == 2) out << kAxisNames[imageAxis[0]] << "-" << kAxisNames[imageAxis[1]] << " plane";
  out << " (" << (cellData ? "cell" : "point") << " data), spacing ";
  for (int a = 0; a < grid.dim; ++a) out << (a ? " x " : "") << grid.spacing[a];
  return out.str();
}

ImageGridMapping mapImage(vtkImageData* image, bool cellData) {
  if (!image) throw Error("The input is not image data: apply the filter to a vtkImageData (e.g. Resample To Image).");
  if (vtkMatrix3x3* direction = image->GetDirectionMatrix()) {
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j)
        if (std::abs(direction->GetElement(i, j) - (i == j ? 1.0 : 0.0)) > 1e-12)
          throw Error(
              "The input image is rotated (its direction matrix is not the identity), which this filter does not "
              "support: resample it onto an axis-aligned image first (Resample To Image).");
  }
  int extent[6];
  image->GetExtent(extent);
  const double* spacing = image->GetSpacing();
  const double* origin = image->GetOrigin();

  ImageGridMapping mapping;
  mapping.cellData = cellData;
  int dim = 0;
  for (int axis = 0; axis < 3; ++axis) {
    const int64_t points = std::max(0, extent[2 * axis + 1] - extent[2 * axis] + 1);
    mapping.samples[axis] = cellData ? std::max<int64_t>(points - 1, 1) : points;
    if (points == 0)
      throw Error("The input image is empty: there is no density to evolve; connect an image with samples.");
    if (mapping.samples[axis] < 2) continue;
    if (!(spacing[axis] > 0) || !std::isfinite(spacing[axis])) {
      std::ostringstream message;
      message << "The input image has spacing " << spacing[axis] << " along " << kAxisNames[axis]
              << ": the flow needs a positive spacing on every axis (flip the image or fix its spacing).";
      throw Error(message.str());
    }
    if (!std::isfinite(origin[axis])) {
      std::ostringstream message;
      message << "The input image has origin " << origin[axis] << " along " << kAxisNames[axis]
              << ": the flow needs a finite origin (fix the image's origin).";
      throw Error(message.str());
    }
    mapping.imageAxis[dim] = axis;
    mapping.grid.n[dim] = mapping.samples[axis];
    mapping.grid.spacing[dim] = spacing[axis];
    // A cell sample is the centre of its cell, half a spacing past its first point.
    mapping.grid.origin[dim] = origin[axis] + (extent[2 * axis] + (cellData ? 0.5 : 0.0)) * spacing[axis];
    ++dim;
  }
  if (dim < 2) {
    std::ostringstream message;
    message << "The input image has " << (dim == 1 ? "only one axis" : "no axis")
            << " with two or more samples: the flow needs a 2D or 3D image.";
    throw Error(message.str());
  }
  mapping.grid.dim = dim;
  // Unused axes of a 2D grid keep the defaults of Grid (n 1, spacing 1).
  for (int a = dim; a < 3; ++a) {
    mapping.grid.n[a] = 1;
    mapping.grid.spacing[a] = 1;
    mapping.grid.origin[a] = 0;
  }
  int unused = dim;
  for (int axis = 0; axis < 3 && unused < 3; ++axis)
    if (mapping.samples[axis] < 2) mapping.imageAxis[unused++] = axis;
  mapping.grid.validate();
  return mapping;
}

at::Tensor toDensity(vtkDataArray* array, const ImageGridMapping& mapping, const char* role) {
  if (!array) throw Error("No density array was given.");
  if (array->GetNumberOfComponents() != 1) {
    std::ostringstream message;
    message << "The array '" << (array->GetName() ? array->GetName() : "") << "' has " << array->GetNumberOfComponents()
            << " components: choose a scalar (1-component) array as " << role << ".";
    throw Error(message.str());
  }
  if (array->GetNumberOfTuples() != mapping.numSamples()) {
    std::ostringstream message;
    message << "The array '" << (array->GetName() ? array->GetName() : "") << "' has " << array->GetNumberOfTuples()
            << " values but the image has " << mapping.numSamples() << " " << (mapping.cellData ? "cells" : "points")
            << ": choose an array with one value per " << (mapping.cellData ? "cell" : "point") << ".";
    throw Error(message.str());
  }
  auto values = vtkSmartPointer<vtkDoubleArray>::New();
  values->DeepCopy(array);  // converts any numeric type to double
  const at::Tensor vtkOrder =
      at::from_blob(values->GetPointer(0), {mapping.samples[2], mapping.samples[1], mapping.samples[0]}, at::kDouble);
  // (s2, s1, s0) -> (s0, s1, s2), then drop the size-1 image axes.
  return vtkOrder.permute({2, 1, 0}).reshape(mapping.grid.shape()).clone();
}

vtkSmartPointer<vtkDoubleArray> toScalarArray(const at::Tensor& density, const ImageGridMapping& mapping,
                                              const char* name) {
  return fromImageOrder(toImageOrder(density.to(at::kCPU, at::kDouble), mapping), 1, name);
}

vtkSmartPointer<vtkDoubleArray> toVectorArray(const at::Tensor& velocity, const ImageGridMapping& mapping,
                                              const char* name) {
  const at::Tensor v = velocity.to(at::kCPU, at::kDouble);
  at::Tensor full = at::zeros({mapping.samples[0], mapping.samples[1], mapping.samples[2], 3}, at::kDouble);
  for (int a = 0; a < mapping.grid.dim; ++a) full.select(3, mapping.imageAxis[a]).copy_(toImageOrder(v[a], mapping));
  return fromImageOrder(full, 3, name);
}

double availableMemory() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  double kib = 0;
  std::string unit;
  while (meminfo >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  const long pages = sysconf(_SC_AVPHYS_PAGES), pageSize = sysconf(_SC_PAGESIZE);
  return pages > 0 && pageSize > 0 ? static_cast<double>(pages) * pageSize : std::numeric_limits<double>::infinity();
}

std::string describeBytes(double bytes) {
  std::ostringstream out;
  out.precision(3);
  if (bytes >= 1024.0 * 1024 * 1024)
    out << bytes / (1024.0 * 1024 * 1024) << " GiB";
  else
    out << bytes / (1024.0 * 1024) << " MiB";
  return out.str();
}

}  // namespace jko::plugin
