#include "vtkJKOInitialDensity.h"

#include <c10/util/Exception.h>
#include <vtkDoubleArray.h>
#include <vtkImageData.h>
#include <vtkInformation.h>
#include <vtkInformationVector.h>
#include <vtkObjectFactory.h>
#include <vtkPointData.h>
#include <vtkStreamingDemandDrivenPipeline.h>

#include <cmath>
#include <sstream>

#include "JKOImageConversion.h"
#include "numerics/Errors.h"
#include "numerics/ExactSolutions.h"
#include "numerics/Grid.h"
#include "operator/DensityGenerator.h"

vtkStandardNewMacro(vtkJKOInitialDensity);

namespace {

constexpr const char* kKindNames[] = {"Barenblatt profile",  "Gaussian",    "Gaussian mixture", "compact bumps", "ring",
                                      "smooth random field", "uniform disk"};
// jko::DensityGenerator's names of the random kinds, indexed like Kinds.
constexpr const char* kGeneratorKinds[] = {"barenblatt",   "",    "gaussian-mixture", "bumps", "ring",
                                           "smooth-field", "disk"};

}  // namespace

vtkJKOInitialDensity::vtkJKOInitialDensity() { this->SetNumberOfInputPorts(0); }

vtkJKOInitialDensity::~vtkJKOInitialDensity() = default;

// The grid the properties describe: GridSize cells per axis filling the box.
static jko::Grid sourceGrid(int dim, const int size[3], const double lower[3], const double upper[3]) {
  for (int a = 0; a < dim; ++a) {
    if (size[a] < 2) {
      std::ostringstream message;
      message << "Grid Size along axis " << a << " is " << size[a] << ": use at least 2 nodes per axis.";
      throw jko::Error(message.str());
    }
    if (!(upper[a] > lower[a]) || !std::isfinite(lower[a]) || !std::isfinite(upper[a])) {
      std::ostringstream message;
      message << "The box along axis " << a << " is [" << lower[a] << ", " << upper[a]
              << "]: Box Upper must exceed Box Lower on every axis.";
      throw jko::Error(message.str());
    }
  }
  return jko::Grid::box(dim, {size[0], size[1], size[2]}, {lower[0], lower[1], lower[2]},
                        {upper[0], upper[1], upper[2]});
}

int vtkJKOInitialDensity::RequestInformation(vtkInformation*, vtkInformationVector**,
                                             vtkInformationVector* outputVector) {
  vtkInformation* outInfo = outputVector->GetInformationObject(0);
  int extent[6] = {0, std::max(this->GridSize[0], 1) - 1,
                   0, std::max(this->GridSize[1], 1) - 1,
                   0, this->Dimension == 3 ? std::max(this->GridSize[2], 1) - 1 : 0};
  double spacing[3], origin[3];
  for (int a = 0; a < 3; ++a) {
    const bool used = a < this->Dimension;
    const int cells = std::max(this->GridSize[a], 1);
    // Cell-centred nodes (DESIGN.md §2.2): node i at lower + (i + 1/2) h.
    spacing[a] = used ? (this->BoxUpper[a] - this->BoxLower[a]) / cells : 1.0;
    origin[a] = used ? this->BoxLower[a] + 0.5 * spacing[a] : 0.0;
    if (!(spacing[a] > 0)) spacing[a] = 1;  // reported in RequestData
  }
  outInfo->Set(vtkStreamingDemandDrivenPipeline::WHOLE_EXTENT(), extent, 6);
  outInfo->Set(vtkDataObject::SPACING(), spacing, 3);
  outInfo->Set(vtkDataObject::ORIGIN(), origin, 3);
  vtkDataObject::SetPointDataActiveScalarInfo(outInfo, VTK_DOUBLE, 1);
  return 1;
}

