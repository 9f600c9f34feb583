"""lm-eval integration: the ``actiba`` model (HFLM with activation tables applied) and offline tasks.

Why a subclass of HFLM and not a new LM: lm-eval's windowing, batching and metrics stay exactly
lm-eval's; only the forward call runs inside `tables_applied`, so `bits_per_byte` of a table
configuration is comparable with every other lm-eval number.

    python -m actiba.lm_eval --model actiba --model_args pretrained=embedded:mamba2,act_silu=16,act_softplus=relu \\
            --tasks actiba_heldout_small
    python -m actiba.lm_eval --model actiba --model_args pretrained=my/gpt2-folder,act_gelu_tanh=8 --tasks ...

Model args: `pretrained` (an actiba model name: embedded, a folder or a cached hub id), `max_length`
(window length), and one ``act_<function>`` per function of the evaluator's sweeps (`MODEL_ARGS`, derived
from the activation registry with '-' written '_': act_silu, act_softplus, act_gelu, act_gelu_tanh; the
registry's aliases such as act_swish work too) whose value is a segment count, "relu", a table file or a
table-set file. An unknown ``act_*`` key is one line naming the known ones. A table for a function the
model does not compute inside its table scope (act_softplus on Llama, act_silu on GPT-2) is refused,
not ignored: the run would print the exact model's number under a table configuration's name, the same
reason the rewrite pipeline refuses a rewrite that rewrote nothing.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from .._atomic import write_text
from ..activations import SWEEP_NAMES, canonical
from ..errors import InputError
from .perplexity import tables_applied

# package data, so an installed wheel has the tasks too (eval/tasks/ holds copies for `lm_eval --include_path`)
TASK_DIR = resources.files("actiba") / "tasks"
PLACEHOLDER = "ACTIBA_HELDOUT_JSONL"


def _arg_name(function: str) -> str:
    return "act_" + function.replace("-", "_")


# model arg -> function, one per sweepable function of the activation registry (act_gelu_tanh -> gelu-tanh)
MODEL_ARGS: dict[str, str] = {_arg_name(f): f for f in SWEEP_NAMES}


def split_act_args(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pop every ``act_*`` key out of `kwargs` into {function: value}; an unknown one is an InputError.

    Aliases of the registry are accepted (``act_swish`` = act_silu, ``act_gelu_erf`` = act_gelu); a
    function named twice (act_silu and act_swish) is an error rather than a silent choice."""
    out: dict[str, Any] = {}
    for key in [k for k in kwargs if k.startswith("act_")]:
        value = kwargs.pop(key)
        fn = canonical(key[len("act_"):].replace("_", "-"))
        if fn not in SWEEP_NAMES:
            raise InputError(f"unknown model arg {key!r}; known: {', '.join(MODEL_ARGS)}")
        if fn in out:
            raise InputError(f"model arg {key!r} names {fn}, which another act_ arg already set")
        out[fn] = value
    return out


def parse_tables(acts: dict[str, Any] | None = None, model: Any = None, name: str = "model",
                 **act_args: Any) -> dict[str, Any]:
    """Tables from model-arg values (segments, "relu", a table file or a table-set file).

    `acts` is {function: value}; ``act_<function>=value`` keywords (act_silu=8, act_gelu_tanh=4) are
    the same thing as lm-eval passes them. `model` is needed only for sets (checked against the model
    they were calibrated on)."""
    from .build import LoadedModel
    from .configs import from_dict
    from .tables import tables_for

    wanted = dict(acts or {})
    for fn, v in split_act_args(dict(act_args)).items():
        if fn in wanted:
            raise InputError(f"model arg {_arg_name(fn)!r} given twice")
        wanted[fn] = v
    spec = {}
    for fn, v in wanted.items():
        if v in (None, "", "exact"):
            continue
        s = str(v)
        spec[fn] = {"segments": int(s)} if s.isdigit() else {"table": s}
    lm = None if model is None else LoadedModel(name, model, model.config.model_type, False,
                                                 int(model.config.vocab_size))
    return tables_for(from_dict({"name": "lm-eval", "activations": spec}, where="model args"), lm)


def _table_function(key: str, table: Any) -> str:
    """The function a `tables_for` entry approximates: its key, or the function of a site-id / glob key
    (``model.layers.0.mlp:gelu-tanh#0``); not the table's own `function`, which is "custom" for relu."""
    from ..rewrite.spec import canonical_function

    return canonical_function(key.rsplit(":", 1)[-1].split("#")[0] if ":" in key else key)


