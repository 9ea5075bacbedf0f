#!/usr/bin/env bash
# Plots a recsched-profile JSON (run --out FILE): median latency against batch size,
# one line per model, for one device. Needs gnuplot (apt-get install gnuplot-nox).
#
#   bash bench/plot_profile.sh PROFILE.json DEVICE OUT.png [TITLE]
set -euo pipefail
PROFILE="${1:?usage: bench/plot_profile.sh PROFILE.json DEVICE OUT.png [TITLE]}"
DEVICE="${2:?device id, e.g. cpu0}"
PNG="${3:?output PNG}"
TITLE="${4:-recsched profile: $DEVICE}"
command -v gnuplot >/dev/null || { echo "plot_profile: needs gnuplot (apt-get install gnuplot-nox)" >&2; exit 1; }
DATA="$(mktemp -d)"
trap 'rm -rf "$DATA"' EXIT
# One data file per model: batch size, median ms, p95 ms.
python3 - "$PROFILE" "$DEVICE" "$DATA" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
models = []
for p in doc["profiles"]:
    if p["device"] != sys.argv[2]:
        continue
    models.append(p["model"])
    with open(f"{sys.argv[3]}/{p['model']}.dat", "w") as f:
        for q in p["points"]:
            f.write(f"{q['batch_size']} {q['p50_us'] / 1e3} {q['p95_us'] / 1e3}\n")
if not models:
    sys.exit(f"plot_profile: no profiles for device {sys.argv[2]}")
open(f"{sys.argv[3]}/models", "w").write(" ".join(models))
PY
MODELS="$(cat "$DATA/models")"
gnuplot <<GP
set terminal pngcairo size 900,560 noenhanced
set output "$PNG"
set title "$TITLE"
set logscale xy
set xrange [0.8:1300]
set xlabel "batch size (items per query)"
set ylabel "median latency (ms)"
set grid
set key outside right
plot for [m in "$MODELS"] "$DATA/".m.".dat" using 1:2 with linespoints title m
GP
echo "wrote $PNG"
