"""lm-eval's own command line with actiba's model and offline tasks in it.

    python -m actiba.lm_eval --model actiba --model_args pretrained=embedded:mamba2,act_silu=8 \\
        --tasks actiba_heldout_small
    python -m actiba.lm_eval --model actiba --model_args pretrained=my/gpt2-folder,act_gelu_tanh=8 \\
        --tasks actiba_heldout_small
    python -m actiba.lm_eval run --model actiba --model_args pretrained=my/folder --tasks wikitext ...

Why a wrapper: lm-eval 0.4.13 registers models only when their module is imported and reads no entry
points, so `lm_eval --model actiba` answers "no model for this name found". This module imports
actiba's model first, then hands every argument to lm-eval's CLI unchanged, so all of lm-eval's flags
work. actiba's offline tasks (`actiba_heldout`, `actiba_heldout_small`) are written, with their data
files resolved into actiba's cache, to a task folder that is added to lm-eval's task search path next to
any `--include_path` of the user's (lm-eval's CLI takes one path; its TaskManager takes a list).
The ``act_<function>`` model args (one per sweepable function of the activation registry; see
`evaluate.lm_eval_model`) are checked before lm-eval starts, so a misspelt one fails at once; a run
whose ``--tasks`` are all actiba's skips indexing lm-eval's built-in tasks (27 s of a 43 s run here).
"""

from __future__ import annotations

import sys
from pathlib import Path


def task_folder() -> Path:
    """Write actiba's offline tasks, data files resolved, into the cache and return that folder."""
    import yaml

    from . import _atomic
    from .data import cache_root
    from .evaluate import lm_eval_model

    folder = cache_root() / "lm_eval" / "tasks"
    folder.mkdir(parents=True, exist_ok=True)
    for name in lm_eval_model.known_tasks():
        _atomic.write_text(folder / f"{name}.yaml", yaml.safe_dump(lm_eval_model.task_config(name), sort_keys=False))
    return folder


def _add_task_path(folder: Path, own_only: bool = False) -> None:
    """Put `folder` on every TaskManager's include path; `own_only` also leaves lm-eval's built-in tasks
    unindexed (for a run whose tasks are all actiba's: indexing those ~14 000 YAMLs takes 27 s here)."""
    from lm_eval.tasks import TaskManager

    original = TaskManager.__init__
    if getattr(original, "_actiba_folder", None) == (folder, own_only):
        return
    original = getattr(original, "_actiba_original", original)

    def init(self, *args, include_path=None, **kwargs):
        paths = [] if include_path is None else (
            list(include_path) if isinstance(include_path, (list, tuple)) else [include_path])
        if own_only:
            kwargs.setdefault("include_defaults", False)
        original(self, *args, include_path=[*paths, str(folder)], **kwargs)

    init._actiba_folder = (folder, own_only)  # type: ignore[attr-defined]
    init._actiba_original = original  # type: ignore[attr-defined]
    TaskManager.__init__ = init  # type: ignore[method-assign]


def _option(argv: list[str], name: str) -> str | None:
    """The value of `--name VALUE` / `--name=VALUE` in `argv` (the last one given), None if absent."""
    value = None
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith(name + "="):
            value = a[len(name) + 1:]
    return value


def check_model_args(argv: list[str]) -> None:
    """Refuse unknown ``act_*`` model args of ``--model actiba`` before lm-eval starts.

    Why before: lm-eval's CLI indexes its ~14 000 built-in task YAMLs (27 s here) before it builds the
    model, so a typo like act_gelu_tan would otherwise cost that wait before its one-line error."""
    if _option(argv, "--model") != "actiba":
        return
    args = _option(argv, "--model_args")
    if not args:
        return
    from lm_eval.utils import simple_parse_args_string

    from .evaluate.lm_eval_model import split_act_args

    split_act_args(simple_parse_args_string(args))


def only_own_tasks(argv: list[str]) -> bool:
    """Whether every ``--tasks`` name is one of actiba's offline tasks and no ``--include_path`` is given
    (then lm-eval's built-in tasks are not needed)."""
    from .evaluate.lm_eval_model import known_tasks

    tasks = _option(argv, "--tasks")
    if not tasks or _option(argv, "--include_path") is not None:
        return False
    return all(t.strip() in known_tasks() for t in tasks.split(",") if t.strip())


def main(argv: list[str] | None = None) -> int:
    """Run lm-eval's CLI on `argv`; actiba's bad-input errors are one line and exit 2, as in `actiba`."""
    from .errors import InputError

    try:
        from lm_eval.__main__ import cli_evaluate

        from .evaluate import lm_eval_model  # noqa: F401  (registers the "actiba" model)

        args = list(sys.argv[1:] if argv is None else argv)
        check_model_args(args)
        _add_task_path(task_folder(), own_only=only_own_tasks(args))
        sys.argv = ["lm_eval", *args]
        cli_evaluate()
    except InputError as exc:
        print(f"actiba.lm_eval: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if exc.name != "lm_eval":
            raise
        print("actiba.lm_eval: error: lm-eval is not installed (pip install 'actiba[eval]')", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