int vtkJKOInitialDensity::RequestData(vtkInformation*, vtkInformationVector**, vtkInformationVector* outputVector) {
  vtkImageData* output = vtkImageData::GetData(outputVector, 0);
  if (!output) return 0;
  output->Initialize();
  try {
    const int dim = this->Dimension;
    const jko::Grid grid = sourceGrid(dim, this->GridSize, this->BoxLower, this->BoxUpper);
    if (!(this->Mass > 0) || !std::isfinite(this->Mass)) {
      std::ostringstream message;
      message << "Mass is " << this->Mass << ": a density needs a positive finite mass.";
      throw jko::Error(message.str());
    }
    const std::array<double, 3> centre{this->Centre[0], this->Centre[1], this->Centre[2]};
    for (int a = 0; a < dim && this->Kind <= GAUSSIAN; ++a)
      if (!std::isfinite(centre[a])) throw jko::Error("Centre must be finite on every axis.");
    // Refused before allocating: the generators hold a few grid-sized
    // temporaries, and the output is copied once more into VTK.
    const double needed = static_cast<double>(grid.numNodes()) * sizeof(double) * 12;
    const double available = jko::plugin::availableMemory();
    if (needed > 0.8 * available) {
      std::ostringstream message;
      message << "Grid Size";
      for (int a = 0; a < dim; ++a) message << (a ? " x " : " ") << grid.n[a];
      message << " needs about " << jko::plugin::describeBytes(needed) << " of memory but only "
              << jko::plugin::describeBytes(available) << " is available: choose a smaller Grid Size.";
      throw jko::Error(message.str());
    }

    at::Tensor rho;
    switch (this->Kind) {
      case BARENBLATT: {
        if (!(this->BarenblattTime > 0) || !std::isfinite(this->BarenblattTime))
          throw jko::Error("Barenblatt Time must be a positive finite number (the time of the Barenblatt solution).");
        if (!(this->BarenblattExponent > 1))
          throw jko::Error("Barenblatt Exponent m must be > 1 (porous medium rho_t = Lap rho^m).");
        const jko::exact::BarenblattProfile profile =
            jko::exact::barenblattSolution(this->BarenblattTime, this->Mass, dim, this->BarenblattExponent, centre);
        rho = jko::exact::density(grid, profile);
        break;
      }
      case GAUSSIAN: {
        jko::exact::Gaussian gaussian;
        gaussian.mean = centre;
        gaussian.mass = this->Mass;
        for (int a = 0; a < 3; ++a) {
          if (a < dim && (!(this->Sigma[a] > 0) || !std::isfinite(this->Sigma[a])))
            throw jko::Error("Sigma must be a positive finite number on every axis of the Gaussian.");
          gaussian.sigma[a] = this->Sigma[a];
        }
        rho = jko::exact::density(grid, gaussian);
        break;
      }
      default: {
        jko::DensityRanges ranges;
        ranges.massMin = ranges.massMax = this->Mass;
        jko::DensityGenerator generator(grid, ranges, static_cast<uint64_t>(this->Seed), {kGeneratorKinds[this->Kind]});
        rho = generator.next(kGeneratorKinds[this->Kind]);
      }
    }
    // Sampled densities lose mass outside the box or to coarse sampling; the
    // Mass property is the discrete mass sum rho |h|.
    const double sampledMass = rho.sum().item<double>() * grid.cellVolume();
    if (!(sampledMass > 0))
      throw jko::Error(std::string("The ") + kKindNames[this->Kind] + " has no mass on this grid: " +
                       (this->Kind <= GAUSSIAN ? "move its centre into the box or enlarge it."
                                               : "use a larger Grid Size or another Seed."));
    rho = rho * (this->Mass / sampledMass);
    if (!at::isfinite(rho).all().item<bool>()) {
      std::ostringstream message;
      message << "Mass " << this->Mass << " makes the " << kKindNames[this->Kind]
              << " overflow double precision: choose a smaller Mass.";
      throw jko::Error(message.str());
    }

    jko::plugin::ImageGridMapping mapping;
    mapping.grid = grid;
    mapping.samples = {grid.n[0], grid.n[1], dim == 3 ? grid.n[2] : 1};
    const int extent[6] = {0, static_cast<int>(grid.n[0]) - 1,
                           0, static_cast<int>(grid.n[1]) - 1,
                           0, dim == 3 ? static_cast<int>(grid.n[2]) - 1 : 0};
    vtkSmartPointer<vtkImageData> image = vtkSmartPointer<vtkImageData>::New();
    image->SetExtent(const_cast<int*>(extent));
    image->SetOrigin(grid.origin[0], grid.origin[1], dim == 3 ? grid.origin[2] : 0.0);
    image->SetSpacing(grid.spacing[0], grid.spacing[1], dim == 3 ? grid.spacing[2] : 1.0);
    vtkSmartPointer<vtkDoubleArray> density = jko::plugin::toScalarArray(rho, mapping, "density");
    image->GetPointData()->SetScalars(density);
    output->ShallowCopy(image);
  } catch (const c10::Error& error) {
    vtkErrorMacro(<< "JKO Initial Density failed: " << error.what_without_backtrace());
  } catch (const std::exception& error) {
    vtkErrorMacro(<< error.what());
  }
  return 1;
}

void vtkJKOInitialDensity::PrintSelf(ostream& os, vtkIndent indent) {
  this->Superclass::PrintSelf(os, indent);
  os << indent << "Kind: " << kKindNames[this->Kind] << "\n";
  os << indent << "Dimension: " << this->Dimension << "\n";
  os << indent << "GridSize: " << this->GridSize[0] << " " << this->GridSize[1] << " " << this->GridSize[2] << "\n";
  os << indent << "BoxLower: " << this->BoxLower[0] << " " << this->BoxLower[1] << " " << this->BoxLower[2] << "\n";
  os << indent << "BoxUpper: " << this->BoxUpper[0] << " " << this->BoxUpper[1] << " " << this->BoxUpper[2] << "\n";
  os << indent << "Mass: " << this->Mass << "\n";
  os << indent << "Centre: " << this->Centre[0] << " " << this->Centre[1] << " " << this->Centre[2] << "\n";
  os << indent << "BarenblattTime: " << this->BarenblattTime << "\n";
  os << indent << "BarenblattExponent: " << this->BarenblattExponent << "\n";
  os << indent << "Sigma: " << this->Sigma[0] << " " << this->Sigma[1] << " " << this->Sigma[2] << "\n";
  os << indent << "Seed: " << this->Seed << "\n";
}
