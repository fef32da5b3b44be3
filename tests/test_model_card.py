"""Model cards of extrapolated checkpoints: the engine's card, no training artifacts, the card with results."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from workflow_scripts.extrapolate import extrapolate
from workflow_scripts.model_card import card_from_report, identify, results_for

ALIGNED_CARD = """---
license: apache-2.0
language: [en]
base_model: org/the-sft
tags: [trl, dpo]
---
# The aligned model (trained with DPO)
"""
ARTIFACTS = {
    "README.md": ALIGNED_CARD,
    "training_args.bin": "x",
    "trainer_state.json": "{}",
    "optimizer.pt": "x",
    "scheduler.pt": "x",
    "rng_state.pth": "x",
    "adapter_config.json": "{}",
    "all_results.json": "{}",
    "training_manifest.json": "{}",
    "training_history.csv": "step,loss\n",
    "source.json": json.dumps({"kind": "hub", "repo": "org/the-aligned", "commit": "a" * 40}),
}
KEPT = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json")


@pytest.fixture
def pair(tiny_llama_factory, tmp_path):
    sft = tiny_llama_factory("sft", seed=0)
    aligned = tiny_llama_factory("aligned", seed=1)
    (sft / "source.json").write_text(json.dumps({"kind": "hub", "repo": "org/the-sft", "commit": "b" * 40}))
    for name, text in ARTIFACTS.items():
        (aligned / name).write_text(text)
    (aligned / "preprocessor_config.json").write_text("{}")
    (aligned / "generation_config.json").write_text(json.dumps({"max_new_tokens": 7}))
    return sft, aligned


def test_extrapolated_folder_has_its_own_card_and_no_training_artifacts(pair, tmp_path):
    from huggingface_hub import ModelCard
    from transformers import AutoModelForCausalLM

    sft, aligned = pair
    out = tmp_path / "extrapolated" / "dpo" / "alpha0.5"
    m = extrapolate(sft, aligned, out, 0.5)
    names = {p.name for p in out.iterdir()}
    assert not (set(ARTIFACTS) - {"README.md"}) & names
    assert set(KEPT) <= names
    AutoModelForCausalLM.from_pretrained(out)  # loads

    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == ["org/the-sft", "org/the-aligned"]
    assert card.data.base_model_relation == "merge"
    assert set(card.data.tags) == {"expo", "model-extrapolation", "merge"}
    assert card.data.license == "apache-2.0"  # inherited from the aligned model's card
    assert card.data.expo["alpha"] == 0.5 and card.data.expo["formula"].startswith("theta = theta_aligned")
    cfg_hash = next(f["sha256"] for f in m["inputs"]["aligned"]["files"] if f["name"] == "config.json")
    assert card.data.expo["inputs"]["aligned"]["sha256"]["config.json"] == cfg_hash
    assert card.data.expo["inputs"]["sft"]["revision"] == "b" * 40
    assert "DPO" not in card.text and "α = 0.5" in card.text and cfg_hash in card.text
    assert m["output"]["copied"] and "README.md" not in m["output"]["copied"]


def test_identify_hub_cache_trained_and_plain_folders(tmp_path):
    snap = tmp_path / "hub" / "models--org--name" / "snapshots" / ("c" * 40)
    snap.mkdir(parents=True)
    assert identify(snap) == {"name": "org/name", "repo": "org/name", "revision": "c" * 40}
    linked = tmp_path / "checkpoints" / "sft"
    linked.mkdir(parents=True)
    (linked / "source.json").write_text(json.dumps({"kind": "local", "path": str(snap)}))
    assert identify(linked)["repo"] == "org/name"
    plain = tmp_path / "trained" / "dpo"
    plain.mkdir(parents=True)
    assert identify(plain) == {"name": "dpo", "repo": None, "revision": None}


def _summary(path: Path, rows: list[dict]) -> Path:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    return path


def test_card_with_results_from_the_wide_summary(pair, tmp_path):
    from huggingface_hub import ModelCard

    sft, aligned = pair
    out = tmp_path / "extrapolated" / "dpo" / "alpha0.5"
    extrapolate(sft, aligned, out, 0.5)
    row = {"pair": "dpo", "prompt_set": "eval", "model": "dpo/alpha0.5", "kind": "alpha", "n": 120}
    table = _summary(
        tmp_path / "summary.csv",
        [
            {**row, "gold_mean": 0.61, "gold_ci_low": 0.55, "gold_ci_high": 0.67, "gold_win_rate": 0.7,
             "gold_win_rate_ci_low": 0.6, "gold_win_rate_ci_high": 0.8, "mean_tokens": 33.0},
            {**row, "model": "dpo/alpha1", "gold_mean": 0.1},
            {**row, "prompt_set": "dev", "gold_mean": "", "gold_ci_low": "", "gold_ci_high": ""},
        ],
    )  # fmt: skip
    res = results_for(table, "dpo/alpha0.5")
    assert {(r["prompt_set"], r["metric"], r["value"]) for r in res} == {
        ("eval", "gold", 0.61),
        ("eval", "gold_win_rate", 0.7),
    }
    dest = tmp_path / "cards" / "dpo" / "alpha0.5" / "README.md"
    card_path = card_from_report(out / "manifest.json", table, dest, pair="dpo", variant="alpha0.5")
    card = ModelCard.load(card_path)
    assert card.data.base_model == ["org/the-sft", "org/the-aligned"]
    assert card.data.model_name == "expo-dpo-alpha0.5"
    got = {(e.dataset_name, e.metric_type): e.metric_value for e in card.data.eval_results}
    assert got == {("eval", "gold"): 0.61, ("eval", "gold_win_rate"): 0.7}
    assert "[0.55, 0.67]" in card.text


def test_card_from_a_long_results_table(pair, tmp_path):
    sft, aligned = pair
    out = tmp_path / "x" / "alpha2"
    extrapolate(sft, aligned, out, 2.0)
    table = _summary(
        tmp_path / "results.csv",
        [
            {"variant_id": "dpo/alpha2", "prompt_set": "eval", "metric": "mean_reward", "reward_model": "rm",
             "value": 1.5, "ci_low": 1, "ci_high": 2},
            {"variant_id": "dpo/alpha2", "prompt_set": "eval", "metric": "empty_rate", "reward_model": "",
             "value": 0.0, "ci_low": "", "ci_high": ""},
            {"variant_id": "dpo/alpha0.5", "prompt_set": "eval", "metric": "reward", "value": 9, "ci_low": 8,
             "ci_high": 10},
        ],
    )  # fmt: skip
    assert results_for(table, "dpo/alpha2") == [
        {"prompt_set": "eval", "metric": "rm/mean_reward", "value": 1.5, "ci_low": 1.0, "ci_high": 2.0},
        {"prompt_set": "eval", "metric": "empty_rate", "value": 0.0, "ci_low": None, "ci_high": None},
    ]


def test_card_cli_and_a_table_without_the_model(pair, tmp_path, capfd):
    from huggingface_hub import ModelCard

    from workflow_scripts.model_card import main

    sft, aligned = pair
    out = tmp_path / "x" / "alpha1"
    extrapolate(sft, aligned, out, 1.0)
    table = _summary(tmp_path / "s.csv", [{"model": "other/alpha1", "prompt_set": "eval", "gold_mean": 1}])
    dest = tmp_path / "card.md"
    main(["--manifest", str(out / "manifest.json"), "--results", str(table), "--pair", "p", "--variant", "alpha1",
          "--out", str(dest)])  # fmt: skip
    assert "no results for p/alpha1" in capfd.readouterr().err
    card = ModelCard.load(dest)
    assert not card.data.eval_results and "## Evaluation" not in card.text
    bad = _summary(tmp_path / "bad.csv", [{"name": "x", "value": 1}])
    with pytest.raises(ValueError, match="no 'variant_id' or 'model' column"):
        results_for(bad, "p/alpha1")


def test_a_previous_output_with_its_card_can_be_replaced(pair, tmp_path):
    sft, aligned = pair
    out = tmp_path / "o"
    extrapolate(sft, aligned, out, 0.5)
    extrapolate(sft, aligned, out, 1.0)
    assert "α = 1" in (out / "README.md").read_text()
    shutil.rmtree(out)
