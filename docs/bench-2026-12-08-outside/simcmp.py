import json, subprocess, sys, shlex
suite = json.load(open(sys.argv[1])); hc = json.load(open(sys.argv[2])); outdir = sys.argv[3]
d = suite["detail"]; live = {p: v["max_qps"] for p, v in suite["policies"].items()}
rows = []
cmds = []
for level in ("low", "medium", "high"):
    t = d["targets_ms"][level]
    base = ["build/sim/recsched-sim", "--profiles", "build/main-job/state/profiles.json", "--find-max",
            "--targets", ",".join(f"{m}={v:.4f}" for m, v in sorted(t.items())), "--seconds", "100",
            "--host-cpu-ms", hc["host_cpu_ms_arg"], "--json", "--cpu-workers", str(d["machine"]["workers"]),
            "--no-gpu", "--policies", ",".join(suite["policies"])]
    for variant, extra in (("host CPU", []), ("host CPU + outside", ["--outside-ms", hc["outside_ms_arg"]])):
        cmd = base + extra
        cmds.append(" ".join(shlex.quote(c) for c in cmd))
        sim = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        json.dump(sim, open(f"{outdir}/sim-{level}-{'outside' if extra else 'host'}.json", "w"), indent=1)
        for r in sim["runs"]:
            l = live[r["policy"]].get(level)
            rows.append((level, r["policy"], variant, r["offered_qps"], l, r["offered_qps"] / l if l else None))
        print(level, variant, "capacity", sim.get("capacity_qps"), flush=True)
open(f"{outdir}/sim-commands.txt", "w").write("\n\n".join(cmds) + "\n")
print("| level | policy | live q/s | modelled, host CPU | ratio | modelled, host CPU + outside | ratio |")
print("|---|---|---:|---:|---:|---:|---:|")
by = {}
for lv, p, v, q, l, r in rows: by.setdefault((lv, p), {})[v] = (q, l, r)
for (lv, p), v in by.items():
    a, b = v["host CPU"], v["host CPU + outside"]
    f = lambda x: "-" if x is None else f"{x:.2f}"
    print(f"| {lv} | {p} | {a[1]:.1f} | {a[0]:.1f} | {f(a[2])} | {b[0]:.1f} | {f(b[2])} |")
