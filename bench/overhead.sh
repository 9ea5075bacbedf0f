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
# Every daemon polls its sockets while idle (limits.idle_poll_us), so two at once on a
# small machine take each other's cores: --alternate N runs each of them alone instead,
# in N rounds (the order rotating each round), one table per run, and with --json F one
# file per run, F.LABEL.ROUND.json. That is the fair comparison on a 2-core VM.
# OVERHEAD_WRAP, if set, prefixes the client's command (e.g. 'perf record -g -o F --').
# BUILD_DIR picks the build whose recschedd and recsched-overhead run (default build/).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
before="" tcp=0 set="." alternate=0 only="" json=""
args=() others=() variants=() passed=()
while [ $# -gt 0 ]; do
  case "$1" in
    --alternate) alternate="$2"; shift 2; continue ;;
    --only) only="$2"; shift 2; continue ;;  # (internal: --alternate's runs)
    --json) json="$2"; shift 2; continue ;;
  esac
  passed+=("$1")
  case "$1" in
    --before) passed+=("$2"); before="$2"; shift 2 ;;
    --build) passed+=("$2"); others+=("$2"); shift 2 ;;
    --variant) passed+=("$2"); variants+=("$2"); shift 2 ;;
    --set) passed+=("$2"); set="$2"; shift 2 ;;
    --tcp) tcp=1; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
if [ "$alternate" -gt 0 ]; then
  labels=(after)
  [ -z "$before" ] || labels+=(before)
  for o in "${others[@]}"; do labels+=("${o%%=*}"); done
  for v in "${variants[@]}"; do labels+=("${v%%=*}"); done
  for round in $(seq "$alternate"); do
    for i in "${!labels[@]}"; do
      label="${labels[$(( (i + round - 1) % ${#labels[@]} ))]}"
      echo "== $label, round $round of $alternate"
      out=()
      [ -z "$json" ] || out=(--json "$json.$label.$round.json")
      "$0" --only "$label" "${passed[@]}" "${out[@]}"
    done
  done
  if [ -n "$json" ]; then  # the runs side by side: each label's range over the rounds
    python3 - "$json" "$alternate" "${labels[@]}" <<'PY'
import json, sys
prefix, rounds, labels = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
print("over the daemon's own service, p50, range over %d rounds (us; service p50 beside)" % rounds)
rows = {}
for label in labels:
    for r in range(1, rounds + 1):
        for row in json.load(open(f"{prefix}.{label}.{r}.json")):
            col = row.get(label, {})
            if "items" in row and "over_service_p50_us" in col:
                rows.setdefault((row["model"], row["items"]), {}).setdefault(label, []).append(
                    (col["over_service_p50_us"], col["service_p50_us"]))
for (model, items), by in rows.items():
    cells = []
    for label in labels:
        v = by.get(label, [])
        if v:
            o, s = [x[0] for x in v], [x[1] for x in v]
            cells.append(f"{label} {min(o):.0f}-{max(o):.0f} ({min(s):.0f}-{max(s):.0f})")
    print(f"{model:6s} {items:5d}  " + " | ".join(cells))
PY
  fi
  exit 0
fi
[ -z "$json" ] || args+=(--json "$json")
wanted() { [ -z "$only" ] || [ "$only" = "$1" ]; }
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
if wanted after; then start after "$build/daemon/recschedd"; fi
if [ -n "$before" ] && wanted before; then start before "$before"; fi
for o in "${others[@]}"; do
  if wanted "${o%%=*}"; then start "${o%%=*}" "${o#*=}"; fi
done
for v in "${variants[@]}"; do
  if wanted "${v%%=*}"; then
    jq "${v#*=}" "$work/recschedd.json" > "$work/${v%%=*}.json"
    start "${v%%=*}" "$build/daemon/recschedd" "$work/${v%%=*}.json"
  fi
done
[ "${#targets[@]}" -gt 0 ] || { echo "overhead: no daemon labelled '$only'"; exit 2; }
${OVERHEAD_WRAP:-} "$build/bench/recsched-overhead" "${targets[@]}" "${args[@]}"
