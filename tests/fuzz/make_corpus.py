#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz harness into tests/fuzz/corpus/<harness>/.

The seeds are small real examples: requests for the harnesses' fixed specs
(tests/fuzz/fuzz_common.h), the golden fixtures' specs and safetensors headers, the
daemon's example config, policy bodies as the API docs give them, and HTTP requests as
clients send them. Deterministic: rerunning it rewrites the same files. The fuzzers add
what they find to a working copy (scripts/fuzz.sh), never to these directories.
"""
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
GOLDEN = os.path.join(ROOT, "tests", "fixtures", "golden")
OUT = os.path.join(HERE, "corpus")


def write(harness, name, data):
    d = os.path.join(OUT, harness)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def dumps(obj):
    return json.dumps(obj, separators=(", ", ": "))


# --- KServe v2 requests for the fixed specs: dlrm "tiny" (D=3, T=2: rows 10, 20) and
# --- ncf "ncf4" (D=0, T=4: rows 5..8).
DLRM = {
    "dense": [0.5, 1, 2, 3, 4.25, -5],
    "lengths": [1, 2, 0, 3],
    "indices": [9, 0, 1, 19, 0, 5],
    "n": 2, "d": 3, "t": 2,
}
NCF = {"dense": None, "lengths": [1, 1, 1, 2, 1, 1, 0, 1], "indices": [0, 4, 5, 0, 1, 6, 7],
       "n": 2, "d": 0, "t": 4}


def inputs(m, nested=False):
    out = []
    if m["dense"] is not None:
        data = m["dense"]
        if nested:
            data = [data[i * m["d"]:(i + 1) * m["d"]] for i in range(m["n"])]
        out.append({"name": "dense", "datatype": "FP32", "shape": [m["n"], m["d"]], "data": data})
    lengths = m["lengths"]
    if nested:
        lengths = [lengths[i * m["n"]:(i + 1) * m["n"]] for i in range(m["t"])]
    out.append({"name": "sparse_lengths", "datatype": "INT32", "shape": [m["t"], m["n"]],
                "data": lengths})
    out.append({"name": "sparse_indices", "datatype": "INT64", "shape": [len(m["indices"])],
                "data": m["indices"]})
    return out


def kserve_json():
    h = "fuzz_kserve_json"
    write(h, "dlrm_flat.json", dumps({"id": "q7", "parameters": {"sla_ms": 25, "priority": 1},
                                      "inputs": inputs(DLRM), "outputs": [{"name": "scores"}]}))
    write(h, "dlrm_nested.json", dumps({"inputs": inputs(DLRM, nested=True)}))
    write(h, "dlrm_binary_out.json",
          dumps({"id": "b", "parameters": {"binary_data_output": True}, "inputs": inputs(DLRM),
                 "outputs": [{"name": "scores", "parameters": {"binary_data": False}}]}))
    write(h, "ncf.json", dumps({"id": "n1", "inputs": inputs(NCF)}))
    write(h, "ncf_nested.json", dumps({"inputs": inputs(NCF, nested=True),
                                       "parameters": {"priority": -3}}))
    # Refused ones, each for one reason: an id out of its table, a negative length, lengths
    # not adding up, a wrong datatype; and an input in shared memory (the harness serves a
    # region "r" of fixed bytes: then read, or refused where the bytes do not fit).
    bad = inputs(DLRM)
    bad[2]["data"] = [10, 0, 1, 19, 0, 5]
    write(h, "bad_id.json", dumps({"inputs": bad}))
    bad = inputs(DLRM)
    bad[1]["data"] = [1, 2, -1, 4]
    write(h, "bad_length.json", dumps({"inputs": bad}))
    bad = inputs(DLRM)
    bad[0]["datatype"] = "FP64"
    write(h, "bad_datatype.json", dumps({"inputs": bad}))
    bad = inputs(DLRM)
    bad[0].pop("data")
    bad[0]["parameters"] = {"shared_memory_region": "r", "shared_memory_byte_size": 24}
    write(h, "bad_shm.json", dumps({"inputs": bad}))
    shm = inputs(DLRM)
    shm[2].pop("data")
    shm[2]["parameters"] = {"shared_memory_region": "r", "shared_memory_byte_size": 48,
                            "shared_memory_offset": 64}
    write(h, "shm_ids.json", dumps({"inputs": shm}))


def tensor_bytes(datatype, values):
    fmt = {"FP32": "<f", "INT32": "<i", "INT64": "<q"}[datatype]
    return b"".join(struct.pack(fmt, v) for v in values)


def binary_body(m, binary_names, extra=None):
    ins = inputs(m)
    data = b""
    for i in ins:
        if i["name"] in binary_names:
            raw = tensor_bytes(i["datatype"], i.pop("data"))
            i["parameters"] = {"binary_data_size": len(raw)}
            data += raw
    req = {"inputs": ins}
    if extra:
        req.update(extra)
    header = dumps(req).encode()
    return header, data


def kserve_binary():
    h = "fuzz_kserve_binary"

    def seed(name, header, data, header_length=None):
        hl = len(header) if header_length is None else header_length
        write(h, name, struct.pack("<I", hl) + header + data)

    all3 = {"dense", "sparse_lengths", "sparse_indices"}
    header, data = binary_body(DLRM, all3, {"id": "bin", "outputs": [
        {"name": "scores", "parameters": {"binary_data": True}}]})
    seed("dlrm_all_binary", header, data)
    header, data = binary_body(DLRM, {"sparse_indices"})
    seed("dlrm_indices_binary", header, data)
    header, data = binary_body(NCF, all3)
    seed("ncf_binary", header, data)
    # JSON only, with and without the header-length header.
    header, data = binary_body(DLRM, set())
    seed("dlrm_json_with_length", header, data)
    write(h, "dlrm_json_no_length", struct.pack("<I", 0xFFFFFFFF) + header)
    # Truncated and trailing bytes.
    header, data = binary_body(DLRM, all3)
    seed("truncated", header, data[:-3])
    seed("trailing", header, data + b"\0\0\0\0")


def model_spec():
    h = "fuzz_model_spec"
    for f in sorted(os.listdir(GOLDEN)):
        if f.endswith(".model.json"):
            with open(os.path.join(GOLDEN, f), "rb") as src:
                write(h, f, src.read())
    models = os.path.join(ROOT, "models")
    for f in sorted(os.listdir(models)):
        if f.endswith(".json") and f != "din.json":  # din's 252 tables: 2.5 KB of numbers
            with open(os.path.join(models, f), "rb") as src:
                write(h, "zoo_" + f, src.read())


def safetensors():
    h = "fuzz_safetensors"
    for f in sorted(os.listdir(GOLDEN)):
        if f.endswith(".safetensors"):
            with open(os.path.join(GOLDEN, f), "rb") as src:
                raw = src.read()
            n = struct.unpack("<Q", raw[:8])[0]
            header = raw[8:8 + n]
            if len(header) <= 4096:
                write(h, f.replace(".safetensors", ".header.json"), header)
    write(h, "metadata.json", dumps({"__metadata__": {"format": "pt"},
                                     "w": {"dtype": "F16", "shape": [2, 3],
                                           "data_offsets": [0, 12]},
                                     "b": {"dtype": "I64", "shape": [], "data_offsets": [12, 20]}}))
    write(h, "empty_shape.json", dumps({"z": {"dtype": "F32", "shape": [0, 7],
                                              "data_offsets": [0, 0]}}))


def config():
    h = "fuzz_config"
    with open(os.path.join(ROOT, "systemd", "recschedd.json")) as src:
        full = json.load(src)
    full["models"] = [{"spec": "tiny.json", "weights": "", "sla_ms": 100, "sla_percentile": 95},
                      {"spec": "ncf4.json", "weights": "", "sla_ms": 5, "sla_percentile": 99}]
    write(h, "full.json", json.dumps(full, indent=2))
    write(h, "minimal.json", dumps({"models": ["tiny.json"]}))
    write(h, "policy.json", dumps({
        "models": ["tiny.json", {"spec": "ncf4.json", "sla_ms": 7}],
        "listen": {"socket": "", "tcp": "[::1]:0"},
        "policy": {"name": "deeprecsched", "params": {"threshold": 64, "window": 100}},
        "partition": "core", "profile": {"quick": True}, "token": "abc-._~+/="}))
    write(h, "limits.json", dumps({
        "models": ["tiny.json"], "gpus": False,
        "limits": {"max_body_bytes": 1024, "max_connections": 1, "max_items": 1,
                   "reject_factor": 1000, "window": 1, "placement_log": 0},
        "power": {"cpu_active_w_per_core": 0, "cpu_idle_w_per_core": 0}}))


def policy_body():
    h = "fuzz_policy_body"
    write(h, "static.json", dumps({"name": "static", "params": {"device": "cpu0"}}))
    write(h, "deeprecsched.json", dumps({"name": "deeprecsched", "params": {
        "threshold": 128, "window": 64, "tune": True, "candidates": [16, 32, 64, 128]}}))
    write(h, "deeprecsched_models.json", dumps({"name": "deeprecsched", "params": {
        "models": {"ncf": {"sub_batch": 512, "threshold": 256},
                   "dien": {"sub_batch": 32, "threshold": "never"}}}}))
    write(h, "earliest_finish.json", dumps({"name": "earliest-finish",
                                            "params": {"margin": 0.2}}))
    write(h, "min_energy.json", dumps({"name": "min-energy",
                                       "params": {"margin": 0.25, "park": False}}))
    write(h, "no_name.json", dumps({"params": {"margin": 0.1}}))
    write(h, "unknown.json", dumps({"name": "fastest", "params": {}}))


def http_request():
    h = "fuzz_http_request"
    infer = dumps({"inputs": inputs(DLRM)})
    # The first byte sets how many bytes each read hands the parser (byte + 1).
    reqs = {
        "get_ready": b"\x07GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n",
        "post_infer": (b"\xffPOST /v2/models/tiny/infer HTTP/1.1\r\nHost: localhost\r\n"
                       b"Content-Type: application/json\r\nContent-Length: "
                       + str(len(infer)).encode() + b"\r\n\r\n" + infer.encode()),
        "put_policy_chunked": (b"\x03PUT /v1/policy HTTP/1.1\r\nHost: x\r\n"
                               b"Authorization: Bearer abc\r\nTransfer-Encoding: chunked\r\n\r\n"
                               b"10\r\n{\"name\": \"static\r\n2\r\n\"}\r\n0\r\n\r\n"),
        "pipelined": (b"\x20GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /v1/placements?limit=5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        "http10": b"\x00GET /v1/stats HTTP/1.0\r\n\r\n",
        "binary_infer": (b"\x40POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\n"
                         b"Inference-Header-Content-Length: 2\r\nContent-Length: 6\r\n\r\n{}\x00\x01\x02\x03"),
    }
    for name, data in reqs.items():
        write(h, name, data)


def main():
    kserve_json()
    kserve_binary()
    model_spec()
    safetensors()
    config()
    policy_body()
    http_request()
    return 0


if __name__ == "__main__":
    sys.exit(main())
