"""PyTorch reference implementation of the DLRM models served by the C++ engine.

The module mirrors facebookresearch/dlrm (``dlrm_s_pytorch.py``) so that its
``state_dict`` names are the tensor names the engine expects in a weights file:

    emb_l.{t}.weight   [rows_t, embedding_dim]   one nn.EmbeddingBag(mode="sum") per table
    bot_l.{k}.weight   [out, in]                 k = 0, 2, 4, ... (Linear at even indices,
    bot_l.{k}.bias     [out]                     ReLU after every bottom layer)
    top_l.{k}.weight   [out, in]                 ReLU after every top layer but the last,
    top_l.{k}.bias     [out]                     which is followed by Sigmoid

Model spec (JSON), e.g.::

    {"name": "rmc1", "type": "dlrm", "dense_features": 128,
     "bottom_mlp": [64, 32], "top_mlp": [256, 64, 1], "embedding_dim": 32,
     "tables": [4000000, ...], "row_scale": 0.25, "lookups_per_table": 80,
     "interaction": "cat", "seed": 1}

``row_scale`` (in (0, 1], default 1.0) scales every table: effective rows =
max(1, floor(rows * row_scale + 0.5)).  ``interaction`` defaults to "dot".
``seed`` and ``lookups_per_table`` are optional and unused by the model itself.

Engine input layout (JSON)::

    {"dense": [[D floats] * B],
     "sparse_lengths": [[length of bag b of table t for b in range(B)] for t in range(T)],
     "sparse_indices": [all bags concatenated, table by table, bag by bag]}

Besides the model, this module has a dependency-free safetensors reader/writer
(F32 only) and helpers to convert the engine input layout to EmbeddingBag
offsets/indices.  To score an input file with any model type, run zoo_ref.py::

    /usr/bin/python3 scripts/reference/zoo_ref.py --model M.json --weights W.safetensors \\
        --inputs I.json
"""

from __future__ import annotations

import json
import math
import os
import struct
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn

__all__ = [
    "SpecError",
    "WeightsError",
    "InputError",
    "load_spec",
    "validate_spec",
    "effective_rows",
    "top_input_width",
    "DLRM",
    "model_from_spec",
    "load_weights",
    "table_rows_from_weights",
    "read_safetensors",
    "write_safetensors",
    "inputs_from_lengths",
    "inputs_from_doc",
    "load_inputs",
]


class SpecError(ValueError):
    """The model spec is malformed."""


class WeightsError(ValueError):
    """A weights file or weights dict does not match the model."""


class InputError(ValueError):
    """Model inputs are malformed."""


# --------------------------------------------------------------------------
# Model spec
# --------------------------------------------------------------------------

def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _pos_int(spec: Mapping[str, Any], key: str, where: str) -> int:
    v = spec.get(key)
    if not _is_int(v) or v <= 0:
        raise SpecError(f"{where}: '{key}' must be a positive integer, got {v!r}")
    return v


def _pos_int_list(spec: Mapping[str, Any], key: str, where: str, allow_empty: bool) -> list[int]:
    v = spec.get(key)
    if not isinstance(v, list) or not all(_is_int(x) and x > 0 for x in v):
        raise SpecError(f"{where}: '{key}' must be a list of positive integers, got {v!r}")
    if not v and not allow_empty:
        raise SpecError(f"{where}: '{key}' must not be empty")
    return list(v)


def check_common_keys(out: dict[str, Any], where: str) -> None:
    """Checks the keys every model type shares: row_scale (set to its float value,
    default 1), lookups_per_table and seed."""
    rs = out.get("row_scale", 1.0)
    if not isinstance(rs, (int, float)) or isinstance(rs, bool) or not 0 < rs <= 1:
        raise SpecError(f"{where}: 'row_scale' must be a number in (0, 1], got {rs!r}")
    out["row_scale"] = float(rs)
    if "lookups_per_table" in out:
        lpt = out["lookups_per_table"]
        if not _is_int(lpt) or lpt < 0:
            raise SpecError(
                f"{where}: 'lookups_per_table' must be a non-negative integer, got {lpt!r}")
    if "seed" in out and not _is_int(out["seed"]):
        raise SpecError(f"{where}: 'seed' must be an integer, got {out['seed']!r}")


