#!/usr/bin/env bash
# Builds everything into build/ and runs every test through CTest.
# Installs the Debian packages it needs first (a no-op when present).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-debian-packages.sh
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}"
cmake --build build
ctest --test-dir build --output-on-failure --timeout 900 -j "$(nproc)"
