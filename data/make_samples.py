"""Writes the sample densities of data/samples/ (run with pvpython).

    pvpython data/make_samples.py [--plugin PATH/NeuralJKOFlow.so] [--out data/samples]

Every sample is a point-data array 'density' on a vtkImageData whose nodes
are cell centres of the unit box [0, 1]^d (origin h/2, spacing h = 1/n), the
convention of the JKO Gradient Flow filter. Masses and peak values are chosen
inside the ranges the bundled operators were trained on (see data/README.md):

* barenblatt.vti     64^2, Barenblatt profile of rho_t = Lap rho^2 at
                     t = 0.005, mass 0.02 (the JKO Initial Density source's
                     default, made by the plugin); peak 0.40.
* porous-bumps.vti   64^2, two compact bumps (A - q|x - c|^2)_+ of peaks 0.45
                     and 0.30, mass 0.02: they spread with a sharp front and
                     merge under the porous-medium flow.
* two-bumps.vti      64^2, a mixture of two Gaussians, mass 1: a
                     Fokker-Planck flow in a quadratic well pulls them
                     together into the Gibbs density.
* ring.vti           64^2, a Gaussian ring of radius 0.21, mass 1: an
                     aggregation-diffusion flow contracts it into one blob.
* blobs-3d.vti       32^3, a pair of Gaussian blobs of unequal mass, total
                     mass 1 (for 3D flows by the reference solver).
* torus-3d.vti       32^3, a compact torus (A - q d^2)_+ (d: the distance to
                     a circle of radius 0.27 in the plane z = 0.5), tube
                     radius 0.1, peak 0.3: the 3D porous-medium flow
                     thickens it and fills its hole.

The analytic samples are written from numpy so their shapes are exact and
documented here; the Barenblatt profile comes from the plugin's source so it
is exactly the profile of the exact solutions in core (jko::exact).
"""
import argparse
import os
import sys

import numpy as np
from vtkmodules.util import numpy_support
from vtkmodules.vtkCommonDataModel import vtkImageData
from vtkmodules.vtkIOXML import vtkXMLImageDataWriter

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "examples"))
from jko_examples import plugin_path  # noqa: E402  (the examples' own plugin lookup)


def cell_centres(n, dim):
    """Coordinates of the cell-centred nodes of the unit box, axis order
    (x, y[, z]), each an array of shape (n,) * dim."""
    h = 1.0 / n
    axis = (np.arange(n) + 0.5) * h
    return np.meshgrid(*([axis] * dim), indexing="ij")


def with_mass(shape, mass, dim):
    """Scales a non-negative shape so that sum(rho) * cell volume = mass."""
    n = shape.shape[0]
    return shape * (mass / (shape.sum() * (1.0 / n) ** dim))


def image_from_density(rho):
    """A vtkImageData holding rho (axis order x, y[, z]) on the cell centres
    of the unit box, as the active point scalars 'density'."""
    dim = rho.ndim
    n = rho.shape[0]
    h = 1.0 / n
    data = vtkImageData()
    dims = list(rho.shape) + [1] * (3 - dim)
    data.SetDimensions(*dims)
    data.SetOrigin(*([h / 2] * dim + [0.0] * (3 - dim)))
    data.SetSpacing(*([h] * dim + [1.0] * (3 - dim)))
    # VTK stores x fastest: transpose from (x, y, z) to (z, y, x) order.
    values = np.ascontiguousarray(rho.reshape(dims).transpose(2, 1, 0)).ravel()
    array = numpy_support.numpy_to_vtk(values.astype(np.float64), deep=True)
    array.SetName("density")
    data.GetPointData().SetScalars(array)
    return data


def write_image(data, path):
    """Writes image data as binary VTK XML (.vti), raw and uncompressed."""
    writer = vtkXMLImageDataWriter()
    writer.SetFileName(path)
    writer.SetInputData(data)
    writer.SetDataModeToAppended()
    writer.EncodeAppendedDataOff()
    # Uncompressed raw appended data: the jko CLI reads it as well as ParaView.
    writer.SetCompressorTypeToNone()
    if not writer.Write():
        sys.exit("could not write " + path)
    rho = numpy_support.vtk_to_numpy(data.GetPointData().GetScalars())
    dims = data.GetDimensions()
    volume = np.prod([s for s, d in zip(data.GetSpacing(), dims) if d > 1])
    print("%-40s %s nodes, mass %.4g, peak %.3g, %d bytes"
          % (os.path.relpath(path, ROOT), "x".join(str(d) for d in dims if d > 1), rho.sum() * volume, rho.max(),
             os.path.getsize(path)))