def validate_spec(spec: Mapping[str, Any], where: str = "model spec") -> dict[str, Any]:
    """Check a spec dict and return a copy with defaults filled in.

    Defaults (as in the engine's model_spec.cc): ``row_scale`` = 1.0,
    ``interaction`` = "dot".  Unknown keys are kept untouched.
    Raises SpecError with a one-line message on any problem.
    """
    if not isinstance(spec, Mapping):
        raise SpecError(f"{where}: top level must be a JSON object")
    out = dict(spec)
    if "name" in out and not isinstance(out["name"], str):
        raise SpecError(f"{where}: 'name' must be a string")
    out.setdefault("name", "dlrm")
    typ = out.get("type", "dlrm")
    if typ != "dlrm":
        raise SpecError(f"{where}: 'type' must be \"dlrm\", got {typ!r}")
    out["type"] = "dlrm"
    dense = _pos_int(out, "dense_features", where)
    dim = _pos_int(out, "embedding_dim", where)
    bottom = _pos_int_list(out, "bottom_mlp", where, allow_empty=False)
    _pos_int_list(out, "top_mlp", where, allow_empty=False)
    _pos_int_list(out, "tables", where, allow_empty=True)
    del dense
    if bottom[-1] != dim:
        raise SpecError(
            f"{where}: last bottom_mlp width {bottom[-1]} must equal embedding_dim {dim}")
    inter = out.setdefault("interaction", "dot")
    if inter not in ("cat", "dot"):
        raise SpecError(f"{where}: 'interaction' must be \"cat\" or \"dot\", got {inter!r}")
    check_common_keys(out, where)
    return out


def load_spec(path: str | os.PathLike, validate=None) -> dict[str, Any]:
    """Read and validate a model spec JSON file (see module docstring).

    ``validate(spec, where=...)`` replaces this module's validate_spec (DLRM
    only), e.g. zoo_ref.validate_spec for the other model types.
    """
    try:
        with open(path, "r", encoding="utf-8") as f:
            spec = json.load(f)
    except OSError as e:
        raise SpecError(f"{path}: cannot read model spec: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise SpecError(f"{path}: invalid JSON: {e}") from None
    return (validate or validate_spec)(spec, where=str(path))


def effective_rows(spec: Mapping[str, Any]) -> list[int]:
    """Per-table row counts after applying row_scale (round half away from zero, min 1)."""
    rs = float(spec.get("row_scale", 1.0))
    return [max(1, int(math.floor(r * rs + 0.5))) for r in spec["tables"]]


def top_input_width(num_tables: int, dim: int, interaction: str) -> int:
    """Width of the interaction output that feeds the top MLP."""
    if interaction == "cat":
        return (num_tables + 1) * dim
    if interaction == "dot":
        return dim + (num_tables + 1) * num_tables // 2
    raise SpecError(f"unknown interaction {interaction!r}")


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------

def check_forward_inputs(num_tables: int, dense_features: int, dense: torch.Tensor,
                         offsets_per_table: Sequence[torch.Tensor],
                         indices_per_table: Sequence[torch.Tensor]) -> None:
    """Raises InputError unless there is one offsets and one indices tensor per table and
    dense is [N, dense_features]."""
    if len(offsets_per_table) != num_tables or len(indices_per_table) != num_tables:
        raise InputError(
            f"expected {num_tables} offsets/indices tensors, got "
            f"{len(offsets_per_table)}/{len(indices_per_table)}")
    if dense.dim() != 2 or dense.shape[1] != dense_features:
        raise InputError(f"dense must be [N, {dense_features}], got {list(dense.shape)}")


class DLRM(nn.Module):
    """DLRM in the style of facebookresearch/dlrm's DLRM_Net (inference only).

    forward(dense [B, D] float32, offsets_per_table: list of LongTensor [B],
            indices_per_table: list of LongTensor) -> scores [B, K]
    """

    def __init__(self, dense_features: int, bottom_mlp: Sequence[int], top_mlp: Sequence[int],
                 embedding_dim: int, table_rows: Sequence[int], interaction: str,
                 device: str | torch.device | None = None):
        super().__init__()
        if interaction not in ("cat", "dot"):
            raise SpecError(f"unknown interaction {interaction!r}")
        if not bottom_mlp or bottom_mlp[-1] != embedding_dim:
            raise SpecError("last bottom_mlp width must equal embedding_dim")
        if not top_mlp:
            raise SpecError("top_mlp must not be empty")
        self.dense_features = int(dense_features)
        self.embedding_dim = int(embedding_dim)
        self.table_rows = [int(r) for r in table_rows]
        self.interaction = interaction
        self.emb_l = nn.ModuleList(
            nn.EmbeddingBag(r, embedding_dim, mode="sum", device=device)
            for r in self.table_rows)
        self.bot_l = self._create_mlp([dense_features, *bottom_mlp], sigmoid_last=False,
                                      device=device)
        top_in = top_input_width(len(self.table_rows), embedding_dim, interaction)
        self.top_l = self._create_mlp([top_in, *top_mlp], sigmoid_last=True, device=device)
        # Strictly-lower-triangle pairs for the dot interaction (i over 0..ni-1, j < i).
        ni = len(self.table_rows) + 1
        self.register_buffer(
            "_li", torch.tensor([i for i in range(ni) for j in range(i)], dtype=torch.long),
            persistent=False)
        self.register_buffer(
            "_lj", torch.tensor([j for i in range(ni) for j in range(i)], dtype=torch.long),
            persistent=False)

    @staticmethod
    def _create_mlp(widths: Sequence[int], sigmoid_last: bool, device) -> nn.Sequential:
        layers: list[nn.Module] = []
        n = len(widths) - 1
        for i in range(n):
            layers.append(nn.Linear(widths[i], widths[i + 1], bias=True, device=device))
            if sigmoid_last and i == n - 1:
                layers.append(nn.Sigmoid())
            else:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    def interact_features(self, x: torch.Tensor, ly: list[torch.Tensor]) -> torch.Tensor:
        if self.interaction == "dot":
            batch_size, d = x.shape
            T = torch.cat([x] + ly, dim=1).view((batch_size, -1, d))
            Z = torch.bmm(T, torch.transpose(T, 1, 2))
            Zflat = Z[:, self._li, self._lj]
            return torch.cat([x, Zflat], dim=1)
        return torch.cat([x] + ly, dim=1)

    def forward(self, dense: torch.Tensor, offsets_per_table: Sequence[torch.Tensor],
                indices_per_table: Sequence[torch.Tensor]) -> torch.Tensor:
        check_forward_inputs(len(self.emb_l), self.dense_features, dense, offsets_per_table,
                             indices_per_table)
        x = self.bot_l(dense)
        ly = [emb(idx, off) for emb, off, idx in
              zip(self.emb_l, offsets_per_table, indices_per_table)]
        z = self.interact_features(x, ly)
        return self.top_l(z)


def _expected_shapes(model: DLRM) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in model.named_parameters()}


