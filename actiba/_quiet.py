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


def legacy_onnx_export(*args, **kwargs):
    """`torch.onnx.export(..., dynamo=False)`: the TorchScript exporter, deprecated since torch 2.9.

    actiba uses it only where it is chosen on purpose: as the fallback when the dynamo exporter fails
    on a model (models.export, models.decode), and for `lower.torch_lower.export_onnx(dynamo=False)`
    (~40x faster, used by the fast tests). The deprecation warnings it prints on every call say
    nothing about the user's model, so they are silenced here, in one place. When a torch release
    removes it, the error names that and the dynamo exporter's own failure must be fixed instead."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export.*",
                                category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*feature will be removed.*", category=DeprecationWarning)
        try:
            return torch.onnx.export(*args, dynamo=False, **kwargs)
        except TypeError as exc:
            if "dynamo" in str(exc):
                raise RuntimeError(f"this torch ({torch.__version__}) has no legacy TorchScript ONNX "
                                   f"exporter any more ({exc})") from exc
            raise
