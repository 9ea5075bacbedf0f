#!/usr/bin/env python3
"""Daemon configurations side by side on the co-located zoo, at one fixed load.

bench/run-suite searches for the highest load that meets every target, with few queries
per step: on this 2-core VM one slow NCF query fails a step, and two of its runs do not
separate configurations. This runs the whole zoo at one offered load (a fraction of the
measured capacity) for long enough that every model's p95 rests on a few hundred
queries, once per configuration per round, the configurations rotating their order from
round to round, and prints each model's p50 / p95 / p99 and rejections per configuration,
and beside them the daemon's own p95 for the same queries (arrival to answer inside
recschedd, from /v1/placements): what the client sees beyond it is the HTTP path and this
host's wake-ups, shared with the generator on the same cores.

  python3 bench/colocation_ab.py --qps 58 --seconds 40 --rounds 2 \\
      --config before='{"limits": {"preemption": false, "wait_bound_fraction": 0.5}}' \\
      --config now='{}' --out docs/bench-.../ab.json
  python3 bench/colocation_ab.py --qps 93 --config socket='{}' --config shm='{}' \
      --load-args shm='--shm' --out ...   (a client-side A/B: the same daemon)

Targets: the medium targets of a run-suite JSON (--targets-from), else the daemon's.
Profiles: the main job's cache (build/main-job/state), so no configuration re-profiles.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))


def load_run_suite():
    # run-suite has no .py suffix: load it as a module for its Daemon class.
    import importlib.machinery
    import importlib.util
    path = os.path.join(ROOT, "bench", "run-suite")
    loader = importlib.machinery.SourceFileLoader("run_suite", path)
    spec = importlib.util.spec_from_loader("run_suite", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def last_query(rs, socket):
    """The number of the last query in the daemon's placement log (0 if none)."""
    pl = rs.get_json(socket, "/v1/placements?limit=1")["placements"]
    return pl[0]["query"] if pl else 0


PARTS = ("actual_ms", "decode_ms", "wait_ms", "service_ms", "suspended_ms")


