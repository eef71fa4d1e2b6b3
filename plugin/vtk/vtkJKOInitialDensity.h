/**
 * @class   vtkJKOInitialDensity
 * @brief   Initial densities for Wasserstein gradient flows on a 2D or 3D image.
 *
 * Produces a vtkImageData whose point-data array "density" samples one of the
 * densities of jko::exact (a Barenblatt profile, a Gaussian) or of
 * jko::DensityGenerator (Gaussian mixtures, compact bumps, rings, smooth
 * random fields, uniform disks), with the given mass, on `GridSize` nodes per
 * axis filling the box [BoxLower, BoxUpper] (cell-centred nodes, DESIGN.md
 * §2.2). The random kinds are reproducible: they depend only on `Seed`.
 *
 * The default is the Barenblatt solution of rho_t = Lap rho^2 at t = 0.005
 * with mass 0.02 on 64^2 nodes of the unit square: the initial density of
 * the project's "barenblatt-flow" reference case.
 */
#ifndef vtkJKOInitialDensity_h
#define vtkJKOInitialDensity_h

#include "NeuralJKOFlowFiltersModule.h"  // for export macro
#include "vtkImageAlgorithm.h"

class NEURALJKOFLOWFILTERS_EXPORT vtkJKOInitialDensity : public vtkImageAlgorithm {
 public:
  static vtkJKOInitialDensity* New();
  vtkTypeMacro(vtkJKOInitialDensity, vtkImageAlgorithm);
  void PrintSelf(ostream& os, vtkIndent indent) override;

  /// Density kinds, in the order of the panel.
  enum Kinds {
    BARENBLATT = 0,
    GAUSSIAN = 1,
    GAUSSIAN_MIXTURE = 2,
    COMPACT_BUMPS = 3,
    RING = 4,
    SMOOTH_FIELD = 5,
    UNIFORM_DISK = 6
  };

  vtkSetClampMacro(Kind, int, BARENBLATT, UNIFORM_DISK);
  vtkGetMacro(Kind, int);

  /// 2 or 3.
  vtkSetClampMacro(Dimension, int, 2, 3);
  vtkGetMacro(Dimension, int);

  /// Nodes per axis (the third is ignored in 2D).
  vtkSetVector3Macro(GridSize, int);
  vtkGetVector3Macro(GridSize, int);

  /// The closed box the cells fill.
  vtkSetVector3Macro(BoxLower, double);
  vtkGetVector3Macro(BoxLower, double);
  vtkSetVector3Macro(BoxUpper, double);
  vtkGetVector3Macro(BoxUpper, double);

  /// Total mass, sum of rho times the cell volume.
  vtkSetMacro(Mass, double);
  vtkGetMacro(Mass, double);

  /// Centre of the Barenblatt profile and of the Gaussian.
  vtkSetVector3Macro(Centre, double);
  vtkGetVector3Macro(Centre, double);

  /// Barenblatt: rho = t^-alpha (C - k |x - x0|^2 t^(-2 beta))_+^(1/(m-1)).
  vtkSetMacro(BarenblattTime, double);
  vtkGetMacro(BarenblattTime, double);
  vtkSetMacro(BarenblattExponent, double);
  vtkGetMacro(BarenblattExponent, double);

  /// Standard deviation of the Gaussian per axis.
  vtkSetVector3Macro(Sigma, double);
  vtkGetVector3Macro(Sigma, double);

  /// Seed of the random kinds.
  vtkSetMacro(Seed, int);
  vtkGetMacro(Seed, int);

 protected:
  vtkJKOInitialDensity();
  ~vtkJKOInitialDensity() override;

  int RequestInformation(vtkInformation*, vtkInformationVector**, vtkInformationVector*) override;
  int RequestData(vtkInformation*, vtkInformationVector**, vtkInformationVector*) override;

  int Kind = BARENBLATT;
  int Dimension = 2;
  int GridSize[3] = {64, 64, 64};
  double BoxLower[3] = {0, 0, 0};
  double BoxUpper[3] = {1, 1, 1};
  double Mass = 0.02;
  double Centre[3] = {0.5, 0.5, 0.5};
  double BarenblattTime = 0.005;
  double BarenblattExponent = 2;
  double Sigma[3] = {0.08, 0.08, 0.08};
  int Seed = 1;

 private:
  vtkJKOInitialDensity(const vtkJKOInitialDensity&) = delete;
  void operator=(const vtkJKOInitialDensity&) = delete;
};

#endif
