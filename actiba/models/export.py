"""Export a Mamba-family causal LM (input_ids -> logits) to ONNX and OpenVINO IR, verified against torch.

Why verify on every export: exporters silently drop or change ops; a max-logit-difference check against
the torch model (onnxruntime, and OpenVINO CPU with an explicit f32 precision hint) catches that at once.
Mamba v1 is exported through `mamba_scan`'s ``stepped`` scan (chunk 32) by default: HF's loop would
unroll into one copy per token and pin the sequence length, and ``stepped`` is also faster than that
loop on OpenVINO CPU (1.38x at 256 tokens on the embedded model; ``chunked`` is the most compact graph
but ~4x slower there — eval/results/mamba_scan.md); FalconMamba and Jamba get the same scan with
their B/C/dt norms. The architecture registry supplies the rest: MoE experts in the implementation that
exports (`experts_view`), and logit scaling (Falcon-H1's Mul, Granite's Div, Gemma 2 / 3's tanh
softcapping) stays in the graph.

    python -m actiba.models.export embedded:mamba2 --to openvino -o out/mamba2.xml --seq-len 128
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from .._atomic import atomic_path, write_text
from .._quiet import legacy_onnx_export, quiet_torch_export
from ..errors import InputError
from . import arch

Precision = Literal["f32", "bf16"]
LogitsMode = Literal["all", "last"]
LOGITS_MODES = ("all", "last")
ScanChoice = Literal["stepped", "chunked", "doubling", "loop"]
SCANS = ("stepped", "chunked", "doubling", "loop")


@dataclass
class ExportResult:
    """What was written and how closely it matches torch (max |logit difference| on a random input)."""

    path: str
    format: str
    seq_len: int | None
    max_abs_diff: float
    checked_seq_len: int
    precision: str | None = None
    exporter: str = "dynamo"
    nodes: int | None = None
    logits: str = "all"  # "all": [1, seq, V]; "last": [1, 1, V]


class LogitsOnly(torch.nn.Module):
    """Wraps an HF causal LM as ``input_ids -> logits`` without cache (what every exporter needs).

    `last_only` keeps only the last position's logits ([1, 1, V]): a generator's prefill needs nothing
    else, and the LM head over every position is a large share of a 130M model's prefill (HF generate
    passes ``logits_to_keep=1`` for the same reason). Perplexity scoring needs every position.
    """

    def __init__(self, inner: Any, last_only: bool = False) -> None:
        super().__init__()
        self.inner = inner
        self.last_only = last_only

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if not self.last_only:
            return self.inner(input_ids=input_ids, use_cache=False).logits
        if _accepts_logits_to_keep(self.inner):
            return self.inner(input_ids=input_ids, use_cache=False, logits_to_keep=1).logits
        hidden = self.inner.backbone(input_ids=input_ids, use_cache=False)[0]  # older transformers: slice here
        head = self.inner.lm_head
        return head(hidden[:, -1:, :].to(head.weight.dtype)).float()


def _accepts_logits_to_keep(model: Any) -> bool:
    import inspect

    return "logits_to_keep" in inspect.signature(model.forward).parameters


def check_logits_mode(logits: str) -> LogitsMode:
    """`logits` if it is a known mode ("all": every position; "last": the last position only)."""
    if logits not in LOGITS_MODES:
        raise InputError(f"unknown logits mode {logits!r}; use all or last")
    return logits  # type: ignore[return-value]


_SCALE_OPS = ("Mul", "Div")  # Falcon-H1 multiplies the logits by lm_head_multiplier, Granite divides by logits_scaling
# Gemma 2 / 3 soft-cap the logits: cap·tanh(logits / cap), exported as Div -> Tanh -> Mul by constant scalars
_TAIL_UNARY = ("Tanh",)
_MAX_TAIL = 4  # the longest tail after the LM head (softcapping's three ops, plus one scale)


def _constant_scalar(g: Any, name: str) -> bool:
    """Whether `name` is a one-element initializer or Constant output (a logit scale, not a tensor)."""
    from onnx import numpy_helper

    for t in g.initializer:
        if t.name == name:
            return numpy_helper.to_array(t).size == 1
    for node in g.node:
        if node.op_type == "Constant" and name in node.output:
            return all(numpy_helper.to_array(a.t).size == 1 for a in node.attribute if a.name == "value")
    return False


def last_logits_graph(onnx_model: Any) -> Any:
    """A copy of an all-positions graph (``logits`` [1, L, V]) that returns only the last position.

    Why at graph level: it is what `LogitsOnly(last_only=True)` exports — a Slice of the LM head's
    input to the last position — without a second torch export (the slow step, ~10-40 s here), and
    it keeps every node of the body, so site ids and rewrites line up with the all-positions graph.
    Expects the graph output to come from the LM head (a MatMul of [.., L, H] hidden states), directly
    or through a short tail of Mul / Div by constant scalars and Tanh (logit scaling: Falcon-H1's Mul,
    Granite's Div; Gemma 2 / 3's softcapping Div -> Tanh -> Mul), which is kept.
    """
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(onnx_model)
    g = model.graph
    if len(g.output) != 1:
        raise InputError(f"expected one graph output (the logits), found {len(g.output)}")
    out = g.output[0]

    def producer(name: str) -> tuple[int | None, Any]:
        at = next((i for i, n in enumerate(g.node) if name in n.output), None)
        return at, (g.node[at] if at is not None else None)

    at, head = producer(out.name)
    for _ in range(_MAX_TAIL):  # elementwise by constant scalars: slicing before them changes nothing else
        if head is None:
            break
        if head.op_type in _TAIL_UNARY:
            at, head = producer(head.input[0])
        elif head.op_type in _SCALE_OPS and _constant_scalar(g, head.input[1]):
            at, head = producer(head.input[0])
        elif head.op_type == "Mul" and _constant_scalar(g, head.input[0]):
            at, head = producer(head.input[1])
        else:
            break
    if head is None or head.op_type != "MatMul":
        kind = "a graph input" if head is None else f"a {head.op_type} node"
        raise InputError(f"output {out.name!r} comes from {kind}, not an LM-head MatMul (optionally scaled by "
                         "constant Mul / Div and soft-capped by Tanh): cannot keep the last position")
    dims = out.type.tensor_type.shape.dim
    if len(dims) != 3:
        raise InputError(f"output {out.name!r} has rank {len(dims)}, expected [batch, seq, vocab]")
    taken = {n for node in g.node for n in (*node.input, *node.output)} | {t.name for t in g.initializer}
    prefix = "actiba_last"
    while any(n.startswith(prefix) for n in taken):
        prefix += "_"
    consts = {"starts": -1, "ends": np.iinfo(np.int64).max, "axes": -2}
    for key, value in consts.items():
        g.initializer.append(numpy_helper.from_array(np.array([value], dtype=np.int64), f"{prefix}_{key}"))
    sliced = f"{prefix}_hidden"
    node = helper.make_node("Slice", [head.input[0], *(f"{prefix}_{k}" for k in consts)], [sliced],
                            name=f"{prefix}_slice")
    head.input[0] = sliced
    g.node.insert(at, node)
    dims[1].Clear()
    dims[1].dim_value = 1
    return model


def ssd_chunk_size(model: Any) -> int | None:
    """The SSD chunk length of `model`, read through its registry entry's config field (Bamba, Granite and
    Falcon-H1 call it ``mamba_chunk_size``); None for Mamba-1 families and unknown models."""
    entry = arch.of(model)
    return entry.chunk_size(model.config) if entry is not None else None


@contextlib.contextmanager
def experts_view(model: Any):
    """Run (or export) `model` with its registry entry's MoE experts implementation, restored afterwards.

    Why: transformers' default ``grouped_mm`` experts have no ONNX lowering ("No ONNX function found for
    transformers.grouped_mm_fallback"), eager experts fail torch.export on data-dependent routing, and
    only ``batched_mm`` (every expert on every token, weighted by the router) exports (Granite-4.0-H, Jamba).
    """
    entry = arch.of(model)
    want = entry.experts_implementation if entry is not None else None
    before = getattr(model.config, "_experts_implementation", None)
    if not want or before == want or not hasattr(model, "set_experts_implementation"):
        yield model
        return
    model.set_experts_implementation(want)
    try:
        yield model
    finally:
        model.set_experts_implementation(before or "grouped_mm")


def check_fits_memory(model: Any, factor: float = 3.0) -> None:
    """Refuse, in one line with the sizes, an export that would not fit in memory.

    Why `factor` 3 (an estimate, not a measurement): the exporter holds the weights, their copy in the
    ONNX proto and the serialised file's buffer at once.
    """
    need = factor * sum(p.numel() * p.element_size() for p in model.parameters())
    free = _available_memory()
    if free is not None and need > free:
        raise InputError(f"model is too large to export here: its weights take {need / factor / 2**30:.1f} GiB "
                         f"and the export needs about {need / 2**30:.1f} GiB, but only {free / 2**30:.1f} GiB "
                         "of memory is available")


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@contextlib.contextmanager
def export_view(model: Any, mamba_scan: ScanChoice = "stepped", chunk_size: int = 32):
    """Yield the model as exported: Mamba v1 with the `mamba_scan` form patched in (HF's own for `loop`)."""
    if mamba_scan not in SCANS:
        raise InputError(f"unknown Mamba scan {mamba_scan!r}; known: {', '.join(SCANS)}")
    if arch.is_selective_scan(model) and mamba_scan != "loop":
        from .mamba_scan import chunked_scan

        with chunked_scan(model, chunk_size, mode=mamba_scan):
            yield model
    else:
        yield model


def fix_transpose_perms(onnx_model: Any) -> int:
    """Make negative ``perm`` entries of Transpose nodes non-negative (onnxruntime / OpenVINO reject them).

    Only possible where the rank is known from the perm length itself (perm lists every axis once).
    Returns the number of nodes changed.
    """
    changed = 0
    for node in onnx_model.graph.node:
        if node.op_type != "Transpose":
            continue
        for attr in node.attribute:
            if attr.name == "perm" and any(p < 0 for p in attr.ints):
                rank = len(attr.ints)
                fixed = [p + rank if p < 0 else p for p in attr.ints]
                del attr.ints[:]
                attr.ints.extend(fixed)
                changed += 1
    return changed


def _random_ids(seq_len: int, seed: int = 0) -> Any:
    return torch.randint(0, 256, (1, seq_len), generator=torch.Generator().manual_seed(seed))


def _torch_logits(model: Any, ids: Any, logits: LogitsMode = "all") -> Any:
    """Reference logits from the unmodified torch model (HF's own scan), as numpy; all positions are
    computed either way and "last" keeps the last one, so the reference does not depend on the slicing."""
    with torch.inference_mode():
        out = model(input_ids=ids, use_cache=False).logits.float().numpy()
    return out[:, -1:, :] if logits == "last" else out


def _diff(got: Any, want: Any) -> float:
    """Max |difference|; a shape mismatch (e.g. an "all" graph checked as "last") is an error, not a broadcast."""
    import numpy as np

    if got.shape != want.shape:
        raise InputError(f"exported logits have shape {list(got.shape)}, torch gives {list(want.shape)}")
    return float(np.abs(got - want).max())


def light_optimize(model: Any) -> None:
    """The exporter's optimizer without its generic pattern rewrites (in place, on an `onnx_ir.Model`).

    Why: `torch.onnx.export(optimize=True)` runs onnxscript's default rewrite rule set over every node,
    twice; on the embedded Mamba (stepped scan, 3155 exported nodes) that took 40 of 55 s of the export,
    at load 2.3 on a 2-core EPYC, for nothing the rest of the pipeline needs. Constant folding, the no-op /
    slice / reshape-shape rules, dead-node removal, constant lifting, initializer de-duplication and CSE
    give the same graph by op count on the embedded Mamba (1678 nodes) and Mamba-2 (398) in 2.7 s and
    0.6 s instead; OpenVINO applies its own fusions either way.
    """
    import onnx_ir as ir
    import onnx_ir.passes.common as common
    from onnxscript import rewriter
    from onnxscript.optimizer import _constant_folding as folding
    from onnxscript.rewriter.rules.common import _collapse_slices, _materialize_reshape_shape, _no_op

    rules = rewriter.RewritePass([*_no_op.rules, *_collapse_slices.rules, *_materialize_reshape_shape.rules])
    fold = folding.FoldConstantsPass(shape_inference=True,
                                     input_size_limit=folding.DEFAULT_CONSTANT_FOLD_INPUT_SIZE_LIMIT,
                                     output_size_limit=folding.DEFAULT_CONSTANT_FOLD_OUTPUT_SIZE_LIMIT)
    ir.passes.Sequential(
        common.InlinePass(),
        ir.passes.PassManager([fold, rules, common.RemoveUnusedNodesPass(), common.RemoveUnusedFunctionsPass(),
                               common.RemoveUnusedOpsetsPass()], steps=2, early_stop=True),
        common.RemoveUnusedNodesPass(),
        common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        common.LiftSubgraphInitializersToMainGraphPass(),
        common.DeduplicateInitializersPass(),
        common.CommonSubexpressionEliminationPass(),
        common.OutputFixPass(),
        common.NameFixPass(),
    )(model)


def _export_onnx_model(model: Any, seq_len: int | None, mamba_scan: ScanChoice, chunk_size: int,
                       opset: int, logits: LogitsMode = "all") -> tuple[Any, str]:
    """Run torch's exporter (dynamo first, legacy as fallback) and return (onnx.ModelProto, exporter)."""
    import onnx

    check_logits_mode(logits)
    if seq_len is None and arch.is_selective_scan(model) and mamba_scan == "loop":
        raise InputError("Mamba v1 with the loop scan needs a fixed --seq-len (the loop unrolls per token)")
    # a dynamic export traces with a length that is no multiple of any chunk size, so padding stays symbolic
    check_fits_memory(model)
    example = _random_ids(seq_len or 67)
    with tempfile.TemporaryDirectory() as tmp, export_view(model, mamba_scan, chunk_size), experts_view(model):
        path = Path(tmp) / "model.onnx"
        wrapped = LogitsOnly(model, last_only=logits == "last").eval()
        try:
            seq_dim = torch.export.Dim("seq", min=2, max=65536)
            shapes = None if seq_len is not None else {"input_ids": {1: seq_dim}}
            with contextlib.redirect_stdout(sys.stderr), quiet_torch_export():
                program = torch.onnx.export(wrapped, (example,), dynamo=True, opset_version=opset,
                                            input_names=["input_ids"], output_names=["logits"],
                                            dynamic_shapes=shapes, verbose=False, optimize=False)
                light_optimize(program.model)
                program.save(str(path))
            exporter = "dynamo"
        except Exception as exc:  # fall back to the TorchScript exporter
            print(f"actiba: dynamo export failed ({type(exc).__name__}); using the legacy exporter",
                  file=sys.stderr)
            axes = None if seq_len is not None else {"input_ids": {1: "seq"}} | (
                {"logits": {1: "seq"}} if logits == "all" else {})
            legacy_onnx_export(wrapped, (example,), str(path), opset_version=opset,
                               input_names=["input_ids"], output_names=["logits"], dynamic_axes=axes)
            exporter = "legacy"
        proto = onnx.load(str(path), load_external_data=True)
    fix_transpose_perms(proto)
    return proto, exporter


def _check_out(out: Path) -> None:
    """Fail before the (slow) export if the output cannot be written."""
    if not out.parent.is_dir():
        raise InputError(f"cannot write {out}: folder {out.parent} does not exist")


def _save_onnx(proto: Any, out: Path) -> None:
    import onnx

    with atomic_path(out, suffix=".onnx") as tmp:
        onnx.save_model(proto, str(tmp), save_as_external_data=False)


def check_onnx(model: Any, path: str | os.PathLike, seq_len: int = 128, logits: LogitsMode = "all") -> float:
    """Max |logit difference| between onnxruntime on `path` and the torch model on random ids
    (with ``logits="last"``: the graph's [1, 1, V] output against torch's last position)."""
    import onnxruntime as ort

    ids = _random_ids(seq_len, seed=1)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: ids.numpy()})[0]
    return _diff(got, _torch_logits(model, ids, check_logits_mode(logits)))


