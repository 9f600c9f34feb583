"""Emulated bf16 / f16 inference on ONNX graphs, and scoring of fixed-length graphs with onnxruntime.

Why emulate: accuracy should be reported at the precision the device runs, and SSD d1 is refused at
bf16/f16 because it cancels catastrophically there. This CPU has no bf16/f16 in OpenVINO (a bf16 hint
silently runs f32), and torch's bf16 is not what an NPU does either (HF's Mamba-2 casts the SSD to
float32 with `.float()`), so neither can be observed by running. `emulate_precision` rewrites the graph.

The model of the hardware ("compute in f32, store every tensor in the narrow format"): every
floating-point tensor the graph reads or produces — float graph inputs, initializers and Constant
weights, every node's float outputs (including the logits) — goes through a Cast round trip
f32 → bf16|f16 → f32, so each op sees rounded inputs, computes (and accumulates) in f32, and its result is
rounded again. onnxruntime's CPU Casts round to nearest even, keep NaN, and overflow to ±inf (f16: above
65504 + half an ulp; bf16: at 0x7F7F8000). Integer / bool tensors are left alone, and so is shape
arithmetic (float tensors computed only from Shape / Size and constants, which a compiler folds in f32);
`keep` names op types whose outputs stay f32, to study mixed precision (e.g. ReduceMean, Softmax).

Limits — it is an emulation and is reported as such: a real NPU may accumulate in a different order or
width (or in bf16), keep some ops in f32 of its own accord (OpenVINO keeps e.g. some normalizations),
fuse ops so that intermediates are never stored, flush subnormals, or saturate f16 instead of going to
inf. Constant subgraphs are rounded after every op, not only once when folded.

    emu = emulate_precision(onnx.load("m.onnx"), "bf16")
    bits_per_byte_onnx(emu, heldout(32768), 256); top1_agreement(original, emu, data, 256)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError

PRECISIONS = ("bf16", "f16")
_TARGET = {"bf16": 16, "f16": 10}  # onnx.TensorProto.BFLOAT16 / FLOAT16
_FLOATS = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16
_SHAPE_SOURCES = {"Shape", "Size"}
# ops through which shape arithmetic flows (not Expand / Tile / ConstantOfShape: those make data)
_SHAPE_OPS = {"Cast", "Add", "Sub", "Mul", "Div", "Ceil", "Floor", "Round", "Max", "Min", "Gather", "Concat",
              "Slice", "Squeeze", "Unsqueeze", "Reshape", "Neg", "Abs", "Sqrt", "Pow", "Mod", "Equal", "Less",
              "Greater", "LessOrEqual", "GreaterOrEqual", "Where", "Identity", "ReduceProd", "Range", "Not"}
_SMALL_CONST = 64  # constants this small may take part in shape arithmetic


def _subgraphs(node: Any) -> list[Any]:
    import onnx

    out = []
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            out.append(a.g)
        elif a.type == onnx.AttributeProto.GRAPHS:
            out.extend(a.graphs)
    return out


def _all_graphs(graph: Any) -> list[Any]:
    out = [graph]
    for node in graph.node:
        for sub in _subgraphs(node):
            out.extend(_all_graphs(sub))
    return out


def _elem_types(model: Any) -> dict[str, int]:
    """Element type of every named tensor (all scopes; exported names are unique), after shape inference."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference is a help, not a requirement: fall back to what the model records
        inferred = model
    types: dict[str, int] = {}
    for g in _all_graphs(inferred.graph):
        for vi in list(g.input) + list(g.output) + list(g.value_info):
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
                types[vi.name] = vi.type.tensor_type.elem_type
        for t in g.initializer:
            types[t.name] = t.data_type
        for node in g.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                types[node.output[0]] = node.attribute[0].t.data_type
    return types


