"""Calibration: statistics against numpy, exact pooling, capture against observe_activations, calibrated
fitting against the canonical evaluator on samples from the calibrated distribution, and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from actiba.calibrate import stats as S
from actiba.errors import InputError

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False, width=64)
arrays = hnp.arrays(np.float64, st.integers(1, 400), elements=finite)
QS = [float(q) for q in S.PERCENTILES] + [0.0, 100.0, 12.5, 63.0]


def _bin_tol(s: S.SiteStats, ref: np.ndarray) -> float:
    return s.width * (1 + 1e-9) + 1e-12 * float(np.max(np.abs(ref)) + 1)


# --- statistics --------------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays)
def test_percentiles_within_one_bin_of_numpy(x):
    s = S.from_values("m:silu#0", "silu", x)
    assert s.count == x.size and s.min == x.min() and s.max == x.max()
    assert math.isclose(s.mean, float(np.mean(x)), rel_tol=1e-9, abs_tol=1e-6)
    assert math.isclose(s.std, float(np.std(x)), rel_tol=1e-6, abs_tol=1e-6)
    assert sum(s.counts) == x.size
    if s.width:
        assert len(s.counts) >= S.MIN_BINS or s.width == S._TINY  # subnormal spans: fewer bins
        # every bin holds exactly the values that lie in it (an independent count)
        e = np.asarray(s.edges)
        ref = np.array([np.sum((x >= e[i]) & ((x < e[i + 1]) if i < len(e) - 2 else (x <= e[i + 1])))
                        for i in range(len(e) - 1)])
        np.testing.assert_array_equal(np.asarray(s.counts), ref)
    for q in QS:
        assert abs(s.quantile(q) - np.percentile(x, q)) <= _bin_tol(s, x), q


@settings(max_examples=30, deadline=None)
@given(st.lists(arrays, min_size=1, max_size=4), st.randoms(use_true_random=False))
def test_one_pass_in_any_order_equals_all_at_once(chunks, rnd):
    """The growing lattice ends where the direct one would: same bins, same counts."""
    whole = S.from_values("m:silu#0", "silu", np.concatenate(chunks))
    rnd.shuffle(chunks)
    acc = S.Accumulator("m:silu#0", "silu")
    for c in chunks:
        acc.observe(c)
    piecewise = acc.finish()
    assert piecewise.edges == whole.edges and piecewise.counts == whole.counts


@settings(max_examples=30, deadline=None)
@given(st.lists(arrays, min_size=2, max_size=4))
def test_pooled_is_exact(parts):
    sites = [S.from_values(f"m:silu#{i}", "silu", p) for i, p in enumerate(parts)]
    pool = S.pooled(sites)
    allx = np.concatenate(parts)
    assert pool.count == allx.size and sum(pool.counts) == allx.size
    assert pool.min == allx.min() and pool.max == allx.max()
    direct = S.from_values("all", "silu", allx)  # the merge loses nothing: same bins as one histogram
    assert (pool.edges, pool.counts) == (direct.edges, direct.counts)
    assert math.isclose(pool.std, float(np.std(allx)), rel_tol=1e-6, abs_tol=1e-6)
    for q in QS:
        assert abs(pool.quantile(q) - np.percentile(allx, q)) <= _bin_tol(pool, allx), q


def test_nonfinite_counted_not_binned():
    x = np.array([np.nan, np.inf, -np.inf, -np.inf, 1.0, 2.0, 3.0])
    s = S.from_values("m:silu#0", "silu", x)
    assert (s.count, s.nan, s.posinf, s.neginf, s.finite, sum(s.counts)) == (7, 1, 1, 2, 3, 3)
    assert s.quantile(50) == pytest.approx(2.0, abs=s.width)


def test_density_integrates_to_one():
    x = np.random.default_rng(0).normal(size=20000)
    s = S.from_values("m:silu#0", "silu", x)
    grid = np.linspace(s.edges[0], s.edges[-1], 400001)
    assert np.trapezoid(s.density()(grid), grid) == pytest.approx(1.0, abs=2e-3)
    assert s.density()(np.array([s.edges[0] - 1, s.edges[-1] + 1])).tolist() == [0.0, 0.0]


def _stats(sites: dict[str, np.ndarray]) -> S.CalibrationStats:
    return S.CalibrationStats({"name_or_path": "m", "model_type": "x", "sha256": "0" * 64}, {"source": "t"},
                              {k: S.from_values(k, k.split(":")[1].split("#")[0], v) for k, v in sites.items()})


def test_stats_file_round_trip_and_select(tmp_path):
    rng = np.random.default_rng(1)
    cs = _stats({"a.mixer:silu#0": rng.normal(size=500), "a.mixer:softplus#0": rng.normal(size=300) - 3,
                 "b.mixer:silu#0": np.full(10, 2.5)})
    p = tmp_path / "s.json"
    cs.save(p)
    back = S.load_stats(p)
    assert back.sha256() == cs.sha256()
    for k, s in cs.sites.items():
        b = back.sites[k]
        assert (b.edges, b.counts, b.min, b.max, b.count) == (s.edges, s.counts, s.min, s.max, s.count)
        assert b.percentiles == pytest.approx(s.percentiles)
    assert [s.site for s in back.select("silu")] == ["a.mixer:silu#0", "b.mixer:silu#0"]
    assert [s.site for s in back.select("swish", "b.*")] == ["b.mixer:silu#0"]
    with pytest.raises(InputError, match="no silu site matches 'c.*'.*a.mixer:silu#0"):
        back.select("silu", "c.*")
    with pytest.raises(InputError, match="no gelu site"):
        back.select("gelu")


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(format="x"), "'format'"),
    (lambda d: d.pop("model"), "missing key 'model'"),
    (lambda d: d["sites"]["a:silu#0"].pop("count"), r"sites\['a:silu#0'\]: missing key 'count'"),
    (lambda d: d["sites"]["a:silu#0"]["histogram"]["counts"].append(5), r"sites\['a:silu#0'\].histogram.counts"),
    (lambda d: d["sites"]["a:silu#0"].update(min="x"), r"sites\['a:silu#0'\].min"),
    (lambda d: d.update(sites={}), "'sites' is empty"),
])
def test_malformed_stats_name_the_key(tmp_path, mutate, message):
    d = _stats({"a:silu#0": np.arange(10.0)}).to_dict()
    mutate(d)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d))
    with pytest.raises(InputError, match=message):
        S.load_stats(p)


def test_bad_stats_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        S.load_stats(tmp_path / "none.json")
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        S.load_stats(tmp_path / "x.json")


# --- capture -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    from actiba.evaluate.build import load_model

    return load_model("random:tiny-mamba2")


TEXT = bytes(range(32, 127)) * 6  # 570 bytes


def test_capture_matches_observe_activations(tiny):
    """Same site ids as observe_activations, counts = elements passed, histogram = those values."""
    import torch

    from actiba.calibrate import calibrate
    from actiba.rewrite.torch_rw import observe_activations

    stats = calibrate(tiny, TEXT, seq_len=64, max_windows=5, data_name="synthetic")
    seen: dict[str, list[np.ndarray]] = {}

    def on_call(site, function, beta, x):
        seen.setdefault(site, []).append(x.detach().double().numpy().ravel())

    ids = torch.tensor([[256, *TEXT[i * 64:(i + 1) * 64 - 1]] for i in range(5)])
    with torch.inference_mode(), observe_activations(tiny.model, on_call, ["silu", "softplus"]):
        tiny.model(input_ids=ids, use_cache=False)
    assert set(stats.sites) == set(seen) and any(":softplus#" in k for k in seen)
    for site, chunks in seen.items():
        x = np.concatenate(chunks)
        s = stats.sites[site]
        assert s.count == x.size and s.function == site.split(":")[1].split("#")[0]
        assert (s.min, s.max) == (float(x.min()), float(x.max()))
        assert abs(s.quantile(99.9) - np.percentile(x, 99.9)) <= _bin_tol(s, x)
    assert stats.data["windows"] == 5 and stats.data["seq_len"] == 64 and stats.data["n_bytes"] == len(TEXT)
    assert stats.model["sha256"] == S.model_fingerprint(tiny)["sha256"]


def test_capture_bad_data(tiny):
    from actiba.calibrate import calibrate

    with pytest.raises(InputError, match="empty"):
        calibrate(tiny, b"", seq_len=64)
    with pytest.raises(InputError, match="shorter than one window"):
        calibrate(tiny, b"abc", seq_len=64)
    with pytest.raises(InputError, match="cannot calibrate"):
        calibrate(tiny, TEXT, seq_len=64, functions=["relu"])


def test_fingerprint_and_check_model(tiny):
    import torch

    from actiba.evaluate.build import load_model

    other = load_model("random:tiny-mamba2")
    assert S.model_fingerprint(other) == S.model_fingerprint(tiny)  # deterministic
    stats = _stats({"a:silu#0": np.arange(5.0)})
    stats.model = S.model_fingerprint(tiny)
    stats.check_model(other)
    with torch.no_grad():
        next(other.model.parameters()).view(-1)[0] += 1e-3
    with pytest.raises(InputError, match="statistics are from model random:tiny-mamba2"):
        stats.check_model(other)


# --- calibrated fitting ------------------------------------------------------------------------------

def _silu(x):  # independent of actiba.functions
    with np.errstate(over="ignore"):
        return x / (1.0 + np.exp(-x))


@pytest.fixture(scope="module")
def skewed():
    """A lopsided input distribution, like a mixer's SiLU inputs: most mass in [-3, 2]."""
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.normal(-0.5, 0.8, 60000), rng.normal(1.0, 0.4, 20000)])
    return x, S.from_values("m:silu#0", "silu", x)


