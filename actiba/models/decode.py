"""One-token decode step of a Hugging Face Mamba-family LM with its state as graph inputs/outputs.

Why our own step function instead of exporting HF's cached forward: HF keeps the state in a mutable cache
object that is updated in place (`copy_`), which exporters cannot turn into graph outputs. The step math is
short and uses only the mixer's own weights, so it is written out here (batch 1, one token) and checked
against HF's cached generation in the tests. Per layer the graph takes and returns

- ``conv_i``: the last ``conv_kernel - 1`` inputs of the depthwise convolution, [1, channels, k - 1];
- ``ssm_i``: the SSM state, Mamba [1, d_inner, d_state], Mamba-2 [1, heads, head_dim, d_state].

SiLU and Softplus stay as torch's own ops so the exported graph has the ordinary activation nodes that
the ActiBA rewrite replaces. The prefill rewrites (CumBA, ReduBA, SSD d1/d2) have nothing to act on here:
a single step has no CumSum over time and no chunked scan.

The other families of the registry (Mamba-2 hybrids with attention, FalconMamba, Jamba) go through
`HybridStep`, which runs HF's own layers and adds the attention layers' key/value caches as inputs and
outputs (`decode_module` picks the right one).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import InputError

_OWN_STEP = ("mamba", "mamba2")  # written out below; every other registry family runs HF's own layers


def _model_type(model: Any) -> str | None:
    return getattr(getattr(model, "config", None), "model_type", None)


def _kind(model: Any) -> str:
    kind = _model_type(model)
    if kind not in _OWN_STEP:
        raise InputError(f"decode step: need a Mamba or Mamba-2 causal LM, got model type {kind!r}")
    return kind


def _is_hybrid(model: Any) -> bool:
    from . import arch

    kind = _model_type(model)
    return kind in arch.ARCHITECTURES and kind not in _OWN_STEP


def decode_module(model: Any) -> torch.nn.Module:
    """The step module for `model`: `DecodeStep` for Mamba / Mamba-2, `HybridStep` for the other registry
    families; an InputError for anything else."""
    if _is_hybrid(model):
        return HybridStep(model)
    return DecodeStep(model)


def state_shapes(model: Any) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every state input, in graph order: conv_0, ssm_0, conv_1, ssm_1, ... (hybrids add
    key_i / value_i of their attention layers, at past length 0)."""
    if _is_hybrid(model):
        return HybridStep(model).state_shapes()
    kind, cfg = _kind(model), model.config
    out = []
    for i, layer in enumerate(model.backbone.layers):
        mx = layer.mixer
        k = int(cfg.conv_kernel)
        if kind == "mamba2":
            out += [(f"conv_{i}", (1, mx.conv_dim, k - 1)), (f"ssm_{i}", (1, mx.num_heads, mx.head_dim,
                                                                          mx.ssm_state_size))]
        else:
            out += [(f"conv_{i}", (1, mx.intermediate_size, k - 1)), (f"ssm_{i}", (1, mx.intermediate_size,
                                                                                 mx.ssm_state_size))]
    return out


def zero_states(model: Any) -> list[torch.Tensor]:
    return [torch.zeros(s, dtype=torch.float32) for _, s in state_shapes(model)]


