"""One description per rewrite, shared by the ONNX, OpenVINO and torch implementations.

Modelled on onnxscript's rewriter (pattern + condition + replacement): each `RewriteSpec` says what it
matches, when it applies (and when it must refuse), the math of the replacement, and its numerical
limits per precision. The implementations (`onnx_rw`, `openvino_rw`, `torch_rw`) consult the same
objects, so `actiba rewrite --dry-run` and the docs cannot drift from what the code does.

Also here: `Site` (one place a rewrite could apply, with the decision and the reason) and the
triangular / ones constants every level builds its replacement from.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import activations


@dataclass(frozen=True)
class RewriteSpec:
    """A rewrite: pattern, conditions, replacement math, and numerical limits."""

    name: str
    matches: tuple[str, ...]
    conditions: tuple[str, ...]
    math: str
    limits: dict[str, str]  # precision -> what to expect / whether it is refused
    tolerance: float  # default max |difference| accepted by the verification (f32 run)
    refused_precisions: tuple[str, ...] = ()


CUMBA = RewriteSpec(
    name="cumba",
    matches=("CumSum(x, axis) [ONNX; OpenVINO CumSum]",
             "torch.cumsum / Tensor.cumsum inside selected modules (torch_sums.sums_scope)"),
    conditions=(
        "axis is a constant",
        "the length n along the axis is static (the constant is n×n)",
        "floating-point element type (integer MatMul is not what NPUs accelerate)",
    ),
    math=("y = L @ x on axis −2 (L[i,j]=1 iff j contributes to i: j<=i, j<i exclusive, j>=i reverse, "
          "j>i both); y = x @ Lᵀ on the last axis; any other axis a: reshape to (d0..d(a−1), n, Q) "
          "with Q = prod of the later dims, L @ ·, reshape back — no Transpose anywhere"),
    limits={
        "f32": "exact up to summation order: |err| <= n·eps·sum|x| (~1e-6 relative)",
        "bf16": "0/1 constants are exact; accumulation happens in the MatMul's accumulator (f32 on CPU/NPU)",
        "f16": "as bf16; partial sums beyond 65504 overflow as CumSum would",
    },
    tolerance=1e-4,
)

REDUBA = RewriteSpec(
    name="reduba",
    matches=("ReduceSum(x, axes) opset<13 attr / >=13 input",
             "ReduceMean(x, axes) opset<18 attr / >=18 input", "OpenVINO ReduceSum / ReduceMean",
             "torch.sum / torch.mean (and Tensor methods) inside selected modules (torch_sums.sums_scope)"),
    conditions=(
        "axes constant (or absent: all axes unless noop_with_empty_axes=1, which becomes Identity)",
        "the reduced dims are static (K = their product sizes the ones vector)",
        "floating-point element type",
    ),
    math=("last axis: x @ 1_K (keepdims: 1_{K×1}); axis −2: 1_K @ x (keepdims: 1_{1×K}); several "
          "contiguous axes: Reshape with 0-copies then the same; non-contiguous: Transpose them last; "
          "ReduceMean uses (1/K)·1 instead of 1; keepdims=1 restores the unit axes with Unsqueeze"),
    limits={
        "f32": "exact up to summation order; ReduceMean's 1/K is rounded once (|rel err| <= eps)",
        "bf16": "1/K is rounded to bf16 when K is no power of two (rel err <= 2^-8) unless kept in f32",
        "f16": "1/K rounded to f16 (rel err <= 2^-11); sums beyond 65504 overflow",
    },
    tolerance=1e-4,
)

CONTRACT = RewriteSpec(
    name="contract",
    matches=("ReduceSum(Mul(a, b), axes) where the Mul broadcasts (ONNX)",),
    conditions=(
        "a, b and axes static; the Mul has no other consumer",
        "the broadcast product is larger than both inputs (otherwise nothing is saved)",
    ),
    math="one Einsum over the un-broadcast operands: the product is never materialized",
    limits={"f32": "exact up to summation order", "bf16": "as MatMul", "f16": "as MatMul"},
    tolerance=1e-4,
)

ACTIBA = RewriteSpec(
    name="actiba",
    matches=("Softplus", "Mul(x, Sigmoid(x)) [SiLU]", "Swish (opset 24 / OpenVINO, alpha=beta)",
             "Gelu (approximate none|tanh) and x·0.5·(1+Erf(x/√2))", "Sigmoid", "Tanh", "Exp",
             "torch: F.silu/F.softplus/F.gelu/torch.sigmoid/tanh/exp inside the selected modules"),
    conditions=(
        "a table for the site's function (by op type, or by site-name pattern)",
        "the table's function and beta agree with the op (a silu table for Swish(alpha) needs beta=alpha)",
    ),
    math="y = slopes[i]·x + intercepts[i], i = #breakpoints <= x (the table's lowering: relu-sum or select)",
    limits={
        "f32": "the table's own approximation error (its error.max_abs over its domain); see --act-tolerance",
        "bf16": "table error plus bf16 rounding of slopes/intercepts and of x (~2^-8 relative)",
        "f16": "table error plus f16 rounding (~2^-11 relative)",
    },
    tolerance=float("inf"),  # judged against the table's stated error instead, see verify
)

SSD_D1 = RewriteSpec(
    name="ssd-d1",
    matches=("Mamba-2 SSD segment sum: Expand → Where(mask) → CumSum over a T×T block (HF segment_sum)",
             "ONNX / OpenVINO: Unsqueeze(x,−1) → Expand|Tile|Broadcast → Where|Select(~tril(−1), 0, ·) or "
             "Mul(0/1) → CumSum(axis −2) → Where|Select(~tril, −inf, ·) or Add(0/−inf) (onnx_ssd, openvino_ssd)"),
    conditions=("torch level: HF Mamba2Mixer (chunk form, i.e. prefill)",
                "graph level: masks equal (by value) to strict tril for the first, within tril for the final; "
                "constant, or Trilu of ones when the size is dynamic (ONNX only); the T×T CumSum has one user",
                "float32/float64 element type and target precision f32 (refused for bf16/f16)"),
    math=("segsum[i,j] = cs_i − cs_j for j <= i else −inf, with cs = CumSum(x, −1) (the graph's own when it has "
          "one); graph level: the final mask's data input becomes Unsqueeze(cs,−1) − Unsqueeze(cs,−2)"),
    limits={
        "f32": "|err| ~ eps·|cs| (cs grows with position; 1e-4..1e-2 on logits measured)",
        "bf16": "REFUSED: cs_i − cs_j cancels catastrophically (cs ~ 1e2, bf16 eps 2^-8)",
        "f16": "REFUSED: same cancellation",
    },
    tolerance=5e-2,
    refused_precisions=("bf16", "f16"),
)

SSD_D2 = RewriteSpec(
    name="ssd-d2",
    matches=("Mamba-2 SSD einsums with per-head repeated B/C (HF mamba2_chunk_scan)",
             "ONNX / OpenVINO: Einsum C·Bᵀ 'bclhn,bcshn->bclsh' (labels up to renaming) → Mul(decay) → Einsum "
             "'bclsh,bcshp->bclhp'; Mul(B, decay) → Einsum 'bclhn,bclhp->bchpn'; Einsum 'bclhn,bchpn->bclhp' → "
             "Mul → Add; B/C = Reshape(Pad?(Reshape(Expand|Broadcast(Unsqueeze(src, 3))))) (ssd_d2)"),
    conditions=("torch level: HF Mamba2Mixer (chunk form)", "n_groups == 1",
                "graph level: static chunk shapes (fixed sequence length); each einsum result has one user; "
                "the state decay is constant over the state axis"),
    math=("G = C·Bᵀ once per layer from the un-repeated B/C; the SSD einsums as MatMuls in (batch, chunk, "
          "head, ...) order: no per-head Expand, few Transposes; same products, different order; the graph "
          "level moves the per-head decay from B onto X and keeps the inter-chunk recurrence"),
    limits={"f32": "exact up to summation order", "bf16": "exact up to summation order",
            "f16": "exact up to summation order"},
    tolerance=1e-3,
)

SPECS: dict[str, RewriteSpec] = {s.name: s for s in (CUMBA, REDUBA, CONTRACT, ACTIBA, SSD_D1, SSD_D2)}
GRAPH_REWRITES = ("cumba", "reduba", "contract", "actiba")


def check_precision(spec: RewriteSpec, precision: str) -> str | None:
    """Why `spec` must not be applied for `precision`, or None if it may."""
    if precision in spec.refused_precisions:
        return f"{spec.name} refused for {precision}: {spec.limits.get(precision, '')}"
    return None


# --- activations -----------------------------------------------------------------------------------

# the functions ActiBA can replace, and their aliases: one registry entry each (`actiba.activations`)
ACT_FUNCTIONS = activations.NAMES


def canonical_function(name: str) -> str:
    return activations.canonical(name)


def table_mismatch(table: Any, function: str, beta: float | None = None) -> str | None:
    """Why `table` cannot stand for `function` (with `beta`), or None if it can.

    Tables of unknown/custom functions are trusted (the user chose them explicitly).
    """
    tf = canonical_function(getattr(table, "function", "custom") or "custom")
    if tf in ACT_FUNCTIONS and tf != function:
        return f"table approximates {tf}, site computes {function}"
    if beta is not None and tf in activations.BY_NAME and activations.BY_NAME[tf].beta:
        tb = float((getattr(table, "params", None) or {}).get("beta", 1.0))
        if abs(tb - beta) > 1e-6 * max(1.0, abs(beta)):
            return f"table has beta={tb:g}, site has beta={beta:g}"
    return None


def table_error(table: Any) -> float | None:
    """The table's stated max-abs error, or None if it states none."""
    err = getattr(table, "error", None) or {}
    v = err.get("max_abs") if isinstance(err, dict) else None
    return float(v) if v is not None else None


