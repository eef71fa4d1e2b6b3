#!/usr/bin/env bash
# The main job: installs the Debian packages, builds into build/, and computes
# a porous-medium gradient flow from a Barenblatt profile, written as frames
# under output/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-debian-packages.sh
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}"
cmake --build build
./build/bin/jko rollout --case barenblatt-flow --solver reference --grid 64 --steps 20 --out output/barenblatt
echo "Frames: $(pwd)/output/barenblatt/frame.pvd (open it in ParaView)"
