"""Prints the markdown summary of bench/compare_torch.sh's JSON files.

usage: python3 bench/summarize.py OUT_DIR MODEL...
"""
import json
import os
import sys


def load(out, model, kind):
    with open(f"{out}/{model}.{kind}.json") as f:
        return json.load(f)


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    out, models = argv[1], argv[2:]
    print("| model | batch | engine median ms | PyTorch median ms | speed-up | engine p95 ms | PyTorch p95 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for m in models:
        eng = {r["batch_size"]: r for r in load(out, m, "engine")["results"]}
        pt = {r["batch_size"]: r for r in load(out, m, "torch")["results"]}
        for b in sorted(eng):
            e, p = eng[b], pt[b]
            print(f"| {m} | {b} | {e['median_ms']:.3f} | {p['median_ms']:.3f} | "
                  f"{p['median_ms'] / e['median_ms']:.2f}x | {e['p95_ms']:.3f} | {p['p95_ms']:.3f} |")
    print()
    print("| model (batch 1024) | tables | embedding rows/s (engine) | gather limit rows/s (best variant) | engine / limit | dense GFLOPS engine | sgemm GFLOPS | engine / sgemm |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for m in [m for m in models if os.path.exists(f"{out}/{m}.breakdown.json")] + ["dram32", "dram64"]:
        try:
            b = load(out, m, "breakdown")
        except FileNotFoundError:
            continue
        g = load(out, m, "gather")
        emb, dense = b["embedding"], b["dense"]
        best = g["best"]
        ntab = len(json.load(open(f"bench/specs/{m}.json" if m.startswith("dram") else f"models/{m}.json"))["tables"])
        dense_cols = (f"{dense['engine_gflops']:.1f} | {dense['sgemm_gflops']:.1f} | "
                      f"{dense['engine_vs_sgemm']:.2f}")
        if m.startswith("dram"):
            dense_cols = "- | - | -"  # a 1-wide MLP: nothing to compare
        print(f"| {m} | {ntab} x {b['table_bytes'] / ntab / 2**20:.0f} MiB | "
              f"{emb['rows_per_s'] / 1e6:.1f} M | "
              f"{best['rows_per_s'] / 1e6:.1f} M ({best['name']}, {g['table_bytes'] / 2**30:.2f} GiB) | "
              f"{emb['rows_per_s'] / best['rows_per_s']:.2f} | {dense_cols} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
