"""A trained operator survives a Python trace and a state file.

In the ParaView GUI (paraview under xvfb-run playing TrainTraceState.xml) a
tiny training is set up and applied as the Properties panel does, the
panel's Train button is pressed (the real widget, so the real proxy and the
tracer), Solver is set to "Learned operator" in the panel and applied; then
the trace, the state and the learned frame at t = 3 tau are saved. Then,
each in a fresh pvpython: the trace replays and the state loads, and both
give that learned frame from the operator the GUI saved, without an error
and without training again (the file is byte for byte the same).
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

import jko_plugin_testing as T

check = T.Check()
HERE = os.path.dirname(os.path.abspath(__file__))
paraview = os.environ.get("JKO_PARAVIEW") or shutil.which("paraview")
xvfb_run = os.environ.get("JKO_XVFB_RUN") or shutil.which("xvfb-run")
pvpython = os.environ.get("JKO_PVPYTHON") or shutil.which("pvpython")
if not (paraview and xvfb_run and pvpython and os.path.exists(T.PLUGIN)):
    sys.exit("needs paraview, xvfb-run, pvpython and JKO_PLUGIN")
# -noreset: Xvfb otherwise resets when ParaView's OpenGL probe disconnects.
DISPLAY = [xvfb_run, "-a", "-s", "-screen 0 1280x1024x24 -noreset"]
_scratch = tempfile.TemporaryDirectory(prefix="jko-train-trace-state-")
folder = _scratch.name
operator = os.path.join(folder, "trained.jko")
environment = dict(os.environ, JKO_TRACE_STATE_DIR=folder,
                   JKO_TRACE_STATE_GUI=os.path.join(HERE, "train_trace_state_gui.py"))

# 1. The GUI session.
gui = subprocess.run(DISPLAY + [paraview, "--dr", "--plugin-search-paths=%s" % os.path.dirname(T.PLUGIN),
                                "--plugins=NeuralJKOFlow", "--test-script=%s" % os.path.join(HERE, "TrainTraceState.xml"),
                                "--exit"],
                     env=environment, capture_output=True, text=True, timeout=300)
output = gui.stdout + gui.stderr
log = open(os.path.join(folder, "gui.log")).read() if os.path.exists(os.path.join(folder, "gui.log")) else ""
print(output[-3000:])
print(log)
check(gui.returncode == 0 and "setup done" in log and "finish done" in log,
      "the GUI session played (exit %d)" % gui.returncode)
check("TypeError" not in output and "Traceback" not in output, "pressing Train raised nothing in the tracer")
check("OperatorFile %s" % operator in log, "after Train, Operator File names the saved operator")
check("Solver" in log and "Learned operator" in log.split("Solver", 1)[1].splitlines()[0], "Solver was set in the panel")
if not check(os.path.exists(operator), "Train saved the operator"):
    check.finish()
trace = open(os.path.join(folder, "trace.py")).read() if os.path.exists(os.path.join(folder, "trace.py")) else ""
check(".InvokeCommand('Train')" in trace, "the trace records the button press")
check(".OperatorFile = %r" % operator in trace, "the trace points Operator File at the saved operator")
check(trace.find(".InvokeCommand('Train')") < trace.find(".OperatorFile = %r" % operator)
      < trace.find(".Solver = 'Learned operator'"), "in the order they happened")
state = open(os.path.join(folder, "state.pvsm")).read() if os.path.exists(os.path.join(folder, "state.pvsm")) else ""
check('value="%s"' % operator in state, "the state holds Operator File")
frame = np.load(os.path.join(folder, "gui-frame3.npy"))
with open(operator, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()


def fresh_session(label, body):
    """Runs `body` in a fresh pvpython (under xvfb: the trace and the state
    make views) with the plugin loaded and error messages collected; returns
    what it reported."""
    script = os.path.join(folder, label + ".py")
    result_file = os.path.join(folder, label + ".json")
    with open(script, "w") as f:
        f.write("import json, numpy as np\n"
                "from vtkmodules.vtkCommonCore import vtkOutputWindow, vtkStringOutputWindow\n"
                "messages = vtkStringOutputWindow()\n"
                "vtkOutputWindow.SetInstance(messages)\n"
                "from paraview.simple import *\n"
                "LoadPlugin(%r, remote=False, ns=globals())\n" % T.PLUGIN)
        f.write(body)
        f.write("\nflow = FindSource('JKOGradientFlow1')\n"
                "flow.UpdatePipeline(0.015)\n"
                "data = flow.GetClientSideObject().GetOutputDataObject(0)\n"
                "field = data.GetFieldData()\n"
                "from vtkmodules.util import numpy_support\n"
                "np.save(%r, numpy_support.vtk_to_numpy(data.GetPointData().GetArray('density')))\n"
                "json.dump({'solver': field.GetAbstractArray('Solver').GetValue(0),\n"
                "           'operator': field.GetAbstractArray('OperatorFile').GetValue(0),\n"
                "           'time': field.GetArray('Time').GetTuple1(0),\n"
                "           'property': flow.OperatorFile,\n"
                "           'messages': messages.GetOutput()}, open(%r, 'w'))\n"
                % (os.path.join(folder, label + ".npy"), result_file))
    run = subprocess.run(DISPLAY + [pvpython, script], capture_output=True, text=True, timeout=300)
    if not check(run.returncode == 0 and os.path.exists(result_file), "%s: the session ran (exit %d)"
                 % (label, run.returncode)):
        print(run.stdout[-2000:] + run.stderr[-2000:])
        return None
    result = json.load(open(result_file))
    result["frame"] = np.load(os.path.join(folder, label + ".npy"))
    return result


# 2. The trace, replayed in a fresh process.
replay = fresh_session("replay", trace)
# 3. The state, loaded in a fresh process.
loaded = fresh_session("state", "LoadState(%r)\n" % os.path.join(folder, "state.pvsm"))
for label, result in (("trace replay", replay), ("state", loaded)):
    if result is None:
        continue
    check("ERR" not in result["messages"] and "Error" not in result["messages"],
          "%s: no error (%s)" % (label, result["messages"].strip()[-300:]))
    check(result["solver"] == "Learned operator" and result["operator"] == operator and result["property"] == operator,
          "%s: the learned frames come from the trained operator (%s, %s)"
          % (label, result["solver"], result["operator"]))
    check(abs(result["time"] - 0.015) < 1e-15, "%s: frame 3 at t = %g" % (label, result["time"]))
    difference = np.abs(result["frame"] - frame).max()
    check(difference < 1e-12 * frame.max(), "%s: the frame equals the GUI session's (max difference %.1e)"
          % (label, difference))
with open(operator, "rb") as f:
    check(hashlib.sha256(f.read()).hexdigest() == digest, "neither trained again: the operator file is unchanged")
check(sorted(os.listdir(folder)) == sorted(["trained.jko", "gui.log", "trace.py", "state.pvsm", "gui-frame3.npy",
                                            "replay.py", "replay.json", "replay.npy", "state.py", "state.json",
                                            "state.npy"]),
      "no temporary file left: %s" % sorted(os.listdir(folder)))
check.finish()
