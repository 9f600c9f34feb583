#!/usr/bin/env bash
# The main job on the embedded default: set up, then an accuracy-vs-latency Pareto report on the
# built-in tiny Mamba / Mamba-2 models (OpenVINO CPU): prefill and decode-step latency, bits/byte.
# Extra arguments go to `actiba pareto`. Prints the wall time and the load average at the end, because
# on a shared machine the time depends on the load.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$here/scripts/setup_env.sh"
cd "$here"
start=$(date +%s)
actiba pareto --out "${ACTIBA_OUT:-out/pareto}" "$@"
load=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || uptime)
echo "demo: $(( $(date +%s) - start )) s for the Pareto run; load average (1, 5, 15 min): $load"
