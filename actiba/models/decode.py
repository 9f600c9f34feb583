"""One-token decode step of a Hugging Face Mamba / Mamba-2 LM with the recurrent state as graph inputs/outputs.

Why our own step function instead of exporting HF's cached forward: HF keeps the state in a mutable cache
object that is updated in place (`copy_`), which exporters cannot turn into graph outputs. The step math is
short and uses only the mixer's own weights, so it is written out here (batch 1, one token) and checked
against HF's cached generation in the tests. Per layer the graph takes and returns

- ``conv_i``: the last ``conv_kernel - 1`` inputs of the depthwise convolution, [1, channels, k - 1];
- ``ssm_i``: the SSM state, Mamba [1, d_inner, d_state], Mamba-2 [1, heads, head_dim, d_state].

SiLU and Softplus stay as torch's own ops so the exported graph has the ordinary activation nodes that
the ActiBA rewrite replaces. The prefill rewrites (CumBA, ReduBA, SSD d1/d2) have nothing to act on here:
a single step has no CumSum over time and no chunked scan.
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


def _kind(model: Any) -> str:
    kind = getattr(getattr(model, "config", None), "model_type", None)
    if kind not in ("mamba", "mamba2"):
        raise InputError(f"decode step: need a Mamba or Mamba-2 causal LM, got model type {kind!r}")
    return kind


def state_shapes(model: Any) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every state input, in graph order: conv_0, ssm_0, conv_1, ssm_1, ..."""
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
    step = DecodeStep(model).eval()
    states = zero_states(model)
    with torch.inference_mode():
        for t in ids:
            logits, *states = step(torch.tensor([[t]]), *states)
    return logits[0]


def export_decode_onnx(model: Any, out: str | os.PathLike | None = None, opset: int = 18) -> Any:
    """Export the decode step to ONNX (inputs ``input_ids``, conv_i, ssm_i; outputs ``logits``, conv_i_out,
    ssm_i_out); returns the onnx.ModelProto and writes it to `out` if given."""
    import onnx

    from .._quiet import legacy_onnx_export, quiet_torch_export

    names = [n for n, _ in state_shapes(model)]
    args = (torch.zeros((1, 1), dtype=torch.long), *zero_states(model))
    step = DecodeStep(model).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "decode.onnx"
        kw = dict(opset_version=opset, input_names=["input_ids", *names],
                  output_names=["logits", *(f"{n}_out" for n in names)])
        try:
            with contextlib.redirect_stdout(sys.stderr), torch.inference_mode(), quiet_torch_export():
                torch.onnx.export(step, args, str(path), dynamo=True, verbose=False, **kw)
        except Exception as exc:  # fall back to the TorchScript exporter
            print(f"actiba: dynamo export of the decode step failed ({type(exc).__name__}); using the legacy "
                  "exporter", file=sys.stderr)
            legacy_onnx_export(step, args, str(path), **kw)
        proto = onnx.load(str(path), load_external_data=True)
    from .export import fix_transpose_perms

    fix_transpose_perms(proto)
    if out is not None:
        from ..rewrite.onnx_rw import save_model

        save_model(proto, out)
    return proto


def random_feed(model_or_onnx: Any, vocab: int = 256, seed: int = 0) -> dict[str, Any]:
    """Inputs for one timed decode step: a token and small random states (by input name)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if hasattr(model_or_onnx, "graph"):
        shapes = [(i.name, tuple(d.dim_value for d in i.type.tensor_type.shape.dim))
                  for i in model_or_onnx.graph.input if i.name != "input_ids"]
    else:
        shapes = state_shapes(model_or_onnx)
    feed: dict[str, Any] = {"input_ids": rng.integers(0, min(vocab, 256), size=(1, 1), dtype=np.int64)}
    for name, shape in shapes:
        feed[name] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
    return feed
