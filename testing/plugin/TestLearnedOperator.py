"""Training from the panel, a traced training session replayed as a script,
the learned and refined solvers, operator file loading, and operators that do
not fit (another energy, tau or dimension; a corrupt file)."""
import os
import shutil
import subprocess
import tempfile
import time

import numpy as np

import jko_plugin_testing as T
from paraview import simple, smtrace

T.load_plugin()
check = T.Check()
# Removed when the interpreter exits.
_scratch = tempfile.TemporaryDirectory(prefix="jko-learned-")
scratch = _scratch.name
operator = os.path.join(scratch, "trained.jko")



def apply_panel(proxy, **values):
    """Sets properties the way the Properties panel's Apply does (on the
    server-manager properties, then one UpdateVTKObjects) inside the
    PropertiesModified trace scope the panel opens."""
    item = smtrace.PropertiesModified(proxy)
    for name, value in values.items():
        prop = proxy.SMProxy.GetProperty(name)
        for i, element in enumerate(value if isinstance(value, (list, tuple)) else [value]):
            prop.SetElement(i, element)
    proxy.SMProxy.UpdateVTKObjects()
    item.finalize()


# A training small enough for a test (seconds on two cores), traced the way
# the GUI traces it: Apply on the source, the filter's panel edits, Train.
trace_config = smtrace.start_trace()
source = simple.JKOInitialDensity()
apply_panel(source, GridSize=[16, 16, 16])
source.UpdatePipeline()
flow = simple.JKOGradientFlow(Input=source)
apply_panel(flow, NumberOfSteps=3, NumberOfThreads=2, TrainingRounds=2, TrainingEpochs=2, TrainingBatchSize=4,
            TrainingHorizon=2, GeneratedDensities=3, ValidationDensities=1, MaximumTrainingSeconds=120,
            TrainedOperatorFile=operator)
# Train, as a script does; the proxy then points Operator File at the saved
# operator and the trace records that (the GUI's button is
# TestTrainTraceState.py).
flow.InvokeCommand("Train")
start = time.time()
out = T.output(flow, 0.0)
trained_seconds = time.time() - start
trace = smtrace.stop_trace()
check("TrainedOperatorFile" in trace and ".OperatorFile = %r" % operator in trace,
      "the trace records Operator File pointing at the trained operator")
check(os.path.exists(operator), "Train saved the operator (%.1f s with frame 0)" % trained_seconds)
check(flow.OperatorFile == operator, "Operator File names the trained operator: %s" % flow.OperatorFile)
check(T.field(out, "Solver") == "Reference solver", "the training's own update keeps the solver's frames")
check(flow.Solver == "Auto", "with the trained operator loaded, a solver never chosen becomes Auto: %s" % flow.Solver)
flow.UpdatePropertyInformation()
description = flow.GetProperty("OperatorDescription").GetData()
lines = description.splitlines()
check("porous-medium" in description and operator in description and len(lines) >= 9,
      "panel shows the operator on %d lines:\n%s" % (len(lines), description))
for phrase in ["energy: porous-medium", "tau: 0.005", "box lengths: 1 x 1", "grids: 16 nodes per axis",
               "peak densities:", "trained: learn-to-evolve, 2 rounds x 2 epochs", "in ParaView (Train)",
               "command: jko train --energy porous-medium --dim 2 --D 1 --m 2 --tau 0.005 --grid 16",
               "also serves, exactly", "every Time Step tau and energy parameters with tau D M^(m-1) in ["]:
    check(phrase in description, "the description says '%s'" % phrase)
check(abs(flow.GetProperty("OperatorTimeStep").GetData() - 0.005) < 1e-15, "panel shows the operator's tau")
stamp = os.path.getmtime(operator)

# Learned frames from the trained operator.
flow.Solver = "Learned operator"
flow.UpdatePipelineInformation()
times = list(flow.TimestepValues)
frames = [T.output(flow, t) for t in times]
check(len(times) == 4 and T.field(frames[-1], "RolloutCount") == 2, "learned rollout: %d frames" % len(times))
mass0 = T.field(frames[0], "Mass")
for k, data in enumerate(frames):
    rho = T.point_array(data, "density", (16, 16, 1))
    check(abs(rho.sum() / 256 - mass0) < 1e-12 * mass0 and rho.min() >= 0,
          "learned frame %d keeps the mass and positivity" % k)
