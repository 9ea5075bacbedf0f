#!/usr/bin/env bash
# Issue 18's checks on a GPU host, in one run (about 5-10 minutes on an H100/H200): the
# CUDA tests (golden scores, one launch for all tables and graph replays bit for bit),
# batch-1 and large-batch latency of every zoo model three ways side by side (a launch
# per table and no graphs, as verified on the H200 on 2026-11-26; one launch, no graphs;
# one launch with CUDA graphs, recschedd's default), a GPU-only profile with streams
# measured, and the simulator's 2x bar on it. Needs a build with CUDA (scripts/build.sh
# where nvcc is found) and a GPU:
#
#   bash bench/gpu_full_use.sh OUT_DIR
#
# Writes OUT_DIR/cuda_test.log, OUT_DIR/raw/*.json, OUT_DIR/profile.json (the GPU's
# profile, recsched-profile run), OUT_DIR/sim-{off,on}.txt and OUT_DIR/summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:?usage: bench/gpu_full_use.sh OUT_DIR}"
BUILD="${BUILD:-build}"
SIZES="${SIZES:-1,16,64,256,1024}"
MODELS="${MODELS:-rmc1 rmc2 rmc3 ncf wnd mtwnd din dien}"
CPU_PROFILE="${CPU_PROFILE:-docs/bench-2026-11-26-h200/profile.json}"
mkdir -p "$OUT/raw"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true

echo "== cuda_model_test" >&2
rc=0
"$BUILD/tests/cuda_model_test" > "$OUT/cuda_test.log" 2>&1 || rc=$?
case "$rc" in
  0) ;;
  77) echo "cuda_model_test skipped: no GPU here, nothing below can run" >&2; exit 1 ;;
  *) echo "cuda_model_test FAILED (exit $rc): the timings below are of a wrong GPU path" >&2 ;;
esac
tail -4 "$OUT/cuda_test.log" >&2

for m in $MODELS; do
  for way in per-table one graphs; do
    case "$way" in
      per-table) args=(--gpu-tables each --gpu-graphs 0) ;;
      one) args=(--gpu-tables one --gpu-graphs 0) ;;
      graphs) args=(--gpu-tables one) ;;
    esac
    echo "== $m $way" >&2
    "$BUILD/engine/tools/recsched-engine" bench --model "models/$m.json" --device cuda \
      --batch-sizes "$SIZES" --min-seconds 0.2 --reps 200 "${args[@]}" > "$OUT/raw/$m.$way.json"
  done
done

# The GPU alone, as recschedd profiles it (4 streams loaded, how many pay measured).
python3 - "$OUT/gpu.json" "$OUT/state" <<'PY'
import json, os, sys
c = json.load(open("systemd/recschedd.json"))
for m in c["models"]:
    m["spec"] = os.path.abspath("models/" + m["spec"].rsplit("/", 1)[-1])
c["devices"] = ["gpu0"]
c["state_dir"] = os.path.abspath(sys.argv[2])
json.dump(c, open(sys.argv[1], "w"), indent=1)
PY
echo "== recsched-profile (gpu0)" >&2
"$BUILD/profiler/tools/recsched-profile" run --config "$OUT/gpu.json" --no-cache --json \
  --out "$OUT/profile.json" > /dev/null

for b in off on; do
  echo "== recsched-sim --gpu-batching $b" >&2
  "$BUILD/sim/recsched-sim" --profiles "$CPU_PROFILE" --gpu-profiles "$OUT/profile.json" \
    --suite --seconds 10 --gpu-batching "$b" > "$OUT/sim-$b.txt" 2>&1
done
python3 bench/gpu_full_use.py "$OUT" $MODELS | tee "$OUT/summary.md"
