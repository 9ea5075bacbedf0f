"""Generate the golden DLRM test fixtures used by the C++ engine's tests.

For every case this writes, into tests/fixtures/golden/ (or --out DIR):

    <case>.model.json     model spec ("name": "golden_<case>", "type": "dlrm")
    <case>.safetensors    float32 weights named like facebookresearch/dlrm
                          (emb_l.{t}.weight, bot_l.{k}.weight/bias, top_l.{k}.weight/bias)
    <case>.inputs.json    engine input: {"dense", "sparse_lengths", "sparse_indices"}
    <case>.expected.json  {"scores": [[K floats] * B]} from the PyTorch reference (float32)

plus README.md.  Output is deterministic (fixed seeds, float32 throughout).
Before finishing, every case is re-scored from the files on disk and compared
exactly with expected.json, and cross-checked against an independent float64
numpy implementation of the forward pass (relative error <= 1e-5).

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

README = """\
# Golden DLRM fixtures

Small DLRM models with PyTorch-reference scores, used to check the C++ engine's numerics.
Per case: `<case>.model.json` (spec), `<case>.safetensors` (float32 weights, facebookresearch/dlrm
tensor names), `<case>.inputs.json` (engine input layout) and `<case>.expected.json` (reference scores).
Generated deterministically by `scripts/reference/make_golden.py` (do not edit by hand); regenerate with:

    /usr/bin/python3 scripts/reference/make_golden.py
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

    prefix = os.path.join(out_dir, case)
    write_json(prefix + ".model.json", spec)
    dlrm_ref.write_safetensors(prefix + ".safetensors", weights)
    write_json(prefix + ".inputs.json", inputs)
    write_json(prefix + ".expected.json",
               {"scores": [[float(v) for v in row] for row in scores]})

    # Self-checks: (1) re-score from the files on disk and compare exactly.
    with open(prefix + ".expected.json", encoding="utf-8") as f:
        expected = np.array(json.load(f)["scores"], dtype=np.float64)
    again = torch_scores_from_files(prefix).astype(np.float64)
    if not np.array_equal(again, expected):
        raise AssertionError(f"{case}: scores re-computed from files differ from expected.json")
    # (2) independent float64 numpy forward pass.
    ref = numpy_forward(spec, dlrm_ref.read_safetensors(prefix + ".safetensors"), inputs)
    rel = np.abs(expected - ref) / np.maximum(np.abs(ref), 1e-30)
    if not (rel.max(initial=0.0) <= REL_TOL):
        raise AssertionError(f"{case}: torch vs numpy max relative error {rel.max():.3g}")
    # (3) fixtures must be small and scores must not be degenerate.
    for ext in (".model.json", ".safetensors", ".inputs.json", ".expected.json"):
        size = os.path.getsize(prefix + ext)
        if size > MAX_FILE_BYTES:
            raise AssertionError(f"{prefix + ext} is {size} bytes (> {MAX_FILE_BYTES})")
    if np.all(np.abs(expected - 0.5) < 1e-3):
        raise AssertionError(f"{case}: all scores are ~0.5; weights too small")
    if np.all((expected < 1e-6) | (expected > 1 - 1e-6)):
        raise AssertionError(f"{case}: all scores are saturated")
    return (f"{case:9s} B={batch:<3d} K={k} rows={rows} scores in "
            f"[{expected.min():.4f}, {expected.max():.4f}] max rel err vs numpy "
            f"{rel.max(initial=0.0):.2e}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="Generate golden DLRM fixtures (model spec, safetensors weights, inputs, "
                    "expected scores) and self-check them.")
    ap.add_argument("--out", default=DEFAULT_OUT,
                    help="output directory (default: tests/fixtures/golden under the repo root)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    for case, (fields, batch, seed) in CASES.items():
        print(generate_case(args.out, case, fields, batch, seed))
    with open(os.path.join(args.out, "README.md"), "w", encoding="utf-8") as f:
        f.write(README)
    print(f"wrote {len(CASES)} cases to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
