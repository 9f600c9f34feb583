"""The rewrite rules, one module each, in the one order every caller applies them.

    from actiba.rewrite.rules import RULES
    RULES.names()              # ('ssd-d1', 'ssd-d2', 'contract', 'cumba', 'reduba', 'actiba')
    RULES.get("cumba")         # its Rule: match(view, node, ctx) / build(builder, match), .spec, .order

Every module of this package except `base` is a rule: it defines `RULE` (a `base.Rule`) and its
`SPEC`. Adding a rewrite is one module here (plus its tests); the ONNX and OpenVINO drivers,
`rewrite.find_sites` / `apply`, `rewrite.SPECS`, the `rewrite_model` pipeline and the `actiba rewrite`
flags (`--<name>`) pick it up. The order is `Rule.order`: the SSD rules first (d1 removes the T×T
CumSums CumBA would otherwise turn into MatMuls; d2 needs HF's einsums intact), then the exact rules
(the contraction before ReduBA, which would otherwise take its ReduceSum), then ActiBA, which is
verified against the exactly rewritten model. Rule modules import numpy and `spec` only, so listing
the rules loads no backend.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Iterator

from ...registry import Registry
from .base import Rule


class RuleSet:
    """An ordered set of rules, discovered from a package and held in the generic `actiba.registry.Registry`
    (so an unknown name is the same one-line InputError, listing the known ones, as for every other kind
    of extension)."""

    def __init__(self, package: str, path: Iterable[str]) -> None:
        self._package, self._path = package, list(path)
        self._rules: dict[str, Rule] | None = None
        self.registry: Registry[Rule] = Registry("rewrite")

    def _all(self) -> dict[str, Rule]:
        if self._rules is None:
            found = []
            for info in pkgutil.iter_modules(self._path):
                if info.name != "base" and not info.name.startswith("_"):
                    found.append(importlib.import_module(f"{self._package}.{info.name}").RULE)
            self._rules = {r.name: r for r in sorted(found, key=lambda r: (r.order, r.name))}
            for rule in self._rules.values():
                self.registry.register(rule.name, rule)
        return self._rules

    def names(self, stage: str | None = None, level: str | None = None) -> tuple[str, ...]:
        return tuple(r.name for r in self if (stage is None or r.stage == stage)
                     and (level is None or level in r.levels))

    def get(self, name: str) -> Rule:
        self._all()
        return self.registry.get(name)

    def ordered(self, names: Iterable[str]) -> list[Rule]:
        """The rules named (each checked), in rewrite order."""
        wanted = {self.get(n).name for n in names}
        return [r for r in self if r.name in wanted]

    def __iter__(self) -> Iterator[Rule]:
        return iter(list(self._all().values()))

    def __contains__(self, name: object) -> bool:
        return name in self._all()


RULES = RuleSet(__name__, __path__)
