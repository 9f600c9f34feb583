"""Accuracy recovery: fine-tune a model with its activation tables in place, save it beside the model.

Why: coarse tables (4-8 segments, XAMBA's ReLU-for-Softplus) cost bits/byte; a short fine-tune lets
the weights adapt to the table the hardware will evaluate. Two gradients are offered: the torch
lowering's own (`grad="table"`: the slope of x's segment) and a straight-through estimator
(`grad="ste"`: forward = table, backward = the exact function's derivative).

    from actiba.recover import finetune, save_folder
    result = finetune(model, {"silu": t4, "softplus": relu}, train_bytes, steps=100)
    save_folder(model, "out-folder", base="embedded:mamba2", meta={...})

`tune` holds the training loop (torch inside); `folder` the never-over-the-model output rules.
"""

from __future__ import annotations

from .folder import (
                     base_dtype,
                     check_out_dir,
                     default_out_dir,
                     save_folder,
                     staged_folder,
                     weights_fingerprint,
                     write_model,
)
from .tune import FinetuneResult, finetune, make_pwl

__all__ = ["FinetuneResult", "base_dtype", "check_out_dir", "default_out_dir", "finetune", "make_pwl",
           "save_folder", "staged_folder", "weights_fingerprint", "write_model"]
