"""Hallucination metrics on hand-made answers: CHAIR as a ratio of sums, recall, F1, POPE."""

from __future__ import annotations

import math

import pytest

from workflow_scripts.hallucination import build_vocab, chair, evaluate_records, mentioned_objects, parse_yes_no, pope

VOCAB = build_vocab(["circle", "square", "knife", "fork"], {"knife": ["blade"]})


def test_mentions_use_synonyms_plurals_and_whole_words():
    assert mentioned_objects("two Circles, a blade and squares", VOCAB) == {"circle", "knife", "square"}
    assert mentioned_objects("a forklift", VOCAB) == set()


def test_chair_is_a_ratio_of_sums_and_recall_sits_beside_it():
    out = chair(["a fork and a knife", "a circle", ""], [["fork"], ["circle", "square"], ["square"]], VOCAB)
    assert out["chair_i"] == pytest.approx(1 / 3)  # 1 hallucinated of 3 mentions (not the mean of 1/2, 0)
    assert out["chair_s"] == pytest.approx(1 / 3)
    assert out["recall"] == pytest.approx(2 / 4)
    assert out["object_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)  # the silent answer scores 0
    assert out["chair_i_ci_low"] <= out["chair_i"] <= out["chair_i_ci_high"]


def test_silence_has_no_chair_and_loses_on_f1():
    silent = chair(["", ""], [["fork"], ["circle"]], VOCAB)
    assert math.isnan(silent["chair_i"]) and silent["recall"] == 0 and silent["object_f1"] == 0


def test_pope_accuracy_f1_yes_ratio_and_validity_per_split():
    out = pope(
        ["Yes.", "yes", "no", "I think so", "yes", "no"],
        ["yes", "no", "no", "yes", "yes", "no"],
        ["random", "random", "random", "adversarial", "adversarial", "adversarial"],
    )
    assert out["all"]["accuracy"] == pytest.approx(4 / 6)
    assert out["all"]["yes_ratio"] == pytest.approx(3 / 6)
    assert out["all"]["validity"] == pytest.approx(5 / 6)
    assert out["all"]["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert out["random"]["accuracy"] == pytest.approx(2 / 3) and out["adversarial"]["n"] == 3
    assert parse_yes_no("nope") == "no" and parse_yes_no("maybe") is None


def test_bad_inputs_fail_with_one_line():
    with pytest.raises(ValueError, match="labels must be 'yes' or 'no'"):
        pope(["yes"], ["maybe"], ["random"])
    with pytest.raises(ValueError, match="2 answers but 1 gold"):
        chair(["a", "b"], [["fork"]], VOCAB)
    with pytest.raises(ValueError, match="not in the object list"):
        build_vocab(["fork"], {"spoon": ["ladle"]})
    with pytest.raises(ValueError, match="no record carries a task"):
        evaluate_records([{"output": "x"}], VOCAB)


def _answers(outputs, gold, ids):
    from workflow_scripts.hallucination import chair_counts

    return {"describe": {"id": ids, **chair_counts(outputs, gold, VOCAB)}}


def test_paired_difference_pairs_by_prompt_id_and_sees_what_overlapping_cis_hide():
    from workflow_scripts.hallucination import paired_difference

    gold = [["circle"], ["square"]] * 20
    ids = [f"p{i}" for i in range(40)]
    base = ["a circle", "a square"] * 20
    # the variant adds a fork to every 4th answer: CHAIR_i 0 → 10 / 50
    var = [t + (" and a fork" if i % 4 == 0 else "") for i, t in enumerate(base)]
    a, b = _answers(var, gold, ids), _answers(base, gold, ids)
    d = paired_difference(a, b)
    assert d["chair_i_diff"] == pytest.approx(10 / 50) and d["recall_diff"] == 0
    assert d["chair_i_diff_ci_low"] > 0  # every resample shows it
    # the order of the records does not matter, only the ids
    order = list(reversed(range(40)))
    shuffled = {"describe": {k: [v[i] for i in order] for k, v in a["describe"].items()}}
    assert paired_difference(shuffled, b)["chair_i_diff"] == pytest.approx(d["chair_i_diff"])
    same = paired_difference(b, b)
    assert same["chair_i_diff"] == same["chair_i_diff_ci_low"] == same["chair_i_diff_ci_high"] == 0


def test_paired_difference_uses_only_shared_prompts_and_refuses_duplicate_ids():
    from workflow_scripts.hallucination import paired_difference

    a = _answers(["a circle", "a fork"], [["circle"], ["circle"]], ["p0", "p1"])
    b = _answers(["a circle", "a fork", "a fork"], [["circle"], ["circle"], ["circle"]], ["p0", "x", "y"])
    d = paired_difference(a, b)  # only p0 is shared: both say "a circle"
    assert d["chair_i_diff"] == 0 and math.isnan(d["chair_i_diff_ci_low"])
    assert paired_difference(a, _answers(["a fork"], [["circle"]], ["q"])) == {}
    with pytest.raises(ValueError, match="occurs twice"):
        paired_difference(_answers(["a", "b"], [["circle"], ["circle"]], ["p0", "p0"]), b)


def test_evaluate_records_keeps_per_answer_counts_under_prompt_ids():
    recs = [
        {"id": "d0", "output": "a circle and a fork", "task": {"kind": "describe", "objects": ["circle"]}},
        {"id": "q0", "output": "yes", "task": {"kind": "pope", "label": "no", "split": "random"}},
        {"id": "q1", "output": "no", "task": {"kind": "pope", "label": "no", "split": "random"}},
    ]
    per = evaluate_records(recs, VOCAB)["per_answer"]
    counts = {"mentions": [2], "hallucinated": [1], "hit": [1], "gold": [1], "f1": [2 / 3]}
    assert per["describe"] == {"id": ["d0"], **counts}
    assert per["pope"] == {"id": ["q0", "q1"], "correct": [0, 1]}
