"""The demo world: deterministic data, a gold reward that grades the failure modes, held-out splits."""

import random
from pathlib import Path

import pytest
import yaml

from workflow_scripts.world.tasks import (
    HELD_OUT_KINDS,
    STYLES,
    answer_in_style,
    build_world,
    gold_reward,
    grade,
    sample_task,
    split_pool,
)


def test_world_is_deterministic():
    a = build_world(seed=3, n_sft=200, n_pref=100, n_eval=30, n_dev=20)
    b = build_world(seed=3, n_sft=200, n_pref=100, n_eval=30, n_dev=20)
    c = build_world(seed=4, n_sft=200, n_pref=100, n_eval=30, n_dev=20)
    assert a == b
    assert a["sft"] != c["sft"]
    assert {k: len(v) for k, v in a.items()} == {"sft": 200, "prefs": 100, "eval": 30, "dev": 20}


def test_eval_and_dev_instructions_are_held_out_from_training():
    w = build_world(seed=0, n_sft=2000, n_pref=1000, n_eval=67, n_dev=52)
    train = {r["prompt"] for r in w["sft"]} | {r["prompt"] for r in w["prefs"]}
    for split in ("eval", "dev"):
        held = [r for r in w[split] if r["task"]["kind"] in HELD_OUT_KINDS]
        assert held, "every split must contain held-out families"
        assert not {r["instruction"] for r in held} & train
    evals = {r["instruction"] for r in w["eval"] if r["task"]["kind"] in HELD_OUT_KINDS}
    devs = {r["instruction"] for r in w["dev"] if r["task"]["kind"] in HELD_OUT_KINDS}
    assert not evals & devs


def test_eval_and_dev_prompts_are_distinct_instructions_up_to_the_split_pool():
    # the default world's pools: its eval and dev sets hold all of them, once each
    pools = {s: split_pool(s, dev_frac=0.2, eval_frac=0.3) for s in ("eval", "dev")}
    assert {s: len(p) for s, p in pools.items()} == {"eval": 67, "dev": 52}
    world = yaml.safe_load((Path(__file__).parents[1] / "config.yaml").read_text())["world"]
    assert (world["n_eval"], world["n_dev"]) == (67, 52)  # the default demo asks for all of them
    w = build_world(seed=0, n_sft=20, n_pref=20, n_eval=67, n_dev=52)
    for split, pool in pools.items():
        instructions = [r["instruction"] for r in w[split]]
        assert sorted(instructions) == pool  # distinct, and every one drawable
        assert {r["task"]["kind"] for r in w[split]} == {"list", "repeat", "opposite"}
    with pytest.raises(ValueError, match=r"^world.n_eval = 68, but the eval split holds 67 distinct instructions"):
        build_world(seed=0, n_sft=10, n_pref=10, n_eval=68, n_dev=1)


def test_preference_pairs_prefer_the_good_style():
    w = build_world(seed=0, n_sft=50, n_pref=300, n_eval=5, n_dev=5)
    assert all(r["chosen"] != r["rejected"] for r in w["prefs"])
    # the gold reward agrees with every pair's preference, for every flawed style
    rng = random.Random(1)
    for _ in range(300):
        t = sample_task(rng)
        good = grade(t.as_record(), t.instruction, answer_in_style(t, "good", rng))["gold"]
        for style in STYLES[1:]:
            bad = grade(t.as_record(), t.instruction, answer_in_style(t, style, rng))["gold"]
            assert good > bad, (t.instruction, style)


@pytest.mark.parametrize(
    "task,instruction,output,gold,flags",
    [
        ({"kind": "list", "category": "colors", "n": 3}, "List 3 colors.", "red, blue, green", 1.0, {}),
        (
            {"kind": "list", "category": "colors", "n": 3},
            "List 3 colors.",
            "List 3 colors. red, blue, green",
            0.7,
            {"restated": True},
        ),
        (
            {"kind": "list", "category": "colors", "n": 3},
            "List 3 colors.",
            "List 3 colors.",
            -0.3,
            {"restated": True, "restated_only": True},
        ),
        ({"kind": "repeat", "word": "cat", "n": 2}, "Say cat 2 times.", "cat cat", 1.0, {}),
        (
            {"kind": "repeat", "word": "cat", "n": 2},
            "Say cat 2 times.",
            "cat cat cat cat cat cat",
            -0.4,
            {"rambling": True},
        ),
        ({"kind": "opposite", "word": "hot"}, "Opposite of hot?", "cold", 1.0, {}),
        ({"kind": "opposite", "word": "hot"}, "Opposite of hot?", "cold cold cold", 0.1, {"rambling": True}),
        ({"kind": "opposite", "word": "hot"}, "Opposite of hot?", "", 0.0, {}),
        ({"kind": "reverse", "seq": ["a", "b", "c"]}, "Reverse: a b c", "c b a", 1.0, {}),
    ],
)
def test_gold_reward_grades_hand_written_answers(task, instruction, output, gold, flags):
    g = grade(task, instruction, output)
    assert g["gold"] == pytest.approx(gold)
    for key, value in flags.items():
        assert g[key] is value


def test_gold_reward_needs_world_metadata():
    with pytest.raises(ValueError, match="no 'task' field"):
        gold_reward({"id": "x", "instruction": "hi", "output": "hello"})


def test_unknown_style_in_mix_is_rejected():
    with pytest.raises(ValueError, match="unknown answer styles"):
        build_world(seed=0, n_sft=10, n_pref=10, n_eval=1, n_dev=1, mix={"good": 1, "sloppy": 1})


def test_tokenizer_keeps_words_whole_and_round_trips(tiny_tokenizer_dir):

    from workflow_scripts.world.tasks import build_world
    from workflow_scripts.world.tokenizer import train_tokenizer

    w = build_world(seed=0, n_sft=300, n_pref=100, n_eval=5, n_dev=5)
    tok = train_tokenizer([r["prompt"] + " " + r["completion"] for r in w["sft"]], vocab_size=300)
    text = "Say juice 4 times."
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    # the same word is the same token in the instruction and at the start of the answer
    chat = tok.apply_chat_template(
        [{"role": "user", "content": text}, {"role": "assistant", "content": "juice juice"}], tokenize=False
    )
    pieces = tok.convert_ids_to_tokens(tok(chat)["input_ids"])
    assert pieces.count("▁juice") == 3
    assert pieces[-1] == tok.eos_token
