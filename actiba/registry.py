"""One lazy registry for every kind of extension: name → object, or name → "module:attr" until first use.

A registry entry is either the object itself or a *placeholder* string ``"package.module:attr"``
(``"package.module"`` for the module itself). Placeholders are imported on the first `get` and the
result is cached, so listing the names (CLI help, `--to` choices, error messages) never imports an
entry: `actiba fit` / `actiba show` build every subcommand's parser and the exporter list without
loading onnx, openvino or torch.

Errors follow the house contract: an unknown name is a one-line `InputError` that lists the known
names; an entry whose optional dependency is missing is a one-line `InputError` naming the missing
module. An ImportError *inside actiba* is a bug and propagates unchanged.

    EXPORTERS = Registry("export format")
    EXPORTERS.register("onnx", "actiba.lower.onnx_lower:export_cli")
    EXPORTERS.get("onnx")       # imports actiba.lower.onnx_lower now, then cached

Modelled on lm-eval's registry (lazy placeholders, aliases, a clear error for unknown names).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from .errors import InputError

T = TypeVar("T")

_MISSING: Any = object()


def resolve(placeholder: str) -> Any:
    """Import ``"module:attr"`` (or ``"module"``) and return the attribute (or the module)."""
    module, sep, attr = placeholder.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split(".") if sep else ():
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """Names (and aliases) of one kind of extension, each registered once, resolved lazily.

    `kind` names the kind in errors ("unknown export format 'x'; known: ..."). `build`, if given,
    turns a resolved entry into what `get` returns (once; e.g. a class into its instance).
    `normalize` maps user spellings onto names (e.g. ``str.lower``). `hint` is appended to the
    unknown-name error (e.g. ", or expr:<expression in x>"). `extra` is the pip extra named when an
    entry's optional dependency is missing.
    """

    def __init__(self, kind: str, *, build: Callable[[Any], T] | None = None,
                 normalize: Callable[[str], str] | None = None, hint: str = "", extra: str = "all"):
        self.kind = kind
        self._build = build
        self._normalize = normalize
        self._hint = hint
        self._extra = extra
        self._entries: dict[str, Any] = {}  # canonical name -> object or placeholder string
        self._aliases: dict[str, str] = {}  # alias -> canonical name
        self._loaded: dict[str, T] = {}

    # registration ---------------------------------------------------------------------------------
    def register(self, name: str, entry: Any = _MISSING, *, aliases: tuple[str, ...] = ()) -> Any:
        """Register `entry` (an object or a "module:attr" placeholder) under `name` and `aliases`.

        Without `entry` this is a decorator: ``@REG.register("name")``. A name or alias used twice is
        a programming error (ValueError), so every extension is registered in exactly one place.
        """
        if entry is _MISSING:
            def deco(obj: Any) -> Any:
                self.register(name, obj, aliases=aliases)
                return obj
            return deco
        for key in (name, *aliases):
            if key in self._entries or key in self._aliases:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
        if isinstance(entry, str) and not entry.partition(":")[0]:
            raise ValueError(f"{self.kind} {name!r}: placeholder {entry!r} names no module")
        self._entries[name] = entry
        for alias in aliases:
            self._aliases[alias] = name
        return entry

    # lookup ---------------------------------------------------------------------------------------
    def canonical(self, name: str) -> str:
        """The registered name for `name` or one of its aliases; InputError listing the known names."""
        key = self._normalize(name) if self._normalize else name
        key = self._aliases.get(key, key)
        if key not in self._entries:
            raise InputError(f"unknown {self.kind} {name!r}; known: {', '.join(self.all_names())}{self._hint}")
        return key

    def get(self, name: str) -> T:
        """The entry called `name` (imported and built on first use, then cached)."""
        key = self.canonical(name)
        if key not in self._loaded:
            entry = self._entries[key]
            if isinstance(entry, str):
                try:
                    entry = resolve(entry)
                except ModuleNotFoundError as exc:
                    if (exc.name or "").split(".")[0] == __name__.split(".")[0]:
                        raise  # a missing actiba module is a bug, not a missing optional dependency
                    raise InputError(f"{self.kind} {key} needs {exc.name}, which is not installed; "
                                     f"install actiba[{self._extra}]") from None
            self._loaded[key] = self._build(entry) if self._build else entry
        return self._loaded[key]

    def placeholder(self, name: str) -> str | None:
        """The "module:attr" string of `name` (None if registered as an object); imports nothing."""
        entry = self._entries[self.canonical(name)]
        return entry if isinstance(entry, str) else None

    def is_loaded(self, name: str) -> bool:
        return self.canonical(name) in self._loaded

    # listing (never imports an entry) -------------------------------------------------------------
    def names(self) -> tuple[str, ...]:
        """Registered names in registration order (aliases excluded)."""
        return tuple(self._entries)

    def all_names(self) -> tuple[str, ...]:
        """Names and aliases, sorted: what a user may type."""
        return tuple(sorted((*self._entries, *self._aliases)))

    def aliases(self, name: str) -> tuple[str, ...]:
        key = self.canonical(name)
        return tuple(a for a, k in self._aliases.items() if k == key)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = self._normalize(name) if self._normalize else name
        return key in self._entries or key in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"


__all__ = ["Registry", "resolve"]