def _fresh(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(-0.5, 0.8, 3 * n), rng.normal(1.0, 0.4, n)])


def test_calibrated_beats_uniform_on_the_calibrated_distribution(skewed):
    import actiba
    from actiba.fitting.calibrated import fit_calibrated

    _, s = skewed
    uniform = actiba.fit("silu", 8, tails="asymptote")  # the uniform-range table of the same N
    x = _fresh(50000, 11)  # fresh samples from the same distribution, not the fitted ones
    lo, hi = np.percentile(x, [0.1, 99.9])
    bulk = x[(x >= lo) & (x <= hi)]
    err_u = uniform(x) - _silu(x)
    max_u = np.max(np.abs(uniform(bulk) - _silu(bulk)))
    for tails in ("auto", "asymptote"):
        rng_t = fit_calibrated("silu", 8, s, weighting="range", tails=tails)
        den_t = fit_calibrated("silu", 8, s, weighting="density", tails=tails)
        err_r, err_d = rng_t(x) - _silu(x), den_t(x) - _silu(x)
        max_r = np.max(np.abs(rng_t(bulk) - _silu(bulk)))
        # density: a much smaller mean squared error on the distribution, with either tails
        assert np.mean(err_d ** 2) < 0.5 * np.mean(err_u ** 2)
        if tails == "auto":  # free tails: range wins on the bulk's worst case and on the mean
            assert max_r < 0.5 * max_u and np.mean(err_r ** 2) < 0.5 * np.mean(err_u ** 2)
        else:  # pinned SiLU tails limit an 8-segment max-abs table: no gain, but never worse
            assert max_r <= max_u * (1 + 1e-6)
    # asymptote tails keep the error bounded far outside the data; the provenance says what was used
    t = fit_calibrated("silu", 8, s, weighting="range", tails="asymptote")
    far = np.array([-1e4, -50.0, 50.0, 1e4])
    assert np.max(np.abs(t(far) - _silu(far))) <= t.error["max_abs"] + 1e-12
    cal = t.provenance["calibration"]
    assert cal["sites"] == ["m:silu#0"] and cal["weighting"] == "range" and cal["percentiles"] == [0.1, 99.9]
    assert cal["range"] == pytest.approx([np.percentile(skewed[0], 0.1), np.percentile(skewed[0], 99.9)],
                                         abs=2 * s.width)


