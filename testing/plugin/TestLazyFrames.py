"""Frames computed when first shown: frame 0 at once, frame k with only the
missing steps, the per-frame table holding the frames that exist, a stop
request (the abort flag) between two steps or two L-BFGS iterations keeping
the frames computed before it, and the run-time estimate in the messages.

JKO_LONG_RUN_SECONDS=0 makes every computation say its estimated time, so
that the message is checked without a long run (timings are never asserted).
"""
import os

os.environ["JKO_LONG_RUN_SECONDS"] = "0"

import numpy as np  # noqa: E402

import jko_plugin_testing as T  # noqa: E402
from paraview import simple  # noqa: E402
from vtkmodules.vtkCommonCore import vtkCommand  # noqa: E402

T.load_plugin()
check = T.Check()

# Off the centre of the quadratic well, so that every step moves its mean.
source = simple.JKOInitialDensity(Kind="Gaussian", GridSize=[28, 24, 24], Mass=1, Centre=[0.35, 0.6, 0.5],
                                  Sigma=[0.1, 0.12, 0.1])
source.UpdatePipeline()
STEPS = 6


def make_flow():
    flow = simple.JKOGradientFlow(Input=source)
    flow.EnergyPreset = "Fokker-Planck"
    flow.Diffusion = 0.1
    flow.Potential = "Quadratic"
    flow.NumberOfSteps = STEPS
    flow.NumberOfThreads = 2
    flow.UpdatePipelineInformation()
    return flow


flow = make_flow()
tau = flow.TimeStep
times = list(flow.TimestepValues)
algorithm = flow.GetClientSideObject()
texts = []
algorithm.AddObserver(vtkCommand.ProgressEvent, lambda caller, event: texts.append(caller.GetProgressText() or ""))
messages = T.Messages(flow)


def steps_computed():
    """The JKO steps whose progress was reported since the last call."""
    done = sorted({int(t.split()[2]) for t in texts if t.startswith("JKO step ")})
    texts.clear()
    return done


def rows(proxy, time_value):
    """(rows, frames computed) of the per-frame table; checks that exactly
    the rows of frames not computed yet hold NaN and Computed = 0."""
    table = T.output(proxy, time_value, port=1)
    n = table.GetNumberOfRows()
    done = [table.GetValueByName(k, "Computed").ToInt() for k in range(n)]
    energy = [table.GetValueByName(k, "Energy").ToDouble() for k in range(n)]
    consistent = all((d == 1) == np.isfinite(e) for d, e in zip(done, energy)) and done == sorted(done, reverse=True)
    check(consistent, "the table's NaN rows are the frames not computed: %s" % done)
    return n, sum(done)


# Frame 0 at once: no step is computed for it.
out = T.output(flow, 0.0)
check(steps_computed() == [] and T.field(out, "Step") == 0, "frame 0 needs no step")
check(rows(flow, 0.0) == (7, 1), "the table has a row per frame, frame 0 computed")
velocity = T.point_array(out, "velocity", (28, 24, 1))
check(np.abs(velocity).max() == 0, "frame 0 has zero velocity (no step arrives at it)")
estimates = [m for m in messages.warnings if "will take about" in m]
check(not estimates, "no estimate when nothing is computed: %s" % estimates)

# Frame 3 computes steps 1-3, with an estimate before it starts.
messages.clear()
out = T.output(flow, times[3])
check(steps_computed() == [1, 2, 3], "frame 3 computes steps 1-3")
check(T.field(out, "Step") == 3 and abs(T.field(out, "Time") - 3 * tau) < 1e-15, "frame 3 is shown")
check(rows(flow, times[3]) == (7, 4), "the table holds frames 0-3")
estimates = [m for m in messages.warnings if "will take about" in m]
check(len(estimates) == 1 and "frames 1-3" in estimates[0] and "3 steps by the reference solver" in estimates[0]
      and "estimated from one evaluation" in estimates[0],
      "the estimate names the frames and steps to compute: %s" % estimates)

# The estimate names the solver as the panel does: Auto, with the bundled
# Fokker-Planck operator (its energy; this grid is not its own, so Auto
# refines where the certificate asks).
auto = make_flow()
auto.OperatorFile = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                 "data", "operators", "fokker-planck.jko")
auto.UpdatePipelineInformation()
auto_messages = T.Messages(auto)
# A learned or Auto run estimates from its first step, measured: frame 3
# gives one estimate, for frames 2-3.
T.output(auto, list(auto.TimestepValues)[3])
estimates = [m for m in auto_messages.warnings if "will take about" in m]
check(auto.Solver == "Auto" and len(estimates) == 1 and "frames 2-3 (2 steps by the Auto solver" in estimates[0],
      "Auto's estimate says 'by the Auto solver': %s" % estimates)
auto_messages.close()
simple.Delete(auto)

# Scrubbing back computes nothing; forward, only the missing steps.
T.output(flow, times[1])
check(steps_computed() == [], "frame 1 is cached")
T.output(flow, times[6])
check(steps_computed() == [4, 5, 6], "frame 6 computes only steps 4-6")
check(rows(flow, times[6]) == (7, 7) and T.field(T.output(flow, times[6]), "RolloutCount") == 1,
      "one rollout, seven frames")