def table_rows_from_weights(spec: Mapping[str, Any], weights: Mapping[str, Any]) -> list[int]:
    """Table row counts taken from a weights dict's emb_l.{t}.weight shapes.

    Checks that there is exactly one embedding per spec table and that each is
    [rows, embedding_dim]; raises WeightsError otherwise.
    """
    spec = validate_spec(spec)
    dim = spec["embedding_dim"]
    nt = len(spec["tables"])
    rows = []
    for t in range(nt):
        name = f"emb_l.{t}.weight"
        if name not in weights:
            raise WeightsError(f"missing tensor '{name}' (spec has {nt} tables)")
        shape = tuple(weights[name].shape)
        if len(shape) != 2 or shape[1] != dim or shape[0] < 1:
            raise WeightsError(
                f"tensor '{name}' has shape {list(shape)}, expected [rows, {dim}]")
        rows.append(int(shape[0]))
    extra = sorted(k for k in weights if k.startswith("emb_l.")
                   and k not in {f"emb_l.{t}.weight" for t in range(nt)})
    if extra:
        raise WeightsError(f"unexpected tensor '{extra[0]}' (spec has {nt} tables)")
    return rows


def _as_param(arr: Any, name: str) -> nn.Parameter:
    if isinstance(arr, torch.Tensor):
        t = arr.detach()
        if t.dtype != torch.float32:
            raise WeightsError(f"tensor '{name}' has dtype {t.dtype}, expected float32")
    else:
        a = np.asarray(arr)
        if a.dtype != np.float32:
            raise WeightsError(f"tensor '{name}' has dtype {a.dtype}, expected float32")
        if a.dtype.byteorder == ">":
            a = a.astype("<f4")
        # Share memory with the array when possible (e.g. a copy-on-write memmap).
        if not (a.flags.c_contiguous and a.flags.aligned and a.flags.writeable):
            a = np.array(a, dtype=np.float32, order="C")
        t = torch.from_numpy(a)
    return nn.Parameter(t, requires_grad=False)


