"""Aggregation-diffusion flow by the bundled learned JKO operator.

    pvpython examples/aggregation_diffusion.py [--steps 30] [--grid 64] [--out output/aggregation-diffusion]

(under `xvfb-run -a -s "-screen 0 1280x1024x24"` for the ParaView rendering)

The energy E(rho) = int D rho log rho + 1/2 int int W(x - y) rho(x) rho(y)
with D = 0.1 and the attractive kernel W(z) = 20 |z|^2 / 2 gives
rho_t = D Lap rho + div(rho grad(W * rho)): every bit of mass is pulled
towards every other while diffusion spreads it. A ring (data/samples/ring.vti,
mass 1) contracts onto its centre of mass, which the flow keeps fixed, and
settles into a Gaussian of variance D / (20 M) = 0.005 per axis. The operator
(data/operators/aggregation-diffusion.jko) was trained on masses 0.5-1.5 on
the unit box with tau = 0.005, conditioned on D in [0.05, 0.5] and the
attraction in [5, 50] (one network for every Diffusion and Attraction in
those ranges; examples/diffusion_slider.py --energy aggregation-diffusion
--attraction 5,20,50 moves the attraction): the interaction strength scales
with the mass (tau A M is what the step sees).
Writes the frames (frames.pvd + frames/*.vti), strip.png, energy.png and
paraview.png.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jko_examples  # noqa: E402

if __name__ == "__main__":
    jko_examples.run_preset_demo("aggregation-diffusion", "ring.vti", __doc__.split("\n\n")[0], default_steps=30)
