#include "JKOFlowInput.h"

#include <vtkAlgorithm.h>
#include <vtkCellData.h>
#include <vtkDataArray.h>
#include <vtkDataObject.h>
#include <vtkDoubleArray.h>
#include <vtkImageData.h>
#include <vtkInformation.h>
#include <vtkInformationVector.h>
#include <vtkPointData.h>
#include <vtkType.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

namespace jko::plugin {

std::string arrayName(vtkAbstractArray* array) { return array && array->GetName() ? array->GetName() : "(unnamed)"; }

vtkDataArray* selectedArray(vtkAlgorithm* algorithm, int idx, vtkImageData* image, bool& cellData,
                            std::string& requestedName) {
  cellData = false;
  requestedName.clear();
  vtkInformationVector* arrays = algorithm->GetInformation()->Get(vtkAlgorithm::INPUT_ARRAYS_TO_PROCESS());
  vtkInformation* selection = arrays ? arrays->GetInformationObject(idx) : nullptr;
  const char* name =
      selection && selection->Has(vtkDataObject::FIELD_NAME()) ? selection->Get(vtkDataObject::FIELD_NAME()) : nullptr;
  if (name && name[0] != '\0') {
    requestedName = name;
    const int association = selection->Has(vtkDataObject::FIELD_ASSOCIATION())
                                ? selection->Get(vtkDataObject::FIELD_ASSOCIATION())
                                : vtkDataObject::FIELD_ASSOCIATION_POINTS;
    vtkDataArray* array = nullptr;
    if (association != vtkDataObject::FIELD_ASSOCIATION_CELLS) array = image->GetPointData()->GetArray(name);
    if (!array && association != vtkDataObject::FIELD_ASSOCIATION_POINTS) {
      array = image->GetCellData()->GetArray(name);
      cellData = array != nullptr || association == vtkDataObject::FIELD_ASSOCIATION_CELLS;
    }
    if (array || requestedName != std::to_string(idx)) return array;
    requestedName.clear();
    cellData = false;
  }
  if (vtkDataArray* scalars = image->GetPointData()->GetScalars()) return scalars;
  cellData = image->GetCellData()->GetScalars() != nullptr;
  return image->GetCellData()->GetScalars();
}

void checkDensityValues(const at::Tensor& rho, const Grid& grid, const std::string& name) {
  const int64_t nonFinite = (~at::isfinite(rho)).sum().item<int64_t>();
  if (nonFinite > 0) {
    std::ostringstream message;
    message << "The density array '" << name << "' has " << nonFinite
            << " NaN or infinite values: a density must be finite everywhere. Replace them (e.g. with the "
               "Calculator) or choose another array.";
    throw Error(message.str());
  }
  const int64_t negative = (rho < 0).sum().item<int64_t>();
  if (negative > 0) {
    std::ostringstream message;
    message << "The density array '" << name << "' has " << negative << " negative values (minimum "
            << rho.min().item<double>() << "): a density must be non-negative. Clip it (e.g. Calculator: max(" << name
            << ", 0)) or choose another array.";
    throw Error(message.str());
  }
  const double mass = rho.sum().item<double>() * grid.cellVolume();
  if (std::isinf(mass)) {
    // Finite values whose sum (or the cell volume) overflows: every energy
    // and step of it would be infinite.
    std::ostringstream message;
    message << "The density array '" << name << "' has an infinite mass (maximum " << rho.max().item<double>()
            << ", cell volume " << grid.cellVolume()
            << "): its values or the image's spacing are too large for double precision. Rescale the density (e.g. "
               "with the Calculator) or the image.";
    throw Error(message.str());
  }
  if (!(mass > 0)) {
    std::ostringstream message;
    message << "The density array '" << name
            << "' has zero mass (it is zero everywhere): a gradient flow needs a positive density somewhere. "
               "Choose another array or time step of the input.";
    throw Error(message.str());
  }
}

std::string panelRemedy(const InvalidParameter& error) {
  static const std::map<std::string, std::string> properties = {
      {"D", "Diffusion"},
      {"m", "Exponent"},
      {"attraction", "Attraction"},
      {"repulsion", "Repulsion"},
      {"attractive power", "Attractive Power"},
      {"repulsive power", "Repulsive Power"},
      {"potential strength", "Potential Strength"},
      {"potential centre", "Potential Centre"},
      {"well depth", "Well Depth"},
      {"well half-width", "Well Half Width"},
      {"rounds", "Training Rounds"},
      {"epochs", "Training Epochs"},
      {"batch", "Training Batch Size"},
      {"learning rate", "Training Learning Rate"},
      {"horizon", "Training Horizon"},
      {"generated densities", "Generated Densities"},
      {"validation densities", "Validation Densities"},
      {"maximum seconds", "Maximum Training Seconds"},
      {"tau", "Time Step"},
      {"device", "Device"},
  };
  if (error.parameter() == "kernel") return "Choose another Energy Preset, or a 2D input.";
  if (error.parameter() == "training grid")
    return "Training runs on the input's grid: resample the input (Resample To Image) to 8-1024 samples per axis.";
  const auto found = properties.find(error.parameter());
  return found != properties.end() ? "Change " + found->second + "." : std::string();
}

at::Tensor samplesOf(vtkDataArray* array, const ImageGridMapping& mapping, std::string* reduction) {
  if (reduction) reduction->clear();
  const int components = array ? array->GetNumberOfComponents() : 1;
  if (components == 1) return toDensity(array, mapping);
  const std::string name = arrayName(array);
  const bool colours = array->GetDataType() == VTK_UNSIGNED_CHAR && components <= 4;
  if (!colours && components > 3) {
    std::ostringstream message;
    message << "The array '" << name << "' has " << components
            << " components: choose a scalar array as the density, or make one with the Calculator (e.g. " << name
            << "_X for one component, or mag(" << name << ")).";
    throw Error(message.str());
  }
  if (array->GetNumberOfTuples() != mapping.numSamples()) {
    // toDensity says it for scalar arrays; the same message for the others.
    std::ostringstream message;
    message << "The array '" << name << "' has " << array->GetNumberOfTuples() << " values but the image has "
            << mapping.numSamples() << " " << (mapping.cellData ? "cells" : "points")
            << ": choose an array with one value per " << (mapping.cellData ? "cell" : "point") << ".";
    throw Error(message.str());
  }
  auto reduced = vtkSmartPointer<vtkDoubleArray>::New();
  reduced->SetName(array->GetName());
  reduced->SetNumberOfTuples(array->GetNumberOfTuples());
  std::vector<double> tuple(components);
  // ITU-R BT.709 luma weights (the sRGB primaries of PNG and JPEG pictures).
  constexpr double kRed = 0.2126, kGreen = 0.7152, kBlue = 0.0722;
  for (vtkIdType i = 0; i < array->GetNumberOfTuples(); ++i) {
    array->GetTuple(i, tuple.data());
    double value = 0;
    if (colours) {
      const double grey = components <= 2 ? tuple[0] : kRed * tuple[0] + kGreen * tuple[1] + kBlue * tuple[2];
      const double opacity = components == 2 || components == 4 ? tuple[components - 1] / 255.0 : 1.0;
      value = grey * opacity;
    } else {
      for (double c : tuple) value += c * c;
      value = std::sqrt(value);
    }
    reduced->SetValue(i, value);
  }
  if (reduction) {
    if (!colours)
      *reduction = "its magnitude";
    else if (components == 2)
      *reduction = "its grey value times its opacity / 255";
    else if (components == 3)
      *reduction = "its luminance 0.2126 R + 0.7152 G + 0.0722 B";
    else
      *reduction = "its luminance 0.2126 R + 0.7152 G + 0.0722 B times its opacity A / 255";
  }
  return toDensity(reduced, mapping);
}

UnitBoxScaling UnitBoxScaling::fit(const Grid& grid, const at::Tensor& rho) {
  UnitBoxScaling scaling;
  scaling.active = true;
  scaling.length = 0;
  for (int a = 0; a < grid.dim; ++a) {
    scaling.lower[a] = grid.boxLower(a);
    scaling.length = std::max(scaling.length, grid.boxLength(a));
  }
  const double mass = rho.sum().item<double>() * grid.cellVolume();
  scaling.density = mass / std::pow(scaling.length, grid.dim);
  return scaling;
}

Grid UnitBoxScaling::toUnitBox(const Grid& grid) const {
  if (!active) return grid;
  Grid unit = grid;
  for (int a = 0; a < grid.dim; ++a) {
    unit.spacing[a] = grid.spacing[a] / length;
    unit.origin[a] = (grid.origin[a] - lower[a]) / length;
  }
  return unit;
}

std::string hashTensor(const at::Tensor& tensor) {
  const at::Tensor values = tensor.to(at::kCPU, at::kDouble).contiguous();
  const auto* bytes = reinterpret_cast<const unsigned char*>(values.data_ptr<double>());
  uint64_t hash = 1469598103934665603ull;  // FNV-1a, 64 bit
  for (size_t i = 0; i < sizeof(double) * static_cast<size_t>(values.numel()); ++i) {
    hash ^= bytes[i];
    hash *= 1099511628211ull;
  }
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(hash));
  return text;
}

