#!/usr/bin/env bash
# GPU vs CPU latency per batch size for every zoo model, and each model's crossover
# (the smallest batch size at which the GPU answers sooner). Needs a build with CUDA and a
# GPU; run on the machine that has them:
#
#   bash bench/gpu_vs_cpu.sh OUT_DIR            (ENGINE=path/to/recsched-engine to override)
#
# CPU columns: one core, and every core of the host (the batch split across threads).
# GPU timings include copying the query in and the scores out (pinned memory).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:?usage: bench/gpu_vs_cpu.sh OUT_DIR}"
ENGINE="${ENGINE:-build/engine/tools/recsched-engine}"
SIZES="${SIZES:-1,4,16,64,256,1024}"
MODELS="${MODELS:-rmc1 rmc2 rmc3 ncf wnd mtwnd din dien}"
CORES="$(nproc)"
mkdir -p "$OUT/raw"
for m in $MODELS; do
  for dev in cpu1 cpuN cuda; do
    case "$dev" in
      cpu1) args=(--device cpu --threads 1) ;;
      cpuN) args=(--device cpu --threads "$CORES") ;;
      cuda) args=(--device cuda --threads 1) ;;
    esac
    echo "== $m $dev" >&2
    OMP_NUM_THREADS=1 "$ENGINE" bench --model "models/$m.json" --batch-sizes "$SIZES" \
      --min-seconds 0.3 --reps 100 "${args[@]}" > "$OUT/raw/$m.$dev.json"
  done
done
python3 bench/gpu_summary.py "$OUT/raw" $MODELS
