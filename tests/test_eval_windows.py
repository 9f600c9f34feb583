"""The scored prefix depends on the model's size and the settings only, never on a timing (load)."""

import types

import pytest

torch = pytest.importorskip("torch")


def _lm(n_params):
    return types.SimpleNamespace(model=torch.nn.Linear(n_params - 1, 1))  # (n-1) weights + 1 bias


@pytest.mark.parametrize(("params", "budget", "want"), [
    (1_800_000, 12.0, 64),     # embedded size: every window
    (130_000_000, 12.0, 32),   # 130M: the floor
    (10_000_000, 12.0, 46),    # 12 s / (2 * 10e6 * 256 / 20e9 s) = 46.9 -> 46
])
def test_window_count_from_size(monkeypatch, params, budget, want):
    from actiba.evaluate import latency, sweep

    monkeypatch.setattr(latency, "time_compiled", lambda *a, **k: pytest.fail("timed the graph"))
    s = sweep.Settings(seq_len=256, eval_bytes=64 * 256, accuracy_seconds=budget)
    data = bytes(64 * 256)
    got, reason = sweep.eval_data(_lm(params), s, data)
    assert len(got) == want * 256 and got == data[:len(got)]
    assert ("all windows" in reason) == (want == 64)
