"""CumBA / ReduBA / ActiBA / SSD rules on OpenVINO models (`ov.Model`, IR `.xml` + `.bin`) by a direct graph walk.

The rules (`rewrite.rules`) read the model through `openvino_view.OvView` and build through `OvBuilder`;
this module drives them and runs the results. A walk over `get_ordered_ops()` is simpler than
MatcherPasses for these patterns and lists the same `Site` decisions as the ONNX level in a dry run.
Replacements take over the original output (tensor names included) with `Output.replace`, so
consumers and model outputs are untouched. Verification compiles both models for CPU with an explicit
f32 inference precision (CPU would pick bf16 where it can).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..errors import InputError
from ._inputs import max_abs_diff, random_array
from .openvino_view import OvBuilder, OvView
from .openvino_view import const_of as _const  # noqa: F401  (older callers)
from .openvino_view import shape_of as _shape  # noqa: F401
from .rules import RULES
from .rules.base import Context, Rule, make_site, select
from .spec import Site

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


# --- sites -----------------------------------------------------------------------------------------

def _rule_sites(model: Any, rule: Rule, tables: Any, site_tables: list[tuple[str, Any]] | None,
                ctx: Context) -> list[Site]:
    view = OvView(model)
    nodes = view.nodes()
    sites = [make_site(rule, view, found) for ops in rule.passes for node in nodes
             if view.op(node) in ops and (found := rule.match(view, node, ctx)) is not None]
    if rule.name == "actiba":
        from .rules import actiba

        fn_tables = _function_tables(tables)
        for site in sites:
            if site.ok:
                actiba.pick_table(site, fn_tables, site_tables or [])
    return sites


def find_sites(model: Any, rewrite: str, tables: Any = None,
               site_tables: list[tuple[str, Any]] | None = None, precision: str = "f32") -> list[Site]:
    """Every place `rewrite` (a rule name, see `rules.RULES`) could apply, with its decision.

    ActiBA `tables`: {function: Table}; per-site sets only in the shared form (see `_function_tables`).
    Rules implemented for ONNX only (the contraction) find nothing here.
    """
    rule = RULES.get(rewrite)
    if "openvino" not in rule.levels:
        return []
    return _rule_sites(model, rule, tables, site_tables, Context(precision))


def _replace(rule: Rule, sites: list[Site], lowering: str) -> None:
    """Build every chosen site (in place) and re-point the replaced outputs' users."""
    replaced: dict[Any, Any] = {}
    for s in sites:
        m = s.match
        if hasattr(m, "lowering"):
            m.lowering = lowering
        b = OvBuilder(replaced)
        try:
            news = rule.build(b, m)
        except ImportError as exc:
            s.skip(f"lowering unavailable ({exc})")
            continue
        for old, new in zip(m.replaces, news, strict=True):
            old = b._in(old)
            if len(m.replaces) == 1 and new.get_node().get_name() in b.made:
                new.get_node().set_friendly_name(s.name)
                old.get_node().set_friendly_name(s.name + "/replaced")
            old.replace(new)
            replaced[(old.get_node().get_name(), old.get_index())] = new


def apply(model: Any, rewrites: Iterable[str], sites: Iterable[Site | str] | None = None,
          tables: Any = None, site_tables: list[tuple[str, Any]] | None = None,
          lowering: str = "auto", precision: str = "f32",
          choose: Callable[[list[Site]], None] | None = None) -> tuple[Any, list[Site]]:
    """Return (a rewritten clone of `model`, every site considered with its decision); the rules run in
    `rules.RULES` order, each on the result of the one before."""
    rules = [r for r in RULES.ordered(rewrites) if "openvino" in r.levels]  # the contraction is ONNX-only
    model = model.clone()
    wanted = None if sites is None else {s.name if isinstance(s, Site) else s for s in sites}
    all_sites: list[Site] = []
    for rule in rules:
        found = _rule_sites(model, rule, tables, site_tables, Context(precision))
        chosen = select(found, wanted, choose)
        if chosen:
            _replace(rule, chosen, lowering)
            model.validate_nodes_and_infer_types()
        all_sites.extend(found)
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