namespace {

// Mass-weighted mean of |grad phi| (central differences inside, one-sided at
// the walls).
double meanGradientNorm(const at::Tensor& phi, const at::Tensor& rho, const Grid& grid) {
  at::Tensor squared = at::zeros_like(phi);
  for (int a = 0; a < grid.dim; ++a) {
    const int64_t n = grid.n[a];
    at::Tensor derivative = at::zeros_like(phi);
    derivative.narrow(a, 1, n - 2).copy_((phi.narrow(a, 2, n - 2) - phi.narrow(a, 0, n - 2)) / (2 * grid.spacing[a]));
    derivative.narrow(a, 0, 1).copy_((phi.narrow(a, 1, 1) - phi.narrow(a, 0, 1)) / grid.spacing[a]);
    derivative.narrow(a, n - 1, 1).copy_((phi.narrow(a, n - 1, 1) - phi.narrow(a, n - 2, 1)) / grid.spacing[a]);
    squared = squared + derivative * derivative;
  }
  return (rho * squared.sqrt()).sum().item<double>() / rho.sum().item<double>();
}

std::string lengths(const Grid& grid, bool box) {
  std::ostringstream out;
  out.precision(3);
  for (int a = 0; a < grid.dim; ++a) out << (a ? " x " : "") << (box ? grid.boxLength(a) : grid.spacing[a]);
  return out.str();
}

}  // namespace