def _shape_derived(model: Any) -> set[str]:
    """Tensors computed only from Shape / Size outputs and small constants through shape-arithmetic ops,
    and the constants only they read."""
    consts: set[str] = set()
    for g in _all_graphs(model.graph):
        consts.update(t.name for t in g.initializer if math.prod(t.dims) <= _SMALL_CONST)
        consts.update(n.output[0] for n in g.node if n.op_type == "Constant")
    derived: set[str] = set()

    def walk(graph: Any) -> None:
        for node in graph.node:
            for sub in _subgraphs(node):
                walk(sub)
            ins = [i for i in node.input if i]
            if node.op_type in _SHAPE_SOURCES:
                derived.update(o for o in node.output if o)
            elif (node.op_type in _SHAPE_OPS and any(i in derived for i in ins)
                  and all(i in derived or i in consts for i in ins)):
                derived.update(o for o in node.output if o)

    walk(model.graph)
    # constants read only by shape arithmetic belong to it (a scale of 1.0 feeding a length, say)
    readers: dict[str, list[Any]] = {}
    for g in _all_graphs(model.graph):
        for node in g.node:
            for i in node.input:
                readers.setdefault(i, []).append(node)
    for name in consts:
        users = readers.get(name, [])
        if users and all(o in derived for n in users for o in n.output if o):
            derived.add(name)
    return derived


class _Names:
    """Fresh tensor / node names that collide with nothing in the model."""

    def __init__(self, model: Any) -> None:
        self.used: set[str] = set()
        for g in _all_graphs(model.graph):
            self.used.update(vi.name for vi in list(g.input) + list(g.output) + list(g.value_info))
            self.used.update(t.name for t in g.initializer)
            for n in g.node:
                self.used.update(list(n.input) + list(n.output) + [n.name])

    def fresh(self, base: str) -> str:
        name, k = base, 0
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name


def _round_trip(src: str, dst: str, elem: int, target: int, names: _Names) -> list[Any]:
    """Cast nodes computing dst = Cast(Cast(src, target), elem)."""
    from onnx import helper

    mid = names.fresh(f"{dst}__{'bf16' if target == 16 else 'f16'}")
    return [helper.make_node("Cast", [src], [mid], to=target, name=names.fresh(f"{mid}/cast")),
            helper.make_node("Cast", [mid], [dst], to=elem, name=names.fresh(f"{dst}/uncast"))]


def _rename_uses(graph: Any, old: str, new: str) -> None:
    for node in graph.node:
        for k, i in enumerate(node.input):
            if i == old:
                node.input[k] = new
        for sub in _subgraphs(node):
            _rename_uses(sub, old, new)


@dataclass
class _Ctx:
    target: int
    keep: frozenset[str]
    types: dict[str, int]
    skip: set[str]
    names: _Names
    rounded: int = 0
    unknown: int = 0

    def wants(self, name: str) -> bool:
        elem = self.types.get(name)
        if elem is None:
            self.unknown += 1
            return False
        return elem in _FLOATS and elem != self.target and name not in self.skip


def _round_graph(graph: Any, ctx: _Ctx, top: bool) -> None:
    """Round every float tensor of `graph` (and of its subgraphs) in place."""
    head: list[Any] = []
    init_names = {t.name for t in graph.initializer}
    if top:  # float graph inputs: consumers read a rounded copy (the interface keeps its names)
        for vi in graph.input:
            if vi.name not in init_names and ctx.wants(vi.name):
                q = ctx.names.fresh(f"{vi.name}__rounded")
                _rename_uses(graph, vi.name, q)
                head += _round_trip(vi.name, q, ctx.types[vi.name], ctx.target, ctx.names)
                ctx.rounded += 1
    graph_inputs = {vi.name for vi in graph.input}
    for t in graph.initializer:  # weights: the stored tensor is renamed, the rounded one takes its name
        if t.name not in graph_inputs and ctx.wants(t.name):
            raw = ctx.names.fresh(f"{t.name}__f32")
            old = t.name
            t.name = raw
            head += _round_trip(raw, old, ctx.types[old], ctx.target, ctx.names)
            ctx.rounded += 1
    body: list[Any] = []
    for node in graph.node:
        for sub in _subgraphs(node):
            _round_graph(sub, ctx, top=False)
        body.append(node)
        if node.op_type in ctx.keep:
            continue
        for k, out in enumerate(node.output):
            if out and ctx.wants(out):
                raw = ctx.names.fresh(f"{out}__f32")
                node.output[k] = raw
                body += _round_trip(raw, out, ctx.types[out], ctx.target, ctx.names)
                ctx.rounded += 1
    del graph.node[:]
    graph.node.extend(head + body)


