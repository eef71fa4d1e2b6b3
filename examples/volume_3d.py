"""A learned 3D porous-medium flow, shown by volume rendering and iso-surfaces.

    pvpython examples/volume_3d.py [--steps 20] [--solver Auto] [--out output/volume-3d]

(under `xvfb-run -a -s "-screen 0 1280x1024x24 -noreset"` for the ParaView
renderings)

A compact torus of density (data/samples/torus-3d.vti, 32^3 nodes, peak 0.3,
mass 0.008) evolves under the porous-medium equation rho_t = Lap rho^2, the
Wasserstein gradient flow of E(rho) = int rho^2, one JKO step (tau = 0.005)
per frame by the bundled 3D operator data/operators/porous-medium-3d.jko.
The tube thickens with a sharp front that moves at finite speed, the hole in
the middle closes, and the torus becomes one blob. With the default Solver
Auto every learned step is certified and refined by L-BFGS where its
certificate fails (the script says which frames); `--solver "Learned
operator"` shows the operator's own steps, `--solver "Reference solver"`
L-BFGS on every step (about 35 s here instead of a few seconds).

Writes the frames (frames.pvd + frames/*.vti: open the .pvd in ParaView and
press play), strip.png (frames at growing times: volume rendering above,
iso-surfaces at three fixed densities below; the volume on one fixed
square-root colour and opacity scale), energy.png, and paraview.png (one
frame: the volume with an iso-surface at half its peak).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jko_examples as J  # noqa: E402

# Iso-surface levels as fractions of the initial peak, each with its colour
# and opacity: the outer level shows the front, the inner ones the core.
ISO_LEVELS = [(0.08, 0.3, [0.23, 0.30, 0.75]), (0.3, 0.45, [0.85, 0.35, 0.25]), (0.6, 1.0, [0.99, 0.75, 0.15])]


def _inferno(values):
    """Matplotlib's inferno colours (RGB in [0, 1]) at values in [0, 1]."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import colormaps

    return colormaps["inferno"](np.asarray(values))[:, :3]


class VolumeScene:
    """One ParaView render view of a 3D flow, shown either as a volume
    (colour and opacity fixed to [0, peak] so that frames compare) or as
    iso-surfaces at fixed levels, inside the box's outline, from a fixed
    camera."""

    def __init__(self, flow, peak, size):
        from paraview import simple

        self.simple, self.flow, self.size = simple, flow, list(size)
        view = simple.CreateView("RenderView")
        view.ViewSize = self.size
        view.OrientationAxesVisibility = 0
        view.Background = [1, 1, 1]
        if hasattr(view, "UseColorPaletteForBackground"):
            view.UseColorPaletteForBackground = 0
        self.view = view
        self.outline = simple.Show(simple.Outline(Input=flow), view)

        self.volume = simple.Show(flow, view)
        self.volume.Representation = "Volume"
        simple.ColorBy(self.volume, ("POINTS", "density"))
        # Colour and opacity on a square-root scale of [0, peak] (as the 2D
        # strips): the porous-medium peak falls fast, and the later, lower
        # frames would be black on a linear one. Fixed for every frame.
        fractions = np.linspace(0, 1, 17)
        colours = _inferno(np.sqrt(fractions))
        lut = simple.GetColorTransferFunction("density")
        lut.AutomaticRescaleRangeMode = "Never"
        lut.RGBPoints = [v for f, c in zip(fractions, colours) for v in (f * peak, c[0], c[1], c[2])]
        opacity = simple.GetOpacityTransferFunction("density")
        opacity.Points = [v for f in fractions for v in (f * peak, 0.9 * np.sqrt(f), 0.5, 0.0)]
        self.volume.ScalarOpacityUnitDistance = 0.05

        self.surfaces = []
        for fraction, alpha, colour in ISO_LEVELS:
            contour = simple.Contour(Input=flow, ContourBy=["POINTS", "density"], Isosurfaces=[fraction * peak])
            surface = simple.Show(contour, view)
            simple.ColorBy(surface, None)
            surface.AmbientColor = surface.DiffuseColor = colour
            surface.Opacity = alpha
            surface.Specular = 0.3
            self.surfaces.append(surface)
        # For the single picture: a surface inside the volume at a level
        # chosen per frame (half the frame's own peak), its core.
        self.core = simple.Contour(Input=flow, ContourBy=["POINTS", "density"], Isosurfaces=[0.5 * peak])
        self.core_surface = simple.Show(self.core, view)
        simple.ColorBy(self.core_surface, None)
        self.core_surface.AmbientColor = self.core_surface.DiffuseColor = [0.3, 0.85, 1.0]
        self.core_surface.Opacity = 0.55
        self.show("volume")
        simple.Render(view)  # the first render resets the camera: place it after
        # From above at an angle, the whole box in view, then closer so that
        # the density fills the panel (only the box's far corners are cut).
        view.CameraFocalPoint = [0.5, 0.5, 0.5]
        view.CameraPosition = [0.5 + 1.2, 0.5 - 1.5, 0.5 + 1.3]
        view.CameraViewUp = [0, 0, 1]
        view.CameraParallelProjection = 0
        simple.ResetCamera(view)
        view.GetActiveCamera().Dolly(1.25)

    def show(self, what):
        """'volume', 'iso' or 'both' (the volume and its core surface).
        The volume glows on a dark background (its low densities are dark
        colours); surfaces are clearer on white."""
        dark = what != "iso"
        self.view.Background = [0.06, 0.06, 0.09] if dark else [1, 1, 1]
        self.outline.AmbientColor = self.outline.DiffuseColor = [0.6, 0.6, 0.65] if dark else [0.35, 0.35, 0.35]
        self.volume.Visibility = 1 if what in ("volume", "both") else 0
        for surface in self.surfaces:
            surface.Visibility = 1 if what == "iso" else 0
        self.core_surface.Visibility = 1 if what == "both" else 0

    def frame_peak(self, time_value):
        self.flow.UpdatePipeline(time_value)
        data = self.flow.GetClientSideObject().GetOutputDataObject(0)
        return data.GetPointData().GetArray("density").GetRange()[1]

    def save(self, time_value, path, what, caption=None):
        simple = self.simple
        self.view.ViewTime = time_value
        if what == "both":
            self.core.Isosurfaces = [0.5 * self.frame_peak(time_value)]
        self.show(what)
        text = None
        if caption:
            text = simple.Show(simple.Text(Text=caption), self.view)
            text.WindowLocation = "Upper Center"
            text.Justification = "Center"
            text.FontSize = 18
            text.Color = [0.1, 0.1, 0.1] if what == "iso" else [0.95, 0.95, 0.95]
        simple.Render(self.view)
        simple.SaveScreenshot(path, self.view, ImageResolution=self.size, TransparentBackground=0)
        if text is not None:
            text.Visibility = 0
        return path