std::string stepLengthWarning(const EnergySpec& spec, const FlowInput& input, double tau) {
  const Grid& grid = input.grid;
  const at::Tensor& rho = input.rho0;
  const Energy energy(spec, grid);
  double diffusivity = 0;
  if (spec.internal == InternalKind::Entropy) diffusivity = spec.diffusion;
  if (spec.internal == InternalKind::PorousMedium) {
    const double typical = (rho * rho).sum().item<double>() / rho.sum().item<double>();
    diffusivity = spec.diffusion * spec.exponent * std::pow(typical, spec.exponent - 1);
  }
  const double diffusionLength = std::sqrt(2 * diffusivity * tau);
  double driftLength = 0;
  if (spec.potential != PotentialKind::None || spec.kernel != KernelKind::None) {
    const at::Tensor batch = rho.unsqueeze(0);
    at::Tensor drift = energy.firstVariation(batch)[0];
    if (spec.internal != InternalKind::None) drift = drift - energy.internalVariation(batch)[0];
    driftLength = tau * meanGradientNorm(drift, rho, grid);
  }
  const double length = std::max(diffusionLength, driftLength);
  double cell = grid.spacing[0], box = grid.boxLength(0);
  for (int a = 1; a < grid.dim; ++a) {
    cell = std::min(cell, grid.spacing[a]);
    box = std::min(box, grid.boxLength(a));
  }
  if (!std::isfinite(length) || !(length > 0)) return "";
  std::ostringstream why;
  why.precision(3);
  if (diffusionLength >= driftLength)
    why << "the diffusion length sqrt(2 D_eff tau) = " << diffusionLength << " with D_eff = " << diffusivity
        << (spec.internal == InternalKind::PorousMedium ? " (D m rho^(m-1) at the typical density)" : "")
        << ", tau = " << tau;
  else
    why << "tau times the mean drift speed |grad(V + W * rho)| = " << driftLength;
  std::ostringstream message;
  message.precision(3);
  const std::string units = input.scaling.active ? "on the unit box" : "in the image's units";
  if (length < 0.2 * cell) {
    message << "JKO Gradient Flow: a step moves mass by about " << length / cell << " of a cell (" << why.str()
            << ", cells " << lengths(grid, false) << " " << units << "): the frames will look still. Raise Time Step "
            << "or the energy's parameters";
    if (!input.scaling.active)
      message << ", or turn on Fit To Unit Box (the image's box is " << lengths(grid, true)
              << " in its own units; the presets' parameters are meant for a box of about 1 and a mass of about 1)";
    message << ".";
  } else if (length > 0.5 * box) {
    message << "JKO Gradient Flow: a step moves mass by about " << length << ", more than half the box ("
            << lengths(grid, true) << " " << units << "; " << why.str()
            << "): the first frames jump towards the steady state. Lower Time Step or the energy's parameters"
            << (input.scaling.active ? "" : ", or turn on Fit To Unit Box when the image's units are large") << ".";
  }
  return message.str();
}

