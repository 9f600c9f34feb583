"""Safe `expr:<numpy expression in x>` functions.

The expression is parsed with `ast` and compiled, without recursion, into a post-order program over a
whitelist of numpy ufuncs; nothing is ever passed to `eval`. Anything outside the whitelist (attributes other than
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
# functions taking other than one argument; every other whitelisted function takes exactly one
ARITY = {"maximum": 2, "minimum": 2, "logaddexp": 2, "hypot": 2, "arctan2": 2, "power": 2, "clip": 3}
CONSTANTS = {"pi": np.pi, "e": np.e}
BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
          ast.Div: operator.truediv, ast.Pow: operator.pow, ast.Mod: operator.mod}
UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}


Instr = tuple  # ("x",) | ("const", v) | ("bin", op) | ("un", op) | ("call", func, nargs)


def _leaf_or_check(node: ast.AST, src: str) -> list[ast.AST]:
    """Validate one node; return its operands in evaluation order (empty for leaves)."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return []
        raise InputError(f"expression {src!r}: constant {node.value!r} is not a number")
    if isinstance(node, ast.Name):
        if node.id == "x" or node.id in CONSTANTS:
            return []
        raise InputError(f"expression {src!r}: unknown name {node.id!r} (only x, pi, e)")
    if isinstance(node, ast.BinOp) and type(node.op) in BINOPS:
        return [node.left, node.right]
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        return [node.operand]
    if isinstance(node, ast.Call):
        name = _callee(node.func, src)
        if node.keywords:
            raise InputError(f"expression {src!r}: keyword arguments are not allowed in {name}()")
        want = ARITY.get(name, 1)
        if len(node.args) != want or any(isinstance(a, ast.Starred) for a in node.args):
            raise InputError(f"expression {src!r}: {name}() takes {want} argument{'s' * (want > 1)}, "
                             f"got {len(node.args)}")
        return list(node.args)
    raise InputError(f"expression {src!r}: {type(node).__name__} is not allowed "
                     "(only x, numbers, + - * / ** %, and whitelisted numpy functions)")


def _program(tree: ast.Expression, src: str) -> list[Instr]:
    """Post-order instruction list, built without recursion (deep expressions cannot overflow)."""
    prog: list[Instr] = []
    stack: list[tuple[ast.AST, bool]] = [(tree.body, False)]
    while stack:
        node, expanded = stack.pop()
        if not expanded:
            children = _leaf_or_check(node, src)
            stack.append((node, True))
            stack.extend((c, False) for c in reversed(children))
            continue
        if isinstance(node, ast.Constant):
            prog.append(("const", float(node.value)))
        elif isinstance(node, ast.Name):
            prog.append(("x",) if node.id == "x" else ("const", CONSTANTS[node.id]))
        elif isinstance(node, ast.BinOp):
            prog.append(("bin", BINOPS[type(node.op)]))
        elif isinstance(node, ast.UnaryOp):
            prog.append(("un", UNARY[type(node.op)]))
        else:
            prog.append(("call", FUNCTIONS[_callee(node.func, src)], len(node.args)))
    return prog


def _run(prog: list[Instr], x: np.ndarray) -> np.ndarray:
    vals: list = []
    for ins in prog:
        kind = ins[0]
        if kind == "x":
            vals.append(x)
        elif kind == "const":
            vals.append(np.full_like(x, ins[1]))
        elif kind == "bin":
            b, a = vals.pop(), vals.pop()
            vals.append(ins[1](a, b))
        elif kind == "un":
            vals.append(ins[1](vals.pop()))
        else:
            args = vals[-ins[2]:]
            del vals[-ins[2]:]
            vals.append(ins[1](*args))
    return vals[0]


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
    except (RecursionError, MemoryError):
        raise InputError("expression is nested too deeply to parse") from None
    prog = _program(tree, src)

    def fn(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        with np.errstate(all="ignore"):
            return np.broadcast_to(np.asarray(_run(prog, x), dtype=np.float64), x.shape).copy()

    probe = fn(np.linspace(-1.0, 1.0, 5))
    if probe.shape != (5,):
        raise InputError(f"expression {src!r} does not give one value per x")
    return fn
