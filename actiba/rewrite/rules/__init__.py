"""The rewrite rules, one module each, in the one order every caller applies them.

    from actiba.rewrite import rules
    rules.RULES.names()              # ('ssd-d1', 'ssd-d2', 'contract', 'cumba', 'reduba', 'actiba')
    rules.RULES.get("cumba")         # its Rule: match(view, node, ctx) / build(builder, match)

The order is the rewrite order: the SSD rules first (d1 removes the T×T CumSums that CumBA would
otherwise turn into MatMuls; d2 needs HF's einsums intact), then the exact rules (the contraction
before ReduBA, which would otherwise take its ReduceSum), then ActiBA, which is verified against the
exactly rewritten model. A new rewrite is one module here (a `RULE`) plus its entry below and its
`spec.RewriteSpec`; the ONNX and OpenVINO drivers, `rewrite.find_sites` / `apply` and the
`rewrite_model` pipeline pick it up from this list.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator

from ...errors import InputError
from .base import Rule

# name -> module (imported on first use, so listing the rules loads no rule code)
_MODULES = {"ssd-d1": "ssd_d1", "ssd-d2": "ssd_d2", "contract": "contract", "cumba": "cumba",
            "reduba": "reduba", "actiba": "actiba"}


class RuleSet:
    """An ordered, lazily imported set of rules; unknown names are an InputError listing the known ones."""

    def __init__(self, modules: dict[str, str]) -> None:
        self._modules = dict(modules)
        self._loaded: dict[str, Rule] = {}

    def names(self, stage: str | None = None, level: str | None = None) -> tuple[str, ...]:
        if stage is None and level is None:
            return tuple(self._modules)
        return tuple(r.name for r in self if (stage is None or r.stage == stage)
                     and (level is None or level in r.levels))

    def get(self, name: str) -> Rule:
        if name not in self._modules:
            raise InputError(f"unknown rewrite {name!r}; known: {', '.join(self._modules)}")
        if name not in self._loaded:
            mod = importlib.import_module(f"{__name__}.{self._modules[name]}")
            self._loaded[name] = mod.RULE
        return self._loaded[name]

    def ordered(self, names: Iterable[str]) -> list[Rule]:
        """The rules named (each checked), in rewrite order."""
        wanted = set(names)
        for n in wanted:
            self.get(n)
        return [self.get(n) for n in self._modules if n in wanted]

    def __iter__(self) -> Iterator[Rule]:
        return (self.get(n) for n in self._modules)

    def __contains__(self, name: object) -> bool:
        return name in self._modules


RULES = RuleSet(_MODULES)
