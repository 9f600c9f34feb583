"""The architecture registry: everything actiba knows about one Hugging Face model family, in one entry.

Code that needs to know where a model keeps its SSM mixers, what kind of scan they run, what the
config calls the chunk length, or how the logits are scaled asks this registry instead of testing
`model_type == "mamba2"` or a class name. Adding an architecture is one `Arch` entry here plus its
tests (`tests/test_arch.py` builds the `tiny` config of every entry with the installed transformers
and checks each field against the real modules).

Facts below were read off transformers 5.24's modeling files and checked on tiny random models:
the Mamba-2 hybrids (Bamba, GraniteMoeHybrid, FalconH1, Zamba2, NemotronH) carry copies of
Mamba-2's `segment_sum` / chunk scan, but call the chunk length `mamba_chunk_size` (Bamba, Granite,
Falcon-H1) or `chunk_size` (Mamba-2, Zamba2, Nemotron-H) and the group count `n_groups`,
`mamba_n_groups` or `mamba_ngroups`; Nemotron-H names *every* block `.mixer` (SSM, attention and MLP
alike), so mixer paths are matched together with the mixer's class. FalconMamba's scan applies
RMSNorms to B, C and dt that Mamba's does not (a scan that skips them is off by 37 % in the logits).

`missing` lists what actiba cannot yet do end to end for an entry; `require()` refuses such a model
with that reason instead of half-running it.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError

SELECTIVE_SCAN = "selective-scan"  # Mamba-1: per-token recurrence h_t = exp(dt A) h_{t-1} + dt B x
SSD = "ssd"                        # Mamba-2: state-space duality, chunked scan with segment sums


@dataclass(frozen=True)
class Arch:
    """One model family. Paths are `fnmatch` globs over `named_modules()` names."""

    model_type: str
    causal_lm: str                       # the *ForCausalLM class name
    ssm: str                             # SELECTIVE_SCAN or SSD
    mixer_class: str                     # class of the SSM mixer modules
    mixer_paths: tuple[str, ...]         # where those mixers sit
    hf_module: str                       # transformers module holding the mixer (and SSD's chunk scan)
    chunk_size_field: str | None = None  # config attribute of the SSD chunk length
    n_groups_field: str | None = None    # config attribute of the B/C group count
    scan_norms: tuple[str, ...] = ()     # mixer attributes a compact scan must apply (B/C/dt norms)
    attention_paths: tuple[str, ...] = ()
    mlp_paths: tuple[str, ...] = ()
    moe_paths: tuple[str, ...] = ()
    logit_scale: tuple[str, str] | None = None  # (config attribute, "mul" | "div") after the LM head
    experts_implementation: str | None = None   # the MoE experts form that exports (batched_mm)
    smallest_public: str | None = None          # hub id of the smallest public checkpoint
    tiny: dict[str, Any] = field(default_factory=dict)  # config kwargs of a tiny test model
    missing: tuple[str, ...] = ()        # what actiba cannot do end to end for this family yet

    @property
    def end_to_end(self) -> bool:
        return not self.missing

    def is_mixer(self, path: str, module: Any) -> bool:
        """Whether `module` at `path` is one of this family's SSM mixers (path *and* class)."""
        return (type(module).__name__ == self.mixer_class
                and any(fnmatch.fnmatchcase(path, g) for g in self.mixer_paths))

    def mixers(self, model: Any) -> list[tuple[str, Any]]:
        """(path, module) of every SSM mixer in `model`, in module order."""
        return [(p, m) for p, m in model.named_modules() if self.is_mixer(p, m)]

    def chunk_size(self, config: Any) -> int | None:
        return getattr(config, self.chunk_size_field) if self.chunk_size_field else None

    def n_groups(self, config: Any) -> int | None:
        return getattr(config, self.n_groups_field) if self.n_groups_field else None


_TINY_ATTN = dict(hidden_size=64, num_hidden_layers=2, vocab_size=300, num_attention_heads=4,
                  num_key_value_heads=2, intermediate_size=128)