def compile_openvino(path_or_model: Any, precision: Precision = "f32", threads: int | None = None,
                     extra: dict[str, Any] | None = None) -> Any:
    """Compile for OpenVINO CPU with an explicit inference precision (CPU defaults to bf16 where it can);
    `extra` adds CPU plugin properties (e.g. `decode.OPENVINO_DECODE_CONFIG`)."""
    import openvino as ov

    if precision not in ("f32", "bf16"):
        raise InputError(f"unknown inference precision {precision!r}; use f32 or bf16")
    core = ov.Core()
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision, **(extra or {})}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    source = path_or_model
    if isinstance(path_or_model, (str, os.PathLike)):
        source = core.read_model(str(path_or_model))
    return core.compile_model(source, "CPU", config)


def actual_precision(compiled: Any) -> str:
    """The inference precision OpenVINO actually uses (it may ignore bf16 on CPUs without it)."""
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    return hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)


def check_openvino(model: Any, path: str | os.PathLike, seq_len: int = 128,
                   precision: Precision = "f32", logits: LogitsMode = "all") -> float:
    """Max |logit difference| between OpenVINO CPU (given precision hint) on `path` and torch."""
    ids = _random_ids(seq_len, seed=1)
    compiled = compile_openvino(path, precision, threads=1)
    got = compiled({0: ids.numpy()})[compiled.output(0)]
    return _diff(got, _torch_logits(model, ids, check_logits_mode(logits)))


