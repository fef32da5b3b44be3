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

Object mentions are found by whole-word matching of a vocabulary (object names and their
synonyms, longest phrase first, plural ``s`` accepted), which is what CHAIR does with COCO's
synonym list.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
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


def chair(
    outputs: Sequence[str], gold: Sequence[Sequence[str]], vocab: Mapping[str, str], *, seed: int = 0
) -> dict[str, Any]:
    """CHAIR_i, CHAIR_s, recall and the per-answer F1 (dev score), each with a bootstrap CI."""
    if len(outputs) != len(gold):
        raise ValueError(f"chair: {len(outputs)} answers but {len(gold)} gold object lists")
    n_m, n_h, n_g, n_hit, f1 = [], [], [], [], []
    for text, g in zip(outputs, gold):
        said, truth = mentioned_objects(text, vocab), set(g)
        hit = len(said & truth)
        n_m.append(len(said))
        n_h.append(len(said - truth))
        n_g.append(len(truth))
        n_hit.append(hit)
        f1.append(2 * hit / (len(said) + len(truth)) if said or truth else 1.0)
    m, h, g_, hit = (np.asarray(x, dtype=float) for x in (n_m, n_h, n_g, n_hit))
    out: dict[str, Any] = {"n": len(outputs), "mentions_per_answer": float(m.mean()) if len(m) else float("nan")}
    _put(out, "chair_i", _ratio_ci(h, m, seed))
    _put(out, "chair_s", _ratio_ci((h > 0).astype(float), np.ones_like(h), seed))
    _put(out, "recall", _ratio_ci(hit, g_, seed))
    _put(out, "object_f1", _ratio_ci(np.asarray(f1), np.ones(len(f1)), seed))
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
    if desc:
        out["chair"] = chair([r["output"] for r, _ in desc], [t["objects"] for _, t in desc], vocab, seed=seed)
    if qa:
        out["pope"] = pope(
            [r["output"] for r, _ in qa],
            [t["label"] for _, t in qa],
            [t["split"] for _, t in qa],
            seed=seed,
        )
    if not out:
        raise ValueError("no record carries a task of kind 'describe' or 'pope'")
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
