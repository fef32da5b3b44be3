"""DDPO (segment-weighted DPO): the token diff, and the loss against TRL's DPO and an independent sum.

TRL is pinned (requirements.txt) because the DDPO trainer changes what TRL's fused LM head returns:
with γ = 1 and summed scores it must be TRL's DPO loss on the same batch, bit for bit.
"""

from __future__ import annotations

import math

import pytest

from tests.trl_args import cpu_dpo_config
from workflow_scripts.train.ddpo import changed_tokens, make_ddpo_trainer_class
from workflow_scripts.train.preference import validate_ddpo

PAIRS = [
    ("list three colors", "one two three four five red", "one two three four five dog"),
    ("what is the opposite of hot", "the opposite of hot is cold", "the opposite of hot is big"),
    ("repeat the word cat two times", "red blue green yellow cat", "red blue green yellow dog"),
]


def test_changed_tokens_short_matches_count_as_changed():
    ca, cb = changed_tokens([1, 2, 3, 4, 5, 6], [1, 2, 3, 9, 5, 6])
    assert ca == [False, False, False, True, True, True]  # the 2-token match 5 6 is too short
    assert cb == [False, False, False, True, True, True]
    ca, cb = changed_tokens([7, 1, 2, 3], [1, 2, 3])
    assert ca == [True, False, False, False] and cb == [False, False, False]


@pytest.mark.parametrize("bad", [None, {"gamma": 2}, {"gamma": 0, "average": True}, {"gamma": 2, "average": "yes"}])
def test_ddpo_settings_must_be_explicit(bad):
    with pytest.raises(ValueError, match="ddpo"):
        validate_ddpo(bad)


def _trainers(tmp_path, tiny_llama_factory, tiny_tokenizer_dir, *, gamma, average):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOTrainer

    from workflow_scripts.train.base import _load_tokenizer
    from workflow_scripts.train.data import render_pair

    policy_dir = tiny_llama_factory("policy", seed=0)
    ref_dir = tiny_llama_factory("ref", seed=1)
    tok = _load_tokenizer(policy_dir)
    rows = []
    for p, c, r in PAIRS:
        pt, ct = render_pair(tok, p, c)
        _, rt = render_pair(tok, p, r)
        rows.append({"prompt": pt, "chosen": ct, "rejected": rt})
    ds = Dataset.from_list(rows)
    out = []
    for cls, extra in ((DPOTrainer, {}), (make_ddpo_trainer_class(), {"gamma": gamma, "average": average})):
        args = cpu_dpo_config(tmp_path / "scratch")
        model = AutoModelForCausalLM.from_pretrained(policy_dir)
        ref = AutoModelForCausalLM.from_pretrained(ref_dir)
        out.append(cls(model=model, ref_model=ref, args=args, train_dataset=ds, processing_class=tok, **extra))
    return out


def _batch(trainer):
    return trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])


def test_gamma_one_summed_is_trl_dpo(tmp_path, tiny_llama_factory, tiny_tokenizer_dir):
    dpo, ddpo = _trainers(tmp_path, tiny_llama_factory, tiny_tokenizer_dir, gamma=1.0, average=False)
    a = dpo.compute_loss(dpo.model, _batch(dpo))
    b = ddpo.compute_loss(ddpo.model, _batch(ddpo))
    assert a.item() != pytest.approx(math.log(2))  # the reference differs, so the loss is informative
    assert b.item() == a.item()


def _weighted_logp(model, batch, gamma, average):
    """Σ w log p over completion tokens with w = γ after the common prefix (≥ 3 tokens) of each pair."""
    import torch

    ids, mask = batch["input_ids"], batch["completion_mask"]
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=batch["attention_mask"]).logits.float()
    logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
    n = ids.size(0) // 2
    scores = []
    for row in range(ids.size(0)):
        pos = mask[row].nonzero().flatten()
        mine = ids[row, pos].tolist()
        other_row = row + n if row < n else row - n
        other = ids[other_row, mask[other_row].nonzero().flatten()].tolist()
        k = 0
        while k < min(len(mine), len(other)) and mine[k] == other[k]:
            k += 1
        assert k >= 3 and len(mine) - k <= 2 and len(other) - k <= 2  # the rule below is then exact
        w = torch.tensor([1.0] * k + [gamma] * (len(mine) - k))
        s = (logp[row, pos - 1] * w).sum()
        scores.append(s / w.sum() if average else s)
    return torch.stack(scores)


@pytest.mark.parametrize("average", [False, True])
def test_gamma_two_is_the_weighted_logprob_dpo(tmp_path, tiny_llama_factory, tiny_tokenizer_dir, average):
    import torch.nn.functional as F

    _, ddpo = _trainers(tmp_path, tiny_llama_factory, tiny_tokenizer_dir, gamma=2.0, average=average)
    batch = _batch(ddpo)
    got = ddpo.compute_loss(ddpo.model, batch).item()
    pol = _weighted_logp(ddpo.model, batch, 2.0, average)
    ref = _weighted_logp(ddpo.ref_model, batch, 2.0, average)
    n = len(PAIRS)
    margin = (pol[:n] - ref[:n]) - (pol[n:] - ref[n:])
    want = (-F.logsigmoid(0.1 * margin)).mean().item()
    assert got == pytest.approx(want, rel=1e-5, abs=1e-7)
    _, plain = _trainers(tmp_path, tiny_llama_factory, tiny_tokenizer_dir, gamma=1.0, average=average)
    assert got != pytest.approx(plain.compute_loss(plain.model, _batch(plain)).item(), rel=1e-4)


