#include "JKOFlowInput.h"

#include <vtkAlgorithm.h>
#include <vtkCellData.h>
#include <vtkDataArray.h>
#include <vtkDataObject.h>
#include <vtkDoubleArray.h>
#include <vtkImageData.h>
#include <vtkInformation.h>
#include <vtkInformationInformationVectorKey.h>
#include <vtkInformationVector.h>
#include <vtkPointData.h>
#include <vtkSmartPointer.h>
#include <vtkType.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include "parallel/Communicator.h"
#include "parallel/DistributedReferenceSolver.h"
#include "parallel/SlabDecomposition.h"

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

bool announcedAssociation(vtkAlgorithm* algorithm, int idx, vtkInformation* inputInfo, bool& cellData) {
  vtkInformationVector* arrays = algorithm->GetInformation()->Get(vtkAlgorithm::INPUT_ARRAYS_TO_PROCESS());
  vtkInformation* selection = arrays ? arrays->GetInformationObject(idx) : nullptr;
  if (!inputInfo || !selection || !selection->Has(vtkDataObject::FIELD_NAME())) return false;
  const std::string name = selection->Get(vtkDataObject::FIELD_NAME());
  const int association = selection->Has(vtkDataObject::FIELD_ASSOCIATION())
                              ? selection->Get(vtkDataObject::FIELD_ASSOCIATION())
                              : vtkDataObject::FIELD_ASSOCIATION_POINTS;
  auto announces = [&](vtkInformationInformationVectorKey* key) {
    vtkInformationVector* announced = inputInfo->Get(key);
    for (int i = 0; announced && i < announced->GetNumberOfInformationObjects(); ++i) {
      vtkInformation* array = announced->GetInformationObject(i);
      if (array->Has(vtkDataObject::FIELD_NAME()) && name == array->Get(vtkDataObject::FIELD_NAME())) return true;
    }
    return false;
  };
  // As selectedArray looks: point data first unless cells were chosen.
  if (association != vtkDataObject::FIELD_ASSOCIATION_CELLS && announces(vtkDataObject::POINT_DATA_VECTOR())) {
    cellData = false;
    return true;
  }
  if (association != vtkDataObject::FIELD_ASSOCIATION_POINTS && announces(vtkDataObject::CELL_DATA_VECTOR())) {
    cellData = true;
    return true;
  }
  return false;
}

