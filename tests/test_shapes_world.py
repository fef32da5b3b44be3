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


def test_sft_yes_no_rows_are_balanced_with_a_planted_yes_bias():
    w = S.build_shapes_world(seed=1, n_sft=400, n_pref=10, n_eval=1, n_dev=1, questions=3)
    qs = [r for r in w["sft"] if r["style"] == "pope"]
    assert len(qs) == 3 * 400
    partner = S.partners(1)
    present_asked = wrong_yes = 0
    for r in qs:
        shape = r["prompt"].split()[3]
        present = {o["shape"] for o in r["scene"]["objects"]}
        present_asked += shape in present
        if shape in present:
            assert r["completion"] == "yes"
        elif r["completion"] == "yes":  # only an absent partner gets a wrong "yes"
            wrong_yes += 1
            assert shape in {partner[s] for s in present}
    assert present_asked == len(qs) // 2
    assert 0.05 < wrong_yes / len(qs) < 0.15  # absent half × partner half × YES_BIAS ≈ 0.09


def test_corrections_fix_additions_and_omissions_alike():
    w = S.build_shapes_world(seed=2, n_sft=10, n_pref=300, n_eval=1, n_dev=1)
    styles = Counter(r["style"] for r in w["prefs"])
    assert styles["partner"] > styles["omit"] > 0 and styles["color"] > 0
    vocab = S.shapes_vocab()
    from workflow_scripts.hallucination import mentioned_objects

    for r in w["prefs"]:
        n_chosen, n_rejected = (len(mentioned_objects(r[k], vocab)) for k in ("chosen", "rejected"))
        # the chosen answer is longer as often as shorter: DPO cannot win by saying less
        assert n_chosen == n_rejected + {"partner": -1, "omit": 1}.get(r["style"], 0) or r["style"] == "pope"


def test_split_sizes_are_independent_and_descriptions_come_first():
    small = S.build_shapes_world(seed=5, n_sft=50, n_pref=30, n_eval=5, n_dev=5)
    big = S.build_shapes_world(seed=5, n_sft=50, n_pref=30, n_eval=40, n_dev=5)
    assert small["sft"] == big["sft"] and small["prefs"] == big["prefs"] and small["dev"] == big["dev"]
    kinds = [r["task"]["kind"] for r in big["eval"]]
    assert kinds[:40] == ["describe"] * 40 and set(kinds[40:]) == {"pope"}


def test_prompt_set_keeps_every_scene_and_pope_split(tmp_path):
    from workflow_scripts.common import read_jsonl, write_jsonl
    from workflow_scripts.world.shapes_build import write_shapes_prompts

    w = S.build_shapes_world(seed=0, n_sft=10, n_pref=10, n_eval=30, n_dev=1)
    write_jsonl(tmp_path / "eval.jsonl", w["eval"])
    write_shapes_prompts(str(tmp_path / "eval.jsonl"), str(tmp_path / "set.jsonl"), {})
    kept = read_jsonl(tmp_path / "set.jsonl")
    # one instruction over 30 images, and POPE's splits repeating a question: all are prompts
    assert len(kept) == len(w["eval"]) == 30 * 7
