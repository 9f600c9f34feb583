"""lm-eval integration: the ``actiba`` model (HFLM with activation tables applied) and offline tasks.

Why a subclass of HFLM and not a new LM: lm-eval's windowing, batching and metrics stay exactly
lm-eval's; only the forward call runs inside `tables_applied`, so `bits_per_byte` of a table
configuration is comparable with every other lm-eval number.

    lm_eval --model actiba --model_args pretrained=embedded:mamba2,act_silu=16,act_softplus=relu \\
            --tasks actiba_heldout --include_path actiba/tasks    # after task_config() wrote the JSONL

Model args: `pretrained` (an actiba model name), `act_silu` / `act_softplus` = segments, "relu" or a
table file, `max_length` (window length).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from .._atomic import write_text
from ..errors import InputError
from .perplexity import tables_applied

# package data, so an installed wheel has the tasks too (eval/tasks/ holds copies for `lm_eval --include_path`)
TASK_DIR = resources.files("actiba") / "tasks"
PLACEHOLDER = "ACTIBA_HELDOUT_JSONL"


def parse_tables(act_silu: Any = None, act_softplus: Any = None, model: Any = None,
                 name: str = "model") -> dict[str, Any]:
    """Tables from model-arg values (segments, "relu", a table file or a table-set file).

    `model` is needed only for sets (checked against the model they were calibrated on)."""
    from .build import LoadedModel
    from .configs import from_dict
    from .tables import tables_for

    acts = {}
    for fn, v in (("silu", act_silu), ("softplus", act_softplus)):
        if v in (None, "", "exact"):
            continue
        s = str(v)
        acts[fn] = {"segments": int(s)} if s.isdigit() else {"table": s}
    lm = None if model is None else LoadedModel(name, model, model.config.model_type, False,
                                                 int(model.config.vocab_size))
    return tables_for(from_dict({"name": "lm-eval", "activations": acts}), lm)


@register_model("actiba")
class ActibaLM(HFLM):
    """HFLM over an actiba-loaded Mamba model whose mixer activations run as tables."""

    def __init__(self, pretrained: Any = "embedded:mamba2", act_silu: Any = None, act_softplus: Any = None,
                 tables: dict[str, Any] | None = None, max_length: int = 1024, tokenizer: Any = None,
                 **kwargs: Any) -> None:
        from ..models import load
        from ..models import tokenizer as load_tokenizer

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
        self.actiba_tables = dict(tables or {}) or parse_tables(
            act_silu, act_softplus, model, pretrained if isinstance(pretrained, str) else "model")

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
             task_manager: Any = None) -> dict[str, float]:
    """Run one task with lm-eval; returns {metric: value} (bits_per_byte, byte_perplexity, ...).

    An offline actiba task by default; with `task_manager` (`find_task`'s), lm-eval's own task `task`
    on its cached dataset."""
    import logging

    from lm_eval import simple_evaluate

    logging.getLogger("lm-eval").setLevel(logging.WARNING)
    lm = ActibaLM(pretrained=model, tables=tables, max_length=seq_len, tokenizer=tokenizer)
    if task_manager is not None:
        offline()
    spec = task if task_manager is not None else task_config(task, docs)
    out = simple_evaluate(model=lm, tasks=[spec], limit=limit, bootstrap_iters=0, task_manager=task_manager,
                          log_samples=False, verbosity="WARNING")
    res = out["results"][task]
    return {k.split(",")[0]: float(v) for k, v in res.items() if "," in k and "stderr" not in k
            and isinstance(v, (int, float))}
