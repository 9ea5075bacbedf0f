#!/usr/bin/env bash
# DeepRecSched (tuned before serving, as DeepRecSys) against static, each model alone, in
# the simulator: latency-bounded throughput at DeepRecSys's own targets and at ours
# (medium: 4x a 164-item query's single-core latency), on this VM's per-core profile with
# 16 and 32 workers, with and without the H200's recorded profile. Modelled, not measured.
#
#   bash bench/drs_vs_static.sh OUT_DIR     (SECONDS_PER_RUN=5, SIM=build/sim/recsched-sim)
#
# Writes OUT_DIR/raw/<workers>-<gpu|nogpu>-<targets>-<model>.json (recsched-sim --json) and
# prints one table: static q/s and deeprecsched / static per model, and the tuned settings.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:?usage: bench/drs_vs_static.sh OUT_DIR}"
SIM="${SIM:-build/sim/recsched-sim}"
SECS="${SECONDS_PER_RUN:-5}"
CPU_PROFILE="${CPU_PROFILE:-docs/policies-2026-11-26/profile-cpu0.json}"
GPU_PROFILE="${GPU_PROFILE:-docs/bench-2026-11-26-h200/profile.json}"
MODELS="${MODELS:-dien din mtwnd ncf rmc1 rmc2 rmc3 wnd}"
mkdir -p "$OUT/raw"
for workers in 16 32; do
  for gpu in gpu nogpu; do
    gpu_args=(--gpu-profiles "$GPU_PROFILE" --gpu-idle-w 81)
    [ "$gpu" = nogpu ] && gpu_args=()
    for targets in deeprecsys medium; do
      for m in $MODELS; do
        f="$OUT/raw/$workers-$gpu-$targets-$m.json"
        [ -s "$f" ] && continue
        "$SIM" --profiles "$CPU_PROFILE" "${gpu_args[@]}" --cpu-workers "$workers" \
          --seconds "$SECS" --models "$m" --targets "$targets" --find-max \
          --policies static,deeprecsched --json > "$f.tmp" 2>/dev/null
        mv "$f.tmp" "$f"
      done
    done
  done
done
python3 - "$OUT/raw" $MODELS <<'PY'
import json, sys, os
raw, models = sys.argv[1], sys.argv[2:]
for workers in (16, 32):
    for gpu in ("gpu", "nogpu"):
        for targets in ("deeprecsys", "medium"):
            print(f"\n{workers} workers, {'with' if gpu == 'gpu' else 'without'} the H200, "
                  f"{targets} targets: model, target ms, static q/s, deeprecsched q/s, / static, "
                  f"tuned (sub-batch, threshold)")
            ratios = []
            for m in models:
                d = json.load(open(os.path.join(raw, f"{workers}-{gpu}-{targets}-{m}.json")))
                runs = {r["policy"]: r for r in d["runs"]}
                st, drs = runs["static"]["offered_qps"], runs["deeprecsched"]["offered_qps"]
                sla = next((r["models"][0]["sla_ms"] for r in runs.values() if r["models"]),
                           float("nan"))
                k = drs / st if st > 0 else float("inf") if drs > 0 else 1.0
                ratios.append(k)
                t = list(d.get("deeprecsched_tuning", {}).values())
                best = runs["deeprecsched"]["policy_params"]["models"].get(m, {})
                print(f"  {m:6s} {sla:8.2f} {st:10.1f} {drs:10.1f} {k:6.2f}x  b={best.get('sub_batch')} "
                      f"th={best.get('given_threshold', '-')}")
            finite = [r for r in ratios if r != float("inf")]
            if finite:
                g = 1.0
                for r in finite: g *= r
                print(f"  geometric mean {g ** (1 / len(finite)):.2f}x, min {min(finite):.2f}x")
PY
