#!/usr/bin/env bash
# The README's main job: installs dependencies, builds, starts recschedd on the default
# zoo (models/*.json) on a private socket, drives a short load through it (recsched-smoke:
# 20 queries per model, DeepRecInfra's query sizes) and prints each model's latencies and
# the daemon's placements, then stops the daemon with SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh >/dev/null
BUILD="${BUILD_DIR:-build}"
RUN="$PWD/$BUILD/main-job"
mkdir -p "$RUN"
rm -f "$RUN/recschedd.sock"

# The default zoo with DeepRecSys's SLA targets (recschedd fills them in by model name).
models=""
for spec in models/*.json; do models="$models\"$PWD/$spec\","; done
cat > "$RUN/recschedd.json" <<JSON
{"listen": {"socket": "$RUN/recschedd.sock", "tcp": ""},
 "models": [${models%,}],
 "state_dir": "$RUN/state",
 "gpus": false}
JSON

"$BUILD/daemon/recschedd" --config "$RUN/recschedd.json" 2> "$RUN/recschedd.log" &
DAEMON=$!
trap 'kill -TERM $DAEMON 2>/dev/null || true' EXIT
echo "recschedd (pid $DAEMON) is loading and profiling the zoo; log: $RUN/recschedd.log"
for _ in $(seq 1 600); do
  if [ -S "$RUN/recschedd.sock" ]; then break; fi
  if ! kill -0 $DAEMON 2>/dev/null; then cat "$RUN/recschedd.log" >&2; exit 1; fi
  sleep 0.5
done
[ -S "$RUN/recschedd.sock" ] || { echo "recschedd did not come up" >&2; exit 1; }
grep -E "profiles:|ready" "$RUN/recschedd.log" || true
echo
"$BUILD/bench/recsched-smoke" --socket "$RUN/recschedd.sock" --queries "${QUERIES:-20}"
kill -TERM $DAEMON
wait $DAEMON
trap - EXIT
echo
echo "recschedd stopped cleanly (SIGTERM); its log: $RUN/recschedd.log"
