#!/usr/bin/env bash
# Latency-only Pareto reports of the full-size architectures with RANDOM weights (Mamba-2-130M and
# Mamba-130M layer sizes; no checkpoint is downloaded), prefill at 256 and 1024 tokens, decode step,
# per-op profiles of every configuration. OpenVINO CPU f32, 1 thread. Heavy: run on a quiet machine.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
nice -n 5 actiba pareto random:mamba2-130m --latency-only --seq-len 256,1024 --profile \
  --sweep "$here/sweep_mamba2.json" --out "$here/mamba2" "$@"
nice -n 5 actiba pareto random:mamba-130m --latency-only --seq-len 256,1024 --profile \
  --sweep "$here/sweep_mamba.json" --out "$here/mamba" "$@"
