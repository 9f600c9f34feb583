"""What a lowering computes, as a tiny backend-neutral op list (pure numpy; no onnx/openvino/torch).

A *plan* is a straight-line program over one float input `x`: every op names its inputs by reference
(`0` is x, `k` is the result of op k-1) or carries a `Const`. The ONNX, OpenVINO and torch back ends
translate the same plan op by op, so the care taken here for the awkward inputs (NaN, ±inf, flat
outer segments, 0·inf) holds in every back end, and `run` interprets a plan in numpy for tests.

NaN and ±inf hold by construction, not by how a CPU's min/max/select treat NaN (they differ: an
AVX-512 kernel may compare with unordered predicates, so `NaN < t` is true there): `nan_carried`
proves from the op list alone that NaN reaches y through IEEE arithmetic, and where it cannot,
`make_plan` ends the plan with ``where(isnan(x), x, y)``; at ±inf, `infinities_needing_guard` checks
that no op sees a NaN (then every ISA computes the same IEEE result), else the limit is selected by
``x == ±inf``. `run` interprets a plan under the pessimistic NaN models (`NAN_MODELS`) so tests on
any CPU exercise what the worst one does.

Lowerings (all exact up to float rounding; see `reference` for what "exact" means in float32/16):

* ``relu-sum`` (continuous tables): ``u = clip(x, t0, t_last)``; ``g(u) = a + b·u + Σ cᵢ·relu(u - tᵢ)``
  over the interior breakpoints, plus the outer lines ``slope·x − slope·u`` (zero inside, where u == x;
  never ``x − u``, which overflows in float16 near the type's limit). Clipping keeps every relu term
  finite, so ±inf never meets cancelling infinities; with both outer slopes nonzero, x·slope carries
  NaN and no guard is needed.
* ``select`` (any table): the segment's slope and intercept picked by one comparison per breakpoint
  (``s = where(x >= tᵢ, s[i+1], s)``, same for c), then ``y = s·x + c``; x is replaced by 0 at an
  infinity whose outer slope is 0, so 0·inf never happens. (Comparisons + where rather than a
  bucketize + gather: OpenVINO CPU runs Bucketize/Gather unfused, 5-20x slower than the exact op.)
* ``where`` (any table): a chain of `where(x >= tₖ, lineₖ, …)`; flat segments are constants (no
  multiply, so ±inf gives the intercept).
* ``minmax`` (convex / concave continuous tables): max / min of the segment lines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..table import Table, evaluate

LOWERINGS = ("relu-sum", "select", "where", "minmax")
CHOICES = ("auto", *LOWERINGS)

# ops and their arity (None = n-ary >= 2); comparison ops and isnan give booleans
ARITY: dict[str, int | None] = {
    "add": 2, "sub": 2, "mul": 2, "relu": 1, "abs": 1, "clip": 3,
    "less": 2, "greater": 2, "greater_equal": 2, "equal": 2, "isnan": 1, "where": 3,
    "sum": None, "max": None, "min": None,
}


@dataclass(frozen=True)
class Const:
    """A float scalar constant, kept in float64 here and rounded to the graph's element type by each
    back end."""

    value: np.ndarray

    @staticmethod
    def of(v: float | np.ndarray) -> Const:
        return Const(np.asarray(v, dtype=np.float64))


Arg = int | Const


@dataclass(frozen=True)
class Op:
    kind: str
    args: tuple[Arg, ...]


@dataclass(frozen=True)
class Plan:
    """A lowering of one table: `ops` in order; the last op's result is y."""

    lowering: str
    ops: tuple[Op, ...]

    def __len__(self) -> int:
        return len(self.ops)


