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

Causal LMs without an SSM (Llama, Qwen2, Qwen3, Gemma, Gemma 2, Gemma 3 text, GPT-2, GPT-NeoX, Mistral,
Phi-3; the block after the Mamba families) have `ssm = NONE`: ActiBA replaces their MLP activation, read
from the config field in `act_fields` (``hidden_act`` = silu for Llama / Qwen / Mistral / Phi-3,
gelu_pytorch_tanh for Gemma, gelu (erf) for GPT-NeoX; ``hidden_activation`` = gelu_pytorch_tanh for
Gemma 2 / 3; ``activation_function`` = gelu_new for GPT-2) and mapped through the activation
registry's `hf_names`; the SSM rewrites are absent. `require()` refuses such a model whose activation
actiba cannot replace (a ReLU MLP), since nothing would be left to rewrite.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from .. import activations
from ..errors import InputError

SELECTIVE_SCAN = "selective-scan"  # Mamba-1: per-token recurrence h_t = exp(dt A) h_{t-1} + dt B x
SSD = "ssd"                        # Mamba-2: state-space duality, chunked scan with segment sums
NONE = "none"                      # a causal LM without SSM mixers (attention + MLP): ActiBA only


@dataclass(frozen=True)
class Arch:
    """One model family. Paths are `fnmatch` globs over `named_modules()` names."""

    model_type: str
    causal_lm: str                       # the *ForCausalLM class name
    ssm: str                             # SELECTIVE_SCAN, SSD or NONE
    mixer_class: str                     # class of the SSM mixer modules ("" for NONE)
    mixer_paths: tuple[str, ...]         # where those mixers sit (() for NONE)
    hf_module: str                       # transformers module of the family (the mixer, SSD's chunk scan)
    chunk_size_field: str | None = None  # config attribute of the SSD chunk length
    n_groups_field: str | None = None    # config attribute of the B/C group count
    scan_norms: tuple[str, ...] = ()     # mixer attributes a compact scan must apply (B/C/dt norms)
    attention_paths: tuple[str, ...] = ()
    mlp_paths: tuple[str, ...] = ()
    moe_paths: tuple[str, ...] = ()
    logit_scale: tuple[str, str] | None = None  # (config attribute, "mul" | "div") after the LM head
    logit_softcap: str | None = None            # config attribute of the cap of cap·tanh(logits / cap)
    experts_implementation: str | None = None   # the MoE experts form that exports (batched_mm)
    smallest_public: str | None = None          # hub id of the smallest public checkpoint
    tiny: dict[str, Any] = field(default_factory=dict)  # config kwargs of a tiny test model
    missing: tuple[str, ...] = ()        # what actiba cannot do end to end for this family yet
    act_fields: tuple[str, ...] = ()     # config attributes naming the MLP activation (first one set wins)

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

    def mlp_activation(self, config: Any) -> str | None:
        """What the config calls its MLP activation (``gelu_new``), None if the entry reads none."""
        return next((str(v) for f in self.act_fields if (v := getattr(config, f, None))), None)

    def mlp_function(self, config: Any) -> str | None:
        """The activation-registry function of the MLP activation (gelu_new -> gelu-tanh), None if actiba
        has no entry for it or the family reads none."""
        name = self.mlp_activation(config)
        return activations.from_hf(name) if name is not None else None

    def activation_scope(self) -> tuple[str, ...]:
        """Module globs whose activations torch-level ActiBA replaces: the SSM mixers, or the MLPs of a
        causal LM without SSM (the same sites the graph rewrite finds there)."""
        return self.mlp_paths if self.ssm == NONE else self.mixer_paths


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


# --- causal LMs without an SSM: attention + MLP, ActiBA on the MLP activation --------------------------
# Their attention exports with the dynamo exporter in both HF implementations (torch 2.13, fixed length):
# sdpa (HF's default) lowers to MatMul / Softmax plus a NaN guard per layer (IsNaN + Where), eager to the
# same without it. Export keeps what the config says: on OpenVINO CPU f32 the two ran within 2.2 % ±1 %
# (eager 64.4 ms, sdpa 65.6 ms; Llama of hidden 512, 4 layers, 256 tokens, 1 thread, load ~2.5), and
# ActiBA touches neither. No CumSum appears in their exports (positions come from an arange), so CumBA
# has no site; the sweep has ActiBA rows only.
_TINY_LM = dict(_TINY_ATTN, bos_token_id=1, eos_token_id=2, pad_token_id=0)
_DECODER = dict(attention_paths=("model.layers.*.self_attn",), mlp_paths=("model.layers.*.mlp",),
                act_fields=("hidden_act",))