# ---------------------------------------------------------------- explicit segments

MIDDLE = [  # one word changed in the middle: the diff marks exactly that word's tokens
    ("list three colors", "one two three red four five cat", "one two three dog four five cat"),
    ("what is the opposite of hot", "one two three cold four five", "one two three big four five"),
]


def _span(text, word):
    at = text.index(word)
    return [at, at + len(word)]


def _segment_rows(words):
    """MIDDLE as records whose segments mark ``words[k]`` = (chosen word, rejected word)."""
    return [
        {
            "id": f"p{k}",
            "prompt": p,
            "chosen": c,
            "rejected": r,
            "segments": {"chosen": [_span(c, wc)], "rejected": [_span(r, wr)]},
        }
        for k, ((p, c, r), (wc, wr)) in enumerate(zip(MIDDLE, words))
    ]


def _ddpo_trainer(tmp_path, tiny_llama_factory, rows):
    from transformers import AutoModelForCausalLM

    from workflow_scripts.train.base import _load_tokenizer
    from workflow_scripts.train.preference import _render_preference_rows

    policy_dir = tiny_llama_factory("policy", seed=0)
    tok = _load_tokenizer(policy_dir)
    ds, _ = _render_preference_rows(tok, rows, 64, segments=any("segments" in r for r in rows))
    args = cpu_dpo_config(tmp_path / "scratch")
    model = AutoModelForCausalLM.from_pretrained(policy_dir)
    ref = AutoModelForCausalLM.from_pretrained(tiny_llama_factory("ref", seed=1))
    cls = make_ddpo_trainer_class()
    return cls(model=model, ref_model=ref, args=args, train_dataset=ds, processing_class=tok, gamma=2.0, average=False)


def _collated(trainer):
    dl = trainer.get_train_dataloader()  # TRL's column removal and the wrapped collator, as in training
    return next(iter(dl))


def test_explicit_segments_that_agree_with_the_diff_give_its_weights_and_loss(tmp_path, tiny_llama_factory):
    from workflow_scripts.train.ddpo import segment_weights
    from workflow_scripts.train.ddpo_segments import FLAGS_KEY

    rows = _segment_rows([("red", "dog"), ("cold", "big")])
    trainer = _ddpo_trainer(tmp_path, tiny_llama_factory, rows)
    batch = _collated(trainer)
    flags = batch[FLAGS_KEY]
    assert all(f is not None and sum(f) >= 1 for f in flags)
    ids, mask = batch["input_ids"], batch["completion_mask"]
    explicit = segment_weights(ids, mask, 2.0, explicit=flags)
    assert explicit.equal(segment_weights(ids, mask, 2.0))
    plain = _ddpo_trainer(tmp_path, tiny_llama_factory, [{k: v for k, v in r.items() if k != "segments"} for r in rows])
    plain_batch = _collated(plain)
    assert FLAGS_KEY not in plain_batch and plain_batch["input_ids"].equal(ids)
    assert trainer.compute_loss(trainer.model, batch).item() == plain.compute_loss(plain.model, plain_batch).item()


def test_explicit_segments_weigh_the_spans_they_name(tmp_path, tiny_llama_factory):
    from workflow_scripts.train.ddpo import segment_weights
    from workflow_scripts.train.ddpo_segments import FLAGS_KEY

    rows = _segment_rows([("one", "cat"), ("two", "five")])
    trainer = _ddpo_trainer(tmp_path, tiny_llama_factory, rows)
    batch = _collated(trainer)
    ids, mask = batch["input_ids"], batch["completion_mask"]
    w = segment_weights(ids, mask, 2.0, explicit=batch[FLAGS_KEY])
    assert not w.equal(segment_weights(ids, mask, 2.0))
    tok = trainer.processing_class
    for row, word in enumerate(["one", "two", "cat", "five"]):  # chosen rows, then rejected rows
        heavy = tok.decode(ids[row][w[row] == 2.0].tolist())
        assert heavy.strip() == word


@pytest.mark.parametrize(
    "segments, match",
    [
        ({"chosen": [[0, 99]], "rejected": []}, r"segments\.chosen\[0\] = \[0, 99\]"),
        ({"chosen": [[3, 3]], "rejected": []}, r"segments\.chosen\[0\]"),
        ({"chosen": [], "rejected": [[-1, 2]]}, r"segments\.rejected\[0\]"),
        ({"chosen": [[0, 1.5]], "rejected": []}, r"segments\.chosen\[0\]"),
        ({"chosen": []}, "segments must be"),
        ({"chosen": "0-3", "rejected": []}, "segments.chosen must be a list"),
    ],
)
def test_malformed_segments_name_the_record(tmp_path, segments, match):
    from workflow_scripts.common import write_jsonl
    from workflow_scripts.train.preference import prepare_preference_rows

    rows = [{"id": f"p{k}", "prompt": p, "chosen": c, "rejected": r} for k, (p, c, r) in enumerate(MIDDLE)]
    rows[1]["segments"] = segments
    path = tmp_path / "prefs.jsonl"
    write_jsonl(path, rows)
    with pytest.raises(ValueError, match=match) as err:
        prepare_preference_rows(str(path), 0.5)  # a record outside the trained fraction is checked too
    assert "record 'p1'" in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)
