"""DIR/report.html: the choices on top, the figure, then per run its settings, table and profiles.

Why the page reads the runs and not results.json: the rows are typed (`row.Row`), and the page says
things results.json does not need to repeat (the method paragraph, the machine, the backend).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._atomic import write_text
from .report_text import (
    LOGITS_WORDS,
    backend_words,
    delta_text,
    emulated_words,
    fmt,
    null_control_words,
    precision_cost_words,
    precisions_words,
    prefill_logits,
    run_label,
    speedup_text,
)

if TYPE_CHECKING:
    from .row import Row


def _note(r: Row) -> str:
    snip = (r.compile or {}).get("snippets")
    parts = [r.error or "", f"OpenVINO snippets {snip}" if snip else ""]
    for name, why in (r.refused or {}).items():
        parts.append(f"{name} left out: {why}")
    if r.same_graph_as:
        parts.append(f"graph identical to {r.same_graph_as}: its measurement is reused")
    if r.metric_reused_from:
        parts.append(f"accuracy scored once for this graph, at {r.metric_precision} "
                     f"(the {r.metric_reused_from} run)")
    if r.latency_ratio is not None and r.latency_ratio.pairs:
        parts.append(f"{r.latency_ratio.pairs} pairs")
    if r.decode_error:
        parts.append(f"decode: {r.decode_error}")
    for p, delta in (r.metric_emulated_delta_rel or {}).items():
        parts.append(f"{p} (emulated): bits/byte {100 * delta:+.3f}% vs the f32 baseline")
    for p, err in (r.emulate_error or {}).items():
        parts.append(f"{p} emulation failed: {err}")
    return "; ".join(p for p in parts if p)


def _table_html(run: dict[str, Any]) -> str:
    head = ("config", "CumBA", "ReduBA", "SSD", "SiLU", "Softplus", "bits/byte", "Δ rel ± paired 95 %",
            "median ms", "p10", "p90", "speed-up ± 95 %", "decode ms", "decode speed-up", "Pareto", "note")
    out = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in run["configs"]:
        acts = r.activations or {}
        lat = r.latency_ms.to_dict() if r.latency_ms else {}
        ssd = "+".join(k for k, on in (("d1", r.ssd_d1), ("d2", r.ssd_d2)) if on)
        ssd += f" (chunk {r.ssd_chunk})" if r.ssd_chunk else ""
        cells = (r.name, "yes" if r.cumba else "", "yes" if r.reduba else "", ssd,
                 (acts.get("silu") or {}).get("table", "exact"), (acts.get("softplus") or {}).get("table", "exact"),
                 fmt(r.metric, 6), delta_text(r), fmt(lat.get("median")),
                 fmt(lat.get("p10")), fmt(lat.get("p90")), speedup_text(r),
                 fmt(r.decode_latency_ms.median if r.decode_latency_ms else None), fmt(r.decode_speedup, 3),
                 "★" if r.pareto else "", _note(r))
        cls = ' class="err"' if r.error else (' class="front"' if r.pareto else "")
        out.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _profile_html(row: Row | None, title: str) -> str:
    prof = row.profile_ms if row is not None else None
    if not prof:
        return ""
    total = sum(prof.values()) or 1.0
    items = list(prof.items())[:12]
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4g}</td><td>{100 * v / total:.1f}%</td></tr>"
                   for k, v in items)
    return (f"<p><b>{html.escape(title)}</b> — time by OpenVINO node type (PERF_COUNT, ms per inference)</p>"
            f"<table><tr><th>node type</th><th>ms</th><th>share</th></tr>{body}</table>")


def profile_summary(run: dict[str, Any], top: int = 8) -> tuple[list[str], list[tuple[str, dict[str, float]]]]:
    """(node types, [(config, {type: share of that config's profiled time})]) for every profiled row.

    Node types are the baseline's `top` largest plus CumSum / ReduceSum / MatMul when present, so the
    shares the rewrites move are always visible.
    """
    rows = [r for r in run.get("configs", []) if r.profile_ms]
    if not rows:
        return [], []
    base = next((r for r in rows if r.name == "baseline"), rows[0])
    types = list(base.profile_ms)[:top]
    for t in ("CumSum", "ReduceSum", "MatMul"):
        if t not in types and any(t in r.profile_ms for r in rows):
            types.append(t)
    out = []
    for r in rows:
        total = sum(r.profile_ms.values()) or 1.0
        out.append((r.name, {t: r.profile_ms.get(t, 0.0) / total for t in types}))
    return types, out


def _profile_summary_html(run: dict[str, Any]) -> str:
    types, rows = profile_summary(run)
    if len(rows) < 2:
        return ""
    head = "".join(f"<th>{html.escape(t)}</th>" for t in types)
    body = "".join(f"<tr><td>{html.escape(n)}</td>" + "".join(f"<td>{100 * v[t]:.1f}%</td>" for t in types)
                   + "</tr>" for n, v in rows)
    return ("<p><b>Per-op profile summary</b> — share of each configuration's profiled time by OpenVINO node "
            f"type (PERF_COUNT)</p><table><tr><th>config</th>{head}</tr>{body}</table>")


def choices_html(runs: list[dict[str, Any]]) -> str:
    """The report's head: the choice of every run (model × precision × length), one line each."""
    items = []
    for run in runs:
        choice = run.get("choice") or "no choice (the baseline failed)"
        cls = " class='warn'" if run.get("choice_name") is None and run.get("choice") else ""
        items.append(f"<li><b>{html.escape(run_label(run))}</b>: <span{cls}>{html.escape(choice)}</span></li>")
    return ("<p><b>Choices</b> (fastest configuration within the loss budget that is faster than the baseline "
            "beyond its timing interval and the null control; a loss change inside its paired per-window "
            "interval counts as no change):</p><ul>" + "".join(items) + "</ul>")


def write_html(path: Path, runs: list[dict[str, Any]], info: dict[str, Any],
               title: str = "actiba Pareto report", precisions: dict[str, Any] | None = None) -> None:
    vers = ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items())
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
             "body{font-family:sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}tr.front{background:#fee}"
             "tr.err{color:#999}.warn{color:#a00;font-weight:bold}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p><b>Machine:</b> {html.escape(str(info.get('cpu')))}, {info.get('cores')} logical cores, "
             f"{html.escape(str(info.get('platform')))}; 1-min load average at the end: "
             f"{info.get('load_average_1m')} (a shared machine: timings are noisy, see p10/p90).<br>"
             f"<b>OpenVINO devices:</b> {html.escape(str(info.get('openvino_devices')))}; CPU capabilities: "
             f"{html.escape(str(info.get('cpu_capabilities')))}<br><b>Versions:</b> {html.escape(vers)}<br>"
             f"{html.escape(precisions_words({'runs': runs, 'precisions': precisions}))}</p>",
             "<p>Metric: bits per UTF-8 byte of the held-out split (Macbeth + The Tempest) or of the --text file "
             "(first N bytes, in whole windows of the model's own tokens; each run below says which text and "
             "tokenizer), computed by the OpenVINO graph of the same configuration at the stated inference precision "
             "(with every position's logits; when the timed prefill returns the last position only, scoring "
             "runs the all-positions graph with the same rewrites). "
             "Δ rel's interval is ~95 % from the per-window differences against the baseline on the same windows "
             "(paired: the text's own predictability cancels), never below 1e-6 (float summation order); a loss "
             "change inside it is no change, in the Pareto set and in the choice. "
             "Latency: median of repeated synchronous prefill inferences of one request on [1, seq_len] "
             "returning the logits stated per run below (last position or every position), each "
             "configuration timed interleaved (ABBA) with the compiled baseline; speed-up = 1 / median of the "
             "per-pair time ratios (config / baseline), timing stops once that ratio is known to the stated "
             "tolerance. Decode: one single-token step with the conv and SSM states of every layer as graph "
             "inputs/outputs, timed the same way; only activation tables apply to it (CumBA, ReduBA and the "
             "SSD rewrites act on the prefill scan, which a single step does not have), so rows without tables "
             "share the baseline's decode graph. Baseline = the unmodified model at the same precision on the "
             "same device and in the same logits mode. No NPU figure is claimed from these CPU runs.</p>"]
    parts.append(choices_html(runs))
    parts.append("<img src='pareto.png' style='max-width:100%'>")
    for run in runs:
        s = run.get("settings") or {}
        label = " — <span class='warn'>RANDOM weights: latency only, accuracy meaningless</span>" \
            if run.get("random_weights") else ""
        parts.append(f"<h2>{html.escape(str(run['model']))} · {s.get('seq_len')} tokens · "
                     f"{html.escape(str(run['device']))} · precision hint "
                     f"{html.escape(str(run['precision']))} (used: {html.escape(str(run.get('precision_used')))})"
                     f" · {prefill_logits(run)} logits{label}</h2>")
        parts.append(f"<p><b>Prefill output timed:</b> {html.escape(LOGITS_WORDS.get(prefill_logits(run), '?'))}; "
                     "speed-ups are against the baseline in the same mode.</p>")
        timing = (f"{s.get('warmup')} warm-up + {s.get('min_repeats')}–{s.get('repeats')} timed pairs (stop at "
                  f"±{100 * s['rel_tol']:g}% on the speed-up)" if s.get("rel_tol") else
                  f"{s.get('warmup')} warm-up + {s.get('repeats')} timed runs")
        st = run.get("scoring_text")  # which text and tokenizer (runs from before it: the held-out bytes)
        scored = ("latency only" if run.get("metric") is None else
                  f"{s.get('eval_bytes_scored')} held-out bytes scored ({s.get('eval_bytes_reason') or 'all'})"
                  if not st else
                  html.escape(f"{st['bytes']} UTF-8 bytes of {st['text']} scored as {st['tokens']} tokens "
                              f"({'byte tokens' if st['tokenizer'] == 'bytes' else 'tokenizer ' + st['tokenizer']}; "
                              f"{s.get('eval_bytes_reason') or 'all'})"))
        secs = run.get("seconds") or {}
        spent = ("; wall time " + ", ".join(f"{k.replace('_', ' ')} {v:.0f} s" for k, v in secs.items())
                 if secs else "")
        parts.append(f"<p>seq_len {s.get('seq_len')}, {scored}, {timing}, threads {s.get('threads')}; "
                     f"{run.get('resumed', 0)} rows resumed from the cache{spent} (each row's own split: "
                     "`seconds` in results.json).</p>")
        parts.append(f"<p>{html.escape(backend_words(run))}</p>")
        parts.append(f"<p>{html.escape(null_control_words(run.get('null_control')))}</p>")
        if (run.get("null_control") or {}).get("usable") is False:
            parts.append("<p class='warn'>This run's latency is not usable: the null control stayed wide after "
                         "re-timing, so nothing is recommended from it.</p>")
        cost = precision_cost_words(run)
        if cost:
            parts.append(f"<p>{html.escape(cost)}</p>")
        emulated = emulated_words(run)
        if emulated:
            parts.append(f"<p>{html.escape(emulated)}</p>")
        parts.append(_table_html(run))
        parts.append(_profile_html(run.get("baseline"), "Baseline profile"))
        chosen = next((r for r in run["configs"] if r.profile_ms and r.name == run.get("choice_name")),
                      None) or next((r for r in run["configs"] if r.profile_ms and r.name != "baseline"),
                                    None)
        if chosen:
            parts.append(_profile_html(chosen, f"Profile of {chosen.name}"))
        parts.append(_profile_summary_html(run))
        if run.get("choice"):
            parts.append(f"<p><b>Within the loss budget:</b> {html.escape(run['choice'])}</p>")
    parts.append("</body></html>")
    write_text(path, "\n".join(parts))
