#!/usr/bin/env bash
# Mamba-2-130M (RANDOM weights, latency only): SSD d1+d2 at the model's chunk (256) and at 128 / 64
# (the chunked SSD is exact for any chunk length). OpenVINO CPU f32, 1 thread, paired (ABBA) timing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
timing=(--latency-only --warmup 1 --repeats 12 --min-repeats 6 --timing-seconds 60 --no-decode)
nice -n 5 actiba pareto random:mamba2-130m "${timing[@]}" --seq-len 256 --profile --prefill-logits last \
  --sweep "$here/sweep_mamba2_chunk.json" --out "$here/mamba2_256_chunk" "$@"
nice -n 5 actiba pareto random:mamba2-130m "${timing[@]}" --seq-len 256 --prefill-logits all \
  --sweep "$here/sweep_mamba2_chunk.json" --out "$here/mamba2_256_chunk_all" "$@"
nice -n 5 actiba pareto random:mamba2-130m "${timing[@]}" --seq-len 1024 --prefill-logits last \
  --sweep "$here/sweep_mamba2_chunk.json" --out "$here/mamba2_1024_chunk" "$@"
