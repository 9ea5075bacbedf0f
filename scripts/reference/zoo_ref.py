"""PyTorch reference implementations of the non-DLRM models served by the C++ engine.

Model types: "ncf", "wnd", "mtwnd", "din", "dien" (and "dlrm", delegated to
dlrm_ref).  The ``state_dict`` names of the modules below are the tensor names
the engine expects in a safetensors weights file.  Everything here is float32,
inference only.

Conventions shared by every type
--------------------------------
* Embeddings: one nn.EmbeddingBag(rows_t, dim, mode="sum") per table,
  ``emb_l.{t}.weight`` [rows_t, dim].  e_t = the sum-pooled vector of table t for
  an item (an empty bag gives zeros).
* "MLP with widths [w1..wk] from input n" = nn.Sequential(Linear(n, w1), act,
  Linear(w1, w2), act, ...): the Linear layers sit at even indices, so their
  tensors are ``<prefix>.{2k}.weight`` [w_{k+1}, w_k] and ``<prefix>.{2k}.bias``
  [w_{k+1}] for k = 0..len-1.  Every layer but the last is followed by ReLU; what
  follows the last is stated per type ("none" = nothing, the Sequential just
  ends with the Linear).
* Inputs: the engine's JSON layout (see dlrm_ref), ``{"dense": [[D] * N],
  "sparse_lengths": [[N] * T], "sparse_indices": [...]}``.  With
  dense_features 0 "dense" is [] and N = len(sparse_lengths[0]).  forward()
  takes (dense [N, D] float32 -- [N, 0] when D = 0, which carries N --,
  offsets_per_table, indices_per_table) exactly like dlrm_ref.DLRM.

Types (sigma = logistic sigmoid, ++ = concatenation, * = element-wise product)
------------------------------------------------------------------------------
ncf   (He et al. 2017; keys "mlp": [w1..wk]; dense_features 0; tables
      [user_gmf, item_gmf, user_mlp, item_mlp])
          gmf = e0 * e1                                           [dim]
          m   = mlp(e2 ++ e3)      ReLU after EVERY layer, last too [wk]
          out = sigma(predict(gmf ++ m))                           [N, 1]
      tensors: emb_l.0-3.weight, mlp.{2k}.weight|bias,
               predict.weight [1, dim + wk], predict.bias [1]

wnd   (Wide & Deep as DeepRecSys builds it; keys "mlp")
          out = sigma(mlp(dense ++ e_0 ++ ... ++ e_{T-1}))   input D + T*dim,
                ReLU between layers, sigmoid after the last    [N, mlp[-1]]
      tensors: emb_l.{t}.weight, mlp.{2k}.weight|bias

mtwnd (multi-task Wide & Deep; keys "mlp" (trunk), "task_mlp" (last width 1),
      "tasks": n)
          t   = mlp(dense ++ e_0 ++ ... ++ e_{T-1})   ReLU after EVERY layer
          out[:, i] = sigma(head_i(t))  for i in 0..n-1; head_i = MLP task_mlp
                      from mlp[-1], ReLU between layers        [N, n]
      tensors: emb_l.{t}.weight, mlp.{2k}.weight|bias, heads.{i}.{2k}.weight|bias

din   (Zhou et al. 2018; keys "behaviour_tables": B, "attention_mlp" (last width
      1), "top_mlp"; dense_features 0; tables [user, behaviour_1..B, ad, context])
          u = e_0, b_i = e_i (i = 1..B), a = e_{B+1}, c = e_{B+2}
          w_i    = att(b_i ++ a ++ b_i * a)   input 3*dim, ReLU between layers,
                   nothing after the last: one scalar per item and behaviour,
                   NOT softmax-normalised; the same att weights for every i
          pooled = sum_i w_i * b_i      (an empty behaviour bag gives b_i = 0)
          out    = top(u ++ pooled ++ a ++ c)   input 4*dim, ReLU between
                   layers; softmax over the K outputs if K >= 2, sigma if K = 1
      tensors: emb_l.{t}.weight, att.{2k}.weight|bias, top_l.{2k}.weight|bias

dien  (Zhou et al. 2019; keys "behaviour_tables": S, "gru_hidden": H, "top_mlp";
      dense_features 0; tables [user, step_1..S, ad, context])
          u = e_0, x_t = e_t (t = 1..S), a = e_{S+1}, c = e_{S+2}
          m_t = 1 if the item's bag of step t is non-empty, else 0
      Gates (nn.GRUCell, rows of the 3H-row weights in the order r, z, n):
          r = sigma(W_ir x + b_ir + W_hr h + b_hr)
          z = sigma(W_iz x + b_iz + W_hz h + b_hz)
          n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
      Layer 1 (GRU):  h_0 = 0;  h_t = (1 - z) * n + z * h_{t-1} if m_t else h_{t-1}
      Attention:      s_t = h_t . (W_a a);  alpha = softmax of s over the steps with
                      m_t = 1, alpha_t = 0 for masked steps (all 0 if no step is valid)
      Layer 2 (AUGRU, input h_t, state g, g_0 = 0):
                      g_t = g_{t-1} + alpha_t * (1 - z'_t) * (n'_t - g_{t-1}) if m_t
                            else g_{t-1}
      Output:         out = top(u ++ g_S ++ a ++ c)   input 3*dim + H, ReLU between
                      layers; softmax if K >= 2, sigma if K = 1
      tensors: emb_l.{t}.weight,
               gru.weight_ih [3H, dim], gru.weight_hh [3H, H], gru.bias_ih [3H],
               gru.bias_hh [3H], att.weight [H, dim] (W_a, no bias),
               augru.weight_ih [3H, H], augru.weight_hh [3H, H], augru.bias_ih [3H],
               augru.bias_hh [3H], top_l.{2k}.weight|bias

Spec keys common to these types: name, description, type, dense_features,
embedding_dim, tables, row_scale (effective rows = max(1, floor(rows * row_scale
+ 0.5))), lookups_per_table, seed; plus the type's own keys above.  Any other
key is rejected (as the engine does).  dense_features may be left out for
ncf/din/dien (it must be 0); wnd/mtwnd require it (>= 0).

Run as a script to score an input file with any model type::

    /usr/bin/python3 scripts/reference/zoo_ref.py --model M.json --weights W.safetensors \\
        --inputs I.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dlrm_ref  # noqa: E402
from dlrm_ref import (InputError, SpecError, WeightsError,  # noqa: E402,F401  (re-exported)
                      effective_rows, inputs_from_lengths, read_safetensors, write_safetensors)

__all__ = [
    "SpecError", "WeightsError", "InputError",
    "MODEL_TYPES", "validate_spec", "load_spec", "effective_rows", "output_width",
    "NCF", "WnD", "MTWnD", "DIN", "DIEN", "AUGRUCell", "masked_softmax", "make_mlp",
    "model_from_spec", "table_rows_from_weights",
    "read_safetensors", "write_safetensors",
    "inputs_from_doc", "forward_from_inputs_json",
]

MODEL_TYPES = ("dlrm", "ncf", "wnd", "mtwnd", "din", "dien")

_COMMON_KEYS = ("name", "description", "type", "dense_features", "embedding_dim", "tables",
                "row_scale", "lookups_per_table", "seed")
_TYPE_KEYS = {
    "ncf": ("mlp",),
    "wnd": ("mlp",),
    "mtwnd": ("mlp", "task_mlp", "tasks"),
    "din": ("behaviour_tables", "attention_mlp", "top_mlp"),
    "dien": ("behaviour_tables", "gru_hidden", "top_mlp"),
}
# Types whose only inputs are embedding bags (dense_features must be 0).
_NO_DENSE = ("ncf", "din", "dien")


# --------------------------------------------------------------------------
# Model spec
# --------------------------------------------------------------------------

def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _widths(spec: Mapping[str, Any], key: str, where: str) -> list[int]:
    return dlrm_ref._pos_int_list(spec, key, where, allow_empty=False)


def validate_spec(spec: Mapping[str, Any], where: str = "model spec") -> dict[str, Any]:
    """Check a spec dict of any model type and return a copy with defaults filled in.

    "dlrm" specs (and specs without "type") go to dlrm_ref.validate_spec.  For
    the other types: ``name`` defaults to the type, ``row_scale`` to 1.0 and
    ``dense_features`` to 0 (ncf/din/dien only).  Raises SpecError (a ValueError)
    with a one-line message naming the offending key.
    """
    if not isinstance(spec, Mapping):
        raise SpecError(f"{where}: top level must be a JSON object")
    typ = spec.get("type", "dlrm")
    if typ == "dlrm":
        return dlrm_ref.validate_spec(spec, where)
    if typ not in _TYPE_KEYS:
        raise SpecError(f"{where}: 'type' must be one of {', '.join(MODEL_TYPES)}; got {typ!r}")
    out = dict(spec)
    allowed = set(_COMMON_KEYS) | set(_TYPE_KEYS[typ])
    for key in out:
        if key not in allowed:
            raise SpecError(f"{where}: unknown key '{key}' for type \"{typ}\"")

    # Keys common to every type.
    out.setdefault("name", typ)
    if not isinstance(out["name"], str) or not out["name"]:
        raise SpecError(f"{where}: 'name' must be a non-empty string")
    if "description" in out and not isinstance(out["description"], str):
        raise SpecError(f"{where}: 'description' must be a string")
    if typ in _NO_DENSE:
        out.setdefault("dense_features", 0)
        if out["dense_features"] != 0 or not _is_int(out["dense_features"]):
            raise SpecError(f"{where}: 'dense_features' must be 0 for type \"{typ}\", "
                            f"got {out['dense_features']!r}")
    else:
        d = out.get("dense_features")
        if not _is_int(d) or d < 0:
            raise SpecError(
                f"{where}: 'dense_features' must be a non-negative integer, got {d!r}")
    dim = dlrm_ref._pos_int(out, "embedding_dim", where)
    tables = dlrm_ref._pos_int_list(out, "tables", where, allow_empty=True)
    dlrm_ref.check_common_keys(out, where)
    del dim

    # Type-specific keys.
    nt = len(tables)
    if typ == "ncf":
        _widths(out, "mlp", where)
        if nt != 4:
            raise SpecError(f"{where}: 'tables' must have exactly 4 entries for type \"ncf\" "
                            f"(user_gmf, item_gmf, user_mlp, item_mlp), got {nt}")
    elif typ in ("wnd", "mtwnd"):
        _widths(out, "mlp", where)
        if out["dense_features"] == 0 and nt == 0:
            raise SpecError(f"{where}: 'tables' must not be empty when dense_features is 0")
        if typ == "mtwnd":
            task = _widths(out, "task_mlp", where)
            if task[-1] != 1:
                raise SpecError(f"{where}: last 'task_mlp' width must be 1, got {task[-1]}")
            dlrm_ref._pos_int(out, "tasks", where)
    elif typ == "din":
        b = dlrm_ref._pos_int(out, "behaviour_tables", where)
        att = _widths(out, "attention_mlp", where)
        if att[-1] != 1:
            raise SpecError(f"{where}: last 'attention_mlp' width must be 1, got {att[-1]}")
        _widths(out, "top_mlp", where)
        if nt != b + 3:
            raise SpecError(
                f"{where}: 'tables' must have behaviour_tables + 3 = {b + 3} entries "
                f"(user, {b} behaviours, ad, context), got {nt}")
    elif typ == "dien":
        s = dlrm_ref._pos_int(out, "behaviour_tables", where)
        dlrm_ref._pos_int(out, "gru_hidden", where)
        _widths(out, "top_mlp", where)
        if nt != s + 3:
            raise SpecError(
                f"{where}: 'tables' must have behaviour_tables + 3 = {s + 3} entries "
                f"(user, {s} steps, ad, context), got {nt}")
    return out


def load_spec(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a model spec JSON file of any type (dlrm_ref.load_spec)."""
    return dlrm_ref.load_spec(path, validate=validate_spec)


