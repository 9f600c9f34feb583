#!/usr/bin/env bash
# Set up, then run the test suite. Default: the fast suite (slow tests excluded, ~5-6 min of pytest on 2 cores).
# `bash scripts/test.sh -m slow` runs the slow tests; `bash scripts/test.sh -m ""` runs everything.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$here/scripts/setup_env.sh"
cd "$here"
ruff check actiba tests eval
python -m pytest "$@"
