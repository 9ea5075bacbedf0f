#!/usr/bin/env bash
# The README's main job: installs dependencies, builds, then loads each model of the
# default zoo (models/*.json) with the engine, scores a query, and prints its latency
# per batch size on one core. (The daemon takes over this job once it exists.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh >/dev/null
ENGINE="${BUILD_DIR:-build}/engine/tools/recsched-engine"
SECONDS_PER_SIZE="${SECONDS_PER_SIZE:-1}"

echo
echo "recsched engine on the default zoo ($(nproc) cores here; one thread per model)"
for spec in models/*.json; do
  echo
  "$ENGINE" bench --model "$spec" --batch-sizes 1,16,64,256,1024 --threads 1 \
    --min-seconds "$SECONDS_PER_SIZE" --format table
done
