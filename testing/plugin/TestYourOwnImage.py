"""A picture as a newcomer opens it (README, "Your own image"): a PNG read by
ParaView's PNG reader (RGB, unsigned char, spacing 1 per pixel, values
0-255), the filter created from Python before the reader ran.

* Density defaults to the picture's array, and its colours become the
  luminance (RGBA: times the opacity; a float vector: its magnitude), with a
  warning saying so;
* in pixel units the default heat step moves mass by 0.1 pixel: a warning
  says the frames will look still and names Fit To Unit Box; a step longer
  than half the box is said too;
* Fit To Unit Box computes the flow on the unit box with unit mass and gives
  the frames back in the picture's geometry and units: they equal a flow
  computed on a hand-scaled copy, scaled back.
"""
import os
import tempfile

import numpy as np

import jko_plugin_testing as T
from paraview import simple
from vtkmodules.util import numpy_support
from vtkmodules.vtkCommonDataModel import vtkImageData
from vtkmodules.vtkIOImage import vtkPNGWriter

T.load_plugin()
check = T.Check()
_scratch = tempfile.TemporaryDirectory(prefix="jko-own-image-")
scratch = _scratch.name

# A 40 x 30 picture: a warm disk and a cool bar on black.
NX, NY = 40, 30
x, y = np.meshgrid(np.arange(NX), np.arange(NY), indexing="ij")
rgb = np.zeros((NX, NY, 3), dtype=np.uint8)
rgb[(x - 14) ** 2 + (y - 15) ** 2 < 8 ** 2] = [250, 180, 40]
rgb[26:34, 5:25] = [30, 120, 220]
LUMINANCE = 0.2126 * rgb[..., 0] + 0.7152 * rgb[..., 1] + 0.0722 * rgb[..., 2]


def png(path, pixels):
    """Writes pixels (nx, ny, components) as a PNG with VTK's writer."""
    image = vtkImageData()
    image.SetDimensions(pixels.shape[0], pixels.shape[1], 1)
    flat = np.ascontiguousarray(pixels.transpose(1, 0, 2)).reshape(-1, pixels.shape[2])
    array = numpy_support.numpy_to_vtk(flat, deep=True, array_type=numpy_support.get_vtk_array_type(np.uint8))
    array.SetName("PNGImage")
    image.GetPointData().SetScalars(array)
    writer = vtkPNGWriter()
    writer.SetFileName(path)
    writer.SetInputData(image)
    writer.Write()


def warnings_with(messages, phrase):
    return [m for m in messages.warnings if phrase in m]


# 1. The PNG, as File > Open reads it; the filter made before the reader ran.
picture = os.path.join(scratch, "logo.png")
png(picture, rgb)
reader = simple.PNGSeriesReader(FileNames=[picture])
flow = simple.JKOGradientFlow(Input=reader)
check(list(flow.Density) == ["POINTS", "PNGImage"], "Density defaults to the picture's array: %s" % list(flow.Density))
flow.EnergyPreset = "Fokker-Planck"
flow.NumberOfSteps = 2
flow.NumberOfThreads = 2
messages = T.Messages(flow)
out = T.output(flow, 0.0)
density = T.point_array(out, "density", (NX, NY, 1))[:, :, 0]
check(not messages.errors and np.abs(density - LUMINANCE).max() < 1e-9,
      "the density is the luminance (%s)" % messages.errors)
check(len(warnings_with(messages, "the density is its luminance 0.2126 R + 0.7152 G + 0.0722 B")) == 1,
      "a warning names the reduction: %s" % messages.warnings)
still = warnings_with(messages, "the frames will look still")
check(len(still) == 1 and "Fit To Unit Box" in still[0] and "0.1 of a cell" in still[0]
      and "40 x 30" in still[0], "pixel units: a warning that the frames will look still: %s" % still)

# 2. Fit To Unit Box: no such warning; the frames come back in the picture's units.
messages.clear()
flow.FitToUnitBox = 1
flow.NumberOfSteps = 3
# A mild step (0.6 cells): L-BFGS converges tightly, so that two solves of
# the same problem agree to 1e-6 (a sharp picture under D = 1 takes ~300
# iterations per step and stops where round-off leads it).
flow.Diffusion = 0.05
fitted = [T.output(flow, k * 0.005) for k in range(4)]
check(not messages.errors and not warnings_with(messages, "look still"),
      "on the unit box the step is long enough: %s" % messages.warnings)
mass = LUMINANCE.sum()  # spacing 1
L = 40.0
origin, spacing = fitted[0].GetOrigin(), fitted[0].GetSpacing()
check(origin == (0.0, 0.0, 0.0) and spacing == (1.0, 1.0, 1.0) and fitted[0].GetDimensions() == (NX, NY, 1),
      "the frames keep the picture's geometry: origin %s, spacing %s" % (origin, spacing))
check(abs(T.field(fitted[0], "Mass") - 1) < 1e-12 and abs(T.field(fitted[3], "Mass") - 1) < 1e-12,
      "the table's mass is the unit box's: %.15f" % T.field(fitted[3], "Mass"))
