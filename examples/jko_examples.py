"""Shared pieces of the teaching demos in examples/ (run them with pvpython).

The demos load the NeuralJKOFlow plugin, read a sample density from
data/samples/, run the "JKO Gradient Flow" filter (learned operator or
reference solver) and write what a reader of the demo wants to see:

* the frames as a ParaView collection (.pvd pointing at one .vti per frame),
* a strip of frames as a PNG (matplotlib: one colour scale, time stamps),
* the energy E(rho_k) against time (the JKO scheme never increases it),
* a ParaView rendering of one frame with its velocity glyphs (needs an X
  display: run under `xvfb-run -a -s "-screen 0 1280x1024x24"`).

The energy settings of each preset below are those the bundled operators of
data/operators/ were trained with (data/README.md lists the commands). In
the learned mode the filter takes energy and tau from the operator file and
refuses a panel that disagrees, so the demos set both.
"""
import os
import re
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SAMPLES = os.path.join(ROOT, "data", "samples")
OPERATORS = os.path.join(ROOT, "data", "operators")

# The energies of the bundled operators, as properties of the filter.
PRESETS = {
    "porous-medium": {
        "title": "Porous medium, m = 2",
        "formula": r"$E(\rho) = \int \rho^2\,dx$",
        "properties": {"EnergyPreset": "Porous medium", "Diffusion": 1.0, "Exponent": 2.0, "Potential": "None"},
    },
    "fokker-planck": {
        "title": "Fokker-Planck in a quadratic well",
        "formula": r"$E(\rho) = \int 0.1\,\rho\log\rho + 10\,|x - x_c|^2 \rho\,dx$",
        "properties": {"EnergyPreset": "Fokker-Planck", "Diffusion": 0.1, "Potential": "Quadratic",
                       "PotentialStrength": [20.0, 20.0, 20.0], "PotentialCentredInBox": 1},
    },
    "aggregation-diffusion": {
        "title": "Aggregation-diffusion",
        "formula": r"$E(\rho) = \int 0.1\,\rho\log\rho\,dx + \frac{1}{2}\iint 10\,|x-y|^2 \rho(x)\rho(y)\,dx\,dy$",
        "properties": {"EnergyPreset": "Aggregation-diffusion", "Diffusion": 0.1, "Attraction": 20.0,
                       "Potential": "None"},
    },
}
TIME_STEP = 0.005  # tau of every bundled operator


def plugin_path():
    """The NeuralJKOFlow plugin library: $JKO_PLUGIN, else a build in the
    repository (build/, build-demo/, build-plugin/); "" when there is none."""
    if os.environ.get("JKO_PLUGIN"):
        return os.environ["JKO_PLUGIN"]
    for build in ("build", "build-demo", "build-plugin"):
        path = os.path.join(ROOT, build, "lib", "paraview-5.11", "plugins", "NeuralJKOFlow", "NeuralJKOFlow.so")
        if os.path.exists(path):
            return path
    return ""


def find_plugin():
    """plugin_path(), or exit with what to do."""
    path = plugin_path()
    if not path:
        sys.exit("NeuralJKOFlow.so not found: build the project (bash scripts/demo.sh) or set JKO_PLUGIN")
    return path


def load_plugin():
    """Loads the plugin into pvpython's built-in session; its proxies become
    functions of paraview.simple (JKOGradientFlow, JKOInitialDensity)."""
    from paraview import simple

    simple.LoadPlugin(find_plugin(), remote=False, ns=vars(simple))
    return simple


def sample_path(name):
    """A sample density of data/samples/ by file name (or any path)."""
    path = name if os.path.exists(name) else os.path.join(SAMPLES, name)
    if not os.path.exists(path):
        sys.exit("no sample density %s (run: pvpython data/make_samples.py)" % path)
    return path


def operator_path(preset):
    """The bundled operator of a preset, with a clear message when absent."""
    path = os.path.join(OPERATORS, preset + ".jko")
    if not os.path.exists(path):
        sys.exit("no operator %s: train it with the command in data/README.md" % path)
    return path


