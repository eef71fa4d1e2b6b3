"""A learned 3D rollout in the filter with the bundled 3D porous-medium
operator (data/operators/porous-medium-3d.jko): frames of a 3D density on a
grid coarser than the operator's training grid, the mass kept, the energy
never rising unless the frame is flagged, frames kept (a second update of a
frame computes nothing), and Auto on the same density."""
import os

import numpy as np

import jko_plugin_testing as T
from paraview import simple
from vtkmodules.vtkCommonCore import vtkCommand

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OPERATOR = os.path.join(ROOT, "data", "operators", "porous-medium-3d.jko")
N, STEPS = 20, 4

T.load_plugin()
check = T.Check()

# Two compact bumps with a peak inside the operator's trained peaks (0.03-1).
source = simple.JKOInitialDensity(Kind="Compact bumps", Dimension="3D", GridSize=[N, N, N], Mass=0.0015, Seed=3)
source.UpdatePipeline()
peak = source.GetClientSideObject().GetOutputDataObject(0).GetPointData().GetArray("density").GetRange()[1]
check(0.03 <= peak <= 1.0, "the initial density's peak %.3g lies in the operator's trained range" % peak)

flow = simple.JKOGradientFlow(Input=source)
flow.Solver = "Learned operator"
flow.OperatorFile = OPERATOR
flow.NumberOfSteps = STEPS
flow.NumberOfThreads = 2
flow.UpdatePipelineInformation()
times = list(flow.TimestepValues)
check(len(times) == STEPS + 1, "%d frames on the time axis" % len(times))

texts = []
flow.GetClientSideObject().AddObserver(
    vtkCommand.ProgressEvent, lambda caller, event: texts.append(caller.GetProgressText() or ""))


def steps_computed():
    """The JKO steps whose progress was reported since the last call."""
    done = sorted({int(t.split()[2]) for t in texts if t.startswith("JKO step ")})
    texts.clear()
    return done


messages = T.Messages(flow)
shape = (N, N, N)
cell = (1.0 / N) ** 3
frames = [T.output(flow, t) for t in times]
check(not messages.errors, "no error: %s" % messages.errors)
check(steps_computed() == list(range(1, STEPS + 1)), "the rollout computed steps 1-%d once each" % STEPS)
check(T.field(frames[-1], "Solver") == "Learned operator" and T.field(frames[-1], "OperatorFile") == OPERATOR,
      "the frames are the 3D operator's")
densities = [T.point_array(data, "density", shape).copy() for data in frames]
mass0 = densities[0].sum() * cell
for k, rho in enumerate(densities):
    drift = abs(rho.sum() * cell - mass0) / mass0
    check(drift < 1e-12 and rho.min() >= 0,
          "frame %d keeps the mass (relative change %.1e) and positivity" % (k, drift))
check(np.abs(densities[-1] - densities[0]).sum() > 0.05 * np.abs(densities[0]).sum(),
      "the density moves: frame %d is %.1f%% from frame 0" % (
          STEPS, 100 * np.abs(densities[-1] - densities[0]).sum() / densities[0].sum()))
velocity = T.point_array(frames[1], "velocity", shape)
check(velocity.shape == shape + (3,) and np.abs(velocity[..., 2]).max() > 0,
      "frame 1 has a 3D velocity (its z component is not zero)")

table = T.output(flow, times[-1], port=1)
energy = [table.GetValueByName(k, "Energy").ToDouble() for k in range(STEPS + 1)]
flagged = [table.GetValueByName(k, "Flagged").ToInt() for k in range(STEPS + 1)]
certificates = [table.GetValueByName(k, "Certificate").ToDouble() for k in range(1, STEPS + 1)]
for k in range(1, STEPS + 1):
    check(energy[k] <= energy[k - 1] or flagged[k] == 1,
          "frame %d: energy %.6g after %.6g, %s" % (k, energy[k], energy[k - 1],
                                                  "flagged" if flagged[k] else "not flagged"))
check(all(np.isfinite(c) and c >= 0 for c in certificates),
      "every learned frame has a certificate: %s" % ", ".join("%.2g" % c for c in certificates))

# Frames are kept: showing them again computes no step and no new rollout.
rollouts = T.field(T.output(flow, times[-1]), "RolloutCount")
again = T.output(flow, times[-1])
middle = T.output(flow, times[2])
check(steps_computed() == [], "a second update of frames %d and 2 computed no step" % STEPS)
check(T.field(again, "RolloutCount") == rollouts == 1 and T.field(middle, "RolloutCount") == 1,
      "one rollout (RolloutCount %d)" % T.field(again, "RolloutCount"))
check(np.array_equal(T.point_array(again, "density", shape), densities[-1]), "the kept frame is the same frame")

# Auto: the same operator's steps, certified, refined where they fail.
flow.Solver = "Auto"
auto = [T.output(flow, t) for t in times[:3]]
table = T.output(flow, times[2], port=1)
for k in (1, 2):
    rho = T.point_array(auto[k], "density", shape)
    refined = table.GetValueByName(k, "Refined").ToInt()
    check(abs(rho.sum() * cell - mass0) < 1e-12 * mass0 and table.GetValueByName(k, "Flagged").ToInt() == 0,
          "Auto frame %d keeps the mass and is certified (%s, certificate %.2g)"
          % (k, "refined" if refined else "learned", table.GetValueByName(k, "Certificate").ToDouble()))
check(not messages.errors, "no error under Auto: %s" % messages.errors)
check.finish()
