"""Stable names for activation sites, the same in a torch model and in its exported ONNX graph.

Why a naming contract: calibration statistics are captured in torch, per-site tables are fitted from
them, and the tables are then applied in torch (accuracy), in ONNX / OpenVINO (latency) and in a
fine-tune. All of these must agree on which call is "the Softplus of layer 3". A site id is

    <module path>:<function>#<k>        e.g. backbone.layers.3.mixer:softplus#0

- module path: dotted path (as in `named_modules()`) of the innermost module whose forward made the
  call; activation *wrapper* modules (classes from `torch.nn.modules.activation` or
  `transformers.activations`, e.g. HF's `SiLUActivation`) are folded into their parent, because the
  ONNX exporter does not always record them and the call belongs to the layer that owns it.
  The root module is written as the empty path.
- function: the canonical table function (silu, softplus, gelu, gelu-tanh, sigmoid, tanh, exp).
- k: 0-based index among the calls of that function made by that module in one forward pass.

In ONNX graphs exported by the dynamo exporter, each node's ``namespace`` metadata lists the module
stack (``path: class/…/op``); `onnx_module_path` recovers the same module path, and counting nodes of a
function per module in graph order (which is execution order) recovers k. Pure string logic here, no
heavy imports, so every layer can use it.
"""

from __future__ import annotations

import fnmatch
import re

FOLDED_MODULE_PREFIXES = ("torch.nn.modules.activation", "transformers.activations")
ROOT_WRAPPERS = ("actiba.models.export.LogitsOnly",)  # our export wrapper: its child `inner` is the model
_SITE = re.compile(r"^(?P<path>[^:#]*):(?P<fn>[a-z][a-z-]*)#(?P<k>\d+)$")


def format_site(path: str, function: str, k: int) -> str:
    return f"{path}:{function}#{int(k)}"


def parse_site(site: str) -> tuple[str, str, int]:
    """(module path, function, k) of a site id; ValueError if it is not one."""
    m = _SITE.match(site)
    if m is None:
        raise ValueError(f"{site!r} is not a site id (expected PATH:FUNCTION#K, e.g. backbone.layers.0.mixer:silu#0)")
    return m["path"], m["fn"], int(m["k"])


def is_folded_class(qualname: str) -> bool:
    """True for activation wrapper classes (given as 'module.Class') whose calls belong to the parent."""
    return qualname.startswith(tuple(p + "." for p in FOLDED_MODULE_PREFIXES))


def matches(site: str, patterns: list[str] | tuple[str, ...]) -> bool:
    """Glob match of a site id against patterns (``*`` spans dots, so ``*:silu#*`` is every SiLU)."""
    return any(fnmatch.fnmatchcase(site, p) for p in patterns)


def in_scope(site: str, modules: list[str] | tuple[str, ...]) -> bool:
    """Whether site id `site` belongs to a module matching one of the `modules` path globs or to one of
    their submodules: the graph-level twin of torch's scoped ActiBA (`actiba_scope(include=)`), whose
    selection covers everything a selected module runs."""
    path = parse_site(site)[0]
    parts = path.split(".") if path else []
    prefixes = [".".join(parts[:i]) for i in range(len(parts), -1, -1)]
    return any(fnmatch.fnmatchcase(p, g) for p in prefixes for g in modules)


def onnx_module_path(namespace: str) -> str | None:
    """Module path of the innermost (non-folded) module in a dynamo ``namespace`` string, or None.

    Example: ``actiba.models.export.LogitsOnly/inner: …Mamba2ForCausalLM/inner.backbone.layers.0.mixer:
    …Mamba2Mixer/silu: aten.silu.default`` → ``backbone.layers.0.mixer``.
    """
    if not namespace:
        return None
    parts = namespace.split("/")
    if len(parts) < 2:
        return None
    modules: list[tuple[str, str]] = []  # (path, class)
    for i, seg in enumerate(parts[:-1]):  # the last segment is the op itself
        if i == 0 and ": " not in seg:
            modules.append(("", seg.strip()))
            continue
        if ": " not in seg:
            return None
        path, cls = seg.split(": ", 1)
        modules.append((path.strip(), cls.strip()))
    prefix = ""
    if modules and modules[0][0] == "" and modules[0][1] in ROOT_WRAPPERS and len(modules) > 1:
        prefix = modules[1][0]  # "inner"
        modules = modules[1:]
        modules[0] = ("", modules[0][1])
    while len(modules) > 1 and is_folded_class(modules[-1][1]):
        modules.pop()
    path = modules[-1][0] if modules else ""
    if prefix and (path == prefix or path.startswith(prefix + ".")):
        path = path[len(prefix) + 1:]
    return path