def read_density(path, grid=None):
    """A pipeline source holding the density of a .vti file.

    With `grid`, the density is resampled onto `grid` cell-centred nodes per
    axis of the same box (a quick, coarser run; the Fourier operator works on
    any grid). The box is kept exactly, because porous-medium and interaction
    dynamics depend on its size.
    """
    from paraview import simple

    reader = simple.XMLImageDataReader(FileName=[path])
    reader.PointArrayStatus = ["density"]
    reader.UpdatePipeline()
    if not grid:
        return reader
    data = reader.GetClientSideObject().GetOutputDataObject(0)
    dims, origin, spacing = data.GetDimensions(), data.GetOrigin(), data.GetSpacing()
    bounds, sizes = [], []
    for a in range(3):
        if dims[a] == 1:
            bounds += [origin[a], origin[a]]
            sizes.append(1)
            continue
        lower = origin[a] - spacing[a] / 2
        length = dims[a] * spacing[a]
        h = length / grid
        bounds += [lower + h / 2, lower + length - h / 2]
        sizes.append(grid)
    resampled = simple.ResampleToImage(Input=reader, UseInputBounds=0, SamplingBounds=bounds,
                                       SamplingDimensions=sizes)
    resampled.UpdatePipeline()
    return resampled  # with 'density' and ResampleToImage's vtkValidPointMask


class FilterMessages:
    """Collects the error and warning messages of one VTK algorithm, so a
    demo stops with the filter's own explanation instead of plotting empty
    frames, and shows its warnings (e.g. an operator used outside its
    training range) once."""

    def __init__(self, proxy):
        from vtkmodules.util.misc import calldata_type
        from vtkmodules.util.vtkConstants import VTK_STRING
        from vtkmodules.vtkCommonCore import vtkCommand

        self.errors, self.warnings = [], []

        def text(message):
            # VTK prefixes "ERROR: In file, line N\nclass (address): ".
            return re.sub(r"^.*\n\w+ \(0x[0-9a-f]+\): ", "", str(message).strip(), flags=re.S)

        @calldata_type(VTK_STRING)
        def on_error(caller, event, message=None):
            self.errors.append(text(message))

        @calldata_type(VTK_STRING)
        def on_warning(caller, event, message=None):
            if text(message) not in self.warnings:
                self.warnings.append(text(message))

        # The observers replace VTK's own printing of these messages.
        self._observers = (on_error, on_warning)
        algorithm = proxy.GetClientSideObject()
        algorithm.AddObserver(vtkCommand.ErrorEvent, on_error)
        algorithm.AddObserver(vtkCommand.WarningEvent, on_warning)

    def check(self, what):
        for warning in self.warnings:
            print("warning from %s: %s" % (what, warning))
        self.warnings = []
        if self.errors:
            sys.exit("%s failed:\n%s" % (what, "\n".join(self.errors)))


def gradient_flow(density, preset, solver="Learned operator", operator=None, steps=20, threads=2):
    """The JKO Gradient Flow filter on `density` with the energy of `preset`
    and tau = 0.005. `solver`: 'Learned operator', 'Reference solver' or
    'Learned + refine'."""
    from paraview import simple

    flow = simple.JKOGradientFlow(Input=density)
    flow.Density = ["POINTS", "density"]
    for name, value in PRESETS[preset]["properties"].items():
        setattr(flow, name, value)
    flow.TimeStep = TIME_STEP
    flow.NumberOfSteps = steps
    flow.NumberOfThreads = threads
    flow.Solver = solver
    if solver != "Reference solver":
        flow.OperatorFile = operator or operator_path(preset)
    return flow


class Rollout:
    """The frames and the per-frame table of a flow, as numpy arrays.

    `density[k]` is frame k in axis order (x, y[, z]), `velocity[k]` the
    velocity of the step arriving at it (axis order, then 3 components;
    zero at frame 0); `table` maps the columns of the filter's second output
    (Time, Energy, Mass, TransportCost, Objective, ...) to arrays; `seconds`
    is the wall time of the rollout (the filter computes frames when first
    asked for and keeps them: asking for the last frame computes them all).
    """

    def __init__(self, flow, what="the rollout"):
        from vtkmodules.util import numpy_support

        messages = FilterMessages(flow)
        start = time.time()
        flow.UpdatePipelineInformation()
        self.times = np.array(flow.TimestepValues)
        flow.UpdatePipeline(self.times[-1])
        self.seconds = time.time() - start
        messages.check(what)
        self.density, self.velocity = [], []
        for t in self.times:
            flow.UpdatePipeline(t)
            data = flow.GetClientSideObject().GetOutputDataObject(0)
            dims = [d for d in data.GetDimensions() if d > 1]
            shape = tuple(reversed(dims))
            rho = numpy_support.vtk_to_numpy(data.GetPointData().GetArray("density")).reshape(shape)
            velocity = numpy_support.vtk_to_numpy(data.GetPointData().GetArray("velocity"))
            self.density.append(rho.T.copy())
            axes = list(reversed(range(len(shape)))) + [len(shape)]
            self.velocity.append(velocity.reshape(shape + (3,)).transpose(axes).copy())
        messages.check(what)
        image = flow.GetClientSideObject().GetOutputDataObject(0)
        self.origin, self.spacing, self.dims = image.GetOrigin(), image.GetSpacing(), image.GetDimensions()
        field = image.GetFieldData()
        self.energy_description = field.GetAbstractArray("EnergyDescription").GetValue(0)
        self.solver = field.GetAbstractArray("Solver").GetValue(0)
        table = flow.GetClientSideObject().GetOutputDataObject(1)
        self.table = {}
        for c in range(table.GetNumberOfColumns()):
            column = table.GetColumn(c)
            if column.IsA("vtkStringArray"):  # RefineReason: one word per frame
                self.table[column.GetName()] = np.array([column.GetValue(k) for k in range(column.GetNumberOfValues())])
            else:
                self.table[column.GetName()] = numpy_support.vtk_to_numpy(column).copy()

    def box(self):
        """[x0, x1, y0, y1] of the flow's box (nodes are cell centres)."""
        (ox, oy, _), (hx, hy, _), (nx, ny, _) = self.origin, self.spacing, self.dims
        return [ox - hx / 2, ox + (nx - 0.5) * hx, oy - hy / 2, oy + (ny - 0.5) * hy]

    def mass_drift(self):
        """Largest relative change of the mass over the frames."""
        mass = self.table["Mass"]
        return float(np.max(np.abs(mass - mass[0])) / mass[0])


