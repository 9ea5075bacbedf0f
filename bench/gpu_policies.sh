#!/usr/bin/env bash
# recschedd on a CPU + GPU host: serves rmc1, rmc3, wnd and din on cpu0 and gpu0, sends
# the same query sizes (4, 64, 256, 1024 items) under each built-in policy, switched live,
# and keeps where each query went and why (the placement log), the devices, the policy
# and the metrics. Needs a CUDA build machine with a GPU (the device machine):
#
#   bash bench/gpu_policies.sh OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="$(realpath -m "${1:?usage: bench/gpu_policies.sh OUT_DIR}")"
BUILD="${BUILD_DIR:-build-gpu}"
mkdir -p "$OUT/run"
nvidia-smi -L > "$OUT/nvidia-smi.txt" 2>&1 || true
if [ -z "${SKIP_BUILD:-}" ]; then  # SKIP_BUILD=1: use an existing $BUILD_DIR as it is
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRECSCHED_BUILD_TESTS=OFF \
    > "$OUT/cmake.log" 2>&1
  cmake --build "$BUILD" -j "$(nproc)" --target recschedd recsched-smoke > "$OUT/build.log" 2>&1
fi
RUN="$OUT/run"
cat > "$RUN/recschedd.json" <<JSON
{"listen": {"socket": "$RUN/s.sock", "tcp": ""},
 "models": ["$PWD/models/rmc1.json", "$PWD/models/rmc3.json", "$PWD/models/wnd.json",
            "$PWD/models/din.json"],
 "state_dir": "$RUN/state", "gpus": true,
 "profile": {"batch_sizes": [1, 8, 64, 256, 1024], "seconds_per_point": 0.02}}
JSON
"$BUILD/daemon/recschedd" --config "$RUN/recschedd.json" 2> "$OUT/recschedd.log" &
DAEMON=$!
trap 'kill -TERM $DAEMON 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  [ -S "$RUN/s.sock" ] && break
  kill -0 $DAEMON 2>/dev/null || { cat "$OUT/recschedd.log" >&2; exit 1; }
  sleep 0.5
done
SMOKE="$BUILD/bench/recsched-smoke --socket $RUN/s.sock"
$SMOKE --get /v1/devices > "$OUT/devices.json"
$SMOKE --get /v1/profiles > "$OUT/profiles.json"
for p in static earliest-finish deeprecsched min-energy; do
  $SMOKE --policy "$p" --queries 8 --sizes 4,64,256,1024 --placements 32 > "$OUT/$p.txt"
done
$SMOKE --get /v1/policy > "$OUT/policy.json"
$SMOKE --get /metrics > "$OUT/metrics.txt"
kill -TERM $DAEMON
wait $DAEMON
trap - EXIT
grep -h "gpu0" "$OUT"/*.txt | head -5
echo "done: $OUT"