def export_onnx(model: Any, out: str | os.PathLike, seq_len: int | None = None,
                mamba_scan: ScanChoice = "stepped", chunk_size: int = 32, opset: int = 18,
                check_seq_len: int = 128, verbose: bool = True, logits: LogitsMode = "all") -> ExportResult:
    """Write `model` as ONNX (input ``input_ids`` [1, seq] int64 -> ``logits``) and verify it.

    `seq_len` None makes the sequence length dynamic; otherwise it is fixed. `logits` "all" gives
    [1, seq, V] (scoring), "last" gives [1, 1, V] (a generator's prefill; see `LogitsOnly`).
    """
    out = Path(out)
    check_logits_mode(logits)
    _check_out(out)
    proto, exporter = _export_onnx_model(model, seq_len, mamba_scan, chunk_size, opset, logits)
    _save_onnx(proto, out)
    check_len = seq_len or check_seq_len
    diff = check_onnx(model, out, check_len, logits)
    result = ExportResult(str(out), "onnx", seq_len, diff, check_len, exporter=exporter,
                          nodes=len(proto.graph.node), logits=logits)
    if verbose:
        print(f"actiba: wrote {out} ({result.nodes} nodes, {exporter} exporter); onnxruntime vs torch "
              f"max |logit diff| = {diff:.3g} at {check_len} tokens", file=sys.stderr)
    return result


