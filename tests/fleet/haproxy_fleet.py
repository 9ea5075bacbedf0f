#!/usr/bin/env python3
"""A real HAProxy in front of three recschedd instances on loopback (issue 19).

The fleet: instances a and b serve on one device of 2 workers (partition "numa", both
cores), c on one worker ("partition": "core", devices ["cpu0"]); all three share this
host's cores, so c has the least of them: that is the skew. Each answers HAProxy's agent
check (fleet.agent_check) with the same fleet.agent_weight_qps, the 2-worker instance's
own mix capacity (measured first, on a alone), so a and b report about 100 % and c about
half; each drains for fleet.drain_ms on SIGTERM. HAProxy 2.x (mode http, balance
roundrobin) checks GET /v2/health/ready and reads the agents; its admin socket gives
`show stat`.

  haproxy_fleet.py --test [--build DIR] [--source DIR] [--keep] [--no-retry]
      The ctest entry (label fleet; about 75 s here). Asserts:
      (a) HAProxy's effective weights (`show stat`, column weight) follow the agents:
          c's below a's and b's;
      (b) under a modest load through HAProxy (recsched-load), c answers fewer queries
          than a and b (each daemon's GET /v1/stats);
      (c) a rolling restart of all three (SIGTERM, wait for exit 0, start, wait until
          HAProxy has it UP with a weight) while recsched-load runs through HAProxy:
          no failed request at the client (rejected + errors == 0 in its JSON).
  haproxy_fleet.py --measure --out FILE.json [--build DIR] [--source DIR] [--keep]
                    [--no-retry] [--layout workers|cores] [--c-nice N] [--c-cpu CPUS]
      The measurement for docs/operations.md (about 5 min here): the fleet's latency-bounded
      throughput (recsched-load --find-max-qps through HAProxy) with plain round robin
      (no agent check) and with the agents' weights, alternated twice, each search with
      the share of queries each instance answered; then a rolling restart under load
      with its failed requests. Prints a table; FILE.json holds every number and
      recsched-load's own outputs.

--layout cores (measure): a alone on cpu0, b and c sharing cpu1, one worker each, in
place of the default skew by worker count; --c-nice N: c's limits.worker_nice; --c-cpu
CPUS: c in a cgroup (v1 cpu controller, root) with a quota of CPUS processors.
--build DIR: the build tree (default the repository's build/: daemon/recschedd,
bench/load/recsched-load); --source DIR: the repository (default: this script's
../..), for models/*.json. --keep leaves the run directory (configs, logs, HAProxy's
request log) in place and prints its path. --no-retry gives HAProxy `retries 0` (no
retry of any kind), to show that the daemons' drain alone keeps the restart clean.

Exit: 0 passed, 1 a check failed (each printed with the evidence), 2 bad usage or a
binary missing, 77 skipped: no haproxy >= 2.0, or it cannot start; the last line printed
is then `recsched-test-skipped: <reason>` (scripts/check-tests.sh reports it). Every
process it starts is killed on exit, on failure and on Ctrl-C (and, through
PR_SET_PDEATHSIG, if this script is killed), and the run directory is removed.
Python standard library only.
"""

import argparse
import csv
import ctypes
import http.client
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

SKIP = 77
SKIP_MARKER = "recsched-test-skipped: "

# The models of the fleet and their targets (sla_ms). Tight enough that an overloaded
# instance misses them, loose enough that an instance below its capacity meets them on
# this 2-core host with HAProxy and the load generator on the same cores: through
# HAProxy at a low load the p50s are about 8 ms (ncf) and 20 ms (wnd, rmc1), and an ncf
# query can wait behind a wnd or rmc1 query on c's one worker (12 ms at 164 items).
MODELS = {"ncf": 40.0, "wnd": 80.0, "rmc1": 80.0}
# Query sizes: DeepRecInfra's lognormal, capped at 256 items so that a request stays a
# few hundred KiB (HAProxy buffers a whole request for its layer-7 retries).
SIZES = "lognormal:5.1,0.2,256"

DRAIN_MS = 1800      # fleet.drain_ms: longer than HAProxy's agent-inter + a check's time
CHECK_INTER_MS = 500  # HAProxy's health check and agent check intervals


class Skip(Exception):
    """The host lacks what the test needs; the message says what."""


class Failed(Exception):
    """A check failed; the message says which and shows the evidence."""


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


_HANDED_OUT = set()  # every port free_ports() has returned in this run


