"""Object-hallucination metrics: CHAIR (with recall beside it), POPE existence accuracy, a dev score.

Why recall sits beside every CHAIR number: CHAIR counts what an answer says that is not in the
image, so an answer that says less always has a lower CHAIR; an α that makes the model terse would
"win" on CHAIR alone. The dev selection score is the mean per-answer F1 of the mentioned objects
against the gold objects, which silence (F1 = 0) cannot win.

* CHAIR_i = Σ hallucinated object mentions / Σ object mentions (a ratio of sums over answers; each
  object counted once per answer, as in Rohrbach et al.), CHAIR_s = fraction of answers with at
  least one hallucinated object, recall = Σ |mentioned ∩ gold| / Σ |gold|.
* POPE: yes/no existence questions; accuracy, precision, recall, F1 with "yes" as positive, the
  yes-ratio (a yes-biased model shows it) and validity (answers that are neither yes nor no count
  as wrong and are reported), overall and per negative-sampling type (random / popular /
  adversarial).
* Every number has a 95 % percentile-bootstrap CI over answers; ratios are recomputed on each
  resample (the resampling unit is the answer, as for every other number in the report).
* ``per_answer`` keeps each answer's counts under its prompt id, so the report can compare two
  models on the same prompts (a paired bootstrap) instead of overlapping two CIs.

Object mentions are found by whole-word matching of a vocabulary (object names and their
synonyms, longest phrase first, plural ``s`` accepted), which is what CHAIR does with COCO's
synonym list.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

N_BOOT = 1000


def _pattern(vocab: Mapping[str, str]) -> re.Pattern:
    words = sorted(vocab, key=len, reverse=True)
    alt = "|".join(re.escape(w) for w in words)
    return re.compile(rf"\b({alt})(?:s|es)?\b", re.IGNORECASE)


def build_vocab(objects: Sequence[str], synonyms: Mapping[str, Sequence[str]] | None = None) -> dict[str, str]:
    """Surface form → canonical object; every object names itself."""
    vocab = {o.lower(): o for o in objects}
    for obj, syns in (synonyms or {}).items():
        if obj not in objects:
            raise ValueError(f"synonym list names object {obj!r}, which is not in the object list")
        for s in syns:
            vocab[s.lower()] = obj
    return vocab


def mentioned_objects(text: str, vocab: Mapping[str, str]) -> set[str]:
    """Canonical objects an answer mentions (each once)."""
    return {vocab[m.group(1).lower()] for m in _pattern(vocab).finditer(text or "")}


def _ratio_ci(num: np.ndarray, den: np.ndarray, seed: int, n_boot: int = N_BOOT) -> tuple[float, float, float]:
    """Σnum/Σden and its bootstrap CI over rows (nan where the denominator is 0)."""
    if len(num) == 0 or den.sum() == 0:
        return (float("nan"),) * 3
    est = float(num.sum() / den.sum())
    if len(num) == 1:
        return est, float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, len(num), size=(n_boot, len(num)))
    d = den[idx].sum(1)
    boots = np.where(d > 0, num[idx].sum(1) / np.maximum(d, 1e-12), np.nan)
    lo, hi = np.nanpercentile(boots, [2.5, 97.5])
    return est, float(lo), float(hi)


def _put(out: dict, name: str, ci: tuple[float, float, float]) -> None:
    out[name], out[f"{name}_ci_low"], out[f"{name}_ci_high"] = ci


def chair_counts(
    outputs: Sequence[str], gold: Sequence[Sequence[str]], vocab: Mapping[str, str]
) -> dict[str, list[float]]:
    """Per answer: objects mentioned, hallucinated, gold objects mentioned (hit), gold objects,
    and the answer's object F1. Every CHAIR number is a ratio of sums of these."""
    if len(outputs) != len(gold):
        raise ValueError(f"chair: {len(outputs)} answers but {len(gold)} gold object lists")
    out: dict[str, list[float]] = {"mentions": [], "hallucinated": [], "hit": [], "gold": [], "f1": []}
    for text, g in zip(outputs, gold):
        said, truth = mentioned_objects(text, vocab), set(g)
        hit = len(said & truth)
        out["mentions"].append(len(said))
        out["hallucinated"].append(len(said - truth))
        out["hit"].append(hit)
        out["gold"].append(len(truth))
        out["f1"].append(2 * hit / (len(said) + len(truth)) if said or truth else 1.0)
    return out


