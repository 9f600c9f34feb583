"""Walking ONNX control-flow subgraphs (If branches, Loop / Scan bodies): pure protobuf helpers.

A subgraph may read any name of its enclosing scopes without listing it as an input, so "who uses this
tensor" must look inside the bodies of a node's graph attributes; these helpers say what a body reads
from outside (`outer_refs`) and enumerate every node and name of a model, nested bodies included.
No onnx import: the attribute types are the protobuf enum values.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

_GRAPH, _GRAPHS = 5, 10  # onnx.AttributeProto.GRAPH / GRAPHS


def subgraphs(node: Any) -> list[tuple[str, Any]]:
    """(attribute label, GraphProto) of every graph attribute: `then_branch`, `body`, ... (`name[k]` in lists)."""
    out: list[tuple[str, Any]] = []
    for a in node.attribute:
        if a.type == _GRAPH:
            out.append((a.name, a.g))
        elif a.type == _GRAPHS:
            out.extend((f"{a.name}[{k}]", sub) for k, sub in enumerate(a.graphs))
    return out


def defined(graph: Any) -> set[str]:
    """Names the graph itself defines (inputs, initializers, node outputs); nested bodies excluded."""
    names = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    names |= {t.values.name for t in graph.sparse_initializer}
    names.update(o for n in graph.node for o in n.output)
    names.discard("")
    return names


def free_names(graph: Any) -> set[str]:
    """Names `graph` (or anything nested in it) reads from enclosing scopes."""
    used = {o.name for o in graph.output}
    for n in graph.node:
        used.update(n.input)
        used |= outer_refs(n)
    used.discard("")
    return used - defined(graph)


def outer_refs(node: Any) -> set[str]:
    """Names the node's subgraphs read from the node's scope (or further out): implicit inputs."""
    refs: set[str] = set()
    for _, sub in subgraphs(node):
        refs |= free_names(sub)
    return refs


def walk(graph: Any) -> Iterator[Any]:
    """Every node, pre-order: a control-flow node, then the nodes of its bodies (where it runs them)."""
    for n in graph.node:
        yield n
        for _, sub in subgraphs(n):
            yield from walk(sub)


def all_names(graph: Any) -> set[str]:
    """Every value and node name in `graph` and its nested bodies (fresh names must avoid them all)."""
    names = {o.name for o in graph.output} | defined(graph)
    for n in graph.node:
        names.add(n.name)
        names.update(n.input)
        for _, sub in subgraphs(n):
            names |= all_names(sub)
    names.discard("")
    return names
