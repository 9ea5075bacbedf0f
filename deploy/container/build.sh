#!/usr/bin/env bash
# Builds recschedd's container image from Debian 12 packages only, on this machine, with
# no container registry: (1) the project's .deb (cmake + cpack, CPU build), (2) a Debian 12
# minbase root filesystem from the Debian archive (mmdebstrap), imported as the base image
# (podman import), (3) the Containerfile beside this script, which installs the .deb and
# the Debian packages it depends on (apt, from the archive), then (4) a smoke run of the
# image (--help as uid 10001), and (5) a serving run: recschedd in the image on NCF, ready,
# its agent line, a drained stop. docs/operations.md ("Kubernetes") explains the image.
#
#   deploy/container/build.sh [--deb FILE] [--source DIR] [--work DIR] [--tag IMAGE]
#
#   --deb FILE    use this .deb instead of building one
#   --source DIR  the source tree to build the .deb from (default: this checkout)
#   --work DIR    build tree, base tarball and build context (default /tmp/recsched-image)
#   --tag IMAGE   the image's name (default localhost/recsched:0.1.0)
#
# Needs root (mmdebstrap --mode=root, rootful podman), the Debian packages mmdebstrap and
# podman, and runc where the host's cgroups are in hybrid (v1 + v2) mode, which crun (podman's
# default runtime on Debian 12) refuses. Exit 0 built and smoke-tested, 1 failed (the reason
# is the last line), 2 bad arguments.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
source_dir="$root" work="/tmp/recsched-image" tag="localhost/recsched:0.1.0" deb=""
while [ $# -gt 0 ]; do
  case "$1" in
    --deb) deb="$(realpath "${2:?--deb FILE}")"; shift 2 ;;
    --source) source_dir="$(cd "${2:?--source DIR}" && pwd)"; shift 2 ;;
    --work) work="${2:?--work DIR}"; shift 2 ;;
    --tag) tag="${2:?--tag IMAGE}"; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
base_tag="localhost/recsched-base:bookworm"

fail() { echo "build.sh: cannot build the image: $*" >&2; exit 1; }
step() { echo "build.sh: $*"; }

[ "$(id -u)" -eq 0 ] || fail "needs root (mmdebstrap --mode=root and rootful podman); run it with sudo"
for tool in mmdebstrap podman; do
  command -v "$tool" >/dev/null || fail "$tool not found (apt-get install $tool)"
done

