#!/usr/bin/env bash
# Latency-only Pareto reports of the full-size architectures with RANDOM weights (Mamba-2-130M and
# Mamba-130M layer sizes; no checkpoint is downloaded), OpenVINO CPU f32, 1 thread. Prefill is timed in
# two modes (--prefill-logits): `last` = the last position's logits only, what a generator's prefill
# computes (the default), and `all` = every position's logits, what perplexity scoring computes; each
# against the baseline of the same mode. Heavy (one Mamba-2-130M prefill at 256 tokens takes seconds
# here, Mamba-130M ~10 s): run on a quiet machine. These are the exact commands behind README.md.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
timing=(--latency-only --warmup 1 --repeats 12 --min-repeats 6 --timing-seconds 60)
# 1. Mamba-2-130M, 256 tokens: last-position logits (with decode step and profiles; at least 12 pairs),
#    then all positions
nice -n 5 actiba pareto random:mamba2-130m --latency-only --warmup 1 --repeats 20 --min-repeats 12 \
  --timing-seconds 120 --seq-len 256 --profile --prefill-logits last \
  --sweep "$here/sweep_mamba2_256.json" --out "$here/mamba2_256" "$@"
nice -n 5 actiba pareto random:mamba2-130m "${timing[@]}" --seq-len 256 --profile --prefill-logits all \
  --no-decode --sweep "$here/sweep_mamba2_1024.json" --out "$here/mamba2_256_all" "$@"
# 2. Mamba-2-130M, 1024 tokens, last-position logits: baseline vs ssd-d1+d2
nice -n 5 actiba pareto random:mamba2-130m "${timing[@]}" --seq-len 1024 --prefill-logits last \
  --no-decode --sweep "$here/sweep_mamba2_1024.json" --out "$here/mamba2_1024" "$@"
# 3. Mamba-130M, 256 tokens, last-position logits: more pairs (each prefill ~10 s) for a usable interval
nice -n 5 actiba pareto random:mamba-130m --latency-only --warmup 1 --repeats 14 --min-repeats 10 \
  --timing-seconds 200 --seq-len 256 --profile --prefill-logits last --no-decode \
  --sweep "$here/sweep_mamba.json" --out "$here/mamba_256" "$@"
# 4. control for step 3: the baseline against itself compiled again and through onnx_rw.apply with no site
nice -n 5 python "$here/null_control.py"
