"""CumBA / ReduBA / ActiBA on OpenVINO models (`ov.Model`, IR `.xml` + `.bin`) by a direct graph walk.

A walk over `get_ordered_ops()` is simpler than MatcherPasses for these single-op patterns and lets the
same `Site` decisions as the ONNX level be listed in a dry run. Replacements take over the original
output (tensor names included) with `Output.replace`, so consumers and model outputs are untouched.
Verification compiles both models for CPU with an explicit f32 inference precision (CPU would pick bf16
where it can).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np

from .. import activations
from ..errors import InputError
from . import spec
from ._inputs import max_abs_diff, random_array
from .spec import Site

_FLOAT = ("f32", "f16", "bf16", "f64")
_ACT_OPS = activations.OPENVINO_OPS  # single ops that mean one function (the activation registry)


def _ops() -> Any:
    from openvino import opset13

    return opset13


# --- I/O -------------------------------------------------------------------------------------------------------

def load_model(path: str | os.PathLike) -> Any:
    """Read an IR (.xml with its .bin) or anything `Core.read_model` reads; one InputError line on failure."""
    import openvino as ov

    p = os.fspath(path)
    if not os.path.exists(p):
        raise InputError(f"model {p} does not exist")
    if os.path.isdir(p):
        raise InputError(f"model {p} is a folder, not a model file")
    try:
        return ov.Core().read_model(p)
    except Exception as exc:  # RuntimeError with a multi-line message
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read OpenVINO model {p}: {first[:200]}") from None


def save_model(model: Any, path: str | os.PathLike) -> None:
    """Write `path` (.xml) and its .bin atomically (the one IR writer, in `actiba.lower`)."""
    from ..lower.openvino_lower import save_model as save_ir

    save_ir(model, path)


def inventory(model: Any) -> dict[str, int]:
    return dict(Counter(op.get_type_name() for op in model.get_ordered_ops()))


def clone(model: Any) -> Any:
    return model.clone()


# --- helpers -------------------------------------------------------------------------------------------------------

def _const(node_output: Any) -> np.ndarray | None:
    node = node_output.get_node()
    if node.get_type_name() == "Constant":
        return np.asarray(node.get_data())
    return None


def _shape(out: Any) -> tuple[Any, ...] | None:
    ps = out.get_partial_shape()
    if ps.rank.is_dynamic:
        return None
    return tuple(d.get_length() if d.is_static else "?" for d in ps)


def _etype(out: Any) -> str:
    return out.get_element_type().get_type_name()


def _consts(values: np.ndarray, like: Any) -> Any:
    """A constant of `like`'s element type (bf16 via an f32 constant and a Convert)."""
    ops = _ops()
    et = like.get_element_type()
    name = et.get_type_name()
    if name == "bf16":
        return ops.convert(ops.constant(values.astype(np.float32)), "bf16").output(0)
    return ops.constant(values.astype(et.to_dtype())).output(0)


def _ints(values: list[int]) -> Any:
    return _ops().constant(np.array(values, dtype=np.int64)).output(0)


# --- sites ----------------------------------------------------------------------------------------------------------

def _base(rewrite: str, op: Any, x: Any) -> Site:
    site = Site(rewrite, op.get_friendly_name(), op.get_type_name(), _shape(x), dtype=_etype(x))
    site.detail["op"] = op
    if _etype(x) not in _FLOAT:
        site.skip(f"element type {_etype(x)} is not floating point")
    elif site.shape is None:
        site.skip("rank unknown")
    return site


def _cumba_sites(model: Any) -> list[Site]:
    sites = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "CumSum":
            continue
        x = op.input_value(0)
        site = _base("cumba", op, x)
        sites.append(site)
        attrs = op.get_attributes()
        site.detail.update(exclusive=bool(attrs.get("exclusive")), reverse=bool(attrs.get("reverse")))
        if not site.ok:
            continue
        ax = _const(op.input_value(1)) if op.get_input_size() > 1 else np.array(0)
        if ax is None or ax.size != 1:
            site.skip("axis is not a constant")
            continue
        rank = len(site.shape)
        a = int(ax.reshape(-1)[0])
        if not -rank <= a < rank:
            site.skip(f"axis {a} out of range")
            continue
        a %= rank
        site.axis = a - rank
        n = site.shape[a]
        if not isinstance(n, int):
            site.skip(f"length along axis {a - rank} is dynamic; the triangular constant needs it static")
            continue
        site.detail.update(a=a, rank=rank, n=n)
        site.reason = f"n={n}: " + ("x @ Uᵀ" if a == rank - 1 else "L @ x" if a == rank - 2 else "reshape, L @ x")
    return sites


