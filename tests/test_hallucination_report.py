"""The hallucination report's tables from hand-made metrics files: paired differences vs aligned."""

from __future__ import annotations

import json
import math

import pytest

from workflow_scripts.hallucination import build_vocab, evaluate_records
from workflow_scripts.hallucination_report import collect, html_report, markdown

VOCAB = build_vocab(["circle", "square", "fork"])
GOLD = [["circle"], ["square"]] * 25


def _write(root, ps, group, variant, outputs, *, per_answer=True):
    recs = [
        {"id": f"{ps}-{i}", "output": o, "task": {"kind": "describe", "objects": g}}
        for i, (o, g) in enumerate(zip(outputs, GOLD))
    ]
    m = evaluate_records(recs, VOCAB)
    if not per_answer:
        m.pop("per_answer")
    path = root / "hallucination" / ps / group / f"{variant}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(m))
    return str(path)


PARAMS = {
    "pairs": {"dpo": {"sft": "sft", "aligned": "dpo_0.2"}},
    "pair_meta": {"dpo": {"method": "dpo", "freeze": None}},
    "prompt_sets": ["eval", "dev"],
    "dev_prompt_set": "dev",
    "bootstrap": 200,
    "seed": 0,
}


def _files(tmp_path, **kw):
    clean = ["a circle", "a square"] * 25
    noisy = [t + (" and a fork" if i % 5 == 0 else "") for i, t in enumerate(clean)]
    out = []
    for ps in ("eval", "dev"):
        out.append(_write(tmp_path, ps, "base", "dpo_0.2", noisy, **kw))
        out.append(_write(tmp_path, ps, "dpo", "alpha2", clean, **kw))
    out.append(_write(tmp_path, "eval", "base", "sft", noisy, **kw))
    return out


def test_each_variant_gets_its_paired_difference_to_the_aligned_model(tmp_path):
    df = collect(_files(tmp_path), PARAMS)
    ev = df[df.prompt_set == "eval"].set_index("role")
    assert ev.loc["alpha", "chair_i_diff"] == pytest.approx(0 - 10 / 60)
    assert ev.loc["alpha", "chair_i_diff_ci_high"] < 0 and ev.loc["alpha", "recall_diff"] == 0
    assert ev.loc["sft", "chair_i_diff"] == 0  # the same answers as aligned
    assert math.isnan(ev.loc["aligned", "chair_i_diff"])
    md = markdown(df.assign(chosen=False), {"dpo": 2.0}, PARAMS)
    assert "Δ CHAIR_i vs aligned" in md and "chosen_vs_aligned_chair_i" in md
    assert "-0.167 [" in md  # the chosen α's paired difference in the headline and its table
    page = html_report(df.assign(chosen=False), {"dpo": 2.0}, PARAMS, "shapes_world")
    assert page.count("<table>") == 1 + 2 and "Hallucination — shapes_world" in page
    assert '-0.167<br><span class="ci">[' in page  # the CI on its own line in the cell
    assert "Δ CHAIR_i chosen vs aligned" in page and "chosen_vs_aligned_chair_i" not in page  # headers in words


def test_metrics_without_per_answer_counts_report_no_difference(tmp_path):
    df = collect(_files(tmp_path, per_answer=False), PARAMS)
    assert df.chair_i_diff.isna().all() and df.chair_i.notna().all()
    assert "n/a" in markdown(df.assign(chosen=False), {"dpo": 2.0}, PARAMS)


def test_the_dev_score_can_average_object_f1_and_pope_accuracy():
    import pandas as pd

    from workflow_scripts.hallucination_report import _intro, choose_alpha

    dev = pd.DataFrame(
        {
            "prompt_set": "dev",
            "pair": "dpo",
            "role": ["aligned", "alpha", "alpha"],
            "alpha": [0.0, 1.0, 4.0],
            "object_f1": [0.95, 0.96, 0.97],  # F1 alone keeps rising with α …
            "pope_accuracy": [0.93, 0.94, 0.63],  # … while the yes-bias turns into a no-bias
        }
    )
    assert choose_alpha(dev, "dev") == {"dpo": 4.0}
    assert choose_alpha(dev, "dev", ["object_f1", "pope_accuracy"]) == {"dpo": 1.0}
    with pytest.raises(ValueError, match="dev set 'dev' has no pope_adv_accuracy"):
        choose_alpha(dev.assign(pope_adv_accuracy=math.nan), "dev", ["object_f1", "pope_adv_accuracy"])
    intro = " ".join(_intro({**PARAMS, "select_by": ["object_f1", "pope_accuracy"]}))
    assert "by the mean of per-answer object F1 and POPE accuracy" in intro


def test_the_dev_score_enters_the_report_params_only_when_set():
    import copy

    from tests.test_shapes_e2e import small_config
    from workflow_scripts.config_schema import validate_config
    from workflow_scripts.experiment import Experiment

    cfg = small_config()
    cfg["evaluation"].pop("hallucination_select", None)
    assert "select_by" not in Experiment(validate_config(copy.deepcopy(cfg))).hallucination_params()
    cfg["evaluation"]["hallucination_select"] = ["object_f1", "pope_accuracy"]
    params = Experiment(validate_config(cfg)).hallucination_params()
    assert params["select_by"] == ["object_f1", "pope_accuracy"]