def compact_bump(x, y, centre, radius, peak):
    """The porous-medium (m = 2) profile peak * (1 - |x - c|^2 / r^2)_+: a
    bump with compact support and a sharp front, like a Barenblatt profile."""
    r2 = ((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / radius**2
    return peak * np.clip(1.0 - r2, 0.0, None)


def gaussian(coordinates, centre, sigma):
    """exp(-|x - c|^2 / (2 sigma^2)), unnormalised."""
    r2 = sum((x - c) ** 2 for x, c in zip(coordinates, centre))
    return np.exp(-0.5 * r2 / sigma**2)


def barenblatt_from_plugin(plugin):
    """The JKO Initial Density source's default: Barenblatt profile of
    rho_t = Lap rho^2 at t = 0.005 with mass 0.02 on 64^2 nodes."""
    from paraview import simple

    simple.LoadPlugin(plugin, remote=False, ns=vars(simple))
    source = simple.JKOInitialDensity(Kind="Barenblatt profile", Dimension="2D", GridSize=[64, 64, 64], Mass=0.02,
                                      BarenblattTime=0.005, BarenblattExponent=2, Centre=[0.5, 0.5, 0.5])
    source.UpdatePipeline()
    data = vtkImageData()
    data.DeepCopy(source.GetClientSideObject().GetOutputDataObject(0))
    data.GetFieldData().Initialize()
    return data


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plugin", default=plugin_path(), help="NeuralJKOFlow.so (for the Barenblatt sample)")
    parser.add_argument("--out", default=os.path.join(HERE, "samples"), help="output folder")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    x, y = cell_centres(64, 2)
    # Porous medium: peaks inside the operator's training range 0.05-0.6;
    # the bumps are 0.36 apart and 0.13 wide, so their fronts meet after a
    # few steps and the merged blob stays well inside the box for 40 steps.
    bumps = compact_bump(x, y, (0.32, 0.58), 0.13, 0.45) + compact_bump(x, y, (0.68, 0.42), 0.13, 0.30)
    write_image(image_from_density(with_mass(bumps, 0.02, 2)), os.path.join(args.out, "porous-bumps.vti"))

    # Fokker-Planck: two Gaussians off the well's centre, unequal weights.
    mixture = 1.0 * gaussian((x, y), (0.3, 0.65), 0.07) + 0.6 * gaussian((x, y), (0.7, 0.35), 0.09)
    write_image(image_from_density(with_mass(mixture, 1.0, 2)), os.path.join(args.out, "two-bumps.vti"))

    # Aggregation-diffusion: a ring of the size the operator was trained on
    # (radii 0.12-0.22 of the box, widths 0.03-0.06).
    radius = np.sqrt((x - 0.5) ** 2 + (y - 0.5) ** 2)
    ring = np.exp(-0.5 * (radius - 0.21) ** 2 / 0.04**2)
    write_image(image_from_density(with_mass(ring, 1.0, 2)), os.path.join(args.out, "ring.vti"))

    # 3D: two blobs of unequal mass on 32^3.
    x3, y3, z3 = cell_centres(32, 3)
    blobs = gaussian((x3, y3, z3), (0.33, 0.5, 0.4), 0.08) + 0.5 * gaussian((x3, y3, z3), (0.67, 0.5, 0.6), 0.1)
    write_image(image_from_density(with_mass(blobs, 1.0, 3)), os.path.join(args.out, "blobs-3d.vti"))

    # 3D porous medium: a peak inside the 3D operator's training range
    # (0.03-1); the hole (radius 0.17 inside the tube) closes about half-way
    # through the demo's 20 steps while the outer front stays inside the box.
    ring_distance = np.sqrt((np.sqrt((x3 - 0.5) ** 2 + (y3 - 0.5) ** 2) - 0.27) ** 2 + (z3 - 0.5) ** 2)
    torus = 0.3 * np.clip(1.0 - (ring_distance / 0.1) ** 2, 0.0, None)
    write_image(image_from_density(torus), os.path.join(args.out, "torus-3d.vti"))

    if not args.plugin or not os.path.exists(args.plugin):
        sys.exit("NeuralJKOFlow.so not found (build the plugin, or pass --plugin or set JKO_PLUGIN): "
                 "barenblatt.vti not written")
    write_image(barenblatt_from_plugin(args.plugin), os.path.join(args.out, "barenblatt.vti"))


if __name__ == "__main__":
    main()
