"""Lowerings: a table turned into ONNX nodes, an OpenVINO subgraph or a torch module that computes it.

`plan` holds the backend-neutral description (which ops, in what order, and why they are exact at
NaN / ±inf / flat tails); `onnx_lower`, `openvino_lower` and `torch_lower` translate a plan. Only
`plan` is imported here, so `import actiba.lower` needs none of onnx, openvino or torch.
"""

from __future__ import annotations

from .plan import CHOICES, LOWERINGS, choose, feasible, make_plan, reference, resolve, tolerance

__all__ = ["CHOICES", "LOWERINGS", "choose", "feasible", "make_plan", "reference", "resolve", "tolerance"]