check(abs(T.field(fitted[0], "UnitBoxLength") - L) < 1e-12
      and abs(T.field(fitted[0], "UnitBoxDensity") - mass / L**2) < 1e-9 * mass,
      "field data gives the scales (L %g, density %g)" % (T.field(fitted[0], "UnitBoxLength"),
                                                          T.field(fitted[0], "UnitBoxDensity")))
frame0 = T.point_array(fitted[0], "density", (NX, NY, 1))[:, :, 0]
check(np.abs(frame0 - LUMINANCE).max() < 1e-9 * LUMINANCE.max(), "frame 0 is the picture in its own units")

# The same flow by hand: the picture scaled onto the unit box with unit mass.
scaled = T.image({"rho": (LUMINANCE / (mass / L**2)).reshape(NX, NY, 1)}, (NX, NY, 1),
                 (0.5 / L, 0.5 / L, 0), (1 / L, 1 / L, 1))
by_hand = simple.JKOGradientFlow(Input=scaled)
by_hand.EnergyPreset = "Fokker-Planck"
by_hand.Diffusion = 0.05
by_hand.NumberOfSteps = 3
by_hand.NumberOfThreads = 2
worst_density = worst_velocity = 0
for k in range(1, 4):
    reference = T.output(by_hand, k * 0.005)
    expected = T.point_array(reference, "density", (NX, NY, 1)) * (mass / L**2)
    got = T.point_array(fitted[k], "density", (NX, NY, 1))
    worst_density = max(worst_density, np.abs(got - expected).max() / expected.max())
    expected_v = T.point_array(reference, "velocity", (NX, NY, 1)) * L
    got_v = T.point_array(fitted[k], "velocity", (NX, NY, 1))
    worst_velocity = max(worst_velocity, np.abs(got_v - expected_v).max() / np.abs(expected_v).max())
check(worst_density < 1e-6 and worst_velocity < 1e-5,
      "the frames are the unit-box flow scaled back (densities %.1e, velocities %.1e)"
      % (worst_density, worst_velocity))
check(np.abs(T.point_array(fitted[3], "density", (NX, NY, 1)) - frame0[:, :, None]).max() > 0.01 * LUMINANCE.max(),
      "and they move visibly")
messages.close()

# 3. A step longer than half the box.
long_step = simple.JKOGradientFlow(Input=reader, EnergyPreset="Fokker-Planck", TimeStep=2000.0, NumberOfSteps=1,
                                   NumberOfThreads=2)
long_messages = T.Messages(long_step)
T.output(long_step, 0.0)
jump = warnings_with(long_messages, "more than half the box")
check(len(jump) == 1 and "Lower Time Step" in jump[0], "a step across the box is said: %s" % jump)
long_messages.close()

# 4. RGBA: luminance times opacity; a float vector: its magnitude.
rgba = np.concatenate([rgb, np.full((NX, NY, 1), 255, np.uint8)], axis=2)
rgba[:20, :, 3] = 51  # a fifth opaque on the left
png(os.path.join(scratch, "rgba.png"), rgba)
rgba_reader = simple.PNGSeriesReader(FileNames=[os.path.join(scratch, "rgba.png")])
rgba_flow = simple.JKOGradientFlow(Input=rgba_reader, EnergyPreset="Fokker-Planck", NumberOfSteps=1,
                                   NumberOfThreads=2)
rgba_messages = T.Messages(rgba_flow)
got = T.point_array(T.output(rgba_flow, 0.0), "density", (NX, NY, 1))[:, :, 0]
opacity = rgba[..., 3] / 255.0
check(np.abs(got - LUMINANCE * opacity).max() < 1e-9 and
      warnings_with(rgba_messages, "times its opacity A / 255"), "RGBA: luminance times opacity")
rgba_messages.close()

vectors = np.stack([3 * np.ones((NX, NY)), 4 * (1 + x / NX)], axis=-1)
vector_image = T.image({"w": np.ones((NX, NY, 1))}, (NX, NY, 1))
data = vector_image.GetClientSideObject().GetOutputDataObject(0)
flat = np.ascontiguousarray(vectors.transpose(1, 0, 2)).reshape(-1, 2)
array = numpy_support.numpy_to_vtk(flat, deep=True)
array.SetName("flux")
data.GetPointData().AddArray(array)
vector_flow = simple.JKOGradientFlow(Input=vector_image, Density=["POINTS", "flux"], EnergyPreset="Fokker-Planck",
                                     NumberOfSteps=1, NumberOfThreads=2)
vector_messages = T.Messages(vector_flow)
got = T.point_array(T.output(vector_flow, 0.0), "density", (NX, NY, 1))[:, :, 0]
check(np.abs(got - np.hypot(vectors[..., 0], vectors[..., 1])).max() < 1e-12
      and warnings_with(vector_messages, "the density is its magnitude"), "a vector array: its magnitude")
vector_messages.close()

check.finish()
