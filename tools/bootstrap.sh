#!/usr/bin/env bash
# Installs everything Facet needs on a Debian 12 machine, idempotently:
#   1. Debian -dev packages (only the missing ones; nothing is downloaded when all are present);
#   2. a Python venv in the cache directory with the pinned PyPI packages of tools/requirements.txt,
#      whose `torch` wheel provides LibTorch for the C++ build.
# Prints shell assignments (FACET_VENV=..., FACET_TORCH_PREFIX=...) on its last lines for make.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${FACET_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/facet}
torch_version=$(sed -n 's/^torch==\([0-9.]*\).*/\1/p' "$here/requirements.txt")
venv=${FACET_VENV:-$cache/venv-torch-$torch_version}

log() { printf '[bootstrap] %s\n' "$*" >&2; }

# --- 1. Debian packages -------------------------------------------------------------------
debian_packages=(
  build-essential cmake ninja-build ccache pkg-config git
  clang libclang-rt-14-dev          # libFuzzer + sanitizers for `make fuzz` / `make asan`
  python3 python3-venv python3-dev
  libopencv-dev libhdf5-dev libyaml-cpp-dev nlohmann-json3-dev libcli11-dev libfmt-dev
  libdcmtk-dev libopenjp2-7-dev libgtest-dev libgmock-dev libbenchmark-dev libsentencepiece-dev
  libgloo-dev                       # the torch wheel ships no gloo headers; see cmake/FacetTorch.cmake
  libdlib-dev libdlib-data          # face detection + the 68-point landmark model (facet data align)
  zlib1g-dev libjpeg62-turbo-dev  # libjpeg-turbo: JPEG decoding straight to RGB (data/image/jpeg.cpp)
  libdeflate-dev                  # whole-buffer inflate for PNG decoding (data/image/png.cpp)
)
missing=()
for p in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# --- 2. Python venv with LibTorch -------------------------------------------------------
stamp="$venv/.facet-requirements"
if ! cmp -s "$here/requirements.txt" "$stamp" 2>/dev/null; then
  log "creating $venv (torch==$torch_version and tools/requirements.txt; several GB on the first run)"
  mkdir -p "$cache"
  [ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/requirements.txt" >&2
  cp "$here/requirements.txt" "$stamp"
fi

torch_prefix=$("$venv/bin/python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
abi=$("$venv/bin/python" -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
if [ "$abi" != 1 ]; then
  log "error: torch $torch_version was built with _GLIBCXX_USE_CXX11_ABI=0; Debian's C++ libraries use ABI 1"
  exit 1
fi
echo "FACET_VENV=$venv"
echo "FACET_TORCH_PREFIX=$torch_prefix"
