"""Per-variant failure-mode summary (rates of the per-answer flags, lengths, truncation) with CIs.

Diagnostic rates (``truncation_rate``, ``restating_rate`` …) are **fractions** (0–1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .flags import answer_flags
from .statistics import _with_ci


def _truncated(records: Sequence[Mapping[str, Any]], max_new_tokens: int | None) -> list[bool] | None:
    """Whether each answer was cut at ``max_new_tokens`` (see :func:`diagnostics`); None when unknown."""
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
            return None
    return truncated


def diagnostics(
    records: Sequence[Mapping[str, Any]],
    *,
    max_new_tokens: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    n_seeds: int = 1,
) -> dict[str, Any]:
    """Per-variant failure-mode summary over alpaca_eval-style records, each rate/mean with a CI.

    Truncation uses ``finish_reason == "length"`` (authoritative, written by the generation stage);
    only records without ``finish_reason`` fall back to ``n_tokens >= max_new_tokens``. When neither
    is available the truncation rate is NaN (unknown), not 0.

    ``n_seeds`` > 1: ``records`` are that many sampling seeds' answers, seed after seed in one
    prompt order; rates and means are then over every answer (= the mean over seeds) and CIs
    resample prompts and seeds (:func:`.statistics.bootstrap_ci_over_seeds`), except ``distinct_2``,
    which is undefined for some answers and is bootstrapped over the defined ones alone.
    ``prompts_truncated`` counts prompts, once whatever the number of seeds.
    """
    if not records:
        raise ValueError("diagnostics: no records (empty generation file?)")
    flags = []
    for i, rec in enumerate(records):
        for key in ("instruction", "output"):
            if key not in rec:
                raise ValueError(f"diagnostics: record {i} (id={rec.get('id')!r}) has no {key!r}")
        flags.append(answer_flags(rec["instruction"], rec["output"]))
    flat = {"n_boot": n_boot, "seed": seed}
    boot = {**flat, "n_seeds": n_seeds}
    # prompts whose instruction the generation stage cut to fit the model's positions
    n_cut = sum(bool(r.get("prompt_truncated_tokens")) for r in records) // n_seeds
    out: dict[str, Any] = {"n": len(records) // n_seeds, "prompts_truncated": n_cut}

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

    truncated = _truncated(records, max_new_tokens)
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
    _with_ci(out, "distinct_2", d2[~np.isnan(d2)], **flat)
    _with_ci(out, "repeated_ngram_ratio", np.array([f["repeated_ngram_ratio"] for f in flags]), **boot)
    return out
