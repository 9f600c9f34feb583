"""Activation registry: f, f', f'', asymptotes and curvature facts the fitter needs.

Each entry is an `Activation`. Known functions carry analytic derivatives and asymptotes; `expr:`
functions get derivatives by central differences and no asymptotes. Inflection points are found
numerically on demand (roots of f'' by bracketing), so parametrised functions (beta) need no tables.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError
from .registry import Registry

Fn = Callable[[np.ndarray], np.ndarray]
Line = tuple[float, float]  # (slope, intercept)


@dataclass(frozen=True)
class Activation:
    """A scalar function with what a piecewise-linear fitter needs to know about it.

    `left`/`right` are the asymptote lines (slope, intercept) as x → ∓∞, or None. `tail_from`
    gives (xl, xr) such that |f − asymptote| is non-increasing for x ≤ xl (left) and x ≥ xr (right);
    that monotonicity is what lets a bound measured up to a knot hold on the whole tail.
    """

    name: str
    params: dict[str, float]
    f: Fn
    df: Fn
    d2f: Fn
    left: Line | None = None
    right: Line | None = None
    tail_from: tuple[float, float] = (-math.inf, math.inf)
    default_range: tuple[float, float] = (-8.0, 8.0)
    expression: str | None = None
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.f(np.asarray(x, dtype=np.float64))

    def inflections(self, lo: float, hi: float, samples: int = 4001) -> list[float]:
        """Sign changes of f'' inside (lo, hi), refined by Brent's method."""
        key = ("infl", lo, hi)
        if key not in self._cache:
            xs = np.linspace(lo, hi, samples)
            d2 = self.d2f(xs)
            sign = np.sign(np.where(np.abs(d2) < 1e-300, 0.0, d2))
            roots: list[float] = [float(xs[i]) for i in range(1, samples - 1)
                                  if sign[i] == 0 and sign[i - 1] * sign[i + 1] < 0]
            for i in np.nonzero(sign[:-1] * sign[1:] < 0)[0]:
                roots.append(_root(self.d2f, float(xs[i]), float(xs[i + 1])))
            roots.sort()
            self._cache[key] = roots
        return list(self._cache[key])

    def convexity(self, lo: float, hi: float) -> list[tuple[float, float, int]]:
        """Intervals of constant curvature sign on [lo, hi]: (a, b, +1 convex | -1 concave | 0 flat)."""
        cuts = [lo, *self.inflections(lo, hi), hi]
        out = []
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            mid = np.linspace(a, b, 9)[1:-1]
            out.append((a, b, int(np.sign(np.median(self.d2f(mid))))))
        return out

    def to_json(self) -> dict:
        return {"function": self.expression or self.name, "params": dict(self.params)}


def _root(g: Fn, a: float, b: float) -> float:
    """A sign change of g in [a, b] by bisection to adjacent floats: ~60 scalar calls, no scipy
    (scipy.optimize costs ~0.3 s to import, more than a whole 16-segment fit)."""
    ga = float(g(np.array([a]))[0])
    for _ in range(80):
        m = 0.5 * (a + b)
        if not a < m < b:
            break
        gm = float(g(np.array([m]))[0])
        if gm == 0.0:
            return m
        if (gm < 0) == (ga < 0):
            a, ga = m, gm
        else:
            b = m
    return 0.5 * (a + b)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, accurate to a few ulp on both tails (the form scipy's expit uses)."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _erfc(x: np.ndarray) -> np.ndarray:
    from scipy import special  # only GELU needs it: scipy.special costs ~0.2 s to import

    return special.erfc(x)


def _tail_start(g: Fn, lo: float, hi: float) -> float:
    """Argmax of a unimodal |g| on [lo, hi] (where the tail deviation starts decaying)."""
    xs = np.linspace(lo, hi, 20001)
    return float(xs[int(np.argmax(np.abs(g(xs))))])


def silu(beta: float = 1.0) -> Activation:
    b = float(beta)

    def f(x):
        return x * _sigmoid(b * x)

    def df(x):
        s = _sigmoid(b * x)
        return s + b * x * s * (1 - s)

    def d2f(x):
        s = _sigmoid(b * x)
        return b * s * (1 - s) * (2 + b * x * (1 - 2 * s))

    t = _tail_start(f, -10 / b, 0) if b > 0 else -math.inf
    return Activation("silu", {"beta": b}, f, df, d2f, left=(0.0, 0.0), right=(1.0, 0.0),
                      tail_from=(t, -t), default_range=(-8.0 / b, 8.0 / b))


def softplus(beta: float = 1.0) -> Activation:
    b = float(beta)

    def f(x):
        return np.logaddexp(0.0, b * x) / b

    def df(x):
        return _sigmoid(b * x)

    def d2f(x):
        s = _sigmoid(b * x)
        return b * s * (1 - s)

    return Activation("softplus", {"beta": b}, f, df, d2f, left=(0.0, 0.0), right=(1.0, 0.0),
                      tail_from=(0.0, 0.0), default_range=(-8.0 / b, 8.0 / b))


_SQRT2 = math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)


