#!/usr/bin/env python3
"""The CPU each query costs the host outside the daemon's workers, per model, measured live.

The simulator's workers are the host's cores; on a host where recschedd serves from its
own I/O threads and, in our benchmarks, the load generator shares the same cores, each
query also costs CPU there: reading and decoding its body, writing its answer, and the
generator building, writing and reading it. This serves the default zoo (the main job's
profile cache, so nothing is profiled; tiny queries not run inline, so the I/O threads'
time holds no compute) and, per model alone, drives recsched-load at a low rate; it reads
the CPU time of every recschedd thread that is not a worker (/proc/PID/task/*/schedstat;
the workers are named cpuN-wM) and the generator's own (its report's generator.cpu_s), and
prints per model what each query cost, and the recsched-sim option that models it.

It also prints what each query spends outside the daemon's own clock (the generator's send
and read, the kernel, the HTTP path and the wake-ups on the way, which a live run's targets
judge and the simulator's clock does not see: --outside-ms): the client's p50 less the
daemon's over the same queries (/v1/placements' actual_ms, from the request's decode to
its answer being handed back), and the same at the p95.

  python3 bench/host_cost.py [--qps 20] [--seconds 10] [--load-args '--int32-ids'] \\
      [--out F.json]
  build/sim/recsched-sim ... --host-cpu-ms "$(jq -r .host_cpu_ms_arg F.json)" \\
      --outside-ms "$(jq -r .outside_ms_arg F.json)"
"""
import argparse
import json
import os
import re
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from colocation_ab import load_run_suite  # noqa: E402  (run-suite's Daemon)

WORKER = re.compile(r"^(cpu|gpu)\d+-[ws]\d+$")


def thread_cpu_s(pid):
    """(workers, everything else) CPU seconds of process `pid`'s live threads, from
    schedstat (nanoseconds on a CPU; stat's utime and stime count 10 ms ticks)."""
    workers = rest = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            comm = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
            s = int(open(f"/proc/{pid}/task/{tid}/schedstat").read().split()[0]) / 1e9
        except OSError:
            continue  # the thread ended
        if WORKER.match(comm):
            workers += s
        else:
            rest += s
    return workers, rest


def measure(build_dir, state_dir=None, qps=20, seconds=10, models=None, load_args=""):
    """{model: {queries, daemon_outside_workers_ms, workers_ms, generator_ms, client_p50_ms,
    host_cpu_ms}}, each model alone on a fresh recschedd of BUILD_DIR (see the top)."""
    rs = load_run_suite()
    state = state_dir or os.path.join(build_dir, "main-job", "state")
    run_dir = os.path.join(build_dir, "host-cost")
    os.makedirs(run_dir, exist_ok=True)
    load_bin = os.path.join(build_dir, "bench", "load", "recsched-load")
    d = rs.Daemon(os.path.join(build_dir, "daemon", "recschedd"), run_dir, state, False,
                  {"limits": {"inline_max_ms": 0, "inline_idle_max_ms": 0}})
    d.start()
    rows = {}
    try:
        models = models or sorted(m["name"] for m in rs.get_json(d.socket, "/v1/models")["models"])
        for m in models:
            out = os.path.join(run_dir, f"{m}.json")
            cmd = [load_bin, "--socket", d.socket, "--quiet", "--policy", "static", "--models", m,
                   "--qps", str(qps), "--duration", str(seconds), "--out", out]
            cmd += shlex.split(load_args)
            pl = rs.get_json(d.socket, "/v1/placements?limit=1")["placements"]
            after = pl[0]["query"] if pl else 0
            w0, r0 = thread_cpu_s(d.proc.pid)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            w1, r1 = thread_cpu_s(d.proc.pid)
            rep = json.load(open(out))
            n = rep["generator"]["answered"]
            gen_ms = rep["generator"]["cpu_ms_per_query"]
            rows[m] = {"queries": n,
                       "daemon_outside_workers_ms": round(1e3 * (r1 - r0) / max(1, n), 4),
                       "workers_ms": round(1e3 * (w1 - w0) / max(1, n), 4),
                       "generator_ms": round(gen_ms, 4),
                       "client_p50_ms": rep["models"][m]["p50_ms"]}
            rows[m]["host_cpu_ms"] = round(rows[m]["daemon_outside_workers_ms"] + gen_ms, 4)
            # The daemon's own p50 over the same queries (arrival to answer inside it, from
            # the placement log: this run's answered ones).
            pl = rs.get_json(d.socket, "/v1/placements?limit=100000")["placements"]
            own = sorted(p["actual_ms"] for p in pl if p["query"] > after and p["outcome"] == "ok")
            daemon_p50 = own[len(own) // 2] if own else 0.0
            daemon_p95 = own[min(len(own) - 1, int(0.95 * len(own)))] if own else 0.0
            rows[m]["daemon_p50_ms"] = round(daemon_p50, 4)
            rows[m]["daemon_p95_ms"] = round(daemon_p95, 4)
            rows[m]["client_p95_ms"] = rep["models"][m]["p95_ms"]
            rows[m]["outside_ms"] = round(max(0.0, rows[m]["client_p50_ms"] - daemon_p50), 4)
            # Its tail as the difference of the two p95s (each side's slowest queries taken
            # to be the same ones), never below its median.
            rows[m]["outside_p95_ms"] = round(
                max(rows[m]["outside_ms"], rows[m]["client_p95_ms"] - daemon_p95), 4)
            rs.log(f"host cost of {m}: {rows[m]}")
    finally:
        d.stop()
    return rows


def sim_arg(rows):
    """recsched-sim's --host-cpu-ms value for measure()'s rows."""
    return ",".join(f"{m}={r['host_cpu_ms']}" for m, r in rows.items())


def outside_arg(rows):
    """recsched-sim's --outside-ms value (p50:p95 per model) for measure()'s rows."""
    return ",".join(f"{m}={r['outside_ms']}:{r['outside_p95_ms']}" for m, r in rows.items())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--state-dir", default=None, help="profile cache (default BUILD/main-job/state)")
    ap.add_argument("--qps", type=float, default=20)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--models", default="", help="a,b,... (default: every served model)")
    ap.add_argument("--load-args", default="", help="extra recsched-load arguments")
    ap.add_argument("--out")
    a = ap.parse_args()
    rows = measure(a.build_dir, a.state_dir, a.qps, a.seconds,
                   a.models.split(",") if a.models else None, a.load_args)
    arg, outside = sim_arg(rows), outside_arg(rows)
    print(f"{'model':8} {'queries':>8} {'daemon outside workers':>23} {'generator':>10} "
          f"{'host, per query':>16} {'workers':>8}  (CPU ms per query)  "
          f"{'client p50':>10} {'daemon p50':>10} {'outside p50':>11} {'p95':>7}  (ms)")
    for m, r in rows.items():
        print(f"{m:8} {r['queries']:8d} {r['daemon_outside_workers_ms']:23.3f} "
              f"{r['generator_ms']:10.3f} {r['host_cpu_ms']:16.3f} {r['workers_ms']:8.3f}"
              f"{'':20} {r['client_p50_ms']:10.3f} {r['daemon_p50_ms']:10.3f} "
              f"{r['outside_ms']:11.3f} {r['outside_p95_ms']:7.3f}")
    print(f"recsched-sim --host-cpu-ms {arg} --outside-ms {outside}")
    if a.out:
        json.dump({"qps": a.qps, "seconds": a.seconds, "load_args": a.load_args,
                   "models": rows, "host_cpu_ms_arg": arg, "outside_ms_arg": outside},
                  open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