class _MixerStep(torch.nn.Module):
    """One mixer's step. It registers the HF mixer's own submodules and parameters under the same names,
    so in the exported graph every activation carries the same site id as in the prefill graph
    (``backbone.layers.3.mixer:softplus#0``) and per-site tables find their sites."""

    def __init__(self, mixer: Any, kind: str) -> None:
        super().__init__()
        self.kind = kind
        for name, child in mixer.named_children():
            if name != "act":  # the activation wrapper is called as F.silu here
                self.add_module(name, child)
        for name, p in mixer.named_parameters(recurse=False):
            self.register_parameter(name, p)
        for attr in ("num_heads", "head_dim", "ssm_state_size", "n_groups", "intermediate_size", "conv_dim",
                     "time_step_rank", "time_step_limit"):
            if hasattr(mixer, attr):
                setattr(self, attr, getattr(mixer, attr))

    def _conv(self, x: torch.Tensor, conv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Depthwise causal conv for one new column x [1, c]: (silu(output) [1, c], new state [1, c, k-1])."""
        window = torch.cat([conv, x[:, :, None]], dim=-1)  # [1, c, k]
        y = (window * self.conv1d.weight[:, 0, :][None]).sum(-1)
        if self.conv1d.bias is not None:
            y = y + self.conv1d.bias
        return F.silu(y), window[:, :, 1:]

    def forward(self, h: torch.Tensor, conv: torch.Tensor, ssm: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (self._mamba2 if self.kind == "mamba2" else self._mamba)(h, conv, ssm)

    def _mamba2(self, h: torch.Tensor, conv: torch.Tensor, ssm: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        nh, hd, n, ng = self.num_heads, self.head_dim, self.ssm_state_size, self.n_groups
        gate, xbc, dt = self.in_proj(h).split([self.intermediate_size, self.conv_dim, nh], dim=-1)
        xbc, conv = self._conv(xbc, conv)
        x, b, c = xbc.split([self.intermediate_size, ng * n, ng * n], dim=-1)
        dt = F.softplus(dt + self.dt_bias)  # [1, nh]
        lo, hi = self.time_step_limit
        if lo > 0.0 or hi != float("inf"):  # HF clamps in the chunked path; (0, inf) is a no-op
            dt = dt.clamp(lo, hi)
        a = -torch.exp(self.A_log.float())
        x = x.view(1, nh, hd)
        rep = nh // ng  # head h reads group h // rep
        b = b.view(1, ng, 1, n).expand(1, ng, rep, n).reshape(1, nh, n)
        c = c.view(1, ng, 1, n).expand(1, ng, rep, n).reshape(1, nh, n)
        da = torch.exp(dt * a)  # [1, nh]
        ssm = ssm * da[:, :, None, None] + (dt[:, :, None] * x)[..., None] * b[:, :, None, :]
        y = (ssm * c[:, :, None, :]).sum(-1) + self.D[None, :, None] * x  # [1, nh, hd]
        y = self.norm(y.reshape(1, nh * hd), gate)
        return self.out_proj(y), conv, ssm

    def _mamba(self, h: torch.Tensor, conv: torch.Tensor, ssm: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, gate = self.in_proj(h).chunk(2, dim=-1)
        x, conv = self._conv(x, conv)
        dt_r, b, c = self.x_proj(x).split([self.time_step_rank, self.ssm_state_size, self.ssm_state_size], dim=-1)
        dt = F.softplus(self.dt_proj(dt_r))  # [1, d]
        a = -torch.exp(self.A_log.float())  # [d, n]
        ssm = ssm * torch.exp(dt[:, :, None] * a[None]) + (dt * x)[:, :, None] * b[:, None, :]
        y = (ssm * c[:, None, :]).sum(-1) + self.D[None] * x
        y = y * F.silu(gate)
        return self.out_proj(y), conv, ssm


class _Layer(torch.nn.Module):
    def __init__(self, layer: Any, kind: str) -> None:
        super().__init__()
        self.norm = layer.norm
        self.mixer = _MixerStep(layer.mixer, kind)


class DecodeStep(torch.nn.Module):
    """``(input_ids [1, 1], conv_0, ssm_0, ...) -> (logits [1, vocab], conv_0', ssm_0', ...)``.

    Module paths mirror the HF model's (``backbone.layers.i.mixer``) so site ids match the prefill graph.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        kind = _kind(model)
        bb = model.backbone
        self.backbone = torch.nn.Module()
        self.backbone.embeddings = bb.embeddings
        self.backbone.layers = torch.nn.ModuleList(_Layer(layer, kind) for layer in bb.layers)
        self.backbone.norm_f = bb.norm_f
        self.lm_head = model.lm_head

    def forward(self, input_ids: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        bb = self.backbone
        h = bb.embeddings(input_ids)[:, 0].float()  # [1, hidden]
        new: list[torch.Tensor] = []
        for i, layer in enumerate(bb.layers):
            out, conv, ssm = layer.mixer(layer.norm(h), states[2 * i], states[2 * i + 1])
            h = h + out
            new += [conv, ssm]
        logits = self.lm_head(bb.norm_f(h))
        return (logits, *new)


def step_logits(model: Any, ids: list[int]) -> torch.Tensor:
    """Next-token logits [vocab] after feeding `ids` one at a time through `DecodeStep` from zero state."""
    step = decode_module(model).eval()
    states = zero_states(model)
    with torch.inference_mode():
        for t in ids:
            logits, *states = step(torch.tensor([[t]]), *states)
    return logits[0]


def export_decode_onnx(model: Any, out: str | os.PathLike | None = None, opset: int = 18) -> Any:
    """Export the decode step to ONNX (inputs ``input_ids``, conv_i, ssm_i; outputs ``logits``, conv_i_out,
    ssm_i_out; hybrids also key_i / value_i with a dynamic past length); returns the onnx.ModelProto and
    writes it to `out` if given. MoE experts are exported in the registry entry's implementation."""
    from .export import check_fits_memory, experts_view

    check_fits_memory(model)
    with experts_view(model):
        step = decode_module(model).eval()
        shapes = step.state_shapes() if isinstance(step, HybridStep) else state_shapes(model)
        names = [n for n, _ in shapes]
        # attention caches are traced at a past length that is no special size (0 and 1 would be
        # specialised) and exported with that length dynamic
        past = torch.export.Dim("past", min=0, max=1 << 20)
        example = [torch.zeros(_at_past(s, n, 3)) for n, s in shapes]
        args = (torch.zeros((1, 1), dtype=torch.long), *example)
        dyn = [{2: past} if _is_kv(n) else None for n in names]
        axes = {n: {2: "past"} for n in names if _is_kv(n)}
        axes |= {f"{n}_out": {2: "past_1"} for n in names if _is_kv(n)}
        with tempfile.TemporaryDirectory() as tmp:
            proto = _export_step(step, args, Path(tmp) / "decode.onnx", opset, names,
                                 dyn if any(_is_kv(n) for n in names) else None, axes)
    from .export import fix_transpose_perms

    fix_transpose_perms(proto)
    if out is not None:
        from ..rewrite.onnx_rw import save_model

        save_model(proto, out)
    return proto


# OpenVINO 2026.4 CPU's snippets (JIT-fused subgraphs) give wrong logits on the Granite-4.0-H decode step
# once real attention caches reach 8 positions: max |diff| 0.12 at logits of scale 0.75 (tiny random
# model), while its state outputs and onnxruntime stay exact (~2e-7); random caches of the same shapes do
# not trigger it. With snippets disabled the step is exact again (~2e-7), so decode graphs compile so.
OPENVINO_DECODE_CONFIG = {"SNIPPETS_MODE": "DISABLE"}


def openvino_decode_config(proto: Any) -> dict[str, str]:
    """The CPU properties a decode-step graph needs: `OPENVINO_DECODE_CONFIG` when it carries attention
    caches (inputs key_i / value_i), which is where the snippets bug strikes; nothing for pure SSM steps,
    whose compiled graphs (and timings) stay as they were."""
    return dict(OPENVINO_DECODE_CONFIG) if any(_is_kv(i.name) for i in proto.graph.input) else {}


def compile_decode_openvino(path_or_model: Any, precision: str = "f32", threads: int | None = None) -> Any:
    """Compile a decode-step graph for OpenVINO CPU (explicit precision hint, `OPENVINO_DECODE_CONFIG`)."""
    from .export import compile_openvino

    return compile_openvino(path_or_model, precision, threads, extra=OPENVINO_DECODE_CONFIG)  # type: ignore[arg-type]


def _is_kv(name: str) -> bool:
    return name.startswith(("key_", "value_"))


def _at_past(shape: tuple[int, ...], name: str, past: int) -> tuple[int, ...]:
    return (*shape[:2], past, *shape[3:]) if _is_kv(name) else shape


def _export_step(step: torch.nn.Module, args: tuple, path: Path, opset: int, names: list[str],
                 dyn: list | None, axes: dict) -> Any:
    import onnx

    from .._quiet import legacy_onnx_export, quiet_torch_export

    kw = dict(opset_version=opset, input_names=["input_ids", *names],
              output_names=["logits", *(f"{n}_out" for n in names)])
    try:
        with contextlib.redirect_stdout(sys.stderr), torch.inference_mode(), quiet_torch_export():
            torch.onnx.export(step, args, str(path), dynamo=True, verbose=False,
                              dynamic_shapes=None if dyn is None else (None, tuple(dyn)), **kw)
    except Exception as exc:  # fall back to the TorchScript exporter
        print(f"actiba: dynamo export of the decode step failed ({type(exc).__name__}); using the legacy "
              "exporter", file=sys.stderr)
        legacy_onnx_export(step, args, str(path), dynamic_axes=axes or None, **kw)
    return onnx.load(str(path), load_external_data=True)


def random_feed(model_or_onnx: Any, vocab: int = 256, seed: int = 0, past: int = 16) -> dict[str, Any]:
    """Inputs for one timed decode step: a token and small random states (by input name); attention
    caches (the dynamic axis of key_i / value_i) hold `past` positions."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if hasattr(model_or_onnx, "graph"):
        shapes = [(i.name, tuple(d.dim_value if d.HasField("dim_value") else past
                                 for d in i.type.tensor_type.shape.dim))
                  for i in model_or_onnx.graph.input if i.name != "input_ids"]
    else:
        shapes = [(n, _at_past(s, n, past)) for n, s in state_shapes(model_or_onnx)]
    feed: dict[str, Any] = {"input_ids": rng.integers(0, min(vocab, 256), size=(1, 1), dtype=np.int64)}
    for name, shape in shapes:
        feed[name] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
    return feed


# --- the Mamba-2 hybrids and Mamba-1 relatives: HF's own layers around a functional cache -------------------
#
# Why HF's layers here and not a written-out step as above: the hybrids differ in everything around the
# scan (RoPE variants, Falcon-H1's muP multipliers, Zamba2's shared transformer with per-layer LoRA
# adapters, MoE routing), and all of them read their state through the same five cache calls
# (`get_conv_state`, `get_recurrent_state`, `update`, `is_recording_past`, `get_seq_length`). A cache
# that hands out *copies* of the graph inputs turns HF's in-place `copy_` state updates into writes to
# intermediates, which torch.export functionalises, so the updated copies become the graph outputs.


class _StepCache:
    """Duck-typed HF cache for one token. Every state a layer asks for is a fresh copy of the graph input;
    HF's single-token paths update that copy in place and the copy is then the new state. Attention keys
    and values are concatenated (the caches grow by one position per step)."""

    def __init__(self, conv: dict[int, torch.Tensor], ssm: dict[int, torch.Tensor],
                 kv: dict[int, tuple[torch.Tensor, torch.Tensor]], past: Any,
                 windows: dict[int, int] | None = None) -> None:
        self.conv, self.ssm, self.kv, self.past = conv, ssm, kv, past
        self.windows = windows or {}  # sliding-window layers: the query sees its last W positions only
        self.new_conv: dict[int, torch.Tensor] = {}
        self.new_ssm: dict[int, torch.Tensor] = {}
        self.new_kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.kv_shapes: dict[int, tuple[int, ...]] = {}  # filled when kv is empty (shape discovery)

    def get_conv_state(self, layer_idx: int, state_idx: int = 0) -> torch.Tensor:
        self.new_conv[layer_idx] = self.conv[layer_idx].clone()
        return self.new_conv[layer_idx]

    def get_recurrent_state(self, layer_idx: int, state_idx: int = 0) -> torch.Tensor:
        self.new_ssm[layer_idx] = self.ssm[layer_idx].clone()
        return self.new_ssm[layer_idx]

    def is_recording_past(self, layer_idx: int = 0) -> bool:
        return False

    def get_seq_length(self, layer_idx: int = 0) -> Any:
        return self.past

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if layer_idx in self.kv:
            past_k, past_v = self.kv[layer_idx]
            key, value = torch.cat([past_k, key], dim=-2), torch.cat([past_v, value], dim=-2)
        else:
            self.kv_shapes[layer_idx] = tuple(key.shape)
        self.new_kv[layer_idx] = (key, value)
        w = self.windows.get(layer_idx)
        if w is not None:  # HF's sliding mask keeps kv positions > q - W; with no mask, slice them instead
            return key[:, :, -w:], value[:, :, -w:]
        return key, value

    def _unexpected(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the decode step took HF's multi-token cache path (one token expected)")

    update_conv_state = update_recurrent_state = _unexpected


@contextlib.contextmanager
def _no_masks(hf_module: Any):
    """One query attending to every cached position needs no mask; HF's mask builders would inspect the
    cache object, so they are replaced by ``None`` while the step runs."""
    names = [n for n in vars(hf_module) if n.startswith("create_") and n.endswith("mask")]
    saved = {n: getattr(hf_module, n) for n in names}
    try:
        for n in names:
            setattr(hf_module, n, lambda *a, **k: None)
        yield
    finally:
        for n, f in saved.items():
            setattr(hf_module, n, f)


def sliding_windows(config: Any, layers: Any) -> dict[int, int]:
    """{attention layer: window W} for the layers HF runs with a sliding-window mask: those whose
    ``layer_types`` entry is ``sliding_attention`` (Gemma 2 / 3, Qwen2 with use_sliding_window), or every
    layer when the config has a ``sliding_window`` but no layer types (Mistral). Why the step needs it:
    it runs without masks, so it must cut the keys itself, or a sliding layer would see the whole past
    (the tiny Gemma 2 / 3 with W = 4 then generate other tokens than HF's cached generation)."""
    w = getattr(config, "sliding_window", None)
    if not w:
        return {}
    types = getattr(config, "layer_types", None)
    if types is None:
        return {i: int(w) for i in layers}
    return {i: int(w) for i in layers if i < len(types) and types[i] == "sliding_attention"}


class HybridStep(torch.nn.Module):
    """``(input_ids [1, 1], *states) -> (logits [1, vocab], *states')`` for every registry family but
    Mamba / Mamba-2, running the HF model's own layers (see `_StepCache`).

    States, in layer order: ``conv_i`` [1, channels, k - 1] and ``ssm_i`` (SSD [1, heads, head_dim,
    d_state], Mamba-1 [1, d_inner, d_state]) for SSM layer i; ``key_i`` / ``value_i`` [1, kv_heads,
    past, head_dim] for attention layer i (past grows by one per step; the position is read off it).
    The HF model's children are registered under their own names, so module paths (and site ids) are
    the prefill graph's (``model.layers.0.mamba:softplus#0``).
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        import importlib

        from . import arch

        entry = arch.get(_model_type(model))
        if entry.model_type in _OWN_STEP:
            raise InputError(f"{entry.causal_lm} uses DecodeStep")
        self.entry = entry
        object.__setattr__(self, "_hf", model)  # not a child: its children are registered instead
        for name, child in model.named_children():
            self.add_module(name, child)
        self._hf_module = importlib.import_module(entry.hf_module)
        self.mixer_layers: list[tuple[int, tuple[int, ...], tuple[int, ...]]] = []
        for _, mx in entry.mixers(model):
            w = mx.conv1d.weight
            if entry.ssm == arch.SSD:
                ssm = (1, mx.num_heads, mx.head_dim, mx.ssm_state_size)
            else:
                ssm = (1, mx.intermediate_size, mx.ssm_state_size)
            self.mixer_layers.append((int(mx.layer_idx), (1, w.shape[0], w.shape[-1] - 1), ssm))
        # attention layers and their key/value shapes: found by running one token with no cached keys
        probe = _StepCache(*self._mixer_states(), kv={}, past=0)
        with torch.inference_mode():
            self._run(torch.zeros((1, 1), dtype=torch.long), probe)
        self.kv_layers = {i: (s[0], s[1], 0, s[3]) for i, s in sorted(probe.kv_shapes.items())}
        self.windows = sliding_windows(model.config, self.kv_layers)

    def _mixer_states(self) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
        return ({i: torch.zeros(c) for i, c, _ in self.mixer_layers},
                {i: torch.zeros(s) for i, _, s in self.mixer_layers})

    def state_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """(name, shape) of every state input in graph order; attention caches at past length 0."""
        by_layer: dict[int, list[tuple[str, tuple[int, ...]]]] = {}
        for i, conv, ssm in self.mixer_layers:
            by_layer.setdefault(i, []).extend([(f"conv_{i}", conv), (f"ssm_{i}", ssm)])
        for i, kv in self.kv_layers.items():
            by_layer.setdefault(i, []).extend([(f"key_{i}", kv), (f"value_{i}", kv)])
        return [s for i in sorted(by_layer) for s in by_layer[i]]

    def _run(self, input_ids: torch.Tensor, cache: _StepCache) -> torch.Tensor:
        kw: dict[str, Any] = {}
        if cache.kv:  # positions exist only where attention needs them (RoPE)
            kw["position_ids"] = torch.arange(1).view(1, 1) + cache.past
        with _no_masks(self._hf_module):
            out = self._hf(input_ids=input_ids, cache=cache, use_cache=True, logits_to_keep=1, **kw)
        return out.logits[:, -1].float()

    def forward(self, input_ids: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        names = [n for n, _ in self.state_shapes()]
        given = dict(zip(names, states, strict=True))
        conv = {i: given[f"conv_{i}"] for i, _, _ in self.mixer_layers}
        ssm = {i: given[f"ssm_{i}"] for i, _, _ in self.mixer_layers}
        kv = {i: (given[f"key_{i}"], given[f"value_{i}"]) for i in self.kv_layers}
        past = next(iter(kv.values()))[0].shape[-2] if kv else 0
        cache = _StepCache(conv, ssm, kv, past, self.windows)
        logits = self._run(input_ids, cache)
        new = {**{f"conv_{i}": t for i, t in cache.new_conv.items()},
               **{f"ssm_{i}": t for i, t in cache.new_ssm.items()},
               **{f"key_{i}": k for i, (k, _) in cache.new_kv.items()},
               **{f"value_{i}": v for i, (_, v) in cache.new_kv.items()}}
        return (logits, *(new[n] for n in names))