def output_width(spec: Mapping[str, Any]) -> int:
    """K, the number of scores per item, of a validated spec."""
    typ = spec["type"]
    if typ == "ncf":
        return 1
    if typ == "wnd":
        return spec["mlp"][-1]
    if typ == "mtwnd":
        return spec["tasks"]
    return spec["top_mlp"][-1]  # dlrm, din, dien


# --------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------

def make_mlp(in_features: int, widths: Sequence[int], last: str,
             device: str | torch.device | None = None) -> nn.Sequential:
    """nn.Sequential of Linear layers (even indices) with ReLU between them.

    ``last`` says what follows the last Linear: "relu", "none", "sigmoid" or
    "softmax" (over dim 1).
    """
    layers: list[nn.Module] = []
    n_in = in_features
    for i, w in enumerate(widths):
        layers.append(nn.Linear(n_in, w, bias=True, device=device))
        act = "relu" if i < len(widths) - 1 else last
        if act == "relu":
            layers.append(nn.ReLU())
        elif act == "sigmoid":
            layers.append(nn.Sigmoid())
        elif act == "softmax":
            layers.append(nn.Softmax(dim=1))
        elif act != "none":
            raise ValueError(f"unknown activation {act!r}")
        n_in = w
    return nn.Sequential(*layers)


