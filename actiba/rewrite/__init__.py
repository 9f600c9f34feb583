"""Model graph rewrites for state-space models on NPUs: CumBA, ReduBA, ActiBA (XAMBA), plus SSD-aware ones.

One description per rewrite lives in `spec`; `onnx_rw`, `openvino_rw` and `torch_rw` implement it at
the three levels. Heavy dependencies (onnx, openvino, torch) are imported by those modules only.
"""

from .spec import SPECS, Site

__all__ = ["SPECS", "Site"]
