"""Reward stage on tiny offline reward models: formatting (one BOS), batching, preference, files."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch

from workflow_scripts import score as S
from workflow_scripts.score import PLAIN_FORMAT, encode_for_rm, format_for_rm, score, tokenizer_adds_bos, write_scores

RECORDS = [
    {"id": "a", "instruction": "list three colors", "output": "red blue green"},
    {"id": "b", "instruction": "what is the opposite of hot", "output": "cold"},
    {
        "id": "c",
        "instruction": "repeat the word cat two times please",
        "output": "cat cat and then some more words one two three four five big small",
    },
    {"id": "d", "instruction": "answer", "output": ""},
    {"id": "e", "instruction": "reverse these words one two", "output": "two one"},
]


@pytest.fixture(scope="module")
def bos_tokenizer_dir(tmp_path_factory, tiny_tokenizer_dir):
    """The tiny tokenizer changed to add BOS by itself, like Llama/Mistral tokenizers do."""
    from tokenizers import processors
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    bos = tok.bos_token_id
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A", pair="<|bos|> $A $B", special_tokens=[("<|bos|>", bos)]
    )
    out = tmp_path_factory.mktemp("bos-tok")
    tok.save_pretrained(out)
    assert AutoTokenizer.from_pretrained(out)("cat")["input_ids"][0] == bos
    return out


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory, tiny_tokenizer_dir):
    from conftest import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("rm") / "rm", tiny_tokenizer_dir, reward=True, hidden=32, seed=3)


@pytest.fixture(scope="module")
def bos_rm_dir(tmp_path_factory, bos_tokenizer_dir):
    from conftest import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("rm-bos") / "rm", bos_tokenizer_dir, reward=True, hidden=32, seed=4)


# ------------------------------------------------------------------ formatting


@pytest.mark.parametrize("which", ["template_bos_only", "tokenizer_adds_bos"])
def test_exactly_one_bos(which, tiny_tokenizer_dir, bos_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir if which == "template_bos_only" else bos_tokenizer_dir)
    assert tokenizer_adds_bos(tok) is (which == "tokenizer_adds_bos")
    ids, n_trunc = encode_for_rm(tok, RECORDS, None)
    assert n_trunc == 0
    for row in ids:
        assert row.count(tok.bos_token_id) == 1 and row[0] == tok.bos_token_id
    text = format_for_rm(tok, "list three colors", "red blue green")
    assert text.count("<|user|>") == 1 and text.count("list three colors") == 1
    assert text.count("<|assistant|>") == 1 and text.rstrip().endswith("red blue green<|end|>")


def test_matches_the_official_expo_formatting_for_bos_adding_tokenizers(bos_tokenizer_dir):
    """Official: apply_chat_template(tokenize=False).replace(bos_token, '') then tokenize."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bos_tokenizer_dir)
    chat = [{"role": "user", "content": "list three colors"}, {"role": "assistant", "content": "red blue green"}]
    official = tok.apply_chat_template(chat, tokenize=False).replace(tok.bos_token, "")
    assert format_for_rm(tok, "list three colors", "red blue green") == official


