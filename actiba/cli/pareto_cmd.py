"""`actiba pareto [MODEL ...] --out DIR`: sweep configurations, find the Pareto set, write the report.

With no model, the embedded Mamba-2 and Mamba models are measured; `--full-size` instead profiles
random-weight Mamba-2-130M / Mamba-130M architectures for latency only (slow; labelled as random).

What keeps the default run short (see `actiba.evaluate.measure`): timing stops once the paired speed-up is
known to ±--rel-tol or after --timing-seconds, large models score fewer whole windows (--accuracy-seconds,
sized from the parameter count, never under 32), identical graphs are measured once. Every row also
gets a decode-step latency unless --no-decode.

Every run scores accuracy on its own graphs at its own precision: a bf16 run's bits/byte come from
OpenVINO running bf16 natively, not from the f32 run (a row is one deployable artifact at one
precision: on the embedded Mamba-2 native bf16 moves the baseline's bits/byte by +0.08 %, and a
configuration can lose more there than at f32).

--emulate (default auto = bf16, unless this sweep measures bf16 natively): the baseline and the Pareto
front are scored again with every float tensor rounded to that precision (onnxruntime emulation,
`actiba.evaluate.emulate`), so the report shows what the front costs on a device that runs bf16 even
where this CPU cannot; no latency is claimed for it. Where bf16 is measured natively the emulation
would only repeat it (and cost ~45 s of the demo), so auto skips it; `--emulate bf16` asks for both,
to compare them.

--prefill-logits (default last): the timed prefill returns the last position's logits only, as a
generator's prefill does (HF generate: ``logits_to_keep=1``); `all` times every position's logits, as
perplexity scoring does. Accuracy is always scored with every position, so it does not change.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..evaluate.row import Row

FULL_SIZE = ("random:mamba2-130m", "random:mamba-130m")


def add_parser(sub) -> None:
    p = sub.add_parser("pareto", help="sweep rewrite/table configurations; Pareto set and report")
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help="model folder, embedded:mamba2|embedded:mamba, random:<arch> (default: both embedded)")
    p.add_argument("--out", required=True, metavar="DIR", help="report folder (created; cache in DIR/cache)")
    p.add_argument("--sweep", metavar="FILE|NAME",
                   help="configurations (JSON/YAML file), or a built-in sweep: default (what the committed full "
                        "results show is not dominated everywhere), full, quick")
    p.add_argument("--quick", action="store_true", help="a few configurations at tiny lengths (CI)")
    p.add_argument("--full-size", action="store_true",
                   help="latency of random-weight Mamba-2-130M / Mamba-130M architectures (slow)")
    p.add_argument("--device", default="CPU", help="OpenVINO device (CPU, GPU, NPU if present)")
    p.add_argument("--precision", default="auto", help="f32, bf16, or auto = every one the device supports")
    p.add_argument("--seq-len", type=_lengths, metavar="N[,N...]",
                   help="prefill length for accuracy windows and latency; several (256,1024) give one run each")
    p.add_argument("--eval-bytes", type=int, help="bytes of text scored (a fixed prefix, cut at a UTF-8 character "
                   "boundary)")
    p.add_argument("--text", metavar="FILE", help="score this local UTF-8 text file instead of the held-out split "
                   "(in each model's own tokens, bits per UTF-8 byte)")
    p.add_argument("--repeats", type=int, help="timed inferences per configuration (at most, see --rel-tol)")
    p.add_argument("--warmup", type=int, help="untimed inferences (pairs) before timing (default 3)")
    p.add_argument("--min-repeats", type=int, default=6, help="timed pairs before --rel-tol/--timing-seconds "
                   "may stop timing (at least 3)")
    p.add_argument("--rel-tol", type=float, default=0.02,
                   help="stop timing once the paired speed-up is known to ±this (~95%%; 0: always --repeats)")
    p.add_argument("--timing-seconds", type=float, default=6.0,
                   help="stop timing a configuration after this long (at least 6 pairs; the report gives the "
                        "ratio's precision; 0: no limit)")
    p.add_argument("--accuracy-seconds", type=float, default=12.0,
                   help="scoring budget per configuration: models too large to score in full score fewer "
                        "whole windows, chosen from their size at a nominal 20 GFLOP/s, not from a timing, so "
                        "the bytes scored never depend on load (at least 32; 0: always --eval-bytes)")
    p.add_argument("--profile", action="store_true", help="per-op profile of every configuration (baseline: always)")
    p.add_argument("--no-decode", dest="decode", action="store_false",
                   help="skip the single-token decode-step latency")
    p.add_argument("--threads", type=int, default=1, help="OpenVINO CPU threads (default 1: shared machine)")
    p.add_argument("--max-loss", default="1%", help="loss budget for the recommended configuration")
    p.add_argument("--latency-only", action="store_true", help="skip accuracy")
    p.add_argument("--emulate", default="auto", metavar="P[,P]",
                   help="also score the baseline and the Pareto front with every float tensor rounded to these "
                        "precisions (bf16, f16; emulated with onnxruntime, accuracy only; 'none' to skip; "
                        "default auto: bf16 unless this sweep measures bf16 natively)")
    p.add_argument("--prefill-logits", choices=["last", "all"], default="last",
                   help="timed prefill output: the last position's logits (a generator's prefill; default) "
                        "or every position's (perplexity scoring); accuracy always uses every position")
    p.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="where rows are measured: this process (local), or a Ray cluster (ray; needs actiba[ray]): "
                        "builds and accuracy anywhere, timing on the node offering --timing-resource")
    p.add_argument("--address", metavar="ADDR",
                   help="Ray cluster to use (HOST:PORT of its head); default: start a one-node cluster here")
    p.add_argument("--timing-resource", default="actiba_timing", metavar="NAME",
                   help="Ray resource of the node that times every row against its baseline "
                        "(ray start --resources '{\"NAME\": 1}'; default actiba_timing)")
    p.set_defaults(run=run)


def _lengths(text: str) -> list[int]:
    """'256' or '256,1024' -> [256] / [256, 1024] (argparse turns the ValueError into exit 2)."""
    out = [int(x) for x in text.split(",") if x.strip()]
    if not out:
        raise ValueError(text)
    return out


def _emulate(text: str, native: list[str] | None = None) -> list[str]:
    """'bf16' / 'bf16,f16' / 'none' / 'auto' -> the precisions to emulate (InputError for anything else).

    auto: bf16, unless `native` (the precisions measured on the device) has it.
    """
    from ..errors import InputError

    if text.strip() == "auto":
        return [] if "bf16" in (native or ()) else ["bf16"]
    names = [t.strip() for t in text.split(",") if t.strip()]
    if names in ([], ["none"]):
        return []
    bad = [n for n in names if n not in ("bf16", "f16")]
    if bad:
        raise InputError(f"--emulate: unknown precision {bad[0]!r}; use bf16, f16, auto or none")
    return list(dict.fromkeys(names))


def _check_out(path: str):
    import os
    import tempfile
    from pathlib import Path

    from ..errors import InputError

    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out, prefix=".write-test-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise InputError(f"cannot write to output folder {out}: {exc.strerror or exc}") from None
    return out


def run(args) -> int:

    from ..errors import InputError
    from ..evaluate import configs as cfgs
    from ..evaluate import latency, sweep
    from ..evaluate.build import load_model
    from ..evaluate.pareto import parse_loss
    from ..evaluate.report import write_report
    from ..models.arch import mlp_functions
    from ..models.export import ssd_chunk_size

    max_loss = parse_loss(args.max_loss)
    device = latency.check_device(args.device)
    if args.precision == "auto":
        precisions = latency.supported_precisions(device)
    else:
        precisions = [latency.check_precision(p.strip(), device) for p in args.precision.split(",")]
    import os

    named = args.sweep if args.sweep in cfgs.SWEEPS and not os.path.exists(args.sweep) else None
    if args.quick and args.sweep and named != "quick":
        raise InputError("--quick runs the quick sweep; give --sweep or --quick, not both")
    named = "quick" if args.quick else named or ("default" if not args.sweep else None)
    fixed = cfgs.read_file(args.sweep) if args.sweep and named is None else None
    models = list(args.models) or list(FULL_SIZE if args.full_size else ("embedded:mamba2", "embedded:mamba"))
    if args.warmup is not None and args.warmup < 0:
        raise InputError(f"--warmup must be non-negative, got {args.warmup}")
    for n in ("eval_bytes", "repeats", "threads", "min_repeats"):
        v = getattr(args, n)
        if v is not None and v < 1:
            raise InputError(f"--{n.replace('_', '-')} must be positive, got {v}")
    if args.seq_len is not None and min(args.seq_len) < 2:
        raise InputError(f"--seq-len must be at least 2, got {min(args.seq_len)}")
    for n in ("rel_tol", "accuracy_seconds", "timing_seconds"):
        v = getattr(args, n)
        if not v >= 0 or v == float("inf"):
            raise InputError(f"--{n.replace('_', '-')} must be a non-negative number, got {v}")
    emulate = _emulate(args.emulate, precisions)
    text_sha = None
    if args.text:  # a missing / unreadable / non-UTF-8 file is one line before any model loads
        from ..evaluate.scoring_text import file_sha256

        text_sha = file_sha256(args.text)
    if args.backend != "ray" and args.address:
        raise InputError("--address is the Ray cluster's; give it with --backend ray")
    quick = args.quick
    lengths = args.seq_len or [64 if quick else 512 if args.full_size else 256]
    settings = sweep.Settings(
        device=device, seq_len=lengths[0],
        eval_bytes=args.eval_bytes or (4096 if quick else 16384), repeats=args.repeats or (5 if quick else 20),
        warmup=args.warmup if args.warmup is not None else 2 if quick else 3, threads=args.threads,
        min_repeats=args.min_repeats, latency_only=args.latency_only or args.full_size,
        rel_tol=args.rel_tol or None, accuracy_seconds=args.accuracy_seconds or None, decode=args.decode,
        timing_seconds=args.timing_seconds or None,
        profile=args.profile, prefill_logits=args.prefill_logits, emulate=emulate, text=args.text,
        text_sha256=text_sha)
    backend = None
    if args.backend == "ray":  # connected before any work: a missing ray or cluster is one line, exit 2
        from ..evaluate.ray_backend import RayBackend

        backend = RayBackend(args.address, args.timing_resource)
    if not settings.latency_only:  # a text shorter than one window in some model's tokens: one line, no folder
        from ..evaluate.scoring_text import load as load_text

        for m in models:  # from the tokenizer alone, before a model loads (random models: latency only)
            if not m.startswith("random:"):
                load_text(m, settings.eval_bytes, settings.text, seq_len=max(lengths))
    loaded = [load_model(m) for m in models]  # bad model names fail here, before any work
    out = _check_out(args.out)  # created only once the models are known to load
    plans = []
    precisions = sorted(precisions, key=lambda p: p != "f32")  # f32 first: others are compared with it
    for lm in loaded:
        configs = fixed or cfgs.builtin_sweep(named, lm.model_type, chunk_size=ssd_chunk_size(lm.model),
                                              functions=mlp_functions(lm.model))
        for prec in precisions:
            for n in lengths:
                plans.append((lm, configs, prec, n))
    total = sum(len(c) + (0 if any(x.is_baseline for x in c) else 1) for _, c, _, _ in plans)
    try:
        runs = _sweep(plans, total, settings, out, max_loss, backend)
    finally:
        if backend is not None:
            backend.close()
    doc = write_report(out, runs, {"max_loss": max_loss,
                                   "precisions": {"native": precisions, "emulated": emulate, "device": device}})
    for r in runs:
        failed = sum(1 for c in r["configs"] if c.error)
        tag = " [random weights]" if r.get("random_weights") else ""
        print(f"{r['model']}{tag} {r['device']} {r['precision']} L={r['settings']['seq_len']} "
              f"{r.get('prefill_logits')} logits: "
              f"{len(r['configs'])} configurations"
              f"{f', {failed} failed' if failed else ''}; {r.get('choice', 'no baseline')}")
    del doc
    print(f"report: {out / 'report.html'}")
    if any(not r.get("baseline") or r["baseline"].error for r in runs):
        print("actiba: warning: a baseline failed; see the report", file=sys.stderr)
    return 0


def _precision_cost(run: dict, earlier: list[dict]) -> None:
    """Set `baseline_vs_f32` on a non-f32 run: its baseline's bits/byte against the f32 run's baseline of the
    same model and length (same windows, so the paired interval applies) — what the precision itself costs,
    which the run's own deltas (against its own baseline) leave out."""
    from ..evaluate.accuracy import paired_halfwidth

    base, ref = run.get("baseline"), next((r.get("baseline") for r in earlier if r["model"] == run["model"]
                                           and r["precision"] == "f32"
                                           and r["settings"]["seq_len"] == run["settings"]["seq_len"]), None)
    if run["precision"] == "f32" or base is None or ref is None or not base.metric or not ref.metric:
        return
    run["baseline_vs_f32"] = {
        "delta_rel": (base.metric - ref.metric) / ref.metric,
        "halfwidth_rel": paired_halfwidth(base.metric_windows or [], ref.metric_windows or []),
        "f32_metric": ref.metric}


