"""A local checkpoint as the AlpacaEval judge, through alpaca_eval's PairwiseAnnotator (offline)."""

from __future__ import annotations

import json
import math

import pytest

from workflow_scripts import local_judge as J
from workflow_scripts.metrics import preference_win_rate

PAIRS = [
    {"instruction": "List three colors.", "output_1": "red, blue, green", "output_2": "List three colors."},
    {"instruction": "Say cat 2 times.", "output_1": "cat cat", "output_2": "cat"},
    {"instruction": "Opposite of hot?", "output_1": "cold", "output_2": "hot hot hot"},
]


@pytest.fixture
def counted(monkeypatch):
    """Record how many prompts reach the judge model (alpaca_eval's cache answers the rest)."""
    seen: list[str] = []
    real = J.local_logprob_completions

    def spy(prompts, **kw):
        seen.extend(prompts)
        return real(prompts, **kw)

    monkeypatch.setattr(J, "local_logprob_completions", spy)
    return seen


def test_both_orders_and_cache_per_pair(tiny_llama_factory, tmp_path, counted):
    judge = tiny_llama_factory("judge")
    cache = tmp_path / "judge_cache" / "tiny.json"
    first = J.judge_pairs(PAIRS, judge, cache)
    assert len(counted) == 2 * len(PAIRS)  # each pair in both presentation orders
    assert all('"model_identifier": "m"' in p for p in counted)  # alpaca_eval's weighted template
    assert sum('"""List three colors."""' in p for p in counted) == 2
    for rec in first:
        assert 1.0 <= rec["preference_forward"] <= 2.0 and 1.0 <= rec["preference_swapped"] <= 2.0
        assert rec["preference"] == pytest.approx((rec["preference_forward"] + rec["preference_swapped"]) / 2)
    assert json.loads(cache.read_text())  # alpaca_eval's own cache file

    # a new variant (one new answer, two already judged): only the new pair reaches the model
    counted.clear()
    new = {"instruction": "List three colors.", "output_1": "red, blue, green", "output_2": "pink, black, white"}
    again = J.judge_pairs([*PAIRS[:2], new], judge, cache)
    assert len(counted) == 2
    assert [r["preference"] for r in again[:2]] == [r["preference"] for r in first[:2]]


def test_judge_outputs_matches_by_id_and_rejects_missing(tiny_llama_factory, tmp_path):
    judge = tiny_llama_factory("judge")
    model = [{"id": "a", "instruction": "Opposite of hot?", "output": "cold", "generator": "expo"}]
    ref = [{"id": "a", "instruction": "Opposite of hot?", "output": "hot", "generator": "aligned"}]
    (ann,) = J.judge_outputs(model, ref, judge, tmp_path / "c.json")
    assert (ann["output_1"], ann["output_2"], ann["generator_2"]) == ("hot", "cold", "expo")
    with pytest.raises(ValueError, match="no reference answer"):
        J.judge_outputs([{**model[0], "id": "b"}], ref, judge, tmp_path / "c.json")


@pytest.mark.slow
def test_smollm2_as_alpaca_eval_judge(smollm2_dir, tmp_path):
    """End to end with a real instruction-tuned checkpoint: weighted preferences from its logprobs."""
    judged = J.judge_pairs(PAIRS[:2], smollm2_dir, tmp_path / "smollm2.json")
    prefs = [r["preference"] for r in judged]
    assert all(1.0 <= p <= 2.0 for p in prefs), prefs
    # a weighted judge gives probabilities, not hard decisions
    assert any(not float(r["preference_forward"]).is_integer() for r in judged)
    res = preference_win_rate(prefs)
    assert res["n_total"] == 2 and not math.isnan(res["win_rate"])