def strip_frames(steps, count=6):
    """Frame indices for a strip: denser early, where these flows move
    fastest (k grows quadratically from 0 to `steps`)."""
    picks = np.unique(np.round(steps * np.linspace(0, 1, count) ** 2).astype(int))
    return [int(k) for k in picks]


def plot_strip(rows, times, box, path, title, frames=None, colour_map="magma", row_labels=None, shared_scale=True,
               gamma=0.5):
    """Saves a strip of 2D frames as a PNG.

    `rows` is a list of trajectories (each a list of arrays in axis order
    (x, y)); `times` are the frame times; each panel is stamped with t and k.
    One colour scale for the whole figure (so decay and concentration show),
    unless `shared_scale` is False. The scale is a power law (gamma 0.5 by
    default: a square-root scale) so low-density tails and fronts stay
    visible next to the initial peaks; the colour bar is labelled in density.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import PowerNorm

    frames = frames if frames is not None else strip_frames(len(times) - 1)
    vmax = max(float(np.max(row[k])) for row in rows for k in frames)
    fig, axes = plt.subplots(len(rows), len(frames), figsize=(2.3 * len(frames) + 1.2, 2.35 * len(rows) + 0.7),
                             squeeze=False, constrained_layout=True)
    for r, row in enumerate(rows):
        row_max = vmax if shared_scale else max(float(np.max(row[k])) for k in frames)
        for c, k in enumerate(frames):
            ax = axes[r, c]
            image = ax.imshow(row[k].T, origin="lower", extent=box, cmap=colour_map,
                              norm=PowerNorm(gamma, vmin=0, vmax=row_max), interpolation="nearest")
            ax.set_title("t = %.3f  (k = %d)" % (times[k], k), fontsize=9)
            ax.set_xticks([box[0], box[1]])
            ax.set_yticks([box[2], box[3]])
            ax.tick_params(labelsize=7)
            if r == len(rows) - 1:
                ax.set_xlabel("x", fontsize=8, labelpad=-6)
            if c == 0:
                ax.set_ylabel((row_labels[r] + "\n" if row_labels else "") + "y", fontsize=8, labelpad=-4)
        if not shared_scale or r == 0:
            bar = fig.colorbar(image, ax=list(axes[r if not shared_scale else slice(None), :].ravel()), shrink=0.9,
                               pad=0.01)
            bar.set_label("density $\\rho$" + (" (power scale %g)" % gamma if gamma != 1 else ""), fontsize=8)
            bar.ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_energy(curves, path, title, ylabel="energy $E(\\rho_k)$"):
    """Saves E(rho_k) against time as a PNG. `curves` maps a label to
    (times, values, style)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 3.6), constrained_layout=True)
    for label, (times, values, style) in curves.items():
        ax.plot(times, values, style, label=label, markersize=4)
    ax.set_xlabel("time $t = t_0 + k\\tau$")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_frames(flow, path):
    """Writes every frame of a flow: `path` (.pvd) and one .vti per frame in
    a folder of the same name; open the .pvd in ParaView and press play."""
    from paraview import simple

    # Clear the frames of an earlier, longer run so the folder matches the .pvd.
    folder, stem = os.path.splitext(path)[0], os.path.splitext(os.path.basename(path))[0]
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if name.startswith(stem + "_") and name.endswith(".vti"):
                os.remove(os.path.join(folder, name))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    simple.SaveData(path, proxy=simple.OutputPort(flow, 0), WriteTimeSteps=1)
    return path


