#!/usr/bin/env bash
# Installs the Debian packages mmrec needs (only those missing), then
# configures and builds (incrementally) into build/ (or $MMREC_BUILD_DIR).
# Extra arguments are passed to `meson setup` on first configure.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(g++ pkg-config cmake meson ninja-build python3
          libdnnl-dev libtbb-dev libhwy-dev nlohmann-json3-dev doctest-dev
          libopenmpi-dev openmpi-bin procps
          clang libclang-rt-14-dev)  # clang: the fuzz targets (scripts/fuzz.sh)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

build=${MMREC_BUILD_DIR:-build}
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" "$@" >/dev/null
fi
ninja -C "$build" >/dev/null || ninja -C "$build"  # on failure, rerun to show the errors
echo "setup: built $build/"
