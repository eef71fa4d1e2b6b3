"""Porous-medium flow rho_t = Lap rho^2 by the bundled learned JKO operator.

    pvpython examples/porous_medium.py [--steps 20] [--grid 64] [--out output/porous-medium]

(under `xvfb-run -a -s "-screen 0 1280x1024x24"` for the ParaView rendering)

Two compact bumps (data/samples/porous-bumps.vti, mass 0.02, peaks 0.45 and
0.30) spread with a sharp front at finite speed, the hallmark of the porous
medium equation, and merge into one blob that tends to a Barenblatt profile.
Each frame is one JKO step of the energy E(rho) = int rho^2 with tau = 0.005,
predicted by the operator in data/operators/porous-medium.jko (trained on
peaks 0.05-0.6 on the unit box: keep densities in that range). Writes the
frames (frames.pvd + frames/*.vti), strip.png, energy.png and paraview.png.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jko_examples  # noqa: E402

if __name__ == "__main__":
    jko_examples.run_preset_demo("porous-medium", "porous-bumps.vti", __doc__.split("\n\n")[0], default_steps=20)
