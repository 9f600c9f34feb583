#!/usr/bin/env bash
# The main job on the embedded default: set up, then an accuracy-vs-latency Pareto report on the
# built-in tiny Mamba / Mamba-2 models (OpenVINO CPU). Extra arguments go to `actiba pareto`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$here/scripts/setup_env.sh"
cd "$here"
actiba pareto --out "${ACTIBA_OUT:-out/pareto}" "$@"
