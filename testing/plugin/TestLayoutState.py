"""The ready-made layout examples/jko_layout.pvsm opens cleanly: loaded by
examples/open_layout.py in a fresh pvpython under xvfb-run and rendered at
frames 0, 2 and 20, it reports no error (a one-row per-frame table used to
make the chart report "Attempted to paint a line with <2 points"), keeps a
fixed layout size so that its camera frames the whole box at any window
size, its velocity arrows are a few cells long at the frame it opens at, and
its chart shows the energy and the certificate of the Auto solver's frames,
refined frames marked.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import jko_plugin_testing as T

check = T.Check()
ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
xvfb_run = os.environ.get("JKO_XVFB_RUN") or shutil.which("xvfb-run")
pvpython = os.environ.get("JKO_PVPYTHON") or shutil.which("pvpython")
_scratch = tempfile.TemporaryDirectory(prefix="jko-layout-")
result_file = os.path.join(_scratch.name, "layout.json")
script = os.path.join(_scratch.name, "open.py")
with open(script, "w") as f:
    f.write("""
import json, os, sys
import numpy as np
sys.path.insert(0, os.path.join(%(root)r, "examples"))
import jko_examples as J
J.find_plugin = lambda: %(plugin)r
exec(open(os.path.join(%(root)r, "examples", "open_layout.py")).read())
from paraview import simple
flow = simple.FindSource("JKO Gradient Flow")
glyphs = simple.FindSource("velocity arrows")
layout = simple.GetLayouts()[list(simple.GetLayouts())[0]]
scene = simple.GetAnimationScene()
lengths = {}
for t in [0.0, 0.01, 0.1]:
    scene.AnimationTime = t
    for view in simple.GetViews():
        simple.Render(view)
    glyphs.UpdatePipeline(t)
    # Arrow lengths in cells: the glyphs' scale factor times the speeds shown.
    massive = simple.FindSource("where there is mass").GetClientSideObject().GetOutputDataObject(0)
    speed = np.linalg.norm(np.array([massive.GetPointData().GetArray("velocity").GetTuple3(i)
                                     for i in range(massive.GetNumberOfPoints())]), axis=1)
    h = flow.GetClientSideObject().GetOutputDataObject(0).GetSpacing()[0]
    lengths[t] = float(np.percentile(speed, 98) * glyphs.ScaleFactor / h) if speed.size else 0.0
chart = [v for v in simple.GetViews() if v.GetXMLName() == "XYChartView"][0]
series = simple.GetDisplayProperties(simple.OutputPort(flow, 1), chart)
json.dump({"preview": list(layout.PreviewMode), "lengths": lengths, "solver": flow.GetProperty("Solver").GetData(),
           "series": list(series.SeriesVisibility), "corners": list(series.SeriesPlotCorner)}, open(%(out)r, "w"))
""" % {"root": ROOT, "plugin": T.PLUGIN, "out": result_file})
run = subprocess.run([xvfb_run, "-a", "-s", "-screen 0 1280x1024x24 -noreset", pvpython, script],
                     capture_output=True, text=True, timeout=300, cwd=ROOT)
output = run.stdout + run.stderr
errors = [line for line in output.splitlines() if "ERR|" in line or "Error" in line]
check(run.returncode == 0 and os.path.exists(result_file), "the layout opened (exit %d): %s"
      % (run.returncode, output[-1500:] if run.returncode else ""))
check(not errors, "no error while rendering frames 0, 2 and 20: %s" % errors[:3])
if os.path.exists(result_file):
    result = json.load(open(result_file))
    check(result["preview"][0] > 0 and result["preview"][1] > 0,
          "the layout has a fixed size, so the camera frames the box at any window size: %s" % result["preview"])
    at_open = result["lengths"]["0.01"]
    check(2 <= at_open <= 6, "at the frame it opens at, the long arrows are %.1f cells (2-6)" % at_open)
    check(result["lengths"]["0.0"] == 0, "frame 0 has no arrows (no step arrives at it)")
    corners = dict(zip(result["corners"][::2], result["corners"][1::2]))
    check(result["solver"] == "Auto", "the layout's flow runs Auto: %s" % result["solver"])
    check(all(name in result["series"] for name in ("Energy", "Certificate", "LearnedCertificate"))
          and corners.get("Certificate") == corners.get("LearnedCertificate") != corners.get("Energy"),
          "the chart shows the energy and, on its own axis, the certificate and the refined frames' learned "
          "certificates: %s %s" % (result["series"], corners))
check.finish()
