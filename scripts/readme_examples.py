"""Regenerate (or check) the example sessions in README.md from real runs of the CLI.

The README shows what `actiba fit`, `show` and `export` print. Written by hand those drift: the
"47 nodes" once shown for a relu-sum export was 61 by the time anyone ran it, and a bound quoted in
prose disagreed with the one the CLI printed. So each example block sits between
`<!-- example NAME -->` and `<!-- /example -->` markers and is produced here by running the commands
listed in EXAMPLES in a temporary folder.

    python scripts/readme_examples.py          # rewrite the blocks in README.md
    python scripts/readme_examples.py --check  # exit 1 and show a diff if a block is out of date

`--check` compares with run-dependent numbers (fit seconds) masked, so it fails only when what the
CLI reports changes, not when the machine is faster.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# name -> commands run in order in one temporary folder; each shown as `$ cmd` then what it printed
# (stdout and stderr interleaved as a terminal shows them). A command's exit code other than 0 is
# shown as a comment, so the README's bad-input example proves its exit code too.
EXAMPLES: dict[str, list[str]] = {
    "fit": [
        "actiba fit silu --segments 16 -o silu16.json",
        "actiba fit softplus --max-error 1e-3 --tails asymptote -o softplus.json",
        "actiba show {root}/fits/silu-n8-continuous-asymptote.json --plot silu8.png",
        "actiba fit silu --segments 0",
    ],
    "export": [
        "actiba fit silu --segments 16 -o silu16.json",
        "actiba export silu16.json --to onnx -o silu16.onnx",
        "actiba export silu16.json --to c-header -o silu16.h",
    ],
}

# only these commands' output is shown (the first fit of "export" just makes its input)
HIDDEN = {("export", 0)}

_MARK = re.compile(r"(<!-- example (\w+) -->\n)(.*?)(<!-- /example -->)", re.S)
# numbers that depend on the machine, not on actiba's answer
_VOLATILE = [re.compile(r"in \d+(\.\d+)? s\b"), re.compile(r"\d+(\.\d+)? s of fitting"),
             re.compile(r"max jump \S+\)")]
_FLOAT = re.compile(r"[-+]?(\d+\.\d*|\.\d+|\d+)(e[-+]?\d+)?", re.I)
WIDTH = 100


def _wrap(out: str) -> str:
    """Wrap long lines as a 100-column terminal would, at spaces, so the README stays readable."""
    import textwrap

    return "\n".join(textwrap.fill(line, WIDTH, break_long_words=False, break_on_hyphens=False)
                     if len(line) > WIDTH else line for line in out.splitlines())


def _round(m: re.Match) -> str:
    """3 significant digits: optimizer results differ in the last bits between CPUs and BLAS builds;
    tiny values (a knot at 5e-5 where SiLU's symmetry leaves it undetermined) compare as 0."""
    text = m.group(0)
    if re.fullmatch(r"[-+]?\d+", text):
        return text
    v = float(text)
    return "0" if abs(v) < 1e-3 else f"{v:.3g}"


def _run(cmd: str, cwd: str) -> str:
    argv = shlex.split(cmd.format(root=ROOT))
    assert argv[0] == "actiba"
    env = dict(os.environ, COLUMNS="100", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "actiba", *argv[1:]], cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    out = _wrap(proc.stdout.rstrip("\n"))
    if proc.returncode:
        out += f"{'  ' if out else ''}# exit code {proc.returncode}, no file written"
    return out


def render(name: str) -> str:
    lines = ["```console"]
    with tempfile.TemporaryDirectory() as tmp:
        for i, cmd in enumerate(EXAMPLES[name]):
            out = _run(cmd, tmp)
            if (name, i) in HIDDEN:
                continue
            lines.append("$ " + cmd.replace("{root}/", ""))
            if out:
                lines.append(out)
            lines.append("")
    if lines[-1] == "":
        lines.pop()
    lines.append("```")
    return "\n".join(lines) + "\n"


def _masked(text: str) -> str:
    for pat in _VOLATILE:
        text = pat.sub("<t>", text)
    return " ".join(_FLOAT.sub(_round, text).split())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 if README is out of date")
    args = ap.parse_args(argv)
    text = README.read_text()
    found = {m.group(2) for m in _MARK.finditer(text)}
    missing = set(EXAMPLES) - found
    if missing:
        print(f"README.md has no <!-- example NAME --> block for: {', '.join(sorted(missing))}", file=sys.stderr)
        return 1
    fresh = {name: render(name) for name in found if name in EXAMPLES}
    new = _MARK.sub(lambda m: m.group(1) + fresh.get(m.group(2), m.group(3)) + m.group(4), text)
    if args.check:
        if _masked(new) != _masked(text):
            sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), new.splitlines(True),
                                                       "README.md", "regenerated"))
            return 1
        return 0
    if new != text:
        tmp = README.with_suffix(".md.tmp")
        tmp.write_text(new)
        os.replace(tmp, README)
    return 0


if __name__ == "__main__":
    sys.exit(main())