def _reduba_sites(model: Any) -> list[Site]:
    sites = []
    for op in model.get_ordered_ops():
        if op.get_type_name() not in ("ReduceSum", "ReduceMean"):
            continue
        x = op.input_value(0)
        site = _base("reduba", op, x)
        sites.append(site)
        site.detail.update(keepdims=bool(op.get_attributes().get("keep_dims")),
                           mean=op.get_type_name() == "ReduceMean")
        if not site.ok:
            continue
        axes = _const(op.input_value(1))
        if axes is None:
            site.skip("axes input is not a constant")
            continue
        rank = len(site.shape)
        if axes.size == 0:
            site.axis = []
            site.detail["plan"] = "identity"
            site.reason = "empty axes: Identity"
            continue
        if rank == 0:
            site.skip("scalar input")
            continue
        norm = spec.normalize_axes(axes.reshape(-1).tolist(), rank)
        if norm is None:
            site.skip(f"axes {axes.tolist()} invalid for rank {rank}")
            continue
        site.axis = [a - rank for a in norm]
        dyn = [a - rank for a in norm if not isinstance(site.shape[a], int)]
        if dyn:
            site.skip(f"reduced axes {dyn} have dynamic length; the ones vector needs it static")
            continue
        plan = spec.reduce_plan(norm, rank)
        if plan == "block" and rank - norm[-1] > 2 and not all(isinstance(d, int) for d in site.shape[norm[-1] + 1:]):
            plan = "transpose"
        k = math.prod(site.shape[a] for a in norm)
        site.detail.update(axes=norm, rank=rank, k=k, plan=plan)
        site.reason = f"K={k}: {plan}"
    return sites


def _function_tables(tables: Any) -> dict[str, Any]:
    """{function: table} for the OpenVINO level, which cannot name sites.

    Decided: OpenVINO IR keeps ONNX node names as friendly names but drops the module ``namespace``
    metadata, so site ids cannot be recovered here. A set whose keys are all function-wide globs
    (``*:silu#*``, i.e. shared tables) is taken as function tables; any real per-site key is an InputError.
    """
    import re

    from ..tableset import TableSet

    by_fn, chooser = TableSet.split(tables)
    if chooser is None:
        return by_fn
    shared = {}
    for key, table in chooser.tables.items():
        m = re.fullmatch(r"\*:([a-z][a-z-]*)#\*", key)
        if m is None:
            raise InputError(f"per-site tables (key {key!r}) need the ONNX graph: OpenVINO IR does not keep "
                             "the module names site ids are made of; rewrite the .onnx, then convert it")
        shared[m.group(1)] = table
    return {**by_fn, **shared}


def _actiba_sites(model: Any, tables: Any, site_tables: list[tuple[str, Any]]) -> list[Site]:
    tables = _function_tables(tables)
    sites: list[Site] = []
    claimed: set[str] = set()
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Multiply":
            continue
        for xi, si in ((0, 1), (1, 0)):
            s = op.input_value(si).get_node()
            if s.get_type_name() == "Sigmoid" and s.input_value(0) == op.input_value(xi):
                x = op.input_value(xi)
                site = _base("actiba", op, x)
                site.op = "Multiply(x,Sigmoid(x))"
                site.detail.update(x_index=xi, function="silu", beta=1.0)
                sites.append(site)
                claimed.add(s.get_friendly_name())
                break
    for op in model.get_ordered_ops():
        t = op.get_type_name()
        if op.get_friendly_name() in claimed:
            continue
        fn, beta = _ACT_OPS.get(t), None
        if t == "SoftPlus":
            beta = 1.0
        elif t == "Swish":
            fn = "silu"
            b = _const(op.input_value(1)) if op.get_input_size() > 1 else np.array(1.0)
            beta = None if b is None else float(b.reshape(-1)[0])
        elif t == "Gelu":
            fn = "gelu-tanh" if str(op.get_attributes().get("approximation_mode", "")).upper() == "TANH" else "gelu"
        if fn is None:
            continue
        x = op.input_value(0)
        site = _base("actiba", op, x)
        site.detail.update(x_index=0, function=fn, beta=beta)
        sites.append(site)
        if t == "Swish" and beta is None:
            site.skip("Swish beta is not a constant")
    for site in sites:
        if site.ok:
            _pick_table(site, tables, site_tables)
    return sites


