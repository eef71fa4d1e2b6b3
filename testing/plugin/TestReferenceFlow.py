"""The reference solver through the plugin: frames, times, mass, energy, the
per-frame table, snapping of requested times, the frame cache, progress and
the time plumbing with a temporal input."""
import numpy as np

import jko_plugin_testing as T
from paraview import simple
from vtkmodules.vtkCommonCore import vtkCommand

T.load_plugin()
check = T.Check()

source = simple.JKOInitialDensity()
source.GridSize = [24, 20, 24]
source.UpdatePipeline()
flow = simple.JKOGradientFlow(Input=source)
flow.NumberOfSteps = 4
flow.NumberOfThreads = 2
tau = flow.TimeStep[0] if hasattr(flow.TimeStep, "__getitem__") else flow.TimeStep

# Progress while rolling out.
algorithm = flow.GetClientSideObject()
progress = []
algorithm.AddObserver(vtkCommand.ProgressEvent,
                      lambda caller, event: progress.append((caller.GetProgress(), caller.GetProgressText() or "")))

flow.UpdatePipelineInformation()
times = list(flow.TimestepValues)
check(np.allclose(times, [k * tau for k in range(5)]), "TimestepValues %s are t0 + k tau, k = 0..4" % times)

frames = [T.output(flow, t) for t in times]
rollouts = T.field(frames[-1], "RolloutCount")
check(rollouts == 1, "one rollout for the first scrub through all frames (%d)" % rollouts)
check(len(progress) > 4 and any("JKO step 4 of 4" in text for _, text in progress),
      "progress reported per step (%d events, last text '%s')" % (len(progress), progress[-1][1] if progress else ""))
check(all(0 <= p <= 1 for p, _ in progress), "progress stays in [0, 1]")

mass0 = T.field(frames[0], "Mass")
energies = []
for k, t in enumerate(times):
    data = T.output(flow, t)
    check(abs(T.field(data, "Time") - t) < 1e-15 and T.field(data, "Step") == k, "frame %d has time %g" % (k, t))
    check(abs(data.GetInformation().Get(data.DATA_TIME_STEP()) - t) < 1e-15, "frame %d DATA_TIME_STEP" % k)
    mass = T.field(data, "Mass")
    rho = T.point_array(data, "density", (24, 20, 1))
    check(abs(mass - mass0) < 1e-12 * mass0 and abs(rho.sum() * (1 / 24) * (1 / 20) - mass0) < 1e-12 * mass0,
          "frame %d keeps the mass (%.15g)" % (k, mass))
    check(rho.min() >= 0, "frame %d is non-negative" % k)
    check(data.GetPointData().GetArray("velocity").GetNumberOfComponents() == 3, "frame %d has 3D velocities" % k)
    energies.append(T.field(data, "Energy"))
check(all(e1 < e0 for e0, e1 in zip(energies, energies[1:])), "energy decreases: %s" % energies)
check(T.field(frames[0], "Solver") == "Reference solver", "field data names the solver")

table = T.output(flow, times[0], port=1)
check(table.GetNumberOfRows() == 5, "table has one row per frame (%d)" % table.GetNumberOfRows())
columns = [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())]
for name in ["Time", "Energy", "Mass", "TransportCost", "Objective"]:
    check(name in columns, "table column %s" % name)
table_times = [table.GetValueByName(k, "Time").ToDouble() for k in range(5)]
check(np.allclose(table_times, times), "table times are the frame times")
table_energy = [table.GetValueByName(k, "Energy").ToDouble() for k in range(5)]
check(np.allclose(table_energy, energies, rtol=1e-12), "table energies are the frames' energies")
# J(u_k) <= J(0) = E(rho_k): a step never ends above staying put.
objectives = [table.GetValueByName(k, "Objective").ToDouble() for k in range(5)]
check(all(objectives[k + 1] <= energies[k] for k in range(4)), "each step's objective is below E(rho_k)")

