"""Optional alpaca_eval judge: skipped cleanly without a key, calls alpaca_eval.evaluate with one."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from workflow_scripts import alpaca_eval_judge as J

KEYS = ("OPENAI_API_KEY", "OPENAI_API_KEYS", "OPENAI_CLIENT_CONFIG_PATH", "ANTHROPIC_API_KEY")


@pytest.fixture
def outputs(tmp_path) -> tuple[Path, Path]:
    model = tmp_path / "model.json"
    model.write_text(
        json.dumps([{"instruction": "Name a color.", "output": "Blue.", "generator": "expo-a2", "dataset": "demo"}])
    )
    ref = tmp_path / "ref.json"
    ref.write_text(
        json.dumps([{"instruction": "Name a color.", "output": "Red.", "generator": "sft", "dataset": "demo"}])
    )
    return model, ref


@pytest.fixture
def no_keys(monkeypatch):
    for k in KEYS:
        monkeypatch.delenv(k, raising=False)


def test_skipped_without_key(outputs, tmp_path, no_keys):
    model, ref = outputs
    out = tmp_path / "judge"
    res = J.run_alpaca_eval(model, ref, out)
    assert res["status"] == "skipped" and "OPENAI_API_KEY" in res["reason"]
    assert json.loads((out / J.RESULT_FILE).read_text()) == res
    assert res["name"] == "expo-a2"


def test_cli_skip_exits_cleanly(outputs, tmp_path, no_keys):
    model, _ = outputs
    J.main(["--model-outputs", str(model), "--out-dir", str(tmp_path / "o"), "--log", str(tmp_path / "l.txt")])
    assert json.loads((tmp_path / "o" / J.RESULT_FILE).read_text())["status"] == "skipped"


def test_credentials_detection(tmp_path):
    assert J.annotator_backends("weighted_alpaca_eval_gpt4_turbo") == ["openai_completions"]
    assert J.missing_credentials("weighted_alpaca_eval_gpt4_turbo", env={}) is not None
    assert J.missing_credentials("weighted_alpaca_eval_gpt4_turbo", env={"OPENAI_API_KEY": "sk-x"}) is None
    cfg = tmp_path / "openai_configs.yaml"
    cfg.write_text("default: []\n")
    assert J.missing_credentials("weighted_alpaca_eval_gpt4_turbo", env={"OPENAI_CLIENT_CONFIG_PATH": str(cfg)}) is None
    assert "ANTHROPIC_API_KEY" in J.missing_credentials("claude", env={})
    assert J.missing_credentials("alpaca_eval_vllm_llama3_70b_fn", env={}) is None  # local judge
    with pytest.raises(ValueError, match="unknown alpaca_eval annotator 'no_such_judge'"):
        J.missing_credentials("no_such_judge", env={})


def test_input_errors(tmp_path, no_keys):
    with pytest.raises(ValueError, match="model_outputs file not found"):
        J.run_alpaca_eval(tmp_path / "missing.json", None, tmp_path / "o")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"prompt": "x"}]))
    with pytest.raises(ValueError, match="instruction, output"):
        J.run_alpaca_eval(bad, None, tmp_path / "o")


def _alpaca_eval_main():
    from workflow_scripts.metrics import _import_alpaca_eval_metrics

    _import_alpaca_eval_metrics()
    from alpaca_eval import main as ae_main

    return ae_main


def test_calls_alpaca_eval_evaluate(outputs, tmp_path, monkeypatch, no_keys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")
    ae_main = _alpaca_eval_main()
    seen = {}

    def fake_evaluate(**kwargs):
        seen.update(kwargs)
        sub = Path(kwargs["output_path"]) / kwargs["annotators_config"]
        sub.mkdir(parents=True)
        board = pd.DataFrame(
            {"win_rate": [61.5], "length_controlled_winrate": [55.25], "n_total": [1]}, index=[kwargs["name"]]
        )
        board.to_csv(sub / "leaderboard.csv")
        return board, [{"preference": 2.0}]

    monkeypatch.setattr(ae_main, "evaluate", fake_evaluate)
    model, ref = outputs
    out = tmp_path / "judge"
    res = J.run_alpaca_eval(model, ref, out, max_instances=1)
    assert res["status"] == "ok"
    assert res["metrics"] == {"win_rate": 61.5, "length_controlled_winrate": 55.25, "n_total": 1}
    assert seen["model_outputs"] == str(model) and seen["reference_outputs"] == str(ref)
    assert seen["annotators_config"] == J.DEFAULT_ANNOTATOR and seen["max_instances"] == 1
    assert seen["precomputed_leaderboard"] is None and seen["is_return_instead_of_print"] is True
    assert json.loads((out / J.RESULT_FILE).read_text())["metrics"]["win_rate"] == 61.5
    assert (out / J.DEFAULT_ANNOTATOR / "leaderboard.csv").is_file()

    # no reference: alpaca_eval's own default baseline is used (argument not passed)
    seen.clear()
    J.run_alpaca_eval(model, None, tmp_path / "judge2")
    assert "reference_outputs" not in seen


def test_judge_failure_is_recorded_or_raised(outputs, tmp_path, monkeypatch, no_keys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")
    ae_main = _alpaca_eval_main()

    def failing(**kwargs):
        raise RuntimeError("rate limited")

    monkeypatch.setattr(ae_main, "evaluate", failing)
    model, ref = outputs
    res = J.run_alpaca_eval(model, ref, tmp_path / "j")
    assert res["status"] == "error" and "rate limited" in res["reason"]
    assert json.loads((tmp_path / "j" / J.RESULT_FILE).read_text())["status"] == "error"
    with pytest.raises(RuntimeError, match="rate limited"):
        J.run_alpaca_eval(model, ref, tmp_path / "k", strict=True)
    assert not (tmp_path / "k").exists()  # atomic: nothing left behind
