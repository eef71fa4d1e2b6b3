#!/usr/bin/env bash
# The main job: installs the Debian packages, builds into build/, then runs the
# porous-medium teaching demo: the bundled learned operator
# (data/operators/porous-medium.jko, no training) evolves two compact bumps
# (data/samples/porous-bumps.vti) through 20 JKO steps in ParaView's pvpython,
# and writes the frames, a strip of frames, an energy plot and a ParaView
# rendering under output/porous-medium/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh

# Debian's ParaView renders only through X: a virtual X server provides one.
# -noreset keeps Xvfb up between ParaView's OpenGL probe and its render window.
start=$(date +%s)
JKO_PLUGIN="$(pwd)/build/lib/paraview-5.11/plugins/NeuralJKOFlow/NeuralJKOFlow.so" \
  xvfb-run -a -s "-screen 0 1280x1024x24 -noreset" \
  pvpython examples/porous_medium.py --out output/porous-medium
echo "Demo finished in $(( $(date +%s) - start )) s."
echo
echo "Frames:         $(pwd)/output/porous-medium/frames.pvd (open it in ParaView and press play)"
echo "Strip:          $(pwd)/output/porous-medium/strip.png"
echo "Energy plot:    $(pwd)/output/porous-medium/energy.png"
echo "ParaView view:  $(pwd)/output/porous-medium/paraview.png"
echo "More demos:     examples/README.md"
