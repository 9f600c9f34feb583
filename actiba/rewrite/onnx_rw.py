"""CumBA / ReduBA / contraction / ActiBA on ONNX graphs, inside If / Loop / Scan bodies too.

    sites = find_sites(model, "cumba")                 # every CumSum, with decision and reason
    new, done = apply(model, ["cumba"], sites=[s.name for s in sites if s.axis == -2])

The matching and the replacements are the rules' (`rewrite.rules`, read and written through
`onnx_view`); this module drives them over a graph and runs the results. Each replacement writes the
original output tensor name, so consumers and graph outputs are untouched; pattern nodes, and the
constants and initializers only they read, are removed once nothing reads them (a name read only
inside a body still counts as used). Anything a rule cannot do exactly (dynamic length, non-constant
axis, integer type, ...) is left as it was, with the reason on its `Site`.

Control flow: every graph attribute (If `then_branch`/`else_branch`, Loop/Scan `body`, nested to any
depth) is a scope of its own (`onnx_view._Graph.scopes()`), searched like the top level; a site inside
one is named by the path to it, e.g. `Loop_0/body/If_2/else_branch/Softplus_1`. New constants of a
body replacement are Constant nodes inside that body; fresh names avoid every scope.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..errors import InputError
from ..tableset import TableSet
from . import onnx_subgraphs
from ._inputs import max_abs_diff, random_array
from .onnx_view import FLOAT_TYPES, OnnxBuilder, OnnxView, _attr, _Builder, _Graph, _site_name  # noqa: F401
from .rules import RULES
from .rules.base import Context, Rule, make_site, select
from .spec import Site

# --- loading and inventory ---------------------------------------------------------------------------

def load_model(path: str | os.PathLike) -> Any:
    """Read and check an ONNX model; any problem is one InputError line."""
    import onnx

    p = os.fspath(path)
    if not os.path.exists(p):
        raise InputError(f"model {p} does not exist")
    if os.path.isdir(p):
        raise InputError(f"model {p} is a folder, not an .onnx file")
    try:
        model = onnx.load(p)
    except Exception as exc:  # onnx raises DecodeError, OSError ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read ONNX model {p}: {first[:200]}") from None
    if not model.graph.node and not model.graph.output:
        raise InputError(f"cannot read ONNX model {p}: no graph in the file")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # lenient: onnxruntime runs many models the checker dislikes
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"actiba: warning: ONNX checker: {first[:200]}", file=sys.stderr)
    return model


def inventory(model: Any, subgraphs: bool = True) -> dict[str, int]:
    """Node counts by op type, inside If / Loop / Scan bodies too unless `subgraphs=False`."""
    nodes = onnx_subgraphs.walk(model.graph) if subgraphs else model.graph.node
    return dict(Counter(n.op_type for n in nodes))


def save_model(model: Any, path: str | os.PathLike) -> None:
    """Write atomically (temp file + rename)."""
    import onnx

    from .._atomic import atomic_path

    with atomic_path(path, suffix=".onnx") as tmp:
        onnx.save_model(model, str(tmp))


# --- finding sites ---------------------------------------------------------------------------------

def _make_site(rule: Rule, view: OnnxView, found: Any) -> Site:
    site = make_site(rule, view, found)
    site.scope = view.g  # the If/Loop/Scan body the site lives in
    return site


def rule_sites(g: _Graph, rule: Rule, ctx: Context | None = None) -> list[Site]:
    """Every node of `g` (and of its bodies, if the rule reaches them) that `rule` matches or skips."""
    ctx = ctx or Context()
    out = []
    for scope in (g.scopes() if rule.scopes else [g]):
        view = OnnxView(scope)
        nodes = view.nodes()
        for ops in rule.passes:
            for node in nodes:
                if view.op(node) in ops and (found := rule.match(view, node, ctx)) is not None:
                    out.append(_make_site(rule, view, found))
    return out


def _namespace(node: Any) -> str:
    return next((p.value for p in node.metadata_props if p.key == "namespace"), "")


def _assign_site_ids(g: _Graph, sites: list[Site]) -> None:
    """``path:function#k`` from the root node's namespace metadata (see site_ids) on each ActiBA site;
    k counts that function's sites per module in graph order, which is execution order."""
    from . import site_ids

    order = {id(n): i for i, n in enumerate(onnx_subgraphs.walk(g.graph))}
    counts: dict[tuple[str, str], int] = {}
    for site in sorted((s for s in sites if s.match is not None),
                       key=lambda s: min(order.get(id(n), 0) for n in s.match.nodes)):
        path = site_ids.onnx_module_path(_namespace(site.match.head.root))
        if path is None:
            continue
        fn = site.match.function
        k = counts.get((path, fn), 0)
        counts[(path, fn)] = k + 1
        site.match.site_id = site.detail["site_id"] = site_ids.format_site(path, fn, k)