class _Builder:
    def __init__(self) -> None:
        self.ops: list[Op] = []

    def __call__(self, kind: str, *args: Arg | float) -> int:
        n = ARITY[kind]
        assert (len(args) >= 2) if n is None else (len(args) == n), (kind, args)
        self.ops.append(Op(kind, tuple(a if isinstance(a, int | Const) else Const.of(a) for a in args)))
        return len(self.ops)

    def line(self, x: int, s: float, c: float) -> Arg:
        """s·x + c, with no multiply for a flat line (so ±inf gives c, not NaN)."""
        if s == 0.0:
            return Const.of(c)
        y = x if s == 1.0 else self("mul", x, s)
        return self("add", y, c) if c != 0.0 else y

    def nan_passthrough(self, x: int, y: Arg) -> int:
        """y, but NaN where x is NaN (for graphs with no multiply by x to carry it)."""
        return self("where", self("isnan", x), x, y)


X = 0  # reference to the input


# -- feasibility and the automatic choice ------------------------------------------------------------
def feasible(table: Table) -> tuple[str, ...]:
    """The lowerings that compute `table` exactly."""
    out = ["select", "where"]
    if table.continuous:
        out.insert(0, "relu-sum")
        if table.is_convex() or table.is_concave():
            out.append("minmax")
    return tuple(out)


# Measured on OpenVINO CPU, f32 (eval/results/bench_lowering.md, 64 Ki - 16 Mi elements, N 4 - 32):
# for continuous tables relu-sum (fewest ops and constants per breakpoint) was fastest, except on
# convex/concave ones, where minmax tied at N = 4 and won from N = 8 (up to 1.6x at N = 16-32); for
# discontinuous tables the where chain beat select. The ranking did not change with the element
# count, so `n_elements` is accepted (callers pass it; another back end may need it) but unused.
# Past N ~ 8-16 no lowering beats the exact op on CPU, and none beats Exp at any N.
def choose(table: Table, n_elements: int | None = None) -> str:
    """The fastest exact lowering for `table` (on `n_elements` elements; see the note above)."""
    if not table.continuous:
        return "where"
    if table.segments > 1 and (table.is_convex() or table.is_concave()):
        return "minmax"
    return "relu-sum"


def resolve(table: Table, lowering: str = "auto", n_elements: int | None = None) -> str:
    """`lowering` checked against the table: "auto" becomes `choose`; an infeasible one is an InputError."""
    if lowering not in CHOICES:
        raise InputError(f"unknown lowering {lowering!r}; choose one of {', '.join(CHOICES)}")
    if lowering == "auto":
        return choose(table, n_elements)
    if lowering not in feasible(table):
        why = ("the table is discontinuous" if not table.continuous
               else "the table is neither convex nor concave")
        raise InputError(f"lowering {lowering!r} cannot compute this table exactly: {why}; "
                         f"feasible: {', '.join(feasible(table))}")
    return lowering


# -- plans ------------------------------------------------------------------------------------------
def make_plan(table: Table, lowering: str = "auto", n_elements: int | None = None,
              dtype: str | np.dtype = "float64") -> Plan:
    """The op list computing `table` by `lowering` (resolved and checked first) in `dtype`.

    The plan is built from the table rounded to `dtype`, so "this slope is 0" (no multiply, hence no
    0·inf) is decided on the value the graph will hold, e.g. a slope of 1e-10 is flat in float16.
    """
    name = resolve(table, lowering, n_elements)
    t, s, c = rounded(table, dtype)
    b = _Builder()
    if s.size == 1:  # one line: every lowering is the same
        y = b.line(X, float(s[0]), float(c[0]))
    else:
        build = {"relu-sum": _relu_sum, "select": _select, "where": _where, "minmax": _minmax}[name]
        y = build(b, t, s, c)
    if isinstance(y, Const):  # a constant: still NaN for NaN, and shaped like x
        y = b.nan_passthrough(X, y)
    elif y != len(b.ops):  # y is x itself (or not the last op): make it the last op
        y = b("add", y, 0.0)
    dt = np.dtype(dtype)
    for inf in infinities_needing_guard(tuple(b.ops), dt):
        limit = float(evaluate(t, s, c, np.array([inf]))[0])
        y = b("where", b("equal", X, inf), limit, y)
    if not nan_carried(tuple(b.ops)):
        y = b.nan_passthrough(X, y)
    return Plan(name, tuple(b.ops))