def test_score_feeds_the_encoded_ids_to_the_model(bos_rm_dir, monkeypatch):
    """Spy on the model's forward: every row starts with one BOS, nothing else is BOS."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    seen = []
    orig = AutoModelForSequenceClassification.from_pretrained

    def spy(*a, **kw):
        m = orig(*a, **kw)
        m.register_forward_pre_hook(
            lambda mod, args, kwargs: seen.append((kwargs["input_ids"].clone(), kwargs["attention_mask"].clone())),
            with_kwargs=True,
        )
        return m

    monkeypatch.setattr(AutoModelForSequenceClassification, "from_pretrained", spy)
    score(bos_rm_dir, RECORDS, batch_size=2)
    bos = AutoTokenizer.from_pretrained(bos_rm_dir).bos_token_id
    rows = [ids[mask.bool()].tolist() for batch, masks in seen for ids, mask in zip(batch, masks)]
    assert len(rows) == len(RECORDS)
    assert all(r.count(bos) == 1 and r[0] == bos for r in rows)


def test_plain_format_without_chat_template(tiny_tokenizer_dir, caplog):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    tok.chat_template = None
    assert format_for_rm(tok, "q", "a") == PLAIN_FORMAT.format(instruction="q", output="a") == "User: q\n\nAssistant: a"
    with caplog.at_level(logging.WARNING):
        encode_for_rm(tok, RECORDS[:1], None)
    assert "no chat template" in caplog.text


# ------------------------------------------------------------------ scoring


def test_batched_equals_unbatched(rm_dir, bos_rm_dir):
    for d in (rm_dir, bos_rm_dir):
        one = score(d, RECORDS, batch_size=1)
        many = score(d, RECORDS, batch_size=4)
        assert len(one) == len(RECORDS)
        assert all(isinstance(v, float) and math.isfinite(v) for v in one)
        assert max(abs(x - y) for x, y in zip(one, many)) < 1e-5
        assert len(set(round(v, 6) for v in one)) > 1  # different answers, different rewards


def test_raw_logit_equals_manual_forward(rm_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(rm_dir)
    model = AutoModelForSequenceClassification.from_pretrained(rm_dir).eval()
    r = RECORDS[0]
    ids = tok(format_for_rm(tok, r["instruction"], r["output"]), return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        expected = model(input_ids=ids).logits[0, 0].item()  # no sigmoid, no softmax
    assert abs(score(rm_dir, [r])[0] - expected) < 1e-5


def _train_toy_rm(out, tokenizer_dir, pairs, steps=40):
    """A tiny RM trained with the Bradley-Terry loss to prefer each pair's first answer."""
    from conftest import make_tiny_llama
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    make_tiny_llama(out, tokenizer_dir, reward=True, hidden=32, seed=5)
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out)
    recs = [{"instruction": q, "output": a} for q, good, bad in pairs for a in (good, bad)]
    ids, _ = encode_for_rm(tok, recs, None)
    tok.padding_side = "right"
    batch = tok.pad({"input_ids": ids}, return_tensors="pt")
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        r = model(**batch).logits[:, 0]
        loss = -torch.nn.functional.logsigmoid(r[0::2] - r[1::2]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(out)
    return out


def test_rm_that_prefers_a_known_answer_scores_it_higher(tmp_path, tiny_tokenizer_dir):
    pairs = [
        ("list three colors", "red blue green", "cat cat cat"),
        ("what is the opposite of hot", "cold", "cat cat cat"),
        ("what is the opposite of big", "small", "cat cat cat"),
    ]
    rm = _train_toy_rm(tmp_path / "toy-rm", tiny_tokenizer_dir, pairs)
    recs = [
        {"id": f"{i}{k}", "instruction": q, "output": a}
        for i, (q, good, bad) in enumerate(pairs)
        for k, a in (("good", good), ("bad", bad))
    ]
    rewards = score(rm, recs, batch_size=3)
    for i in range(len(pairs)):
        assert rewards[2 * i] > rewards[2 * i + 1] + 1.0, (i, rewards)


def test_truncation_is_reported(rm_dir, caplog):
    long = [{"id": "x", "instruction": "list three colors", "output": "red blue green " * 40}]
    with caplog.at_level(logging.WARNING, logger="workflow_scripts.score"):
        v = score(rm_dir, long + RECORDS[:1], max_length=32)
    assert len(v) == 2 and all(math.isfinite(x) for x in v)
    assert "1 of 2 inputs were longer than 32 tokens" in caplog.text


def test_trust_remote_code_only_when_asked(rm_dir, monkeypatch):
    import transformers

    calls = []
    for cls in (transformers.AutoTokenizer, transformers.AutoModelForSequenceClassification):
        orig = cls.from_pretrained

        def spy(*a, _orig=orig, **kw):
            calls.append(kw.get("trust_remote_code", "absent"))
            return _orig(*a, **{k: v for k, v in kw.items() if k != "trust_remote_code"})

        monkeypatch.setattr(cls, "from_pretrained", spy)
    score(rm_dir, RECORDS[:1])
    assert calls == ["absent", "absent"]
    calls.clear()
    score(rm_dir, RECORDS[:1], trust_remote_code=True)
    assert calls == [True, True]


def test_bad_inputs(rm_dir, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        score(tmp_path / "nope", RECORDS)
    with pytest.raises(ValueError, match=r"record #0 \(id='q'\) lacks"):
        score(rm_dir, [{"id": "q", "instruction": "x"}])
    assert score(rm_dir, []) == []


# ------------------------------------------------------------------ files and CLI


def test_write_scores(tmp_path):
    out = tmp_path / "s" / "scores.json"
    write_scores(["a", "b"], [1.5, -2], out)
    assert json.loads(out.read_text()) == [{"id": "a", "reward": 1.5}, {"id": "b", "reward": -2.0}]
    with pytest.raises(ValueError, match="2 ids but 1 rewards"):
        write_scores(["a", "b"], [1.0], out)
    with pytest.raises(ValueError, match="reward for id 'b' is not finite"):
        write_scores(["a", "b"], [1.0, float("nan")], out)


def test_cli(rm_dir, tmp_path):
    from workflow_scripts.common import write_json

    gens = tmp_path / "gens.json"
    write_json(gens, [dict(r, generator="m", dataset="toy") for r in RECORDS])
    out = tmp_path / "scores.json"
    S.main(
        [
            "--rm",
            str(rm_dir),
            "--generations",
            str(gens),
            "--out",
            str(out),
            "--batch-size",
            "2",
            "--log",
            str(tmp_path / "score.log"),
        ]
    )
    rows = json.loads(out.read_text())
    assert [r["id"] for r in rows] == [r["id"] for r in RECORDS]
    direct = score(rm_dir, RECORDS)
    assert max(abs(r["reward"] - d) for r, d in zip(rows, direct)) < 1e-5
    assert "wrote" in (tmp_path / "score.log").read_text()
