"""One entry per activation function that rewrites, sweeps, calibration and fine-tuning know about.

Every list of activation names in the package derives from `ACTIVATIONS`: the functions ActiBA can
replace (`rewrite`), the ONNX / OpenVINO ops and patterns that compute them, the torch callables the
scoped rewrite and the site tracker intercept, the exact op fine-tuning's straight-through gradient
uses, the evaluator's sweep functions (`sweep=True`) and the CLI help strings. Adding a function here
(plus its math in `actiba.functions`) is all the rewrites and sweeps need.

Pure data and strings: importing this module loads neither torch, onnx nor openvino (torch callables
are dotted names, resolved by `torch_callables`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .errors import InputError


@dataclass(frozen=True)
class Act:
    """An activation as the rewrites see it.

    `onnx_op` / `openvino_op`: the single op whose only meaning is this function (patterns that need an
    attribute or several nodes — Swish, Gelu(approximate), x·Sigmoid(x), erf-GELU — are matched by the
    rule `rewrite.rules.actiba` and listed in `onnx` / `openvino` for the docs). `torch`: the callables
    that compute it; `torch_select` = (keyword, position, value) when a callable computes several
    functions (F.gelu's `approximate`); `torch_beta` = (keyword, position) of a beta argument.
    `exact`: how fine-tuning's straight-through estimator calls the exact function (`x` and `beta`).
    `hf_names`: what a transformers config calls this function (``hidden_act`` / ``activation_function``,
    keys of transformers' ACT2FN), so a causal LM's MLP activation maps onto an entry.
    `torch_modules`: activation classes (dotted) whose forward writes this function out without calling
    one of `torch` (HF's ``NewGELUActivation``, GPT-2's ``gelu_new``, is tanh-GELU spelled with
    torch.tanh / torch.pow); the torch-level scope and site tracker run them through `torch[0]`, so the
    call is one site in torch as the pattern is one site in ONNX.
    """

    name: str
    aliases: tuple[str, ...] = ()
    beta: bool = False                  # has a beta parameter (silu: x·σ(βx), softplus: log(1+e^{βx})/β)
    onnx: tuple[str, ...] = ()
    openvino: tuple[str, ...] = ()
    onnx_op: str | None = None
    openvino_op: str | None = None
    torch: tuple[str, ...] = ()
    torch_select: tuple[str, int, str] | None = None
    torch_beta: tuple[str, int] | None = None
    exact: str = ""
    sweep: bool = False                 # part of the evaluator's default sweeps and lm-eval model args
    hf_names: tuple[str, ...] = ()
    torch_modules: tuple[str, ...] = ()


ACTIVATIONS: tuple[Act, ...] = (
    Act("silu", aliases=("swish",), beta=True,
        onnx=("Mul(x, Sigmoid(x))", "Swish(alpha)"), openvino=("Multiply(x, Sigmoid(x))", "Swish(beta)"),
        torch=("torch.nn.functional.silu", "torch._C._nn.silu", "torch._C._nn.silu_"),
        exact="torch.nn.functional.silu(x)", sweep=True, hf_names=("silu", "swish")),
    Act("softplus", beta=True, onnx=("Softplus",), openvino=("SoftPlus",), onnx_op="Softplus",
        openvino_op="SoftPlus", torch=("torch.nn.functional.softplus", "torch._C._nn.softplus"),
        torch_beta=("beta", 1), exact="torch.nn.functional.softplus(x, beta=beta)", sweep=True),
    Act("gelu", aliases=("gelu-erf",), onnx=("Gelu(approximate=none)", "x·0.5·(1+Erf(x/√2))"),
        openvino=("Gelu(ERF)",), torch=("torch.nn.functional.gelu", "torch._C._nn.gelu"),
        torch_select=("approximate", 1, "none"), exact="torch.nn.functional.gelu(x)", sweep=True,
        hf_names=("gelu",)),
    Act("gelu-tanh", aliases=("gelu_tanh",), onnx=("Gelu(approximate=tanh)", "x·0.5·(1+Tanh(√(2/π)(x+0.044715x³)))"),
        openvino=("Gelu(TANH)",), torch=("torch.nn.functional.gelu", "torch._C._nn.gelu"),
        torch_select=("approximate", 1, "tanh"), exact="torch.nn.functional.gelu(x, approximate='tanh')",
        sweep=True, hf_names=("gelu_pytorch_tanh", "gelu_new"),
        torch_modules=("transformers.activations.NewGELUActivation",)),
    Act("sigmoid", onnx=("Sigmoid",), openvino=("Sigmoid",), onnx_op="Sigmoid", openvino_op="Sigmoid",
        torch=("torch.sigmoid", "torch.Tensor.sigmoid", "torch.nn.functional.sigmoid"), exact="torch.sigmoid(x)"),
    Act("tanh", onnx=("Tanh",), openvino=("Tanh",), onnx_op="Tanh", openvino_op="Tanh",
        torch=("torch.tanh", "torch.Tensor.tanh", "torch.nn.functional.tanh"), exact="torch.tanh(x)"),
    Act("exp", onnx=("Exp",), openvino=("Exp",), onnx_op="Exp", openvino_op="Exp",
        torch=("torch.exp", "torch.Tensor.exp"), exact="torch.exp(x)"),
)

BY_NAME: dict[str, Act] = {a.name: a for a in ACTIVATIONS}
NAMES: tuple[str, ...] = tuple(a.name for a in ACTIVATIONS)
SWEEP_NAMES: tuple[str, ...] = tuple(a.name for a in ACTIVATIONS if a.sweep)
_ALIASES: dict[str, str] = {al: a.name for a in ACTIVATIONS for al in a.aliases}
HF_NAMES: dict[str, str] = {h: a.name for a in ACTIVATIONS for h in a.hf_names}
ONNX_OPS: dict[str, str] = {a.onnx_op: a.name for a in ACTIVATIONS if a.onnx_op}
OPENVINO_OPS: dict[str, str] = {a.openvino_op: a.name for a in ACTIVATIONS if a.openvino_op}


def canonical(name: str) -> str:
    """The registry name for `name` or one of its aliases (unknown names come back lower-cased)."""
    key = name.strip().lower()
    return _ALIASES.get(key, key)


def get(name: str, what: str = "activation") -> Act:
    """The entry for `name` (aliases accepted); an unknown name is an InputError listing the known ones."""
    act = BY_NAME.get(canonical(name))
    if act is None:
        raise InputError(f"{what} {name}: unknown function; known: {', '.join(NAMES)}")
    return act


def help_names(sweep: bool = False) -> str:
    """"silu, softplus, ..." for CLI help strings."""
    return ", ".join(SWEEP_NAMES if sweep else NAMES)


def from_hf(hf_name: str) -> str | None:
    """The entry name for a transformers activation name (``gelu_new`` -> gelu-tanh), None if actiba has none."""
    return HF_NAMES.get(str(hf_name).strip().lower())


def resolve(dotted: str) -> object:
    """The object a dotted name denotes (longest importable module prefix, then attributes), or None."""
    import importlib

    parts = dotted.split(".")
    for k in range(len(parts) - 1, 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:k]))
        except ImportError:
            continue
        for attr in parts[k:]:
            obj = getattr(obj, attr, None)
        return obj
    return None


@functools.cache
def torch_callables() -> dict[object, list[Act]]:
    """{torch callable: the entries it may compute}, resolved once (imports torch)."""
    out: dict[object, list[Act]] = {}
    for act in ACTIVATIONS:
        for dotted in act.torch:
            obj = resolve(dotted)
            if obj is not None:
                out.setdefault(obj, []).append(act)
    return out


@functools.cache
def torch_module_classes() -> dict[type, Act]:
    """{activation class: the entry it writes out} for every `torch_modules` class importable here."""
    out: dict[type, Act] = {}
    for act in ACTIVATIONS:
        for dotted in act.torch_modules:
            cls = resolve(dotted)
            if isinstance(cls, type):
                out[cls] = act
    return out