def scope_functions(model: Any, ids: Any) -> list[str]:
    """The activation functions `model` computes inside its table scope (`models.mixer_scope`) on `ids`."""
    import torch

    from ..models import mixer_scope
    from ..rewrite.site_ids import in_scope
    from ..rewrite.torch_rw import observe_activations

    scope = mixer_scope(model)
    seen: set[str] = set()

    def on_call(site_id: str, function: str, beta: Any, x: Any) -> None:
        if in_scope(site_id, scope):
            seen.add(function)

    with torch.inference_mode(), observe_activations(model, on_call):
        model(input_ids=ids, use_cache=False)
    return sorted(seen)


def check_tables_apply(model: Any, tables: dict[str, Any], name: str = "model") -> None:
    """InputError unless every function `tables` names has at least one call in `model`'s table scope
    that the tables replace (a dry run of 8 tokens through the scope `_model_call` uses).

    Why a dry run and not the registry's function list: it sees exactly what the scored forward will
    (per-site sets, a beta that does not match, a Mamba-1 model's scan), and it costs one short forward."""
    import torch

    from ..models import mixer_scope
    from ..rewrite.torch_rw import find_actiba_sites

    ids = torch.zeros((1, 8), dtype=torch.long)
    sites = find_actiba_sites(model, tables, {"input_ids": ids, "use_cache": False}, include=mixer_scope(model))
    replaced = {s.op for s in sites if s.ok}
    missing = sorted({_table_function(k, t) for k, t in tables.items()} - replaced)
    if missing:
        have = [f for f in scope_functions(model, ids) if f in SWEEP_NAMES]
        skipped = sorted({s.reason for s in sites if not s.ok and s.op in missing})
        why = f" ({'; '.join(skipped)})" if skipped else ""
        raise InputError(f"{name} ({type(model).__name__}) has no {', '.join(missing)} call that a table "
                         f"replaces inside its table scope{why}, so the run would score the exact model; "
                         f"its functions there: {', '.join(_arg_name(f) for f in have) or 'none'}")


@register_model("actiba")
class ActibaLM(HFLM):
    """HFLM over an actiba-loaded model whose table-scope activations (SSM mixers, or a causal LM's MLPs)
    run as tables."""

    def __init__(self, pretrained: Any = "embedded:mamba2", tables: dict[str, Any] | None = None,
                 max_length: int = 1024, tokenizer: Any = None, **kwargs: Any) -> None:
        """`tables` (function / site id -> Table) or the ``act_<function>`` model args (`MODEL_ARGS`);
        every other keyword goes to HFLM."""
        from ..models import load
        from ..models import tokenizer as load_tokenizer

        acts = split_act_args(kwargs)  # before HFLM sees them (it would reject or ignore them)
        if tables and acts:
            raise InputError("give tables= or act_* model args, not both")
        model = load(pretrained) if isinstance(pretrained, str) else pretrained
        if tokenizer is None:
            if not isinstance(pretrained, str):
                raise InputError("pass tokenizer= with a model instance")
            tokenizer = load_tokenizer(pretrained)
        kwargs.setdefault("batch_size", 1)
        device = kwargs.pop("device", None)  # lm-eval's CLI always passes one (default cuda:0)
        if device not in (None, "cpu"):
            import logging

            logging.getLogger("lm-eval").warning("actiba model: runs on the CPU, ignoring device=%s", device)
        super().__init__(pretrained=model, tokenizer=tokenizer, max_length=int(max_length), device="cpu", **kwargs)
        name = pretrained if isinstance(pretrained, str) else "model"
        self.actiba_tables = dict(tables or {}) or parse_tables(acts, model, name)
        if self.actiba_tables:
            check_tables_apply(model, self.actiba_tables, name)

    def _model_call(self, inps: Any, attn_mask: Any = None, labels: Any = None) -> Any:
        with tables_applied(self.model, self.actiba_tables):
            return super()._model_call(inps, attn_mask, labels)


def known_tasks() -> list[str]:
    return sorted(p.name[:-len(".yaml")] for p in TASK_DIR.iterdir() if p.name.endswith(".yaml"))


def check_task(name: str) -> str:
    if name not in known_tasks():
        raise InputError(f"unknown task {name!r}; offline tasks in {TASK_DIR}: {', '.join(known_tasks())}")
    return name


def offline() -> None:
    """Never download a dataset: HF datasets and the hub read only their caches from here on.

    Why patch the module constants too: `datasets` and `huggingface_hub` read the environment at import
    (lm-eval has imported both by now), and read these constants at call time."""
    import os

    os.environ["HF_DATASETS_OFFLINE"] = os.environ["HF_HUB_OFFLINE"] = "1"
    import datasets.config
    import huggingface_hub.constants

    datasets.config.HF_DATASETS_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
    huggingface_hub.constants.HF_HUB_OFFLINE = True