# Requested times snap to the nearest frame, clamped to the range.
for requested, expected in [(0.0071, 0.005), (0.0124, 0.01), (-1.0, 0.0), (5.0, 0.02)]:
    got = T.field(T.output(flow, requested), "Time")
    check(abs(got - expected) < 1e-15, "time %g snaps to frame time %g (%g)" % (requested, expected, got))

# A second scrub reuses the cached frames.
for t in reversed(times):
    T.output(flow, t)
rollouts = T.field(T.output(flow, times[2]), "RolloutCount")
check(rollouts == 1, "a second scrub reused the cache (RolloutCount %d)" % rollouts)
flow.UpdatePropertyInformation()
check(flow.GetProperty("RolloutCount").GetData() == 1, "RolloutCount information property")

# Any property or input change invalidates the cache.
flow.TimeStep = 0.004
flow.UpdatePipelineInformation()
check(np.allclose(list(flow.TimestepValues), [0.004 * k for k in range(5)]), "new tau, new time steps")
check(T.field(T.output(flow, 0.008), "RolloutCount") == 2, "a property change recomputes")
source.Mass = 0.03
check(abs(T.field(T.output(flow, 0.008), "Mass") - 0.03) < 1e-12 and
      T.field(T.output(flow, 0.008), "RolloutCount") == 3, "an input change recomputes")
flow.InitialTime = 1.0
flow.UpdatePipelineInformation()
check(np.allclose(list(flow.TimestepValues), [1 + 0.004 * k for k in range(5)]), "t0 shifts the time steps")

# Time plumbing: a temporal input keeps its own frame; the filter's frames
# replace its time steps, and scrubbing does not re-execute it.
upstream = simple.JKOGradientFlow(Input=source)
upstream.NumberOfSteps = 3
upstream.NumberOfThreads = 2
upstream.UpdatePipeline(0.0)
downstream = simple.JKOGradientFlow(Input=upstream)
downstream.TimeStep = 0.01
downstream.NumberOfSteps = 2
downstream.NumberOfThreads = 2
downstream.UpdatePipelineInformation()
check(np.allclose(list(downstream.TimestepValues), [0, 0.01, 0.02]),
      "a temporal input's time steps are replaced: %s" % list(downstream.TimestepValues))
executions = []
upstream.GetClientSideObject().AddObserver(vtkCommand.EndEvent, lambda caller, event: executions.append(1))
for t in [0.0, 0.01, 0.02, 0.01, 0.0]:
    T.output(downstream, t)
check(len(executions) == 0, "scrubbing the downstream flow did not re-execute the temporal input (%d)"
      % len(executions))
check(T.field(T.output(downstream, 0.02), "RolloutCount") == 1, "downstream rolled out once")
check(T.field(T.output(upstream, 0.0), "RolloutCount") == 1, "upstream rolled out once")

# Reference steps stopped at Maximum Iterations are flagged, and the run's
# warning names them with how far their certificates put them from their
# steps' minimisers (the largest, as the Certificate column has it).
import re

capped = simple.JKOGradientFlow(Input=source)
capped.NumberOfSteps = 2
capped.NumberOfThreads = 2
capped.MaximumIterations = 2
with T.OutputMessages() as capped_messages:
    capped_table = T.output(capped, 2 * tau, port=1)
said = [w for w in capped_messages.warnings if "reference steps stopped before the solver's tolerance" in w]
check(len(said) == 1 and "2 of 2" in said[0] and "frames 1, 2" in said[0],
      "the run's warning names the capped reference steps: %s" % said)
flags = [capped_table.GetValueByName(k, "Flagged").ToInt() for k in (1, 2)]
certificates = [capped_table.GetValueByName(k, "Certificate").ToDouble() for k in (1, 2)]
check(flags == [1, 1], "capped reference steps are Flagged (%s)" % flags)
said_percent = re.search(r"at most ([0-9.eE+-]+)% \(relative L1\)", said[0]) if said else None
check(said_percent is not None and max(certificates) > 0 and
      abs(float(said_percent.group(1)) - 100 * max(certificates)) <= 5e-3 * 100 * max(certificates),
      "the warning gives the largest certificate, %s%% (table: %s)"
      % (said_percent.group(1) if said_percent else None, certificates))

check.finish()
