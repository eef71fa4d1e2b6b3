#!/usr/bin/env bash
# Installs every Debian 12 package Neural JKO Flow needs to build, test and run
# its demos. Nothing else is downloaded at build or run time.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

packages=(
  # toolchain
  cmake ninja-build g++ ccache clang-format
  # core: LibTorch and the well-kept libraries it uses
  libtorch-dev libgtest-dev libbenchmark-dev nlohmann-json3-dev libcli11-dev
  # CBLAS header and link library (the fused inference pass calls sgemm)
  libblas-dev
  # scripts/fuzz.sh: clang and its libFuzzer runtime
  clang libclang-rt-14-dev
  # fast BLAS for LibTorch (the default libblas.so.3 is the reference BLAS)
  libopenblas0-openmp
  # ParaView plugin and its rendering under a virtual X server
  paraview paraview-dev python3-paraview xvfb xauth
  # what find_package(ParaView) loads the config of
  qtbase5-dev libqt5svg5-dev qttools5-dev libqt5opengl5-dev
  qtxmlpatterns5-dev-tools libutfcpp-dev libavformat-dev libavcodec-dev
  libavutil-dev libswscale-dev libswresample-dev mpi-default-dev liblz4-dev
  libdouble-conversion-dev libboost-dev libexpat1-dev libfreetype-dev
  libgdal-dev libgl2ps-dev libglew-dev libhdf5-dev libjpeg-dev libxml2-dev
  libnetcdf-dev libpng-dev libtheora-dev libogg-dev libtiff-dev libx11-dev
  zlib1g-dev python3-mpi4py libgl-dev
  # demos and the TorchScript export example
  python3-numpy python3-matplotlib python3-torch
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "All Debian packages are installed."
  exit 0
fi
echo "Installing ${#missing[@]} Debian packages: ${missing[*]}"
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