# podman's runtime and limits. crun (the default) stops at cgroups in hybrid mode ("cgroups
# in hybrid mode not supported"); runc handles them. podman asks the runtime to set
# RLIMIT_NOFILE to 1048576, which fails ("setrlimit: Operation not permitted") where the
# caller lacks CAP_SYS_RESOURCE and a lower hard limit is in force; RLIMIT_NPROC failed
# the same way at the caller's own value and worked below it. So: limits under ours.
podman_opts=()
if [ -d /sys/fs/cgroup/unified ] && ! [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  command -v runc >/dev/null || fail "this host's cgroups are in hybrid mode, which crun refuses; apt-get install runc"
  podman_opts+=(--runtime runc)
fi
nproc="$(ulimit -Su)"
{ [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; } && nproc=32768 || nproc=$((nproc - 1))
run_opts=(--ulimit "nofile=1024:$(ulimit -Hn)" --ulimit "nproc=$nproc:$nproc")

mkdir -p "$work/context"

# 1. The .deb: a CPU build (-DRECSCHED_WITH_CUDA=OFF). A CUDA build links NVIDIA's cuBLAS,
# which no Debian package provides, so it cannot go into a Debian-only image.
if [ -z "$deb" ]; then
  for tool in cmake ninja cpack; do
    command -v "$tool" >/dev/null || fail "$tool not found (scripts/install-deps.sh installs the build dependencies)"
  done
  step "building the .deb from $source_dir in $work/build (minutes)"
  cmake -S "$source_dir" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DRECSCHED_BUILD_TESTS=OFF -DRECSCHED_WITH_CUDA=OFF > "$work/cmake.log" 2>&1 ||
    { tail -20 "$work/cmake.log"; fail "cmake failed (log: $work/cmake.log)"; }
  ninja -C "$work/build" > "$work/ninja.log" 2>&1 ||
    { grep -A5 FAILED "$work/ninja.log" | head -40; fail "the build failed (log: $work/ninja.log)"; }
  rm -rf "$work/build/packages"
  (cd "$work/build" && cpack --config CPackConfig.cmake -G DEB) > "$work/cpack.log" 2>&1 ||
    { tail -20 "$work/cpack.log"; fail "cpack failed (log: $work/cpack.log)"; }
  deb="$(ls "$work"/build/packages/recsched_*.deb)"
fi
[ -f "$deb" ] || fail "no .deb at $deb"
step "package: $deb"
cp "$deb" "$work/context/"

# 2. The base: Debian 12 minbase from the archive this host's apt uses, made once and kept.
if [ ! -f "$work/base.tar" ]; then
  step "making a Debian 12 minbase root filesystem with mmdebstrap"
  mmdebstrap --variant=minbase --mode=root --format=tar bookworm "$work/base.tar.part" \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main" > "$work/mmdebstrap.log" 2>&1 ||
    { tail -20 "$work/mmdebstrap.log"; fail "mmdebstrap failed (log: $work/mmdebstrap.log)"; }
  mv "$work/base.tar.part" "$work/base.tar"
fi
step "importing $work/base.tar as $base_tag"
podman import --change 'CMD ["/bin/bash"]' "$work/base.tar" "$base_tag" > /dev/null ||
  fail "podman import failed"

# 3. The image. --network host: apt-get in the build fetches the .deb's Depends from the
# archive; nothing else is fetched.
step "building $tag"
podman "${podman_opts[@]}" build "${run_opts[@]}" --network host \
  --build-arg "BASE=$base_tag" --build-arg "DEB=$(basename "$deb")" \
  -f "$root/deploy/container/Containerfile" -t "$tag" "$work/context" ||
  fail "podman build failed (above)"

# 4. Smoke run: the binary starts and prints its usage, as the image's user (not root).
step "smoke run"
user="$(podman "${podman_opts[@]}" run --rm "${run_opts[@]}" --network none --entrypoint id "$tag" -u)" ||
  fail "the image does not run (podman run failed)"
[ "$user" = "10001" ] || fail "the image runs as uid $user, not 10001"
podman "${podman_opts[@]}" run --rm "${run_opts[@]}" --network none "$tag" --help | head -1 |
  grep -q "^usage: recschedd" || fail "recschedd --help in the image did not print its usage"
# 5. The daemon in the image: NCF from the packaged zoo, on the host's loopback, with a
# state directory it may write; ready, its capacity and its agent line, then a clean stop.
step "serving run"
smoke="$work/smoke"
rm -rf "$smoke" && mkdir -p "$smoke/state" && chown 10001:10001 "$smoke/state"
port=18900
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 2)); done
cat >"$smoke/recschedd.json" <<JSON
{"listen": {"socket": "", "tcp": "127.0.0.1:$port"},
 "models": ["/usr/share/recsched/models/ncf.json"], "gpus": false, "profile": {"quick": true},
 "state_dir": "/var/lib/recsched",
 "fleet": {"agent_check": "127.0.0.1:$((port + 1))", "drain_ms": 500}}
JSON
name="recsched-smoke-$$"
podman "${podman_opts[@]}" run -d --name "$name" "${run_opts[@]}" --network host \
  -v "$smoke/recschedd.json:/etc/recsched/recschedd.json:ro" -v "$smoke/state:/var/lib/recsched" \
  "$tag" >/dev/null || fail "the daemon did not start in the image (podman run failed)"
ready=""
for _ in $(seq 1 120); do
  ready="$( (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'GET /v2/health/ready HTTP/1.0\r\n\r\n' >&3 &&
    cat <&3) 2>/dev/null | tail -n 1)" || true
  [ "$ready" = '{"ready":true}' ] && break
  sleep 1
done
agent="$( (exec 3<>"/dev/tcp/127.0.0.1/$((port + 1))" && cat <&3) 2>/dev/null)" || true
podman "${podman_opts[@]}" stop -t 10 "$name" >/dev/null
log="$(podman "${podman_opts[@]}" logs "$name" 2>&1)"
status="$(podman "${podman_opts[@]}" inspect "$name" --format '{{.State.ExitCode}}')"
podman "${podman_opts[@]}" rm "$name" >/dev/null
[ "$ready" = '{"ready":true}' ] || fail "the daemon in the image never answered ready; its log: $log"
case "$agent" in "up ready "*) ;; *) fail "its agent check answered '$agent', not 'up ready W%'" ;; esac
[ "$status" = 0 ] || fail "it exited $status after SIGTERM; its log: $log"
grep -q "draining for 500 ms" <<<"$log" || fail "it did not drain on SIGTERM; its log: $log"
step "OK: $tag ($(podman image inspect "$tag" --format '{{.Size}}') bytes), runs as uid 10001, served (agent: ${agent%$'\n'}), drained and stopped cleanly"
