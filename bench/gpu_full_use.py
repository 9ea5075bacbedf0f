"""Summarises bench/gpu_full_use.sh: latency per model three ways, the saturation gain of
merging 16-item queries, and the simulator's runs.

usage: python3 bench/gpu_full_use.py OUT_DIR MODEL...
"""
import json
import sys

WAYS = ("per-table", "one", "graphs")


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    out, models = argv[1], argv[2:]
    print("## Latency per query (median ms; GPU times include the copies in and out)\n")
    rows = []
    for m in models:
        med = {}
        for way in WAYS:
            with open(f"{out}/raw/{m}.{way}.json") as f:
                doc = json.load(f)
            med[way] = {r["batch_size"]: r["median_ms"] for r in doc["results"]}
        sizes = sorted(med["graphs"])
        for b in sizes:
            a, o, g = (med[w][b] for w in WAYS)
            rows.append(f"| {m} | {b} | {a:.3f} | {o:.3f} | {g:.3f} | {a / g:.2f}x |")
    print("| model | batch | launch per table, no graphs | one launch, no graphs | "
          "one launch + graphs | gain |")
    print("|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))

    print("\n## Merging at saturation (recsched-profile's GPU profile)\n")
    print("16-item queries one pass each (on the streams that pay) against merged into "
          "1,024-item passes: items per second.\n")
    print("| model | 16 items, 1 stream | 16 items, best streams | 1,024 items | merged gain |")
    print("|---|---:|---:|---:|---:|")
    with open(f"{out}/profile.json") as f:
        prof = json.load(f)
    for e in prof["profiles"]:
        if not e["device"].startswith("gpu"):
            continue
        pts = {p["batch_size"]: p for p in e["points"]}
        if 16 not in pts or 1024 not in pts:
            continue
        p16, p1k = pts[16], pts[1024]
        best16 = max(p16["items_per_s"], p16.get("streams_items_per_s", 0))
        streams = p16.get("best_streams", 0)
        print(f"| {e['model']} | {p16['items_per_s']:.0f} | {best16:.0f} ({streams} streams) | "
              f"{p1k['items_per_s']:.0f} | {p1k['items_per_s'] / best16:.2f}x |")

    print("\n## Simulator, 16 CPU workers (recorded) + this GPU's profile\n")
    for b in ("off", "on"):
        print(f"### --gpu-batching {b}\n\n```")
        with open(f"{out}/sim-{b}.txt") as f:
            print(f.read().rstrip())
        print("```\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
