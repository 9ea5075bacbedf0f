"""Summarises bench/gpu_vs_cpu.sh: a markdown table per model and the crossovers.

usage: python3 bench/gpu_summary.py RAW_DIR MODEL...
"""
import json
import sys


def crossover(cpu, gpu):
    """Smallest measured batch size from which on the GPU is faster at every larger size."""
    sizes = sorted(gpu)
    for i, b in enumerate(sizes):
        if all(gpu[s] < cpu[s] for s in sizes[i:]):
            return b
    return None


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    raw, models = argv[1], argv[2:]
    kernels, rows, cross = {}, [], []
    for m in models:
        med = {}
        for dev in ("cpu1", "cpuN", "cuda"):
            with open(f"{raw}/{m}.{dev}.json") as f:
                doc = json.load(f)
            kernels[dev] = f"{doc.get('kernels', doc.get('isa'))}, {doc['threads']} thread(s)"
            med[dev] = {r["batch_size"]: r["median_ms"] for r in doc["results"]}
        for b in sorted(med["cuda"]):
            c1, cn, g = med["cpu1"][b], med["cpuN"][b], med["cuda"][b]
            rows.append(f"| {m} | {b} | {c1:.3f} | {cn:.3f} | {g:.3f} | {c1 / g:.2f}x | {cn / g:.2f}x |")
        cross.append(f"| {m} | {crossover(med['cpu1'], med['cuda'])} | "
                     f"{crossover(med['cpuN'], med['cuda'])} |")
    for dev, k in kernels.items():
        print(f"- {dev}: {k}")
    print()
    print("| model | batch | CPU 1 core ms | CPU all cores ms | GPU ms | GPU vs 1 core | GPU vs all cores |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print()
    print("| model | crossover vs 1 core (batch) | crossover vs all cores (batch) |")
    print("|---|---:|---:|")
    print("\n".join(cross))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