def _choose(run: dict, max_loss: float) -> None:
    """Set the run's `choice` (a sentence) and `choice_name`: the recommendation, or why there is none."""
    from ..evaluate.pareto import choose, null_noise, null_usable

    null = run.get("null_control")
    ok = [c for c in run["configs"] if c.speedup is not None]
    if ok and not null_usable(null):
        run["choice"] = (f"no recommendation: this run's latency is not usable — the baseline timed against itself "
                         f"compiled again measured {null['speedup']:.3f}x ±{100 * null['halfwidth_rel']:.1f}% after "
                         f"{null.get('attempts', 1)} attempts (another job was using the cores); re-run on a quiet "
                         "machine")
        run["choice_name"] = None
        return
    best = (max(ok, key=lambda c: c.speedup, default=None) if run["metric"] is None
            else choose(run["configs"], max_loss, noise=null_noise(null)))
    if best is not None:
        run["choice"] = _describe(best, max_loss, run)
        run["choice_name"] = best.name


def _describe(row: Row, max_loss: float, run: dict) -> str:
    from ..evaluate.pareto import null_noise

    if run.get("metric") is None:
        return f"fastest: {row.name} ({row.speedup:.3g}x, latency only)"
    if row.name == "baseline" or (row.speedup or 0) <= 1.0:
        floor = null_noise(run.get("null_control"))
        beyond = f" by more than the {100 * floor:.2g}% two compiles of it differ by" if floor else ""
        return (f"within {100 * max_loss:g}% loss nothing beats the baseline on {run['device']}{beyond}: "
                "keep baseline")
    hw = row.metric_delta_halfwidth_rel
    hw_text = f" ±{100 * hw:.3f}%" if hw else ""
    ratio = row.latency_ratio.halfwidth_rel if row.latency_ratio else None
    speed = f"{row.speedup:.3g}x" + (f" ±{100 * ratio:.1f}%" if ratio else "")
    return (f"within {100 * max_loss:g}% loss the fastest on {run['device']} {run['precision']} is {row.name}: "
            f"{speed}, bits/byte {100 * row.metric_delta_rel:+.3f}%{hw_text}")


def _sweep(plans: list, total: int, settings, out, max_loss: float, backend) -> list[dict]:
    """Every planned run in order, on `backend` (None: local), with one progress display."""
    from ..evaluate import sweep
    from ._progress import Progress

    runs = []
    with Progress(total, "config") as bar:
        for lm, configs, prec, n in plans:
            bar.set_title(f"{lm.name} {prec} L={n}")
            s = sweep.Settings(**{**settings.__dict__, "seq_len": n,
                                  "latency_only": settings.latency_only or lm.random_weights})
            run_ = sweep.run_one(lm, configs, s, prec, out, progress=bar, backend=backend)
            _precision_cost(run_, runs)
            _choose(run_, max_loss)
            runs.append(run_)
            bar.log(f"{lm.name} {prec} L={n}: {run_.get('choice', 'no baseline')}")
    return runs
