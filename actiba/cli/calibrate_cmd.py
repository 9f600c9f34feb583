"""`actiba calibrate MODEL [--data train|heldout|PATH] [--bytes N] [--seq-len L] -o stats.json`.

Runs the model on text and writes per-site activation statistics (`actiba-calibration/1`) that
`actiba fit --calibration` fits tables to. Default data: the train split, because the held-out split
is what evaluation scores and tables must not be tuned on it.
"""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    p = sub.add_parser("calibrate", help="capture per-site activation statistics of a model on text")
    p.add_argument("model", metavar="MODEL", help="embedded:mamba2|embedded:mamba, a model folder, random:<arch>")
    p.add_argument("--data", default="train", metavar="train|heldout|PATH",
                   help="corpus split or a file of bytes (default: train; held-out is for evaluation)")
    p.add_argument("--bytes", type=int, default=32768, metavar="N", help="use the first N bytes (default 32768)")
    p.add_argument("--seq-len", type=int, default=256, metavar="L", help="window length in bytes (default 256)")
    p.add_argument("--functions", default="silu,softplus", metavar="F,F", help="functions to observe")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="statistics file (JSON; '-': stdout)")
    p.add_argument("--force", action="store_true", help="overwrite even when an output is one of the inputs")
    p.set_defaults(run=run)


def read_data(source: str, n_bytes: int | None) -> bytes:
    """The first `n_bytes` of a corpus split or of a file (all of it if shorter)."""
    from ..errors import InputError

    if n_bytes is not None and n_bytes <= 0:
        raise InputError(f"--bytes must be positive, got {n_bytes}")
    if source in ("train", "heldout"):
        from ..data import load_split

        data = load_split(source)  # type: ignore[arg-type]
    else:
        try:
            with open(source, "rb") as fh:
                data = fh.read() if n_bytes is None else fh.read(n_bytes)
        except FileNotFoundError:
            raise InputError(f"data file {source} does not exist (use train, heldout or a file path)") from None
        except IsADirectoryError:
            raise InputError(f"data {source} is a folder, not a file") from None
        except OSError as exc:
            raise InputError(f"cannot read data {source}: {exc.strerror}") from None
    return data if n_bytes is None else data[:n_bytes]


def summary(stats) -> str:
    """One line per site: count, min, p0.1, p99.9, max."""
    rows = [f"{'site':<44} {'count':>10} {'min':>9} {'p0.1':>9} {'p99.9':>9} {'max':>9}"]
    for site, s in stats.sites.items():
        if s.finite:
            rows.append(f"{site:<44} {s.count:>10} {s.min:>9.4g} {s.quantile(0.1):>9.4g} "
                        f"{s.quantile(99.9):>9.4g} {s.max:>9.4g}")
        else:
            rows.append(f"{site:<44} {s.count:>10} (no finite values)")
        if s.nan or s.posinf or s.neginf:
            rows[-1] += f"  nan {s.nan}, +inf {s.posinf}, -inf {s.neginf}"
    return "\n".join(rows)


def run(args) -> int:
    from .. import _atomic
    from ..calibrate import calibrate
    from ..evaluate.build import load_model

    _atomic.refuse_inputs([args.output], [args.model, args.data], args.force)
    _atomic.check_writable(args.output)
    data = read_data(args.data, args.bytes)
    lm = load_model(args.model)
    functions = [f.strip() for f in args.functions.split(",") if f.strip()]
    from ._progress import Progress

    with Progress(None, "batch", title=f"calibrate {args.model}") as bar:
        def progress(done: int, total: int) -> None:  # batches of total; plain mode: a line every ~10 %
            bar.every = max(1, total // 10)
            bar.update_to(done, total)

        stats = calibrate(lm, data, seq_len=args.seq_len, functions=functions, model_name=args.model,
                          data_name=args.data, progress=progress)
    stats.save(args.output)
    d = stats.data
    print(f"{args.model}: {len(stats.sites)} sites from {d['windows']} windows of {d['seq_len']} bytes "
          f"({d['source']}); statistics in {args.output}", file=sys.stderr)
    print(summary(stats), file=sys.stderr)
    return 0
