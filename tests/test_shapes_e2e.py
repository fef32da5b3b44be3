"""The multimodal workflow end to end on a small shapes world: shapes data → VLM SFT → DPO and DDPO on
20 % → LLM-only α sweep via the engine → VLM generation → CHAIR / POPE → hallucination report.

Same experiment as experiments/shapes_world.yaml, shrunk (fewer scenes, one epoch, one α) so it
fits CI's budget; what it checks is the plumbing and the report's numbers being well formed, not
whether ExPO helps (that needs the full run: see the experiment file).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.test_workflow import make_workdir, planned_jobs, snakemake

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "shapes_world.yaml"


def small_config() -> dict:
    cfg = yaml.safe_load(EXPERIMENT.read_text())
    cfg["experiment"] = "shapes_small"
    cfg["shapes_world"].update(n_sft=60, n_pref=40, n_eval=6, n_dev=4, questions=1)
    # 60 SFT steps: the tiny model names shapes, so CHAIR and recall have mentions to resample
    cfg["training"]["sft"].update(epochs=8, batch_size=16, lr=3.0e-3)
    cfg["extrapolation"]["alphas"] = [2]
    cfg["decoding"]["max_new_tokens"] = 12
    cfg["evaluation"]["bootstrap"] = 100
    return cfg


def test_dry_run_plans_the_multimodal_pipeline(tmp_path):
    jobs = planned_jobs(make_workdir(tmp_path, small_config()))
    assert jobs["train_model"] == 4  # sft, dpo, ddpo, dpo with trainable vision
    assert jobs["extrapolate_alpha"] == 3 and jobs["extrapolate_scheme"] == 1
    # eval: sft + 3 aligned + 3 α + the all-component scheme; dev: 3 aligned + 3 α
    assert jobs["generate"] == jobs["hallucination"] == 14
    assert jobs["shapes_prompt_set"] == 2 and "prompt_set" not in jobs


def test_text_experiments_plan_no_multimodal_jobs(tmp_path):
    jobs = planned_jobs(make_workdir(tmp_path, yaml.safe_load((ROOT / "tests/data/small_world.yaml").read_text())))
    assert not {"shapes_world_data", "shapes_prompt_set", "hallucination", "hallucination_report"} & set(jobs)


@pytest.mark.slow
def test_shapes_world_end_to_end(tmp_path):
    wd = make_workdir(tmp_path, small_config())
    snakemake(wd, timeout=1500)
    res = wd / "results" / "shapes_small"
    table = pd.read_csv(res / "report" / "hallucination.csv")
    ev = table[table.prompt_set == "eval"]
    assert set(ev.pair) == {"dpo", "ddpo", "dpo_trainable"}
    for col in ("chair_i", "recall", "pope_accuracy", "pope_yes_ratio"):
        assert ev[col].between(0, 1).all(), col
        assert ev[f"{col}_ci_low"].notna().all(), col  # the tiny model names shapes: mentions to resample
        assert (ev[f"{col}_ci_low"] <= ev[col] + 1e-9).all() and (ev[col] <= ev[f"{col}_ci_high"] + 1e-9).all()
    assert (ev.recall > 0).all()
    assert ev[ev.pair == "dpo_trainable"].vision.eq("trainable").all()
    assert ev[ev.pair == "dpo"].vision.eq("frozen").all()
    assert table.chosen.sum() == 2 * 3  # one chosen α per pair, marked on eval and dev
    md = (res / "report" / "hallucination.md").read_text()
    assert "SFT → aligned → chosen α" in md and "★" in md
    # the engine's manifest: LLM-only α leaves the frozen components' Δ ≡ 0 and flags them
    man = json.loads((res / "manifests" / "dpo" / "alpha2.json").read_text())
    assert set(man["zero_delta_components"]) == {"vision_tower", "multi_modal_projector"}
    comp = pd.read_csv(res / "report" / "component_delta.csv")
    tot = comp[comp.layer == "all"].set_index(["pair", "component"]).rel_delta
    assert tot["dpo_trainable", "vision_tower"] > 0 and tot["dpo", "vision_tower"] == 0
    # generation records keep the scene; the trainable run's manifest counts nothing frozen
    gen = json.loads((res / "generations" / "eval" / "dpo" / "alpha2.json").read_text())
    assert all("scene" in r for r in gen)
    trainable = json.loads((res / "trained" / "dpo_0.2_trainable" / "training_manifest.json").read_text())
    assert trainable["freeze"]["frozen_params"] == 0
    assert "Δ CHAIR_i vs aligned" in (res / "report" / "hallucination.html").read_text()
    for f in ("hallucination_vs_alpha.png", "component_delta.png", "vlm_training_curves.png", "summary.md"):
        assert (res / "report" / f).stat().st_size > 0


def _build(cfg: dict):
    import copy

    from workflow_scripts.config_schema import validate_config
    from workflow_scripts.experiment import Experiment

    return Experiment(validate_config(copy.deepcopy(cfg)))


def test_planning_of_image_models_and_multimodal_sets():
    exp = _build(small_config())
    p = exp.train_params("sft")
    assert p["modality"] == "image" and p["init"]["vision"]["patch_size"] == 16
    assert exp.train_params("ddpo_0.2")["hparams"]["ddpo"] == {"gamma": 2.0, "average": False}
    assert exp.model_num_layers("dpo_0.2") == 2  # the LLM's depth (text_config), not the tower's
    assert exp.multimodal_prompt_sets() == ["eval", "dev"]
    assert exp.alpha_spec("dpo", "2") == {"components": {"vision_tower": 0, "multi_modal_projector": 0, "default": 2.0}}
    assert exp.pair_scheme_spec("dpo_trainable", "all_2")["components"]["vision_tower"] == 2
    assert "ddpo_0.2" in exp.training_records()
    text = _build(yaml.safe_load((ROOT / "tests/data/small_world.yaml").read_text()))
    assert "modality" not in text.train_params("sft") and text.multimodal_prompt_sets() == []


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c["models"]["dpo_0.2"].update(modality="text"), "modality differs from its base"),
        (lambda c: c["training"]["ddpo"].pop("ddpo"), "method ddpo needs hparams.ddpo"),
        (lambda c: c["models"]["sft"].update(init="nope"), "unknown shapes_world architecture 'nope'"),
        (lambda c: c.pop("shapes_world"), "uses the shapes world but the config has no `shapes_world:`"),
    ],
)
def test_multimodal_config_errors_name_the_culprit(mutate, message):
    from workflow_scripts.experiment import ConfigError

    cfg = small_config()
    mutate(cfg)
    with pytest.raises((ConfigError, ValueError), match=message):
        _build(cfg)


def test_freeze_is_refused_on_a_text_model():
    from workflow_scripts.experiment import ConfigError

    cfg = yaml.safe_load((ROOT / "tests/data/small_world.yaml").read_text())
    cfg["models"]["sft"]["hparams"] = {"freeze": ["vision_tower"]}
    with pytest.raises(ConfigError, match="are not sft hyperparameters"):
        _build(cfg)