# --- sites -----------------------------------------------------------------------------------------

class _Detail(dict):
    """`Site.detail`: the match's plain fields; a key it lacks falls back to the typed match data
    (`Site.match`), so ``detail["root"]`` / ``detail["table"]`` keep working for older callers."""

    def __init__(self, data: Any = (), site: Site | None = None) -> None:
        super().__init__(data)
        self._site = site

    def __missing__(self, key: str) -> Any:
        m = None if self._site is None else self._site.match
        if m is not None and hasattr(m, key):
            return getattr(m, key)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default


@dataclass
class Site:
    """One place a rewrite could apply: where, what, and whether it will (and why not).

    `detail` holds plain reported values (str / numbers / bools); the rule's typed match data, with
    the live nodes and tensors its replacement needs, is `match` (None for a skip), and `scope` the
    graph scope it was found in. Neither is part of `as_dict`.
    """

    rewrite: str
    name: str
    op: str
    shape: tuple[Any, ...] | None = None
    axis: Any = None
    dtype: str | None = None
    decision: str = "rewrite"  # "rewrite" or "skip"
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    match: Any = field(default=None, repr=False, compare=False)
    scope: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.detail = _Detail(self.detail, self)

    @property
    def ok(self) -> bool:
        return self.decision == "rewrite"

    def skip(self, reason: str) -> Site:
        self.decision, self.reason = "skip", reason
        return self

    def as_dict(self) -> dict[str, Any]:
        plain = (str, int, float, bool)
        return {
            "rewrite": self.rewrite, "name": self.name, "op": self.op,
            "shape": None if self.shape is None else [v if isinstance(v, int) else str(v)
                                                      for v in self.shape],
            "axis": self.axis, "dtype": self.dtype, "decision": self.decision, "reason": self.reason,
            "detail": {k: v for k, v in self.detail.items() if isinstance(v, plain)},
        }

    def line(self) -> str:
        shape = "?" if self.shape is None else "[" + ",".join(str(s) for s in self.shape) + "]"
        axis = "" if self.axis is None else f" axis={self.axis}"
        why = f" ({self.reason})" if self.reason else ""
        return f"{self.rewrite:8s} {self.op:12s} {self.name} {shape}{axis} -> {self.decision}{why}"


