"""Which model a file was made for: a hash of its config and weights, and the one mismatch check.

Calibration statistics, calibrated table sets and fine-tuned folders record the fingerprint of the
model they came from; applying them to another model would silently give wrong tables, so every reader
checks with `check_fingerprint`. This module sits at the bottom of the import layers (torch is imported
only when hashing) so the statistics format, the torch rewriter and the evaluator share it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .errors import InputError

# config keys that change with where and how the same weights were loaded
_VOLATILE_CONFIG_KEYS = ("_name_or_path", "transformers_version", "_commit_hash", "name_or_path")


def torch_module(model: Any) -> Any:
    """The torch model of an `actiba.evaluate.build.LoadedModel`, or `model` itself if it is a torch module.

    Not ``getattr(model, "model", model)``: a hybrid's HF causal LM has a `.model` too (its base model,
    without the LM head and with paths one level shorter), which would change hashes and site ids.
    """
    import torch

    return model if isinstance(model, torch.nn.Module) else getattr(model, "model", model)


def model_fingerprint(model: Any) -> dict[str, Any]:
    """{"name_or_path", "model_type", "sha256"}; sha256 over the config JSON and every state_dict tensor.

    `model` is a torch module or an `actiba.evaluate.build.LoadedModel`. Volatile config keys (path,
    transformers version) are left out so the same weights give the same hash wherever they load from.
    """
    import torch

    name = getattr(model, "name", None)
    module = torch_module(model)
    config = getattr(module, "config", None)
    h = hashlib.sha256()
    cfg: dict[str, Any] = {}
    if config is not None:
        cfg = config.to_dict() if hasattr(config, "to_dict") else dict(vars(config))
        cfg = {k: v for k, v in cfg.items() if k not in _VOLATILE_CONFIG_KEYS}
    h.update(json.dumps(cfg, sort_keys=True, default=str).encode("utf-8"))
    for key, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"\0{key}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return {"name_or_path": name or (getattr(config, "_name_or_path", "") or None),
            "model_type": getattr(config, "model_type", None) or type(module).__name__,
            "sha256": h.hexdigest()}


def check_fingerprint(want: Any, model: Any, what: str, have: dict[str, Any] | None = None,
                      name: str | None = None) -> None:
    """InputError unless `model` has the fingerprint `want` (a recorded fingerprint dict).

    `what` starts the message ("statistics are from", "table set x.json is for"); `have` is the
    model's fingerprint if the caller already has it (hashing every weight is not free); `name` is
    how the message names the model (default: "this one" with its recorded name and hash). A `want`
    without a sha256 records no model and passes.
    """
    if not isinstance(want, dict) or not want.get("sha256"):
        return
    have = have if have is not None else model_fingerprint(model)
    if have.get("sha256") != want["sha256"]:
        here = name or f"this one ({have.get('name_or_path') or '?'}, sha256 {str(have.get('sha256'))[:12]})"
        raise InputError(f"{what} model {want.get('name_or_path') or '?'} (sha256 {str(want['sha256'])[:12]}), "
                         f"not {here}")


__all__ = ["check_fingerprint", "model_fingerprint"]
