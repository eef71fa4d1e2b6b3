"""Auto against the reference solver on first steps far outside the training
range, through the ParaView filter (docs/design.md, "The ParaView filter").

For JKO Initial Density kinds x masses x seeds on an N^2 unit box, one step
of the bundled porous-medium operator's Auto solver and one of the reference
solver from the same density: the relative L1 distance between the two
frames, both step objectives J (the lower one is the better minimiser of the
step), both times, and Auto's certificate. Masses 0.3-2 are 3-20 times the
operator's largest trained mass.

    pvpython scripts/auto_first_steps.py [--grid 32] [--out docs/benchmarks/auto-first-steps-32.txt]

(the build's plugin, or $JKO_PLUGIN). About 1 min at 32^2, 3 min at 64^2 on
two cores.
"""
import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "examples"))
import jko_examples as J  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", type=int, default=32)
    parser.add_argument("--out", default=None, help="table to write (default: print only)")
    args = parser.parse_args()
    simple = J.load_plugin()
    from vtkmodules.util import numpy_support

    operator = os.path.join(ROOT, "data", "operators", "porous-medium.jko")
    n = args.grid

    def step(source, solver):
        values = dict(Input=source, NumberOfSteps=1, NumberOfThreads=2, Solver=solver)
        if solver == "Auto":
            values["OperatorFile"] = operator
        flow = simple.JKOGradientFlow(**values)
        start = time.time()
        flow.UpdatePipeline(flow.TimeStep)
        seconds = time.time() - start
        algorithm = flow.GetClientSideObject()
        frame = numpy_support.vtk_to_numpy(algorithm.GetOutputDataObject(0).GetPointData().GetArray("density"))
        table = algorithm.GetOutputDataObject(1)
        result = (frame.copy(), table.GetValueByName(1, "Objective").ToDouble(), seconds,
                  table.GetValueByName(1, "Certificate").ToDouble())
        simple.Delete(flow)
        return result

    lines = ["kind | mass | seed | L1 distance | J Auto | J reference | Auto s | reference s | Auto certificate"]
    apart = worse = 0
    totals = [0.0, 0.0]
    for kind in ["Smooth random field", "Gaussian mixture", "Compact bumps"]:
        for mass in [0.3, 0.5, 1.0, 2.0]:
            for seed in [1, 2, 3]:
                source = simple.JKOInitialDensity(Kind=kind, GridSize=[n, n, n], Mass=mass, Seed=seed)
                source.UpdatePipeline()
                reference = step(source, "Reference solver")
                automatic = step(source, "Auto")
                simple.Delete(source)
                distance = float(np.abs(automatic[0] - reference[0]).sum() / np.abs(reference[0]).sum())
                apart += distance > 0.01
                worse += distance > 0.01 and automatic[1] > reference[1]
                totals[0] += automatic[2]
                totals[1] += reference[2]
                lines.append("%s | %g | %d | %.4f | %.9g | %.9g | %.3f | %.3f | %.4f"
                             % (kind, mass, seed, distance, automatic[1], reference[1], automatic[2], reference[2],
                                automatic[3]))
    lines.append("%d^2: %d of %d first steps more than 1%% apart, %d of them with Auto's objective the higher; "
                 "Auto %.1f s, reference %.1f s in all" % (n, apart, len(lines) - 1, worse, totals[0], totals[1]))
    text = "\n".join(lines) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    sys.__stderr__.write(text)


if __name__ == "__main__":
    main()
