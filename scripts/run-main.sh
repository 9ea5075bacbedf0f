#!/usr/bin/env bash
# The README's main job: installs dependencies, builds, then runs the short benchmark
# suite (bench/run-suite --short): recschedd on the default zoo (models/*.json) on a
# private socket, each model's target at 4x its single-core latency of a 164-item query
# (the suite's medium level); for every built-in policy the highest load at which every
# model meets its p95 target, and at 30 % of static's capacity each model's p95 and the
# energy per query (measured by RAPL/NVML, or estimated, as labelled). Prints the table;
# the results JSON is build/main-job/suite.json, every load run's output is under
# build/main-job/suite/. The daemon is stopped with SIGTERM at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh >/dev/null
BUILD="${BUILD_DIR:-build}"
RUN="$PWD/$BUILD/main-job"
mkdir -p "$RUN"

start=$(date +%s)
python3 bench/run-suite --short --build-dir "$BUILD" --state-dir "$RUN/state" \
  --run-dir "$RUN/suite" --out "$RUN/suite.json"
echo
echo "run-suite --short took $(( $(date +%s) - start )) s (daemon start and profiling" \
     "included); results: $RUN/suite.json, daemon log: $RUN/suite/recschedd.log"