def chair(
    outputs: Sequence[str], gold: Sequence[Sequence[str]], vocab: Mapping[str, str], *, seed: int = 0
) -> dict[str, Any]:
    """CHAIR_i, CHAIR_s, recall and the per-answer F1 (dev score), each with a bootstrap CI."""
    c = {k: np.asarray(v, dtype=float) for k, v in chair_counts(outputs, gold, vocab).items()}
    m, h = c["mentions"], c["hallucinated"]
    out: dict[str, Any] = {"n": len(outputs), "mentions_per_answer": float(m.mean()) if len(m) else float("nan")}
    _put(out, "chair_i", _ratio_ci(h, m, seed))
    _put(out, "chair_s", _ratio_ci((h > 0).astype(float), np.ones_like(h), seed))
    _put(out, "recall", _ratio_ci(c["hit"], c["gold"], seed))
    _put(out, "object_f1", _ratio_ci(c["f1"], np.ones(len(h)), seed))
    return out


_YES = re.compile(r"^\W*(yes|yeah|yep)\b", re.IGNORECASE)
_NO = re.compile(r"^\W*(no|nope|not)\b", re.IGNORECASE)


def parse_yes_no(text: str) -> str | None:
    """``"yes"`` / ``"no"`` from the start of an answer, else None (an invalid answer)."""
    if _YES.match(text or ""):
        return "yes"
    if _NO.match(text or ""):
        return "no"
    return None


def _pope_block(pred: list[str | None], label: list[str], seed: int) -> dict[str, Any]:
    p = np.array([x == "yes" for x in pred], dtype=float)
    valid = np.array([x is not None for x in pred], dtype=float)
    y = np.array([x == "yes" for x in label], dtype=float)
    correct = np.array([a == b for a, b in zip(pred, label)], dtype=float)
    out: dict[str, Any] = {"n": len(pred)}
    ones = np.ones(len(pred))
    _put(out, "accuracy", _ratio_ci(correct, ones, seed))
    _put(out, "precision", _ratio_ci(p * y, p, seed))
    _put(out, "recall", _ratio_ci(p * y, y, seed))
    _put(out, "yes_ratio", _ratio_ci(p, ones, seed))
    _put(out, "validity", _ratio_ci(valid, ones, seed))
    tp, fp, fn = (p * y).sum(), (p * (1 - y)).sum(), ((1 - p) * y).sum()
    out["f1"] = float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else float("nan")
    return out


def pope(outputs: Sequence[str], labels: Sequence[str], kinds: Sequence[str], *, seed: int = 0) -> dict[str, Any]:
    """POPE metrics overall and per negative type (``kinds``: random / popular / adversarial)."""
    if not (len(outputs) == len(labels) == len(kinds)):
        raise ValueError(f"pope: {len(outputs)} answers, {len(labels)} labels, {len(kinds)} kinds")
    bad = sorted({x for x in labels if x not in ("yes", "no")})
    if bad:
        raise ValueError(f"pope: labels must be 'yes' or 'no', got {bad}")
    pred = [parse_yes_no(o) for o in outputs]
    out = {"all": _pope_block(pred, list(labels), seed)}
    for k in sorted(set(kinds)):
        sel = [i for i, x in enumerate(kinds) if x == k]
        out[k] = _pope_block([pred[i] for i in sel], [labels[i] for i in sel], seed)
    return out


def evaluate_records(records: Sequence[Mapping[str, Any]], vocab: Mapping[str, str], *, seed: int = 0) -> dict:
    """Metrics of one generation file whose records carry ``task`` = ``{"kind": "describe",
    "objects": [...]}`` or ``{"kind": "pope", "label": "yes"|"no", "split": random|popular|adversarial}``
    (POPE's splits: each has its positives and the negatives sampled its way)."""
    from .records import record_field

    tasks = [record_field(r, "task") or {} for r in records]
    desc = [(r, t) for r, t in zip(records, tasks) if t.get("kind") == "describe"]
    qa = [(r, t) for r, t in zip(records, tasks) if t.get("kind") == "pope"]
    out: dict[str, Any] = {}
    per_answer: dict[str, Any] = {}
    if desc:
        texts, gold = [r["output"] for r, _ in desc], [t["objects"] for _, t in desc]
        out["chair"] = chair(texts, gold, vocab, seed=seed)
        per_answer["describe"] = {"id": [answer_key(r) for r, _ in desc], **chair_counts(texts, gold, vocab)}
    if qa:
        texts, labels = [r["output"] for r, _ in qa], [t["label"] for _, t in qa]
        out["pope"] = pope(texts, labels, [t["split"] for _, t in qa], seed=seed)
        correct = [int(parse_yes_no(x) == y) for x, y in zip(texts, labels)]
        per_answer["pope"] = {"id": [answer_key(r) for r, _ in qa], "correct": correct}
    if not out:
        raise ValueError("no record carries a task of kind 'describe' or 'pope'")
    out["per_answer"] = per_answer
    return out


