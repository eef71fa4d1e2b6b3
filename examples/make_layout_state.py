"""Builds the ready-made ParaView layout of Neural JKO Flow and saves it as
examples/jko_layout.pvsm.

    xvfb-run -a -s "-screen 0 1280x1024x24 -noreset" pvpython examples/make_layout_state.py

(the views are created, so pvpython needs an X display.)

The layout: the porous-medium sample data/samples/porous-bumps.vti, the
"JKO Gradient Flow" filter with the bundled operator
data/operators/porous-medium.jko (Auto: the learned step, refined by L-BFGS
where its certificate fails; 20 steps), and

* left, a render view: the density (Inferno colour map, legend), arrows of
  the velocity of each step where there is mass, and the frame's time;
* right, a line chart of the filter's second output (one row per frame):
  the energy E(rho_k) against time (left axis) and each frame's certificate,
  its estimated relative L1 error, with the Auto threshold (right axis, log
  scale); a refined frame is marked by its learned step's certificate, the
  one that failed.

The time toolbar steps through the frames (one per JKO step). File paths in
the state are relative to the repository root, so open it from there
(examples/open_layout.py does that from anywhere):

    paraview --plugin-search-paths=build/lib/paraview-5.11/plugins/NeuralJKOFlow \\
             --plugins=NeuralJKOFlow --state=examples/jko_layout.pvsm

or in the GUI: File > Load State, choose this file and "Search files under
specified directory" with the repository root as the directory.
"""
import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jko_examples as J  # noqa: E402

STATE = os.path.join(J.HERE, "jko_layout.pvsm")
SAMPLE = "data/samples/porous-bumps.vti"
OPERATOR = "data/operators/porous-medium.jko"


def cell_size(flow):
    """The smallest spacing of the flow's frames."""
    spacing = flow.GetClientSideObject().GetOutputDataObject(0).GetSpacing()
    return min(h for h in spacing[:2])


def typical_top_speed(flow, time_value, density_floor):
    """The 98th percentile of the speed at `time_value` where the density is
    above `density_floor` (vacuum moves no mass; its arrows are not drawn)."""
    import numpy as np
    from vtkmodules.util import numpy_support

    flow.UpdatePipeline(time_value)
    data = flow.GetClientSideObject().GetOutputDataObject(0).GetPointData()
    rho = numpy_support.vtk_to_numpy(data.GetArray("density"))
    speed = np.linalg.norm(numpy_support.vtk_to_numpy(data.GetArray("velocity")), axis=1)[rho > density_floor]
    return float(np.percentile(speed, 98)) if speed.size and speed.max() > 0 else 1.0


