// What a flow starts from, read out of the filter's input image: the density
// array the user chose (or the active scalars), checked with messages that
// say what to do; a colour or vector array reduced to one value per sample;
// the potential array; and, when asked for, the image mapped onto the unit
// box with unit mass (the flow is computed there, the frames go back to the
// image's own geometry and units).
//
// Not wrapped: this header may include ATen.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "JKOImageConversion.h"
#include "numerics/Energy.h"
#include "numerics/Errors.h"
#include "numerics/Grid.h"

class vtkAbstractArray;
class vtkAlgorithm;
class vtkDataArray;
class vtkImageData;
class vtkInformation;

namespace jko {
class Communicator;
}

namespace jko::plugin {

/// The array's name, or "(unnamed)".
std::string arrayName(vtkAbstractArray* array);

/// The array selected as input array `idx` of `algorithm`, and whether it is
/// cell data. Without a selection: the active point scalars, else the active
/// cell scalars. ParaView leaves the index itself as the name when the
/// input's arrays were unknown as the filter was created: that counts as no
/// selection.
vtkDataArray* selectedArray(vtkAlgorithm* algorithm, int idx, vtkImageData* image, bool& cellData,
                            std::string& requestedName);

/// Whether the array selected as input array `idx` of `algorithm` is among
/// the arrays the input's pipeline information announces before any data
/// arrived (vtkDataObject::POINT_DATA_VECTOR / CELL_DATA_VECTOR, which
/// VTK's XML readers fill), and if so whether it is cell data.
bool announcedAssociation(vtkAlgorithm* algorithm, int idx, vtkInformation* inputInfo, bool& cellData);

/// Throws Error unless rho is finite, non-negative, of finite positive mass;
/// with `ranks`, rho is this rank's slab and the figures are all ranks'
/// (every rank throws the same error, or none). Collective then.
void checkDensityValues(const at::Tensor& rho, const Grid& grid, const std::string& name,
                        const Communicator* ranks = nullptr);

/// What to change in the panel for a parameter that core's validation
/// rejects (jko::InvalidParameter::parameter()): "Change Diffusion.", ...
std::string panelRemedy(const InvalidParameter& error);

/// One value per sample of `array` on the mapped image, float64 of the
/// grid's shape. A scalar array is taken as it is. An array of colours
/// (unsigned char with 2-4 components: grey + opacity, RGB, RGBA) gives its
/// luminance 0.2126 R + 0.7152 G + 0.0722 B times the opacity / 255; any other
/// 2- or 3-component array its magnitude. `reduction` then says which (empty
/// for a scalar array). Other arrays are refused with what to do.
at::Tensor samplesOf(vtkDataArray* array, const ImageGridMapping& mapping, std::string* reduction);

/// The change of units of "Fit To Unit Box": lengths x' = (x - lower) / L
/// with L the longest side of the box (the image keeps its shape: its longest
/// side becomes [0, 1]), densities rho' = rho / (M / L^d) so that the mass is 1.
/// Velocities are lengths per time: v = v' L.
struct UnitBoxScaling {
  bool active = false;
  std::array<double, 3> lower{0, 0, 0};  ///< the box's lower corner per grid axis
  double length = 1;                     ///< L
  double density = 1;                    ///< M / L^d: rho = rho' * density

  /// The scaling of the box of `grid` holding `rho` (positive mass).
  static UnitBoxScaling fit(const Grid& grid, const at::Tensor& rho);
  /// The same from the density's mass (a split rollout's, summed over the ranks).
  static UnitBoxScaling fit(const Grid& grid, double mass);
  Grid toUnitBox(const Grid& grid) const;
  /// An image coordinate along grid axis a in the flow's units.
  double toUnitBox(int axis, double x) const { return active ? (x - lower[axis]) / length : x; }
};

/// The flow's starting point.
struct FlowInput {
  ImageGridMapping mapping;  ///< the image's samples, in the image's own units
  Grid grid;                 ///< the grid the flow runs on (mapping.grid, or its unit-box image)
  UnitBoxScaling scaling;
  std::string arrayName;  ///< the density array
  std::string reduction;  ///< how a multi-component array became a density ("" for a scalar one)
  at::Tensor rho0;        ///< float64 CPU, shape of the grid, in the flow's units (or the rank's slab)
  /// rho0 holds this rank's planes of a split rollout (readFlowSlab), not the whole grid.
  bool slab = false;
  at::Tensor potentialValues;  ///< V of the Potential Array (undefined without)
  std::string key;             ///< fingerprint of the geometry, density, potential values and units
};

/// Reads the density (input array 0) and, when `potentialFromArray`, the
/// potential (input array 1) of `image`. Throws Error with what to do.
FlowInput readFlowInput(vtkAlgorithm* algorithm, vtkImageData* image, bool potentialFromArray, bool fitToUnitBox);

/// The same for a split rollout: `image` is this rank's slab of the image
/// (the planes core's SlabDecomposition gives it along the grid's first
/// axis, of an image of extent `wholeExtent`) or the whole image (a first
/// update, before the request for slabs could know the density's
/// association); mapping and grid are the whole image's, rho0 the rank's
/// planes (FlowInput::slab), and so are the potential array's values when
/// `potentialFromArray`; the checks are agreed over the ranks, and Fit To
/// Unit Box takes the mass summed over them. Collective.
FlowInput readFlowSlab(vtkAlgorithm* algorithm, vtkImageData* image, const int wholeExtent[6],
                       const std::shared_ptr<const Communicator>& ranks, bool potentialFromArray, bool fitToUnitBox);

/// What a user of pixel units needs to hear before a rollout: a warning when
/// one step of `energy` at `tau` moves mass by far less than a cell (the
/// frames look still) or by more than half the box ("" otherwise). The
/// step's length is the larger of the diffusion length sqrt(2 D_eff tau)
/// (D_eff = D, or D m rho^(m-1) at the mass-weighted mean density for the
/// porous medium) and tau times the mass-weighted mean drift speed
/// |grad(V + W * rho)|.
std::string stepLengthWarning(const EnergySpec& energy, const FlowInput& input, double tau);
/// The same for a slab (FlowInput::slab) of a split rollout, from sums over
/// the ranks: the same message on every rank. Collective.
std::string stepLengthWarning(const EnergySpec& energy, const FlowInput& input, double tau,
                              const std::shared_ptr<const Communicator>& ranks);

/// 64-bit FNV-1a of a tensor's float64 values, as 16 hex digits.
std::string hashTensor(const at::Tensor& tensor);

}  // namespace jko::plugin