def free_ports(n):
    """n free TCP ports on 127.0.0.1, none returned before in this run. Each is bound,
    then released for its daemon to bind later, so the kernel may offer a released one
    again: a second daemon given a port the first has not bound yet would fail with
    'Address already in use' (it did, in CI), hence the set of ports already handed out."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            if len(socks) > 1000:
                raise RuntimeError("no free TCP port on 127.0.0.1 not already handed out")
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)  # held until the end, so the kernel offers another each time
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if port not in _HANDED_OUT:
                ports.append(port)
        _HANDED_OUT.update(ports)
        return ports
    finally:
        for s in socks:
            s.close()


def http_get(port, path, timeout=2.0):
    """(status, body) of GET path on 127.0.0.1:port; raises OSError when unreachable."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def read_to_close(s):
    """Everything socket `s` receives until the peer closes, as text."""
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


def agent_line(port, timeout=2.0):
    """What the agent on `port` answers HAProxy: one line, then the close."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        return read_to_close(s).strip()


def tail(path, lines=25):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return f"(cannot read {path}: {e})"


_libc = None


def _die_with_parent():
    # In the child before exec: SIGKILL when this script dies, however it dies.
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Processes:
    """Every process this script starts; kill_all() ends them (SIGKILL, then reaped)."""

    def __init__(self):
        self.procs = []

    def start(self, args, log_path):
        out = open(log_path, "ab")
        try:
            p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True,
                                 preexec_fn=_die_with_parent)
        finally:
            out.close()
        self.procs.append(p)
        return p

    def kill_all(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    p.kill()
                except OSError:
                    pass
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.procs = []


class Daemon:
    """One recschedd instance: its ports, config, state directory and log."""

    def __init__(self, run, name, one_worker):
        self.run = run
        self.name = name
        self.one_worker = one_worker
        self.port, self.agent_port = free_ports(2)
        self.dir = os.path.join(run.dir, name)
        os.makedirs(os.path.join(self.dir, "state"))
        self.config_path = os.path.join(self.dir, "recschedd.json")
        self.log_path = os.path.join(self.dir, "recschedd.log")
        self.proc = None

    def write_config(self, weight_qps):
        cfg = {
            "listen": {"socket": "", "tcp": f"127.0.0.1:{self.port}"},
            "models": [{"spec": os.path.join(self.run.source, "models", f"{m}.json"),
                        "sla_ms": sla} for m, sla in MODELS.items()],
            "gpus": False,
            "profile": {"quick": True},
            "state_dir": os.path.join(self.dir, "state"),
            "fleet": {"agent_check": f"127.0.0.1:{self.agent_port}",
                      "agent_weight_qps": weight_qps, "drain_ms": DRAIN_MS},
        }
        if self.run.layout == "cores":
            # Disjoint cores where there are enough: a alone on cpu0; b and c both on cpu1,
            # so each has half a core under load while a has a whole one. Their profiles,
            # measured idle, do not know it; serving does.
            cfg["partition"] = "core"
            cfg["devices"] = ["cpu0"] if self.name == "a" else ["cpu1"]
        elif self.one_worker:
            cfg["partition"] = "core"
            cfg["devices"] = ["cpu0"]
            if self.run.c_nice is not None:
                # A slower host, emulated: c's worker yields the shared cores to everyone
                # else's (its profile, measured idle, does not know; what serving
                # measures does, and the capacity model predicts with that).
                cfg["limits"] = {"worker_nice": self.run.c_nice}
        with open(self.config_path, "w") as f:
            json.dump(cfg, f, indent=2)

    def start(self):
        with open(self.log_path, "a") as f:
            f.write(f"\n===== {time.strftime('%H:%M:%S')} start\n")
        args = [self.run.recschedd, "--config", self.config_path]
        if self.name == "c" and self.run.c_cgroup:
            # A smaller host, emulated: c runs (profiling included) in a cgroup with a CPU
            # quota, entered before exec so every thread is in it.
            args = ["sh", "-c", f'echo $$ > {self.run.c_cgroup}/cgroup.procs && exec "$@"',
                    "sh"] + args
        self.proc = self.run.procs.start(args, self.log_path)

    def wait_ready(self, timeout):
        """Until GET /v2/health/ready answers 200 and the agent answers; Failed if the
        process exits or `timeout` s pass."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise Failed(f"recschedd {self.name} exited with {self.proc.returncode} while "
                             f"starting; its log:\n{tail(self.log_path)}")
            try:
                status, _ = http_get(self.port, "/v2/health/ready", timeout=1)
                if status == 200 and agent_line(self.agent_port).startswith("up"):
                    return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(0.2)
        raise Failed(f"recschedd {self.name} not ready after {timeout} s; its log:\n"
                     f"{tail(self.log_path)}")

    def stop(self, timeout):
        """SIGTERM, then wait for the exit: (exit code, seconds). Failed on a timeout."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failed(f"recschedd {self.name} still running {timeout} s after SIGTERM; "
                         f"its log:\n{tail(self.log_path)}")
        return rc, time.monotonic() - t0

    def stop_now(self):
        """SIGTERM twice (the second ends the drain) and wait."""
        self.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)

    def stats(self):
        """GET /v1/stats, straight from the daemon."""
        status, body = http_get(self.port, "/v1/stats")
        if status != 200:
            raise Failed(f"GET /v1/stats on {self.name}: {status} {body[:200]!r}")
        return json.loads(body)

    def capacity(self):
        status, body = http_get(self.port, "/v1/capacity")
        if status != 200:
            raise Failed(f"GET /v1/capacity on {self.name}: {status} {body[:200]!r}")
        return json.loads(body)


def answered(stats):
    """Queries answered with scores, all models, from GET /v1/stats."""
    models = stats.get("models", stats)
    if isinstance(models, dict):
        models = list(models.values())
    return sum(int(m.get("ok", 0)) for m in models if isinstance(m, dict))


def haproxy_config(run, name, port, daemons, agent):
    """HAProxy's config: one frontend on `port`, one roundrobin backend of `daemons`,
    agent checks when `agent`, its admin socket and its request log in run.dir; with
    run.retries, layer-4 and layer-7 retries, else none at all."""
    if run.retries:
        retry = """    # A request that finds its server gone (refused connection, connection closed before
    # any answer) is sent again, to another server (redispatch), never after an answer
    # began: a safety net for a host that dies without draining. So is one a server
    # refused with 503: recschedd answers 503 only for a query it did not run (admission,
    # a full queue, a drain, shutdown), so another server may run it. Refusals were seen
    # while a restarting instance's start-up took CPU from the two serving beside it (2 of
    # 7 runs on a 2-vCPU machine). The cost: under overload a refused query is tried on up
    # to 4 servers (each refusal is cheap: before or just after decoding).
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response 503"""
    else:
        retry = "    retries 0"
    servers = []
    for d in daemons:
        line = f"    server {d.name} 127.0.0.1:{d.port} check"
        if agent:
            line += f" agent-check agent-port {d.agent_port} agent-inter {CHECK_INTER_MS}ms"
        servers.append(line)
    return f"""# {name}: written by tests/fleet/haproxy_fleet.py
