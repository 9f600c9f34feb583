#!/usr/bin/env bash
# Create (or reuse) the separate virtual environment that holds Arm's TOSA reference model for the
# vendor slow suite (tests/test_targets_vendor.py drives it through scripts/tosa_table.py).
# Separate because every tosa-tools release (2026.2.0 - 2026.8.0) pins ml-dtypes (0.5.1 / 0.5.3) below
# what onnx 1.23 requires (ml_dtypes>=0.5.4), so pip cannot put it in the project venv; it also
# installs top-level packages named `tests`, `generator` and `runner`, which would shadow ours.
# Usage: bash scripts/setup_tosa.sh   (honours ACTIBA_TOSA_VENV, default $ACTIBA_CACHE/tosa-venv, i.e.
#        ~/.cache/actiba/tosa-venv, and ACTIBA_TOSA_TOOLS, the pip requirement, default tosa-tools==2026.8.0; the suite also passes
#        with 2026.5.0 and 2026.2.1)
set -euo pipefail
venv="${ACTIBA_TOSA_VENV:-${ACTIBA_CACHE:-$HOME/.cache/actiba}/tosa-venv}"  # the tests look there too
py="${PYTHON:-python3}"
req="${ACTIBA_TOSA_TOOLS:-tosa-tools==2026.8.0}"
if [ ! -x "$venv/bin/python" ]; then
  mkdir -p "$(dirname "$venv")"
  "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "$req"
echo "setup_tosa: $req in $venv (tests find it through ACTIBA_TOSA_VENV or this default)" >&2
