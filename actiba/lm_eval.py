"""lm-eval's own command line with actiba's model and offline tasks in it.

    python -m actiba.lm_eval --model actiba --model_args pretrained=embedded:mamba2,act_silu=8 \\
        --tasks actiba_heldout_small
    python -m actiba.lm_eval run --model actiba --model_args pretrained=my/folder --tasks wikitext ...

Why a wrapper: lm-eval 0.4.13 registers models only when their module is imported and reads no entry
points, so `lm_eval --model actiba` answers "no model for this name found". This module imports
actiba's model first, then hands every argument to lm-eval's CLI unchanged, so all of lm-eval's flags
work. actiba's offline tasks (`actiba_heldout`, `actiba_heldout_small`) are written, with their data
files resolved into actiba's cache, to a task folder that is added to lm-eval's task search path next to
any `--include_path` of the user's (lm-eval's CLI takes one path; its TaskManager takes a list).
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


def _add_task_path(folder: Path) -> None:
    from lm_eval.tasks import TaskManager

    original = TaskManager.__init__
    if getattr(original, "_actiba_folder", None) == folder:
        return

    def init(self, *args, include_path=None, **kwargs):
        paths = [] if include_path is None else (
            list(include_path) if isinstance(include_path, (list, tuple)) else [include_path])
        original(self, *args, include_path=[*paths, str(folder)], **kwargs)

    init._actiba_folder = folder  # type: ignore[attr-defined]
    TaskManager.__init__ = init  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    """Run lm-eval's CLI on `argv`; actiba's bad-input errors are one line and exit 2, as in `actiba`."""
    from .errors import InputError

    try:
        from lm_eval.__main__ import cli_evaluate

        from .evaluate import lm_eval_model  # noqa: F401  (registers the "actiba" model)

        _add_task_path(task_folder())
        sys.argv = ["lm_eval", *(sys.argv[1:] if argv is None else argv)]
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