# -- NaN and ±inf by construction ---------------------------------------------------------------------
# CPUs disagree on what min/max/relu/clip and comparisons do with NaN (x86 MAXPS returns its second
# operand; AVX-512 JIT kernels may compare with unordered predicates, so `NaN < t` can be true; on
# such a CPU OpenVINO's where and minmax graphs returned 0.995 for NaN). A plan therefore trusts only
# IEEE add/sub/mul/abs (NaN in -> NaN out on every ISA) and an explicit where(isnan(x), x, .): if the
# output is not NaN-carried through those alone, `make_plan` appends that guard.
# Cost (OpenVINO 2026.4 CPU, f32, 1 Mi elements, AMD EPYC 2 cores, guarded vs the same plan without
# the guard, interleaved): IsNaN is not fused into the CPU plug-in's JIT snippet, so a clamped
# 8-segment relu-sum went from 4.2-4.8 ms to 9.3-10.8 ms; where/select chains (N = 8, 16) differed by
# 0.93-1.17x, within noise. A compare-based guard (x == x) stays fused (6.5-8.4 ms) but is exactly what
# an unordered-predicate CPU gets wrong. Plans whose arithmetic carries NaN get no guard at all.
_ARITH = frozenset({"add", "sub", "mul", "abs", "sum"})


def nan_carried(ops: tuple[Op, ...]) -> bool:
    """True when the last op of `ops` is NaN wherever x is NaN whatever min/max/relu/clip and the
    comparisons do with NaN: NaN is carried by arithmetic, by a where both of whose branches carry it,
    by a min/max all of whose operands carry it, and by the guard where(isnan(x), x, .)."""
    carried = [True]  # x itself
    for op in ops:
        a = op.args
        if op.kind in _ARITH:
            v = any(isinstance(r, int) and carried[r] for r in a)
        elif op.kind in ("max", "min"):
            v = all(isinstance(r, int) and carried[r] for r in a)
        elif op.kind == "where":
            cond = a[0]
            guard = (isinstance(cond, int) and cond > 0 and ops[cond - 1] == Op("isnan", (X,))
                     and a[1] == X)
            v = guard or all(isinstance(r, int) and carried[r] for r in a[1:])
        else:  # relu, clip (may drop NaN), comparisons and isnan (booleans)
            v = False
        carried.append(v)
    return carried[-1]


def infinities_needing_guard(ops: tuple[Op, ...], dtype: str | np.dtype) -> tuple[float, ...]:
    """The infinities at which some op of `ops`, interpreted in `dtype`, sees or makes a NaN.

    Where none does, the plan's value at ±inf is pure IEEE arithmetic plus comparisons of non-NaN
    numbers, which every ISA computes alike; where one does (0·inf, inf − inf, e.g. a float16 constant
    that overflowed), `make_plan` selects the table's limit there by an exact comparison x == ±inf."""
    vals = _trace(Plan("", ops), np.array([-np.inf, np.inf]), dtype)
    bad = np.zeros(2, dtype=bool)
    for v in vals:
        if v.dtype.kind == "f":
            bad |= np.broadcast_to(np.isnan(v), (2,))
    return tuple(float(v) for v in np.array([-np.inf, np.inf])[bad])


