"""The grid-scale completion and the grid-scale check through the plugin.

A pixel checkerboard on a constant porous-medium state (rho = 1 + 0.1
(-1)^(i+j), m = 2) decays in one exact step by 1 / (1 + tau D_eff 2 pi^2 /
h^2), D_eff = D m rho0^(m-1). The map-form step leaves it as it is (its
response to the grid's highest frequency is zero); with Complete Grid Scale
on, the frame's checkerboard is the exact one within 10%, the mass is kept,
and the frame cache starts again when the property changes. The frame's
GridScaleDefect (field data) says how much of it the map-form frame keeps:
close to the completion's change, above the 2% at which Output Messages
names the frame, and GridScaleCompleted says whether it was damped.

The learned solvers' frames are completed after their steps: a Gaussian
with a pixel checkerboard on it under the bundled Fokker-Planck operator
keeps the checkerboard without Complete Grid Scale (frame 1 named, its
GridScaleDefect above 2%) and loses most of it with it.
"""
import os
import sys

import numpy as np

import jko_plugin_testing as T
from paraview import simple

T.load_plugin()
check = T.Check()

n, D, m, tau = 32, 0.05, 2, 0.005
h = 1.0 / n
i = np.arange(n)
checkerboard = np.cos(np.pi * (i[:, None] + i[None, :]))  # (-1)^(i+j), x fastest: symmetric anyway
rho0 = 1 + 0.1 * checkerboard
producer = T.image({"rho": rho0.reshape(n, n, 1)}, [n, n, 1], [0.5 * h, 0.5 * h, 0], [h, h, 1])

flow = simple.JKOGradientFlow(Input=producer)
flow.Density = ["POINTS", "rho"]
flow.EnergyPreset = "Porous medium"
flow.Exponent = m
flow.Diffusion = D
flow.TimeStep = tau
flow.NumberOfSteps = 1
flow.NumberOfThreads = 2
exact = 1 / (1 + tau * D * m * 2 * np.pi ** 2 / h ** 2)
inner = (slice(n // 8, n - n // 8),) * 2


def factor(out):
    rho1 = T.point_array(out, "density", [n, n, 1], False).reshape(n, n)
    return ((rho1 - 1)[inner] * checkerboard[inner]).sum() / (0.1 * checkerboard[inner] ** 2).sum(), rho1


for complete in (0, 1):
    flow.CompleteGridScale = complete
    out = T.output(flow, tau)
    f, rho1 = factor(out)
    if complete:
        check(abs(f - exact) < 0.1 * exact, "completed: the checkerboard decays by %.4f, the exact step %.4f" % (f, exact))
    else:
        check(f > 0.95, "map-form step: the checkerboard decays by %.4f (the exact step %.4f)" % (f, exact))
    check(abs(rho1.sum() - rho0.sum()) < 1e-10 * rho0.sum(), "completion %d: mass kept" % complete)
    # The map-form frame keeps the checkerboard (amplitude 0.1 on 1): the completion moves 0.1 (1 - exact) of the mass.
    defect, expected = T.field(out, "GridScaleDefect"), 0.1 * (1 - exact)
    check(0.8 * expected < defect < 1.2 * expected and defect > 0.02,
          "completion %d: GridScaleDefect %.4f (the completion's change %.4f)" % (complete, defect, expected))
    check(T.field(out, "GridScaleCompleted") == complete, "completion %d: GridScaleCompleted" % complete)

# The learned operator's frames, completed after the step.
operator = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), "..", "..", "data", "operators",
                        "fokker-planck.jko")
x = (i + 0.5) * h
gaussian = np.exp(-((x[:, None] - 0.45) ** 2 + (x[None, :] - 0.55) ** 2) / (2 * 0.12 ** 2))
noisy = gaussian * (1 + 0.2 * checkerboard)
noisy = noisy / (noisy.sum() * h * h)
image = T.image({"rho": noisy.reshape(n, n, 1)}, [n, n, 1], [0.5 * h, 0.5 * h, 0], [h, h, 1])
learned = simple.JKOGradientFlow(Input=image, Density=["POINTS", "rho"], EnergyPreset="Fokker-Planck", Diffusion=0.1,
                                 Potential="Quadratic", PotentialStrength=[20] * 3, PotentialCentredInBox=1,
                                 TimeStep=0.005, NumberOfSteps=2, NumberOfThreads=2, Solver="Learned operator",
                                 OperatorFile=operator)


def checkerboard_left(out):
    rho1 = T.point_array(out, "density", [n, n, 1], False).reshape(n, n)
    return abs((rho1[inner] * checkerboard[inner]).sum()) / (noisy[inner] * checkerboard[inner]).sum()


left = {}
for complete in (0, 1):
    learned.CompleteGridScale = complete
    out = T.output(learned, 0.005)
    left[complete] = checkerboard_left(out)
    defect = T.field(out, "GridScaleDefect")
    check(defect > 0.02, "learned, completion %d: frame 1's GridScaleDefect %.4f above 2%%" % (complete, defect))
    check(T.field(out, "GridScaleCompleted") == complete, "learned, completion %d: GridScaleCompleted" % complete)
check(left[1] < 0.3 * left[0],
      "learned: the checkerboard left in frame 1, %.3f of it completed against %.3f" % (left[1], left[0]))
check.finish()
