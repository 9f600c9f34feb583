"""Generated C headers compiled with the system compiler: the float header is bit-exact with the canonical
evaluator (double), and every integer header reproduces its Python simulator over the whole grid."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from actiba import functions, targets
from actiba.table import Table, evaluate

CC = shutil.which("cc") or shutil.which("gcc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler")

FLOAT_MAIN = r"""
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include "t.h"
int main(void) {
  unsigned long long bits;
  while (scanf("%llx", &bits) == 1) {
    double x, y; float yf; uint64_t yb; uint32_t fb;
    memcpy(&x, &bits, 8);
    y = SYM(x); yf = SYM_f((float)x);
    memcpy(&yb, &y, 8); memcpy(&fb, &yf, 4);
    printf("%016llx %08x\n", (unsigned long long)yb, (unsigned)fb);
  }
  return 0;
}
"""


def build(tmp_path, header: str, main: str, flags: list[str], name: str = "prog"):
    (tmp_path / "t.h").write_text(header)
    (tmp_path / f"{name}.c").write_text(main)
    exe = tmp_path / name
    subprocess.run([CC, *flags, "-o", str(exe), str(tmp_path / f"{name}.c"), "-lm"], check=True,
                   capture_output=True)
    return exe


def probe_points(t: Table) -> np.ndarray:
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e30, -1e30, 1e308, -1e308, 5e-324, -5e-324,
               2.2250738585072009e-308, -2.2250738585072009e-308, 2.2250738585072014e-308, 1.0, -1.0]
    b = t.breakpoints
    near = np.concatenate([b, np.nextafter(b, np.inf), np.nextafter(b, -np.inf),
                           b.astype(np.float32).astype(np.float64)])
    return np.concatenate([np.linspace(-12, 12, 24001), special, near])


def tables() -> list[Table]:
    fitted = targets.get("c-header").fit(functions.get("silu"), 8, -8.0, 8.0, "asymptote", {})
    hand = Table([-1.0, 0.0, 2.5], [0.0, 0.3, -1e-3, 0.0], [0.1, 0.2, 1.0 / 3.0, 7.0])
    single = Table([], [2.0], [-1.0])
    steep = Table([-1e-300, 1e-300], [1e300, -3.0, 1e-300], [0.5, -0.25, 1e300])
    return [fitted, hand, single, steep]


@pytest.mark.parametrize("flags", [["-O2"], ["-O3", "-march=native", "-ffp-contract=fast"]])
def test_float_header_bit_exact(tmp_path, flags):
    C = targets.get("c-header")
    for k, t in enumerate(tables()):
        header = C.serialize_c(C.check(t), "tbl")
        exe = build(tmp_path, header, FLOAT_MAIN.replace("SYM", "tbl"), [*flags, "-std=c99"], f"p{k}")
        x = probe_points(t)
        inp = "\n".join(f"{v:016x}" for v in x.view(np.uint64)) + "\n"
        out = subprocess.run([str(exe)], input=inp, capture_output=True, text=True, check=True).stdout.split()
        y_c = np.array([int(v, 16) for v in out[0::2]], dtype=np.uint64).view(np.float64)
        yf_c = np.array([int(v, 16) for v in out[1::2]], dtype=np.uint32).view(np.float32).astype(np.float64)
        ref = evaluate(t.breakpoints, t.slopes, t.intercepts, x)
        nan = np.isnan(ref)
        assert np.array_equal(np.isnan(y_c), nan)
        assert np.array_equal(y_c[~nan].view(np.uint64), ref[~nan].view(np.uint64)), f"table {k}"
        # float version: the same rule on float32-rounded numbers, close but not bit-exact
        assert np.array_equal(np.isnan(yf_c), nan)
        with np.errstate(over="ignore"):
            xf = x.astype(np.float32).astype(np.float64)
        ok = np.isfinite(ref) & (np.abs(xf) < 1e30) & (np.abs(ref) < 1e30)
        if k in (0, 1):  # tables with moderate numbers
            ref_f = evaluate(t.breakpoints, t.slopes, t.intercepts, xf)
            assert np.allclose(yf_c[ok], ref_f[ok], rtol=1e-5, atol=1e-5)


def test_header_has_exact_literals():
    t = Table([0.1], [1.0 / 3.0, 2.0], [0.0, -0.7])
    h = targets.get("c-header").serialize_c(targets.get("c-header").check(t), "x")
    # shortest round-trip decimals (no hex floats: C89 / C++11), -0.0 kept negative
    assert repr(1.0 / 3.0) in h and "X_INLINE double x(double x)" in h and "x_f(float x)" in h
    assert "0x" not in h
    h0 = targets.get("c-header").serialize_c(targets.get("c-header").check(Table([], [-0.0], [2.0])), "z")
    assert "-0.0," in h0 or "-0.0\n" in h0


INT_MAIN = {
    "int8-lut": ("for (int q = -128; q <= 127; q++) printf(\"%d\\n\", (int)tbl_lookup((int8_t)q));", -128, 127),
    "tflite-int16": ("for (int q = -32768; q <= 32767; q++) printf(\"%ld\\n\", (long)tbl_lookup((int16_t)q));",
                     -32768, 32767),
    "ethosu-int16": ("for (int q = -32768; q <= 32767; q++) printf(\"%d\\n\", (int)tbl_lookup((int16_t)q));",
                     -32768, 32767),
    "npu-ppe": ("for (int q = -4096; q <= 4095; q++) printf(\"%d\\n\", (int)tbl_eval(q));", -4096, 4095),
}


@pytest.mark.parametrize("name,params", [("int8-lut", {}), ("tflite-int16", {}),
                                         ("tflite-int16", {"mode": "tosa"}),
                                         ("ethosu-int16", {"encoding": "fields", "rounding": "truncate"}),
                                         ("ethosu-int16", {}), ("npu-ppe", {}),
                                         ("npu-ppe", {"rounding": "half-away", "output_dtype": "uint8"})])
def test_integer_headers_match_simulators(tmp_path, name, params):
    T = targets.get(name)
    t = T.fit(functions.get("gelu"), 8, -5.0, 5.0, "free", params)
    cfg = T.check(t)
    loop, qmin, qmax = INT_MAIN[name]
    main = f"#include <stdio.h>\n#include <stdint.h>\n#include \"t.h\"\nint main(void) {{ {loop} return 0; }}\n"
    exe = build(tmp_path, T.serialize_c(cfg, "tbl"), main, ["-O2", "-std=c99", "-Wall", "-Werror"])
    out = np.array(subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split(),
                   dtype=np.int64)
    assert np.array_equal(out, T.simulate(cfg, np.arange(qmin, qmax + 1)))


PORTABLE_MAIN = r"""
#include <stdio.h>
#include "t.h"
int main(void) {
  double x;
  while (scanf("%lf", &x) == 1) {
    printf("%.17g %.9g\n", tbl(x), (double)tbl_f((float)x));
  }
  return 0;
}
"""
CXX = shutil.which("g++") or shutil.which("c++")


@pytest.mark.parametrize("lang", ["c89", "c++11"])
def test_float_header_compiles_as_c89_and_cxx11_and_is_exact(tmp_path, lang: str) -> None:
    """No hex-float literals, no C99-only inline/isinf/HUGE_VALF: -std=c89 -pedantic and -std=c++11
    build it without a warning, and the decimal literals read back bit for bit."""
    comp = CC if lang == "c89" else CXX
    if comp is None:
        pytest.skip("no C++ compiler")
    C = targets.get("c-header")
    for k, t in enumerate(tables()):
        (tmp_path / "t.h").write_text(C.serialize_c(C.check(t), "tbl"))
        src = tmp_path / (f"m{k}.c" if lang == "c89" else f"m{k}.cpp")
        src.write_text(PORTABLE_MAIN)
        exe = tmp_path / f"m{k}"
        flags = ["-x", "c", "-std=c89"] if lang == "c89" else ["-x", "c++", "-std=c++11"]
        r = subprocess.run([comp, *flags, "-pedantic", "-Wall", "-Wextra", "-Werror", "-O2", "-o", str(exe),
                            str(src), "-lm"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        x = probe_points(t)
        out = subprocess.run([str(exe)], input="\n".join(repr(float(v)) for v in x) + "\n",
                             capture_output=True, text=True, check=True).stdout.split()
        y = np.array([float(v) for v in out[0::2]])
        ref = evaluate(t.breakpoints, t.slopes, t.intercepts, x)
        nan = np.isnan(ref)
        assert np.array_equal(np.isnan(y), nan)
        assert np.array_equal(y[~nan], ref[~nan]), f"table {k}"


def test_float_header_warns_under_fast_math(tmp_path) -> None:
    C = targets.get("c-header")
    (tmp_path / "t.h").write_text(C.serialize_c(C.check(tables()[1]), "tbl"))
    (tmp_path / "m.c").write_text(PORTABLE_MAIN)
    base = [CC, "-std=c99", "-c", "-o", str(tmp_path / "m.o"), str(tmp_path / "m.c")]
    fast = subprocess.run([*base, "-ffast-math"], capture_output=True, text=True)
    assert fast.returncode == 0 and "fast-math" in fast.stderr and "guards" in fast.stderr
    plain = subprocess.run(base, capture_output=True, text=True)
    assert plain.returncode == 0 and "fast-math" not in plain.stderr