def _relu_sum(b: _Builder, t: np.ndarray, s: np.ndarray, c: np.ndarray) -> Arg:
    knots = s[1:] * t + c[1:]  # table values at the breakpoints (right limits)
    if t.size == 1:
        u: Arg = Const.of(t[0])
        g: Arg = Const.of(knots[0])
    else:
        u = b("clip", X, t[0], t[-1])
        # on [t0, t_last]: g(u) = v0 + s1·(u - t0) + Σ_{i>=1} (s[i+1] - s[i])·relu(u - t[i]),
        # accumulated term by term so only u and the running sum are live (register pressure)
        g = b.line(u, float(s[1]), float(knots[0] - s[1] * t[0]))
        for i in range(1, t.size - 1):
            di = s[i + 1] - s[i]
            if di != 0.0:
                term = b("mul", b("relu", b("sub", u, t[i])), di)
                g = term if isinstance(g, Const) and float(g.value) == 0.0 else b("add", g, term)
    # the outer lines slope·(x − u), written slope·x − slope·u: x − u itself overflows in float16 when a
    # breakpoint is far from 0 and x is near the type's limit, although the table's value is finite.
    # Inside, u == x exactly, so the two products cancel to 0; at ±inf the result is ±inf; NaN stays NaN.
    def gap(slope: Arg | float) -> int:
        if isinstance(u, Const) and not isinstance(slope, int):
            return b.line(X, float(slope), -float(slope) * float(u.value))
        return b("sub", b("mul", X, slope), b("mul", u, slope))

    sl, sr = float(s[0]), float(s[-1])
    if sl == sr != 0.0:
        outer: int = gap(sl)
    elif sl != 0.0 and sr != 0.0:
        outer = gap(b("where", b("less", X, u), sl, sr))
    elif sr != 0.0:  # flat on the left: 0 for x < u (incl. -inf), sr·(x − u) otherwise (NaN carried)
        outer = b("where", b("less", X, u), 0.0, gap(sr))
    elif sl != 0.0:
        outer = b("where", b("greater", X, u), 0.0, gap(sl))
    else:  # both outer segments flat
        return b.nan_passthrough(X, g)
    if isinstance(g, Const) and float(g.value) == 0.0:
        return outer
    return b("add", outer, g)


def _select(b: _Builder, t: np.ndarray, s: np.ndarray, c: np.ndarray) -> Arg:
    xs: int = X
    flat_l, flat_r = s[0] == 0.0, s[-1] == 0.0
    if flat_l and flat_r:
        xs = b("where", b("equal", b("abs", X), np.inf), 0.0, X)
    elif flat_l:
        xs = b("where", b("equal", X, -np.inf), 0.0, X)
    elif flat_r:
        xs = b("where", b("equal", X, np.inf), 0.0, X)
    sk: Arg = Const.of(s[0])  # all comparisons false (x < t0, or NaN): segment 0
    ck: Arg = Const.of(c[0])
    for i, ti in enumerate(t):
        if s[i + 1] == s[i] and c[i + 1] == c[i]:  # (a breakpoint that changes nothing: no dead op)
            continue
        ge = b("greater_equal", X, ti)
        if s[i + 1] != s[i]:
            sk = b("where", ge, s[i + 1], sk)
        if c[i + 1] != c[i]:
            ck = b("where", ge, c[i + 1], ck)
    prod: Arg = b("mul", xs, sk) if isinstance(sk, int) else b.line(xs, float(sk.value), 0.0)
    if isinstance(prod, Const):  # every slope 0: y = c, NaN carried by x·0 (x is finite or NaN here)
        prod = b("mul", xs, 0.0)
    return b("add", prod, ck)


