"""The rewrites a sweep configuration can turn on, by name: the one list `evaluate.configs` validates against.

Derived from the rule registry (`rewrite.rules.RULES`), so a new rule module is a sweep rewrite too.
ActiBA is left out: configurations turn it on through their `activations`. The first names keep the
order configurations were keyed by before the rules existed, so cached rows and sweep files keep
their keys; later rules follow in rule order.
"""

from __future__ import annotations

from .rules import RULES

_KEYED_ORDER = ("cumba", "reduba", "ssd-d1", "ssd-d2")
TORCH_LEVEL = ("ssd-d1", "ssd-d2")  # applied while exporting (they patch HF's chunk scan), not on the graph
REWRITES = _KEYED_ORDER + tuple(n for n in RULES.names() if n not in _KEYED_ORDER and n != "actiba")
assert set(_KEYED_ORDER) <= set(RULES.names()), "a keyed rewrite lost its rule"
