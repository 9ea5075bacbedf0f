#!/usr/bin/env bash
# Engine vs PyTorch, side by side in one run, on the same specs and weights, one core:
# for each zoo model, export the engine's seeded weights, time recsched-engine and
# PyTorch (Debian's python3-torch) at batch 1, 64 and 1024; for the DLRM models, break
# the engine's batch-1024 pass down against this machine's limits (bench/engine_breakdown for the
# dense layers vs bare sgemm; bench/gather_bw on the model's own table footprint for
# the embedding bags). Writes JSON to OUT_DIR and prints a markdown summary.
#
#   bash bench/compare_torch.sh [OUT_DIR]        (needs: apt-get install python3-torch)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-/tmp/recsched-bench}"
BUILD="${BUILD_DIR:-build}"
MODELS="${MODELS:-rmc1 rmc2 rmc3 ncf wnd mtwnd din dien}"
PY=/usr/bin/python3
mkdir -p "$OUT"
"$PY" -c "import torch" 2>/dev/null || { echo "compare_torch: needs Debian's python3-torch" >&2; exit 1; }
PIN=(taskset -c 0 env OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1)

for m in $MODELS; do
  spec="models/$m.json"
  w="$OUT/$m.safetensors"
  echo "== $m" >&2
  "$BUILD/engine/tools/recsched-engine" export-weights --model "$spec" --out "$w"
  "${PIN[@]}" "$BUILD/engine/tools/recsched-engine" bench --model "$spec" --weights "$w" \
    --batch-sizes 1,64,1024 --min-seconds 3 > "$OUT/$m.engine.json"
  "${PIN[@]}" "$PY" bench/torch_bench.py --model "$spec" --weights "$w" \
    --batch-sizes 1,64,1024 --min-seconds 3 > "$OUT/$m.torch.json"
  rm -f "$w"
  # The per-phase breakdown knows DLRM's layers; the other types stop here.
  "$PY" -c "import json, sys; sys.exit(json.load(open('$spec'))['type'] != 'dlrm')" || continue
  "${PIN[@]}" "$BUILD/bench/engine_breakdown" --model "$spec" --batch 1024 --reps 20 \
    > "$OUT/$m.breakdown.json"
  # The limit: random-row gathers over one table as large as all of the model's tables.
  read -r gib dim bag < <("$PY" -c "
import json; b = json.load(open('$OUT/$m.breakdown.json')); s = json.load(open('$spec'))
print(b['table_bytes'] / 2**30, s['embedding_dim'], s['lookups_per_table'])")
  "${PIN[@]}" "$BUILD/bench/gather_bw" --table-gib "$gib" --dim "$dim" --bag "$bag" \
    --seconds 1 > "$OUT/$m.gather.json" 2>/dev/null
done
# The embedding bag against DRAM: one 4 GiB table per row width, far beyond the L3.
for d in 32 64; do
  echo "== dram$d" >&2
  "${PIN[@]}" "$BUILD/bench/engine_breakdown" --model "bench/specs/dram$d.json" --batch 1024 \
    --reps 10 > "$OUT/dram$d.breakdown.json"
  bag=$("$PY" -c "import json; print(json.load(open('bench/specs/dram$d.json'))['lookups_per_table'])")
  "${PIN[@]}" "$BUILD/bench/gather_bw" --table-gib 4 --dim "$d" --bag "$bag" --seconds 1 \
    > "$OUT/dram$d.gather.json" 2>/dev/null
done
"$PY" bench/summarize.py "$OUT" $MODELS