def _prob_head(k: int) -> str:
    """Output activation of DIN/DIEN's top MLP: softmax over K >= 2 outputs, else sigmoid."""
    return "softmax" if k >= 2 else "sigmoid"


def bag_lengths(offsets: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Per-bag lengths [N] from EmbeddingBag offsets [N] and the table's indices."""
    end = torch.tensor([indices.shape[0]], dtype=offsets.dtype)
    return torch.diff(offsets, append=end)


def masked_softmax(s: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax of s [N, S] along dim 1 over the entries where mask [N, S] is True.

    Masked entries get 0; a row with no valid entry is all 0.
    """
    neg_inf = torch.full_like(s, -math.inf)
    mx = torch.where(mask, s, neg_inf).max(dim=1, keepdim=True).values
    mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))
    e = torch.where(mask, torch.exp(s - mx), torch.zeros_like(s))
    denom = e.sum(dim=1, keepdim=True)
    return e / torch.where(denom > 0, denom, torch.ones_like(denom))


class AUGRUCell(nn.Module):
    """GRU cell with an attentional update gate (DIEN's AUGRU).

    Parameters named and laid out like nn.GRUCell's (weight_ih [3H, in],
    weight_hh [3H, H], bias_ih [3H], bias_hh [3H]; gate rows r, z, n):

        r = sigma(W_ir x + b_ir + W_hr g + b_hr)
        z = sigma(W_iz x + b_iz + W_hz g + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn g + b_hn))
        g_new = g + alpha * (1 - z) * (n - g)

    (alpha = 1 is exactly nn.GRUCell's (1 - z) * n + z * g.)
    """

    def __init__(self, input_size: int, hidden_size: int,
                 device: str | torch.device | None = None):
        super().__init__()
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        h3 = 3 * self.hidden_size
        self.weight_ih = nn.Parameter(torch.empty(h3, self.input_size, device=device))
        self.weight_hh = nn.Parameter(torch.empty(h3, self.hidden_size, device=device))
        self.bias_ih = nn.Parameter(torch.empty(h3, device=device))
        self.bias_hh = nn.Parameter(torch.empty(h3, device=device))
        bound = 1.0 / math.sqrt(self.hidden_size)  # nn.GRUCell's default init
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor, g: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """x [N, in], g [N, H], alpha [N, 1] -> g_new [N, H]."""
        gi = F.linear(x, self.weight_ih, self.bias_ih)
        gh = F.linear(g, self.weight_hh, self.bias_hh)
        i_r, i_z, i_n = gi.chunk(3, dim=1)
        h_r, h_z, h_n = gh.chunk(3, dim=1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return g + alpha * (1.0 - z) * (n - g)


class _ZooModel(nn.Module):
    """Embedding tables (emb_l.{t}) and input checks shared by every zoo model."""

    def __init__(self, dense_features: int, embedding_dim: int, table_rows: Sequence[int],
                 device: str | torch.device | None):
        super().__init__()
        self.dense_features = int(dense_features)
        self.embedding_dim = int(embedding_dim)
        self.table_rows = [int(r) for r in table_rows]
        self.emb_l = nn.ModuleList(
            nn.EmbeddingBag(r, self.embedding_dim, mode="sum", device=device)
            for r in self.table_rows)

    def _pool(self, dense: torch.Tensor, offsets_per_table: Sequence[torch.Tensor],
              indices_per_table: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Check the inputs and return e_t [N, dim] for every table t."""
        nt = len(self.emb_l)
        dlrm_ref.check_forward_inputs(nt, self.dense_features, dense, offsets_per_table,
                                      indices_per_table)
        n = dense.shape[0]
        for t, off in enumerate(offsets_per_table):
            if off.shape != (n,):
                raise InputError(f"offsets of table {t} have shape {list(off.shape)}, "
                                 f"expected [{n}]")
        return [emb(idx, off) for emb, off, idx in
                zip(self.emb_l, offsets_per_table, indices_per_table)]


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------

class NCF(_ZooModel):
    """Neural collaborative filtering (NeuMF): sigma(predict(e0 * e1 ++ mlp(e2 ++ e3))).

    Tables [user_gmf, item_gmf, user_mlp, item_mlp]; ReLU after every mlp layer.
    Output [N, 1].
    """

    def __init__(self, embedding_dim: int, table_rows: Sequence[int], mlp: Sequence[int],
                 device: str | torch.device | None = None):
        if len(table_rows) != 4:
            raise SpecError(f"ncf needs exactly 4 tables, got {len(table_rows)}")
        super().__init__(0, embedding_dim, table_rows, device)
        self.mlp = make_mlp(2 * self.embedding_dim, mlp, "relu", device)
        self.predict = nn.Linear(self.embedding_dim + mlp[-1], 1, bias=True, device=device)

    def forward(self, dense, offsets_per_table, indices_per_table):
        e = self._pool(dense, offsets_per_table, indices_per_table)
        gmf = e[0] * e[1]
        m = self.mlp(torch.cat([e[2], e[3]], dim=1))
        return torch.sigmoid(self.predict(torch.cat([gmf, m], dim=1)))


class WnD(_ZooModel):
    """Wide & Deep (DeepRecSys): sigma(mlp(dense ++ e_0 ++ ... ++ e_{T-1})), [N, mlp[-1]]."""

    def __init__(self, dense_features: int, embedding_dim: int, table_rows: Sequence[int],
                 mlp: Sequence[int], device: str | torch.device | None = None):
        super().__init__(dense_features, embedding_dim, table_rows, device)
        n_in = self.dense_features + len(self.table_rows) * self.embedding_dim
        self.mlp = make_mlp(n_in, mlp, "sigmoid", device)

    def forward(self, dense, offsets_per_table, indices_per_table):
        e = self._pool(dense, offsets_per_table, indices_per_table)
        return self.mlp(torch.cat([dense, *e], dim=1))


class MTWnD(_ZooModel):
    """Multi-task Wide & Deep: shared trunk (ReLU after every layer), n sigmoid heads.

    out[:, i] = sigma(heads[i](mlp(dense ++ e_0 ++ ... ++ e_{T-1}))), [N, tasks].
    """

    def __init__(self, dense_features: int, embedding_dim: int, table_rows: Sequence[int],
                 mlp: Sequence[int], task_mlp: Sequence[int], tasks: int,
                 device: str | torch.device | None = None):
        if not task_mlp or task_mlp[-1] != 1:
            raise SpecError("last task_mlp width must be 1")
        super().__init__(dense_features, embedding_dim, table_rows, device)
        n_in = self.dense_features + len(self.table_rows) * self.embedding_dim
        self.mlp = make_mlp(n_in, mlp, "relu", device)
        self.heads = nn.ModuleList(make_mlp(mlp[-1], task_mlp, "sigmoid", device)
                                   for _ in range(int(tasks)))

    def forward(self, dense, offsets_per_table, indices_per_table):
        e = self._pool(dense, offsets_per_table, indices_per_table)
        t = self.mlp(torch.cat([dense, *e], dim=1))
        return torch.cat([head(t) for head in self.heads], dim=1)


class DIN(_ZooModel):
    """Deep Interest Network: attention-weighted (un-normalised) sum of behaviour embeddings.

    Tables [user, behaviour_1..B, ad, context].  w_i = att(b_i ++ a ++ b_i * a)
    (shared weights, no activation after the last layer), pooled = sum_i w_i b_i,
    out = top(u ++ pooled ++ a ++ c) with softmax (K >= 2) or sigmoid (K = 1).
    """

    def __init__(self, embedding_dim: int, table_rows: Sequence[int], behaviour_tables: int,
                 attention_mlp: Sequence[int], top_mlp: Sequence[int],
                 device: str | torch.device | None = None):
        b = int(behaviour_tables)
        if len(table_rows) != b + 3:
            raise SpecError(f"din needs behaviour_tables + 3 = {b + 3} tables, "
                            f"got {len(table_rows)}")
        if not attention_mlp or attention_mlp[-1] != 1:
            raise SpecError("last attention_mlp width must be 1")
        super().__init__(0, embedding_dim, table_rows, device)
        self.behaviour_tables = b
        d = self.embedding_dim
        self.att = make_mlp(3 * d, attention_mlp, "none", device)
        self.top_l = make_mlp(4 * d, top_mlp, _prob_head(top_mlp[-1]), device)

    def forward(self, dense, offsets_per_table, indices_per_table):
        e = self._pool(dense, offsets_per_table, indices_per_table)
        nb = self.behaviour_tables
        u, a, c = e[0], e[nb + 1], e[nb + 2]
        pooled = torch.zeros_like(u)
        for b in e[1:nb + 1]:
            w = self.att(torch.cat([b, a, b * a], dim=1))  # [N, 1]
            pooled = pooled + w * b
        return self.top_l(torch.cat([u, pooled, a, c], dim=1))


class DIEN(_ZooModel):
    """Deep Interest Evolution Network: GRU over the steps, attention, AUGRU, top MLP.

    Tables [user, step_1..S, ad, context]; a step whose bag is empty is masked
    (the GRU and AUGRU states carry over, its attention weight is 0).  See the
    module docstring for the equations.
    """

    def __init__(self, embedding_dim: int, table_rows: Sequence[int], behaviour_tables: int,
                 gru_hidden: int, top_mlp: Sequence[int],
                 device: str | torch.device | None = None):
        s = int(behaviour_tables)
        if len(table_rows) != s + 3:
            raise SpecError(f"dien needs behaviour_tables + 3 = {s + 3} tables, "
                            f"got {len(table_rows)}")
        super().__init__(0, embedding_dim, table_rows, device)
        self.behaviour_tables = s
        self.gru_hidden = h = int(gru_hidden)
        d = self.embedding_dim
        self.gru = nn.GRUCell(d, h, bias=True, device=device)
        self.att = nn.Linear(d, h, bias=False, device=device)
        self.augru = AUGRUCell(h, h, device=device)
        self.top_l = make_mlp(3 * d + h, top_mlp, _prob_head(top_mlp[-1]), device)

    def forward(self, dense, offsets_per_table, indices_per_table):
        e = self._pool(dense, offsets_per_table, indices_per_table)
        ns = self.behaviour_tables
        u, a, c = e[0], e[ns + 1], e[ns + 2]
        n = u.shape[0]
        masks = [(bag_lengths(offsets_per_table[t], indices_per_table[t]) > 0).unsqueeze(1)
                 for t in range(1, ns + 1)]  # S x [N, 1] bool
        # Layer 1: GRU; a masked step keeps the previous state.
        h = torch.zeros(n, self.gru_hidden, dtype=u.dtype)
        hs = []
        for t in range(ns):
            h = torch.where(masks[t], self.gru(e[1 + t], h), h)
            hs.append(h)
        # Attention: s_t = h_t . (W_a a), softmax over the valid steps.
        q = self.att(a)  # [N, H]
        scores = torch.stack([(h_t * q).sum(dim=1) for h_t in hs], dim=1)  # [N, S]
        alpha = masked_softmax(scores, torch.cat(masks, dim=1))
        # Layer 2: AUGRU on the layer-1 states; a masked step keeps the previous state.
        g = torch.zeros(n, self.gru_hidden, dtype=u.dtype)
        for t in range(ns):
            g = torch.where(masks[t], self.augru(hs[t], g, alpha[:, t:t + 1]), g)
        return self.top_l(torch.cat([u, g, a, c], dim=1))


# --------------------------------------------------------------------------
# Construction and weights
# --------------------------------------------------------------------------

def _build(spec: Mapping[str, Any], rows: Sequence[int], device) -> nn.Module:
    typ, dim = spec["type"], spec["embedding_dim"]
    if typ == "ncf":
        return NCF(dim, rows, spec["mlp"], device=device)
    if typ == "wnd":
        return WnD(spec["dense_features"], dim, rows, spec["mlp"], device=device)
    if typ == "mtwnd":
        return MTWnD(spec["dense_features"], dim, rows, spec["mlp"], spec["task_mlp"],
                     spec["tasks"], device=device)
    if typ == "din":
        return DIN(dim, rows, spec["behaviour_tables"], spec["attention_mlp"], spec["top_mlp"],
                   device=device)
    if typ == "dien":
        return DIEN(dim, rows, spec["behaviour_tables"], spec["gru_hidden"], spec["top_mlp"],
                    device=device)
    raise SpecError(f"unknown model type {typ!r}")


def model_from_spec(spec: Mapping[str, Any], weights: Mapping[str, Any] | None = None,
                    table_rows: Sequence[int] | None = None) -> nn.Module:
    """Build the model of any type from a spec; if ``weights`` is given, load it strictly.

    "dlrm" goes to dlrm_ref.model_from_spec.  ``table_rows`` overrides the
    spec's effective row counts (see table_rows_from_weights).  Without weights
    the parameters get PyTorch's default initialisation; with weights the module
    is built on the meta device and its parameters become (memory-sharing where
    possible) views of the given float32 arrays/tensors -- a missing, unexpected
    or mis-shaped tensor raises WeightsError naming it.  Returned in eval mode.
    """
    spec = validate_spec(spec)
    if spec["type"] == "dlrm":
        return dlrm_ref.model_from_spec(spec, weights, table_rows=table_rows)
    rows = list(table_rows) if table_rows is not None else effective_rows(spec)
    if len(rows) != len(spec["tables"]):
        raise SpecError(
            f"table_rows has {len(rows)} entries but the spec has {len(spec['tables'])} tables")
    if weights is None:
        model = _build(spec, rows, device=None)
    else:
        model = _build(spec, rows, device="meta")
        dlrm_ref.load_weights(model, weights)
    model.eval()
    return model


def table_rows_from_weights(spec: Mapping[str, Any], weights: Mapping[str, Any]) -> list[int]:
    """Table row counts from a weights dict's emb_l.{t}.weight shapes (any model type).

    Checks that there is exactly one embedding per spec table and that each is
    [rows, embedding_dim]; raises WeightsError otherwise.
    """
    spec = validate_spec(spec)
    if spec["type"] == "dlrm":
        return dlrm_ref.table_rows_from_weights(spec, weights)
    dim, nt = spec["embedding_dim"], len(spec["tables"])
    names = [f"emb_l.{t}.weight" for t in range(nt)]
    rows = []
    for name in names:
        if name not in weights:
            raise WeightsError(f"missing tensor '{name}' (spec has {nt} tables)")
        shape = tuple(weights[name].shape)
        if len(shape) != 2 or shape[1] != dim or shape[0] < 1:
            raise WeightsError(
                f"tensor '{name}' has shape {list(shape)}, expected [rows, {dim}]")
        rows.append(int(shape[0]))
    extra = sorted(k for k in weights if k.startswith("emb_l.") and k not in set(names))
    if extra:
        raise WeightsError(f"unexpected tensor '{extra[0]}' (spec has {nt} tables)")
    return rows


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------

def inputs_from_doc(doc: Any, num_tables: int, dense_features: int
                    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Parsed engine input document -> (dense [N, D] float32, offsets, indices).

    Like dlrm_ref.inputs_from_doc, but also accepts dense_features 0: then
    "dense" is [] (or N empty rows), N = len(sparse_lengths[0]) and dense is an
    [N, 0] tensor.
    """
    if dense_features > 0:
        return dlrm_ref.inputs_from_doc(doc, num_tables, dense_features)
    if not isinstance(doc, dict) or not all(k in doc for k in
                                            ("dense", "sparse_lengths", "sparse_indices")):
        raise InputError("expected an object with 'dense', 'sparse_lengths' and 'sparse_indices'")
    lengths, dense = doc["sparse_lengths"], doc["dense"]
    if num_tables < 1:
        raise InputError("a model without dense features needs at least one table")
    if not isinstance(lengths, list) or not lengths or not isinstance(lengths[0], list):
        raise InputError("'sparse_lengths' must be a [T][N] array of bag lengths")
    n = len(lengths[0])
    if not isinstance(dense, list) or not (
            dense == [] or (len(dense) == n and all(row == [] for row in dense))):
        raise InputError("'dense' must be [] (or N empty rows) for a model without dense "
                         "features")
    try:
        offs, idxs = inputs_from_lengths(num_tables, n, lengths, doc["sparse_indices"])
    except (TypeError, ValueError) as e:
        raise InputError(str(e)) from None
    return torch.zeros((n, 0), dtype=torch.float32), offs, idxs


def forward_from_inputs_json(model: nn.Module, spec: Mapping[str, Any],
                             inputs_doc: Any) -> torch.Tensor:
    """Score an engine input document with ``model`` (built from ``spec``).

    ``inputs_doc`` is the parsed JSON object or a path to the JSON file.
    Returns float32 scores [N, K] (computed under torch.inference_mode()).
    """
    spec = validate_spec(spec)
    if isinstance(inputs_doc, (str, os.PathLike)):
        try:
            with open(inputs_doc, "r", encoding="utf-8") as f:
                doc = json.load(f)
        except OSError as e:
            raise InputError(f"{inputs_doc}: cannot read inputs: {e.strerror or e}") from None
        except json.JSONDecodeError as e:
            raise InputError(f"{inputs_doc}: invalid JSON: {e}") from None
    else:
        doc = inputs_doc
    dense, offs, idxs = inputs_from_doc(doc, len(spec["tables"]), spec["dense_features"])
    with torch.inference_mode():
        return model(dense, offs, idxs)


# --------------------------------------------------------------------------
# CLI: score an input file
# --------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Score an engine input JSON with the PyTorch reference model of any type "
                    '(dlrm, ncf, wnd, mtwnd, din, dien) and print {"scores": [[...] * N]}.')
    ap.add_argument("--model", required=True, help="model spec JSON")
    ap.add_argument("--weights", required=True,
                    help="safetensors weights (table rows are taken from this file)")
    ap.add_argument("--inputs", required=True, help="engine input JSON")
    args = ap.parse_args(argv)
    prog = os.path.basename(sys.argv[0])
    try:
        spec = load_spec(args.model)
        w = read_safetensors(args.weights)
        try:
            rows = table_rows_from_weights(spec, w)
            model = model_from_spec(spec, w, table_rows=rows)
        except (SpecError, WeightsError) as e:
            raise WeightsError(f"{args.weights}: {e}") from None
        scores = forward_from_inputs_json(model, spec, args.inputs)
    except (ValueError, IndexError, RuntimeError) as e:
        print(f"{prog}: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
              file=sys.stderr)
        return 1
    print(json.dumps({"scores": [[float(v) for v in row] for row in scores.tolist()]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
