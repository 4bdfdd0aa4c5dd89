#!/usr/bin/env bash
# Installs the Debian packages mmrec needs (only those missing), then
# configures and builds (incrementally) into build/ (or $MMREC_BUILD_DIR).
# Extra arguments are passed to `meson setup` on first configure.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(g++ pkg-config cmake meson ninja-build python3
          libdnnl-dev libtbb-dev libhwy-dev nlohmann-json3-dev doctest-dev
          libopenmpi-dev openmpi-bin procps
          clang libclang-rt-14-dev  # clang: the fuzz targets (scripts/fuzz.sh)
          libcpp-httplib-dev chromium openssl)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v npm >/dev/null || missing+=(npm)  # any npm client will do (Debian's, or one that came with node)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The dashboard's chart library, from npm at a pinned version, checked
# against its registry integrity, unpacked into third_party/ (the build
# embeds it in the binaries: the page loads nothing from the network).
uplot_version=1.6.32
uplot_integrity=sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==
uplot_dir=third_party/uplot-$uplot_version
if [ ! -f "$uplot_dir/dist/uPlot.iife.min.js" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack "uplot@$uplot_version" --silent >/dev/null)
  got="sha512-$(openssl dgst -sha512 -binary "$tmp/uplot-$uplot_version.tgz" | base64 -w0)"
  if [ "$got" != "$uplot_integrity" ]; then
    echo "setup: uplot-$uplot_version.tgz has integrity $got, expected $uplot_integrity" >&2
    rm -rf "$tmp"
    exit 1
  fi
  mkdir -p "$uplot_dir"
  tar -xzf "$tmp/uplot-$uplot_version.tgz" -C "$uplot_dir" --strip-components=1 \
    package/dist/uPlot.iife.min.js package/dist/uPlot.min.css package/LICENSE
  rm -rf "$tmp"
  echo "setup: fetched uPlot $uplot_version into $uplot_dir/"
fi

build=${MMREC_BUILD_DIR:-build}
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" "$@" >/dev/null
fi
ninja -C "$build" >/dev/null || ninja -C "$build"  # on failure, rerun to show the errors
echo "setup: built $build/"
