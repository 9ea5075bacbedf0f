#!/usr/bin/env python3
"""Validates recsched's Kubernetes manifests with no cluster and no network.

    deploy/kubernetes/validate.py [FILE...]
    deploy/kubernetes/validate.py --expect-fail FILE

Every YAML document (every *.yaml / *.yml under deploy/kubernetes/, schemas/ aside, or the
FILEs given) is checked against the Kubernetes JSON schema vendored for its apiVersion and
kind in schemas/ (README.md there names their source); a kind with no vendored schema is
an error. Then what a schema cannot say:
  - config: a ConfigMap's recschedd.json is JSON, has only keys recschedd knows (the key
    set and value types of systemd/recschedd.json, plus the fleet keys below), names model
    specs the image has, and agrees with the DaemonSet that mounts it (the TCP and agent
    ports are container ports, state_dir and the NFD feature file lie on hostPath mounts);
  - qos: every container of a DaemonSet (init containers too) requests a whole number of
    CPUs and memory equal to its limits (Guaranteed QoS, exclusive cores under the
    kubelet's static CPU manager);
  - probes: startup, readiness (/v2/health/ready) and liveness (/v2/health/live) probes,
    and a termination grace period longer than fleet.drain_ms;
  - refs: each DaemonSet's ConfigMap exists, and each Service selects the DaemonSets' pods
    on ports they have.
Each error names the file, the document (1-based) and the JSON path.

--expect-fail FILE: FILE is a deliberately broken manifest; passes only if validation
finds errors, and every "# expect: TEXT" line in FILE matches some error's text.

Exit 0 pass, 1 fail, 77 (skipped, after a "recsched-test-skipped: REASON" line) when
python3-yaml or python3-jsonschema is missing (apt-get install python3-yaml
python3-jsonschema; scripts/install-deps.sh installs both).
"""
import json
import os
import re
import sys

try:
    import yaml
    import jsonschema
except ImportError as e:
    print(f"recsched-test-skipped: {e.name or e} is not installed "
          "(Debian: apt-get install python3-yaml python3-jsonschema)")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SCHEMA_DIR = os.path.join(HERE, "schemas")
BASE_CONFIG = os.path.join(ROOT, "systemd", "recschedd.json")

# (apiVersion, kind) -> vendored schema. A kind not listed here is an error.
SCHEMAS = {
    ("v1", "Namespace"): "namespace-v1.json",
    ("v1", "ConfigMap"): "configmap-v1.json",
    ("v1", "Service"): "service-v1.json",
    ("apps/v1", "DaemonSet"): "daemonset-apps-v1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
}

# The fleet section (issue #19) as far as the manifests use it, allowed even where
# systemd/recschedd.json does not have it yet: key -> JSON type.
FLEET_KEYS = {"agent_check": "string", "drain_ms": "number", "nfd_feature_file": "string"}

CONFIG_KEY = "recschedd.json"
CONFIG_PATH = "/etc/recsched/recschedd.json"
MODELS_IN_IMAGE = "/usr/share/recsched/models/"


class Report:
    def __init__(self):
        self.errors = []

    def add(self, where, path, message):
        self.errors.append(f"{where}: {path}: {message}")


def json_path(parts, root="$"):
    out = root
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def json_type(v):
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "null"


def load_documents(path, report):
    """[(where, doc)] for each non-empty YAML document of path."""
    rel = os.path.relpath(path, ROOT)
    try:
        with open(path, encoding="utf-8") as f:
            docs = list(yaml.safe_load_all(f))
    except (OSError, yaml.YAMLError) as e:
        report.add(rel, "$", f"cannot read YAML: {e}")
        return []
    out = []
    for i, doc in enumerate(docs, 1):
        if doc is None:
            continue
        where = f"{rel}: document {i}"
        if isinstance(doc, dict):
            name = (doc.get("metadata") or {}).get("name", "?")
            where += f" ({doc.get('kind', '?')}/{name})"
        out.append((where, doc))
    return out


