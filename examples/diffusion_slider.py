"""A Diffusion slider on a learned flow: three values of D, one operator, no
training.

    pvpython examples/diffusion_slider.py [--energy porous-medium|fokker-planck|aggregation-diffusion]
                                          [--diffusion 0.5,1,2] [--exponent 1.5,2,4] [--attraction 5,20,50]
                                          [--steps 20] [--grid 64]
                                          [--out output/diffusion-slider]

(under `xvfb-run -a -s "-screen 0 1280x1024x24"` for the ParaView rendering)

What a teacher does in front of a class: one JKO Gradient Flow filter on the
two bumps of data/samples/porous-bumps.vti, Solver "Learned operator" with
the bundled data/operators/porous-medium.jko, and the Diffusion property
moved to each value in turn, as a slider and Apply would. The operator is
conditioned on D in [0.1, 10] and the exponent m in [1.5, 4] at tau =
0.005, one network for the whole range; other time steps and masses reach
it through the exact symmetries of the JKO step (docs/design.md, "One
operator, many panels" and "The porous medium conditioned on D and m").
With --exponent the slider is the Exponent property instead (D = 1).
With --energy fokker-planck the flow is Fokker-Planck in a quadratic well from the two Gaussians of
data/samples/two-bumps.vti (default D = 0.05, 0.1, 0.5): the bundled
data/operators/fokker-planck.jko is conditioned on D in [0.05, 0.5] and the
potential's strength, one network for the whole range (docs/design.md,
"Conditioned operators with the Gauss-Newton corrections"). With --energy
aggregation-diffusion the ring of data/samples/ring.vti contracts under a
quadratic attraction (default D = 0.05, 0.1, 0.5; with --attraction the
slider is the Attraction property instead, D = 0.1): the bundled
data/operators/aggregation-diffusion.jko is conditioned on D in [0.05, 0.5]
and the attraction A in [5, 50]. Each re-run is timed. Writes the frames of each value (frames-D*.pvd or frames-m*.pvd;
frames.pvd is the first), a strip with one row per value (strip.png), the
energies (energy.png) and, with a display, a ParaView rendering of the three
side by side (paraview.png). With --reference it also rolls out the
reference solver for each value and prints the learned frames' error
against it.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jko_examples as J  # noqa: E402


def render_side_by_side(flows, labels, time_value, path, size=(1500, 600)):
    """The frames of the flows at `time_value` side by side in one view,
    each shifted along x by 1.1 box widths, one shared colour scale."""
    from paraview import simple

    view = simple.CreateRenderView()
    view.ViewSize = list(size)
    view.OrientationAxesVisibility = 0
    view.Background = [1, 1, 1]
    try:
        view.UseColorPaletteForBackground = 0
    except AttributeError:
        pass
    view.ViewTime = time_value
    top = 0
    for i, (flow, label) in enumerate(zip(flows, labels)):
        shifted = simple.Transform(Input=flow)
        shifted.Transform = "Transform"
        shifted.Transform.Translate = [1.1 * i, 0, 0]
        display = simple.Show(shifted, view)
        display.Representation = "Surface"
        simple.ColorBy(display, ("POINTS", "density"))
        text = simple.Text(Text=label)
        text_display = simple.Show(text, view)
        text_display.WindowLocation = "Any Location"
        text_display.Position = [0.13 + 0.343 * i, 0.91]
        text_display.FontSize = 20
        text_display.Color = [0, 0, 0]
        top = max(top, float(flow.GetClientSideObject().GetOutputDataObject(0).GetPointData()
                             .GetArray("density").GetRange()[1]))
    lut = simple.GetColorTransferFunction("density")
    lut.ApplyPreset("Inferno (matplotlib)", True)
    lut.RescaleTransferFunction(0.0, top)
    simple.Render(view)  # the first render resets the camera: place it after
    view.CameraPosition = [1.6, 0.56, 5]
    view.CameraFocalPoint = [1.6, 0.56, 0]
    view.CameraViewUp = [0, 1, 0]
    view.CameraParallelProjection = 1
    view.CameraParallelScale = 0.64
    simple.Render(view)
    simple.SaveScreenshot(path, view, ImageResolution=list(size), TransparentBackground=0)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--energy", default="porous-medium",
                        choices=["porous-medium", "fokker-planck", "aggregation-diffusion"],
                        help="the energy and its bundled operator")
    parser.add_argument("--diffusion", default=None,
                        help="values of D, comma-separated (default: 0.5,1,2; the others 0.05,0.1,0.5)")
    parser.add_argument("--exponent", default=None,
                        help="porous medium: slide the exponent m over these values instead of D (e.g. 1.5,2,4)")
    parser.add_argument("--attraction", default=None,
                        help="aggregation-diffusion: slide the attraction A over these values instead of D "
                             "(e.g. 5,20,50)")
    parser.add_argument("--sample", default=None,
                        help="initial density (.vti in data/samples/ or a path; default porous-bumps.vti, "
                             "Fokker-Planck two-bumps.vti, aggregation-diffusion ring.vti)")
    parser.add_argument("--operator", default=None, help="operator file (default: the energy's in data/operators/)")
    parser.add_argument("--steps", type=int, default=20, help="JKO steps K (frames 0..K)")
    parser.add_argument("--grid", type=int, default=0, help="resample the sample to this many nodes per axis")
    parser.add_argument("--threads", type=int, default=0, help="LibTorch threads (0: all cores)")
    parser.add_argument("--solver", default="Learned operator", choices=["Learned operator", "Auto"],
                        help="Learned operator (the operator's frames, certified and flagged) or Auto (frames whose "
                             "certificate fails are refined)")
    parser.add_argument("--reference", action="store_true",
                        help="also roll out the reference solver for each D and print the learned frames' error")
    parser.add_argument("--out", default=os.path.join(J.ROOT, "output", "diffusion-slider"), help="output folder")
    parser.add_argument("--no-render", action="store_true", help="skip the ParaView rendering (needs X)")
    parser.add_argument("--check", action="store_true",
                        help="exit with an error unless every D keeps the mass, never raises the energy, was "
                             "served without an error and every output file was written (the smoke test)")
    args = parser.parse_args()
    porous = args.energy == "porous-medium"
    if args.exponent and not porous:
        parser.error("--exponent slides the porous medium's m: use it with --energy porous-medium")
    if args.attraction and args.energy != "aggregation-diffusion":
        parser.error("--attraction slides the interaction's A: use it with --energy aggregation-diffusion")
    # The slider: the panel property, its label and the values.
    prop, symbol = (("Exponent", "m") if args.exponent else ("Attraction", "A") if args.attraction
                    else ("Diffusion", "D"))
    values = [float(v) for v in (args.exponent or args.attraction or args.diffusion
                                 or ("0.5,1,2" if porous else "0.05,0.1,0.5")).split(",")]
    sample = args.sample or {"porous-medium": "porous-bumps.vti", "fokker-planck": "two-bumps.vti",
                             "aggregation-diffusion": "ring.vti"}[args.energy]

    J.load_plugin()
    from paraview import simple

    os.makedirs(args.out, exist_ok=True)
    density = J.read_density(J.sample_path(sample), args.grid)
    flow = J.gradient_flow(density, args.energy, solver=args.solver, operator=args.operator, steps=args.steps,
                           threads=args.threads)
    rollouts, outputs, problems, frozen = [], [], [], []
    for i, D in enumerate(values):
        # The slider: one property, one Apply, the learned flow again.
        setattr(flow, prop, D)
        rollout = J.Rollout(flow, "the learned rollout with %s = %g" % (symbol, D))
        rollouts.append(rollout)
        energy = rollout.table["Energy"]
        decreasing = bool(np.all(np.diff(energy) <= 1e-12 * abs(energy[0])))
        grid = "x".join(str(d) for d in rollout.dims if d > 1)
        line = ("%s = %-5g %d steps (%s) on %s nodes in %.3f s; energy %.5g -> %.5g (never increases: %s), "
                "mass kept to %.1e" % (symbol, D, args.steps, args.solver, grid, rollout.seconds, energy[0], energy[-1], decreasing,
                                       rollout.mass_drift()))
        if args.reference:
            reference = J.gradient_flow(density, args.energy, solver="Reference solver", steps=args.steps,
                                        threads=args.threads)
            setattr(reference, prop, D)
            exact = J.Rollout(reference, "the reference rollout with %s = %g" % (symbol, D))
            errors = [np.abs(a - b).sum() / np.abs(b).sum() for a, b in zip(rollout.density[1:], exact.density[1:])]
            line += "; frames against the reference solver: 1st %.2f%%, mean %.2f%%, last %.2f%%" % (
                100 * errors[0], 100 * np.mean(errors), 100 * errors[-1])
            simple.Delete(reference)
        print(line)
        if not decreasing:
            problems.append("the energy increased with %s = %g" % (symbol, D))
        if rollout.mass_drift() > 1e-10:
            problems.append("the mass changed by %.1e with %s = %g" % (rollout.mass_drift(), symbol, D))
        name = "frames.pvd" if i == 0 else "frames-%s%g.pvd" % (symbol, D)
        outputs.append(("frames, %s = %g" % (symbol, D), J.write_frames(flow, os.path.join(args.out, name))))
        # A frozen copy for the side-by-side rendering (the filter now holds this D's frames only).
        frozen.append(simple.PVDReader(FileName=os.path.join(args.out, name)))

    labels = ["%s = %g" % (symbol, D) for D in values]
    trained = {"porous-medium": "conditioned on D in [0.1, 10], m in [1.5, 4]",
               "fokker-planck": "conditioned on D in [0.05, 0.5]",
               "aggregation-diffusion": "conditioned on D in [0.05, 0.5], A in [5, 50]"}[args.energy]
    name = ("Porous medium, D = 1" if args.exponent else "Aggregation-diffusion, D = 0.1" if args.attraction
            else J.PRESETS[args.energy]["title"])
    title = "%s, tau = %g: one learned operator (%s), %s" % (name, J.TIME_STEP, trained, ", ".join(labels))
    outputs.append(("strip of frames", J.plot_strip([r.density for r in rollouts], rollouts[0].times,
                                                     rollouts[0].box(), os.path.join(args.out, "strip.png"), title,
                                                     row_labels=labels)))
    outputs.append(("energy plot", J.plot_energy(
        {label: (r.times, r.table["Energy"], "o-") for label, r in zip(labels, rollouts)},
        os.path.join(args.out, "energy.png"), "Energy along the flow for each %s" % symbol)))
    if args.no_render:
        pass
    elif J.have_display():
        frame = J.strip_frames(args.steps)[2]
        outputs.append(("ParaView rendering", render_side_by_side(frozen, labels, rollouts[0].times[frame],
                                                                  os.path.join(args.out, "paraview.png"))))
    else:
        print("no X display: ParaView rendering skipped (run under xvfb-run -a to get paraview.png)")
    J.report(outputs)
    if args.check:
        for rollout in rollouts:
            if len(rollout.times) != args.steps + 1:
                problems.append("%d frames instead of %d" % (len(rollout.times), args.steps + 1))
        J.check_outputs(rollouts[0], args.out, args.steps, outputs, problems)


if __name__ == "__main__":
    start = time.time()
    main()
    print("done in %.1f s" % (time.time() - start))
