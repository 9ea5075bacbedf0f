#!/usr/bin/env python3
"""Profile vs live for one model (issue 8, cause 3): recschedd from BUILD serving MODEL alone
with a fresh profile (a private state dir), the static policy, fixed-size queries at a low
rate from recsched-load; prints the profile's single-worker p50 at SIZE (interpolated), the
daemon's median predicted and actual ms (placement log: arrival after the body read ->
answer, parsing included) and the client's p50/p95, with the load average.

  bench/profile_vs_live.py BUILD MODEL SIZE QPS SECONDS [--daemon-config JSON] [LOAD OPTION...]
  (e.g. build rmc1 164 10 15, or build ncf 164 5 15 --spin-us 300, or
  build ncf 164 5 15 --daemon-config '{"limits": {"inline_idle_max_ms": 0}}')
--daemon-config: keys merged into the daemon's config (one level deep per key).
BUILD is a build directory directly inside the checkout (its models/ are served).
Only the Python standard library."""
import http.client, json, os, shutil, socket, statistics, subprocess, sys, tempfile, time
build, model, size, qps, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
load_options, extra = sys.argv[6:], {}
if load_options[:1] == ["--daemon-config"]:
    extra, load_options = json.loads(load_options[1]), load_options[2:]
src = os.path.dirname(os.path.abspath(build))
run = tempfile.mkdtemp(prefix="pvl-")
sock = f"{run}/d.sock"
cfg = {"listen": {"socket": sock, "tcp": ""}, "models": [f"{src}/models/{model}.json"],
       "state_dir": f"{run}/state", "gpus": False}
for k, v in extra.items():
    cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
json.dump(cfg, open(f"{run}/cfg.json", "w"))
class C(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX); self.sock.connect(sock)
def get(path):
    c = C("x", timeout=30); c.request("GET", path); r = c.getresponse(); d = r.read(); c.close()
    return r.status, d
t0 = time.time()
d = subprocess.Popen([f"{build}/daemon/recschedd", "--config", f"{run}/cfg.json"],
                     stdout=open(f"{run}/log", "w"), stderr=subprocess.STDOUT)
try:
    while True:
        try:
            if os.path.exists(sock) and get("/v2/health/ready")[0] == 200: break
        except OSError: pass
        if d.poll() is not None: sys.exit(open(f"{run}/log").read())
        time.sleep(0.3)
    ready_s = time.time() - t0
    prof = json.loads(get("/v1/profiles")[1])["profiles"]
    pts = sorted([p for p in prof if p["model"] == model][0]["points"], key=lambda p: p["batch_size"])
    def interp(key):
        for lo, hi in zip(pts, pts[1:]):
            if lo["batch_size"] <= size <= hi["batch_size"]:
                f = (size - lo["batch_size"]) / (hi["batch_size"] - lo["batch_size"])
                return lo[key] + f * (hi[key] - lo[key])
    single_ms = interp("p50_single_us") / 1000
    out = f"{run}/load.json"
    subprocess.run([f"{build}/bench/load/recsched-load", "--socket", sock, "--quiet", "--policy", "static",
                    "--sizes", f"fixed:{size}", "--qps", str(qps), "--duration", str(secs), "--out", out]
                   + load_options,
                   check=True, stdout=subprocess.DEVNULL)
    res = json.load(open(out))
    pl = json.loads(get("/v1/placements?limit=100000")[1])["placements"]
    pl = [p for p in pl if p["model"] == model and p.get("outcome") == "ok"]
    pl.sort(key=lambda p: p["query"])
    # The second half: predictions made once the daemon has learnt what serving costs
    # (policies::ServiceCorrection), against what it then measured.
    late = pl[len(pl) // 2:]
    corr = json.loads(get("/v1/profiles")[1]).get("corrections", {})
    print(json.dumps({"model": model, "size": size, "ready_s": round(ready_s, 1),
        "profile_single_p50_ms": round(single_ms, 4),
        "daemon_predicted_p50_ms": round(statistics.median(p["predicted_ms"] for p in pl), 4),
        "daemon_actual_p50_ms": round(statistics.median(p["actual_ms"] for p in pl), 4),
        "client_p50_ms": res["models"][model]["p50_ms"], "client_p95_ms": res["models"][model]["p95_ms"],
        # From the request's first byte handed to the socket: without the generator's own
        # timer wake-up before it sends (open loop: the p50 above counts it).
        "client_p50_from_send_ms": res["models"][model].get("p50_from_send_ms"),
        "send_lag_p50_ms": res["generator"]["send_lag_p50_ms"],
        "load_options": load_options, "daemon_config": extra,
        "late_predicted_p50_ms": round(statistics.median(p["predicted_ms"] for p in late), 4),
        "late_actual_p50_ms": round(statistics.median(p["actual_ms"] for p in late), 4),
        "late_client_p50_ms": res["models"][model]["p50_ms"],
        "corrections": corr,
        "n": len(pl), "loadavg": os.getloadavg()[0]}))
finally:
    d.terminate(); d.wait()
    shutil.rmtree(run, ignore_errors=True)