def build_layout(simple, steps=20):
    """Creates the pipeline, the two views and their layout; returns
    (layout, flow)."""
    reader = simple.XMLImageDataReader(registrationName="porous-bumps.vti", FileName=[os.path.join(J.ROOT, SAMPLE)])
    reader.PointArrayStatus = ["density"]
    flow = simple.JKOGradientFlow(registrationName="JKO Gradient Flow", Input=reader)
    flow.Density = ["POINTS", "density"]
    for name, value in J.PRESETS["porous-medium"]["properties"].items():
        setattr(flow, name, value)
    flow.TimeStep = J.TIME_STEP
    flow.NumberOfSteps = steps
    flow.Solver = "Auto"
    flow.OperatorFile = os.path.join(J.ROOT, OPERATOR)
    flow.UpdatePipelineInformation()
    flow.UpdatePipeline(0.0)

    layout = simple.CreateLayout("Neural JKO Flow")
    # A fixed layout size (shown scaled to the window, View > Preview): the
    # camera below frames the whole box at any window size.
    layout.PreviewMode = [1280, 720]
    view = simple.CreateView("RenderView")
    simple.AssignViewToLayout(view=view, layout=layout, hint=0)
    view.OrientationAxesVisibility = 0
    view.InteractionMode = "2D"

    density = simple.Show(flow, view)
    density.Representation = "Slice"
    simple.ColorBy(density, ("POINTS", "density"))
    lut = simple.GetColorTransferFunction("density")
    lut.ApplyPreset("Inferno (matplotlib)", True)
    # A fixed range for all frames, so that the decay shows; the first frame's
    # peaks (0.45) saturate it, the later, flatter frames stay visible.
    lut.RescaleTransferFunction(0.0, 0.3)
    lut.AutomaticRescaleRangeMode = "Never"
    density.SetScalarBarVisibility(view, True)
    bar = simple.GetScalarBar(lut, view)
    bar.Title = "density"
    bar.ComponentTitle = ""
    bar.AddRangeLabels = 0
    bar.WindowLocation = "Any Location"
    bar.Position = [0.84, 0.1]
    bar.ScalarBarLength = 0.5

    # Velocity arrows on every 4th node where the density is above 0.005
    # (about 10% of the last frame's peak): vacuum nodes move no mass.
    subset = simple.ExtractSubset(registrationName="every 4th node", Input=flow)
    subset.SampleRateI = subset.SampleRateJ = 4
    massive = simple.Threshold(registrationName="where there is mass", Input=subset, Scalars=["POINTS", "density"])
    massive.LowerThreshold, massive.UpperThreshold = 0.005, 1e30
    glyphs = simple.Glyph(registrationName="velocity arrows", Input=massive, GlyphType="Arrow")
    glyphs.OrientationArray = ["POINTS", "velocity"]
    glyphs.ScaleArray = ["POINTS", "velocity"]
    # Arrow length in cells, whatever the grid and the speeds: at the time the
    # layout opens (frame 2) the fast arrows span the 4 cells between arrows;
    # earlier frames move faster, later ones slower, in proportion.
    glyphs.ScaleFactor = 4 * cell_size(flow) / typical_top_speed(flow, 2 * J.TIME_STEP, 0.005)
    glyphs.GlyphMode = "All Points"
    arrows = simple.Show(glyphs, view)
    simple.ColorBy(arrows, None)
    arrows.AmbientColor = arrows.DiffuseColor = [0.3, 0.85, 1.0]

    clock = simple.AnnotateTimeFilter(registrationName="time", Input=flow, Format="t = {time:.3f}")
    clock_display = simple.Show(clock, view)
    clock_display.WindowLocation = "Upper Center"
    clock_display.FontSize = 24

    chart = simple.CreateView("XYChartView")
    simple.AssignViewToLayout(view=chart, layout=layout, hint=2)
    layout.SetSplitFraction(0, 0.58)
    table = simple.Show(simple.OutputPort(flow, 1), chart)
    table.UseIndexForXAxis = 0
    table.XArrayName = "Time"
    # Energy on the left axis; the certificates (estimated relative L1
    # errors, 1e-4 to 1: Auto's frames stop correcting at a quarter of its
    # threshold, 0.001) on the right one, in log scale. A refined frame shows
    # its learned step's certificate as a point above the threshold line: the
    # step Auto did not trust, and where the refinement brought it.
    series = [("Energy", "energy E(rho_k)", "0", "4", "1", [0.85, 0.1, 0.1]),
              ("Certificate", "certificate of frame k (est. L1 error)", "1", "2", "1", [0.1, 0.35, 0.85]),
              ("LearnedCertificate", "refined: the learned step's certificate", "1", "5", "0", [0.95, 0.55, 0.0]),
              ("CertificateThreshold", "Auto threshold", "1", "0", "2", [0.45, 0.45, 0.45])]
    table.SeriesVisibility = [name for name, *_ in series]
    table.SeriesLabel = [x for name, label, *_ in series for x in (name, label)]
    table.SeriesPlotCorner = [x for name, _, corner, *_ in series for x in (name, corner)]
    table.SeriesMarkerStyle = [x for name, _, _, marker, *_ in series for x in (name, marker)]
    table.SeriesLineStyle = [x for name, _, _, _, line, _ in series for x in (name, line)]
    table.SeriesColor = [x for name, *_, colour in series for x in [name] + [str(c) for c in colour]]
    table.SeriesMarkerSize = ["LearnedCertificate", "10"]
    chart.ChartTitle = "per-frame table"
    chart.LeftAxisTitle = "energy"
    chart.RightAxisTitle = "certificate (estimated L1 error)"
    chart.RightAxisLogScale = 1
    # A fixed range, so that the threshold stays put while frames are added
    # (certificates above 1 mean "no idea" and are clipped).
    chart.RightAxisUseCustomRange = 1
    chart.RightAxisRangeMinimum, chart.RightAxisRangeMaximum = 1e-4, 1.0
    chart.BottomAxisTitle = "time t"
    chart.ChartTitleFontSize = chart.LeftAxisTitleFontSize = chart.BottomAxisTitleFontSize = 16
    chart.RightAxisTitleFontSize = 16
    chart.LeftAxisLabelFontSize = chart.BottomAxisLabelFontSize = chart.LegendFontSize = 13
    chart.RightAxisLabelFontSize = 13
    chart.LegendLocation = "TopRight"

    scene = simple.GetAnimationScene()
    scene.UpdateAnimationUsingDataTimeSteps()
    scene.AnimationTime = 0.0
    simple.SetActiveView(view)
    simple.SetActiveSource(flow)
    simple.Render(view)
    # The box left of centre, leaving room for the colour legend.
    view.CameraPosition = [0.62, 0.53, 3.0]
    view.CameraFocalPoint = [0.62, 0.53, 0.0]
    view.CameraViewUp = [0, 1, 0]
    view.CameraParallelProjection = 1
    view.CameraParallelScale = 0.64
    return layout, flow


def relative_paths(path):
    """Rewrites the repository's absolute paths in a state file as paths
    relative to the repository root."""
    with open(path) as f:
        text = f.read()
    text = re.sub(re.escape(J.ROOT.rstrip("/") + "/"), "", text)
    with open(path, "w") as f:
        f.write(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", default=STATE, help="state file to write")
    args = parser.parse_args()

    simple = J.load_plugin()
    build_layout(simple)
    simple.SaveState(args.state)
    relative_paths(args.state)
    print("state: %s (paths relative to %s)" % (os.path.abspath(args.state), J.ROOT))
    print("screenshot of the GUI with it: /usr/bin/python3 docs/images/gui_screenshot.py")


if __name__ == "__main__":
    main()