def _pick_table(site: Site, tables: dict[str, Any], site_tables: list[tuple[str, Any]]) -> None:
    fn = site.detail["function"]
    table = next((t for pat, t in site_tables if spec.matches_any(site.name, [pat])), None) or tables.get(fn)
    if table is None:
        site.skip(f"no table for {fn}")
        return
    if (why := spec.table_mismatch(table, fn, site.detail.get("beta"))) is not None:
        site.skip(why)
        return
    site.detail["table"] = table
    site.reason = f"{fn} table ({table.segments} segments)"


def find_sites(model: Any, rewrite: str, tables: Any = None,
               site_tables: list[tuple[str, Any]] | None = None) -> list[Site]:
    """Every place `rewrite` ('cumba', 'reduba', 'actiba') could apply, with its decision.

    ActiBA `tables`: {function: Table}; per-site sets only in the shared form (see `_function_tables`).
    """
    if rewrite == "cumba":
        return _cumba_sites(model)
    if rewrite == "reduba":
        return _reduba_sites(model)
    if rewrite == "actiba":
        return _actiba_sites(model, tables, site_tables or [])
    if rewrite == "contract":
        return []  # the broadcast Mul→ReduceSum contraction is implemented at the ONNX level only
    raise InputError(f"unknown rewrite {rewrite!r}; known: {', '.join(spec.GRAPH_REWRITES)}")


# --- replacements -----------------------------------------------------------------------------------------------------

def _build_cumba(site: Site, x: Any) -> Any:
    ops = _ops()
    d = site.detail
    m = spec.cumsum_matrix(d["n"], d["exclusive"], d["reverse"], np.float64)
    a, rank = d["a"], d["rank"]
    if a == rank - 1:
        return ops.matmul(x, _consts(m.T, x), False, False).output(0)
    if a == rank - 2:
        return ops.matmul(_consts(m, x), x, False, False).output(0)
    r = ops.reshape(x, _ints([0] * a + [d["n"], -1]), special_zero=True)
    mm = ops.matmul(_consts(m, x), r, False, False)
    return ops.reshape(mm, ops.shape_of(x), special_zero=False).output(0)


def _build_reduba(site: Site, x: Any) -> Any:
    ops = _ops()
    d = site.detail
    if d["plan"] == "identity":
        return x
    axes, rank, k, keep, plan = d["axes"], d["rank"], d["k"], d["keepdims"], d["plan"]
    vec = np.full(k, 1.0 / k if d["mean"] else 1.0)
    if plan == "last":
        return ops.matmul(x, _consts(vec.reshape(k, 1) if keep else vec, x), False, False).output(0)
    if plan == "second":
        return ops.matmul(_consts(vec.reshape(1, k) if keep else vec, x), x, False, False).output(0)
    if plan == "block":
        a0, a1 = axes[0], axes[-1]
        r = ops.reshape(x, _ints([0] * a0 + [k, -1]), special_zero=True)
        out = ops.matmul(_consts(vec, x), r, False, False).output(0)
        if rank - a1 > 2:
            out = ops.reshape(out, _ints([0] * a0 + list(site.shape[a1 + 1:])), special_zero=True).output(0)
    else:
        kept = [i for i in range(rank) if i not in axes]
        src = x
        if plan == "transpose":
            src = ops.transpose(x, _ints(kept + axes)).output(0)
        r = ops.reshape(src, _ints([0] * len(kept) + [k]), special_zero=True)
        out = ops.matmul(r, _consts(vec, x), False, False).output(0)
    if keep:
        out = ops.unsqueeze(out, _ints(axes)).output(0)
    return out


