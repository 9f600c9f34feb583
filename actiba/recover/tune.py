"""The fine-tuning loop: the model's activations run as tables (via `actiba_scope`) while AdamW trains.

Why these choices: the loss is the training convention of the embedded models (start token 256, then
`seq_len` - 1 bytes; predict the `seq_len` bytes), so the before/after numbers are comparable with
`torch_bits_per_byte`. Windows are drawn once from a seeded generator (a fixed order), torch is seeded,
and training runs in float32 in eval mode (no dropout in these models), so a seed reproduces a run.
Mamba v1 trains through `mamba_scan`'s recurrent scan (HF's loop is quadratic in length under
autograd); the model is given back with the scan it came with.
"""

from __future__ import annotations

import contextlib
import fnmatch
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..activations import NAMES as _EXACT_ACTS  # the activation registry
from ..errors import InputError
from ..models.arch import is_selective_scan

GRADS = ("table", "ste")
TRAIN_PARAMS = ("all", "mixer")


@dataclass
class FinetuneResult:
    """What a run did: per-step training loss (bits/byte of that step's batch), time, settings."""

    losses: list[float]
    seconds: float
    settings: dict[str, Any]
    trained: list[str] = field(default_factory=list)  # names of the parameters that were updated

    def to_dict(self) -> dict[str, Any]:
        return {"losses_bits_per_byte": [round(v, 6) for v in self.losses], "seconds": round(self.seconds, 2),
                "settings": self.settings, "trained_parameters": len(self.trained)}


def _exact(function: str, beta: float) -> Callable[[Any], Any]:
    """The exact torch op behind `function` (called inside the scope's handler, so not intercepted)."""
    import torch
    import torch.nn.functional as F

    ops: dict[str, Callable[[Any], Any]] = {
        "silu": F.silu, "softplus": lambda x: F.softplus(x, beta=beta),
        "gelu": F.gelu, "gelu-tanh": lambda x: F.gelu(x, approximate="tanh"),
        "sigmoid": torch.sigmoid, "tanh": torch.tanh, "exp": torch.exp,
    }
    if function not in ops:
        raise InputError(f"grad='ste' needs the exact function of each table; {function!r} is not one of "
                         f"{', '.join(_EXACT_ACTS)}")
    return ops[function]


def _table_functions(tables: Any) -> dict[int, str]:
    """id(table) -> the function it stands for: the key for function keys, the key's function part for
    site ids (``path:softplus#0``); site globs and TableSets leave it to the table's own `function`."""
    from ..rewrite import spec

    items = getattr(tables, "tables", tables)
    out: dict[int, str] = {}
    for key, table in (items or {}).items():
        if ":" not in key:
            out[id(table)] = spec.canonical_function(key)
        else:
            fn = key.split(":", 1)[1].split("#", 1)[0]
            if fn and not set("*?[") & set(fn):
                out[id(table)] = spec.canonical_function(fn)
    return out


def make_pwl(tables: Any, grad: str = "table") -> Callable[[Any, Any], Any]:
    """The `pwl(x, table)` callable handed to `actiba_scope` for gradient mode `grad`.

    `tables` is what `actiba_scope` takes (function- or site-keyed mapping, or a TableSet).
    `table`: the torch lowering (a cached `PWL` module per table), so d/dx is the slope of x's segment.
    `ste`: forward value = the lowering, backward = the derivative of the exact function that the
    table stands for (`exact + (table - exact).detach()`); the function is the key the table was given
    under in `tables` (so the XAMBA ReLU table under "softplus" back-propagates Softplus' sigmoid).
    """
    from ..lower.torch_lower import PWL
    from ..rewrite import spec

    if grad not in GRADS:
        raise InputError(f"unknown gradient mode {grad!r}; use one of {', '.join(GRADS)}")
    modules: dict[int, Any] = {}
    names = _table_functions(tables)

    def lowered(x: Any, table: Any) -> Any:
        mod = modules.get(id(table))
        if mod is None:
            mod = modules[id(table)] = PWL(table).to(x.device)
        return mod(x)

    if grad == "table":
        return lowered

    def ste(x: Any, table: Any) -> Any:
        fn = names.get(id(table)) or spec.canonical_function(getattr(table, "function", "") or "")
        beta = float((getattr(table, "params", None) or {}).get("beta", 1.0))
        exact = _exact(fn, beta)(x)
        return exact + (lowered(x, table) - exact).detach()

    return ste


