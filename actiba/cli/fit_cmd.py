"""`actiba fit FUNC --segments N | --max-error EPS [...]`: fit, write the table, summarize on stderr."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    p = sub.add_parser("fit", help="fit a piecewise-linear table to an activation function")
    p.add_argument("func", metavar="FUNC",
                   help="silu|swish|softplus|gelu|gelu-tanh|sigmoid|tanh|exp|expr:<numpy expression in x>")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--segments", type=int, metavar="N", help="segment count (least error)")
    how.add_argument("--max-error", type=float, metavar="EPS", help="error budget (fewest segments)")
    p.add_argument("--range", type=float, nargs=2, metavar=("LO", "HI"), help="fitting range")
    p.add_argument("--metric", default="max-abs", choices=["max-abs", "max-rel", "rms"])
    p.add_argument("--discontinuous", action="store_true", help="allow jumps at breakpoints")
    p.add_argument("--tails", default="free", choices=["free", "asymptote", "clamp"])
    p.add_argument("--beta", type=float, help="beta of silu/swish/softplus")
    p.add_argument("--weight", metavar="EXPR", help="weight w(x) for --metric rms, a numpy expression in x")
    p.add_argument("--target", metavar="NAME", help="hardware format to fit under (e.g. npu-ppe)")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="target parameter")
    p.add_argument("-o", "--output", metavar="FILE", help="output table (default: stdout)")
    p.set_defaults(run=run)


def run(args) -> int:
    from .. import _atomic
    from ..errors import InputError
    from ..exporters import parse_params
    from ..expr import compile_expr
    from ..fitting import fit

    weight = compile_expr(args.weight) if args.weight else None
    if args.output:  # fail on an unwritable path before spending time fitting
        _atomic.check_writable(args.output)
    if args.target is None and args.param:
        raise InputError("--param applies to --target fits only")
    table = fit(args.func, args.segments, max_error=args.max_error,
                range=tuple(args.range) if args.range else None, metric=args.metric,
                continuous=not args.discontinuous, tails=args.tails, beta=args.beta, weight=weight,
                target=args.target, target_params=parse_params(args.param))
    if args.output:
        table.save(args.output)
    else:
        sys.stdout.write(table.to_json())
    if table.report is not None and hasattr(table.report, "summary"):
        print(table.report.summary(table.function), file=sys.stderr)
    return 0
