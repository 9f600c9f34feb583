#!/usr/bin/env bash
# Create (or reuse) a virtual environment and install actiba with everything the demo and tests need.
# torch (the CPU build) goes in FIRST so nothing later pulls a multi-GB CUDA build.
# Versions come from constraints.txt (the ones the suite was run with), so a fresh clone gets a tested
# set. ACTIBA_CONSTRAINTS=none installs the newest versions setup.cfg allows (to try an upgrade);
# ACTIBA_CONSTRAINTS=FILE uses another constraints file.
# Usage: source scripts/setup_env.sh   (honours ACTIBA_VENV, default .venv, and ACTIBA_CONSTRAINTS)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${ACTIBA_VENV:-$here/.venv}"
py="${PYTHON:-python3}"
constraints="${ACTIBA_CONSTRAINTS:-$here/constraints.txt}"
pin=()
torch_spec="torch==2.13.0"
if [ "$constraints" != "none" ]; then
  if [ ! -f "$constraints" ]; then
    echo "setup_env: constraints file $constraints not found (ACTIBA_CONSTRAINTS=none to install unpinned)" >&2
    return 2 2>/dev/null || exit 2
  fi
  pin=(-c "$constraints")
else
  torch_spec="torch"
  echo "setup_env: ACTIBA_CONSTRAINTS=none: newest versions setup.cfg allows (packages already in $venv" \
       "stay as they are; use a fresh ACTIBA_VENV to try an upgrade)" >&2
fi
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q ${pin[@]+"${pin[@]}"} "$torch_spec"
"$venv/bin/python" -m pip install -q ${pin[@]+"${pin[@]}"} -e "$here[all,test]"
export PATH="$venv/bin:$PATH"
