"""The independent reference for exported graphs: the HF torch model's own logits."""

from __future__ import annotations

import numpy as np


def torch_logits(model, ids: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return model(input_ids=torch.from_numpy(ids), use_cache=False).logits.float().numpy()
