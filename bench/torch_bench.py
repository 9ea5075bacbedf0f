"""Benchmark PyTorch (single thread) on the same model spec and weights as the C++ engine.

Run pinned to one core, with every threading library limited to one thread:

    taskset -c 0 env OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \\
        /usr/bin/python3 bench/torch_bench.py --model models/rmc1.json \\
        --weights W.safetensors --batch-sizes 1,64,1024

The model is the PyTorch reference of the spec's type, built by
scripts/reference/zoo_ref.py's model_from_spec: "dlrm" (dlrm_ref.py) or "ncf",
"wnd", "mtwnd", "din", "dien" (zoo_ref.py).  Table row counts are taken from
the weights file (so they match whatever row_scale the engine used); every
other dimension comes from the spec and must match the weights.  Weights are
read through a memory map, then copied into memory PyTorch owns (as after
load_state_dict), so no timed run pays a page fault on the file.

For each batch size: random inputs like the engine's bench (dense uniform
[0, 1) of dense_features columns -- none for types without dense input; every
bag has exactly lookups_per_table ids drawn uniformly from [0, rows) of its
table, so no DIEN step is masked), 3 warm-up runs, then forward() is timed
repeatedly -- at least 5 reps, stopping at --reps or once --min-seconds of
timed forward calls have accumulated, whichever comes first.  A fresh random
input is made for each rep outside the timed region.  Prints one JSON object
to stdout:

    {"model": name, "runtime": "pytorch <version>", "threads": 1,
     "results": [{"batch_size": B, "median_ms": x, "p95_ms": y, "reps": n}, ...]}

p95 uses numpy's linear interpolation between order statistics.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "scripts", "reference"))
import zoo_ref  # noqa: E402

WARMUP = 3
MIN_REPS = 5


def parse_batch_sizes(s: str) -> list[int]:
    try:
        sizes = [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid batch size list {s!r}") from None
    if not sizes or any(b <= 0 for b in sizes):
        raise argparse.ArgumentTypeError(
            f"batch sizes must be positive integers, got {s!r}")
    return sizes


def make_inputs(rng: np.random.Generator, batch: int, dense_features: int, rows: list[int],
                lookups: int):
    """Random inputs: dense U[0,1) [batch, dense_features] (dense_features may be 0),
    every bag exactly `lookups` uniform ids of its table."""
    dense = torch.from_numpy(rng.random((batch, dense_features), dtype=np.float32))
    offsets = torch.arange(0, batch * lookups, lookups, dtype=torch.long)
    offs = [offsets] * len(rows)
    idxs = [torch.from_numpy(rng.integers(0, r, size=batch * lookups, dtype=np.int64))
            for r in rows]
    return dense, offs, idxs


def bench_batch(model, rng, batch: int, dense_features: int, rows: list[int], lookups: int,
                max_reps: int, min_seconds: float) -> dict:
    for _ in range(WARMUP):
        model(*make_inputs(rng, batch, dense_features, rows, lookups))
    times: list[float] = []
    total = 0.0
    while len(times) < MIN_REPS or (len(times) < max_reps and total < min_seconds):
        inputs = make_inputs(rng, batch, dense_features, rows, lookups)
        t0 = time.perf_counter()
        model(*inputs)
        dt = time.perf_counter() - t0
        times.append(dt)
        total += dt
    ms = np.array(times) * 1e3
    return {"batch_size": batch, "median_ms": float(np.median(ms)),
            "p95_ms": float(np.percentile(ms, 95)), "reps": len(times)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="Benchmark single-threaded PyTorch inference (dlrm, ncf, wnd, mtwnd, din "
                    "or dien) on the engine's model spec and weights; prints one JSON object.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="run pinned to one core, e.g.:\n"
               "  taskset -c 0 env OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \\\n"
               "    /usr/bin/python3 bench/torch_bench.py --model models/rmc1.json \\\n"
               "    --weights W.safetensors --batch-sizes 1,64,1024")
    ap.add_argument("--model", required=True, help="model spec JSON (e.g. models/rmc1.json)")
    ap.add_argument("--weights", required=True,
                    help="safetensors weights with the reference tensor names (table rows "
                         "come from here)")
    ap.add_argument("--batch-sizes", required=True, type=parse_batch_sizes,
                    help="comma-separated batch sizes, e.g. 1,64,1024")
    ap.add_argument("--reps", type=int, default=200,
                    help="maximum timed reps per batch size (default 200, at least 5)")
    ap.add_argument("--min-seconds", type=float, default=2.0,
                    help="stop timing a batch size once this much forward time has "
                         "accumulated (default 2.0; at least 5 reps are always run)")
    ap.add_argument("--seed", type=int, default=0, help="input RNG seed (default 0)")
    ap.add_argument("--lookups", type=int, default=None,
                    help="ids per bag (default: the spec's lookups_per_table)")
    args = ap.parse_args(argv)
    if args.reps < MIN_REPS:
        ap.error(f"--reps must be at least {MIN_REPS}")
    if not args.min_seconds >= 0:
        ap.error("--min-seconds must be >= 0")

    prog = os.path.basename(sys.argv[0])
    try:
        spec = zoo_ref.load_spec(args.model)
        lookups = args.lookups if args.lookups is not None else spec.get("lookups_per_table")
        if lookups is None:
            raise zoo_ref.SpecError(
                f"{args.model}: no 'lookups_per_table' in the spec; pass --lookups")
        if lookups < 1:
            raise zoo_ref.SpecError(f"lookups per table must be >= 1, got {lookups}")
        weights = zoo_ref.read_safetensors(args.weights)
        try:
            rows = zoo_ref.table_rows_from_weights(spec, weights)
            model = zoo_ref.model_from_spec(spec, weights, table_rows=rows)
        except ValueError as e:
            raise zoo_ref.WeightsError(
                f"{args.weights} does not match {args.model}: {e}") from None
    except ValueError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    expected_rows = zoo_ref.effective_rows(spec)
    if rows != expected_rows:
        print(f"{prog}: note: table rows from the weights file differ from the spec's "
              f"effective rows (row_scale {spec['row_scale']}); using the weights file's",
              file=sys.stderr)

    # Own every parameter in anonymous memory, as a model after load_state_dict() does.
    # Timing straight off the file mapping would charge PyTorch a page fault for each
    # first touch of a table page during the timed runs.
    with torch.no_grad():
        for p in model.parameters():
            p.data = p.data.clone()
    del weights

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    rng = np.random.default_rng(args.seed)
    results = []
    with torch.inference_mode():
        for b in args.batch_sizes:
            results.append(bench_batch(model, rng, b, spec["dense_features"], rows, lookups,
                                       args.reps, args.min_seconds))
    print(json.dumps({"model": spec["name"], "runtime": f"pytorch {torch.__version__}",
                      "threads": torch.get_num_threads(), "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
