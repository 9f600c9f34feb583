"""`python -m actiba.lm_eval`: lm-eval's own CLI with actiba's model and offline tasks in it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")


def test_actiba_tasks_join_the_users_include_path(tmp_path):
    from lm_eval.tasks import TaskManager

    import actiba.lm_eval as wrapper

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "my_task.yaml").write_text((wrapper.task_folder() / "actiba_heldout_small.yaml").read_text()
                                       .replace("task: actiba_heldout_small", "task: my_task"))
    original = TaskManager.__init__
    try:
        wrapper._add_task_path(wrapper.task_folder())
        # (lm-eval's ~14 000 built-in tasks take minutes to index on 2 cores: left out here)
        tm = TaskManager(include_path=str(mine), include_defaults=False)
        assert tm.match_tasks(["my_task"]) == ["my_task"]
        assert tm.match_tasks(["actiba_heldout_small"]) == ["actiba_heldout_small"]
        assert TaskManager(include_defaults=False).match_tasks(["actiba_heldout"]) == ["actiba_heldout"]
    finally:
        TaskManager.__init__ = original
    # without the wrapper, lm-eval does not know the tasks: the test above is not vacuous
    assert TaskManager(include_path=str(mine), include_defaults=False).match_tasks(["actiba_heldout_small"]) == []


@pytest.mark.slow
def test_cli_equals_the_python_api(tmp_path):
    """The CLI's bits/byte is the in-process `run_task` number on the same windows."""
    from actiba.evaluate.lm_eval_model import run_task
    from actiba.models import load, tokenizer

    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "actiba.lm_eval", "--model", "actiba", "--model_args",
                           "pretrained=embedded:mamba2,max_length=256", "--tasks", "actiba_heldout_small",
                           "--limit", "1", "--output_path", str(out)], capture_output=True, text=True,
                          timeout=1800, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-2000:]
    (results,) = out.rglob("results_*.json")
    cli = json.loads(results.read_text())["results"]["actiba_heldout_small"]["bits_per_byte,none"]
    api = run_task(load("embedded:mamba2"), "actiba_heldout_small", None, seq_len=256,
                   tokenizer=tokenizer("embedded:mamba2"), limit=1)["bits_per_byte"]
    assert cli == pytest.approx(api, rel=1e-9)


def test_a_run_of_actiba_tasks_only_skips_lm_evals_builtin_index():
    """`--tasks actiba_heldout_small` alone: lm-eval's ~14 000 built-in tasks are not indexed (27 s here),
    so a built-in task is then unknown; with another task or an include path they stay."""
    from lm_eval.tasks import TaskManager

    import actiba.lm_eval as wrapper

    assert wrapper.only_own_tasks(["--model", "actiba", "--tasks", "actiba_heldout_small,actiba_heldout"])
    assert not wrapper.only_own_tasks(["--tasks", "actiba_heldout_small,wikitext"])
    assert not wrapper.only_own_tasks(["--tasks", "actiba_heldout_small", "--include_path", "x"])
    assert not wrapper.only_own_tasks(["--model", "actiba"])
    original = TaskManager.__init__
    try:
        wrapper._add_task_path(wrapper.task_folder(), own_only=True)
        tm = TaskManager()
        assert tm.match_tasks(["actiba_heldout_small"]) == ["actiba_heldout_small"]
        assert tm.match_tasks(["wikitext"]) == []
        wrapper._add_task_path(wrapper.task_folder())  # re-patching wraps lm-eval's init, not ours
        assert TaskManager.__init__._actiba_original is original
    finally:
        TaskManager.__init__ = original