def _where(b: _Builder, t: np.ndarray, s: np.ndarray, c: np.ndarray) -> Arg:
    # the default branch is a sloped segment near the middle: NaN lands there when comparisons with
    # NaN are false, so on most CPUs the result is already NaN before the guard
    sloped = np.flatnonzero(s != 0.0)
    j = int(sloped[len(sloped) // 2]) if sloped.size else 0
    y: Arg = b.line(X, float(s[j]), float(c[j]))
    for k in range(j + 1, s.size):
        y = b("where", b("greater_equal", X, t[k - 1]), b.line(X, float(s[k]), float(c[k])), y)
    for k in range(j - 1, -1, -1):
        y = b("where", b("less", X, t[k]), b.line(X, float(s[k]), float(c[k])), y)
    return y


def _minmax(b: _Builder, t: np.ndarray, s: np.ndarray, c: np.ndarray) -> Arg:
    convex = bool(np.all(np.diff(s) >= 0))
    lines = list(dict.fromkeys(zip(s.tolist(), c.tolist(), strict=True)))
    sloped = [ln for ln in lines if ln[0] != 0.0]
    if not sloped:  # all flat: a constant
        return Const.of(max(ln[1] for ln in lines) if convex else min(ln[1] for ln in lines))
    flat = [ln[1] for ln in lines if ln[0] == 0.0]
    r: Arg | None = Const.of(max(flat) if convex else min(flat)) if flat else None  # flat lines: one
    for ln in sloped:  # a running max/min, so only x and the running value are live
        line = b.line(X, *ln)
        r = line if r is None else b("max" if convex else "min", r, line)
    return r  # type: ignore[return-value]  # NaN: the guard make_plan appends (max/min may drop it)


# -- numpy interpreter and the reference ---------------------------------------------------------------
# How `run` models a CPU's NaN handling: "ieee" (NaN propagates through min/max/relu/clip,
# comparisons with NaN are false), "drop" (min/max/relu/clip return the non-NaN operand, comparisons
# false), "drop-true" (that, and every comparison with a NaN operand is true: an unordered
# predicate). A plan must give NaN for NaN under all three; the last is what AVX-512 kernels can do.
NAN_MODELS = ("ieee", "drop", "drop-true")


def run(plan: Plan, x: np.ndarray, dtype: str | np.dtype = "float32", nan_model: str = "drop") -> np.ndarray:
    """Interpret `plan` in numpy with every float rounded to `dtype` (a model of what back ends do),
    min/max/compare treating NaN as `nan_model` says (see NAN_MODELS)."""
    vals = _trace(plan, x, dtype, nan_model)
    return np.broadcast_to(vals[-1], vals[0].shape).astype(np.dtype(dtype))


def _trace(plan: Plan, x: np.ndarray, dtype: str | np.dtype, nan_model: str = "drop") -> list[np.ndarray]:
    """Every value of `plan` on x (index 0 is x), as `run` computes them."""
    if nan_model not in NAN_MODELS:
        raise ValueError(f"nan_model must be one of {NAN_MODELS}, got {nan_model!r}")
    dt = np.dtype(dtype)
    vals: list[np.ndarray] = [np.asarray(x, dtype=dt)]
    mx, mn = (np.maximum, np.minimum) if nan_model == "ieee" else (np.fmax, np.fmin)

    def cmp(f):
        if nan_model != "drop-true":
            return f
        return lambda p, q: f(p, q) | np.isnan(p) | np.isnan(q)

    table = {
        "add": lambda p, q: p + q, "sub": lambda p, q: p - q, "mul": lambda p, q: p * q,
        "relu": lambda p: mx(p, dt.type(0)), "abs": np.abs,
        "clip": lambda p, lo, hi: mn(mx(p, lo), hi),
        "less": cmp(np.less), "greater": cmp(np.greater), "greater_equal": cmp(np.greater_equal),
        "equal": cmp(np.equal), "isnan": np.isnan, "where": np.where,
    }

    def get(a: Arg) -> np.ndarray:
        return a.value.astype(dt) if isinstance(a, Const) else vals[a]

    with np.errstate(all="ignore"):
        for op in plan.ops:
            a = [get(v) for v in op.args]
            k = op.kind
            if k in ("sum", "max", "min"):
                f = {"sum": np.add, "max": mx, "min": mn}[k]
                r = a[0]
                for v in a[1:]:
                    r = f(r, v)
            else:
                r = table[k](*a)
            vals.append(np.asarray(r).astype(dt) if np.asarray(r).dtype.kind == "f" else np.asarray(r))
    return vals


def rounded(table: Table, dtype: str | np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Breakpoints, slopes, intercepts rounded to `dtype` (then held in float64)."""
    dt = np.dtype(dtype)
    with np.errstate(over="ignore"):
        return tuple(np.asarray(v).astype(dt).astype(np.float64)  # type: ignore[return-value]
                     for v in (table.breakpoints, table.slopes, table.intercepts))


def reference(table: Table, x: np.ndarray, dtype: str | np.dtype = "float64") -> np.ndarray:
    """What a lowering in `dtype` must compute, before its own arithmetic rounding.

    The canonical rule evaluated in float64 on the table rounded to `dtype` and on x rounded to
    `dtype`: the graph compares x with the *rounded* breakpoints, so at a breakpoint the segment is
    decided exactly as here. Results are compared with `tolerance`, which allows the rounding of the
    graph's own arithmetic (a few units of `dtype` epsilon times the magnitudes involved).
    """
    dt = np.dtype(dtype)
    with np.errstate(over="ignore"):
        xr = np.asarray(x, dtype=np.float64).astype(dt).astype(np.float64)
    return evaluate(*rounded(table, dt), xr)


def tolerance(table: Table, x: np.ndarray, dtype: str | np.dtype, lowering: str) -> np.ndarray:
    """Allowed |y - reference| at each x for a lowering in `dtype`.

    4·eps·(|s·x| + |c| + |y|) for the segment's own line (one multiply, one add, rounding of the
    table's coefficients to `dtype`), plus the smallest normal number of `dtype` (results may
    underflow or be flushed to zero). relu-sum and minmax compute the continuous version of a table:
    plus its largest jump (a "continuous" table may jump by 1e-12 of its scale) and 2·eps·|Δslope|·|t|
    (their kinks are where the rounded lines cross, not at the rounded breakpoints). relu-sum's partial
    sums are rounded too: plus (N+2)·eps·(|v0| + Σ|Δslope|·span). float64 gets the same form (no
    runtime promises bit-exact float64 either).
    """
    dt = np.dtype(dtype)
    eps = float(np.finfo(dt).eps)
    t, s, c = rounded(table, dt)
    with np.errstate(over="ignore", invalid="ignore"):
        xr = np.asarray(x, dtype=np.float64).astype(dt).astype(np.float64)
    i = np.minimum(np.searchsorted(t, xr, side="right"), s.size - 1)
    with np.errstate(over="ignore", invalid="ignore"):
        local = np.abs(s[i] * xr) + np.abs(c[i])
        local = np.where(np.isfinite(local), local, 0.0)
        yref = np.abs(evaluate(t, s, c, xr))
        yref = np.where(np.isfinite(yref), yref, 0.0)
    with np.errstate(over="ignore"):
        tol = 4 * eps * (local + yref + float(np.max(np.abs(c))) * 1e-3) + float(np.finfo(dt).tiny)
    if lowering in ("relu-sum", "minmax") and t.size:
        # they compute the continuous version of the table (its jumps, <= 1e-12 scale, are allowed)
        # whose kinks sit where the rounded lines cross, not exactly at the rounded breakpoints
        kink = eps * float(np.max(np.abs(np.diff(s)) * (np.abs(t) + 1)))
        # the jump also enters the output's own rounding (|y| reaches |ref| + jump; found by hypothesis with
        # a 9.6e-24 jump, where the float32 output's half-ulp exceeded the other terms)
        tol = tol + Table(t, s, c).max_jump() * (1 + 4 * eps) + 2 * kink
    if lowering == "relu-sum" and t.size:
        span = float(t[-1] - t[0])
        inter = float(np.max(np.abs(s[1:] * t + c[1:])) + (abs(s[1]) + np.sum(np.abs(np.diff(s)))) * span)
        tol = tol + (s.size + 2) * eps * inter
    return tol
