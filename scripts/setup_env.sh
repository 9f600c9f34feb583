#!/usr/bin/env bash
# Create (or reuse) a virtual environment and install actiba with everything the demo and tests need.
# torch==2.13.0 (the CPU build) goes in FIRST so nothing later pulls a multi-GB CUDA build.
# Usage: source scripts/setup_env.sh   (honours ACTIBA_VENV, default .venv)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${ACTIBA_VENV:-$here/.venv}"
py="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "torch==2.13.0"
"$venv/bin/python" -m pip install -q -e "$here[all,test]"
export PATH="$venv/bin:$PATH"