def test_calibrated_guards():
    from actiba.fitting.calibrated import fit_calibrated

    const = S.from_values("m:silu#0", "silu", np.full(100, 1.5))
    t = fit_calibrated("silu", 4, const, tails="free")  # a single value: the range is widened, not empty
    lo, hi = t.provenance["calibration"]["range"]
    assert lo < 1.5 < hi and "widened" in t.provenance["calibration"]["note"]
    assert fit_calibrated("silu", 4, const, tails="free", weighting="density").segments == 4
    s = S.from_values("m:silu#0", "silu", np.linspace(-1, 1, 101))
    with pytest.raises(InputError, match="percentiles"):
        fit_calibrated("silu", 4, s, percentiles=(50, 50))
    with pytest.raises(InputError, match="are for silu, not softplus"):
        fit_calibrated("softplus", 4, s)
    with pytest.raises(InputError, match="no finite values"):
        fit_calibrated("silu", 4, S.from_values("m:silu#0", "silu", np.array([np.nan])))
    with pytest.raises(InputError, match="weighting"):
        fit_calibrated("silu", 4, s, weighting="mean")


def test_fit_sites_per_site_and_shared(tmp_path):
    from actiba.fitting.calibrated import fit_sites
    from actiba.tableset import load_set

    rng = np.random.default_rng(3)
    cs = _stats({"a.mixer:silu#0": rng.normal(-2, 0.5, 4000), "b.mixer:silu#0": rng.normal(2, 0.5, 4000),
                 "a.mixer:softplus#0": rng.normal(-4, 1, 2000)})
    ts = fit_sites(cs, "silu", 4, per_site=True, tails="free")
    assert list(ts.tables) == ["a.mixer:silu#0", "b.mixer:silu#0"]
    x_a, x_b = rng.normal(-2, 0.5, 5000), rng.normal(2, 0.5, 5000)
    # each site got *its* table: swapping them is worse on each site's own inputs
    ta, tb = ts.tables["a.mixer:silu#0"], ts.tables["b.mixer:silu#0"]
    assert np.max(np.abs(ta(x_a) - _silu(x_a))) < np.max(np.abs(tb(x_a) - _silu(x_a)))
    assert np.max(np.abs(tb(x_b) - _silu(x_b))) < np.max(np.abs(ta(x_b) - _silu(x_b)))
    shared = fit_sites(cs, "silu", 4, per_site=False, tails="free")
    assert list(shared.tables) == ["*:silu#*"]
    assert shared.tables["*:silu#*"].provenance["calibration"]["sites"] == ["a.mixer:silu#0", "b.mixer:silu#0"]
    assert shared.table_for("a.mixer:silu#0") is shared.tables["*:silu#*"]
    assert shared.calibration["stats_sha256"] == cs.sha256() and shared.model == cs.model
    only_b = fit_sites(cs, "silu", 4, per_site=False, pattern="b.*", tails="free")
    assert list(only_b.tables) == ["b.*:silu#*"]
    ts.save(tmp_path / "set.json")
    assert list(load_set(tmp_path / "set.json").tables) == list(ts.tables)