def load_weights(model: DLRM, weights: Mapping[str, Any]) -> None:
    """Install a dict of float32 arrays/tensors as the model's parameters (strict).

    Parameters alias the given arrays where possible (no copy).  Raises
    WeightsError naming the first missing, unexpected or mis-shaped tensor.
    """
    expected = _expected_shapes(model)
    for name, shape in expected.items():
        if name not in weights:
            raise WeightsError(f"missing tensor '{name}' (expected shape {list(shape)})")
        got = tuple(weights[name].shape)
        if got != shape:
            raise WeightsError(
                f"tensor '{name}' has shape {list(got)}, expected {list(shape)}")
    extra = [k for k in weights if k not in expected]
    if extra:
        raise WeightsError(f"unexpected tensor '{sorted(extra)[0]}' in weights")
    for name in expected:
        mod_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(mod_name), attr, _as_param(weights[name], name))


def model_from_spec(spec: Mapping[str, Any], weights: Mapping[str, Any] | None = None,
                    table_rows: Sequence[int] | None = None) -> DLRM:
    """Build a DLRM from a spec; if ``weights`` is given, load it strictly.

    ``table_rows`` overrides the spec's effective row counts (e.g. use
    ``table_rows_from_weights`` to follow a weights file).  With weights, the
    module is first built on the meta device so that no memory is allocated
    for parameters that are then replaced by (memory-sharing) views of the
    given arrays.  The returned module is in eval mode.
    """
    spec = validate_spec(spec)
    rows = list(table_rows) if table_rows is not None else effective_rows(spec)
    if len(rows) != len(spec["tables"]):
        raise SpecError(
            f"table_rows has {len(rows)} entries but the spec has {len(spec['tables'])} tables")
    kwargs = dict(dense_features=spec["dense_features"], bottom_mlp=spec["bottom_mlp"],
                  top_mlp=spec["top_mlp"], embedding_dim=spec["embedding_dim"],
                  table_rows=rows, interaction=spec["interaction"])
    if weights is None:
        model = DLRM(**kwargs)
    else:
        # Parameters start on the meta device (no memory); the _li/_lj buffers are
        # always created on the CPU.
        model = DLRM(**kwargs, device="meta")
        load_weights(model, weights)
    model.eval()
    return model


# --------------------------------------------------------------------------
# safetensors (F32 only), no dependency on the safetensors package
# --------------------------------------------------------------------------

