"""Generate the golden model test fixtures used by the C++ engine's tests.

Cases: five DLRMs (dot, cat, notables, multiout, wide; scripts/reference/dlrm_ref.py)
and one per other model type (ncf, wnd, mtwnd, din, dien; scripts/reference/zoo_ref.py,
whose docstring states their equations and tensor names).  For every case this
writes, into tests/fixtures/golden/ (or --out DIR):

    <case>.model.json     model spec ("name": "golden_<case>", "type": the model type)
    <case>.safetensors    float32 weights under the reference modules' state_dict names
                          (DLRM: emb_l.{t}.weight, bot_l.{k}.weight/bias, top_l.{k}.weight/bias)
    <case>.inputs.json    engine input: {"dense", "sparse_lengths", "sparse_indices"}
    <case>.expected.json  {"scores": [[K floats] * B]} from the PyTorch reference (float32)

plus README.md.  Output is deterministic (fixed seeds, float32 throughout).
Before finishing, every case is re-scored from the files on disk and compared
exactly with expected.json, and cross-checked against an independent float64
numpy implementation of the forward pass (relative error <= 1e-5; 1e-4 for dien).

Usage:
    /usr/bin/python3 scripts/reference/make_golden.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlrm_ref  # noqa: E402
import zoo_ref  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO_ROOT, "tests", "fixtures", "golden")
MAX_FILE_BYTES = 200 * 1024
REL_TOL = 1e-5

# name -> (spec fields, batch size, seed)
CASES: dict[str, tuple[dict, int, int]] = {
    "dot": (dict(dense_features=5, bottom_mlp=[8, 4], top_mlp=[6, 1], embedding_dim=4,
                 tables=[23, 7, 50, 1], interaction="dot"), 9, 101),
    "cat": (dict(dense_features=3, bottom_mlp=[16, 8], top_mlp=[12, 5, 1], embedding_dim=8,
                 tables=[100, 3, 17], interaction="cat"), 7, 102),
    "notables": (dict(dense_features=4, bottom_mlp=[4], top_mlp=[3, 1], embedding_dim=4,
                      tables=[], interaction="dot"), 3, 103),
    "multiout": (dict(dense_features=6, bottom_mlp=[8], top_mlp=[10, 2], embedding_dim=8,
                      tables=[40, 40], interaction="cat"), 5, 104),
    # row_scale 0.125 keeps the weights file under 200 KB (10910 rows * 16 dims would be
    # ~700 KB) and exercises round-half-away-from-zero: 500 -> 62.5 -> 63,
    # 100 -> 12.5 -> 13, 60 -> 7.5 -> 8, 250 -> 31.25 -> 31.
    "wide": (dict(dense_features=13, bottom_mlp=[64, 32, 16], top_mlp=[64, 32, 1],
                  embedding_dim=16, tables=[1000, 2000, 500, 3000, 250, 4000, 100, 60],
                  row_scale=0.125, interaction="dot"), 33, 105),
}

# Cases of the other model types (zoo_ref): name -> (spec fields, batch size, seed, weight
# scales).  Every spec gets "dense_features" (0 where the type has no dense input) and
# "lookups_per_table": 2.  emb_std is the std of the embedding rows, gain multiplies the
# std of every other weight matrix (see make_zoo_weights).  Scales (and mtwnd's seed,
# where with seed 108 one head was nearly constant over the 5 items) were picked so that
# every output column spans >= 0.1 over the batch and stays within (0.005, 0.995).
ZOO_CASES: dict[str, tuple[dict, int, int, dict]] = {
    "ncf": (dict(type="ncf", dense_features=0, embedding_dim=8, tables=[30, 40, 20, 25],
                 mlp=[16, 8, 4]), 7, 106, dict(emb_std=0.5, gain=1.5)),
    "wnd": (dict(type="wnd", dense_features=7, embedding_dim=4, tables=[50, 20, 33],
                 mlp=[16, 8, 1]), 6, 107, dict(emb_std=0.5, gain=1.5)),
    "mtwnd": (dict(type="mtwnd", dense_features=5, embedding_dim=4, tables=[20, 30, 10, 15],
                   mlp=[16, 12], task_mlp=[8, 4, 1], tasks=3), 5, 111,
              dict(emb_std=0.8, gain=1.2)),
    "din": (dict(type="din", dense_features=0, embedding_dim=8, behaviour_tables=5,
                 tables=[40, 30, 30, 30, 30, 30, 60, 25], attention_mlp=[16, 1],
                 top_mlp=[12, 6, 2]), 8, 109, dict(emb_std=0.5, gain=1.2)),
    "dien": (dict(type="dien", dense_features=0, embedding_dim=8, behaviour_tables=6,
                  gru_hidden=12, tables=[40, 30, 30, 30, 30, 30, 30, 60, 25],
                  top_mlp=[16, 8, 2]), 8, 110, dict(emb_std=0.5, gain=1.2)),
}
ZOO_REL_TOL = {"dien": 1e-4}  # float32 error accumulates over the two recurrences

README = """\
# Golden model fixtures

