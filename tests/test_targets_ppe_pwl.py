"""npu-ppe's second encoding, the NPU compiler's PWLTableEntry{range, shift, bias, floatRange,
postShift}: the derived semantics evaluated on the compiler's own LeakyReLU tables (every code of
each), what our configs emit bit-exact under it, and what cannot be emitted."""

from __future__ import annotations

import json

import numpy as np
import pytest

from actiba import functions, targets
from actiba.cli import main
from actiba.errors import InputError
from actiba.targets import ppe_pwl
from actiba.targets.ppe_format import Q

# (alpha, output zero point, input codes per output code, range, shift, bias, postShift): tables as
# the compiler states them (prelu_pwl_table.cpp / custom_pwl_table.cpp), as test data
COMPILER = {
    "a0-zp0": (0.0, 0, 1, [0, 255], [-5], [0], 5),
    "a0.1-zp128": (0.1, 128, 1, [-128, -109, -90, -72, -54, -36, -18, 0, 127],
                   [1, -1, 0, 0, 0, -1, -1, -4], [-119, 44, -43, -31, -19, 18, 10, 0], 4),
    "a0.1-zp128-custom": (0.1, 128, 1, [-128, -109, -90, -72, -54, -36, -18, 0, 128],
                          [1, -1, 0, 0, 0, -1, -1, -4], [-119, 44, -43, -31, -19, 18, 10, 0], 4),
    "a0.2-zp1": (0.2, 1, 1, [-5, -3, -1, 1, 254], [0, -1, 0, -1], [3, 4, 1, 0], 1),
    "a0.2-zp2": (0.2, 2, 1, [-10, -8, -6, -4, 0, 253], [1, 0, 1, 1, 0], [3, 6, 2, 1, 0], 0),
    "a0.2-zp3": (0.2, 3, 1, [-15, -13, -11, -9, -7, -5, -3, 0, 252], [2, 0, 2, 4, 2, 3, 1, 0],
                 [1, 10, 1, -1, 1, 0, 1, 0], 0),
    "a0.2-zp4": (0.2, 4, 1, [-20, -12, -5, -4, -3, -2, -1, 0, 251], [0, 0, -5, -5, -5, -5, -5, -3],
                 [-7, -1, 152, 120, 88, 64, 32, 0], 3),
    "a0.2-zp16": (0.2, 16, 1, [-80, -68, -56, -45, -33, -21, -10, 0, 239], [0, 0, 0, 0, 0, 0, 0, -2],
                  [16, 14, 12, 9, 7, 5, 2, 0], 2),
    "a0.2-zp42": (0.2, 42, 1, [-210, -180, -150, -120, -90, -60, -30, 0, 213], [1, 1, 1, 1, 1, 1, 1, -1],
                  [20, 17, 14, 11, 8, 5, 2, 0], 1),
}


