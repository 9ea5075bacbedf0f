#!/usr/bin/env bash
# Installs the Debian 12 packages recsched needs to build and test. Idempotent: when
# everything is already installed it touches nothing (and needs no root).
set -euo pipefail

PACKAGES=(
  cmake ninja-build g++ pkg-config   # build
  libboost1.81-dev                   # Boost.Asio + Beast (HTTP)
  nlohmann-json3-dev                 # JSON
  libhwloc-dev                       # topology discovery
  libglpk-dev                        # recsched-plan: the fleet planner's integer program
  libspdlog-dev                      # logging
  doctest-dev                        # tests
  libdnnl-dev                        # oneDNN sgemm for the dense layers
  libgomp1                           # oneDNN's OpenMP runtime
  systemd dpkg-dev                   # systemd-analyze (unit check), dpkg-shlibdeps (.deb check)
  jq                                 # scripts/check-tests.sh reads ctest's test list
  gnuplot-nox                        # recsched-load --png (its test checks the plot)
  python3-yaml python3-jsonschema    # deploy/kubernetes/validate.py (manifests vs schemas)
  haproxy                            # tests/fleet: a real HAProxy in front of three recschedd
)
# --fuzz: also clang 16 and libFuzzer for scripts/fuzz.sh (clang 14 cannot capture structured
# bindings in lambdas); libomp-16-dev only for omp.h (the fuzz build links GCC's libgomp).
if [ "${1:-}" = "--fuzz" ]; then
  PACKAGES+=(clang-16 libclang-rt-16-dev libomp-16-dev)
fi

# promtool (from Debian's prometheus package) checks /metrics in the tests. The package
# would also install and start a Prometheus server, so only its promtool is unpacked,
# into .tools/ of this checkout.
fetch_promtool() {
  local root
  root="$(cd "$(dirname "$0")/.." && pwd)"
  [ -x "$root/.tools/promtool" ] && return 0
  local tmp
  tmp="$(mktemp -d)"
  (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1 && dpkg -x prometheus_*.deb x) ||
    { [ "$(id -u)" -eq 0 ] && apt-get update -qq && (cd "$tmp" && apt-get download prometheus >/dev/null && dpkg -x prometheus_*.deb x); } ||
    { echo "install-deps: could not fetch promtool (Debian package prometheus)" >&2; rm -rf "$tmp"; return 1; }
  mkdir -p "$root/.tools"
  cp "$tmp/x/usr/bin/promtool" "$root/.tools/promtool"
  rm -rf "$tmp"
  echo "install-deps: promtool unpacked into .tools/"
}

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  fetch_promtool
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
fetch_promtool