check(T.field(frames[1], "OperatorFile") == operator, "field data names the operator file")
check('"plugin_request"' in T.field(frames[1], "OperatorMetadata"), "field data holds the operator metadata")
learned1 = T.point_array(frames[1], "density", (16, 16, 1)).copy()
learned_objective = T.output(flow, 0.0, port=1).GetValueByName(1, "Objective").ToDouble()

# Refinement lowers the step's objective J.
flow.Solver = "Learned + refine"
flow.RefineIterations = 20
# Frames are computed when asked for: the table has row 1 once frame 1 is.
refined_table = T.output(flow, 0.005, port=1)
refined_objective = refined_table.GetValueByName(1, "Objective").ToDouble()
check(refined_table.GetValueByName(1, "Computed").ToInt() == 1 and 0 < refined_objective <= learned_objective + 1e-15,
      "refine lowers the objective of step 1: %.9g <= %.9g" % (refined_objective, learned_objective))

# Loading the file in a new filter gives the same frames.
loaded = simple.JKOGradientFlow(Input=source)
loaded.Solver = "Learned operator"
loaded.OperatorFile = operator
loaded.NumberOfSteps = 3
loaded.NumberOfThreads = 2
data = T.output(loaded, 0.005)
check(np.allclose(T.point_array(data, "density", (16, 16, 1)), learned1, rtol=0, atol=1e-12),
      "an operator loaded from its file reproduces the frames")


# Operators that do not fit are errors that say so.
def expect_error(label, proxy, phrases, time_value=0.005):
    messages = T.Messages(proxy)
    T.output(proxy, time_value)
    text = " | ".join(messages.errors)
    check(len(messages.errors) == 1 and all(p.lower() in text.lower() for p in phrases),
          "%s: %s" % (label, text.strip()))
    messages.close()


loaded.EnergyPreset = "Fokker-Planck"
expect_error("another energy", loaded, ["Energy Preset: operator porous-medium", "panel fokker-planck", "Train"])
loaded.EnergyPreset = "Porous medium"
loaded.Exponent = 3
expect_error("another exponent", loaded, ["differs in 1 setting", "Exponent: operator 2, panel 3"])
loaded.Exponent = 2
# A Time Step the step's symmetries relate to the operator's is served: for
# the porous medium (m = 2) the step at tau = 0.01 is 1/c times the
# operator's step (tau 0.005) of c rho, c = 2; Output Messages says so.
loaded.TimeStep = 0.01
with T.OutputMessages() as said:
    related = T.output(loaded, 0.01)
check("c = 2" in said.text and "exact" in said.text, "the symmetry is named: %s" % said.text.strip()[:300])
doubled = simple.Calculator(Input=source, ResultArrayName="density", Function="2*density")
twice = simple.JKOGradientFlow(Input=doubled, Solver="Learned operator", OperatorFile=operator, NumberOfSteps=3,
                               NumberOfThreads=2)
twice_frame = T.point_array(T.output(twice, 0.005), "density", (16, 16, 1))
related_frame = T.point_array(related, "density", (16, 16, 1))
check(np.allclose(related_frame, twice_frame / 2, rtol=0, atol=1e-12),
      "the frame at tau 0.01 is half the operator's frame of twice the density (max difference %.2g)"
      % np.abs(related_frame - twice_frame / 2).max())
simple.Delete(twice)
simple.Delete(doubled)
loaded.TimeStep = 0.01
loaded.Exponent = 3
loaded.Diffusion = 2
expect_error("another exponent, D and tau at once", loaded,
             ["differs in 3 settings", "Diffusion: operator 1, panel 2", "Exponent: operator 2, panel 3",
              "Time Step: operator 0.005, panel 0.01", "serves, exactly", "tau D M^(m-1)", "m: 3 vs 2"], 0.01)
loaded.Exponent = 2
loaded.Diffusion = 1
loaded.TimeStep = 0.005
cube = simple.JKOInitialDensity()
cube.Dimension = "3D"
cube.GridSize = [12, 12, 12]
cube.UpdatePipeline()
loaded.Input = cube
expect_error("another dimension", loaded, ["is for 2D densities", "input is 3D"])
loaded.Input = source
truncated = os.path.join(scratch, "truncated.jko")
with open(operator, "rb") as f:
    content = f.read()
