"""Fuzzing the CLI in-process: hypothesis-generated table files through `show` and `export`, and
argument vectors through `fit`. Every run must end in exit 0 or 2 with no traceback; exit 2 is exactly
one `actiba: error:` line and leaves no output file; exit 0 leaves a complete output; no temporary
file is ever left behind.

The default suite runs a few hundred examples (~20 s). The slow run is sized by ACTIBA_FUZZ_EXAMPLES
(default 10 000 in total, split 9:1 between table files and fit vectors, since a fit costs ~50x a show):

    ACTIBA_FUZZ_EXAMPLES=10000 python -m pytest tests/test_fuzz_cli.py -m slow -q -s

(ACTIBA_FUZZ_PROGRESS=FILE appends the running counts to FILE every 250 runs.)
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import time
import warnings
from contextlib import redirect_stderr, redirect_stdout

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actiba.cli import main

FAST_TABLES, FAST_FITS = 160, 40
SLOW_TOTAL = int(os.environ.get("ACTIBA_FUZZ_EXAMPLES", "10000"))
COUNTS: dict[str, int] = {}
PROGRESS = os.environ.get("ACTIBA_FUZZ_PROGRESS")  # a file to append running counts to


def invoke(argv: list[str]) -> tuple[int, str, str, list[str]]:
    """(exit code, stdout, stderr, warnings) of one in-process CLI run."""
    out, err = io.StringIO(), io.StringIO()
    with warnings.catch_warnings(record=True) as caught, redirect_stdout(out), redirect_stderr(err):
        warnings.simplefilter("always")
        try:
            rc = main(argv)
        except SystemExit as exc:  # --help / --version
            rc = exc.code if isinstance(exc.code, int) else 2
    return rc, out.getvalue(), err.getvalue(), [f"{w.category.__name__}: {w.message}" for w in caught]


def check(argv: list[str], folder: str, outputs: list[str], before: set[str]) -> int:
    rc, out, err, warned = invoke(argv)
    where = f"argv={argv!r}\nstderr={err[-2000:]!r}"
    assert rc in (0, 2), where
    assert "Traceback" not in err and "internal error" not in err, where
    assert not warned, f"{where}\nwarnings={warned}"
    if rc == 2:
        lines = err.strip("\n").split("\n")
        assert len(lines) == 1 and lines[0].startswith("actiba: error: "), where
        for o in outputs:
            assert not os.path.exists(o), f"{where}\n{o} written on failure"
    else:
        for o in outputs:
            assert os.path.isfile(o) and os.path.getsize(o) > 0, where
            if o.endswith(".json"):
                json.loads(open(o, encoding="utf-8").read())
    left = set(os.listdir(folder)) - before - {os.path.basename(o) for o in outputs}
    assert not left, f"{where}\nleft behind: {left}"
    COUNTS[argv[0]] = COUNTS.get(argv[0], 0) + 1
    if PROGRESS and sum(COUNTS.values()) % 250 == 0:  # a long run can be watched (and counted if stopped)
        with open(PROGRESS, "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%H:%M:%S')} {dict(sorted(COUNTS.items()))}\n")
    return rc


# --- table files --------------------------------------------------------------------------------------
_numbers = st.one_of(
    st.floats(-10, 10, allow_nan=False),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-300, 5e-324, 1e38, 3.5e38, 65504.0, 7e4, 1e100, 1e308, -1e308]),
    st.integers(-10**6, 10**6),
)
_junk = st.recursive(st.one_of(st.none(), st.booleans(), _numbers, st.text(max_size=8)),
                     lambda inner: st.one_of(st.lists(inner, max_size=4),
                                             st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                     max_leaves=8)
_FUNCS = ["silu", "swish", "softplus", "gelu", "gelu-tanh", "sigmoid", "tanh", "exp", "custom", "relu",
          "expr:x*x", ""]


@st.composite
def table_docs(draw):
    """Mostly well-formed tables (random sizes, magnitudes, functions, domains, targets) with a few
    mutations each: the bugs live in numbers that are valid JSON but not sensible tables."""
    n = draw(st.integers(1, 9))
    scale = draw(st.sampled_from([1.0, 1.0, 1.0, 1e-6, 1e3, 1e30, 1e300]))
    bps = sorted(set(draw(st.lists(st.floats(-12, 12, allow_nan=False), min_size=n - 1, max_size=n - 1))))
    n = len(bps) + 1
    d = {"format": "actiba-pwl/1", "function": draw(st.sampled_from(_FUNCS)),
         "params": draw(st.sampled_from([{}, {"beta": 1.0}, {"beta": 0.5}, {"beta": -1.0}, {"beta": 1e300},
                                         {"beta": "x"}, None])),
         "domain": draw(st.one_of(st.none(), st.tuples(st.floats(-20, 0), st.floats(0.001, 20)).map(list))),
         "breakpoints": [b * (scale if draw(st.booleans()) else 1) for b in bps] if scale < 1e300 else bps,
         "slopes": [draw(st.floats(-3, 3)) * scale for _ in range(n)],
         "intercepts": [draw(st.floats(-3, 3)) * scale for _ in range(n)],
         "continuous": draw(st.sampled_from([True, False, None])),
         "error": draw(st.sampled_from([None, {"max_abs": 0.01, "max_rel": None, "rms": 0.001, "over": "domain"},
                                        {"max_abs": -1}, {}])),
         "target": draw(st.sampled_from([None, None, "npu-ppe", "tflite-int16", "bogus", {"name": "x"}])),
         "provenance": {}}
    d["breakpoints"] = sorted(d["breakpoints"])
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from(sorted(d) + ["extra"]))
        action = draw(st.sampled_from(["replace", "drop", "number"]))
        if action == "drop":
            d.pop(key, None)
        elif action == "replace":
            d[key] = draw(_junk)
        elif isinstance(d.get(key), list) and d[key]:
            d[key][draw(st.integers(0, len(d[key]) - 1))] = draw(_numbers)
    return d


@st.composite
def table_texts(draw):
    """The file's text: JSON of a generated table (NaN/Infinity tokens allowed, as Python writes them),
    sometimes a big literal (1e400), truncated, a table set, or not JSON at all."""
    kind = draw(st.sampled_from(["table"] * 6 + ["set", "e400", "truncated", "garbage"]))
    if kind == "garbage":
        return draw(st.one_of(st.text(max_size=40), st.sampled_from(["", "[]", "null", "{}", "\ufeff{}"])))
    d = draw(table_docs())
    if kind == "set":
        key = draw(st.sampled_from(["*:silu#*", "m.layers.0.mixer:silu#0", "bad key", "*:tanh#*"]))
        d = {"format": "actiba-pwl-set/1", "model": None, "calibration": None, "tables": {key: d}}
    text = json.dumps(d, indent=1)
    if kind == "e400":
        text = text.replace("1.0", "1e400", 1).replace("0.5", "-1e999", 1)
    if kind == "truncated":
        text = text[: draw(st.integers(0, max(0, len(text) - 1)))]
    return text


_EXPORTS = {
    "c-header": [[], ["symbol=act_tab"], ["symbol=9bad"]],
    "npu-ppe": [[], ["input_scale=0.05"], ["input_scale=-1"], ["input_scale=nan"], ["mode=bogus"], ["bits=3"]],
    "tflite-int16": [[], ["input_min=-8", "input_max=8"], ["input_min=1", "input_max=-1"],
                     ["output_min=0", "output_max=1"], ["input_max=1e308", "input_min=-1e308"]],
    "ethosu-int16": [[], ["input_scale=0.001"], ["input_scale=0"]],
    "int8-lut": [[], ["input_scale=0.05", "input_zero_point=3"], ["input_zero_point=300"],
                 ["output_scale=1e-30"], ["output_scale=1e30"]],
    "onnx": [[], ["opset=13"], ["opset=99"], ["opset=x"], ["dtype=float16"], ["dtype=float64"], ["dtype=int8"],
             ["lowering=select"], ["lowering=minmax"], ["lowering=bogus"], ["rank=0"], ["rank=9"]],
    "openvino": [[], ["dtype=f16"], ["lowering=where"], ["rank=0"], ["rank=3"], ["bogus=1"]],
}


@st.composite
def table_cases(draw):
    text = draw(table_texts())
    what = draw(st.sampled_from(["show"] * 2 + sorted(_EXPORTS)))
    params = draw(st.sampled_from(_EXPORTS[what])) if what != "show" else []
    return text, what, params


def _table_case(case) -> None:
    text, what, params = case
    folder = tempfile.mkdtemp(prefix="fuzz.")
    try:
        src = os.path.join(folder, "t.json")
        with open(src, "w", encoding="utf-8") as fh:
            fh.write(text)
        before = set(os.listdir(folder))
        if what == "show":
            check(["show", src], folder, [], before)
            return
        ext = {"c-header": ".h", "onnx": ".onnx", "openvino": ".xml"}.get(what, ".json")
        out = os.path.join(folder, "out" + ext)
        outs = [out] + ([out[:-4] + ".bin"] if ext == ".xml" else [])
        argv = ["export", src, "--to", what, "-o", out]
        for p in params:
            argv += ["--param", p]
        check(argv, folder, outs, before)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- fit argument vectors -----------------------------------------------------------------------------
_FIT_FUNCS = ["silu", "swish", "softplus", "gelu", "gelu-tanh", "sigmoid", "tanh", "exp", "relu", "",
              "expr:x*x", "expr:sin(x)", "expr:exp(exp(x))", "expr:1/x", "expr:abs(x)", "expr:log(x)",
              "expr:sqrt(x)", "expr:x**0.5", "expr:where(x>0,x,0)", "expr:", "expr:x+", "expr:__import__('os')",
              "expr:" + "(" * 300 + "x" + ")" * 300, "expr:tanh(1000*x)", "expr:1e308*x", "expr:x*0"]
_floats = st.one_of(st.floats(-20, 20), st.sampled_from(["nan", "inf", "-inf", "1e308", "-1e308", "1e-300",
                                                         "0", "-0", "1e400", "x", ""]))


@st.composite
def fit_argvs(draw):
    argv = ["fit", draw(st.sampled_from(_FIT_FUNCS))]
    if draw(st.integers(0, 9)):
        argv += ["--segments", str(draw(st.sampled_from([1, 2, 3, 4, 5, 6, 8, 0, -1, 4097, 10**9])))]
    else:
        argv += ["--max-error", str(draw(st.sampled_from([0.5, 0.1, 0.03, 0, -1, "nan", "inf", 1e-300])))]
    if draw(st.booleans()):
        lo, hi = draw(_floats), draw(_floats)
        argv += ["--range", str(lo), str(hi)]
    for flag, values in (("--metric", ["max-abs", "max-rel", "rms", "bogus"]),
                         ("--tails", ["free", "asymptote", "clamp", "auto"]),
                         ("--beta", ["1", "0.5", "0", "-1", "nan", "1e308"]),
                         ("--weight", ["1", "x*x", "-1", "exp(x)", "1/x", "0", "abs(x)+1", "nan"]),
                         ("--target", ["npu-ppe", "tflite-int16", "int8-lut", "ethosu-int16", "bogus"]),
                         ("--param", ["input_scale=0.05", "output_min=0", "bogus=1", "noequals"])):
        if draw(st.integers(0, 4)) == 0:
            argv += [flag, draw(st.sampled_from(values))]
    if draw(st.integers(0, 4)) == 0:
        argv.append("--discontinuous")
    if draw(st.integers(0, 6)) == 0:
        argv.append(draw(st.sampled_from(["--per-site", "--site=x", "--bogus", "-o"])))
    return argv


def _fit_case(argv, to_stdout: bool) -> None:
    folder = tempfile.mkdtemp(prefix="fuzz.")
    try:
        outs = [] if to_stdout else [os.path.join(folder, "t.json")]
        check(argv + (["-o", outs[0]] if outs else []), folder, outs, set(os.listdir(folder)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _settings(n: int):
    return settings(max_examples=n, deadline=None, database=None, derandomize=False,
                    suppress_health_check=list(HealthCheck))


def _report(label: str, t0: float) -> None:
    print(f"\n{label}: {dict(sorted(COUNTS.items()))} CLI runs in {time.perf_counter() - t0:.1f} s")


def test_fuzz_table_files():
    COUNTS.clear()
    t0 = time.perf_counter()
    _settings(FAST_TABLES)(given(table_cases())(_table_case))()
    _report("table files", t0)


def test_fuzz_fit_argv():
    COUNTS.clear()
    t0 = time.perf_counter()
    _settings(FAST_FITS)(given(fit_argvs(), st.booleans())(_fit_case))()
    _report("fit argv", t0)


@pytest.mark.slow
def test_fuzz_many():
    """>= 10 000 CLI runs in total (ACTIBA_FUZZ_EXAMPLES)."""
    COUNTS.clear()
    t0 = time.perf_counter()
    n_fit = max(1, SLOW_TOTAL // 10)
    _settings(SLOW_TOTAL - n_fit)(given(table_cases())(_table_case))()
    _settings(n_fit)(given(fit_argvs(), st.booleans())(_fit_case))()
    _report("fuzz", t0)
    assert sum(COUNTS.values()) >= SLOW_TOTAL * 0.9  # hypothesis may stop early only on an exhausted space