def emulate_precision(model: Any, precision: str, keep: Iterable[str] = ()) -> Any:
    """A copy of `model` in which every float tensor is rounded to `precision` ("bf16" | "f16") after it
    is produced (see the module docstring for the model of the hardware and its limits).

    `keep`: op types whose outputs stay unrounded (mixed precision). The copy records what was done in
    its metadata (`actiba.emulated_precision`, `actiba.emulated_keep`, `actiba.emulated_tensors`).
    """
    import onnx

    if precision not in _TARGET:
        raise InputError(f"unknown emulated precision {precision!r}; use {' or '.join(PRECISIONS)}")
    if isinstance(keep, str):
        keep = (keep,)
    keep = frozenset(keep)
    if not isinstance(model, onnx.ModelProto):
        raise InputError(f"emulate_precision needs an onnx.ModelProto, got {type(model).__name__}")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        raise InputError(f"emulating {precision} needs opset >= 13 (bf16 Casts), the model has opset {opset}")
    new = onnx.ModelProto.FromString(model.SerializeToString())
    ctx = _Ctx(_TARGET[precision], keep, _elem_types(new), _shape_derived(new), _Names(new))
    _round_graph(new.graph, ctx, top=True)
    del new.graph.value_info[:]  # renamed tensors: stale entries would mislead; onnxruntime re-infers
    for key, value in (("actiba.emulated_precision", precision), ("actiba.emulated_keep", ",".join(sorted(keep))),
                       ("actiba.emulated_tensors", str(ctx.rounded)),
                       ("actiba.emulated_untyped", str(ctx.unknown))):
        entry = new.metadata_props.add()
        entry.key, entry.value = key, value
    return new


# --- scoring fixed-length graphs with onnxruntime --------------------------------------------------------

def session(model: Any, threads: int = 1) -> Any:
    """An onnxruntime CPU session; basic optimizations only, so no fusion changes what is computed."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    try:
        return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise InputError(f"onnxruntime cannot load the graph: {str(exc).splitlines()[0]}") from None


def _fixed_length(sess: Any, seq_len: int) -> str:
    """The single token-id input's name, after checking the graph takes [1, seq_len]."""
    ins = sess.get_inputs()
    if len(ins) != 1:
        raise InputError(f"expected a graph with one token-id input, got {len(ins)} inputs")
    shape = list(ins[0].shape)
    if len(shape) != 2 or shape[0] not in (1, None) or (isinstance(shape[1], int) and shape[1] != seq_len):
        raise InputError(f"graph input {ins[0].name} has shape {shape}; scoring needs [1, {seq_len}]")
    return ins[0].name


def onnx_logits_fn(model: Any, seq_len: int, threads: int = 1,
                   record: Callable[[np.ndarray], None] | None = None) -> Callable[[Any], Any]:
    """A `perplexity.LogitsFn` over a fixed [1, L] graph (row by row); `record` sees each row's logits."""
    import torch

    sess = session(model, threads)
    name = _fixed_length(sess, seq_len)

    def fn(ids: Any) -> Any:
        arr = np.asarray(ids, dtype=np.int64)
        outs = []
        for row in arr:
            logits = np.asarray(sess.run(None, {name: row[None, :]})[0], dtype=np.float32)
            if record is not None:
                record(logits[0])
            outs.append(logits)
        return torch.from_numpy(np.concatenate(outs, axis=0))

    return fn