def _actiba_sites(g: _Graph, tables: Any, site_tables: list[tuple[str, Any]]) -> list[Site]:
    from .rules import actiba

    fn_tables, chooser = TableSet.split(tables)
    sites = rule_sites(g, actiba.RULE)
    _assign_site_ids(g, sites)
    if chooser is not None:
        ids = [s.detail["site_id"] for s in sites if "site_id" in s.detail]
        if sites and not ids:
            raise InputError("per-site tables need node namespace metadata (an ONNX graph exported by "
                             "actiba.models.export / the torch dynamo exporter); this graph has none")
        chooser.check_unmatched(ids, "this ONNX graph")
    for site in sites:
        if site.ok:
            actiba.pick_table(site, fn_tables, site_tables, chooser)
    return sites


def _sites(g: _Graph, rule: Rule, tables: Any, site_tables: list[tuple[str, Any]] | None,
           ctx: Context | None = None) -> list[Site]:
    if rule.name == "actiba":
        return _actiba_sites(g, tables, site_tables or [])
    return rule_sites(g, rule, ctx)


def find_sites(model: Any, rewrite: str, tables: Any = None,
               site_tables: list[tuple[str, Any]] | None = None, precision: str = "f32") -> list[Site]:
    """Every place `rewrite` (a rule name, see `rules.RULES`) could apply, with its decision, in the
    top-level graph and in every If / Loop / Scan body the rule reaches.

    ActiBA `tables`: {function: Table}, a TableSet, or a mapping keyed by site ids / site globs (mixed
    with function keys as fallback); every ActiBA site carries ``detail["site_id"]`` when the graph has
    namespace metadata. A per-site key that matches no site is an InputError.
    """
    rule = RULES.get(rewrite)
    if "onnx" not in rule.levels:
        return []
    return _sites(_Graph(model), rule, tables, site_tables, Context(precision))


# --- replacing ----------------------------------------------------------------------------------------

def _toposort(nodes: list[Any]) -> list[Any]:
    """`nodes` in an order where every local input is produced before use (stable when already sorted).
    Names no node here produces (graph inputs, initializers, outer-scope names) are ready from the start."""
    made = {o for n in nodes for o in n.output}
    done: set[str] = set()
    out, pending = [], list(nodes)
    while pending:
        rest = []
        for n in pending:
            needs = (set(n.input) | onnx_subgraphs.outer_refs(n)) & made
            if needs <= done:
                out.append(n)
                done.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):  # a cycle: keep the rest as they were
            return out + rest
        pending = rest
    return out