def check_schema(where, doc, report, cache):
    """True if the document has a vendored schema (whether or not it passed)."""
    if not isinstance(doc, dict):
        report.add(where, "$", "a manifest must be a mapping")
        return False
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key not in SCHEMAS:
        known = ", ".join(f"{k} {a}" for a, k in sorted(SCHEMAS))
        report.add(where, "$", f"no vendored schema for apiVersion {key[0]!r} kind "
                   f"{key[1]!r} (deploy/kubernetes/schemas/ has: {known})")
        return False
    if key not in cache:
        with open(os.path.join(SCHEMA_DIR, SCHEMAS[key]), encoding="utf-8") as f:
            cache[key] = jsonschema.Draft7Validator(json.load(f))
    for err in sorted(cache[key].iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path]):
        report.add(where, json_path(err.absolute_path), err.message)
    return True


def base_config():
    with open(BASE_CONFIG, encoding="utf-8") as f:
        return json.load(f)


def check_keys(value, base, path, where, report, root):
    """Every key of value is a key of base with the same JSON type; recurses into objects
    and into arrays of objects (against the union of base's elements' keys)."""
    if isinstance(value, dict) and isinstance(base, dict):
        for k, v in value.items():
            if k not in base:
                report.add(where, json_path(path + [k], root),
                           f"recschedd does not know this config key (known here: "
                           f"{', '.join(sorted(base))})")
                continue
            b = base[k]
            if json_type(v) != json_type(b):
                report.add(where, json_path(path + [k], root),
                           f"is {json_type(v)}, recschedd expects {json_type(b)}")
                continue
            if path == ["policy"] and k == "params":
                continue  # each policy's own arguments, checked by the policy
            check_keys(v, b, path + [k], where, report, root)
    elif isinstance(value, list) and isinstance(base, list):
        example = {}
        for b in base:
            if isinstance(b, dict):
                example.update(b)
        if not example:
            return  # base gives no element to compare with (e.g. "devices": [])
        for i, v in enumerate(value):
            if json_type(v) != "object":
                report.add(where, json_path(path + [i], root), f"is {json_type(v)}, expected object")
            else:
                check_keys(v, example, path + [i], where, report, root)


def port_of(hostport):
    m = re.fullmatch(r"(.*):(\d+)", hostport if isinstance(hostport, str) else "")
    return int(m.group(2)) if m else None


def check_config(where, text, report):
    """The config's JSON, or None. Path prefix: $.data["recschedd.json"]."""
    at = f'$.data["{CONFIG_KEY}"]'
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        report.add(where, at, f"is not JSON: {e}")
        return None
    if not isinstance(config, dict):
        report.add(where, at, "is not a JSON object")
        return None
    base = base_config()
    fleet = dict(base.get("fleet", {}))
    defaults = {"string": "", "number": 0}
    for k, t in FLEET_KEYS.items():
        fleet.setdefault(k, defaults[t])
    base["fleet"] = fleet
    check_keys(config, base, [], where, report, at)
    for i, m in enumerate(config.get("models", [])):
        spec = m.get("spec", "") if isinstance(m, dict) else ""
        name = os.path.basename(spec)
        if not spec.startswith(MODELS_IN_IMAGE) or \
                not os.path.isfile(os.path.join(ROOT, "models", name)):
            report.add(where, f"{at}.models[{i}].spec",
                       f"{spec!r} is not a spec the image has ({MODELS_IN_IMAGE}NAME.json, "
                       f"one of models/*.json)")
    return config


def quantity(q):
    """A Kubernetes resource quantity as a float, or None."""
    m = re.fullmatch(r"([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?", str(q))
    if not m:
        return None
    scale = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}[m.group(2)]
    return float(m.group(1)) * scale