def render_strip(flow, rollout, frames, peak, out, title, size=(420, 400)):
    """Volume renderings (top row) and iso-surfaces (bottom row) of
    `frames`, put together with matplotlib into strip.png; the panels are
    kept in out/panels/."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import PowerNorm
    from matplotlib.lines import Line2D

    scene = VolumeScene(flow, peak, size)
    panels = os.path.join(out, "panels")
    os.makedirs(panels, exist_ok=True)
    rows = {"volume": [], "iso": []}
    for k in frames:
        for what in rows:
            path = os.path.join(panels, "%s_%02d.png" % (what, k))
            rows[what].append(plt.imread(scene.save(rollout.times[k], path, what)))

    fig, axes = plt.subplots(2, len(frames), figsize=(2.6 * len(frames) + 1.3, 5.6), squeeze=False,
                             gridspec_kw={"wspace": 0.02, "hspace": 0.08})
    for c, k in enumerate(frames):
        for r, what in enumerate(rows):
            ax = axes[r, c]
            ax.imshow(rows[what][c])
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if r == 0:
                ax.set_title("t = %.3f  (k = %d)" % (rollout.times[k], k), fontsize=10)
    axes[0, 0].set_ylabel("volume rendering", fontsize=10)
    axes[1, 0].set_ylabel("iso-surfaces", fontsize=10)
    bar = fig.colorbar(matplotlib.cm.ScalarMappable(norm=PowerNorm(0.5, 0, peak), cmap="inferno"),
                       ax=list(axes[0, :]), shrink=0.85, pad=0.01)
    bar.set_label("density $\\rho$ (square-root scale)", fontsize=9)
    bar.ax.tick_params(labelsize=8)
    handles = [Line2D([], [], color=colour, lw=6, alpha=max(alpha, 0.5)) for _, alpha, colour in ISO_LEVELS]
    labels = ["$\\rho$ = %.2g" % (fraction * peak) for fraction, _, _ in ISO_LEVELS]
    axes[1, -1].legend(handles, labels, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=11)
    path = os.path.join(out, "strip.png")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)

    middle = frames[len(frames) // 2]
    picture = os.path.join(out, "paraview.png")
    scene.view.ViewSize = [900, 800]
    scene.size = [900, 800]
    scene.save(rollout.times[middle], picture, "both",
               "3D porous medium, %s   t = %.3f (k = %d)\nvolume rendering; blue: iso-surface at half the peak (%.2g)"
               % (rollout.solver, rollout.times[middle], middle, 0.5 * scene.frame_peak(rollout.times[middle])))
    return path, picture


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", default="torus-3d.vti", help="initial 3D density (.vti in data/samples/ or a path)")
    parser.add_argument("--operator", default=None, help="operator file (default: data/operators/porous-medium-3d.jko)")
    parser.add_argument("--solver", default="Auto",
                        choices=["Auto", "Learned operator", "Learned + refine", "Reference solver"],
                        help="how each JKO step is computed")
    parser.add_argument("--steps", type=int, default=20, help="JKO steps K (frames 0..K)")
    parser.add_argument("--grid", type=int, default=0, help="resample the sample to this many nodes per axis")
    parser.add_argument("--threads", type=int, default=0, help="LibTorch threads (0: all cores)")
    parser.add_argument("--out", default=os.path.join(J.ROOT, "output", "volume-3d"), help="output folder")
    parser.add_argument("--no-render", action="store_true", help="skip the ParaView renderings (need X)")
    parser.add_argument("--check", action="store_true",
                        help="exit with an error unless mass is kept, the energy never increases on a certified frame "
                             "and every output file was written (the smoke test)")
    args = parser.parse_args()

    J.load_plugin()
    os.makedirs(args.out, exist_ok=True)
    density = J.read_density(J.sample_path(args.sample), args.grid)
    operator = None if args.solver == "Reference solver" else args.operator or J.operator_path("porous-medium-3d")
    flow = J.gradient_flow(density, "porous-medium", args.solver, operator=operator, steps=args.steps,
                           threads=args.threads)
    rollout = J.Rollout(flow, "the 3D %s rollout" % args.solver)
    table = rollout.table
    energy = table["Energy"]
    grid = "x".join(str(d) for d in rollout.dims)
    print("3D porous medium (%s): %d JKO steps on %s nodes in %.1f s" % (rollout.solver, args.steps, grid,
                                                                         rollout.seconds))
    decreasing = bool(np.all(np.diff(energy) <= 1e-12 * abs(energy[0])))
    print("energy %.6g -> %.6g (never increases: %s), mass kept to %.1e"
          % (energy[0], energy[-1], decreasing, rollout.mass_drift()))
    refined = [k for k in range(1, len(energy)) if table["Refined"][k] > 0]
    flagged = [k for k in range(1, len(energy)) if table["Flagged"][k] > 0]
    if args.solver == "Auto":
        print("Auto refined %d of %d frames%s" % (len(refined), args.steps,
                                                 (": " + " ".join(str(k) for k in refined)) if refined else ""))
    print("frames whose certificate fails: %s" % (" ".join(str(k) for k in flagged) if flagged else "none"))

    outputs = [("frames (ParaView)", J.write_frames(flow, os.path.join(args.out, "frames.pvd")))]
    outputs.append(("energy plot", J.plot_energy({args.solver: (rollout.times, energy, "o-")},
                                                 os.path.join(args.out, "energy.png"),
                                                 "3D porous medium: energy $\\int\\rho^2$ along the flow")))
    if args.no_render:
        pass
    elif J.have_display():
        peak = float(rollout.density[0].max())
        frames = J.strip_frames(args.steps, 5)
        title = ("3D porous medium $\\rho_t = \\Delta\\rho^2$ on %s nodes, %s (%s), $\\tau$ = %g"
                 % (grid, rollout.solver, os.path.basename(operator or "L-BFGS"), J.TIME_STEP))
        strip, picture = render_strip(flow, rollout, frames, peak, args.out, title)
        outputs.append(("strip of frames", strip))
        outputs.append(("ParaView rendering", picture))
    else:
        print("no X display: ParaView renderings skipped (run under xvfb-run -a to get strip.png and paraview.png)")
    J.report(outputs)
    if args.check:
        rises = [k for k in range(1, len(energy)) if energy[k] > energy[k - 1] and k not in flagged]
        problems = ["the energy increased on certified frames %s" % rises] if rises else []
        J.check_outputs(rollout, args.out, args.steps, outputs, problems)


if __name__ == "__main__":
    main()