def export_openvino(model: Any, out: str | os.PathLike, seq_len: int | None = None,
                    precision: Precision = "f32", mamba_scan: ScanChoice = "stepped", chunk_size: int = 32,
                    opset: int = 18, check_seq_len: int = 128, verbose: bool = True,
                    from_onnx: str | os.PathLike | None = None, logits: LogitsMode = "all") -> ExportResult:
    """Write `model` as OpenVINO IR (``out`` = .xml, plus .bin) via ONNX, verify it with an f32 hint, and
    record the chosen inference precision in the sidecar ``<out>.json``.

    `from_onnx` converts an ONNX file already exported from `model` (in the same `logits` mode) instead
    of exporting again.
    """
    import openvino as ov

    out = Path(out)
    check_logits_mode(logits)
    if out.suffix != ".xml":
        raise InputError(f"OpenVINO output must end in .xml, got {out}")
    _check_out(out)
    if from_onnx is not None:
        exporter = "onnx-file"
        ov_model = ov.convert_model(str(from_onnx))
    else:
        proto, exporter = _export_onnx_model(model, seq_len, mamba_scan, chunk_size, opset, logits)
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = Path(tmp) / "model.onnx"
            _save_onnx(proto, onnx_path)
            ov_model = ov.convert_model(str(onnx_path))
    if seq_len is not None:
        ov_model.reshape({0: [1, seq_len]})
    from ..lower.openvino_lower import save_model as save_ir

    save_ir(ov_model, out)
    check_len = seq_len or check_seq_len
    diff = check_openvino(model, out, check_len, "f32", logits)
    used = actual_precision(compile_openvino(out, precision, threads=1))
    result = ExportResult(str(out), "openvino", seq_len, diff, check_len, precision=used, exporter=exporter,
                          nodes=len(ov_model.get_ops()), logits=logits)
    sidecar = {"inference_precision_hint": precision, "inference_precision": used, "device": "CPU",
               "verified_with": "f32", "openvino": ov.__version__, **asdict(result)}
    write_text(out.with_suffix(".json"), json.dumps(sidecar, indent=2) + "\n")
    if verbose:
        print(f"actiba: wrote {out} ({result.nodes} ops); OpenVINO CPU f32 vs torch max |logit diff| = "
              f"{diff:.3g} at {check_len} tokens; inference precision recorded: {used}", file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m actiba.models.export MODEL --to onnx|openvino -o OUT [--seq-len N] [--precision f32]``."""
    from . import load

    ap = argparse.ArgumentParser(prog="python -m actiba.models.export", description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--to", choices=["onnx", "openvino"], required=True)
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--seq-len", type=int, help="fixed sequence length (default: dynamic)")
    ap.add_argument("--precision", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--mamba-scan", choices=list(SCANS), default="stepped")
    ap.add_argument("--logits", choices=list(LOGITS_MODES), default="all",
                    help="all positions (scoring) or the last one only (a generator's prefill)")
    args = ap.parse_args(argv)
    try:
        model = load(args.model)
        if args.to == "onnx":
            export_onnx(model, args.out, args.seq_len, args.mamba_scan, logits=args.logits)
        else:
            export_openvino(model, args.out, args.seq_len, args.precision, args.mamba_scan, logits=args.logits)
    except InputError as exc:
        print(f"actiba: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