def bits_per_byte_onnx(model: Any, data: bytes, seq_len: int, threads: int = 1) -> float:
    """Held-out bits/byte of a fixed-length [1, seq_len] graph, windowed exactly as
    `perplexity.windows_bits_per_byte` (whole disjoint windows, each after the start token)."""
    from .perplexity import windows_bits_per_byte

    return windows_bits_per_byte(onnx_logits_fn(model, seq_len, threads), data, seq_len)


@dataclass
class Comparison:
    """One graph scored against a reference graph on the same windows."""

    bits_per_byte: float
    top1_agreement: float  # fraction of positions whose top-1 sets intersect (ties count as agreeing)
    max_abs_logit_diff: float
    positions: int


def window_logits(model: Any, data: bytes, seq_len: int, threads: int = 1) -> tuple[float, list[np.ndarray]]:
    """(bits/byte, each window's [L, V] logits) in scoring order — the reference for `compare`."""
    from .perplexity import windows_bits_per_byte

    logits: list[np.ndarray] = []
    bpb = windows_bits_per_byte(onnx_logits_fn(model, seq_len, threads, logits.append), data, seq_len)
    return bpb, logits


def _agree(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per position: is some token top-1 under both? (bf16 logits tie often; argmax's first index would
    call a tie a disagreement depending on token order.)"""
    top_a = a == a.max(axis=-1, keepdims=True)
    top_b = b == b.max(axis=-1, keepdims=True)
    return (top_a & top_b).any(axis=-1)


def compare(model: Any, reference: list[np.ndarray], data: bytes, seq_len: int, threads: int = 1) -> Comparison:
    """Score `model` (onnxruntime) and compare its logits window by window with `reference` (from `window_logits`)."""
    return compare_fn(lambda record: onnx_logits_fn(model, seq_len, threads, record), reference, data, seq_len)


def compare_fn(make_fn: Callable[[Callable[[np.ndarray], None]], Callable[[Any], Any]], reference: list[np.ndarray],
               data: bytes, seq_len: int) -> Comparison:
    """`compare` for any runtime: `make_fn(record)` returns a `perplexity.LogitsFn` that calls `record` with
    each window's [L, V] logits (`onnx_logits_fn`, or `perplexity.openvino_logits_fn` for a native-precision
    OpenVINO run), so emulated and native runs are compared with one reference the same way."""
    from .perplexity import windows_bits_per_byte

    state = {"i": 0, "agree": 0, "n": 0, "diff": 0.0}

    def record(logits: np.ndarray) -> None:
        i = state["i"]
        if i >= len(reference) or reference[i].shape != logits.shape:
            raise InputError("the reference logits do not match these windows (other data or seq_len?)")
        ref = reference[i]
        state["agree"] += int(_agree(ref, logits).sum())
        state["n"] += logits.shape[0]
        d = np.abs(ref.astype(np.float64) - logits)
        state["diff"] = max(state["diff"], math.inf if np.isnan(d).any() else float(d.max()))
        state["i"] = i + 1

    bpb = windows_bits_per_byte(make_fn(record), data, seq_len)
    if state["i"] != len(reference):
        raise InputError(f"scored {state['i']} windows, the reference has {len(reference)}")
    return Comparison(bpb, state["agree"] / state["n"], state["diff"], int(state["n"]))


def top1_agreement(model_a: Any, model_b: Any, data: bytes, seq_len: int, threads: int = 1) -> float:
    """Fraction of scored positions where the two graphs share a top-1 token (same windows as scoring)."""
    _, ref = window_logits(model_a, data, seq_len, threads)
    return compare(model_b, ref, data, seq_len, threads).top1_agreement