def matches_any(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def select(sites: list[Site], include: Iterable[str] = (), exclude: Iterable[str] = ()) -> list[Site]:
    """Mark sites outside the include globs, or inside an exclude glob, as skipped (in place)."""
    include, exclude = list(include), list(exclude)
    for s in sites:
        if not s.ok:
            continue
        if include and not matches_any(s.name, include):
            s.skip("not selected (name matches no --sites pattern)")
        elif exclude and matches_any(s.name, exclude):
            s.skip("excluded by --exclude pattern")
    return sites


def keep_selected(found: list[Site], sites: Iterable[Site | str] | None, rewrite: str) -> list[Site]:
    """Skip the eligible sites of `found` not named in `sites` (None: keep all); return those kept.

    `sites` may mix names and Site objects; Site objects of other rewrites are ignored."""
    if sites is not None:
        wanted = {s.name if isinstance(s, Site) else s for s in sites
                  if not isinstance(s, Site) or s.rewrite == rewrite}
        for s in found:
            if s.ok and s.name not in wanted:
                s.skip("not selected")
    return [s for s in found if s.ok]


def inventory_diff(before: dict[str, int], after: dict[str, int]) -> str:
    """`op: before -> after` lines for the op types whose count changed."""
    rows = []
    for op in sorted(set(before) | set(after)):
        b, a = before.get(op, 0), after.get(op, 0)
        if a != b:
            rows.append(f"  {op:16s} {b:5d} -> {a:5d}")
    total = f"  {'(all)':16s} {sum(before.values()):5d} -> {sum(after.values()):5d}"
    return "\n".join(rows + [total])


# --- constants ---------------------------------------------------------------------------------------

def cumsum_matrix(n: int, exclusive: bool = False, reverse: bool = False,
                  dtype: Any = np.float32) -> np.ndarray:
    """M (n×n) with M[i, j] = 1 iff x_j contributes to y_i, so y = M @ x along the summed axis.

    inclusive forward j<=i, exclusive j<i, reverse j>=i, reverse+exclusive j>i. For the last axis use
    x @ M.T (the transposed constant), never a Transpose of x.
    """
    i = np.arange(n)[:, None]
    j = np.arange(n)[None, :]
    if reverse:
        m = (j > i) if exclusive else (j >= i)
    else:
        m = (j < i) if exclusive else (j <= i)
    return m.astype(dtype)


def normalize_axes(axes: Iterable[int], rank: int) -> list[int] | None:
    """Sorted non-negative axes, or None if one is out of range or repeated."""
    out = []
    for a in axes:
        a = int(a)
        if not -rank <= a < rank:
            return None
        out.append(a % rank)
    return sorted(out) if len(set(out)) == len(out) else None


def reduce_plan(axes: list[int], rank: int) -> str:
    """How ReduBA lays the reduction out: 'last', 'second', 'trailing', 'block' or 'transpose'."""
    if axes == [rank - 1]:
        return "last"
    if axes == [rank - 2]:
        return "second"
    contiguous = axes == list(range(axes[0], axes[-1] + 1))
    if contiguous and axes[-1] == rank - 1:
        return "trailing"
    if contiguous:
        return "block"
    return "transpose"
