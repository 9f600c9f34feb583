"""The report's sentences and cell texts, shared by the HTML page and the figure.

Why its own module: the same numbers are written in the table, the head, the figure's titles and the CLI,
and each is said one way (an interval always beside its value, '<0.0001%' at the accuracy floor).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .row import Row

LOGITS_WORDS = {
    "last": "last-position logits only ([1, 1, V], what a generator's prefill computes)",
    "all": "logits at every position ([1, L, V], what perplexity scoring computes)",
}


def prefill_logits(run: dict[str, Any]) -> str:
    """The run's timed prefill output mode; runs written before the mode existed timed all positions."""
    return str(run.get("prefill_logits") or (run.get("settings") or {}).get("prefill_logits") or "all")


def null_control_words(null: dict[str, Any] | None) -> str:
    """One sentence on the run's null control (the baseline against itself compiled again)."""
    if not null:
        return "Null control: not measured (a speed-up only has to clear its own timing interval)."
    if null.get("error"):
        return f"Null control failed ({null['error']}); speed-ups only have to clear their own interval."
    again = f", after {null['attempts']} attempts (re-compiled, more pairs)" if null.get("attempts", 1) > 1 else ""
    return (f"Null control: the baseline graph compiled a second time measured {null['speedup']:.3f}× "
            f"(±{100 * float(null.get('halfwidth_rel') or 0):.1f}%, {null.get('pairs')} pairs{again}), so a "
            f"configuration is recommended only if it is faster than {1 + float(null.get('noise') or 0):.3f}× "
            "even at the pessimistic end of its own interval.")


def precisions_words(doc: dict[str, Any]) -> str:
    """Which precisions this report measured natively (OpenVINO on this device) and which it emulated."""
    prec = doc.get("precisions") or {}
    native = prec.get("native") or sorted({r.get("precision") for r in doc.get("runs") or [] if r.get("precision")})
    emulated = prec.get("emulated") or []
    return (f"Precisions measured natively (OpenVINO on {prec.get('device') or 'the device'}, inference precision "
            f"set per run; accuracy and latency): {', '.join(native) or 'none'}. Emulated (onnxruntime, every float "
            f"tensor rounded; accuracy only, no latency): {', '.join(emulated) or 'none'}.")


def precision_cost_words(run: dict[str, Any]) -> str:
    """What the run's precision itself costs: its baseline against the f32 baseline (empty for f32 runs)."""
    cost = run.get("baseline_vs_f32")
    if not cost:
        return ""
    hw = cost.get("halfwidth_rel")
    return (f"The {run.get('precision')} baseline scores {100 * cost['delta_rel']:+.3f}%"
            + (f" ±{100 * hw:.3f}%" if hw else "") + f" bits/byte against the f32 baseline on the same windows "
            f"({cost['f32_metric']:.4f}); every Δ below is against this run's own {run.get('precision')} baseline.")


def emulated_words(run: dict[str, Any]) -> str:
    """One sentence per emulated precision: what the baseline and the front lose there (empty if none)."""
    out = []
    precs = sorted({p for r in run.get("configs", []) for p in (r.metric_emulated_delta_rel or {})})
    for p in precs:
        rows = [(r.name, r.metric_emulated_delta_rel[p]) for r in run["configs"]
                if p in (r.metric_emulated_delta_rel or {})]
        listed = ", ".join(f"{n} {100 * d:+.3f}%" for n, d in rows)
        out.append(f"{p}, emulated (every float tensor rounded to {p}; onnxruntime; accuracy only, no latency "
                   f"is claimed): bits/byte vs the f32 baseline — {listed}.")
    return " ".join(out)


def backend_words(run: dict[str, Any]) -> str:
    """One sentence on where the run's rows were measured (local, or a Ray cluster with its nodes)."""
    b = run.get("backend") or {"name": "local"}
    if b.get("name") == "local":
        return "Backend: local (every row measured in one process on this machine)."
    nodes = b.get("nodes") or []
    said = "; ".join(f"{n.get('host')} ({n.get('cpu')}): "
                     + (f"timed {len(n.get('timed') or [])} rows" if n.get("timing") else "accuracy only")
                     + f", scored {len(n.get('scored') or [])}" for n in nodes)
    return (f"Backend: {b.get('name')} at {b.get('address')}, {len(nodes)} node(s) — {said}. Every speed-up is a "
            "ratio timed on one node against the baseline compiled on that node.")


def fmt(v: Any, nd: int = 4) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.{nd}g}"
    return str(v)


def delta_text(r: Row) -> str:
    """'+0.012% ±0.004%': the bits/byte change and its paired ~95 % interval ('<0.0001%' at the floor)."""
    delta = r.metric_delta_rel
    if delta is None:
        return ""
    hw = r.metric_delta_halfwidth_rel
    if not hw:
        return f"{100 * delta:+.3f}%"
    return f"{100 * delta:+.3f}% ±{'<0.0001' if hw <= 1e-6 else f'{100 * hw:.3f}'}%"


def speedup_text(r: Row) -> str:
    """'1.58× ±1.2%': the speed-up and its timing interval."""
    s = r.speedup
    if s is None:
        return ""
    hw = r.latency_ratio.halfwidth_rel if r.latency_ratio else None
    return f"{s:.3g}×" + (f" ±{100 * hw:.1f}%" if isinstance(hw, (int, float)) and hw == hw and hw < 10 else "")


def run_label(run: dict[str, Any]) -> str:
    s = run.get("settings") or {}
    return f"{run.get('model')} · {run.get('device')} {run.get('precision')} · {s.get('seq_len')} tokens"