FlowInput readFlowInput(vtkAlgorithm* algorithm, vtkImageData* image, bool potentialFromArray, bool fitToUnitBox) {
  FlowInput input;
  bool cellData = false;
  std::string requested;
  vtkDataArray* array = selectedArray(algorithm, 0, image, cellData, requested);
  if (!array) {
    if (!requested.empty())
      throw Error("The input has no " + std::string(cellData ? "cell" : "point") + "-data array named '" + requested +
                  "': choose an existing array as the Density.");
    throw Error(
        "The input has no point-data scalar array to use as the density: choose one as the Density, or add one "
        "(e.g. with the Calculator or JKO Initial Density).");
  }
  input.arrayName = arrayName(array);
  input.mapping = mapImage(image, cellData);
  at::Tensor rho = samplesOf(array, input.mapping, &input.reduction);
  checkDensityValues(rho, input.mapping.grid, input.arrayName);
  input.grid = input.mapping.grid;
  if (fitToUnitBox) {
    input.scaling = UnitBoxScaling::fit(input.grid, rho);
    input.grid = input.scaling.toUnitBox(input.grid);
    rho = rho / input.scaling.density;
  }
  input.rho0 = rho;

  if (potentialFromArray) {
    bool potentialCells = false;
    std::string potentialName;
    vtkDataArray* potential = selectedArray(algorithm, 1, image, potentialCells, potentialName);
    if (!potential || potentialName.empty())
      throw Error("Potential is 'From array' but no Potential Array is chosen" +
                  (potentialName.empty() ? std::string() : " ('" + potentialName + "' is not on the input)") +
                  ": choose a scalar array of the input as the potential V.");
    if (potentialCells != cellData)
      throw Error("The potential array '" + potentialName + "' is " + (potentialCells ? "cell" : "point") +
                  " data but the density is " + (cellData ? "cell" : "point") +
                  " data: choose arrays of the same kind (Point Data To Cell Data converts).");
    input.potentialValues = toDensity(potential, input.mapping, "the Potential Array");
    if (!at::isfinite(input.potentialValues).all().item<bool>())
      throw Error("The potential array '" + potentialName +
                  "' has NaN or infinite values: V must be finite. Replace them (e.g. with the Calculator) or choose "
                  "another Potential Array.");
  }

  std::ostringstream key;
  key.precision(17);
  int extent[6];
  image->GetExtent(extent);
  for (int value : extent) key << value << " ";
  for (int a = 0; a < 3; ++a) key << image->GetOrigin()[a] << " " << image->GetSpacing()[a] << " ";
  key << cellData << " " << hashTensor(input.rho0) << " "
      << (input.potentialValues.defined() ? hashTensor(input.potentialValues) : std::string("-")) << " "
      << fitToUnitBox;
  input.key = key.str();
  return input;
}

}  // namespace jko::plugin
