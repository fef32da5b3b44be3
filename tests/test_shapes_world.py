"""The shapes world: seeded, the partner prior is real, corrections are minimal edits, gold is exact."""

from __future__ import annotations

from collections import Counter

import pytest

from workflow_scripts.hallucination import evaluate_records
from workflow_scripts.world import shapes as S


@pytest.fixture(scope="module")
def world():
    return S.build_shapes_world(seed=3, n_sft=300, n_pref=100, n_eval=60, n_dev=20)


def test_seeded_and_rendered_deterministically(world):
    again = S.build_shapes_world(seed=3, n_sft=300, n_pref=100, n_eval=60, n_dev=20)
    assert again == world
    sc = world["eval"][0]["scene"]
    assert S.render_scene(sc).tobytes() == S.render_scene(sc).tobytes()
    assert (
        S.render_scene(sc).tobytes() != S.render_scene(world["eval"][1]["scene"]).tobytes()
        or sc == world["eval"][1]["scene"]
    )
    assert S.build_shapes_world(seed=4, n_sft=300, n_pref=100, n_eval=60, n_dev=20) != world


def test_partners_cooccur(world):
    partner = S.partners(3)
    scenes = [r["scene"] for r in world["sft"] if r["style"] != "pope"]
    multi = [{o["shape"] for o in sc["objects"]} for sc in scenes if len(sc["objects"]) >= 2]
    with_partner = sum(any(partner[s] in shapes for s in shapes) for shapes in multi)
    assert with_partner / len(multi) > 0.6  # the prior the model learns to hallucinate from


def test_sft_styles_and_corrections(world):
    styles = Counter(r["style"] for r in world["sft"])
    assert {"good", "partner", "color", "omit", "pope"} <= set(styles)
    for r in world["prefs"]:
        if r["style"] == "partner":
            assert r["rejected"].startswith(r["chosen"][:-1]) and r["chosen"] != r["rejected"]


def test_gold_answers_score_perfectly(world):
    recs = []
    for r in world["eval"]:
        if r["task"]["kind"] == "describe":
            out = S.describe(r["scene"]["objects"])
        else:
            out = r["task"]["label"]
        recs.append({**r, "output": out})
    m = evaluate_records(recs, S.shapes_vocab())
    assert m["chair"]["chair_i"] == 0 and m["chair"]["recall"] == 1 and m["chair"]["object_f1"] == 1
    assert m["pope"]["all"]["accuracy"] == 1 and set(m["pope"]) == {"all", "random", "popular", "adversarial"}
    always_yes = evaluate_records(
        [{**r, "output": "yes"} for r in recs if r["task"]["kind"] == "pope"], S.shapes_vocab()
    )
    assert always_yes["pope"]["all"]["yes_ratio"] == 1 and always_yes["pope"]["all"]["accuracy"] == pytest.approx(0.5)


def test_adversarial_negatives_are_absent_partners(world):
    partner = S.partners(3)
    for r in world["eval"]:
        t = r["task"]
        if t["kind"] == "pope" and t["split"] == "adversarial" and t["label"] == "no":
            present = {o["shape"] for o in r["scene"]["objects"]}
            assert t["shape"] not in present
            if any(partner[s] not in present for s in present):
                assert t["shape"] in {partner[s] for s in present}


def test_unknown_style_fails():
    with pytest.raises(ValueError, match="unknown styles"):
        S.build_shapes_world(mix={"good": 1, "lies": 1})
