"""Per-answer failure flags: restating, restating-only, repetition, empty.

* **restating** — the answer's *opening reproduces the instruction's content*, as an echo of the
  request itself. Text is lower-cased and split into word tokens (``\\w+``, light plural stemming).
  The instruction *head* is its first ``RESTATE_HEAD_TOKENS`` tokens after leading courtesy words
  ("please", "can you" …). The answer restates when, within its first ``RESTATE_ANCHOR_WINDOW``
  tokens, a *segment* of the answer (text after a sentence end, a newline or a colon) starts with the
  head's first token — optionally after an echo lead such as "You asked me to", "You want to know",
  or an interjection ("Sure", "Okay") — and from there at least ``RESTATE_MIN_OVERLAP`` of the head's
  tokens follow *in order* (longest common subsequence). Anchoring on the instruction's leading verb /
  question word at the start of a segment is what separates an echo ("What is the capital of France?
  Paris …", "You asked me to write a poem about the sea …") from an ordinary answer that reuses the
  question's words: "The capital of France is Paris.", "No, it is not true that …" (a yes/no
  answer), "To solve the equation 2x + 3 = 7, subtract 3 …" (a purpose clause). Heads shorter than
  ``RESTATE_MIN_HEAD`` tokens ("Hi", "Thanks!") are never judged restated by this rule (a greeting
  answered with a greeting is not a failure); they can still be ``restating_only``.
* **restating_only** — nothing of substance beyond the restatement: the answer is non-empty, has *no
  novel content* (a word or symbol that is neither in the instruction, nor a stopword, nor a framing
  word such as "sure", "asked", "want", "here"), and either restates (rule above) or reproduces in
  order at least ``RESTATE_ONLY_MIN_COVERAGE`` of the instruction's *request* (paraphrases such as
  "You want to know the capital of France."). The request is the instruction without its input: text
  after the first colon or newline and quoted spans are input. So an answer that transforms the input
  ("Capitalize: hello world" → "Hello World", "Sort: pear apple fig" → "apple fig pear") is not
  restating-only even though every word comes from the instruction; neither is "What is the capital
  of France? Paris" (Paris is new) nor an answer that picks an option out of a multiple-choice
  prompt; "Sure! Here is a poem about the sea:" (and nothing else) is. ``restating_only`` implies
  ``restating``.
* **repetition** — ``repeated_ngram_ratio`` is the fraction of word-3-gram occurrences that repeat an
  earlier 3-gram (``1 - distinct_3``; 0.0 when the answer has no 3-gram). ``repetitive`` is true when
  that ratio is ≥ ``REPETITIVE_RATIO`` over the whole answer (with at least
  ``REPETITIVE_MIN_NGRAMS`` 3-grams), or ≥ ``REPETITIVE_TAIL_RATIO`` over the last
  ``REPETITIVE_TAIL_TOKENS`` tokens — the latter catches answers that degenerate into a loop only at
  the end and then hit the token limit. ``distinct_1``/``distinct_2`` are unique/total n-grams (NaN
  when the answer has fewer than n tokens; aggregates ignore NaN).
* **empty** — no word token and no symbol (whitespace or punctuation only). Emoji and other symbols
  (Unicode categories S*) are content: "👍" is an answer.

Precision and recall of each flag are measured on the labelled answers in
``tests/data/flag_labels.jsonl`` (GPT-4 MT-Bench references, hand-written real-style answers, the demo
world's styles): ``python -m workflow_scripts.metrics.flag_audit``; the table is in the README.
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
RESTATE_ONLY_MAX_INSTRUCTION = 400
"""Instruction tokens searched for echoed pieces (bounds the quadratic alignment on pasted texts)."""
REPETITIVE_RATIO = 0.40
REPETITIVE_MIN_NGRAMS = 10
REPETITIVE_TAIL_TOKENS = 120
REPETITIVE_TAIL_RATIO = 0.60

_TOKEN_RE = re.compile(r"\w+", re.UNICODE)
_SEGMENT_END_RE = re.compile(r"[.!?。！？:]+(?:\s|$)|\n+")
"""Where an answer segment ends: an echo starts a sentence, a line, or follows "Question:"."""
_INPUT_RE = re.compile(r"[\"“”«»][^\"“”«»]*[\"“”«»]|[:\n].*", re.DOTALL)
"""The input part of an instruction: quoted spans and everything after the first colon / newline."""

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
_REPORTED = frozenset(
    "ask asks asked asking question request requested want wants wanted like know wonder wondering "
    "instruction task prompt query curious interested need needs looking".split()
)
"""Words that announce an echo of the request ("You asked me to …", "You want to know …")."""
_INTERJECTIONS = frozenset("sure okay ok certainly absolutely course of alright great".split())
_ECHO_LEAD = _REPORTED | _INTERJECTIONS | frozenset("you i me my your we us the is was that to s re ve d ll m".split())


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


def _symbols(text: str) -> list[str]:
    """Symbol characters (emoji, math and currency signs: Unicode categories S*), which are content."""
    return [c for c in unicodedata.normalize("NFKC", text or "") if unicodedata.category(c).startswith("S")]


def _segment_starts(text: str) -> set[int]:
    """Token indices at which an answer segment (sentence, line, text after a colon) starts."""
    starts, n = {0}, 0
    for piece in _SEGMENT_END_RE.split(text or ""):
        n += len(_tokens(piece))
        starts.add(n)
    return starts


def _echo_lead(prefix: Sequence[str], courtesy: Sequence[str]) -> bool:
    """Tokens between a segment start and an echo: empty, the instruction's own courtesy words
    ("You can see …" echoing "You can see …"), "you asked me to"-like, or "Sure"-like."""
    if not prefix or list(prefix) == list(courtesy[-len(prefix) :]):
        return True
    if not all(t in _ECHO_LEAD for t in prefix):
        return False
    return any(t in _REPORTED for t in prefix) or all(t in _INTERJECTIONS for t in prefix)


def _request(instruction: str) -> list[str]:
    """The instruction's request tokens (its input — quoted spans, text after ':' or a newline — removed).

    An instruction that *is* only input ("hello world") keeps its tokens."""
    req = _tokens(_INPUT_RE.sub(" ", instruction or ""))
    return _instruction_head(req) if req else _instruction_head(_tokens(instruction))


def _only_echoes(output: str, ans: list[str], request: list[str], instr: list[str], restating: bool) -> bool:
    """The answer echoes the instruction's request and every segment of it is an echo.

    The request is echoed when the answer restates (anchored rule) or reproduces in order
    ``RESTATE_ONLY_MIN_COVERAGE`` of the request. Each segment with content must then either cover
    that much of the request (a paraphrase: "You want to know the capital of France.") or be a piece
    of the instruction (``RESTATE_MIN_OVERLAP`` of its tokens found in order there: a long prompt
    echoed whole). Input reproduced without the request ("Capitalize: hello world" → "hello world")
    and a segment that adds even instruction words ("Say tea 4 times. tea tea tea tea") are answers."""
    if not request:
        return False
    cover = _lcs_len(request, ans[: 3 * RESTATE_HEAD_TOKENS]) / len(request)
    if not (restating or cover >= RESTATE_ONLY_MIN_COVERAGE):
        return False
    pool = instr[:RESTATE_ONLY_MAX_INSTRUCTION]
    for piece in _SEGMENT_END_RE.split(output or ""):
        seg = _tokens(piece)
        if not _content(seg):  # framing, or symbols only (novel symbols were ruled out by the caller)
            continue
        if _lcs_len(request, seg) / len(request) >= RESTATE_ONLY_MIN_COVERAGE:
            continue
        if _lcs_len(seg, pool) / len(seg) < RESTATE_MIN_OVERLAP:
            return False
    return True


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


def _restate_overlap(head: list[str], ans_tokens: list[str], starts: set[int], courtesy: list[str]) -> float:
    """Best in-order overlap of ``head`` with the answer, anchored on the head's first token where it
    opens an answer segment (after at most an echo lead, see :func:`_echo_lead`)."""
    if not head:
        return 0.0
    best = 0
    for p in range(min(RESTATE_ANCHOR_WINDOW, len(ans_tokens))):
        if ans_tokens[p] != head[0]:
            continue
        seg = max(s for s in starts if s <= p)
        if not _echo_lead(ans_tokens[seg:p], courtesy):
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
    symbols = _symbols(output)
    empty = not ans and not symbols

    head = _instruction_head(instr)
    courtesy = instr[: instr.index(head[0])] if head else []
    overlap = _restate_overlap(head, ans, _segment_starts(output), courtesy) if ans else 0.0
    restating = len(head) >= RESTATE_MIN_HEAD and overlap >= RESTATE_MIN_OVERLAP

    restating_only = False
    if not empty and instr:
        instr_set = set(instr) | set(_symbols(instruction))
        novel = [t for t in _content(ans) + symbols if t not in instr_set]
        restating_only = not novel and _only_echoes(output, ans, _request(instruction), instr, restating)
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
