"""Turn (model, configuration, sequence length) into the OpenVINO model that is measured.

Why through ONNX with a fixed length: CumBA / ReduBA need static lengths to build their constants, and
exporting is the slow step (~10-40 s), so one export per (model, SSD variant, length) is cached and every
configuration is a cheap graph rewrite (`actiba.rewrite.pipeline.rewrite_model`) of it. The logits mode ("all":
[1, L, V] for scoring; "last": [1, 1, V], a generator's prefill) changes the graph, so it is part of the
in-memory key; the "last" graph is derived from the "all" export by slicing the LM head's input
(`models.export.last_logits_graph`), so both modes share one export and the same site ids.

Also here: `load_model`, which adds ``random:<arch>`` names (random-weight models with the layer sizes
of Mamba-130M / Mamba-2-130M, or tiny ones for tests) to `actiba.models.load`. Their accuracy means
nothing; they exist for latency and for tests, and every report labels them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..models.arch import is_selective_scan, mixer_scope
from .configs import Config
from .tables import tables_for

# random-weight architectures (sizes of the public checkpoints' configs; no weights are downloaded)
RANDOM_ARCHS: dict[str, tuple[str, dict[str, Any]]] = {
    "mamba-130m": ("mamba", dict(vocab_size=50280, hidden_size=768, num_hidden_layers=24, state_size=16,
                                 expand=2, conv_kernel=4)),
    "mamba2-130m": ("mamba2", dict(vocab_size=50288, hidden_size=768, num_hidden_layers=24, state_size=128,
                                   expand=2, conv_kernel=4, head_dim=64, num_heads=24, n_groups=1,
                                   chunk_size=256)),
    "tiny-mamba": ("mamba", dict(vocab_size=258, hidden_size=32, num_hidden_layers=1, state_size=8, expand=2)),
    "tiny-mamba2": ("mamba2", dict(vocab_size=258, hidden_size=32, num_hidden_layers=1, state_size=16, expand=2,
                                   head_dim=16, num_heads=4, n_groups=1, chunk_size=16)),
}


@dataclass
class LoadedModel:
    """A torch model plus what the reports need to say about it."""

    name: str
    model: Any
    model_type: str
    random_weights: bool
    vocab_size: int
    onnx_cache: dict[tuple, Any] = field(default_factory=dict)


def load_model(name: str) -> LoadedModel:
    """Load `name`: ``random:<arch>`` (see RANDOM_ARCHS), ``embedded:*``, a folder or a cached hub id."""
    if name.startswith("random:"):
        arch = name.split(":", 1)[1]
        if arch not in RANDOM_ARCHS:
            raise InputError(f"unknown random architecture {arch!r}; known: {', '.join(RANDOM_ARCHS)}")
        import torch
        from transformers import Mamba2Config, Mamba2ForCausalLM, MambaConfig, MambaForCausalLM

        kind, kw = RANDOM_ARCHS[arch]
        torch.manual_seed(0)
        if kind == "mamba2":
            model = Mamba2ForCausalLM(Mamba2Config(use_cache=False, **kw))
        else:
            model = MambaForCausalLM(MambaConfig(use_cache=False, **kw))
        return LoadedModel(name, model.eval(), kind, True, kw["vocab_size"])
    from ..models import load

    model = load(name)
    return LoadedModel(name, model, model.config.model_type, False, int(model.config.vocab_size))


def torch_level_refusals(config: Config, precision: str) -> dict[str, str]:
    """{rewrite: why} for the config's torch-level SSD rewrites that `precision` refuses (d1 at bf16/f16):
    the export leaves them out, and the row says so instead of carrying the name of a rewrite it lacks."""
    from ..rewrite import spec
    from ..rewrite.rules import RULES

    wanted = [n for n, on in zip(("ssd-d1", "ssd-d2"), config.ssd, strict=True) if on]
    return {n: why for n in wanted if (why := spec.check_precision(RULES.get(n).spec, precision)) is not None}


def _effective_ssd(config: Config, precision: str) -> tuple[bool, bool]:
    """(d1, d2) as the export applies them at `precision` (a refused rewrite is off)."""
    refused = torch_level_refusals(config, precision)
    d1, d2 = config.ssd
    return d1 and "ssd-d1" not in refused, d2 and "ssd-d2" not in refused


def onnx_cache_name(lm: LoadedModel, config: Config, seq_len: int, precision: str = "f32") -> str:
    """File name of the cached (all-positions) export: model, SSD variant as applied at `precision` (a
    bf16 run's d1+d2 export is d2 only, since d1 is refused there: naming the file by the request let a
    bf16 run load the f32 run's d1 graph), chunk, length, Mamba v1 scan form."""
    d1, d2 = _effective_ssd(config, precision)
    tag = hashlib.sha256(lm.name.encode()).hexdigest()[:8]
    scan = "-stepped32" if is_selective_scan(lm.model) else ""  # the export's Mamba v1 scan form
    chunk = f"-Q{config.ssd_chunk}" if config.ssd_chunk else ""
    return f"{tag}-d1{int(d1)}-d2{int(d2)}{chunk}-L{seq_len}{scan}.onnx"


def _onnx_base(lm: LoadedModel, config: Config, seq_len: int, precision: str, cache_dir: Path | None,
               logits: str = "all") -> Any:
    """The exported ONNX graph of `lm` with the config's SSD variant, at [1, seq_len] (memoized + on disk);
    output logits [1, seq_len, V] (`logits` "all") or [1, 1, V] ("last")."""
    import onnx

    from ..models.export import check_logits_mode

    check_logits_mode(logits)
    d1, d2 = config.ssd
    chunk = config.ssd_chunk
    if d1 or d2 or chunk:
        from ..models import arch

        kind = arch.get(lm.model_type).ssm
        if kind != arch.SSD:
            raise InputError(f"SSD rewrites d1/d2 and ssd_chunk apply to Mamba-2 only (SSD mixers), not "
                             f"{lm.model_type} ({kind} mixers)")
    d1, d2 = _effective_ssd(config, precision)
    key = (d1, d2, chunk, seq_len, logits)
    if key in lm.onnx_cache:
        return lm.onnx_cache[key]
    if logits == "last":  # the all-positions export with the LM head's input sliced: no second export
        from ..models.export import last_logits_graph

        lm.onnx_cache[key] = last_logits_graph(_onnx_base(lm, config, seq_len, precision, cache_dir, "all"))
        return lm.onnx_cache[key]
    path = None
    if cache_dir is not None:
        path = cache_dir / "onnx" / onnx_cache_name(lm, config, seq_len, precision)
        if path.is_file():
            lm.onnx_cache[key] = onnx.load(str(path))
            return lm.onnx_cache[key]
        path.parent.mkdir(parents=True, exist_ok=True)
    import shutil
    import tempfile

    from ..models.export import export_onnx
    from ..rewrite.torch_ssd import ssd_rewrites

    # exported to a scratch folder, then put into the cache atomically: a worker that dies mid-export, or two of
    # a cluster's workers exporting the same graph at once, never leave a half-written file the next reader loads
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model.onnx"
        if d1 or d2 or chunk:
            with ssd_rewrites(lm.model, d1=d1, d2=d2, precision=precision, chunk=chunk) as sites:
                if (d1 or d2) and not any(s.ok for s in sites):
                    why = "; ".join(sorted({s.reason for s in sites})) or "no SSD mixer"
                    raise InputError(f"SSD rewrite not applicable: {why}")
                export_onnx(lm.model, out, seq_len=seq_len, verbose=False, check_seq_len=seq_len, logits=logits)
        else:
            export_onnx(lm.model, out, seq_len=seq_len, verbose=False, check_seq_len=seq_len, logits=logits)
        lm.onnx_cache[key] = onnx.load(str(out))
        if path is not None:
            from .._atomic import atomic_path

            with atomic_path(path, suffix=".onnx") as tmp_path:
                shutil.copyfile(out, tmp_path)
    return lm.onnx_cache[key]


def rewritten_onnx(lm: LoadedModel, config: Config, seq_len: int, precision: str = "f32",
                   cache_dir: Path | None = None, logits: str = "all") -> tuple[Any, dict[str, int]]:
    """(ONNX model for `config` at [1, seq_len] with `logits` "all" or "last", {rewrite: sites rewritten}).

    The SSD variant is part of the export (torch level, `_onnx_base`); the graph rules run through the
    one rewrite pipeline (`rewrite.pipeline.rewrite_model`) without its verification — the sweep measures
    accuracy itself — and a requested rewrite that rewrites no site is an InputError (nothing to measure).
    Tables apply inside the model's SSM mixers only (`models.mixer_scope`), the sites the torch scope
    approximates: a hybrid's MLP / expert SiLUs stay exact.
    """
    from ..rewrite.pipeline import Request, rewrite_model

    base = _onnx_base(lm, config, seq_len, precision, cache_dir, logits)
    from ..rewrite.names import TORCH_LEVEL

    rewrites = [r for r in config.rewrites if r not in TORCH_LEVEL] + (["actiba"] if config.activations else [])
    if not rewrites:
        return base, {}
    tables = tables_for(config, lm) if config.activations else None  # per-site keys pick by site id
    scope = mixer_scope(lm.model) if config.activations else ()
    request = Request(rewrites=rewrites, tables=tables, site_globs=dict(config.sites or {}),
                      cumba_min_n=config.cumba_min_n or 0, precision=precision, verify=False, allow_noop=True,
                      act_scope=scope)
    result = rewrite_model(base, request)
    if result.noop:
        raise InputError(f"{result.noop[0]}: no site was rewritten in {lm.name} (nothing to measure)")
    return result.model, result.counts()


def to_openvino(onnx_model: Any) -> Any:
    """An in-memory ONNX model as an `openvino.Model`, read by OpenVINO's ONNX frontend.

    Why `Core.read_model` and not `convert_model`: it is what the runtime does with an ONNX file, and it
    skips convert_model's offline passes, which cost ~2.5 s per graph on the embedded Mamba (tens of
    graphs per sweep) while the compiled graphs ran equally fast (paired ratio 0.998-1.05 on four
    configurations; the compiler applies its own transformations either way).
    """
    import io

    import openvino as ov

    return ov.Core().read_model(io.BytesIO(onnx_model.SerializeToString()))