def gelu() -> Activation:
    def phi(x):
        return _INV_SQRT2PI * np.exp(-0.5 * x * x)

    def f(x):
        return 0.5 * x * _erfc(-x / _SQRT2)

    def df(x):
        return 0.5 * _erfc(-x / _SQRT2) + x * phi(x)

    def d2f(x):
        return phi(x) * (2 - x * x)

    t = _tail_start(f, -10, 0)
    return Activation("gelu", {}, f, df, d2f, left=(0.0, 0.0), right=(1.0, 0.0),
                      tail_from=(t, -t), default_range=(-8.0, 8.0))


_K = math.sqrt(2.0 / math.pi)
_C = 0.044715


def gelu_tanh() -> Activation:
    def f(x):
        return 0.5 * x * (1 + np.tanh(_K * (x + _C * x**3)))

    def df(x):
        t = np.tanh(_K * (x + _C * x**3))
        du = _K * (1 + 3 * _C * x * x)
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du

    def d2f(x):
        t = np.tanh(_K * (x + _C * x**3))
        du = _K * (1 + 3 * _C * x * x)
        d2u = 6 * _K * _C * x
        sech2 = 1 - t * t
        return sech2 * du + 0.5 * x * (-2 * t * sech2 * du * du + sech2 * d2u)

    t0 = _tail_start(f, -10, 0)
    return Activation("gelu-tanh", {}, f, df, d2f, left=(0.0, 0.0), right=(1.0, 0.0),
                      tail_from=(t0, -t0), default_range=(-8.0, 8.0))


def sigmoid() -> Activation:
    def df(x):
        s = _sigmoid(x)
        return s * (1 - s)

    def d2f(x):
        s = _sigmoid(x)
        return s * (1 - s) * (1 - 2 * s)

    return Activation("sigmoid", {}, _sigmoid, df, d2f, left=(0.0, 0.0), right=(0.0, 1.0),
                      tail_from=(0.0, 0.0), default_range=(-12.0, 12.0))


def tanh() -> Activation:
    def df(x):
        return 1 - np.tanh(x) ** 2

    def d2f(x):
        t = np.tanh(x)
        return -2 * t * (1 - t * t)

    return Activation("tanh", {}, np.tanh, df, d2f, left=(0.0, -1.0), right=(0.0, 1.0),
                      tail_from=(0.0, 0.0), default_range=(-6.0, 6.0))


def exp() -> Activation:
    return Activation("exp", {}, np.exp, np.exp, np.exp, left=(0.0, 0.0), right=None,
                      tail_from=(math.inf, math.inf), default_range=(-16.0, 0.0))


def expression(src: str) -> Activation:
    """`expr:` function: derivatives by central differences, no asymptotes."""
    from .expr import compile_expr  # the expression compiler imports scipy.special

    f = compile_expr(src)

    def df(x):
        h = 1e-5 * np.maximum(1.0, np.abs(x))
        return (f(x + h) - f(x - h)) / (2 * h)

    def d2f(x):
        h = 1e-3 * np.maximum(1.0, np.abs(x))
        return (f(x + h) - 2 * f(x) + f(x - h)) / (h * h)

    return Activation("expr", {}, f, df, d2f, expression=f"expr:{src}")


# the one place an activation function registers: name -> factory (taking beta if in HAS_BETA)
_REGISTRY: Registry[Callable[..., Activation]] = Registry(
    "function", normalize=lambda n: n.strip().lower(), hint=", or expr:<expression in x>")
_REGISTRY.register("silu", silu, aliases=("swish",))
_REGISTRY.register("softplus", softplus)
_REGISTRY.register("gelu", gelu)
_REGISTRY.register("gelu-tanh", gelu_tanh)
_REGISTRY.register("sigmoid", sigmoid)
_REGISTRY.register("tanh", tanh)
_REGISTRY.register("exp", exp)
HAS_BETA = {"silu", "swish", "softplus"}
NAMES = list(_REGISTRY.all_names())


def get(name: str, beta: float | None = None) -> Activation:
    """Look up an activation by CLI name (`silu`, `swish`, ..., `expr:<numpy expression in x>`)."""
    if name.startswith("expr:"):
        if beta is not None:
            raise InputError("--beta applies to silu/swish/softplus only")
        return expression(name[len("expr:"):])
    factory = _REGISTRY.get(name)
    if beta is None:
        return factory()
    if _REGISTRY.canonical(name) not in HAS_BETA:
        raise InputError(f"--beta applies to silu/swish/softplus only, not {name!r}")
    if not (math.isfinite(beta) and beta > 0):
        raise InputError(f"--beta must be a positive finite number, got {beta}")
    return factory(beta)


def from_table_json(function: str, params: dict | None) -> Activation | None:
    """The activation a stored table approximates, or None if it names no known function."""
    try:
        return get(function, (params or {}).get("beta"))
    except InputError:
        return None
