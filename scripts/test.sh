#!/usr/bin/env bash
# Builds everything into build/ and runs every test through CTest.
# Installs the Debian packages it needs first (a no-op when present).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
ctest --test-dir build --output-on-failure --timeout 900 -j "$(nproc)"
