"""Tidy (long-form) tables for other tools: one measurement per row, with its unit.

``results_long.csv``: one row per (pair, prompt set, variant, metric, reward model) with columns
:data:`RESULT_COLUMNS`. ``per_prompt.csv``: one row per (pair, prompt set, variant, prompt, metric,
reward model) with :data:`PER_PROMPT_COLUMNS`. Units are one of :data:`UNITS`: ``score`` is the
reward model's own scale, ``percent`` is 0–100, ``fraction`` is 0–1, ``flag`` is 0 or 1 for one
answer, ``tokens`` and ``words`` count. Metric ``paired_diff`` (baseline ``aligned``) is a
variant's mean per-prompt reward minus the aligned model's, with a paired bootstrap CI over prompts.
Measurements that do not exist (the gold reward off the demo world, token counts of reference
outputs) have no row rather than an empty value.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pandas as pd

from .summary import DIAG_COLUMNS

UNITS = ("score", "percent", "fraction", "flag", "tokens", "words")

IDENTITY_COLUMNS = ["pair", "prompt_set", "variant_id", "variant", "kind", "alpha", "scheme", "model"]
RESULT_COLUMNS = [
    *IDENTITY_COLUMNS,
    "chosen_on_dev",
    "metric",
    "reward_model",
    "baseline",
    "value",
    "ci_low",
    "ci_high",
    "unit",
    "n",
]
PER_PROMPT_COLUMNS = [*IDENTITY_COLUMNS, "prompt_id", "metric", "reward_model", "value", "unit"]

DIAG_UNITS = {"mean_tokens": "tokens", "prompts_truncated": "prompts"}
"""Units of the diagnostic columns other than ``fraction``."""

ANSWER_FLAGS = ("truncated", "empty", "restating", "restating_only", "repetitive")
"""Per-answer failure-mode flags (definitions: :mod:`workflow_scripts.metrics.flags`)."""


def _value_rows(row: pd.Series, col: str) -> tuple[float, float, float]:
    stem = col[: -len("_mean")] if col.endswith("_mean") else col
    lo, hi = row.get(f"{stem}_ci_low", math.nan), row.get(f"{stem}_ci_high", math.nan)
    return row[col], lo, hi


def _metric_columns(df: pd.DataFrame, params: Mapping[str, Any]) -> Iterator[tuple[str, str, str, str, str]]:
    """(column, metric, reward model, baseline, unit) for every measurement column of the summary."""
    ev = params["evaluation"]
    baseline = ev.get("baseline", "aligned")
    for rm in params["reward_models"]:
        if f"{rm}_mean" not in df:
            continue
        yield f"{rm}_mean", "mean_reward", rm, "", "score"
        if f"{rm}_win_rate" in df:
            yield f"{rm}_win_rate", "win_rate", rm, baseline, "percent"
        if f"{rm}_diff_vs_aligned" in df:
            yield f"{rm}_diff_vs_aligned", "paired_diff", rm, "aligned", "score"
        own = ("mean", "ci_low", "ci_high", "win_rate", "win_rate_ci_low", "win_rate_ci_high")
        own += ("diff_vs_aligned", "diff_vs_aligned_ci_low", "diff_vs_aligned_ci_high")
        known = {f"{rm}_{s}" for s in own}
        for col in df.columns:
            if col.startswith(f"{rm}_") and col not in known:  # the scorer's per-answer parts, averaged
                yield col, col[len(rm) + 1 :], rm, "", "fraction"
    if "lc_win_rate" in df:
        yield "lc_win_rate", "lc_win_rate", ev["primary_reward"], baseline, "percent"
    for col in DIAG_COLUMNS:
        if col in df:
            yield col, col, "", "", DIAG_UNITS.get(col, "fraction")


def results_long(df: pd.DataFrame, params: Mapping[str, Any]) -> pd.DataFrame:
    """The summary table in long form (:data:`RESULT_COLUMNS`), one measurement per row."""
    rows = []
    metrics = list(_metric_columns(df, params))
    for _, r in df.iterrows():
        ident = {c: r[c] for c in IDENTITY_COLUMNS}
        for col, metric, rm, baseline, unit in metrics:
            value, lo, hi = _value_rows(r, col)
            if value is None or pd.isna(value):
                continue
            rows.append(
                {
                    **ident,
                    "chosen_on_dev": bool(r["chosen_on_dev"]),
                    "metric": metric,
                    "reward_model": rm,
                    "baseline": baseline,
                    "value": float(value),
                    "ci_low": float(lo) if pd.notna(lo) else math.nan,
                    "ci_high": float(hi) if pd.notna(hi) else math.nan,
                    "unit": unit,
                    "n": int(r["n"]),
                }
            )
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def _measurements(a: Mapping[str, Any]) -> Iterator[tuple[str, str, Any, str]]:
    """(metric, reward model, value, unit) of one answer; values may be None or NaN (skipped)."""
    for rm, value in a["rewards"].items():
        yield "reward", rm, value, "score"
    for rm, parts in a["reward_parts"].items():
        for field, value in parts.items():
            yield field, rm, value, "fraction"
    yield "n_tokens", "", a["n_tokens"], "tokens"
    yield "n_words", "", a["n_words"], "words"
    for flag in ANSWER_FLAGS:
        v = a["flags"].get(flag)
        yield flag, "", None if v is None else int(v), "flag"


def per_prompt_long(answers: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Per-answer measurements (:func:`.answers.answer_table` rows) in long form
    (:data:`PER_PROMPT_COLUMNS`): rewards, the scorer's parts, length and the failure-mode flags."""
    rows = []
    for a in answers:
        ident = {**{c: a[c] for c in IDENTITY_COLUMNS}, "prompt_id": a["prompt_id"]}
        for metric, rm, value, unit in _measurements(a):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            rows.append({**ident, "metric": metric, "reward_model": rm, "value": float(value), "unit": unit})
    return pd.DataFrame(rows, columns=PER_PROMPT_COLUMNS)
