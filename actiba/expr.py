"""Safe `expr:<numpy expression in x>` functions.

The expression is parsed with `ast` and compiled into a tree of closures over a whitelist of numpy
ufuncs; nothing is ever passed to `eval`. Anything outside the whitelist (attributes other than
`np.`/`numpy.`, names other than `x`/`pi`/`e`, keywords, subscripts, comprehensions, ...) is an
`InputError` naming the offending piece.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable

import numpy as np
from scipy import special

from .errors import InputError

Fn = Callable[[np.ndarray], np.ndarray]

FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "exp": np.exp, "expm1": np.expm1, "exp2": np.exp2, "log": np.log, "log1p": np.log1p,
    "log2": np.log2, "log10": np.log10, "sqrt": np.sqrt, "cbrt": np.cbrt, "square": np.square,
    "abs": np.abs, "absolute": np.abs, "sign": np.sign, "sin": np.sin, "cos": np.cos, "tan": np.tan,
    "arcsin": np.arcsin, "arccos": np.arccos, "arctan": np.arctan, "sinh": np.sinh, "cosh": np.cosh,
    "tanh": np.tanh, "arcsinh": np.arcsinh, "arccosh": np.arccosh, "arctanh": np.arctanh,
    "maximum": np.maximum, "minimum": np.minimum, "logaddexp": np.logaddexp, "hypot": np.hypot,
    "arctan2": np.arctan2, "power": np.power, "clip": np.clip, "floor": np.floor, "ceil": np.ceil,
    "erf": special.erf, "erfc": special.erfc, "expit": special.expit, "sigmoid": special.expit,
    "softplus": lambda v: np.logaddexp(0.0, v),
}
CONSTANTS = {"pi": np.pi, "e": np.e}
BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
          ast.Div: operator.truediv, ast.Pow: operator.pow, ast.Mod: operator.mod}
UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}


def _compile(node: ast.AST, src: str) -> Fn:
    if isinstance(node, ast.Expression):
        return _compile(node.body, src)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(
            node.value, bool):
        value = float(node.value)
        return lambda x: np.full_like(x, value)
    if isinstance(node, ast.Name):
        if node.id == "x":
            return lambda x: x
        if node.id in CONSTANTS:
            value = CONSTANTS[node.id]
            return lambda x: np.full_like(x, value)
        raise InputError(f"expression {src!r}: unknown name {node.id!r} (only x, pi, e)")
    if isinstance(node, ast.BinOp) and type(node.op) in BINOPS:
        op, left, right = BINOPS[type(node.op)], _compile(node.left, src), _compile(node.right, src)
        return lambda x: op(left(x), right(x))
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        op, inner = UNARY[type(node.op)], _compile(node.operand, src)
        return lambda x: op(inner(x))
    if isinstance(node, ast.Call):
        name = _callee(node.func, src)
        if node.keywords:
            raise InputError(f"expression {src!r}: keyword arguments are not allowed in {name}()")
        func = FUNCTIONS[name]
        args = [_compile(a, src) for a in node.args]
        if not args:
            raise InputError(f"expression {src!r}: {name}() needs an argument")
        return lambda x: func(*(a(x) for a in args))
    raise InputError(f"expression {src!r}: {type(node).__name__} is not allowed "
                     "(only x, numbers, + - * / ** %, and whitelisted numpy functions)")


def _callee(func: ast.AST, src: str) -> str:
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in (
            "np", "numpy"):
        name = func.attr
    elif isinstance(func, ast.Name):
        name = func.id
    else:
        raise InputError(f"expression {src!r}: only calls like exp(x) or np.exp(x) are allowed")
    if name not in FUNCTIONS:
        raise InputError(f"expression {src!r}: function {name!r} is not in the whitelist "
                         f"({', '.join(sorted(FUNCTIONS))})")
    return name


def compile_expr(src: str) -> Fn:
    """Compile a numpy expression in `x` into a float64 vectorized function, safely."""
    if not src.strip():
        raise InputError("expression is empty")
    if len(src) > 2000:
        raise InputError("expression is longer than 2000 characters")
    try:
        tree = ast.parse(src.strip(), mode="eval")
    except SyntaxError as exc:
        raise InputError(f"expression {src!r} is not valid: {exc.msg}") from None
    body = _compile(tree, src)

    def fn(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        with np.errstate(all="ignore"):
            return np.broadcast_to(np.asarray(body(x), dtype=np.float64), x.shape).copy()

    probe = fn(np.linspace(-1.0, 1.0, 5))
    if probe.shape != (5,):
        raise InputError(f"expression {src!r} does not give one value per x")
    return fn