ARCHITECTURES: dict[str, Arch] = {a.model_type: a for a in (
    Arch("mamba", "MambaForCausalLM", SELECTIVE_SCAN, "MambaMixer", ("backbone.layers.*.mixer",),
         "transformers.models.mamba.modeling_mamba", smallest_public="state-spaces/mamba-130m-hf",
         tiny=dict(hidden_size=64, num_hidden_layers=2, vocab_size=300, state_size=8)),
    Arch("mamba2", "Mamba2ForCausalLM", SSD, "Mamba2Mixer", ("backbone.layers.*.mixer",),
         "transformers.models.mamba2.modeling_mamba2", chunk_size_field="chunk_size", n_groups_field="n_groups",
         smallest_public="state-spaces/mamba2-130m",
         tiny=dict(hidden_size=64, num_hidden_layers=2, vocab_size=300, num_heads=8, head_dim=16, state_size=8,
                   n_groups=1, chunk_size=16)),
    Arch("falcon_mamba", "FalconMambaForCausalLM", SELECTIVE_SCAN, "FalconMambaMixer", ("backbone.layers.*.mixer",),
         "transformers.models.falcon_mamba.modeling_falcon_mamba",
         scan_norms=("b_layernorm", "c_layernorm", "dt_layernorm"), smallest_public="tiiuae/falcon-mamba-7b",
         tiny=dict(hidden_size=64, num_hidden_layers=2, vocab_size=300, state_size=8),
         ),
    Arch("jamba", "JambaForCausalLM", SELECTIVE_SCAN, "JambaMambaMixer", ("model.layers.*.mamba",),
         "transformers.models.jamba.modeling_jamba", scan_norms=("b_layernorm", "c_layernorm", "dt_layernorm"),
         attention_paths=("model.layers.*.self_attn",), mlp_paths=("model.layers.*.feed_forward",),
         moe_paths=("model.layers.*.feed_forward",), experts_implementation="batched_mm",
         smallest_public="ai21labs/Jamba-tiny-dev",
         tiny=dict(_TINY_ATTN, num_experts=2, num_experts_per_tok=1, attn_layer_period=2, attn_layer_offset=1,
                   expert_layer_period=2, expert_layer_offset=1, mamba_d_state=8)),
    Arch("bamba", "BambaForCausalLM", SSD, "BambaMixer", ("model.layers.*.mamba",),
         "transformers.models.bamba.modeling_bamba", chunk_size_field="mamba_chunk_size",
         n_groups_field="mamba_n_groups", attention_paths=("model.layers.*.self_attn",),
         mlp_paths=("model.layers.*.feed_forward",), smallest_public="ibm-ai-platform/Bamba-9B-v2",
         tiny=dict(_TINY_ATTN, mamba_n_heads=8, mamba_d_head=16, mamba_d_state=8, mamba_chunk_size=16,
                   attn_layer_indices=[1])),
    Arch("granitemoehybrid", "GraniteMoeHybridForCausalLM", SSD, "GraniteMoeHybridMambaLayer",
         ("model.layers.*.mamba",), "transformers.models.granitemoehybrid.modeling_granitemoehybrid",
         chunk_size_field="mamba_chunk_size", n_groups_field="mamba_n_groups",
         attention_paths=("model.layers.*.self_attn",), mlp_paths=("model.layers.*.shared_mlp",),
         moe_paths=("model.layers.*.block_sparse_moe",), logit_scale=("logits_scaling", "div"),
         experts_implementation="batched_mm", smallest_public="ibm-granite/granite-4.0-h-350m",
         tiny=dict(_TINY_ATTN, mamba_n_heads=8, mamba_d_head=16, mamba_d_state=8, mamba_chunk_size=16,
                   layer_types=["mamba", "attention"], num_local_experts=2, num_experts_per_tok=1,
                   shared_intermediate_size=64)),
    Arch("falcon_h1", "FalconH1ForCausalLM", SSD, "FalconH1Mixer", ("model.layers.*.mamba",),
         "transformers.models.falcon_h1.modeling_falcon_h1", chunk_size_field="mamba_chunk_size",
         n_groups_field="mamba_n_groups", attention_paths=("model.layers.*.self_attn",),
         mlp_paths=("model.layers.*.feed_forward",), logit_scale=("lm_head_multiplier", "mul"),
         smallest_public="tiiuae/Falcon-H1-0.5B-Base",
         tiny=dict(_TINY_ATTN, mamba_n_heads=8, mamba_d_head=16, mamba_d_state=8, mamba_chunk_size=16,
                   head_dim=16, mamba_d_ssm=128)),
    Arch("zamba2", "Zamba2ForCausalLM", SSD, "Zamba2MambaMixer",
         ("model.layers.*.mamba", "model.layers.*.mamba_decoder.mamba"), "transformers.models.zamba2.modeling_zamba2",
         chunk_size_field="chunk_size", n_groups_field="mamba_ngroups",
         attention_paths=("model.layers.*.shared_transformer.self_attn",),
         mlp_paths=("model.layers.*.shared_transformer.feed_forward",), smallest_public="Zyphra/Zamba2-1.2B",
         tiny=dict(hidden_size=64, num_hidden_layers=2, vocab_size=300, num_attention_heads=4, num_key_value_heads=4,
                   intermediate_size=128, mamba_d_state=8, mamba_headdim=16, n_mamba_heads=8, chunk_size=16,
                   layers_block_type=["mamba", "hybrid"], num_mem_blocks=1)),
    Arch("nemotron_h", "NemotronHForCausalLM", SSD, "NemotronHMamba2Mixer", ("model.layers.*.mixer",),
         "transformers.models.nemotron_h.modeling_nemotron_h", chunk_size_field="chunk_size", n_groups_field="n_groups",
         attention_paths=("model.layers.*.mixer",), mlp_paths=("model.layers.*.mixer",),
         smallest_public="nvidia/Nemotron-H-4B-Base-8K",
         tiny=dict(hidden_size=64, num_hidden_layers=3, vocab_size=300, num_attention_heads=4, num_key_value_heads=2,
                   intermediate_size=128, mamba_num_heads=8, mamba_head_dim=16, ssm_state_size=8, n_groups=2,
                   chunk_size=16, hybrid_override_pattern="M*-", head_dim=16)),
)}


