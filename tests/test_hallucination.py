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