global
    stats socket {run.dir}/{name}.sock mode 600 level admin
    log stdout format raw local0 info
    # A whole request in one buffer, so that a layer-7 retry can resend it.
    tune.bufsize 1048576
    maxconn 512

defaults
    mode http
    log global
    log-format "srv=%s status=%ST retries=%rc term=%tsc ta=%Ta"
    option http-buffer-request
    timeout connect 1s
    timeout server 30s
    timeout check 1s
    timeout http-request 10s
    # An idle client connection is kept longer than any run leaves one idle: HAProxy
    # would otherwise close it after timeout http-request (10 s), and recsched-load, which
    # does not resend a request on a pooled connection the peer has closed, counts the
    # next request on it as an error ("write: Broken pipe").
    timeout client 120s
    timeout http-keep-alive 120s
{retry}

frontend fe
    bind 127.0.0.1:{port}
    default_backend fleet

backend fleet
    balance roundrobin
    option httpchk GET /v2/health/ready
    http-check expect status 200
    default-server inter {CHECK_INTER_MS}ms fall 2 rise 2 weight 100
{chr(10).join(servers)}
"""


class HAProxy:
    """One haproxy process, foreground, its admin socket and its request log."""

    def __init__(self, run, name, daemons, agent):
        self.run = run
        self.name = name
        self.agent = agent
        self.port = free_ports(1)[0]
        self.sock = os.path.join(run.dir, f"{name}.sock")
        self.cfg_path = os.path.join(run.dir, f"{name}.cfg")
        self.log_path = os.path.join(run.dir, f"{name}.log")
        with open(self.cfg_path, "w") as f:
            f.write(haproxy_config(run, name, self.port, daemons, agent))
        self.proc = None

    def start(self):
        check = subprocess.run([self.run.haproxy, "-c", "-f", self.cfg_path],
                               capture_output=True, text=True)
        if check.returncode != 0:
            # haproxy >= 2.0 knows every keyword used: a refusal is this script's bug.
            raise Failed(f"haproxy {self.run.haproxy_version} -c refuses {self.cfg_path}:\n"
                         + (check.stdout + check.stderr).strip())
        self.proc = self.run.procs.start([self.run.haproxy, "-db", "-f", self.cfg_path],
                                         self.log_path)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10:
            if self.proc.poll() is not None:
                raise Skip(f"haproxy exited with {self.proc.returncode} at start: "
                           + tail(self.log_path, 5).strip().replace("\n", " | ")[:300])
            try:
                self.command("show info")
                return
            except OSError:
                time.sleep(0.1)
        raise Skip("haproxy's admin socket did not answer within 10 s")

    def command(self, cmd):
        """The admin socket's answer to `cmd`; OSError if it does not answer in 5 s."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(self.sock)
            s.sendall(cmd.encode() + b"\n")
            return read_to_close(s)

    def servers(self):
        """`show stat` rows of the backend's servers: name -> {status, weight, ...}."""
        text = self.command("show stat").lstrip("# ")
        out = {}
        for row in csv.DictReader(io.StringIO(text)):
            if row.get("pxname") == "fleet" and row.get("svname") not in ("BACKEND", None):
                out[row["svname"]] = row
        return out

    def weights(self):
        return {n: int(r["weight"] or 0) for n, r in self.servers().items()}

    def wait_up(self, name, timeout):
        """Until HAProxy has server `name` UP with a weight > 0 (the agent has said
        `up ready`); seconds taken. Failed on a timeout."""
        t0 = time.monotonic()
        row = {}
        while time.monotonic() - t0 < timeout:
            try:
                row = self.servers().get(name, {})
            except OSError:  # the admin socket busy or slow: ask again
                row = {}
            if row.get("status") == "UP" and int(row.get("weight") or 0) > 0:
                return time.monotonic() - t0
            time.sleep(0.1)
        raise Failed(f"{self.name}: server {name} not UP with a weight after {timeout} s: "
                     f"status {row.get('status')!r}, weight {row.get('weight')!r}, "
                     f"check {row.get('check_status')!r}, agent {row.get('agent_status')!r}")

    def request_log(self):
        """Request lines of the log: dicts of srv, status, retries, term, ta."""
        out = []
        with open(self.log_path, errors="replace") as f:
            for line in f:
                m = re.search(r"srv=(\S+) status=(-?\d+) retries=(\+?-?\d+) term=(\S+) ta=(-?\d+)",
                              line)
                if m:
                    out.append({"srv": m.group(1), "status": int(m.group(2)),
                                "retries": m.group(3), "term": m.group(4),
                                "ta": int(m.group(5))})
        return out