def of(model: Any) -> Arch | None:
    """The entry of a model (or of its config), None for a family the registry does not know."""
    return ARCHITECTURES.get(getattr(getattr(model, "config", model), "model_type", None))


def mixer_scope(model: Any) -> tuple[str, ...]:
    """Module paths of every SSM mixer of `model`: the scope of torch-level ActiBA (`actiba_scope(include=)`),
    fine-tuning and the sweep's tables, and of the graph-level ActiBA that must approximate the same sites.

    Exact paths, not the entry's globs, because a path glob alone is wrong for Nemotron-H, whose attention
    and MLP blocks are `.mixer`s too: the registry matches path *and* class (`Arch.is_mixer`). Module paths
    hold no glob characters, so each path matches itself only (and, as a scope, its submodules).
    """
    entry = of(model)
    if entry is None:
        kind = getattr(getattr(model, "config", model), "model_type", None) or type(model).__name__
        raise InputError(f"{kind} is not an architecture actiba knows (no mixer scope); known: "
                         + ", ".join(ARCHITECTURES))
    paths = tuple(p for p, _ in entry.mixers(model))
    if not paths:
        raise InputError(f"{entry.causal_lm} has no {entry.mixer_class} at {', '.join(entry.mixer_paths)}")
    return paths


def is_selective_scan(model: Any) -> bool:
    """Whether `model` (or its config) is a registry family with Mamba-1 selective-scan mixers, whose HF
    forward loops per token and which actiba runs through its compact scan (`models.mamba_scan`)."""
    entry = of(model)
    return entry is not None and entry.ssm == SELECTIVE_SCAN


def get(model_type: str) -> Arch:
    """The entry for `model_type`; an InputError naming the known families otherwise."""
    try:
        return ARCHITECTURES[model_type]
    except KeyError:
        raise InputError(f"model type {model_type!r} is not a Mamba-family architecture actiba knows; known: "
                         + ", ".join(ARCHITECTURES)) from None


def supported() -> tuple[str, ...]:
    """Model types actiba runs end to end (load, export, rewrite, eval, pareto)."""
    return tuple(t for t, a in ARCHITECTURES.items() if a.end_to_end)


def require(config: Any, name: str) -> Arch:
    """The entry for a loaded config, refusing families actiba cannot run end to end, with the reason."""
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise InputError(f"model {name} has type {model_type!r}; actiba supports {', '.join(supported())}")
    arch = ARCHITECTURES[model_type]
    if arch.missing:
        raise InputError(f"model {name} is a {arch.causal_lm} ({arch.ssm} mixers), which actiba does not run end "
                         f"to end yet: it still lacks {'; '.join(arch.missing)}. Supported: {', '.join(supported())}")
    return arch