def _alpha25(zp: int):
    """The compiler builds its alpha = 0.25 tables by a rule: input on an 8x finer grid, from -32 zp
    through 0, then 7 equal steps (rounded down) to 8 (255 - zp); shift 2 left of 0, 0 right of it;
    bias 4 everywhere; postShift 3."""
    hi = 8 * (255 - zp)
    return (0.25, zp, 8, [-32 * zp, 0, *[hi * k // 7 for k in range(1, 8)]], [2] + [0] * 7, [4] * 8, 3)


for _zp in (1, 37, 64, 100, 128):
    COMPILER[f"a0.25-zp{_zp}"] = _alpha25(_zp)


def _errors(spec, semantics=ppe_pwl.evaluate):
    alpha, zp, per, rng, shift, bias, post = spec
    entry = ppe_pwl.entry_from_dict({"range": rng, "shift": shift, "bias": bias,
                                     "floatRange": [-65504.0, 65504.0], "postShift": post})
    x = np.arange(rng[0], rng[-1] + 1)  # every input code the table sees
    out = np.clip(semantics(entry, x) + zp, 0, 255)
    real = x / per
    ref = np.clip(np.where(real >= 0, real, alpha * real) + zp, 0, 255)
    return x, np.abs(out - ref)


@pytest.mark.parametrize("name", [n for n in COMPILER if n not in ("a0.1-zp128", "a0.1-zp128-custom",
                                                                   "a0.2-zp16", "a0.2-zp42")])
def test_compiler_tables_give_leaky_relu_on_every_code(name: str) -> None:
    _x, err = _errors(COMPILER[name])
    assert err.max() <= 0.5 + 1e-9, (name, err.max())


@pytest.mark.parametrize("name,codes,worst,at", [("a0.1-zp128", 9, 0.8, -128), ("a0.1-zp128-custom", 9, 0.8, -128),
                                                 ("a0.2-zp16", 9, 0.6, None), ("a0.2-zp42", 75, 1.2, None)])
def test_where_the_compiler_tables_are_off(name: str, codes: int, worst: float, at: int | None) -> None:
    """What ppe_pwl's docstring states: these tables miss round(LeakyReLU) on a few codes."""
    x, err = _errors(COMPILER[name])
    bad = err > 0.5 + 1e-9
    assert int(bad.sum()) == codes and err.max() == pytest.approx(worst, abs=1e-9)
    if at is not None:
        assert x[np.argmax(err)] == at


def test_the_derivation_discriminates() -> None:
    """The alternatives the docstring rules out do fail the generated alpha = 0.25 tables."""
    def rounding_post(entry, x):  # post shift with a rounding half
        y = ppe_pwl.evaluate(ppe_pwl.PwlEntry(entry.range, entry.shift, entry.bias, entry.float_range, 0), x)
        return (y + (1 << entry.post_shift >> 1)) >> entry.post_shift

    def bias_first(entry, x):  # bias added before the shift
        rng = np.asarray(entry.range)
        xc = np.clip(x, rng[0], rng[-1])
        j = np.searchsorted(rng[1:-1], xc, side="right")
        sh, b = np.asarray(entry.shift)[j], np.asarray(entry.bias)[j]
        v = xc + b
        return np.where(sh >= 0, v >> np.maximum(sh, 0), v << np.maximum(-sh, 0)) >> entry.post_shift

    for alt in (rounding_post, bias_first):
        _x, err = _errors(COMPILER["a0.25-zp64"], alt)
        assert err.max() > 0.5 + 1e-9  # not round(LeakyReLU) any more


# -- emitting: our configs under the entry's semantics ------------------------------------------------
EQUAL = {"input_scale": 1 / 512, "output_scale": 1 / 16, "input_zero_point": 0, "monotone": "auto"}


@pytest.mark.parametrize("fn,tails", [("expr:maximum(x, 0.1 * x)", "free"), ("sigmoid", "clamp"),
                                      ("softplus", "free"), ("expr:maximum(x, 0)", "free")])
def test_emitted_entry_is_bit_exact_with_the_config(fn: str, tails: str) -> None:
    T = targets.get("npu-ppe")
    act = functions.get(fn)
    cfg = T.check(T.fit(act, 8, -8.0, 8.0, tails, EQUAL))
    entry = ppe_pwl.from_config(cfg)  # increasing functions, monotone fits: slopes >= 0
    lo, hi = (-128, 127) if cfg.output_dtype == "int8" else (0, 255)
    assert np.array_equal(ppe_pwl.output(entry, Q, cfg.output_zero_point, lo, hi), T.simulate(cfg, Q))
    assert entry.segments == cfg.segments and len(entry.range) == cfg.segments + 1


def test_cli_writes_the_entry_and_it_reads_back(tmp_path) -> None:
    T = targets.get("npu-ppe")
    t = T.fit(functions.get("expr:maximum(x, 0.1 * x)"), 8, -8.0, 8.0, "free", EQUAL)
    src, out = tmp_path / "t.json", tmp_path / "e.json"
    t.save(src)
    assert main(["export", str(src), "--to", "npu-ppe", "-o", str(out), "--param", "format=pwl-entry"]) == 0
    d = json.loads(out.read_text())
    assert list(d)[:5] == list(ppe_pwl.KEYS) and len(d["range"]) == len(d["shift"]) + 1 == 9
    entry = ppe_pwl.read_entry(out.read_text())
    cfg = T.check(t)
    assert np.array_equal(ppe_pwl.output(entry, Q, d["zeroPoint"], -128, 127), T.simulate(cfg, Q))


def test_what_cannot_be_emitted_says_why(tmp_path, capsys) -> None:
    T = targets.get("npu-ppe")
    silu = functions.get("silu")
    cases = [({"input_scale": 0.003, "output_scale": 0.01}, "power of two"),
             ({**EQUAL, "rounding": "half-away"}, "half-up")]
    for params, why in cases:
        cfg = T.check(T.fit(silu, 8, -8.0, 8.0, "free", params))
        with pytest.raises(InputError, match=why):
            ppe_pwl.from_config(cfg)
    neg = T.check(T.fit(functions.get("expr:-x"), 2, -8.0, 8.0, "free", EQUAL))
    with pytest.raises(InputError, match="negative slope"):
        ppe_pwl.from_config(neg)
    src, out = tmp_path / "t.json", tmp_path / "e.json"
    T.fit(silu, 8, -8.0, 8.0, "free", {"input_scale": 0.003, "output_scale": 0.01}).save(src)
    assert main(["export", str(src), "--to", "npu-ppe", "-o", str(out), "--param", "format=pwl-entry"]) == 2
    assert "power of two" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("bad,what", [({"shift": []}, "segments"), ({"range": [0, 5, 3]}, "range"),
                                      ({"bias": [0, 1.5]}, "bias"), ({"floatRange": [0, "x"]}, "floatRange"),
                                      ({"postShift": -1}, "postShift")])
def test_entry_validation_names_the_field(bad: dict, what: str) -> None:
    good = {"range": [0, 5, 9], "shift": [0, 1], "bias": [0, 1], "floatRange": [0.0, 1.0], "postShift": 1}
    with pytest.raises(InputError, match=what):
        ppe_pwl.entry_from_dict({**good, **bad})
    missing = dict(good)
    del missing["postShift"]
    with pytest.raises(InputError, match="postShift"):
        ppe_pwl.entry_from_dict(missing)