# The velocity of frame k is the displacement of the step arriving at it,
# divided by tau: its mass-weighted mean moves the mean of frame k-1 to the
# mean of frame k.
previous, current = T.output(flow, times[4]), T.output(flow, times[5])
shape = (28, 24, 1)
rho4 = T.point_array(previous, "density", shape)[:, :, 0]
rho5 = T.point_array(current, "density", shape)[:, :, 0]
v5 = T.point_array(current, "velocity", shape)[:, :, 0, :]
x = (np.arange(28) + 0.5) / 28
shift = (rho5.sum(axis=1) * x).sum() / rho5.sum() - (rho4.sum(axis=1) * x).sum() / rho4.sum()
mean_v = (rho4 * v5[:, :, 0]).sum() / rho4.sum()
check(abs(shift) > 1e-4 and abs(mean_v * tau - shift) < 0.05 * abs(shift),
      "frame 5's velocity is the step arriving at it: mean %.5f, mean shift / tau %.5f" % (mean_v, shift / tau))

# Fewer frames: the table shows the panel's frames; more: computed on request.
flow.NumberOfSteps = 2
flow.UpdatePipelineInformation()
check(rows(flow, times[2]) == (3, 3) and steps_computed() == [], "two steps: three rows, nothing recomputed")
flow.NumberOfSteps = 8
flow.UpdatePipelineInformation()
check(rows(flow, times[6]) == (9, 7) and steps_computed() == [], "eight steps: the seven frames that exist")
T.output(flow, 8 * tau)
check(steps_computed() == [7, 8] and rows(flow, 8 * tau) == (9, 9), "frame 8 computes steps 7-8")
check(T.field(T.output(flow, 8 * tau), "RolloutCount") == 1, "still one rollout")
reference = [T.point_array(T.output(flow, k * tau), "density", shape).copy() for k in range(9)]
flow.NumberOfSteps = STEPS
flow.UpdatePipelineInformation()
messages.close()


def stop_when(label, condition):
    """A fresh filter asked for the last frame, whose abort flag is set at
    the first progress text that satisfies `condition`."""
    stopped = make_flow()
    stopped_algorithm = stopped.GetClientSideObject()
    progress = []

    def on_progress(caller, event):
        text = caller.GetProgressText() or ""
        progress.append(text)
        if condition(text):
            caller.SetAbortExecute(1)

    tag = stopped_algorithm.AddObserver(vtkCommand.ProgressEvent, on_progress)
    stop_messages = T.Messages(stopped)
    out = T.output(stopped, times[STEPS])
    stopped_algorithm.RemoveObserver(tag)
    return stopped, stop_messages, out, progress


# Stopped between two steps: frames 0-2 stay, frame 2 is shown with its time.
stopped, stop_messages, out, progress = stop_when("between steps", lambda text: text.startswith("JKO step 3 of 6"))
warning = " | ".join(stop_messages.warnings)
check(not stop_messages.errors and "stopped at the abort request" in warning and "Frames 0-2 are kept" in warning,
      "a stop keeps the computed frames and says so: %s %s" % (stop_messages.errors, warning))
check(T.field(out, "Step") == 2 and abs(out.GetInformation().Get(out.DATA_TIME_STEP()) - 2 * tau) < 1e-15,
      "the last computed frame is shown with its own time (step %d)" % T.field(out, "Step"))
table = stopped.GetClientSideObject().GetOutputDataObject(1)
check([table.GetValueByName(k, "Computed").ToInt() for k in range(table.GetNumberOfRows())] == [1, 1, 1, 0, 0, 0, 0],
      "the table holds frames 0-2")
check(np.abs(T.point_array(out, "density", shape) - reference[2]).max() < 1e-12, "frame 2 is right")
# Clearing the flag (VTK's abort protocol) continues from frame 3.
stopped.GetClientSideObject().SetAbortExecute(0)
texts_before = len(progress)
again = []
tag = stopped.GetClientSideObject().AddObserver(
    vtkCommand.ProgressEvent, lambda caller, event: again.append(caller.GetProgressText() or ""))
out = T.output(stopped, times[STEPS])
computed = sorted({int(t.split()[2]) for t in again if t.startswith("JKO step ")})
check(computed == [3, 4, 5, 6], "an update after the stop computes steps 3-6 only (%s)" % computed)
check(T.field(out, "RolloutCount") == 1 and T.field(out, "Step") == STEPS, "the same rollout reaches frame 6")
difference = max(np.abs(T.point_array(T.output(stopped, k * tau), "density", shape) - reference[k]).max()
                 for k in range(STEPS + 1))
check(difference < 1e-12, "the frames equal an uninterrupted rollout's (max difference %.1e)" % difference)
stop_messages.close()
simple.Delete(stopped)

# Stopped between two L-BFGS iterations: the flag set as step 2's first
# iteration is reported stops it at its second; frames 0-1 stay.
stopped, stop_messages, out, progress = stop_when(
    "between iterations", lambda text: text.startswith("JKO step 2 of 6: L-BFGS iteration 0"))
check(any(t.startswith("JKO step 2 of 6: L-BFGS iteration 0") for t in progress)
      and not any(t.startswith("JKO step 3") for t in progress), "the stop came inside step 2")
check(T.field(out, "Step") == 1 and "Frames 0-1 are kept" in " | ".join(stop_messages.warnings),
      "a stop inside a step keeps the steps before it: %s" % stop_messages.warnings)
stop_messages.close()

check.finish()
