#!/usr/bin/env bash
# Installs the Debian packages (a no-op when present), configures and builds
# everything into build/ (the ParaView plugin too, when ParaView is found).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-debian-packages.sh
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}"
cmake --build build