def find_task(name: str) -> Any:
    """None for an offline actiba task; for a task lm-eval knows whose dataset is in the user's HF datasets
    cache, the lm-eval `TaskManager` that loaded it (the dataset read offline, never downloaded).

    Why load it here: a dataset that is not cached must be one line before minutes of timing. Indexing
    lm-eval's ~14,700 task configurations takes ~18 s on 2 busy cores, so only names that are not
    actiba's get here.
    """
    if name in known_tasks():
        return None
    offline()
    from lm_eval.tasks import TaskManager

    tm = TaskManager()
    entry = tm.task_index.get(name)
    if entry is None:
        raise InputError(f"unknown task {name!r}: neither an offline actiba task ({', '.join(known_tasks())}) "
                         "nor a task lm-eval knows")
    cfg = entry.cfg or {}
    where = " ".join(str(cfg[k]) for k in ("dataset_path", "dataset_name") if cfg.get(k))
    import logging

    log = logging.getLogger("lm_eval")  # its config warnings ("higher_is_better is not ...") would make the
    level = log.level  # refusal more than one line
    log.setLevel(logging.ERROR)
    try:
        tm.load([name])  # builds the task: reads its dataset (from the cache only)
    except Exception as exc:  # whatever datasets raises offline (ConnectionError, ValueError, ...): one line
        import datasets.config

        said = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise InputError(f"lm-eval task {name}: its dataset{' ' + where if where else ''} is not in the HF "
                         f"datasets cache ({datasets.config.HF_DATASETS_CACHE}); actiba never downloads it "
                         f"(HF_DATASETS_OFFLINE=1; datasets said: {said})") from None
    finally:
        log.setLevel(level)
    return tm


def write_jsonl(docs: list[bytes], name: str) -> Path:
    """Write documents as JSONL into actiba's cache (never the repo) and return the path."""
    from ..data import cache_root

    folder = cache_root() / "lm_eval"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.jsonl"
    lines = [json.dumps({"text": d.decode("utf-8")}) for d in docs]
    write_text(path, "\n".join(lines) + "\n")
    return path


def heldout_docs(max_doc_bytes: int | None = None) -> list[bytes]:
    """One document per held-out file (fixed order), optionally truncated at a line end."""
    from ..data import split_files

    docs = []
    for p in split_files("heldout"):
        b = p.read_bytes()
        if max_doc_bytes and len(b) > max_doc_bytes:
            cut = b.rfind(b"\n", 0, max_doc_bytes)
            b = b[:cut + 1 if cut > 0 else max_doc_bytes]
        docs.append(b)
    return docs


def task_config(name: str, docs: list[bytes] | None = None) -> dict[str, Any]:
    """The task YAML as a dict with its JSONL written and substituted (`docs` overrides the held-out split)."""
    import yaml

    check_task(name)
    cfg = yaml.safe_load((TASK_DIR / f"{name}.yaml").read_text())
    if docs is None:
        docs = heldout_docs((cfg.get("metadata") or {}).get("max_doc_bytes"))
    path = write_jsonl(docs, name)
    cfg["dataset_kwargs"] = {"data_files": {"test": str(path)}}
    return cfg


def run_task(model: Any, task: str, tables: dict[str, Any] | None = None, seq_len: int = 1024,
             docs: list[bytes] | None = None, tokenizer: Any = None, limit: int | None = None,
             task_manager: Any = None, **model_args: Any) -> dict[str, float]:
    """Run one task with lm-eval; returns {metric: value} (bits_per_byte, byte_perplexity, ...).

    An offline actiba task by default; with `task_manager` (`find_task`'s), lm-eval's own task `task`
    on its cached dataset. `model_args` are the ``actiba`` model's (``act_gelu_tanh=8``), as an
    alternative to `tables`."""
    import logging

    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    logging.getLogger("lm-eval").setLevel(logging.WARNING)
    lm = ActibaLM(pretrained=model, tables=tables, max_length=seq_len, tokenizer=tokenizer, **model_args)
    if task_manager is not None:  # lm-eval's own task: the manager that found it, its dataset read offline
        offline()
        spec, manager = task, task_manager
    else:
        # the task is a config dict, so lm-eval's ~14 000 built-in task YAMLs need not be indexed: that
        # index is what simple_evaluate builds by default, 27 s of a 28 s run on a tiny model here
        spec, manager = task_config(task, docs), TaskManager(include_defaults=False)
    out = simple_evaluate(model=lm, tasks=[spec], limit=limit, bootstrap_iters=0, task_manager=manager,
                          log_samples=False, verbosity="WARNING")
    res = out["results"][task]
    return {k.split(",")[0]: float(v) for k, v in res.items() if "," in k and "stderr" not in k
            and isinstance(v, (int, float))}
