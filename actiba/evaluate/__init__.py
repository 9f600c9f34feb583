"""Evaluation: accuracy (bits/byte, torch or OpenVINO), latency (OpenVINO), sweeps, Pareto sets, reports.

Modules, in the direction data flows: `configs` (what a configuration is) -> `build` (export + graph
rewrites) -> `perplexity`, `latency` -> `sweep` (rows, resume cache) -> `pareto` -> `report`.
`lm_eval_model` registers the ``actiba`` model with lm-eval. Nothing heavy is imported here.
"""