def have_display():
    """Debian's ParaView renders only through X (xvfb-run provides one)."""
    return bool(os.environ.get("DISPLAY"))


def render_frame(flow, time_value, path, title, colour_map="Inferno (matplotlib)", glyph_stride=4, size=(900, 800)):
    """Renders one 2D frame with ParaView: the density coloured, arrows of
    the velocity of the step arriving at the frame where the density is above
    2% of its peak, a colour legend and the time; saves a PNG."""
    from paraview import simple

    view = simple.CreateView("RenderView")
    view.ViewSize = list(size)
    view.OrientationAxesVisibility = 0
    view.Background = [1, 1, 1]
    if hasattr(view, "UseColorPaletteForBackground"):
        view.UseColorPaletteForBackground = 0
    view.ViewTime = time_value

    display = simple.Show(flow, view)
    display.Representation = "Slice"
    simple.ColorBy(display, ("POINTS", "density"))
    lut = simple.GetColorTransferFunction("density")
    lut.ApplyPreset(colour_map, True)
    display.RescaleTransferFunctionToDataRange(False, True)
    bar = simple.GetScalarBar(lut, view)
    bar.Title = "density"
    bar.ComponentTitle = ""
    bar.TitleColor = bar.LabelColor = [0.1, 0.1, 0.1]
    bar.Visibility = 1

    # Arrows on every glyph_stride-th node where there is mass: the velocity
    # of vacuum nodes moves no mass and would only clutter the picture.
    subset = simple.ExtractSubset(Input=flow)
    subset.SampleRateI = subset.SampleRateJ = glyph_stride
    flow.UpdatePipeline(time_value)
    peak = flow.GetClientSideObject().GetOutputDataObject(0).GetPointData().GetArray("density").GetRange()[1]
    massive = simple.Threshold(Input=subset, Scalars=["POINTS", "density"])
    if hasattr(massive, "LowerThreshold"):
        massive.LowerThreshold, massive.UpperThreshold = 0.02 * peak, 1e30
    else:
        massive.ThresholdRange = [0.02 * peak, 1e30]
    glyphs = simple.Glyph(Input=massive, GlyphType="Arrow")
    glyphs.OrientationArray = ["POINTS", "velocity"]
    glyphs.ScaleArray = ["POINTS", "velocity"]
    glyphs.GlyphMode = "All Points"
    massive.UpdatePipeline(time_value)
    data = massive.GetClientSideObject().GetOutputDataObject(0)
    top = data.GetPointData().GetArray("velocity").GetMaxNorm() if data.GetNumberOfPoints() else 1.0
    spacing = flow.GetClientSideObject().GetOutputDataObject(0).GetSpacing()[0]
    glyphs.ScaleFactor = 1.1 * glyph_stride * spacing / max(top, 1e-12)
    glyph_display = simple.Show(glyphs, view)
    simple.ColorBy(glyph_display, None)
    glyph_display.AmbientColor = glyph_display.DiffuseColor = [0.3, 0.85, 1.0]

    text = simple.Text(Text="%s   t = %.3f\narrows: velocity of the step to this frame (largest speed %.2g)"
                       % (title, time_value, top))
    text_display = simple.Show(text, view)
    text_display.WindowLocation = "Upper Center"
    text_display.Justification = "Center"
    text_display.FontSize = 22
    text_display.Color = [0.1, 0.1, 0.1]
    bar.WindowLocation = "Any Location"
    bar.Orientation = "Vertical"
    bar.Position = [0.84, 0.15]
    bar.AddRangeLabels = 0
    bar.ScalarBarLength = 0.6
    bar.TitleFontSize = bar.LabelFontSize = 18

    # Frame the box: parallel projection, a little room above for the text
    # and on the right for the legend.
    image = flow.GetClientSideObject().GetOutputDataObject(0)
    (ox, oy, _), (hx, hy, _), (nx, ny, _) = image.GetOrigin(), image.GetSpacing(), image.GetDimensions()
    centre = [ox + (nx - 1) * hx / 2, oy + (ny - 1) * hy / 2]
    height = ny * hy
    view.InteractionMode = "2D"
    view.CameraParallelProjection = 1
    simple.Render(view)  # the first render resets the camera: place it after
    focus = [centre[0] + 0.1 * height, centre[1] + 0.045 * height]
    view.CameraPosition = focus + [10 * height]
    view.CameraFocalPoint = focus + [0]
    view.CameraViewUp = [0, 1, 0]
    view.CameraParallelScale = 0.56 * height
    simple.Render(view)
    simple.SaveScreenshot(path, view, ImageResolution=list(size), TransparentBackground=0)
    return path