def daemon_p95(rs, socket, after):
    """Each model's p95 of actual_ms (arrival to answer inside recschedd) over the answered
    queries numbered above `after`, from the placement log (limits.placement_log, 4096 by
    default: a run of more queries is judged on its last 4096); and the p95 of each part of
    it (PARTS: decoding, waiting for a worker, the runner's service, suspended in it), so
    that a tail can be told apart as queueing, preemption or compute."""
    pl = rs.get_json(socket, "/v1/placements?limit=100000")["placements"]
    by_model = {}
    for p in pl:
        if p["query"] > after and p["outcome"] == "ok":
            by_model.setdefault(p["model"], []).append(p)
    p95, parts = {}, {}
    for m, ps in by_model.items():
        def q(key, at):
            xs = sorted(p.get(key, 0.0) for p in ps)
            return xs[min(len(xs) - 1, int(at * len(xs)))]
        p95[m] = q("actual_ms", 0.95)
        parts[m] = {k: q(k, 0.95) for k in PARTS}
        # The tail beyond the p95 (a step of 20 queries judges its 19th): the p99 of each
        # part, and the parts of the queries at or above the p99 of actual_ms.
        parts[m]["p99"] = {k: q(k, 0.99) for k in PARTS}
        cut = q("actual_ms", 0.99)
        parts[m]["slowest"] = [{k: p.get(k, 0.0) for k in PARTS + ("workers", "sub_batch")}
                               for p in ps if p["actual_ms"] >= cut]
    return p95, parts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--state-dir", default=None, help="profile cache (default BUILD/main-job/state)")
    ap.add_argument("--config", action="append", required=True, metavar="NAME=JSON",
                    help="a configuration: keys added to recschedd's config (repeat)")
    ap.add_argument("--load-args", action="append", default=[], metavar="NAME=ARGS",
                    help="extra recsched-load arguments for configuration NAME, e.g. "
                         "shm='--shm' (the client side of an A/B)")
    ap.add_argument("--policy", default="earliest-finish")
    ap.add_argument("--qps", type=float, required=True, help="offered load, queries/s")
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--targets-from", help="a run-suite JSON: its medium targets")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    rs = load_run_suite()
    configs = []
    for c in a.config:
        name, _, text = c.partition("=")
        try:
            configs.append((name, json.loads(text)))
        except json.JSONDecodeError as e:
            ap.error(f"--config {name}: not JSON ({e})")
    load_args = {}
    for c in a.load_args:
        name, _, text = c.partition("=")
        if name not in dict(configs):
            ap.error(f"--load-args {name}: no --config of that name")
        load_args[name] = shlex.split(text)
    targets = None
    if a.targets_from:
        targets = json.load(open(a.targets_from))["detail"]["targets_ms"]["medium"]
    state = a.state_dir or os.path.join(a.build_dir, "main-job", "state")
    run_dir = os.path.join(a.build_dir, "colocation-ab")
    os.makedirs(run_dir, exist_ok=True)
    load_bin = os.path.join(a.build_dir, "bench", "load", "recsched-load")
    results = {name: [] for name, _ in configs}
    for r in range(a.rounds):
        order = configs[r % len(configs):] + configs[:r % len(configs)]
        for name, extra in order:
            d = rs.Daemon(os.path.join(a.build_dir, "daemon", "recschedd"), run_dir, state, False,
                          extra)
            d.start()
            try:
                if targets:
                    d.set_targets(targets)
                out = os.path.join(run_dir, f"{name}-{r}.json")
                cmd = [load_bin, "--socket", d.socket, "--quiet", "--out", out, "--policy",
                       a.policy, "--qps", str(a.qps), "--duration", str(a.seconds),
                       "--warmup", str(min(2.0, a.seconds / 10)), "--seed", str(r + 1)]
                cmd += load_args.get(name, [])
                t0 = time.time()
                before = last_query(rs, d.socket)
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                rs.log(f"{name} round {r}: {time.time() - t0:.0f} s, load "
                       f"{os.getloadavg()[0]:.2f}")
                warmup_queries = int(a.qps * min(2.0, a.seconds / 10))
                inside, parts = daemon_p95(rs, d.socket, before + warmup_queries)
                results[name].append({"cmd": " ".join(cmd), "report": json.load(open(out)),
                                      "daemon_p95_ms": inside, "daemon_p95_parts_ms": parts})
            finally:
                d.stop()
    summary = {}
    models = sorted(results[configs[0][0]][0]["report"]["models"])
    print(f"{a.policy}, {a.qps} q/s offered, {a.seconds} s x {a.rounds} rounds")
    print(f"{'model':8} " + " ".join(f"{n:>46}" for n, _ in configs))
    print(f"{'':8} " + " ".join(f"{'p50 / p95 / p99 ms, rejected | daemon p95':>46}"
                                 for _ in configs))
    for m in models:
        row = []
        for name, _ in configs:
            runs = [x["report"]["models"][m] for x in results[name]]
            sent = sum(x["sent"] for x in runs)
            rej = sum(x["rejected"] for x in runs)
            p = [sum(x[k] for x in runs) / len(runs) for k in ("p50_ms", "p95_ms", "p99_ms")]
            inside = [x["daemon_p95_ms"].get(m) for x in results[name]]
            inside = [x for x in inside if x is not None]
            d95 = sum(inside) / len(inside) if inside else float("nan")
            summary.setdefault(name, {})[m] = {"p50_ms": p[0], "p95_ms": p[1], "p99_ms": p[2],
                                               "daemon_p95_ms": d95, "sent": sent,
                                               "rejected": rej, "sla_ms": runs[0]["sla_ms"]}
            row.append(f"{p[0]:7.2f} / {p[1]:7.2f} / {p[2]:7.2f}, {rej / max(1, sent):4.0%}"
                       f" | {d95:7.2f}")
        print(f"{m:8} " + " ".join(f"{x:>46}" for x in row))
    print("the daemon's p95 in parts (ms, mean over rounds): decode / wait for a worker / "
          "service / suspended in it")
    for m in models:
        row = []
        for name, _ in configs:
            got = [x["daemon_p95_parts_ms"][m] for x in results[name]
                   if m in x["daemon_p95_parts_ms"]]
            mean = {k: sum(g[k] for g in got) / len(got) if got else float("nan") for k in PARTS}
            summary[name][m]["daemon_p95_parts_ms"] = mean
            row.append(f"{mean['decode_ms']:6.2f} / {mean['wait_ms']:6.2f} / "
                       f"{mean['service_ms']:7.2f} / {mean['suspended_ms']:6.2f}")
        print(f"{m:8} " + " ".join(f"{x:>46}" for x in row))
    json.dump({"policy": a.policy, "qps": a.qps, "seconds": a.seconds, "rounds": a.rounds,
               "configs": dict(configs), "load_args": load_args, "summary": summary,
               "runs": results},
              open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