# --- command line ------------------------------------------------------------------------------------

def _cli(*argv):
    from actiba.cli import main

    return main(list(argv))


def test_cli_fit_calibrated(tmp_path, capsys):
    from actiba.table import load
    from actiba.tableset import load_set

    rng = np.random.default_rng(5)
    cs = _stats({"a.mixer:silu#0": rng.normal(-1, 1, 3000), "b.mixer:silu#0": rng.normal(1, 1, 3000)})
    stats = tmp_path / "stats.json"
    cs.save(stats)
    out = tmp_path / "t.json"
    assert _cli("fit", "silu", "--segments", "4", "--calibration", str(stats), "--tails", "free",
                "--percentiles", "1", "99", "-o", str(out)) == 0
    t = load(out)
    assert t.provenance["calibration"]["stats_sha256"] == S.load_stats(stats).sha256()
    assert t.provenance["calibration"]["sites"] == ["a.mixer:silu#0", "b.mixer:silu#0"]
    assert _cli("fit", "silu", "--segments", "4", "--calibration", str(stats), "--per-site", "--tails", "free",
                "--weighting", "density", "--site", "b.*", "-o", str(tmp_path / "s.json")) == 0
    assert list(load_set(tmp_path / "s.json").tables) == ["b.mixer:silu#0"]
    capsys.readouterr()
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "actiba-calibration/1"}')
    for argv, message in [
        (["--calibration", str(tmp_path / "none.json")], "does not exist"),
        (["--calibration", str(bad)], "missing key 'model'"),
        (["--calibration", str(stats), "--site", "zz*"], "no silu site matches 'zz\\*'"),
        (["--calibration", str(stats), "--range", "-1", "1"], "--range does not combine"),
        (["--site", "a*"], "--site applies to calibrated fits only"),
    ]:
        target = tmp_path / "never.json"
        assert _cli("fit", "silu", "--segments", "4", *argv, "-o", str(target)) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and re_search(message, err), err
        assert not target.exists()
    assert _cli("fit", "softplus", "--segments", "4", "--calibration", str(stats)) == 2
    assert "no softplus site" in capsys.readouterr().err


def re_search(pattern: str, text: str) -> bool:
    import re

    return re.search(pattern, text) is not None


def test_cli_calibrate(tmp_path, capsys, tiny):
    data = tmp_path / "text.txt"
    data.write_bytes(TEXT)
    out = tmp_path / "stats.json"
    assert _cli("calibrate", "random:tiny-mamba2", "--data", str(data), "--seq-len", "64", "--bytes", "256",
                "-o", str(out)) == 0
    err = capsys.readouterr().err
    stats = S.load_stats(out)
    assert stats.data["source"] == str(data) and stats.data["windows"] == 4 and stats.data["n_bytes"] == 256
    assert all(site in err for site in stats.sites)
    stats.check_model(tiny)  # same weights as a fresh load
    (tmp_path / "empty.txt").write_bytes(b"")
    for argv, message in [(["--data", str(tmp_path / "empty.txt")], "empty"),
                          (["--data", str(tmp_path / "nope.txt")], "does not exist"),
                          (["--data", str(data), "--seq-len", "4096"], "shorter than one window")]:
        assert _cli("calibrate", "random:tiny-mamba2", *argv, "-o", str(tmp_path / "x.json")) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "x.json").exists()
