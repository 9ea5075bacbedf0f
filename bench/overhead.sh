#!/usr/bin/env bash
# The daemon's overhead over the engine's compute (bench/serving_overhead.cc), for this
# build's recschedd and, optionally, other builds', side by side in one run:
#   bench/overhead.sh [--before PATH/TO/OTHER/recschedd] [--build LABEL=PATH]...
#                     [--variant 'LABEL=JQ FILTER']... [--set 'JQ FILTER'] [--tcp]
#                     [recsched-overhead options]
# Each daemon serves the default zoo (models/, seeded weights) with policy static on a
# quick profile, on its own unix socket (or TCP with --tcp) and state directory. A
# variant is this build's recschedd on the config passed through a jq filter, e.g.
#   --variant 'inline-off=.limits.inline_max_ms = 0 | .limits.inline_idle_max_ms = 0'
# (two or three daemons of the zoo at once; more may not fit a 24 GB machine). --set
# changes the config of every daemon, e.g. '.limits.idle_poll_us = 0': for settings that
# change how a daemon shares the cores (polling), run one daemon per run, alternating.
# OVERHEAD_WRAP, if set, prefixes the client's command (e.g. 'perf record -g -o F --').
# BUILD_DIR picks the build whose recschedd and recsched-overhead run (default build/).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
before="" tcp=0 set="."
args=() others=() variants=()
while [ $# -gt 0 ]; do
  case "$1" in
    --before) before="$2"; shift 2 ;;
    --build) others+=("$2"); shift 2 ;;
    --variant) variants+=("$2"); shift 2 ;;
    --set) set="$2"; shift 2 ;;
    --tcp) tcp=1; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
work="$(mktemp -d /tmp/recsched-overhead.XXXXXX)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
jq --arg m "$root/models" '.models |= map(.spec |= ($m + "/" + (split("/") | last)))
    | .policy = {"name": "static", "params": {}, "plugin_dir": ""} | .profile.quick = true
    | .gpus = false' "$root/systemd/recschedd.json" | jq "$set" > "$work/recschedd.json"
start() {  # LABEL BINARY [CONFIG]
  local label="$1" bin="$2" config="${3:-$work/recschedd.json}" port
  mkdir -p "$work/$label"
  "$bin" --config "$config" --socket "$work/$label/s.sock" --tcp 127.0.0.1:0 \
    --state-dir "$work/$label/state" > "$work/$label/log" 2>&1 &
  pids+=($!)
  for _ in $(seq 600); do
    grep -q "ready:" "$work/$label/log" && break
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$work/$label/log"; exit 1; }
    sleep 0.5
  done
  grep -q "ready:" "$work/$label/log" || { echo "overhead: $label did not become ready"; exit 1; }
  if [ "$tcp" = 1 ]; then
    port="$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/$label/log" | head -1)"
    targets+=(--tcp "$label=127.0.0.1:$port")
  else
    targets+=(--socket "$label=$work/$label/s.sock")
  fi
}
targets=()
start after "$build/daemon/recschedd"
[ -z "$before" ] || start before "$before"
for o in "${others[@]}"; do start "${o%%=*}" "${o#*=}"; done
for v in "${variants[@]}"; do
  jq "${v#*=}" "$work/recschedd.json" > "$work/${v%%=*}.json"
  start "${v%%=*}" "$build/daemon/recschedd" "$work/${v%%=*}.json"
done
${OVERHEAD_WRAP:-} "$build/bench/recsched-overhead" "${targets[@]}" "${args[@]}"
