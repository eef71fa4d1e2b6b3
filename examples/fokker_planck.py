"""Fokker-Planck flow in a quadratic well by the bundled learned JKO operator.

    pvpython examples/fokker_planck.py [--steps 30] [--grid 64] [--out output/fokker-planck]

(under `xvfb-run -a -s "-screen 0 1280x1024x24"` for the ParaView rendering)

The energy E(rho) = int D rho log rho + V rho with D = 0.1 and
V(x) = 20 |x - (0.5, 0.5)|^2 / 2 makes rho_t = D Lap rho + div(rho grad V):
particles diffuse and drift down the well (an Ornstein-Uhlenbeck process).
Two Gaussian bumps (data/samples/two-bumps.vti, mass 1) slide to the centre
and merge into the Gibbs density exp(-V/D)/Z, a Gaussian of variance
D/a = 0.005 per axis, while the free energy falls. The operator
(data/operators/fokker-planck.jko) was trained on masses 0.5-2 on the unit
box with tau = 0.005, conditioned on D in [0.05, 0.5] and the well's
strength in [10, 100] (examples/diffusion_slider.py --energy fokker-planck
moves D). Writes the frames (frames.pvd + frames/*.vti),
strip.png, energy.png and paraview.png.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jko_examples  # noqa: E402

if __name__ == "__main__":
    jko_examples.run_preset_demo("fokker-planck", "two-bumps.vti", __doc__.split("\n\n")[0], default_steps=30)