class Run:
    """The run directory, the binaries, the processes; a context manager that kills
    every process and removes the directory on the way out."""

    def __init__(self, args):
        self.build = os.path.abspath(args.build)
        self.source = os.path.abspath(args.source)
        self.keep = args.keep
        self.c_nice = getattr(args, "c_nice", None)
        self.layout = getattr(args, "layout", "workers")
        self.c_cpu = getattr(args, "c_cpu", None)
        self.c_cgroup = None
        self.retries = not args.no_retry
        self.recschedd = os.path.join(self.build, "daemon", "recschedd")
        self.load = os.path.join(self.build, "bench", "load", "recsched-load")
        self.haproxy = shutil.which("haproxy") or (
            "/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None)
        self.haproxy_version = ""
        self.procs = Processes()
        self.dir = None

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="recsched-fleet-")
        if self.c_cpu is not None:
            # cgroup v1's cpu controller (this VM's hybrid layout); a quota of c_cpu CPUs.
            root = "/sys/fs/cgroup/cpu"
            if not os.path.isdir(root):
                raise SystemExit(f"--c-cpu needs cgroup v1's cpu controller at {root}")
            self.c_cgroup = os.path.join(root, f"recsched-fleet-c-{os.getpid()}")
            os.mkdir(self.c_cgroup)
            with open(os.path.join(self.c_cgroup, "cpu.cfs_period_us"), "w") as f:
                f.write("100000")
            with open(os.path.join(self.c_cgroup, "cpu.cfs_quota_us"), "w") as f:
                f.write(str(int(self.c_cpu * 100000)))
        return self

    def __exit__(self, *exc):
        self.procs.kill_all()
        if self.c_cgroup:
            try:
                os.rmdir(self.c_cgroup)
            except OSError:
                pass
        if self.keep:
            print(f"run directory kept: {self.dir}", flush=True)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def preflight(self):
        for path in (self.recschedd, self.load):
            if not os.access(path, os.X_OK):
                raise FileNotFoundError(f"{path} is not built")
        for m in MODELS:
            path = os.path.join(self.source, "models", f"{m}.json")
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{path} missing (--source)")
        if self.haproxy is None:
            raise Skip("haproxy is not installed (apt-get install haproxy)")
        try:
            v = subprocess.run([self.haproxy, "-v"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise Skip(f"{self.haproxy} -v failed: {e}")
        m = re.search(r"version (\d+)\.(\d+)\S*", v.stdout)
        if v.returncode != 0 or not m:
            raise Skip(f"{self.haproxy} -v failed: {(v.stdout + v.stderr).strip()[:200]}")
        self.haproxy_version = m.group(0)
        if int(m.group(1)) < 2:
            raise Skip(f"haproxy {self.haproxy_version} lacks retry-on (needs 2.0 or later)")

    def load_args(self, port, out, extra):
        return [self.load, "--tcp", f"127.0.0.1:{port}", "--models", ",".join(MODELS),
                "--sizes", SIZES, "--quiet", "--out", out] + extra

    def start_load(self, port, name, extra):
        """recsched-load in the background; (process, its JSON output path)."""
        out = os.path.join(self.dir, f"load-{name}.json")
        p = self.procs.start(self.load_args(port, out, extra),
                             os.path.join(self.dir, f"load-{name}.log"))
        return p, out

    def finish_load(self, proc, out, name, timeout):
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failed(f"recsched-load {name} still running after {timeout} s")
        log_path = os.path.join(self.dir, f"load-{name}.log")
        if not os.path.exists(out):
            raise Failed(f"recsched-load {name} exited {proc.returncode} with no output:\n"
                         f"{tail(log_path)}")
        with open(out) as f:
            return json.load(f)

    def start_fleet(self):
        """a (2 workers) alone first, for the 2-worker capacity that every agent's 100 %
        means; then a, b (its profiles copied from a: same partition, same host) and c
        (1 worker, profiled on its own). Returns (daemons, weight_qps)."""
        a = Daemon(self, "a", one_worker=False)
        b = Daemon(self, "b", one_worker=False)
        c = Daemon(self, "c", one_worker=True)
        a.write_config(1)
        a.start()
        took = a.wait_ready(120)
        weight_qps = round(a.capacity()["host"]["mix_capacity_qps"], 1)
        log(f"a profiled and ready in {took:.1f} s; its mix capacity {weight_qps} q/s "
            "= fleet.agent_weight_qps on all three")
        if weight_qps <= 0:
            raise Failed(f"a reports no capacity: {a.capacity()}")
        a.stop_now()
        if self.layout != "cores":  # b serves what a serves: the same profiles
            shutil.rmtree(os.path.join(b.dir, "state"))
            shutil.copytree(os.path.join(a.dir, "state"), os.path.join(b.dir, "state"))
        for d in (a, b, c):
            d.write_config(weight_qps)
            d.start()
            took = d.wait_ready(120)
            log(f"{d.name} ready in {took:.1f} s (port {d.port}, agent {d.agent_port}: "
                f"{agent_line(d.agent_port)!r})")
        return [a, b, c], weight_qps

    def rolling_restart(self, daemons, proxy, load_proc):
        """SIGTERM each in turn, wait for its exit, start it, wait until `proxy` has it UP;
        a list of {name, exit, stop_s, ready_s, up_s}. Failed if the load ends first."""
        steps = []
        for d in daemons:
            if load_proc.poll() is not None:
                raise Failed(f"the load ended before {d.name}'s restart: lengthen it")
            before = proxy.servers()[d.name]
            rc, stop_s = d.stop(timeout=DRAIN_MS / 1000 + 30)
            if rc != 0:
                raise Failed(f"recschedd {d.name} exited {rc} after SIGTERM; its log:\n"
                             f"{tail(d.log_path)}")
            d.start()
            ready_s = d.wait_ready(120)
            up_s = proxy.wait_up(d.name, 30)
            steps.append({"name": d.name, "exit": rc, "stop_s": round(stop_s, 2),
                          "ready_s": round(ready_s, 2), "up_s": round(up_s, 2),
                          "weight_before": int(before["weight"] or 0),
                          "weight_after": proxy.weights()[d.name]})
            log(f"restarted {d.name}: exit {rc} {stop_s:.1f} s after SIGTERM, ready "
                f"{ready_s:.1f} s after start, UP in HAProxy {up_s:.1f} s later")
            time.sleep(1)
        if load_proc.poll() is not None:
            raise Failed("the load ended before the last restart finished: lengthen it")
        return steps


def failures(result):
    """(rejected, errors, detail) of a recsched-load run's JSON."""
    every = result["all"]
    detail = {m: {"sent": r["sent"], "ok": r["ok"], "rejected": r["rejected"],
                  "errors": r["errors"]} for m, r in result["models"].items()}
    return int(every["rejected"]), int(every["errors"]), detail


def retried(proxy):
    """Request-log summary: requests, retried ones, and any answered >= 500."""
    lines = proxy.request_log()
    again = [l for l in lines if l["retries"].lstrip("+") not in ("0", "-1")]
    bad = [l for l in lines if l["status"] >= 500 or l["status"] < 0]
    return {"requests": len(lines), "retried": len(again), "status_5xx_or_none": len(bad),
            "retried_examples": again[:5], "bad_examples": bad[:5]}


def start_skewed_fleet(run):
    """run.start_fleet(), until c (1 worker) reports less capacity than a (2 workers): the
    skew the checks rest on. Each profiles itself at its own moment on this shared host;
    when a neighbour's burst makes a's profile slow, c looks as big as a and no weighting
    could show anything, so all three profile again (twice at most) rather than be judged
    on noise."""
    for attempt in range(3):
        daemons, weight_qps = run.start_fleet()
        a_cap = daemons[0].capacity()["host"]["mix_capacity_qps"]
        c_cap = daemons[2].capacity()["host"]["mix_capacity_qps"]
        if c_cap < 0.8 * a_cap or attempt == 2:
            return daemons, weight_qps
        log(f"c's profile says {c_cap:.1f} q/s against a's {a_cap:.1f}: profiled in noise, "
            "profiling all three again")
        for d in daemons:
            d.stop_now()
            shutil.rmtree(os.path.join(d.dir, "state"), ignore_errors=True)


# --test ----------------------------------------------------------------------------------

def run_test(run):
    t_start = time.monotonic()
    checks = []

    def check(ok, what):
        checks.append((ok, what))
        log(("PASS " if ok else "FAIL ") + what)

    run.preflight()
    daemons, weight_qps = start_skewed_fleet(run)
    proxy = HAProxy(run, "haproxy", daemons, agent=True)
    proxy.start()
    log(f"haproxy ({run.haproxy_version}) on 127.0.0.1:{proxy.port}")
    for d in daemons:
        proxy.wait_up(d.name, 15)
    # (a) The weights follow the agents: a few agent intervals, until c is below both.
    t0 = time.monotonic()
    weights = proxy.weights()
    while time.monotonic() - t0 < 10 and not (weights["c"] < min(weights["a"], weights["b"])):
        time.sleep(CHECK_INTER_MS / 1000)
        weights = proxy.weights()
    agents = {d.name: agent_line(d.agent_port) for d in daemons}
    log(f"agents say {agents}; HAProxy's weights {weights}")
    check(weights["c"] < min(weights["a"], weights["b"]),
          f"(a) c's HAProxy weight {weights['c']} is below a's {weights['a']} and "
          f"b's {weights['b']}")

    # (b) A modest load: a fifth of the 2-worker capacity. The three instances share this
    # host's cores, so the fleet's real capacity is about one 2-worker instance's, not
    # the sum of the three models (which count the same cores up to three times).
    qps = min(120.0, max(10.0, round(0.2 * weight_qps, 1)))
    before = {d.name: answered(d.stats()) for d in daemons}
    proc, out = run.start_load(proxy.port, "modest", ["--qps", str(qps), "--duration", "12"])
    result = run.finish_load(proc, out, "modest", 60)
    after = {d.name: answered(d.stats()) for d in daemons}
    served = {n: after[n] - before[n] for n in after}
    rejected, errors, _ = failures(result)
    log(f"modest load {qps} q/s through HAProxy: answered per instance {served}; "
        f"client rejected {rejected}, errors {errors}; weights now {proxy.weights()}")
    check(served["a"] > 0 and served["b"] > 0 and served["c"] > 0,
          f"(b) every instance served some of the load: {served}")
    ratio = served["c"] / max(1, min(served["a"], served["b"]))
    check(ratio < 0.8,
          f"(b) c answered {served['c']}, under 0.8 x min(a {served['a']}, b {served['b']}) "
          f"(ratio {ratio:.2f}; round robin would give about 1)")

    # (c) Rolling restart under load: the load outlasts the three restarts.
    # Low enough that admission never refuses while a restarting instance loads its
    # models (about a core for a few seconds) beside the two that serve.
    restart_qps = min(30.0, max(5.0, round(0.08 * weight_qps, 1)))
    proc, out = run.start_load(proxy.port, "restart",
                               ["--qps", str(restart_qps), "--duration", "45", "--warmup", "0"])
    time.sleep(2)
    steps = run.rolling_restart(daemons, proxy, proc)
    result = run.finish_load(proc, out, "restart", 90)
    rejected, errors, detail = failures(result)
    summary = retried(proxy)
    log(f"rolling restart under {restart_qps} q/s: client sent {result['all']['sent']}, ok "
        f"{result['all']['ok']}, rejected {rejected}, errors {errors} {result.get('errors')}; "
        f"per model {detail}")
    log(f"haproxy request log: {summary['requests']} requests, {summary['retried']} retried, "
        f"{summary['status_5xx_or_none']} answered 5xx or not at all")
    check(rejected + errors == 0 and result["all"]["ok"] > 0,
          f"(c) rolling restart of a, b, c under load: rejected {rejected} + errors {errors} "
          f"== 0 at the client ({result['all']['ok']} answered)")
    failed = [w for ok, w in checks if not ok]
    log(f"{len(checks) - len(failed)}/{len(checks)} checks passed in "
        f"{time.monotonic() - t_start:.0f} s")
    if failed:
        for d in daemons:
            print(f"--- recschedd {d.name} log (tail)\n{tail(d.log_path)}")
        for l in summary["bad_examples"] + summary["retried_examples"]:
            print(f"--- haproxy: {l}")
        return 1
    return 0


# --measure -------------------------------------------------------------------------------

def find_max(run, proxy, name, daemons):
    """recsched-load --find-max-qps through `proxy`; its JSON, with each instance's share
    of the answers over the search."""
    before = {d.name: answered(d.stats()) for d in daemons}
    t0 = time.monotonic()
    proc, out = run.start_load(proxy.port, name,
                               ["--find-max-qps", "--start-qps", "30", "--growth", "1.5",
                                "--tolerance", "0.1", "--step-duration", "5",
                                "--step-warmup", "1"])
    result = run.finish_load(proc, out, name, 400)
    after = {d.name: answered(d.stats()) for d in daemons}
    served = {n: after[n] - before[n] for n in after}
    total = max(1, sum(served.values()))
    result["_share"] = {n: round(v / total, 3) for n, v in served.items()}
    result["_seconds"] = round(time.monotonic() - t0, 1)
    result["_weights_after"] = proxy.weights()
    return result


def max_qps(result):
    for key in ("max_qps", "best_qps", "highest_passing_qps"):
        if key in result:
            return result[key]
    return None


def run_measure(run, out_path):
    t_start = time.monotonic()
    run.preflight()
    daemons, weight_qps = start_skewed_fleet(run)
    rr = HAProxy(run, "roundrobin", daemons, agent=False)
    ag = HAProxy(run, "agent", daemons, agent=True)
    for p in (rr, ag):
        p.start()
        for d in daemons:
            p.wait_up(d.name, 15)
    time.sleep(2)
    weights_idle = ag.weights()
    log(f"idle weights: round robin {rr.weights()}, agent {weights_idle}")
    searches = []
    for i, proxy in enumerate((rr, ag, rr, ag)):
        name = f"{proxy.name}-{i // 2 + 1}"
        r = find_max(run, proxy, name, daemons)
        fail_why = [st.get("why", "") for st in r.get("steps", [])
                    if not st.get("pass") and st.get("qps") == r.get("lowest_fail_qps")]
        searches.append({"balancer": proxy.name, "run": i // 2 + 1, "max_qps": max_qps(r),
                         "lowest_fail_qps": r.get("lowest_fail_qps"),
                         "lowest_fail_why": fail_why[0] if fail_why else "",
                         "share": r["_share"], "seconds": r["_seconds"],
                         "weights_after": r["_weights_after"], "load": r})
        log(f"{name}: max {max_qps(r)} q/s meeting every target (lowest failing "
            f"{r.get('lowest_fail_qps')}: {searches[-1]['lowest_fail_why']}); answers a/b/c "
            f"{r['_share']}; weights after {r['_weights_after']}; {r['_seconds']} s")
    agent_best = min(s["max_qps"] or 0 for s in searches if s["balancer"] == "agent")
    restart_qps = max(5.0, round(0.25 * agent_best, 1))
    proc, out = run.start_load(ag.port, "restart",
                               ["--qps", str(restart_qps), "--duration", "60", "--warmup", "0"])
    time.sleep(3)
    steps = run.rolling_restart(daemons, ag, proc)
    result = run.finish_load(proc, out, "restart", 120)
    rejected, errors, detail = failures(result)
    report = {
        "host": {"cores": os.cpu_count(), "haproxy": run.haproxy_version},
        "fleet": {"layout": run.layout,
                  "a": "1 worker on cpu0" if run.layout == "cores" else "2 workers (partition numa)",
                  "b": "1 worker on cpu1" if run.layout == "cores" else "2 workers (partition numa)",
                  "c": ("1 worker on cpu1 (shared with b)" if run.layout == "cores"
                        else "1 worker (partition core, cpu0)")
                       + (f", worker_nice {run.c_nice}" if run.c_nice is not None else "")
                       + (f", CPU quota {run.c_cpu}" if run.c_cpu is not None else ""),
                  "models_sla_ms": MODELS,
                  "sizes": SIZES, "agent_weight_qps": weight_qps, "drain_ms": DRAIN_MS,
                  "capacity": {d.name: d.capacity()["host"] for d in daemons}},
        "haproxy_config": open(ag.cfg_path).read(),
        "idle_weights": weights_idle,
        "searches": searches,
        "rolling_restart": {"qps": restart_qps, "steps": steps,
                            "sent": result["all"]["sent"], "ok": result["all"]["ok"],
                            "rejected": rejected, "errors": errors,
                            "error_kinds": result.get("errors"), "per_model": detail,
                            "haproxy_log": retried(ag), "load": result},
        "seconds": round(time.monotonic() - t_start, 1),
    }
    with open(out_path, "w") as f:
        json.dump(report, f, indent=2)
    print()
    print(f"{'balancer':<12}{'run':>4}{'max q/s':>10}{'lowest fail':>13}   "
          "share of answers a / b / c")
    for s in searches:
        sh = s["share"]
        print(f"{s['balancer']:<12}{s['run']:>4}{(s['max_qps'] or 0):>10.1f}"
              f"{(s['lowest_fail_qps'] or 0):>13.1f}   "
              f"{sh['a']:.2f} / {sh['b']:.2f} / {sh['c']:.2f}")
    print(f"rolling restart at {restart_qps} q/s through the agent-weighted HAProxy: sent "
          f"{result['all']['sent']}, ok {result['all']['ok']}, rejected {rejected}, "
          f"errors {errors}")
    print(f"({report['seconds']:.0f} s; every number in {out_path})")
    return 0


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--test", action="store_true", help="the ctest entry")
    mode.add_argument("--measure", action="store_true", help="the measurement for docs")
    ap.add_argument("--out", help="--measure: where the JSON goes")
    ap.add_argument("--build", default=os.path.join(os.path.dirname(os.path.dirname(here)), "build"),
                    help="the build tree (default: the repository's build/)")
    ap.add_argument("--source", default=os.path.dirname(os.path.dirname(here)),
                    help="the repository (for models/)")
    ap.add_argument("--keep", action="store_true", help="keep the run directory")
    ap.add_argument("--layout", choices=["workers", "cores"], default="workers",
                    help="workers (default): a and b 2 workers on both cores, c 1 worker; "
                         "cores: a alone on cpu0, b and c sharing cpu1 (1 worker each)")
    ap.add_argument("--c-cpu", type=float, default=None,
                    help="--measure: c in a cgroup (v1 cpu controller) with a quota of this "
                         "many CPUs (0.3: 30 ms per 100 ms), a smaller host emulated")
    ap.add_argument("--c-nice", type=int, default=None,
                    help="--measure: c's limits.worker_nice (19 emulates a slower host: on "
                         "shared cores its one worker gets little CPU under contention)")
    ap.add_argument("--no-retry", action="store_true",
                    help="HAProxy with `retries 0` (shows whether the drain alone suffices)")
    args = ap.parse_args()
    if args.measure and not args.out:
        ap.error("--measure needs --out FILE.json")

    # SIGTERM (ctest's timeout, a supervisor) unwinds like Ctrl-C: the finally clauses
    # kill what was started and remove the run directory.
    def on_term(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    try:
        with Run(args) as run:
            return run_test(run) if args.test else run_measure(run, os.path.abspath(args.out))
    except Skip as e:
        print(f"{SKIP_MARKER}{e}", flush=True)
        return SKIP
    except Failed as e:
        print(f"FAIL {e}", flush=True)
        return 1
    except FileNotFoundError as e:
        print(f"haproxy_fleet: {e}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("haproxy_fleet: interrupted; everything it started is stopped", flush=True)
        return 130
    except Exception:  # a bug here, or a daemon or HAProxy answering what it should not
        print("FAIL unexpected error:\n" + traceback.format_exc(), flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
