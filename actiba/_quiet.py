"""Silence torch.onnx exporter chatter that says nothing about the user's model (shared by every export)."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def quiet_torch_export():
    """Silence exporter chatter that says nothing about the user's model: one warning per missing
    torchvision op and a torch-internal pytree deprecation, printed on every export."""
    import logging
    import warnings

    log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
            yield
    finally:
        log.setLevel(level)
