"""The offline lm-eval tasks are package data: found through importlib.resources, shipped by setup.cfg."""

from __future__ import annotations

import configparser
import fnmatch
from importlib import resources
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _package_tasks() -> dict[str, bytes]:
    folder = resources.files("actiba") / "tasks"
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name.endswith(".yaml")}


def test_tasks_are_found_from_the_package():
    tasks = _package_tasks()
    assert {"actiba_heldout.yaml", "actiba_heldout_small.yaml"} <= set(tasks)
    assert all(b"task: " in text for text in tasks.values())


@pytest.mark.slow  # ~15 s standalone: importing lm_eval pulls in transformers and torch
def test_lm_eval_model_reads_the_package_tasks():
    tasks = _package_tasks()
    lm_eval_model = pytest.importorskip("actiba.evaluate.lm_eval_model")
    assert lm_eval_model.known_tasks() == sorted(n[:-len(".yaml")] for n in tasks)
    assert lm_eval_model.check_task("actiba_heldout") == "actiba_heldout"
    assert not str(lm_eval_model.TASK_DIR).startswith(str(ROOT / "eval"))


def test_setup_cfg_ships_every_task_file():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    patterns = [p.strip() for p in cfg["options.package_data"]["actiba"].split(",")]
    for name in _package_tasks():
        assert any(fnmatch.fnmatch(f"tasks/{name}", p) for p in patterns), (name, patterns)


def test_eval_tasks_copies_equal_the_package_data():
    """eval/tasks/ keeps copies for `lm_eval --include_path eval/tasks` (DESIGN §1); they must not drift."""
    copies = {p.name: p.read_bytes() for p in (ROOT / "eval" / "tasks").glob("*.yaml")}
    assert copies == _package_tasks()