ARCHITECTURES.update({a.model_type: a for a in (
    Arch("llama", "LlamaForCausalLM", NONE, "", (), "transformers.models.llama.modeling_llama", **_DECODER,
         smallest_public="meta-llama/Llama-3.2-1B", tiny=_TINY_LM),
    Arch("qwen2", "Qwen2ForCausalLM", NONE, "", (), "transformers.models.qwen2.modeling_qwen2", **_DECODER,
         smallest_public="Qwen/Qwen2.5-0.5B", tiny=_TINY_LM),
    Arch("qwen3", "Qwen3ForCausalLM", NONE, "", (), "transformers.models.qwen3.modeling_qwen3", **_DECODER,
         smallest_public="Qwen/Qwen3-0.6B", tiny=dict(_TINY_LM, head_dim=16)),
    Arch("gemma", "GemmaForCausalLM", NONE, "", (), "transformers.models.gemma.modeling_gemma", **_DECODER,
         smallest_public="google/gemma-2b", tiny=dict(_TINY_LM, head_dim=16)),
    # Gemma 2 / Gemma 3 (text): the MLP activation is `hidden_activation` (no hidden_act), the logits are
    # soft-capped (cap·tanh(z / cap), `final_logit_softcapping`; Gemma 2's attention scores too), and
    # sliding-window layers alternate with global ones (`layer_types`). The tiny configs pick caps and a
    # window that matter on random weights at the tests' 16 tokens (measured on logits of scale ~0.43):
    # removing the logit cap 0.5 moves them by ~0.2, Gemma 2's attention cap 0.02 by ~0.012 (random
    # attention scores are ~0.01, so HF's default 50 would be a no-op), widening the window of 4 by ~0.5.
    Arch("gemma2", "Gemma2ForCausalLM", NONE, "", (), "transformers.models.gemma2.modeling_gemma2",
         attention_paths=("model.layers.*.self_attn",), mlp_paths=("model.layers.*.mlp",),
         act_fields=("hidden_activation",), logit_softcap="final_logit_softcapping",
         smallest_public="google/gemma-2-2b",
         tiny=dict(_TINY_LM, head_dim=16, query_pre_attn_scalar=16, sliding_window=4,
                   final_logit_softcapping=0.5, attn_logit_softcapping=0.02)),
    Arch("gemma3_text", "Gemma3ForCausalLM", NONE, "", (), "transformers.models.gemma3.modeling_gemma3",
         attention_paths=("model.layers.*.self_attn",), mlp_paths=("model.layers.*.mlp",),
         act_fields=("hidden_activation",), logit_softcap="final_logit_softcapping",
         smallest_public="google/gemma-3-270m",
         tiny=dict(_TINY_LM, head_dim=16, query_pre_attn_scalar=16, sliding_window=4,
                   layer_types=["sliding_attention", "full_attention"], final_logit_softcapping=0.5)),
    Arch("gpt2", "GPT2LMHeadModel", NONE, "", (), "transformers.models.gpt2.modeling_gpt2",
         attention_paths=("transformer.h.*.attn",), mlp_paths=("transformer.h.*.mlp",),
         act_fields=("activation_function",), smallest_public="openai-community/gpt2",
         tiny=dict(n_embd=64, n_layer=2, n_head=4, vocab_size=300, n_positions=256, bos_token_id=1,
                   eos_token_id=2)),
    Arch("gpt_neox", "GPTNeoXForCausalLM", NONE, "", (), "transformers.models.gpt_neox.modeling_gpt_neox",
         attention_paths=("gpt_neox.layers.*.attention",), mlp_paths=("gpt_neox.layers.*.mlp",),
         act_fields=("hidden_act",), smallest_public="EleutherAI/pythia-70m",  # erf-GELU
         tiny={k: v for k, v in _TINY_LM.items() if k != "num_key_value_heads"}),
    Arch("mistral", "MistralForCausalLM", NONE, "", (), "transformers.models.mistral.modeling_mistral", **_DECODER,
         smallest_public="mistralai/Mistral-7B-v0.1", tiny=_TINY_LM),
    Arch("phi3", "Phi3ForCausalLM", NONE, "", (), "transformers.models.phi3.modeling_phi3", **_DECODER,
         smallest_public="microsoft/Phi-3-mini-4k-instruct", tiny=_TINY_LM),
)})


def of(model: Any) -> Arch | None:
    """The entry of a model (or of its config), None for a family the registry does not know."""
    return ARCHITECTURES.get(getattr(getattr(model, "config", model), "model_type", None))


def mixer_scope(model: Any) -> tuple[str, ...]:
    """Module paths of every SSM mixer of `model` (of every MLP block for a causal LM without SSM): the
    scope of torch-level ActiBA (`actiba_scope(include=)`),
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
    if entry.ssm == NONE:  # a causal LM without SSM: its tables replace the MLP activations
        paths = tuple(p for p, _ in model.named_modules()
                      if any(fnmatch.fnmatchcase(p, g) for g in entry.activation_scope()))
        if not paths:
            raise InputError(f"{entry.causal_lm} has no MLP at {', '.join(entry.activation_scope())}")
        return paths
    paths = tuple(p for p, _ in entry.mixers(model))
    if not paths:
        raise InputError(f"{entry.causal_lm} has no {entry.mixer_class} at {', '.join(entry.mixer_paths)}")
    return paths


def is_selective_scan(model: Any) -> bool:
    """Whether `model` (or its config) is a registry family with Mamba-1 selective-scan mixers, whose HF
    forward loops per token and which actiba runs through its compact scan (`models.mamba_scan`)."""
    entry = of(model)
    return entry is not None and entry.ssm == SELECTIVE_SCAN


def mlp_functions(model: Any) -> tuple[str, ...]:
    """The functions ActiBA replaces in a causal LM without SSM (``("gelu-tanh",)`` for GPT-2), from its
    config; () for the SSM families (their sweeps name silu and softplus) and unknown models."""
    entry = of(model)
    if entry is None or entry.ssm != NONE:
        return ()
    fn = entry.mlp_function(getattr(model, "config", model))
    return (fn,) if fn is not None else ()


def get(model_type: str) -> Arch:
    """The entry for `model_type`; an InputError naming the known families otherwise."""
    try:
        return ARCHITECTURES[model_type]
    except KeyError:
        raise InputError(f"model type {model_type!r} is not an architecture actiba knows; known: "
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
    if arch.ssm == NONE and arch.mlp_function(config) is None:
        raise InputError(f"model {name} is a {arch.causal_lm} without SSM whose MLP activation is "
                         f"{arch.act_fields[0]}={arch.mlp_activation(config)!r}: actiba can replace the MLP "
                         f"activations {', '.join(activations.HF_NAMES)} and has no other rewrite for a model "
                         "without SSM, so nothing would change")
    return arch
