"""A 3D Fokker-Planck flow by the reference solver: two blobs in a quadratic well.

    pvpython examples/blobs_3d.py [--steps 20] [--out output/blobs-3d]

(under `xvfb-run -a -s "-screen 0 1280x1024x24"` for the ParaView rendering)

The JKO Gradient Flow filter works on 3D images as on 2D ones. Two Gaussian
blobs of unequal mass (data/samples/blobs-3d.vti, 32^3 nodes, mass 1) drift
down the well V(x) = 20 |x - (0.5, 0.5, 0.5)|^2 / 2 and diffuse (D = 0.1)
into the Gibbs density, a Gaussian of variance D/a = 0.005 per axis. No 3D
operator is bundled, so every step is minimised by the reference solver
(L-BFGS on the JKO objective in map form; a fraction of a second per step
here). Writes the frames (frames.pvd + frames/*.vti), strip.png (the
marginal density int rho dz, i.e. the mass seen from above), energy.png and
paraview.png (iso-surfaces of one frame).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jko_examples as J  # noqa: E402


def render_iso_surfaces(flow, time_value, path, size=(900, 760)):
    """Iso-surfaces of the density at 10%, 30% and 60% of the frame's peak,
    inside the box's outline, seen at an angle; saves a PNG."""
    from paraview import simple

    flow.UpdatePipeline(time_value)
    peak = flow.GetClientSideObject().GetOutputDataObject(0).GetPointData().GetArray("density").GetRange()[1]
    view = simple.CreateView("RenderView")
    view.ViewSize = list(size)
    view.OrientationAxesVisibility = 1
    view.Background = [1, 1, 1]
    if hasattr(view, "UseColorPaletteForBackground"):
        view.UseColorPaletteForBackground = 0
    view.ViewTime = time_value
    outline = simple.Show(simple.Outline(Input=flow), view)
    outline.AmbientColor = outline.DiffuseColor = [0.2, 0.2, 0.2]
    # One surface per level, each with its own colour and opacity: the outer
    # ones translucent so the inner ones show through.
    levels = [(0.1, 0.25, [0.34, 0.06, 0.43]), (0.3, 0.45, [0.80, 0.24, 0.30]), (0.6, 1.0, [0.99, 0.65, 0.04])]
    for fraction, opacity, colour in levels:
        surface = simple.Show(simple.Contour(Input=flow, ContourBy=["POINTS", "density"],
                                             Isosurfaces=[fraction * peak]), view)
        simple.ColorBy(surface, None)
        surface.AmbientColor = surface.DiffuseColor = colour
        surface.Opacity = opacity
    caption = ("3D Fokker-Planck, reference solver   t = %.3f\n"
               "iso-surfaces at 10%% (purple), 30%% (red), 60%% (orange) of the peak %.3g" % (time_value, peak))
    text = simple.Show(simple.Text(Text=caption), view)
    text.WindowLocation = "Upper Center"
    text.Justification = "Center"
    text.FontSize = 20
    text.Color = [0.1, 0.1, 0.1]
    simple.Render(view)  # the first render resets the camera: place it after
    view.CameraPosition = [2.2, -1.4, 1.6]
    view.CameraFocalPoint = [0.5, 0.5, 0.5]
    view.CameraViewUp = [0, 0, 1]
    simple.ResetCamera(view)
    view.CameraParallelProjection = 0
    simple.SaveScreenshot(path, view, ImageResolution=list(size), TransparentBackground=0)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="JKO steps K")
    parser.add_argument("--threads", type=int, default=0, help="LibTorch threads (0: all cores)")
    parser.add_argument("--out", default=os.path.join(J.ROOT, "output", "blobs-3d"), help="output folder")
    parser.add_argument("--no-render", action="store_true", help="skip the ParaView rendering (needs X)")
    args = parser.parse_args()

    J.load_plugin()
    os.makedirs(args.out, exist_ok=True)
    density = J.read_density(J.sample_path("blobs-3d.vti"))
    flow = J.gradient_flow(density, "fokker-planck", "Reference solver", steps=args.steps, threads=args.threads)
    rollout = J.Rollout(flow, "the 3D reference rollout")
    energy = rollout.table["Energy"]
    print("3D Fokker-Planck: %d reference JKO steps on %s nodes in %.1f s" % (
        args.steps, "x".join(str(d) for d in rollout.dims), rollout.seconds))
    print("energy %.6g -> %.6g, mass kept to %.1e" % (energy[0], energy[-1], rollout.mass_drift()))

    hz = rollout.spacing[2]
    marginals = [rho.sum(axis=2) * hz for rho in rollout.density]
    outputs = [("frames (ParaView)", J.write_frames(flow, os.path.join(args.out, "frames.pvd")))]
    outputs.append(("strip of frames", J.plot_strip(
        [marginals], rollout.times, rollout.box(), os.path.join(args.out, "strip.png"),
        "3D Fokker-Planck in a quadratic well, reference solver: marginal density $\\int\\rho\\,dz$")))
    outputs.append(("energy plot", J.plot_energy({"reference solver": (rollout.times, energy, "o-")},
                                                 os.path.join(args.out, "energy.png"),
                                                 "3D Fokker-Planck: free energy along the flow")))
    if args.no_render:
        pass
    elif J.have_display():
        frame = J.strip_frames(args.steps)[2]
        outputs.append(("ParaView rendering",
                        render_iso_surfaces(flow, rollout.times[frame], os.path.join(args.out, "paraview.png"))))
    else:
        print("no X display: ParaView rendering skipped (run under xvfb-run -a to get paraview.png)")
    J.report(outputs)


if __name__ == "__main__":
    main()