def _build_actiba(site: Site, x: Any, lowering: str) -> Any:
    from ..lower.openvino_lower import table_subgraph

    return table_subgraph(site.detail["table"], x, lowering=lowering)


def apply(model: Any, rewrites: Iterable[str], sites: Iterable[Site | str] | None = None,
          tables: Any = None, site_tables: list[tuple[str, Any]] | None = None,
          lowering: str = "auto") -> tuple[Any, list[Site]]:
    """Return (a rewritten clone of `model`, every site considered with its decision)."""
    rewrites = list(rewrites)
    unknown = set(rewrites) - set(spec.GRAPH_REWRITES)
    if unknown:
        raise InputError(f"unknown rewrite(s) {sorted(unknown)}; known: {', '.join(spec.GRAPH_REWRITES)}")
    model = model.clone()
    wanted = None if sites is None else {s.name if isinstance(s, Site) else s for s in sites}
    all_sites: list[Site] = []
    for rw in ("cumba", "reduba", "actiba"):
        if rw not in rewrites:
            continue
        found = find_sites(model, rw, tables, site_tables)
        for s in found:
            if s.ok and wanted is not None and s.name not in wanted:
                s.skip("not selected")
            if not s.ok:
                continue
            op = s.detail["op"]
            x = op.input_value(s.detail.get("x_index", 0))  # now, after earlier replacements
            try:
                new = (_build_cumba(s, x) if rw == "cumba" else _build_reduba(s, x) if rw == "reduba"
                       else _build_actiba(s, x, lowering))
            except ImportError as exc:
                s.skip(f"lowering unavailable ({exc})")
                continue
            if new.get_node().get_type_name() != "Parameter":
                new.get_node().set_friendly_name(s.name)
                op.set_friendly_name(s.name + "/replaced")
            op.output(0).replace(new)
        all_sites.extend(found)
    model.validate_nodes_and_infer_types()
    return model, all_sites


# --- verification ---------------------------------------------------------------------------------------------------

def compile_f32(model: Any, threads: int = 1) -> Any:
    """Compile for CPU in f32; retry without snippets if the CPU plugin cannot fuse a long
    elementwise chain ("Can't allocate registers for a snippet", seen with many-segment tables)."""
    import openvino as ov

    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}
    try:
        return ov.Core().compile_model(model, "CPU", config)
    except RuntimeError as exc:
        if "snippet" not in str(exc):
            raise
        import sys

        print("actiba: OpenVINO CPU could not compile a fused elementwise chain; verifying with "
              "SNIPPETS_MODE=DISABLE (deploy with that setting too)", file=sys.stderr)
        return ov.Core().compile_model(model, "CPU", {**config, "SNIPPETS_MODE": "DISABLE"})


def random_inputs(model: Any, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = []
    for p in model.get_parameters():
        ps = p.get_output_partial_shape(0)
        dims = [d.get_length() if d.is_static else None for d in ps]
        feeds.append(random_array(dims, p.get_output_element_type(0).to_dtype(), rng))
    return feeds


def run(model: Any, feeds: list[np.ndarray] | dict[str, np.ndarray]) -> list[np.ndarray]:
    compiled = compile_f32(model)
    if isinstance(feeds, dict):
        names = [p.get_friendly_name() for p in model.get_parameters()]
        missing = [n for n in names if n not in feeds]
        if missing:
            raise InputError(f"inputs file lacks model input(s) {missing}")
        feeds = [feeds[n] for n in names]
    res = compiled(feeds)
    return [np.asarray(res[o]) for o in compiled.outputs]


def compare(original: Any, rewritten: Any, inputs: dict[str, np.ndarray] | None = None, seed: int = 0) -> float:
    """Max |output difference| of original vs rewritten (OpenVINO CPU, f32), random and given inputs."""
    feeds = random_inputs(original, seed)
    worst = max_abs_diff(run(original, feeds), run(rewritten, feeds))
    if inputs:
        worst = max(worst, max_abs_diff(run(original, inputs), run(rewritten, inputs)))
    return worst
