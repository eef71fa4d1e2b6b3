#!/usr/bin/env bash
# Regenerates the README's pictures from the demos and the GUI: run from
# anywhere after a build (bash scripts/demo.sh). About two minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
images=docs/images
export JKO_PLUGIN="$(pwd)/build/lib/paraview-5.11/plugins/NeuralJKOFlow/NeuralJKOFlow.so"
# -noreset keeps Xvfb up between ParaView's OpenGL probe and its render window.
render=(xvfb-run -a -s "-screen 0 1280x1024x24 -noreset")

"${render[@]}" pvpython examples/porous_medium.py --out output/porous-medium
cp output/porous-medium/strip.png "$images/porous-medium-strip.png"
cp output/porous-medium/paraview.png "$images/porous-medium-paraview.png"
cp output/porous-medium/energy.png "$images/porous-medium-energy.png"

"${render[@]}" pvpython examples/aggregation_diffusion.py --out output/aggregation-diffusion
cp output/aggregation-diffusion/strip.png "$images/aggregation-diffusion-strip.png"

# The whole ParaView window with examples/jko_layout.pvsm open.
/usr/bin/python3 "$images/gui_screenshot.py" --out "$images/gui-layout.png"

"${render[@]}" pvpython examples/fokker_planck.py --out output/fokker-planck
cp output/fokker-planck/strip.png "$images/fokker-planck-strip.png"

# One conditioned operator, three values of D (and of m for the porous
# medium).
"${render[@]}" pvpython examples/diffusion_slider.py --reference --out output/diffusion-slider
cp output/diffusion-slider/paraview.png "$images/diffusion-slider.png"
cp output/diffusion-slider/strip.png "$images/diffusion-slider-strip.png"
"${render[@]}" pvpython examples/diffusion_slider.py --exponent 1.5,2,4 --reference \
  --out output/diffusion-slider-exponent
cp output/diffusion-slider-exponent/strip.png "$images/diffusion-slider-exponent-strip.png"
"${render[@]}" pvpython examples/diffusion_slider.py --energy fokker-planck --reference \
  --out output/diffusion-slider-fokker-planck
cp output/diffusion-slider-fokker-planck/strip.png "$images/diffusion-slider-fokker-planck-strip.png"
"${render[@]}" pvpython examples/diffusion_slider.py --energy aggregation-diffusion --attraction 5,20,50 --reference \
  --out output/diffusion-slider-attraction
cp output/diffusion-slider-attraction/strip.png "$images/diffusion-slider-attraction-strip.png"

"${render[@]}" pvpython examples/volume_3d.py --out output/volume-3d
cp output/volume-3d/strip.png "$images/volume-3d-strip.png"
ls -l "$images"/*.png
