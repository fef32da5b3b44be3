"""Capability stage: the real lm-evaluation-harness on a tiny model and the offline world task."""

from __future__ import annotations

import importlib.util
import json

import pytest

from workflow_scripts import capability as C

pytestmark = pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None, reason="pip install lm-eval")


def test_world_questions_are_answerable():
    qs = C.world_questions(20, seed=3)
    assert len(qs) == 20 and all(len(q["choices"]) == 4 and 0 <= q["answer"] < 4 for q in qs)
    assert qs == C.world_questions(20, seed=3)
    from workflow_scripts.world.tasks import OPPOSITES

    q = qs[0]
    assert q["choices"][q["answer"]] == OPPOSITES[q["question"].split()[-1].rstrip("?")]


def test_harness_runs_world_task_on_tiny_model(tiny_llama_factory, tmp_path):
    model = tiny_llama_factory("m")
    out = tmp_path / "cap.json"
    C.main(
        [
            "--model",
            str(model),
            "--task",
            f"{C.WORLD_TASK}:0",
            "--world-task-dir",
            str(tmp_path / "task"),
            "--limit",
            "12",
            "--out",
            str(out),
        ]
    )
    res = json.loads(out.read_text())
    metrics = res["tasks"][C.WORLD_TASK]
    assert 0.0 <= metrics["acc"] <= 1.0 and 0.0 <= metrics["acc_norm"] <= 1.0
    assert metrics["acc_stderr"] >= 0.0
    assert res["n_samples"][C.WORLD_TASK] == 12 and res["lm_eval_version"] == "0.4.13"


def test_unknown_task_is_one_clear_error(tiny_llama_factory, tmp_path):
    with pytest.raises(ValueError, match="unknown lm-eval task"):
        C.evaluate(tiny_llama_factory("m"), {"no_such_task_xyz": 0}, include_path=C.build_world_task(tmp_path))