with open(truncated, "wb") as f:
    f.write(content[: len(content) // 2])
loaded.OperatorFile = truncated
expect_error("truncated operator file", loaded, ["cannot be read", "truncated.jko"])
flipped = os.path.join(scratch, "flipped.jko")
with open(flipped, "wb") as f:
    f.write(content[:-100] + bytes(b ^ 0xFF for b in content[-100:]))
loaded.OperatorFile = flipped
expect_error("corrupted operator file", loaded, ["cannot be read", "flipped.jko"])

# Replaying the traced session loads the saved operator instead of training.
pvpython = os.environ.get("JKO_PVPYTHON") or shutil.which("pvpython")
script = os.path.join(scratch, "replay.py")
with open(script, "w") as f:
    f.write("from paraview.simple import *\n")
    f.write("LoadPlugin(%r, remote=False, ns=globals())\n" % T.PLUGIN)
    f.write(trace)
    f.write("\nflow = FindSource('JKOGradientFlow1')\n"
            "flow.Solver = 'Learned operator'\n"
            "flow.UpdatePipeline(0.015)\n"
            "data = flow.GetClientSideObject().GetOutputDataObject(0)\n"
            "print('REPLAY', data.GetFieldData().GetAbstractArray('OperatorFile').GetValue(0),"
            " data.GetFieldData().GetArray('Time').GetTuple1(0))\n")
start = time.time()
result = subprocess.run([pvpython, script], capture_output=True, text=True, timeout=300)
replay_seconds = time.time() - start
check(result.returncode == 0 and ("REPLAY %s 0.015" % operator) in result.stdout,
      "the traced script replays (%.1f s): %s" % (replay_seconds, result.stdout.strip()[-200:] + result.stderr[-500:]))
check(os.path.getmtime(operator) == stamp, "the replay loaded the saved operator instead of training again")

# A state saved after the training loads the trained operator in a fresh
# process (no views here: pvpython needs no display).
state = os.path.join(scratch, "learned.pvsm")
flow.Solver = "Learned operator"
simple.SaveState(state)
script = os.path.join(scratch, "load_state.py")
with open(script, "w") as f:
    f.write("from paraview.simple import *\n")
    f.write("LoadPlugin(%r, remote=False, ns=globals())\n" % T.PLUGIN)
    f.write("LoadState(%r)\n" % state)
    f.write("flow = FindSource('JKOGradientFlow1')\n"
            "flow.UpdatePipeline(0.005)\n"
            "data = flow.GetClientSideObject().GetOutputDataObject(0)\n"
            "import numpy\n"
            "from vtkmodules.util import numpy_support\n"
            "numpy.save(%r, numpy_support.vtk_to_numpy(data.GetPointData().GetArray('density')))\n"
            "print('STATE', data.GetFieldData().GetAbstractArray('OperatorFile').GetValue(0))\n"
            % os.path.join(scratch, "state-frame1.npy"))
result = subprocess.run([pvpython, script], capture_output=True, text=True, timeout=300)
loaded_frame = (np.load(os.path.join(scratch, "state-frame1.npy")).reshape(16, 16).T
                if result.returncode == 0 else np.array([np.nan]))
check(("STATE %s" % operator) in result.stdout and np.abs(loaded_frame - learned1[:, :, 0]).max() < 1e-12,
      "the saved state loads the trained operator: %s" % (result.stdout.strip()[-200:] + result.stderr[-500:]))
check(os.path.getmtime(operator) == stamp, "loading the state did not train")

# Without reuse, Train trains again and overwrites the file.
flow.ReuseTrainedOperator = 0
flow.InvokeCommand("Train")
T.output(flow, 0.0)
check(os.path.getmtime(operator) > stamp, "Train with reuse off trains again")

# Training densities on the input's grid join the training set; others are refused.
extra = simple.JKOInitialDensity(Kind="Gaussian", GridSize=[16, 16, 16], Mass=0.02)
extra.UpdatePipeline()
flow.TrainingDensities = [extra]
flow.ReuseTrainedOperator = 1
stamp = os.path.getmtime(operator)
flow.InvokeCommand("Train")
metadata = T.field(T.output(flow, 0.0), "OperatorMetadata")
check(os.path.getmtime(operator) > stamp and '"user_densities":2' in metadata,
      "a training density joins the training (new densities: no reuse)")
wrong = simple.JKOInitialDensity(GridSize=[12, 12, 12])
wrong.UpdatePipeline()
flow.TrainingDensities = [extra, wrong]
flow.InvokeCommand("Train")
expect_error("training density on another grid", flow, ["Training density 2", "12x12", "Resample To Image"], 0.0)

check.finish()