Small models with PyTorch-reference scores, used to check the C++ engine's numerics.
Per case: `<case>.model.json` (spec), `<case>.safetensors` (float32 weights under the
reference modules' tensor names), `<case>.inputs.json` (engine input layout) and
`<case>.expected.json` (reference scores).
Generated deterministically by `scripts/reference/make_golden.py` (do not edit by hand); regenerate with:

    /usr/bin/python3 scripts/reference/make_golden.py

| case | type | what it covers |
|------|------|----------------|
| `dot` | dlrm | dot interaction, 4 tables (one with 1 row) |
| `cat` | dlrm | cat interaction, 3-layer top MLP |
| `notables` | dlrm | no embedding tables |
| `multiout` | dlrm | 2 outputs (sigmoid each) |
| `wide` | dlrm | 13 dense, 8 tables, `row_scale` 0.125 (round half away from zero) |
| `ncf` | ncf | NeuMF: GMF product + MLP tower (ReLU on its last layer), sigmoid |
| `wnd` | wnd | Wide & Deep: dense ++ pooled embeddings -> MLP, sigmoid |
| `mtwnd` | mtwnd | shared trunk (ReLU on its last layer), 3 sigmoid task heads -> 3 outputs |
| `din` | din | 5 behaviours, shared attention MLP, softmax over 2; one item with no behaviour |
| `dien` | dien | GRU, masked attention, AUGRU over 6 steps, softmax over 2; see below |

DLRM tensor names follow facebookresearch/dlrm (`scripts/reference/dlrm_ref.py`); the other
types' equations and tensor names are in the docstring of `scripts/reference/zoo_ref.py`.
Models without dense features have `"dense_features": 0` and `"dense": []` in their inputs.
Every table of every case has at least one empty bag (DLRM bag lengths 0..6, other types 0..4).
`dien` has items whose empty (masked) steps are at the start, in the middle, at the end,
at all three, and one item with every step empty.
"""


def make_spec(case: str, fields: dict) -> dict:
    spec = {"name": f"golden_{case}", "type": "dlrm",
            "dense_features": fields["dense_features"],
            "bottom_mlp": fields["bottom_mlp"], "top_mlp": fields["top_mlp"],
            "embedding_dim": fields["embedding_dim"], "tables": fields["tables"]}
    if "row_scale" in fields:
        spec["row_scale"] = fields["row_scale"]
    spec["lookups_per_table"] = 3
    spec["interaction"] = fields["interaction"]
    dlrm_ref.validate_spec(spec)  # raises on a bad case definition
    return spec


def make_weights(model: dlrm_ref.DLRM, rng: np.random.RandomState) -> dict[str, np.ndarray]:
    """Random float32 weights: N(0, 0.3) embeddings, dlrm-like N(0, sqrt(2/(in+out))) Linear
    weights and N(0, sqrt(1/out)) biases."""
    w: dict[str, np.ndarray] = {}
    for name, p in model.named_parameters():
        shape = tuple(p.shape)
        if name.startswith("emb_l."):
            std = 0.3
        elif name.endswith(".weight"):
            out_f, in_f = shape
            std = math.sqrt(2.0 / (in_f + out_f))
        else:
            std = math.sqrt(1.0 / shape[0])
        w[name] = rng.normal(0.0, std, size=shape).astype(np.float32)
    return w


def make_inputs(rows: list[int], dense_features: int, batch: int,
                rng: np.random.RandomState) -> dict:
    """Random engine inputs.  Bag lengths are in 0..6; every table gets (in distinct bags)
    an empty bag, a bag with a repeated id, a bag containing row 0 and one containing its
    last row."""
    dense = rng.uniform(-1.0, 1.0, size=(batch, dense_features)).astype(np.float32)
    lengths: list[list[int]] = []
    indices: list[int] = []
    for r in rows:
        assert batch >= 4, "need 4 bags per table to place the required special bags"
        lens = rng.randint(0, 7, size=batch)
        bags = [list(rng.randint(0, r, size=int(n))) for n in lens]
        empty_b, rep_b, first_b, last_b = (int(b) for b in rng.permutation(batch)[:4])
        bags[empty_b] = []
        if len(bags[rep_b]) < 2:
            bags[rep_b] = list(rng.randint(0, r, size=int(rng.randint(2, 7))))
        bags[rep_b][int(rng.randint(1, len(bags[rep_b])))] = bags[rep_b][0]
        for b, row in ((first_b, 0), (last_b, r - 1)):
            if not bags[b]:
                bags[b] = list(rng.randint(0, r, size=int(rng.randint(1, 7))))
            bags[b][int(rng.randint(0, len(bags[b])))] = row
        for bag in bags:
            assert 0 <= len(bag) <= 6
        lengths.append([len(bag) for bag in bags])
        indices.extend(int(i) for bag in bags for i in bag)
    return {"dense": [[float(v) for v in row] for row in dense],
            "sparse_lengths": lengths,
            "sparse_indices": indices}


def numpy_forward(spec: dict, weights: dict[str, np.ndarray], inputs: dict) -> np.ndarray:
    """Independent float64 forward pass (no torch): explicit bag loops and interaction."""
    w = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
    dense = np.asarray(inputs["dense"], dtype=np.float64)
    batch = dense.shape[0]
    nt = len(spec["tables"])
    nb, nt_top = len(spec["bottom_mlp"]), len(spec["top_mlp"])
    pos = 0
    pooled = np.zeros((nt, batch, spec["embedding_dim"]))
    flat = inputs["sparse_indices"]
    for t in range(nt):
        table = w[f"emb_l.{t}.weight"]
        for b in range(batch):
            n = inputs["sparse_lengths"][t][b]
            for i in flat[pos:pos + n]:
                pooled[t, b] += table[i]
            pos += n
    assert pos == len(flat)
    out = []
    for b in range(batch):
        x = dense[b]
        for k in range(nb):
            x = np.maximum(w[f"bot_l.{2 * k}.weight"] @ x + w[f"bot_l.{2 * k}.bias"], 0.0)
        vecs = [x] + [pooled[t, b] for t in range(nt)]
        if spec["interaction"] == "cat":
            z = np.concatenate(vecs)
        else:
            pairs = [float(np.dot(vecs[i], vecs[j]))
                     for i in range(len(vecs)) for j in range(i)]
            z = np.concatenate([x, np.array(pairs, dtype=np.float64)])
        for k in range(nt_top):
            z = w[f"top_l.{2 * k}.weight"] @ z + w[f"top_l.{2 * k}.bias"]
            z = 1.0 / (1.0 + np.exp(-z)) if k == nt_top - 1 else np.maximum(z, 0.0)
        out.append(z)
    return np.array(out)


def torch_scores_from_files(prefix: str) -> np.ndarray:
    spec = dlrm_ref.load_spec(prefix + ".model.json")
    w = dlrm_ref.read_safetensors(prefix + ".safetensors")
    model = dlrm_ref.model_from_spec(spec, w)
    dense, offs, idxs = dlrm_ref.load_inputs(prefix + ".inputs.json", len(spec["tables"]),
                                             spec["dense_features"])
    with torch.inference_mode():
        return model(dense, offs, idxs).numpy().copy()


def write_json(path: str, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f)
        f.write("\n")


def write_and_check(out_dir: str, case: str, spec: dict, weights: dict, inputs: dict,
                    scores: np.ndarray, rescore, reference,
                    tol: float) -> tuple[np.ndarray, float]:
    """Writes a case's four files and checks them; returns the expected scores and the
    largest relative error against the numpy reference.

    Checks: (1) `rescore(prefix)` re-computes the scores from the files on disk exactly;
    (2) `reference(spec, weights, inputs)`, an independent float64 numpy forward pass,
    agrees within `tol`; (3) the files are small and the scores neither all ~0.5 nor
    all saturated.
    """
    prefix = os.path.join(out_dir, case)
    write_json(prefix + ".model.json", spec)
    dlrm_ref.write_safetensors(prefix + ".safetensors", weights)
    write_json(prefix + ".inputs.json", inputs)
    write_json(prefix + ".expected.json",
               {"scores": [[float(v) for v in row] for row in scores]})

    with open(prefix + ".expected.json", encoding="utf-8") as f:
        expected = np.array(json.load(f)["scores"], dtype=np.float64)
    again = rescore(prefix).astype(np.float64)
    if not np.array_equal(again, expected):
        raise AssertionError(f"{case}: scores re-computed from files differ from expected.json")
    with open(prefix + ".inputs.json", encoding="utf-8") as f:
        inputs_again = json.load(f)
    ref = reference(spec, dlrm_ref.read_safetensors(prefix + ".safetensors"), inputs_again)
    rel = np.abs(expected - ref) / np.maximum(np.abs(ref), 1e-30)
    if not (rel.max(initial=0.0) <= tol):
        raise AssertionError(f"{case}: torch vs numpy max relative error {rel.max():.3g}")
    for ext in (".model.json", ".safetensors", ".inputs.json", ".expected.json"):
        size = os.path.getsize(prefix + ext)
        if size > MAX_FILE_BYTES:
            raise AssertionError(f"{prefix + ext} is {size} bytes (> {MAX_FILE_BYTES})")
    if np.all(np.abs(expected - 0.5) < 1e-3):
        raise AssertionError(f"{case}: all scores are ~0.5; weights too small")
    if np.all((expected < 1e-6) | (expected > 1 - 1e-6)):
        raise AssertionError(f"{case}: all scores are saturated")
    return expected, float(rel.max(initial=0.0))


def generate_case(out_dir: str, case: str, fields: dict, batch: int, seed: int) -> str:
    torch.manual_seed(seed)
    rng = np.random.RandomState(seed)
    spec = make_spec(case, fields)
    rows = dlrm_ref.effective_rows(spec)
    shell = dlrm_ref.DLRM(spec["dense_features"], spec["bottom_mlp"], spec["top_mlp"],
                          spec["embedding_dim"], rows, spec["interaction"], device="meta")
    weights = make_weights(shell, rng)
    inputs = make_inputs(rows, spec["dense_features"], batch, rng)

    model = dlrm_ref.model_from_spec(spec, weights)
    dense, offs, idxs = dlrm_ref.inputs_from_doc(inputs, len(rows), spec["dense_features"])
    with torch.inference_mode():
        scores = model(dense, offs, idxs).numpy().copy()
    k = spec["top_mlp"][-1]
    assert scores.shape == (batch, k) and scores.dtype == np.float32

    expected, max_rel = write_and_check(out_dir, case, spec, weights, inputs, scores,
                                        torch_scores_from_files, numpy_forward, REL_TOL)
    return (f"{case:9s} B={batch:<3d} K={k} rows={rows} scores in "
            f"[{expected.min():.4f}, {expected.max():.4f}] max rel err vs numpy "
            f"{max_rel:.2e}")


# --------------------------------------------------------------------------
# Other model types (zoo_ref): ncf, wnd, mtwnd, din, dien
# --------------------------------------------------------------------------

ZOO_TYPE_KEYS = {"ncf": ("mlp",), "wnd": ("mlp",), "mtwnd": ("mlp", "task_mlp", "tasks"),
                 "din": ("behaviour_tables", "attention_mlp", "top_mlp"),
                 "dien": ("behaviour_tables", "gru_hidden", "top_mlp")}


def make_zoo_spec(case: str, fields: dict) -> dict:
    typ = fields["type"]
    spec = {"name": f"golden_{case}", "type": typ,
            "dense_features": fields["dense_features"],
            "embedding_dim": fields["embedding_dim"], "tables": fields["tables"],
            "lookups_per_table": 2}
    for key in ZOO_TYPE_KEYS[typ]:
        spec[key] = fields[key]
    zoo_ref.validate_spec(spec)  # raises on a bad case definition
    return spec


def make_zoo_weights(model: torch.nn.Module, rng: np.random.RandomState, emb_std: float,
                     gain: float) -> dict[str, np.ndarray]:
    """Random float32 weights: N(0, emb_std) embeddings, N(0, gain * sqrt(2/(in+out)))
    weight matrices (Linear, GRU and attention alike) and N(0, sqrt(1/out)) biases."""
    w: dict[str, np.ndarray] = {}
    for name, p in model.named_parameters():
        shape = tuple(p.shape)
        if name.startswith("emb_l."):
            std = emb_std
        elif len(shape) == 2:
            out_f, in_f = shape
            std = gain * math.sqrt(2.0 / (in_f + out_f))
        else:
            std = math.sqrt(1.0 / shape[0])
        w[name] = rng.normal(0.0, std, size=shape).astype(np.float32)
    return w


def _zoo_bags(rows: int, lens: list[int], rng: np.random.RandomState) -> list[list[int]]:
    """Random bags of the given lengths (0..4; which bags are empty is kept).  Three
    distinct non-empty bags get, respectively, a repeated id, row 0 and the last row."""
    bags = [[int(i) for i in rng.randint(0, rows, size=n)] for n in lens]
    nonempty = [b for b, n in enumerate(lens) if n > 0]
    assert len(nonempty) >= 3, "need 3 non-empty bags per table for the special ids"
    rep_b, first_b, last_b = (int(b) for b in rng.permutation(nonempty)[:3])
    if len(bags[rep_b]) < 2:
        bags[rep_b].append(int(rng.randint(0, rows)))
    bags[rep_b][int(rng.randint(1, len(bags[rep_b])))] = bags[rep_b][0]
    bags[first_b][int(rng.randint(0, len(bags[first_b])))] = 0
    bags[last_b][int(rng.randint(0, len(bags[last_b])))] = rows - 1
    assert all(0 <= len(bag) <= 4 for bag in bags)
    return bags


def _random_lengths(batch: int, rng: np.random.RandomState) -> list[int]:
    """Bag lengths in 0..4 with at least one empty and at least three non-empty bags."""
    lens = [int(n) for n in rng.randint(0, 5, size=batch)]
    lens[int(rng.randint(0, batch))] = 0
    empties = [b for b, n in enumerate(lens) if n == 0]
    for b in empties[1:]:
        if sum(n > 0 for n in lens) >= 3:
            break
        lens[b] = int(rng.randint(1, 5))
    return lens


def dien_step_masks(batch: int, steps: int, rng: np.random.RandomState) -> np.ndarray:
    """[batch, steps] bool, True = the step's bag is non-empty.  Items (in a random order):
    every step empty; empty at the start; empty in the middle; empty at the end; no step
    empty; empty at the start, middle and end; the rest random (each step valid w.p. 0.7)."""
    assert batch >= 6 and steps >= 6
    mid = steps // 2
    patterns = [np.zeros(steps, bool)] + [np.ones(steps, bool) for _ in range(5)]
    patterns[1][:2] = False
    patterns[2][mid - 1:mid + 1] = False
    patterns[3][-2:] = False
    patterns[5][[0, mid, steps - 1]] = False
    patterns += [rng.uniform(size=steps) < 0.7 for _ in range(batch - 6)]
    order = rng.permutation(batch)
    return np.stack([patterns[int(i)] for i in order])


def make_zoo_inputs(spec: dict, rows: list[int], batch: int,
                    rng: np.random.RandomState) -> dict:
    """Random engine inputs for a zoo model (see _zoo_bags / dien_step_masks).  Every table
    gets at least one empty bag; din also gets one item whose behaviour bags are all empty."""
    d = spec["dense_features"]
    dense = rng.uniform(-1.0, 1.0, size=(batch, d)).astype(np.float32)
    nt = len(rows)
    lens = [_random_lengths(batch, rng) for _ in range(nt)]
    if spec["type"] == "din":
        nb = spec["behaviour_tables"]
        item = int(rng.randint(0, batch))
        for t in range(1, nb + 1):
            lens[t][item] = 0
            if sum(n > 0 for n in lens[t]) < 3:
                raise AssertionError("din: too few non-empty behaviour bags; change the seed")
    elif spec["type"] == "dien":
        ns = spec["behaviour_tables"]
        masks = dien_step_masks(batch, ns, rng)
        for t in range(1, ns + 1):
            lens[t] = [int(rng.randint(1, 5)) if masks[b, t - 1] else 0 for b in range(batch)]
    lengths: list[list[int]] = []
    indices: list[int] = []
    for t in range(nt):
        bags = _zoo_bags(rows[t], lens[t], rng)
        assert any(len(bag) == 0 for bag in bags)
        lengths.append([len(bag) for bag in bags])
        indices.extend(i for bag in bags for i in bag)
    return {"dense": [[float(v) for v in row] for row in dense] if d > 0 else [],
            "sparse_lengths": lengths,
            "sparse_indices": indices}


# Independent float64 numpy forward passes (per-item loops; no torch).

def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _np_mlp(w: dict, prefix: str, n_layers: int, x: np.ndarray, last: str) -> np.ndarray:
    """Linear layers <prefix>.{2k}; ReLU between them; `last` after the last one."""
    for k in range(n_layers):
        x = w[f"{prefix}.{2 * k}.weight"] @ x + w[f"{prefix}.{2 * k}.bias"]
        act = "relu" if k < n_layers - 1 else last
        if act == "relu":
            x = np.maximum(x, 0.0)
        elif act == "sigmoid":
            x = _sigmoid(x)
        elif act == "softmax":
            x = _softmax(x)
        else:
            assert act == "none"
    return x


def _np_pool(spec: dict, w: dict, inputs: dict) -> tuple[np.ndarray, np.ndarray]:
    """-> (pooled [T, N, dim], bag lengths [T, N]) with explicit bag loops."""
    lengths = inputs["sparse_lengths"]
    nt = len(spec["tables"])
    batch = len(lengths[0])
    flat = inputs["sparse_indices"]
    pooled = np.zeros((nt, batch, spec["embedding_dim"]))
    pos = 0
    for t in range(nt):
        table = w[f"emb_l.{t}.weight"]
        for b in range(batch):
            n = lengths[t][b]
            for i in flat[pos:pos + n]:
                pooled[t, b] += table[i]
            pos += n
    assert pos == len(flat)
    return pooled, np.array(lengths)


def _np_gru_gates(w: dict, prefix: str, x: np.ndarray, h: np.ndarray):
    """(r, z, n) of a GRU cell with <prefix>.weight_ih/weight_hh/bias_ih/bias_hh."""
    hid = h.shape[0]
    gi = w[f"{prefix}.weight_ih"] @ x + w[f"{prefix}.bias_ih"]
    gh = w[f"{prefix}.weight_hh"] @ h + w[f"{prefix}.bias_hh"]
    r = _sigmoid(gi[:hid] + gh[:hid])
    z = _sigmoid(gi[hid:2 * hid] + gh[hid:2 * hid])
    n = np.tanh(gi[2 * hid:] + r * gh[2 * hid:])
    return r, z, n


def numpy_forward_zoo(spec: dict, weights: dict[str, np.ndarray], inputs: dict) -> np.ndarray:
    w = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
    e, lens = _np_pool(spec, w, inputs)
    typ = spec["type"]
    batch = e.shape[1]
    dense = (np.asarray(inputs["dense"], dtype=np.float64) if spec["dense_features"] > 0
             else np.zeros((batch, 0)))
    out = []
    for b in range(batch):
        if typ == "ncf":
            gmf = e[0, b] * e[1, b]
            m = _np_mlp(w, "mlp", len(spec["mlp"]), np.concatenate([e[2, b], e[3, b]]), "relu")
            z = w["predict.weight"] @ np.concatenate([gmf, m]) + w["predict.bias"]
            out.append(_sigmoid(z))
        elif typ == "wnd":
            x = np.concatenate([dense[b]] + [e[t, b] for t in range(e.shape[0])])
            out.append(_np_mlp(w, "mlp", len(spec["mlp"]), x, "sigmoid"))
        elif typ == "mtwnd":
            x = np.concatenate([dense[b]] + [e[t, b] for t in range(e.shape[0])])
            trunk = _np_mlp(w, "mlp", len(spec["mlp"]), x, "relu")
            out.append(np.concatenate([
                _np_mlp(w, f"heads.{i}", len(spec["task_mlp"]), trunk, "sigmoid")
                for i in range(spec["tasks"])]))
        elif typ == "din":
            nb = spec["behaviour_tables"]
            u, a, c = e[0, b], e[nb + 1, b], e[nb + 2, b]
            pooled = np.zeros_like(u)
            for i in range(1, nb + 1):
                bi = e[i, b]
                wi = _np_mlp(w, "att", len(spec["attention_mlp"]),
                             np.concatenate([bi, a, bi * a]), "none")
                assert wi.shape == (1,)
                pooled += wi[0] * bi
            k = spec["top_mlp"][-1]
            out.append(_np_mlp(w, "top_l", len(spec["top_mlp"]),
                               np.concatenate([u, pooled, a, c]),
                               "softmax" if k >= 2 else "sigmoid"))
        elif typ == "dien":
            ns, hid = spec["behaviour_tables"], spec["gru_hidden"]
            u, a, c = e[0, b], e[ns + 1, b], e[ns + 2, b]
            valid = [lens[1 + t, b] > 0 for t in range(ns)]
            h = np.zeros(hid)
            hs = []
            for t in range(ns):
                if valid[t]:
                    _, z, n = _np_gru_gates(w, "gru", e[1 + t, b], h)
                    h = (1.0 - z) * n + z * h
                hs.append(h)
            q = w["att.weight"] @ a
            s = [float(np.dot(hs[t], q)) for t in range(ns)]
            alpha = [0.0] * ns
            if any(valid):
                smax = max(s[t] for t in range(ns) if valid[t])
                ex = [math.exp(s[t] - smax) if valid[t] else 0.0 for t in range(ns)]
                alpha = [v / sum(ex) for v in ex]
            g = np.zeros(hid)
            for t in range(ns):
                if valid[t]:
                    _, z, n = _np_gru_gates(w, "augru", hs[t], g)
                    g = g + alpha[t] * (1.0 - z) * (n - g)
            k = spec["top_mlp"][-1]
            out.append(_np_mlp(w, "top_l", len(spec["top_mlp"]),
                               np.concatenate([u, g, a, c]),
                               "softmax" if k >= 2 else "sigmoid"))
        else:
            raise ValueError(f"no numpy forward for type {typ!r}")
    return np.array(out)


def zoo_scores_from_files(prefix: str) -> np.ndarray:
    spec = zoo_ref.load_spec(prefix + ".model.json")
    w = zoo_ref.read_safetensors(prefix + ".safetensors")
    model = zoo_ref.model_from_spec(spec, w)
    return zoo_ref.forward_from_inputs_json(model, spec, prefix + ".inputs.json").numpy().copy()


def generate_zoo_case(out_dir: str, case: str, fields: dict, batch: int, seed: int,
                      scales: dict) -> str:
    torch.manual_seed(seed)
    rng = np.random.RandomState(seed)
    spec = make_zoo_spec(case, fields)
    rows = zoo_ref.effective_rows(spec)
    shell = zoo_ref.model_from_spec(spec)
    weights = make_zoo_weights(shell, rng, **scales)
    inputs = make_zoo_inputs(spec, rows, batch, rng)

    model = zoo_ref.model_from_spec(spec, weights)
    scores = zoo_ref.forward_from_inputs_json(model, spec, inputs).numpy().copy()
    k = zoo_ref.output_width(spec)
    assert scores.shape == (batch, k) and scores.dtype == np.float32

    expected, max_rel = write_and_check(out_dir, case, spec, weights, inputs, scores,
                                        zoo_scores_from_files, numpy_forward_zoo,
                                        ZOO_REL_TOL.get(case, REL_TOL))
    # Every output column must be spread across the batch, not (nearly) constant.
    spread = float((expected.max(axis=0) - expected.min(axis=0)).min())
    if spread < 0.05:
        raise AssertionError(f"{case}: an output column spans only {spread:.3g} over the batch")
    return (f"{case:9s} B={batch:<3d} K={k} rows={rows} scores in "
            f"[{expected.min():.4f}, {expected.max():.4f}] max rel err vs numpy "
            f"{max_rel:.2e}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="Generate golden model fixtures (model spec, safetensors weights, inputs, "
                    "expected scores) and self-check them.")
    ap.add_argument("--out", default=DEFAULT_OUT,
                    help="output directory (default: tests/fixtures/golden under the repo root)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    for case, (fields, batch, seed) in CASES.items():
        print(generate_case(args.out, case, fields, batch, seed))
    for case, (fields, batch, seed, scales) in ZOO_CASES.items():
        print(generate_zoo_case(args.out, case, fields, batch, seed, scales))
    with open(os.path.join(args.out, "README.md"), "w", encoding="utf-8") as f:
        f.write(README)
    print(f"wrote {len(CASES) + len(ZOO_CASES)} cases to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