void checkDensityValues(const at::Tensor& rho, const Grid& grid, const std::string& name, const Communicator* ranks) {
  // The counts and extremes of this rank's values, then of all ranks' (each
  // rank throws the same error, or none).
  const at::Tensor finite = at::isfinite(rho);
  const at::Tensor finiteValues = rho.masked_select(finite);
  double counts[2] = {static_cast<double>((~finite).sum().item<int64_t>()),
                      static_cast<double>((rho < 0).sum().item<int64_t>())};
  double extremes[2] = {finiteValues.numel() ? -finiteValues.min().item<double>() : -HUGE_VAL,
                        finiteValues.numel() ? finiteValues.max().item<double>() : -HUGE_VAL};
  double sum = finiteValues.sum().item<double>();
  if (ranks) {
    ranks->sum(counts, 2);
    ranks->max(extremes, 2);
    sum = ranks->sum(sum);
  }
  const auto nonFinite = static_cast<int64_t>(counts[0]), negative = static_cast<int64_t>(counts[1]);
  const double minimum = -extremes[0], maximum = extremes[1];
  if (nonFinite > 0) {
    std::ostringstream message;
    message << "The density array '" << name << "' has " << nonFinite
            << " NaN or infinite values: a density must be finite everywhere. Replace them (e.g. with the "
               "Calculator) or choose another array.";
    throw Error(message.str());
  }
  if (negative > 0) {
    std::ostringstream message;
    message << "The density array '" << name << "' has " << negative << " negative values (minimum " << minimum
            << "): a density must be non-negative. Clip it (e.g. Calculator: max(" << name
            << ", 0)) or choose another array.";
    throw Error(message.str());
  }
  const double mass = sum * grid.cellVolume();
  if (std::isinf(mass)) {
    // Finite values whose sum (or the cell volume) overflows: every energy
    // and step of it would be infinite.
    std::ostringstream message;
    message << "The density array '" << name << "' has an infinite mass (maximum " << maximum << ", cell volume "
            << grid.cellVolume()
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
  return fit(grid, rho.sum().item<double>() * grid.cellVolume());
}

UnitBoxScaling UnitBoxScaling::fit(const Grid& grid, double mass) {
  UnitBoxScaling scaling;
  scaling.active = true;
  scaling.length = 0;
  for (int a = 0; a < grid.dim; ++a) {
    scaling.lower[a] = grid.boxLower(a);
    scaling.length = std::max(scaling.length, grid.boxLength(a));
  }
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

// |grad phi|^2 from the axes from `firstAxis` on (central differences
// inside, one-sided at the walls).
at::Tensor gradientSquared(const at::Tensor& phi, const Grid& grid, int firstAxis) {
  at::Tensor squared = at::zeros_like(phi);
  for (int a = firstAxis; a < grid.dim; ++a) {
    const int64_t n = grid.n[a];
    at::Tensor derivative = at::zeros_like(phi);
    derivative.narrow(a, 1, n - 2).copy_((phi.narrow(a, 2, n - 2) - phi.narrow(a, 0, n - 2)) / (2 * grid.spacing[a]));
    derivative.narrow(a, 0, 1).copy_((phi.narrow(a, 1, 1) - phi.narrow(a, 0, 1)) / grid.spacing[a]);
    derivative.narrow(a, n - 1, 1).copy_((phi.narrow(a, n - 1, 1) - phi.narrow(a, n - 2, 1)) / grid.spacing[a]);
    squared = squared + derivative * derivative;
  }
  return squared;
}

// Mass-weighted mean of |grad phi|.
double meanGradientNorm(const at::Tensor& phi, const at::Tensor& rho, const Grid& grid) {
  return (rho * gradientSquared(phi, grid, 0).sqrt()).sum().item<double>() / rho.sum().item<double>();
}

// The same over the slabs of all ranks, phi and rho on this rank's planes:
// along the split axis with one plane of halo.
double meanGradientNorm(const at::Tensor& phi, const at::Tensor& rho, const SlabDecomposition& slabs) {
  const Grid& grid = slabs.grid();
  const SlabDecomposition::Range own = slabs.owned(), window = slabs.window(1);
  const at::Tensor phiWindow = slabs.withHalo(phi.unsqueeze(0).contiguous(), 1)[0];
  std::vector<at::Tensor> planes;
  for (int64_t i = own.lo; i < own.hi; ++i) {
    const int64_t up = std::min(i + 1, grid.n[0] - 1), down = std::max<int64_t>(i - 1, 0);
    planes.push_back((phiWindow[up - window.lo] - phiWindow[down - window.lo]) / ((up - down) * grid.spacing[0]));
  }
  const at::Tensor along = at::stack(planes);
  const at::Tensor squared = gradientSquared(phi, grid, 1) + along * along;
  double sums[2] = {(rho * squared.sqrt()).sum().item<double>(), rho.sum().item<double>()};
  slabs.communicator().sum(sums, 2);
  return sums[0] / sums[1];
}

std::string lengths(const Grid& grid, bool box) {
  std::ostringstream out;
  out.precision(3);
  for (int a = 0; a < grid.dim; ++a) out << (a ? " x " : "") << (box ? grid.boxLength(a) : grid.spacing[a]);
  return out.str();
}

}  // namespace

namespace {

// The warning for a step of length max(sqrt(2 D_eff tau), driftLength).
std::string stepLengthMessage(const EnergySpec& spec, const FlowInput& input, double tau, double diffusivity,
                              double driftLength) {
  const Grid& grid = input.grid;
  const double diffusionLength = std::sqrt(2 * diffusivity * tau);
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

// D_eff: D, or D m rho^(m-1) at the mass-weighted mean density (sums of rho^2 and rho given).
double effectiveDiffusivity(const EnergySpec& spec, double squares, double mass) {
  if (spec.internal == InternalKind::Entropy) return spec.diffusion;
  if (spec.internal == InternalKind::PorousMedium)
    return spec.diffusion * spec.exponent * std::pow(squares / mass, spec.exponent - 1);
  return 0;
}

}  // namespace

std::string stepLengthWarning(const EnergySpec& spec, const FlowInput& input, double tau) {
  const Grid& grid = input.grid;
  const at::Tensor& rho = input.rho0;
  const Energy energy(spec, grid);
  const double diffusivity = effectiveDiffusivity(spec, (rho * rho).sum().item<double>(), rho.sum().item<double>());
  double driftLength = 0;
  if (spec.potential != PotentialKind::None || spec.kernel != KernelKind::None) {
    const at::Tensor batch = rho.unsqueeze(0);
    at::Tensor drift = energy.firstVariation(batch)[0];
    if (spec.internal != InternalKind::None) drift = drift - energy.internalVariation(batch)[0];
    driftLength = tau * meanGradientNorm(drift, rho, grid);
  }
  return stepLengthMessage(spec, input, tau, diffusivity, driftLength);
}

std::string stepLengthWarning(const EnergySpec& spec, const FlowInput& input, double tau,
                              const std::shared_ptr<const Communicator>& ranks) {
  const SlabDecomposition slabs(input.grid, ranks);
  const at::Tensor& rho = input.rho0;
  double sums[2] = {(rho * rho).sum().item<double>(), rho.sum().item<double>()};
  slabs.communicator().sum(sums, 2);
  double driftLength = 0;
  if (spec.potential != PotentialKind::None || spec.kernel != KernelKind::None) {
    const DistributedJkoObjective energy(spec, tau, slabs);
    driftLength = tau * meanGradientNorm(energy.externalVariation(rho)[0], rho, slabs);
  }
  return stepLengthMessage(spec, input, tau, effectiveDiffusivity(spec, sums[0], sums[1]), driftLength);
}

namespace {

// The density array (input array 0), or Error with what to do.
vtkDataArray* densityArray(vtkAlgorithm* algorithm, vtkImageData* image, bool& cellData) {
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
  return array;
}

// V from the Potential Array (input array 1) on the samples of `mapping`
// (the density's, points or cells). Throws Error with what to do.
at::Tensor potentialArrayValues(vtkAlgorithm* algorithm, vtkImageData* image, const ImageGridMapping& mapping) {
  bool potentialCells = false;
  std::string potentialName;
  vtkDataArray* potential = selectedArray(algorithm, 1, image, potentialCells, potentialName);
  if (!potential || potentialName.empty())
    throw Error("Potential is 'From array' but no Potential Array is chosen" +
                (potentialName.empty() ? std::string() : " ('" + potentialName + "' is not on the input)") +
                ": choose a scalar array of the input as the potential V.");
  if (potentialCells != mapping.cellData)
    throw Error("The potential array '" + potentialName + "' is " + (potentialCells ? "cell" : "point") +
                " data but the density is " + (mapping.cellData ? "cell" : "point") +
                " data: choose arrays of the same kind (Point Data To Cell Data converts).");
  at::Tensor values = toDensity(potential, mapping, "the Potential Array");
  if (!at::isfinite(values).all().item<bool>())
    throw Error("The potential array '" + potentialName +
                "' has NaN or infinite values: V must be finite. Replace them (e.g. with the Calculator) or choose "
                "another Potential Array.");
  return values;
}

}  // namespace

FlowInput readFlowInput(vtkAlgorithm* algorithm, vtkImageData* image, bool potentialFromArray, bool fitToUnitBox) {
  FlowInput input;
  bool cellData = false;
  vtkDataArray* array = densityArray(algorithm, image, cellData);
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

  if (potentialFromArray) input.potentialValues = potentialArrayValues(algorithm, image, input.mapping);

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

namespace {

// What the frames of a split rollout read by slabs depend on: the whole
// image's geometry and this rank's planes (one rank's key; the ranks agree
// on starting again).
std::string slabKey(const FlowInput& input, const int wholeExtent[6], vtkImageData* image,
                    const std::shared_ptr<const Communicator>& ranks) {
  const SlabDecomposition slabs(input.grid, ranks);
  const at::Tensor& planes = input.rho0;
  std::ostringstream key;
  key.precision(17);
  for (int a = 0; a < 6; ++a) key << wholeExtent[a] << " ";
  for (int a = 0; a < 3; ++a) key << image->GetOrigin()[a] << " " << image->GetSpacing()[a] << " ";
  key << input.mapping.cellData << " slab " << slabs.rank() << " of " << slabs.ranks() << " " << hashTensor(planes)
      << " " << (input.potentialValues.defined() ? hashTensor(input.potentialValues) : std::string("-")) << " "
      << input.scaling.active;
  return key.str();
}

}  // namespace

FlowInput readFlowSlab(vtkAlgorithm* algorithm, vtkImageData* image, const int wholeExtent[6],
                       const std::shared_ptr<const Communicator>& ranks, bool potentialFromArray, bool fitToUnitBox) {
  FlowInput input;
  bool cellData = false;
  vtkDataArray* array = densityArray(algorithm, image, cellData);  // the same arrays on every rank
  input.arrayName = arrayName(array);
  // The whole image's samples (the flow's grid), and this rank's.
  auto structure = vtkSmartPointer<vtkImageData>::New();
  structure->SetExtent(const_cast<int*>(wholeExtent));
  structure->SetOrigin(image->GetOrigin());
  structure->SetSpacing(image->GetSpacing());
  structure->SetDirectionMatrix(image->GetDirectionMatrix());
  input.mapping = mapImage(structure, cellData);
  input.grid = input.mapping.grid;
  const SlabDecomposition slabs(input.grid, ranks);
  const SlabDecomposition::Range own = slabs.owned();
  // The rank's planes, or the whole image (whose association the request
  // for a slab needed: a rank's first update): every rank goes on alike.
  const ImageGridMapping slab = mapImage(image, cellData);
  const bool whole = std::equal(wholeExtent, wholeExtent + 6, image->GetExtent());
  bool expected = whole || (slab.grid.dim == input.grid.dim && slab.grid.n[0] == own.planes() &&
                            std::abs(slab.grid.origin[0] - (input.grid.origin[0] + own.lo * input.grid.spacing[0])) <=
                                1e-9 * input.grid.spacing[0]);
  for (int a = 1; a < input.grid.dim && !whole; ++a) expected = expected && slab.grid.n[a] == input.grid.n[a];
  if (ranks->max(expected ? 0.0 : 1.0) > 0)
    throw Error("JKO Gradient Flow: the input did not arrive as the slabs of planes the ranks asked for (rank " +
                std::to_string(slabs.rank()) + " asked for planes " + std::to_string(own.lo) + "-" +
                std::to_string(own.hi - 1) + " of " + std::to_string(input.grid.n[0]) + ", got " +
                std::to_string(slab.grid.n[0]) + " planes): put Resample To Image or Pass Arrays before the flow.");
  input.rho0 = samplesOf(array, slab, &input.reduction);
  if (whole) input.rho0 = slabs.own(input.rho0.unsqueeze(0))[0].contiguous();
  checkDensityValues(input.rho0, input.grid, input.arrayName, ranks.get());
  if (fitToUnitBox) {
    // The whole image's box (the mapping's) and mass (summed over the ranks).
    input.scaling =
        UnitBoxScaling::fit(input.grid, ranks->sum(input.rho0.sum().item<double>()) * input.grid.cellVolume());
    input.grid = input.scaling.toUnitBox(input.grid);
    input.rho0 = input.rho0 / input.scaling.density;
  }
  if (potentialFromArray) {
    // The rank's planes of V, read like the density's; what is wrong with
    // it is agreed, so that every rank throws (with its own message, or one
    // that names a rank that found a problem).
    agreeOnFailure(
        *ranks,
        [&] {
          input.potentialValues = potentialArrayValues(algorithm, image, slab);
          if (whole) input.potentialValues = slabs.own(input.potentialValues.unsqueeze(0))[0].contiguous();
        },
        [](int rank) {
          return "The Potential Array of rank " + std::to_string(rank) +
                 "'s planes cannot be used (that rank's message says why).";
        });
  }
  input.slab = true;
  input.key = slabKey(input, wholeExtent, image, ranks);
  return input;
}

}  // namespace jko::plugin