def check_daemonset(where, ds, configs, report):
    spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    base = "$.spec.template.spec"
    groups = [("initContainers", spec.get("initContainers") or []),
              ("containers", spec.get("containers") or [])]
    for field, containers in groups:
        for i, c in enumerate(containers):
            at = f"{base}.{field}[{i}].resources"
            res = c.get("resources") or {}
            req, lim = res.get("requests") or {}, res.get("limits") or {}
            for r in ("cpu", "memory"):
                if r not in req or r not in lim:
                    report.add(where, at, f"{r} needs both a request and a limit "
                               "(Guaranteed QoS)")
                elif quantity(req[r]) is None or quantity(req[r]) != quantity(lim[r]):
                    report.add(where, f"{at}.requests.{r}",
                               f"{req[r]!r} is not equal to the limit {lim[r]!r} "
                               "(Guaranteed QoS)")
            cpu = quantity(req.get("cpu"))
            if cpu is not None and cpu != int(cpu):
                report.add(where, f"{at}.requests.cpu", f"{req['cpu']!r} is not a whole "
                           "number of CPUs (the static CPU manager gives exclusive cores "
                           "only to those)")
    main = (spec.get("containers") or [{}])[0]
    at = f"{base}.containers[0]"
    for probe, path in (("startupProbe", "/v2/health/live"),
                        ("readinessProbe", "/v2/health/ready"),
                        ("livenessProbe", "/v2/health/live")):
        got = ((main.get(probe) or {}).get("httpGet") or {}).get("path")
        if got != path:
            report.add(where, f"{at}.{probe}", f"needs httpGet {path}, has {got!r}")
    ports = {p.get("name"): p.get("containerPort") for p in main.get("ports") or []}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        port = ((main.get(probe) or {}).get("httpGet") or {}).get("port")
        if port is not None and port not in ports and port not in ports.values():
            report.add(where, f"{at}.{probe}.httpGet.port", f"{port!r} is not a container port")
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    mounts = {m.get("mountPath"): volumes.get(m.get("name"), {})
              for m in main.get("volumeMounts") or []}
    config = None
    for path, vol in mounts.items():
        if "configMap" in vol and CONFIG_PATH.startswith(path.rstrip("/") + "/"):
            name = vol["configMap"].get("name")
            if name not in configs:
                report.add(where, f"{base}.volumes", f"ConfigMap {name!r} is not among the "
                           "manifests validated")
            else:
                config = configs[name]
    if config is None:
        if not any("configMap" in v for v in mounts.values()):
            report.add(where, f"{at}.volumeMounts", f"no ConfigMap mounted over {CONFIG_PATH}")
        return
    listen = config.get("listen") or {}
    fleet = config.get("fleet") or {}
    for what, hostport, name in (("listen.tcp", listen.get("tcp"), "http"),
                                 ("fleet.agent_check", fleet.get("agent_check"), "agent")):
        if not hostport:
            continue
        if not hostport.startswith(("0.0.0.0:", "[::]:")):
            report.add(where, f"{at}.ports", f"the config's {what} {hostport!r} is not "
                       "reachable from outside the pod (listen on 0.0.0.0)")
        if ports.get(name) != port_of(hostport):
            report.add(where, f"{at}.ports", f"container port {name!r} is "
                       f"{ports.get(name)!r}, the config's {what} is {hostport!r}")
    if listen.get("socket"):
        report.add(where, at, f"the config's listen.socket {listen['socket']!r} is not "
                   "empty: nothing in the pod uses a unix socket")

    def on_host_path(path):
        return any("hostPath" in vol and path.startswith(p.rstrip("/") + "/")
                   for p, vol in mounts.items() if p) or \
            ("hostPath" in mounts.get(path, {}))
    if not on_host_path(config.get("state_dir", "")):
        report.add(where, f"{at}.volumeMounts", f"state_dir {config.get('state_dir')!r} is "
                   "not a hostPath mount: profiles would not survive a restart")
    nfd = fleet.get("nfd_feature_file")
    if nfd and not on_host_path(nfd):
        report.add(where, f"{at}.volumeMounts", f"fleet.nfd_feature_file {nfd!r} is not on "
                   "a hostPath mount: NFD on the node would never see it")
    grace = spec.get("terminationGracePeriodSeconds", 30)
    drain = fleet.get("drain_ms")
    drain_s = drain / 1000 if isinstance(drain, (int, float)) else 0
    if grace <= drain_s:
        report.add(where, f"{base}.terminationGracePeriodSeconds", f"{grace} s is not longer "
                   f"than fleet.drain_ms ({drain_s:g} s): the kubelet would kill the drain")