def _prune(graph: Any, candidates: set[str], protected: set[str]) -> None:
    """Drop candidate nodes nobody reads, then (transitively) what only they read: nodes and the
    initializers of this scope (an initializer that is also a graph input stays)."""
    outputs = {o.name for o in graph.output}
    while True:
        used = set(outputs)
        for n in graph.node:
            used.update(n.input)
            used |= onnx_subgraphs.outer_refs(n)
        dead = [n for n in graph.node if n.output and any(o in candidates for o in n.output)
                and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            candidates.update(i for i in n.input if i)
        ids = {id(n) for n in dead}
        keep = [n for n in graph.node if id(n) not in ids]
        del graph.node[:]
        graph.node.extend(keep)
    used = set(outputs) | protected
    for n in graph.node:
        used.update(n.input)
        used |= onnx_subgraphs.outer_refs(n)
    inits = [t for t in graph.initializer if t.name in used or t.name not in candidates]
    if len(inits) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(inits)


def _rename(nodes: list[Any], old: str, new: str) -> None:
    for n in nodes:
        for k, o in enumerate(n.output):
            if o == old:
                n.output[k] = new
        for k, i in enumerate(n.input):
            if i == old:
                n.input[k] = new


def _replace(g: _Graph, rule: Rule, sites: list[Site], lowering: str) -> None:
    """Build every chosen site of one rule and splice the replacements in, deepest scopes first."""
    import onnx

    plans: dict[int, tuple[_Graph, dict[int, list[Any]], set[int], list[Any], set[str]]] = {}
    for s in sites:
        m = s.match
        scope = s.scope
        _, at, remove, new_inits, dead = plans.setdefault(id(scope), (scope, {}, set(), [], set()))
        if hasattr(m, "lowering"):
            m.lowering = lowering
        b = OnnxBuilder(scope, s.name)
        try:
            news = rule.build(b, m)
        except ImportError as exc:
            s.skip(f"lowering unavailable ({exc})")
            continue
        made = {o for n in b.nodes for o in n.output}
        for old, new in zip(m.replaces, news, strict=True):
            if new in made:
                _rename(b.nodes, new, old)
            else:  # the replacement is an existing tensor
                b.nodes.append(onnx.helper.make_node("Identity", [new], [old], name=g.fresh(f"{s.name}/Identity")))
        for n in b.nodes:  # names made by lowerings outside the builder must stay unique too
            g._names.update(n.output)
            g._names.add(n.name)
        g._names.update(t.name for t in b.inits)
        roots = [scope.producer[old] for old in m.replaces]
        for r in roots:
            remove.add(id(r))
            dead.update(i for i in r.input if i)
        dead.update(o for n in m.dead for o in n.output)
        if scope.parent is None:
            new_inits.extend(b.inits)
            at[id(roots[0])] = b.nodes
        else:  # body-local Constants, right before their users
            at[id(roots[0])] = [onnx.helper.make_node("Constant", [], [t.name], name=g.fresh(f"{s.name}/Constant"),
                                                      value=t) for t in b.inits] + b.nodes
    # deepest scopes first: rebuilding a scope copies its nodes, so its bodies must already be final
    for scope, at, remove, new_inits, dead in sorted(plans.values(), key=lambda p: -p[0].depth):
        nodes = []
        for node in scope.graph.node:
            nodes.extend(at.get(id(node), []))
            if id(node) not in remove:
                nodes.append(node)
        nodes = _toposort(nodes)
        del scope.graph.node[:]
        scope.graph.node.extend(nodes)
        scope.graph.initializer.extend(new_inits)
        _prune(scope.graph, dead, {i.name for i in scope.graph.input})


def apply(model: Any, rewrites: Iterable[str], sites: Iterable[Site | str] | None = None,
          tables: Any = None, site_tables: list[tuple[str, Any]] | None = None,
          lowering: str = "auto", precision: str = "f32",
          choose: Callable[[list[Site]], None] | None = None) -> tuple[Any, list[Site]]:
    """Return (a rewritten copy of `model`, every site considered with its decision).

    The rules run in `rules.RULES` order, each on the result of the one before. `sites` restricts the
    rewrite to those site names (or Site objects); None means every eligible site. `tables` as in
    `find_sites`. Sites inside If / Loop / Scan bodies are rewritten in their body.
    """
    import onnx

    rules = RULES.ordered(rewrites)
    model = onnx.ModelProto.FromString(model.SerializeToString())
    wanted = None if sites is None else {s.name if isinstance(s, Site) else s for s in sites}
    all_sites: list[Site] = []
    g = None
    for rule in rules:
        if "onnx" not in rule.levels:
            continue
        g = g or _Graph(model)  # shapes inferred again only after a rule changed the graph
        found = _sites(g, rule, tables, site_tables, Context(precision))
        chosen = select(found, wanted, choose)
        if chosen:
            _replace(g, rule, chosen, lowering)
            g = None
        all_sites.extend(found)
    return model, all_sites


# --- verification --------------------------------------------------------------------------------

def random_inputs(model: Any, seed: int = 0) -> dict[str, np.ndarray]:
    """One random array per graph input (initializers that double as inputs are skipped)."""
    import onnx

    rng = np.random.default_rng(seed)
    inits = {t.name for t in model.graph.initializer}
    feeds = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        arr = random_array(dims, onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type), rng)
        feeds[vi.name] = np.asarray(arr)  # a 0-d input (an If condition) comes back as a numpy scalar
    return feeds


def run(model: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run with onnxruntime on CPU, one thread (the machine is shared)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    return sess.run(None, {k: v for k, v in feeds.items() if k in names})


def _mirrored(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Booleans flipped and floats negated: an If on `flag` or on `x.sum() > 0` takes its other branch."""
    out = {}
    for k, v in feeds.items():
        if v.dtype == np.bool_:
            v = np.asarray(~v)
        elif np.issubdtype(v.dtype, np.floating):
            v = np.asarray(-v)
        out[k] = v
    return out


def compare(original: Any, rewritten: Any, inputs: dict[str, np.ndarray] | None = None,
            seed: int = 0) -> float:
    """Max |output difference| of original vs rewritten on random inputs (and on `inputs` if given).

    Models with an If (or boolean inputs) also run on the mirrored inputs (`_mirrored`), so that a
    condition decided by the inputs is checked both ways.
    """
    feeds = random_inputs(original, seed)
    worst = max_abs_diff(run(original, feeds), run(rewritten, feeds))
    if any(v.dtype == np.bool_ for v in feeds.values()) or any(
            n.op_type == "If" for n in onnx_subgraphs.walk(original.graph)):
        mirror = _mirrored(feeds)
        worst = max(worst, max_abs_diff(run(original, mirror), run(rewritten, mirror)))
    if inputs:
        worst = max(worst, max_abs_diff(run(original, inputs), run(rewritten, inputs)))
    return worst
