"""A learned 3D rollout in the filter with the bundled 3D porous-medium
operator (data/operators/porous-medium-3d.jko): frames of a 3D density on a
grid coarser than the operator's training grid, the mass kept, the energy
never rising unless the frame is flagged, frames kept (a second update of a
frame computes nothing), and Auto on the same density; then the bundled 3D
Fokker-Planck operator (data/operators/fokker-planck-3d.jko) on a Gaussian
mixture in its quadratic well, and at ten times the largest mass it was
trained on (the step's map does not depend on the mass: the operator steps
the density rescaled into its range, so the frames are those of the largest
mass, times 10)."""
import json
import os
import struct

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

# The 3D Fokker-Planck operator: D = 0.1, V = 20 |x - c|^2 / 2, masses 0.5-2.
FP_OPERATOR = os.path.join(ROOT, "data", "operators", "fokker-planck-3d.jko")


def fokker_planck(mass):
    blobs = simple.JKOInitialDensity(Kind="Gaussian mixture", Dimension="3D", GridSize=[N, N, N], Mass=mass, Seed=2)
    return simple.JKOGradientFlow(Input=blobs, EnergyPreset="Fokker-Planck", Diffusion=0.1, Potential="Quadratic",
                                  PotentialStrength=[20, 20, 20], PotentialCentredInBox=1, Solver="Learned operator",
                                  OperatorFile=FP_OPERATOR, NumberOfSteps=3, NumberOfThreads=2)


with open(FP_OPERATOR, "rb") as f:  # magic, version, metadata length, metadata (JSON)
    header = f.read(20)
    largest_mass = json.loads(f.read(struct.unpack("<Q", header[12:20])[0]))["ranges"]["mass_max"]
fp = fokker_planck(largest_mass)
fp_messages = T.Messages(fp)
fp.UpdatePipelineInformation()
fp_times = list(fp.TimestepValues)
fp_frames = [T.point_array(T.output(fp, t), "density", shape).copy() for t in fp_times]
fp_table = T.output(fp, fp_times[-1], port=1)
check(not fp_messages.errors, "no error with the 3D Fokker-Planck operator: %s" % fp_messages.errors)
for k in range(1, 4):
    e0, e1 = (fp_table.GetValueByName(j, "Energy").ToDouble() for j in (k - 1, k))
    drift = abs(fp_frames[k].sum() - fp_frames[0].sum()) / fp_frames[0].sum()
    check(drift < 1e-12 and fp_frames[k].min() >= 0 and (e1 < e0 or fp_table.GetValueByName(k, "Flagged").ToInt()),
          "Fokker-Planck 3D frame %d: mass kept (%.1e), positive, energy %.6g after %.6g" % (k, drift, e1, e0))
heavy = fokker_planck(10 * largest_mass)
with T.OutputMessages() as said:
    heavy_last = T.point_array(T.output(heavy, fp_times[-1]), "density", shape)
check("c = 0.1 " in said.text and "does not depend on the mass" in said.text and "outside the range" not in said.text,
      "ten times the largest mass is stepped at the largest, said, and no range warning: %s" % said.text.strip()[:400])
# Exact in exact arithmetic; in floating point 10 * 0.1 is not 1, and each
# step's line search compares objectives, so the rounding of the input can
# grow over the steps (1e-10 of the peak after three steps on one machine,
# 1e-12 on another): a wrong scaling would be off by the peak itself.
check(np.allclose(heavy_last, 10 * fp_frames[-1], rtol=0, atol=1e-8 * heavy_last.max()),
      "at ten times the largest mass the frames are ten times its frames (largest difference %.2g)"
      % np.abs(heavy_last - 10 * fp_frames[-1]).max())
check.finish()
