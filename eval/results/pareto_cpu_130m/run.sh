#!/usr/bin/env bash
# Latency-only Pareto reports of the full-size architectures with RANDOM weights (Mamba-2-130M and
# Mamba-130M layer sizes; no checkpoint is downloaded): prefill at 256 (and 1024 for Mamba-2) tokens,
# the decode step, per-op profiles. OpenVINO CPU f32, 1 thread. One prefill of Mamba-2-130M at 256 tokens
# takes ~5 s on this machine, so the sweeps are short and timing uses few pairs (the report gives each
# speed-up's precision). Heavy: run on a quiet machine.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
timing=(--latency-only --repeats 6 --min-repeats 3 --warmup 1 --timing-seconds 40)
nice -n 5 actiba pareto random:mamba2-130m "${timing[@]}" --seq-len 256 --profile \
  --sweep "$here/sweep_mamba2_256.json" --out "$here/mamba2_256" "$@"
nice -n 5 actiba pareto random:mamba2-130m "${timing[@]}" --seq-len 1024 \
  --sweep "$here/sweep_mamba2_1024.json" --out "$here/mamba2_1024" "$@"
nice -n 5 actiba pareto random:mamba-130m "${timing[@]}" --seq-len 256 --profile \
  --sweep "$here/sweep_mamba.json" --out "$here/mamba_256" "$@"