def _trainable(model: Any, train_params: str | Sequence[str], include: Sequence[str]) -> list[tuple[str, Any]]:
    """(name, parameter) pairs to train: all, those inside the `include` modules, or matching globs."""
    from ..rewrite import spec

    named = list(model.named_parameters())
    if train_params == "all":
        chosen = named
    elif train_params == "mixer":
        chosen = [(n, p) for n, p in named if spec.matches_any(n.rsplit(".", 1)[0], list(include))
                  or any(fnmatch.fnmatchcase(n, g + ".*") for g in include)]
    elif isinstance(train_params, str):
        raise InputError(f"train_params must be one of {', '.join(TRAIN_PARAMS)} or a list of name globs, "
                         f"got {train_params!r}")
    else:
        globs = list(train_params)
        chosen = [(n, p) for n, p in named if any(fnmatch.fnmatchcase(n, g) for g in globs)]
    if not chosen:
        raise InputError(f"train_params={train_params!r} selects no parameter of the model")
    return chosen


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10 % of the peak (as the embedded models were trained)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@contextlib.contextmanager
def _training_scan(model: Any):
    """Mamba v1: the recurrent scan with a linear-time backward while training (restored after)."""
    if not is_selective_scan(model):
        yield
        return
    from ..models.mamba_scan import patch_scan, unpatch_scan

    if any("_actiba_original_forward" in vars(m) for m in model.modules()):
        yield  # the caller chose a scan already; keep it
        return
    patch_scan(model, "recurrent")
    try:
        yield
    finally:
        unpatch_scan(model)


def finetune(model: Any, tables: Any, train: bytes, *, steps: int = 200, lr: float = 3e-4,
             seq_len: int = 256, batch: int = 8, grad: str = "table", include: Iterable[str] | None = None,
             train_params: str | Sequence[str] = "all", seed: int = 0, warmup: int | None = None,
             clip: float = 1.0, progress: Callable[[int, int, float], None] | None = None) -> FinetuneResult:
    """Fine-tune `model` in place (float32) with `tables` applied inside `include` (default: the mixers).

    `tables`: anything `actiba_scope` accepts ({function: Table}, site-keyed mapping, TableSet).

    `train` is the byte corpus windows are drawn from; `progress(step, steps, loss_bits)` is called
    after every step. Returns per-step losses; the model is left in float32 and eval mode.
    """
    import torch
    import torch.nn.functional as F

    from ..models import mixer_scope
    from ..models.tokenizer import EOS_ID
    from ..rewrite.torch_rw import actiba_scope

    include = list(mixer_scope(model) if include is None else include)
    for name, v in (("steps", steps), ("seq_len", seq_len), ("batch", batch)):
        if not isinstance(v, int) or v < 1:
            raise InputError(f"{name} must be a positive integer, got {v!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise InputError(f"lr must be a positive number, got {lr!r}")
    if len(train) < seq_len:
        raise InputError(f"need at least seq_len={seq_len} training bytes, got {len(train)}")
    pwl = make_pwl(tables, grad)
    warmup = max(1, min(20, steps // 10)) if warmup is None else max(1, int(warmup))
    settings = {"steps": steps, "lr": lr, "seq_len": seq_len, "batch": batch, "grad": grad, "include": include,
                "train_params": train_params if isinstance(train_params, str) else list(train_params),
                "seed": seed, "warmup": warmup, "schedule": "linear warm-up, cosine to 10%", "clip": clip,
                "optimizer": "AdamW(betas=(0.9, 0.95), weight_decay=0)", "dtype": "float32",
                "train_bytes": len(train)}

    model.float().eval()
    chosen = _trainable(model, train_params, include)
    chosen_ids = {id(p) for _, p in chosen}
    was = {id(p): p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen_ids)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    corpus = torch.frombuffer(bytearray(train), dtype=torch.uint8)
    offsets = torch.randint(0, len(corpus) - seq_len + 1, (steps, batch), generator=gen)
    start = torch.full((batch, 1), EOS_ID, dtype=torch.long)
    opt = torch.optim.AdamW([p for _, p in chosen], lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    losses: list[float] = []
    t0 = time.perf_counter()
    try:
        with torch.enable_grad(), _training_scan(model), actiba_scope(model, tables, include=include, pwl=pwl):
            for step in range(steps):
                target = torch.stack([corpus[o:o + seq_len] for o in offsets[step].tolist()]).long()
                ids = torch.cat([start, target[:, :-1]], dim=1)
                for g in opt.param_groups:
                    g["lr"] = lr_at(step, steps, lr, warmup)
                logits = model(input_ids=ids, use_cache=False).logits
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1))
                if not torch.isfinite(loss):
                    raise InputError(f"training diverged at step {step + 1} (loss {loss.item()}); lower the lr")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if clip:
                    torch.nn.utils.clip_grad_norm_([p for _, p in chosen], clip)
                opt.step()
                losses.append(loss.item() / math.log(2))
                if progress is not None:
                    progress(step + 1, steps, losses[-1])
    finally:
        for p in model.parameters():
            p.requires_grad_(was[id(p)])
            p.grad = None
        model.eval()
    return FinetuneResult(losses, time.perf_counter() - t0, settings, [n for n, _ in chosen])
