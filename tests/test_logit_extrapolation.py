"""Logit extrapolation on tiny offline llamas: the two end points, a hand-rolled reference, sampling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_generate import PROMPTS  # the same toy prompts as the generate stage's tests

from workflow_scripts.generate import _load_tokenizer, generate, render_prompt_ids
from workflow_scripts.logit_extrapolation import generate_logit_extrapolated
from workflow_scripts.records import record_field

GREEDY = {"preset": "greedy", "max_new_tokens": 8}


@pytest.fixture(scope="module")
def pair(tmp_path_factory, tiny_tokenizer_dir):
    from conftest import make_tiny_llama

    root = tmp_path_factory.mktemp("logit")
    sft = make_tiny_llama(root / "sft", tiny_tokenizer_dir, hidden=64, layers=2, seed=1)
    aligned = make_tiny_llama(root / "aligned", tiny_tokenizer_dir, hidden=64, layers=2, seed=2)
    return sft, aligned


def _strip(recs):
    return [{k: v for k, v in r.items() if k != "generator"} for r in recs]


def test_alpha_zero_is_the_aligned_model_and_minus_one_the_sft_model(pair):
    sft, aligned = pair
    at0 = generate_logit_extrapolated(aligned, sft, 0.0, PROMPTS, GREEDY, batch_size=3)
    at_minus1 = generate_logit_extrapolated(aligned, sft, -1.0, PROMPTS, GREEDY, batch_size=3)
    assert _strip(at0) == _strip(generate(aligned, PROMPTS, GREEDY, backend="hf", batch_size=3))
    assert _strip(at_minus1) == _strip(generate(sft, PROMPTS, GREEDY, backend="hf", batch_size=3))
    assert [r["output"] for r in at0] != [r["output"] for r in at_minus1]  # the two models do differ
    assert at0[0]["generator"] == "aligned+logit0" and record_field(at0[0], "task") == {"kind": "list"}


def _reference_greedy(a, s, tok, alpha: float, instruction: str, n: int) -> list[int]:
    """Full forward passes of both models per step, no cache, no padding: the definition itself."""
    ids = render_prompt_ids(tok, instruction)
    out = []
    with torch.inference_mode():
        for _ in range(n):
            x = torch.tensor([ids + out])
            la, ls = a(input_ids=x).logits[0, -1], s(input_ids=x).logits[0, -1]
            out.append(int(torch.argmax(la + alpha * (la - ls))))
    return out


def test_batched_cached_decoding_matches_the_definition(pair):
    sft, aligned = pair
    from transformers import AutoModelForCausalLM

    six = {"preset": "greedy", "max_new_tokens": 6}
    recs = generate_logit_extrapolated(aligned, sft, 1.5, PROMPTS, six, batch_size=5)
    tok = _load_tokenizer(aligned)
    a = AutoModelForCausalLM.from_pretrained(aligned, dtype=torch.float32).eval()
    s = AutoModelForCausalLM.from_pretrained(sft, dtype=torch.float32).eval()
    for p, r in zip(PROMPTS, recs):
        ref = _reference_greedy(a, s, tok, 1.5, p["instruction"], 6)
        eos = tok.eos_token_id
        ref = ref[: ref.index(eos)] if eos in ref else ref
        assert r["output"] == tok.decode(ref, skip_special_tokens=True), p["id"]
    one = generate_logit_extrapolated(aligned, sft, 1.5, PROMPTS[3:4], six)
    assert _strip(recs[3:4]) == _strip(one)  # greedy does not depend on the batch


def test_sampling_is_reproducible_and_alpha_zero_samples_as_the_aligned_model(pair):
    sft, aligned = pair
    demo = {"preset": "demo", "max_new_tokens": 8}
    a = generate_logit_extrapolated(aligned, sft, 2.0, PROMPTS, demo, batch_size=2)
    b = generate_logit_extrapolated(aligned, sft, 2.0, PROMPTS, demo, batch_size=2)
    assert a == b
    at0 = generate_logit_extrapolated(aligned, sft, 0.0, PROMPTS, demo, batch_size=2)
    assert _strip(at0) == _strip(generate(aligned, PROMPTS, demo, backend="hf", batch_size=2))


def test_pairs_with_different_vocabularies_are_refused(pair, tmp_path):
    from conftest import make_tiny_llama

    from workflow_scripts.world.tokenizer import train_tokenizer

    _, aligned = pair
    other_tok = tmp_path / "tok"
    train_tokenizer(["red blue green cat dog"] * 20, vocab_size=120).save_pretrained(other_tok)
    other = make_tiny_llama(tmp_path / "other", other_tok)
    with pytest.raises(ValueError, match="tokenizers of .* differ"):
        generate_logit_extrapolated(aligned, other, 1.0, PROMPTS, GREEDY)
    with pytest.raises(ValueError, match="does not exist"):
        generate_logit_extrapolated(aligned, tmp_path / "missing", 1.0, PROMPTS, GREEDY)


def test_logit_vs_weight_table_reads_rewards_and_time_per_token(tmp_path):
    """One row per kind at the same α: rewards from the score files, seconds per generated token
    from the generation job's benchmark file, the extrapolation job's time for the weight kind."""
    import csv

    from workflow_scripts.layout import Layout, Variant
    from workflow_scripts.logit_report import logit_vs_weight

    L = Layout("x", results=str(tmp_path))
    files = []

    def put(path: str, text: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
        files.append(path)

    bench = "s\th:m:s\tmax_rss\tcpu_time\n{s}\t0:00:10\t100\t{s}\n"
    for v, secs, reward in ((Variant.alpha_of("dpo", 2), 10.0, 0.5), (Variant.logit_of("dpo", 2), 30.0, 0.7)):
        put(L.generation("eval", v.group, v.name), json.dumps([{"id": i, "n_tokens": 5} for i in range(4)]))
        put(L.score("eval", "gold", v.group, v.name), json.dumps([{"id": i, "reward": reward} for i in range(4)]))
        put(L.benchmark("generate", "eval", v.group, v.name), bench.format(s=secs))
    put(L.benchmark("extrapolate", "dpo", "alpha2"), bench.format(s=3.0))
    rows = logit_vs_weight(files, ["gold"], str(tmp_path / "t.csv"))
    assert [(r["kind"], r["models_per_token"]) for r in rows] == [("weight", 1), ("logit", 2)]
    assert [r["s_per_token"] for r in rows] == [10.0 / 20, 30.0 / 20]
    assert [r["gold_mean"] for r in rows] == pytest.approx([0.5, 0.7])
    assert rows[0]["extrapolate_s"] == 3.0 and rows[1]["extrapolate_s"] == 0.0
    assert len(list(csv.DictReader(open(tmp_path / "t.csv")))) == 2