def answer_key(record: Mapping[str, Any]) -> str:
    """What pairs an answer with another model's answer to the same prompt: the prompt id where
    the record has one, else the instruction (the key alpaca_eval pairs by)."""
    pid = record.get("id")
    return str(pid) if pid is not None else str(record.get("instruction", ""))


PAIRED_KEYS = ("chair_i", "chair_s", "recall", "object_f1", "pope_accuracy")
"""The numbers :func:`paired_difference` compares (``pope_accuracy``: over all POPE questions)."""


def _paired_stats(block: Mapping[str, np.ndarray]) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Each statistic as a function of resampled row indices (one resample per row of ``idx``)."""

    def ratio(num: np.ndarray, den: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        def f(idx: np.ndarray) -> np.ndarray:
            d = den[idx].sum(-1)
            return np.where(d > 0, num[idx].sum(-1) / np.maximum(d, 1e-12), np.nan)

        return f

    if "correct" in block:
        c = block["correct"]
        return {"pope_accuracy": ratio(c, np.ones_like(c))}
    h, ones = block["hallucinated"], np.ones_like(block["mentions"])
    return {
        "chair_i": ratio(h, block["mentions"]),
        "chair_s": ratio((h > 0).astype(float), ones),
        "recall": ratio(block["hit"], block["gold"]),
        "object_f1": ratio(block["f1"], ones),
    }


def _aligned_blocks(a: Mapping[str, Any], b: Mapping[str, Any], what: str) -> tuple[dict, dict] | None:
    """Both answer blocks restricted to their common prompt ids, in one order (None: none shared)."""
    index = []
    for blk in (a, b):
        ix = {k: i for i, k in enumerate(blk["id"])}
        if len(ix) != len(blk["id"]):
            raise ValueError(f"paired difference ({what}): a prompt id occurs twice in one answer file")
        index.append(ix)
    common = sorted(set(index[0]) & set(index[1]))
    if not common:
        return None
    va, ref = (
        {k: np.asarray(v, dtype=float)[[ix[c] for c in common]] for k, v in blk.items() if k != "id"}
        for blk, ix in zip((a, b), index)
    )
    return va, ref


def paired_difference(
    variant: Mapping[str, Any], reference: Mapping[str, Any], *, seed: int = 0, n_boot: int = N_BOOT
) -> dict[str, float]:
    """``<key>_diff`` = variant − reference on the prompts both answered, with a paired bootstrap
    CI (``_ci_low`` / ``_ci_high``): one resample of prompts feeds both models' ratio of sums.

    Why paired: two models answer the same images, so most of each CI's width is which images were
    drawn, shared by both; overlapping CIs can hide a difference that every resample shows.
    ``variant`` and ``reference`` are the ``per_answer`` blocks of :func:`evaluate_records`.
    """
    from .metrics.statistics import _boot_indices

    out: dict[str, float] = {}
    for kind in ("describe", "pope"):
        if kind not in variant or kind not in reference:
            continue
        blocks = _aligned_blocks(variant[kind], reference[kind], kind)
        if blocks is None:
            continue
        va, ref = blocks
        n = len(next(iter(va.values())))
        idx = _boot_indices(n, n_boot, seed) if n > 1 else None
        full = np.arange(n)
        for key, f in _paired_stats(va).items():
            g = _paired_stats(ref)[key]
            est = float(f(full) - g(full))
            lo = hi = float("nan")
            if idx is not None:
                boots = f(idx) - g(idx)
                if np.isfinite(boots).any():
                    lo, hi = (float(x) for x in np.nanpercentile(boots, [2.5, 97.5]))
            out[f"{key}_diff"], out[f"{key}_diff_ci_low"], out[f"{key}_diff_ci_high"] = est, lo, hi
    return out


def vocab_for(spec: Mapping[str, Any]) -> dict[str, str]:
    """The CHAIR vocabulary of a multimodal prompt set (its source's object list and synonyms)."""
    if spec.get("source") == "shapes_world":
        from .world.shapes import shapes_vocab

        return shapes_vocab()
    if spec.get("source") == "chair":
        from .hallucination_sets import chair_vocab

        return chair_vocab(spec["synonyms"])
    if spec.get("source") == "pope":
        return {}  # yes/no answers: no object mentions to match
    raise ValueError(f"prompt source {spec.get('source')!r} has no hallucination vocabulary")


def score_generations(generations: str, out: str, spec: Mapping[str, Any], *, seed: int = 0) -> dict:
    """CHAIR / POPE metrics of one generation file, written as JSON (the ``hallucination`` rule)."""
    from .common import read_json, write_json

    metrics = evaluate_records(read_json(generations), vocab_for(spec), seed=seed)
    write_json(out, metrics)
    return metrics