def check_services(docs, report):
    pods = [(d.get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {},
             {p.get("name"): p.get("containerPort")
              for c in d.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
              for p in c.get("ports") or []})
            for _, d in docs if d.get("kind") == "DaemonSet"]
    if not pods:
        return
    for where, svc in docs:
        if svc.get("kind") != "Service":
            continue
        sel = (svc.get("spec") or {}).get("selector") or {}
        chosen = [p for p in pods if sel and all(p[0].get(k) == v for k, v in sel.items())]
        if not chosen:
            report.add(where, "$.spec.selector", f"{sel} selects no DaemonSet's pods")
        for i, port in enumerate((svc.get("spec") or {}).get("ports") or []):
            target = port.get("targetPort", port.get("port"))
            for labels, ports in chosen:
                if target not in ports and target not in ports.values():
                    report.add(where, f"$.spec.ports[{i}].targetPort",
                               f"{target!r} is not a port of the pods {labels}")


def validate(paths):
    report = Report()
    docs, cache = [], {}
    for path in paths:
        for where, doc in load_documents(path, report):
            if check_schema(where, doc, report, cache):
                docs.append((where, doc))
    # The checks below run on documents that failed their schema too (so that one typo
    # does not hide the rest); a shape they cannot read is reported, not a crash.
    configs = {}
    for where, doc in docs:
        try:
            if doc.get("kind") == "ConfigMap" and CONFIG_KEY in (doc.get("data") or {}):
                config = check_config(where, doc["data"][CONFIG_KEY], report)
                if config is not None:
                    configs[doc["metadata"]["name"]] = config
        except (AttributeError, TypeError, KeyError) as e:
            report.add(where, "$", f"not checked further, unexpected shape: {e!r}")
    for where, doc in docs:
        try:
            if doc.get("kind") == "DaemonSet":
                check_daemonset(where, doc, configs, report)
        except (AttributeError, TypeError, KeyError) as e:
            report.add(where, "$", f"not checked further, unexpected shape: {e!r}")
    try:
        check_services(docs, report)
    except (AttributeError, TypeError, KeyError) as e:
        report.add("services", "$", f"not checked, unexpected shape: {e!r}")
    return report, len(docs)


def manifests():
    out = []
    for d, subdirs, files in os.walk(HERE):
        subdirs[:] = sorted(s for s in subdirs if s != "schemas" and not s.startswith("."))
        out += [os.path.join(d, f) for f in sorted(files) if f.endswith((".yaml", ".yml"))]
    return out


def main(argv):
    if len(argv) == 2 and argv[0] == "--expect-fail":
        path = argv[1]
        report, _ = validate([path])
        for e in report.errors:
            print(f"  rejected: {e}")
        with open(path, encoding="utf-8") as f:
            expected = [m.group(1).strip() for m in re.finditer(r"^# expect: (.+)$", f.read(), re.M)]
        missed = [x for x in expected if not any(x in e for e in report.errors)]
        if not report.errors:
            print(f"validate: FAIL: {path} is meant to be rejected, and passed")
            return 1
        if missed:
            for x in missed:
                print(f"validate: FAIL: {path}: no error says {x!r}")
            return 1
        print(f"validate: OK: {path} rejected with {len(report.errors)} error(s), "
              f"all {len(expected)} expected ones among them")
        return 0
    if any(a.startswith("-") for a in argv):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    paths = argv or manifests()
    report, n = validate(paths)
    for e in report.errors:
        print(e)
    if report.errors:
        print(f"validate: FAIL: {len(report.errors)} error(s) in {len(paths)} file(s)")
        return 1
    print(f"validate: OK: {n} document(s) in {len(paths)} file(s) "
          f"({', '.join(os.path.relpath(p, ROOT) for p in paths)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
