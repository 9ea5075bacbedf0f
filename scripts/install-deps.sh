#!/usr/bin/env bash
# Installs the Debian 12 packages recsched needs to build and test. Idempotent: when
# everything is already installed it touches nothing (and needs no root).
set -euo pipefail

PACKAGES=(
  cmake ninja-build g++ pkg-config   # build
  libboost1.81-dev                   # Boost.Asio + Beast (HTTP)
  nlohmann-json3-dev                 # JSON
  libhwloc-dev                       # topology discovery
  libspdlog-dev                      # logging
  doctest-dev                        # tests
  libdnnl-dev                        # oneDNN sgemm for the dense layers
  libgomp1                           # oneDNN's OpenMP runtime
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
