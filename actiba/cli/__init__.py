"""`actiba` command line: argument parsing and the exit-code contract (DESIGN.md §3).

0 success; 2 bad input or impossible request (one line on stderr, no traceback, no output file);
1 an internal error. Subcommands live in their own modules and import their heavy dependencies
inside `run`, so `actiba fit` / `actiba show` start without torch, onnx or openvino.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import traceback

from .._version import __version__
from ..errors import InputError
from ..registry import Registry

# subcommand name -> module (each has `add_parser(subparsers)` and `run(args) -> int`); the one place
# a command registers
COMMANDS: Registry = Registry("command")
COMMANDS.register("fit", "actiba.cli.fit_cmd")
COMMANDS.register("show", "actiba.cli.show_cmd")
COMMANDS.register("export", "actiba.cli.export_cmd")
COMMANDS.register("rewrite", "actiba.cli.rewrite_cmd")
COMMANDS.register("eval", "actiba.cli.eval_cmd")
COMMANDS.register("pareto", "actiba.cli.pareto_cmd")
COMMANDS.register("calibrate", "actiba.cli.calibrate_cmd")
COMMANDS.register("finetune", "actiba.cli.finetune_cmd")


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as InputError (one line, exit 2).

    It also reads -inf, -1e-3 and -nan as numbers, not options, so they reach the validators.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$|^-(inf|infinity|nan)$", re.I)

    def error(self, message: str):  # type: ignore[override]
        raise InputError(f"{self.prog}: {message}")


def nonneg_float(text: str) -> float:
    """argparse type for tolerances: a finite number >= 0 (a negative or NaN tolerance refuses
    everything, or nothing, for a reason the user would not see)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="actiba", description="Piecewise-linear activation tables for NPUs.")
    parser.add_argument("--version", action="version", version=f"actiba {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        COMMANDS.get(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if not getattr(args, "run", None):
            build_parser().print_help(sys.stderr)
            return 2
        import numpy as np

        # numpy's overflow/invalid warnings are noise before a one-line error (the commands check
        # finiteness where it matters and say so); a library user keeps numpy's own settings
        with np.errstate(all="ignore"):
            return int(args.run(args) or 0)
    except InputError as exc:
        print(f"actiba: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("actiba: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # an actiba bug: say so, keep the traceback for ACTIBA_DEBUG=1
        if os.environ.get("ACTIBA_DEBUG"):
            traceback.print_exc()
        print(f"actiba: internal error: {type(exc).__name__}: {exc} (set ACTIBA_DEBUG=1 for details)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