_MAX_HEADER = 100 * 1024 * 1024


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an F32 safetensors file into {name: float32 ndarray}.

    The arrays are views of one copy-on-write memory map of the file, so a
    multi-GB file is neither read eagerly nor copied (writes to the arrays stay
    private).  Metadata ("__metadata__") is ignored.  Raises WeightsError with
    a one-line message on malformed files.
    """
    p = str(path)
    try:
        size = os.path.getsize(p)
    except OSError as e:
        raise WeightsError(f"{p}: cannot read weights file: {e.strerror or e}") from None
    if size < 8:
        raise WeightsError(f"{p}: not a safetensors file (only {size} bytes)")
    with open(p, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > _MAX_HEADER or 8 + n > size:
            raise WeightsError(f"{p}: not a safetensors file (bad header length {n})")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WeightsError(f"{p}: safetensors header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{p}: safetensors header must be a JSON object")
    data_start = 8 + n
    data_len = size - data_start
    mm = None
    if data_len > 0:
        mm = np.memmap(p, dtype=np.uint8, mode="c", offset=0, shape=(size,))
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict):
            raise WeightsError(f"{p}: tensor '{name}': header entry must be an object")
        dtype = info.get("dtype")
        shape = info.get("shape")
        offs = info.get("data_offsets")
        if dtype != "F32":
            raise WeightsError(f"{p}: tensor '{name}' has dtype {dtype!r}; only F32 is supported")
        if not isinstance(shape, list) or not all(_is_int(s) and s >= 0 for s in shape):
            raise WeightsError(f"{p}: tensor '{name}' has an invalid shape {shape!r}")
        if (not isinstance(offs, list) or len(offs) != 2 or not all(_is_int(o) for o in offs)
                or not 0 <= offs[0] <= offs[1] <= data_len):
            raise WeightsError(
                f"{p}: tensor '{name}' has invalid data_offsets {offs!r} "
                f"(data section is {data_len} bytes)")
        count = math.prod(shape)
        if offs[1] - offs[0] != 4 * count:
            raise WeightsError(
                f"{p}: tensor '{name}': data_offsets span {offs[1] - offs[0]} bytes but shape "
                f"{shape} needs {4 * count}")
        if count == 0:
            out[name] = np.zeros(shape, dtype=np.float32)
            continue
        begin = data_start + offs[0]
        arr = np.ndarray(shape=tuple(shape), dtype="<f4", buffer=mm, offset=begin)
        if not arr.flags.aligned:  # misaligned foreign file: fall back to a copy
            arr = np.array(arr, dtype=np.float32)
        out[name] = arr
    return out


def write_safetensors(path: str | os.PathLike, tensors: Mapping[str, Any],
                      metadata: Mapping[str, str] | None = None) -> None:
    """Write {name: float32 array or tensor} as a safetensors file (F32, little-endian).

    Tensors are stored in the dict's order, back to back; the JSON header is
    padded with spaces to a multiple of 8 bytes.
    """
    arrays: list[tuple[str, np.ndarray]] = []
    for name, v in tensors.items():
        if name == "__metadata__":
            raise WeightsError("'__metadata__' is reserved; pass metadata= instead")
        a = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        if a.dtype != np.float32:
            raise WeightsError(f"tensor '{name}' has dtype {a.dtype}; only float32 is supported")
        arrays.append((name, np.asarray(a, dtype="<f4", order="C")))
    header: dict[str, Any] = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise WeightsError("safetensors metadata must map str to str")
        header["__metadata__"] = dict(metadata)
    pos = 0
    for name, a in arrays:
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [pos, pos + a.nbytes]}
        pos += a.nbytes
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * (-len(hb) % 8)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for _, a in arrays:
            a.tofile(f)
    os.replace(tmp, path)


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------

def inputs_from_lengths(num_tables: int, batch: int, sparse_lengths: Sequence[Sequence[int]],
                        sparse_indices: Sequence[int]
                        ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Convert the engine's sparse layout into per-table EmbeddingBag inputs.

    sparse_lengths is [T][B] bag lengths; sparse_indices is every bag's ids,
    table by table, bag by bag.  Returns (offsets_per_table, indices_per_table),
    lists of T int64 tensors ([B] offsets starting at 0, and that table's ids).
    """
    if len(sparse_lengths) != num_tables:
        raise InputError(
            f"sparse_lengths has {len(sparse_lengths)} rows, expected {num_tables} (one per table)")
    idx_all = np.asarray(sparse_indices, dtype=np.int64).reshape(-1)
    offsets_l, indices_l = [], []
    pos = 0
    for t in range(num_tables):
        lens = np.asarray(sparse_lengths[t], dtype=np.int64).reshape(-1)
        if lens.shape[0] != batch:
            raise InputError(
                f"sparse_lengths[{t}] has {lens.shape[0]} entries, expected batch size {batch}")
        if (lens < 0).any():
            raise InputError(f"sparse_lengths[{t}] has a negative length")
        total = int(lens.sum())
        if pos + total > idx_all.shape[0]:
            raise InputError(
                f"sparse_indices has {idx_all.shape[0]} ids but sparse_lengths needs more "
                f"(ran out in table {t})")
        offs = np.zeros(batch, dtype=np.int64)
        if batch > 1:
            np.cumsum(lens[:-1], out=offs[1:])
        offsets_l.append(torch.from_numpy(offs))
        indices_l.append(torch.from_numpy(idx_all[pos:pos + total].copy()))
        pos += total
    if pos != idx_all.shape[0]:
        raise InputError(
            f"sparse_indices has {idx_all.shape[0]} ids but sparse_lengths sums to {pos}")
    return offsets_l, indices_l


def inputs_from_doc(doc: Any, num_tables: int, dense_features: int
                    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Convert a parsed engine input document -> (dense [B, D] float32, offsets, indices)."""
    if not isinstance(doc, dict) or not all(k in doc for k in
                                            ("dense", "sparse_lengths", "sparse_indices")):
        raise InputError("expected an object with 'dense', 'sparse_lengths' and 'sparse_indices'")
    try:
        dense = np.asarray(doc["dense"], dtype=np.float32)
    except (TypeError, ValueError):
        raise InputError("'dense' must be a [B][D] array of numbers") from None
    if dense.ndim != 2 or dense.shape[1] != dense_features:
        raise InputError(f"'dense' has shape {list(dense.shape)}, expected [B, {dense_features}]")
    try:
        offs, idxs = inputs_from_lengths(num_tables, dense.shape[0], doc["sparse_lengths"],
                                         doc["sparse_indices"])
    except (TypeError, ValueError) as e:
        raise InputError(str(e)) from None
    return torch.from_numpy(dense), offs, idxs


def load_inputs(path: str | os.PathLike, num_tables: int, dense_features: int
                ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Read an engine input JSON file -> (dense [B, D] float32, offsets list, indices list)."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise InputError(f"{path}: cannot read inputs: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: invalid JSON: {e}") from None
    try:
        return inputs_from_doc(doc, num_tables, dense_features)
    except InputError as e:
        raise InputError(f"{path}: {e}") from None