def run_preset_demo(preset, sample, description, default_steps=20):
    """The common body of the per-preset demos: parses the command line,
    rolls the bundled operator out from `sample`, writes frames, strip,
    energy plot and (with a display) a ParaView rendering, prints where."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--sample", default=sample, help="initial density (.vti in data/samples/ or a path)")
    parser.add_argument("--operator", default=None, help="operator file (default: data/operators/%s.jko)" % preset)
    parser.add_argument("--steps", type=int, default=default_steps, help="JKO steps K (frames 0..K)")
    parser.add_argument("--grid", type=int, default=0, help="resample the sample to this many nodes per axis")
    parser.add_argument("--threads", type=int, default=0, help="LibTorch threads (0: all cores)")
    parser.add_argument("--out", default=os.path.join(ROOT, "output", preset), help="output folder")
    parser.add_argument("--no-render", action="store_true", help="skip the ParaView rendering (needs X)")
    parser.add_argument("--check", action="store_true",
                        help="exit with an error unless mass is kept, the energy never increases and every output "
                             "file was written (the smoke test)")
    args = parser.parse_args()

    load_plugin()
    os.makedirs(args.out, exist_ok=True)
    density = read_density(sample_path(args.sample), args.grid)
    flow = gradient_flow(density, preset, operator=args.operator, steps=args.steps, threads=args.threads)
    rollout = Rollout(flow, "the %s rollout" % preset)
    energy = rollout.table["Energy"]
    grid = "x".join(str(d) for d in rollout.dims if d > 1)
    print("%s: %d learned JKO steps on %s nodes in %.2f s (%s)" % (PRESETS[preset]["title"], args.steps, grid,
                                                                    rollout.seconds, rollout.energy_description))
    decreasing = bool(np.all(np.diff(energy) <= 1e-12 * abs(energy[0])))
    print("energy %.6g -> %.6g (never increases: %s), mass kept to %.1e"
          % (energy[0], energy[-1], decreasing, rollout.mass_drift()))

    title = "%s: %s, learned operator, tau = %g" % (PRESETS[preset]["title"], PRESETS[preset]["formula"], TIME_STEP)
    outputs = [("frames (ParaView)", write_frames(flow, os.path.join(args.out, "frames.pvd")))]
    outputs.append(("strip of frames", plot_strip([rollout.density], rollout.times, rollout.box(),
                                                   os.path.join(args.out, "strip.png"), title)))
    outputs.append(("energy plot", plot_energy({"learned operator": (rollout.times, energy, "o-")},
                                               os.path.join(args.out, "energy.png"),
                                               "%s: energy along the flow" % PRESETS[preset]["title"])))
    if args.no_render:
        pass
    elif have_display():
        frame = strip_frames(args.steps)[2]
        outputs.append(("ParaView rendering", render_frame(flow, rollout.times[frame],
                                                           os.path.join(args.out, "paraview.png"),
                                                           PRESETS[preset]["title"])))
    else:
        print("no X display: ParaView rendering skipped (run under xvfb-run -a to get paraview.png)")
    report(outputs)
    if args.check:
        problems = [] if decreasing else ["the energy increased"]
        if len(rollout.times) != args.steps + 1:
            problems.append("%d frames instead of %d" % (len(rollout.times), args.steps + 1))
        check_outputs(rollout, args.out, args.steps, outputs, problems)
    return rollout


def check_outputs(rollout, out, steps, outputs, problems):
    """--check of a demo: the mass kept, steps + 1 frames written under
    OUT/frames, every output file there and not empty; exits with the
    problems (those found by the demo itself first) or prints "check passed"."""
    if rollout.mass_drift() > 1e-10:
        problems.append("the mass changed by %.1e" % rollout.mass_drift())
    frames = [f for f in os.listdir(os.path.join(out, "frames")) if f.endswith(".vti")]
    if len(frames) != steps + 1:
        problems.append("%d .vti frames written instead of %d" % (len(frames), steps + 1))
    problems += ["%s is missing or empty" % path for _, path in outputs
                 if not os.path.exists(path) or os.path.getsize(path) == 0]
    if problems:
        sys.exit("check failed: " + "; ".join(problems))
    print("check passed")


def report(paths):
    """Prints where the outputs are."""
    print("\nOutputs:")
    for label, path in paths:
        print("  %-22s %s" % (label, os.path.abspath(path)))
