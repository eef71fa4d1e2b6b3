"""Bad input: each case gets one error message that names the problem and
what to do, no crash, and no half-written output (an empty output on a fresh
filter, the last good output after a success)."""
import os
import tempfile

import numpy as np

import jko_plugin_testing as T
from paraview import simple
from vtkmodules.vtkCommonDataModel import vtkImageData

T.load_plugin()
check = T.Check()
# Removed when the interpreter exits.
_scratch = tempfile.TemporaryDirectory(prefix="jko-bad-input-")
scratch = _scratch.name


def bump(n=16, m=12):
    x = (np.arange(n) + 0.5) / n
    y = (np.arange(m) + 0.5) / m
    rho = np.exp(-((x[:, None] - 0.5) ** 2 + (y[None, :] - 0.5) ** 2) / 0.02)
    return rho.reshape(n, m, 1)


def expect_error(label, producer, phrases, configure=None):
    flow = simple.JKOGradientFlow(Input=producer)
    flow.NumberOfSteps = 2
    flow.NumberOfThreads = 2
    if configure:
        configure(flow)
    messages = T.Messages(flow)
    out = T.output(flow, 0.0)
    text = " | ".join(messages.errors)
    check(len(messages.errors) == 1, "%s: one error (%d)" % (label, len(messages.errors)))
    found = all(p.lower() in text.lower() for p in phrases)
    check(found, "%s: message names the problem %s: %s" % (label, phrases, text))
    check(out.GetNumberOfPoints() == 0 and out.GetPointData().GetNumberOfArrays() == 0,
          "%s: no half-written output (%d points)" % (label, out.GetNumberOfPoints()))
    messages.close()
    simple.Delete(flow)


good = bump()
dims = (16, 12, 1)
spacing = (1 / 16, 1 / 12, 1)
origin = (0.5 / 16, 0.5 / 12, 0)

expect_error("no scalar array", T.image({}, dims, origin, spacing),
             ["no point-data scalar", "choose one"])
negative = good.copy()
negative[3, 4, 0] = -0.5
expect_error("negative values", T.image({"rho": negative}, dims, origin, spacing),
             ["'rho'", "1 negative values", "clip"])
nan = good.copy()
nan[5, 5, 0] = np.nan
nan[6, 5, 0] = np.inf
expect_error("NaN values", T.image({"rho": nan}, dims, origin, spacing),
             ["2 NaN or infinite", "replace them"])
expect_error("zero mass", T.image({"rho": 0 * good}, dims, origin, spacing), ["zero mass", "choose another"])
expect_error("a line is not an image to flow on", T.image({"rho": np.ones((16, 1, 1))}, (16, 1, 1)),
             ["only one axis", "2D or 3D image"])

sphere = simple.Sphere()
expect_error("non-image input", sphere, ["vtkPolyData", "not image data", "Resample To Image"])

rotated = T.image({"rho": good}, dims, origin, spacing)
rotated.GetClientSideObject().GetOutputDataObject(0).SetDirectionMatrix(0, -1, 0, 1, 0, 0, 0, 0, 1)
rotated.MarkModified(rotated)
expect_error("rotated image", rotated, ["rotated", "direction matrix", "Resample To Image"])


def configure_cuda(flow):
    flow.Device = "CUDA"


expect_error("CUDA where there is none", T.image({"rho": good}, dims, origin, spacing), ["CUDA", "set Device to CPU"],
             configure_cuda)


def configure_tau(flow):
    flow.TimeStep = -0.01


expect_error("negative tau", T.image({"rho": good}, dims, origin, spacing), ["Time Step", "positive"], configure_tau)


def configure_keller_segel_3d(flow):
    flow.EnergyPreset = "Keller-Segel"


cube = np.ones((8, 8, 8))
expect_error("Keller-Segel in 3D", T.image({"rho": cube}, (8, 8, 8), (0, 0, 0), (0.125,) * 3),
             ["Energy", "keller-segel", "2D only"], configure_keller_segel_3d)

# Frames that would not fit in memory are refused before anything is allocated.
big = simple.JKOInitialDensity()
big.Dimension = "3D"
big.GridSize = [64, 64, 64]
big.UpdatePipeline()


def configure_many_frames(flow):
    flow.NumberOfSteps = 100000


expect_error("frames that do not fit in memory", big, ["100001 frames", "memory", "reduce Number Of Steps"],
             configure_many_frames)


def configure_missing_operator(flow):
    flow.Solver = "Learned operator"
    flow.OperatorFile = os.path.join(scratch, "missing.jko")


expect_error("missing operator file", T.image({"rho": good}, dims, origin, spacing), ["does not exist", "Train"],
             configure_missing_operator)
corrupt = os.path.join(scratch, "corrupt.jko")
with open(corrupt, "wb") as f:
    f.write(b"JKOOPERATOR\x00garbage that is not an operator file" * 10)


def configure_corrupt_operator(flow):
    flow.Solver = "Learned operator"
    flow.OperatorFile = corrupt


expect_error("corrupt operator file", T.image({"rho": good}, dims, origin, spacing), ["cannot be read", "valid operator"],
             configure_corrupt_operator)


def configure_no_operator(flow):
    flow.Solver = "Learned + refine"


expect_error("learned mode without an operator", T.image({"rho": good}, dims, origin, spacing),
             ["no operator is chosen", "Operator File", "Train"], configure_no_operator)

# After a good rollout, an error keeps the last good output.
producer = T.image({"rho": good}, dims, origin, spacing)
flow = simple.JKOGradientFlow(Input=producer)
flow.NumberOfSteps = 2
flow.NumberOfThreads = 2
out = T.output(flow, 0.005)
good_density = T.point_array(out, "density", dims).copy()
messages = T.Messages(flow)
flow.TimeStep = 0
out = T.output(flow, 0.005)
check(len(messages.errors) == 1 and "Time Step" in messages.errors[0], "bad tau after a good run: one error")
kept = T.point_array(out, "density", dims)
check(np.array_equal(kept, good_density) and T.field(out, "RolloutCount") == 1,
      "the last good output is kept after an error")
flow.TimeStep = 0.005
messages.clear()
out = T.output(flow, 0.005)
check(not messages.errors and T.field(out, "RolloutCount") == 2, "fixing the property recovers")
messages.close()

check.finish()
