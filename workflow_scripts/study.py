"""The controlled-study table: ExPO across alignment methods and preference-data fractions.

The paper's central weak-to-strong claim (ExPO §3, Table 1): a model aligned on a small fraction of
the preference data, extrapolated with an α chosen on held-out prompts, reaches or beats the model
aligned on all of it; and the best α shrinks as the fraction grows. This module turns the report's
summary table (one row per pair × prompt set × variant) into that table, one row per
(method, fraction, eval prompt set):

- the aligned model's mean reward on the eval prompts (per reward model, 95 % bootstrap CI);
- the best α chosen on the dev prompts by the primary reward — α = 0 (the aligned model itself) is a
  candidate, so a study where extrapolation never helps on dev says so instead of forcing an α > 0;
- the eval reward after ExPO at that α (CI) and its gain over the aligned model;
- the full-data (largest-fraction) model of the same method, aligned, and the difference
  ExPO(fraction) − aligned(full data).

Differences get *paired* bootstrap CIs over prompts when the per-prompt scores are given (both
numbers are on the same prompts, so the paired interval is the honest, narrower one); from the
summary alone they are point estimates.

A pair enters the table only when its aligned model carries ``method`` and ``fraction`` (a model
trained in the workflow: the report params' ``pair_meta``); other experiments get an empty table
with a note, so the report rule's outputs always exist.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .common import atomic_path, read_json, setup_logging
from .layout import Variant

log = logging.getLogger(__name__)

PAPER_BEST_ALPHA = {0.05: 25.0, 0.1: 8.0, 0.2: 2.5, 0.4: 0.5, 1.0: 0.3}
"""The paper's best α per DPO data fraction (zephyr-7b, UltraFeedback; ExPO Table 1)."""

ScoreKey = tuple[str, str, str, str]  # (prompt_set, rm, group, variant)


def _nan3() -> tuple[float, float, float]:
    return (math.nan, math.nan, math.nan)


def _with_ci(name: str, value_low_high: tuple[float, float, float]) -> dict[str, float]:
    """``name``, ``name_ci_low`` and ``name_ci_high`` columns from a (value, low, high) triple."""
    value, low, high = value_low_high
    return {name: value, f"{name}_ci_low": low, f"{name}_ci_high": high}


def _ci_of(row: pd.Series | None, rm: str) -> tuple[float, float, float]:
    """(mean, low, high) of one reward model in one summary row; NaNs when absent."""
    if row is None or f"{rm}_mean" not in row.index or pd.isna(row[f"{rm}_mean"]):
        return _nan3()
    return (
        float(row[f"{rm}_mean"]),
        float(row.get(f"{rm}_ci_low", math.nan)),
        float(row.get(f"{rm}_ci_high", math.nan)),
    )


def paired_diff_ci(
    a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]], *, n_boot: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean per-prompt reward difference a − b with a paired bootstrap CI over prompts.

    Both score lists must cover the same prompt ids (aligned by id, never by position): pairing a
    reward with the other model's reward on a *different* prompt would make the interval meaningless.
    """
    from .metrics import align, bootstrap_ci

    _, al = align({"a": list(a), "b": list(b)})
    diff = np.asarray(al["a"], dtype=float) - np.asarray(al["b"], dtype=float)
    return bootstrap_ci(diff, n_boot=n_boot, seed=seed)


def choose_alpha_on_dev(dev_rows: pd.DataFrame, metric: str) -> tuple[float, float]:
    """(α, dev metric) of one pair, by the rule every table uses (:mod:`.dev_choice`)."""
    from .dev_choice import chosen_for

    return chosen_for(dev_rows, metric)


def _row_at(g: pd.DataFrame, alpha: float) -> pd.Series | None:
    """The summary row of the aligned model (α = 0) or of one uniform α."""
    if math.isnan(alpha):
        return None
    kinds = ["aligned"] if alpha == 0 else ["alpha"]
    sel = g[g.kind.isin(kinds) & np.isclose(g.alpha.astype(float), alpha)]
    return sel.iloc[0] if not sel.empty else None


def _score_key(ps: str, rm: str, pair: str, aligned: str, alpha: float) -> ScoreKey:
    v = Variant.base(aligned) if alpha == 0 else Variant.alpha_of(pair, alpha)
    return (ps, rm, *v.as_tuple())


def _check_study_inputs(
    summary: pd.DataFrame, pair_meta: Mapping[str, Mapping[str, Any]], primary: str, rms: Sequence[str]
) -> None:
    """The primary reward has scores, and every pair with metadata has rows and complete metadata."""
    if primary not in rms and pair_meta:
        raise ValueError(f"study table: the primary reward {primary!r} has no scores in the summary (scored: {rms})")
    unknown = sorted(set(pair_meta) - set(summary.get("pair", pd.Series(dtype=str))))
    if unknown:
        raise ValueError(f"study table: pairs {unknown} have metadata but no rows in the summary")
    for pair, m in pair_meta.items():
        missing = [k for k in ("method", "fraction", "aligned") if k not in m]
        if missing:
            raise ValueError(f"study table: pair {pair!r} metadata lacks {missing}")


def _full_data_pairs(pair_meta: Mapping[str, Mapping[str, Any]]) -> dict[str, str | None]:
    """The full-data reference of each method: its pair with the largest fraction — only when the
    method has at least two fractions (a lone model compared with itself says nothing)."""
    full: dict[str, str | None] = {}
    by_method: dict[str, list[str]] = {}
    for pair, m in pair_meta.items():
        by_method.setdefault(m["method"], []).append(pair)
    for method, pairs in by_method.items():
        fracs = {float(pair_meta[p]["fraction"]) for p in pairs}
        full[method] = max(pairs, key=lambda p: float(pair_meta[p]["fraction"])) if len(fracs) > 1 else None
    return full


def _base_columns(primary: str) -> list[str]:
    """The study table's columns that do not depend on the reward models."""
    return [
        "method",
        "fraction",
        "pair",
        "aligned_model",
        "prompt_set",
        "best_alpha",
        f"dev_{primary}_at_best_alpha",
        "full_data_pair",
        "full_data_fraction",
    ]


def _rm_columns(rm, summary_rows, scores, keys, has_ref: bool, n_boot: int, seed: int) -> dict[str, Any]:
    """One reward model's columns of a study row: aligned, ExPO and full-data means with CIs, and the
    gain and ExPO-minus-full differences (paired CIs when ``keys`` — (ps, pair, aligned, α) of the
    ExPO, aligned and full-data scores — name score files)."""
    aligned_row, expo_row, ref_row = summary_rows
    a = _ci_of(aligned_row, rm)
    e = _ci_of(expo_row, rm)
    f = _ci_of(ref_row, rm)
    cols = {**_with_ci(f"{rm}_aligned", a), **_with_ci(f"{rm}_expo", e), **_with_ci(f"{rm}_full_aligned", f)}
    gain = (e[0] - a[0], math.nan, math.nan)
    expo_vs_full = (e[0] - f[0], math.nan, math.nan)
    if keys is not None:
        k_e, k_a, k_f = (_score_key(ps, rm, pair, aligned, alpha) for ps, pair, aligned, alpha in keys)
        if k_e in scores and k_a in scores:
            gain = paired_diff_ci(scores[k_e], scores[k_a], n_boot=n_boot, seed=seed)
        if has_ref and k_e in scores and k_f in scores:
            expo_vs_full = paired_diff_ci(scores[k_e], scores[k_f], n_boot=n_boot, seed=seed)
    cols.update({**_with_ci(f"{rm}_gain", gain), **_with_ci(f"{rm}_expo_minus_full", expo_vs_full)})
    return cols


def build_study(
    summary: pd.DataFrame,
    pair_meta: Mapping[str, Mapping[str, Any]],
    evaluation: Mapping[str, Any],
    reward_models: Sequence[str],
    scores: Mapping[ScoreKey, list[dict]] | None = None,
) -> pd.DataFrame:
    """One row per (method, fraction, eval prompt set); see the module docstring for the columns.

    ``summary``: the report's summary table. ``pair_meta``: ``{pair: {"method", "fraction",
    "aligned"}}`` for pairs whose aligned model was trained on a data fraction. ``scores``
    (optional): per-prompt score files keyed ``(prompt_set, rm, group, variant)`` for paired CIs of
    the differences.
    """
    ev = dict(evaluation)
    primary = ev["primary_reward"]
    dev = ev.get("dev_prompt_set")
    n_boot, seed = int(ev.get("bootstrap", 1000)), int(ev.get("seed", 0))
    rms = [rm for rm in reward_models if f"{rm}_mean" in summary.columns]
    if not rms and len(summary):  # answers, but no reward scored any (e.g. a VLM on file sets): no study rows
        log.info("study table: no reward model scored any answer; the table is empty")
        pair_meta = {}
    _check_study_inputs(summary, pair_meta, primary, rms)
    full = _full_data_pairs(pair_meta)

    eval_sets = [ps for ps in dict.fromkeys(summary.prompt_set) if ps != dev] if len(summary) else []
    rows = []
    for pair, m in pair_meta.items():
        pg = summary[summary.pair == pair]
        best_alpha, best_dev = (
            choose_alpha_on_dev(pg[pg.prompt_set == dev], f"{primary}_mean") if dev else (math.nan, math.nan)
        )
        ref_pair = full[m["method"]]
        ref_aligned = pair_meta[ref_pair]["aligned"] if ref_pair else ""
        for ps in eval_sets:
            g = pg[pg.prompt_set == ps]
            aligned_row = _row_at(g, 0.0)
            expo_row = _row_at(g, best_alpha)
            ref_row = (
                _row_at(summary[(summary.pair == ref_pair) & (summary.prompt_set == ps)], 0.0) if ref_pair else None
            )
            row: dict[str, Any] = {
                "method": m["method"],
                "fraction": float(m["fraction"]),
                "pair": pair,
                "aligned_model": m["aligned"],
                "prompt_set": ps,
                "best_alpha": best_alpha,
                f"dev_{primary}_at_best_alpha": best_dev,
                "full_data_pair": ref_pair or "",
                "full_data_fraction": float(pair_meta[ref_pair]["fraction"]) if ref_pair else math.nan,
            }
            keys = None
            if scores is not None and not math.isnan(best_alpha):
                keys = (
                    (ps, pair, m["aligned"], best_alpha),
                    (ps, pair, m["aligned"], 0.0),
                    (ps, ref_pair, ref_aligned, 0.0),
                )
            for rm in rms:
                row.update(
                    _rm_columns(rm, (aligned_row, expo_row, ref_row), scores, keys, bool(ref_pair), n_boot, seed)
                )
            rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=_base_columns(primary))
    return df.sort_values(["prompt_set", "method", "fraction"], kind="stable").reset_index(drop=True)


# ------------------------------------------------------------------------------- verdict


def pattern_verdict(study: pd.DataFrame, primary: str, small: float = 0.2) -> list[str]:
    """Plain statements on the paper's two claims, computed from the table (with the CIs).

    1. Smaller fraction → larger best α: the best α is non-increasing in the fraction (ties allowed).
    2. Extrapolated small-fraction models (fraction ≤ ``small``) are close to the full-data model:
       the paired CI of ExPO(fraction) − aligned(full data) contains 0 or lies above it.
    """
    out = []
    for (ps, method), g in study.groupby(["prompt_set", "method"], sort=False):
        g = g.sort_values("fraction")
        alphas = g.best_alpha.tolist()
        seq = ", ".join(f"{f:g} → α {a:g}" for f, a in zip(g.fraction, alphas))
        finite = [a for a in alphas if not math.isnan(a)]
        mono = all(x >= y for x, y in zip(finite, finite[1:]))
        strict = len(set(finite)) > 1
        if len(finite) < 2:
            claim1 = "not testable: needs at least two fractions"
        elif mono and strict:
            claim1 = "yes: the best α does not grow with the fraction"
        elif mono:
            claim1 = "not shown: the same best α at every fraction"
        else:
            claim1 = "no: the best α is not monotone in the fraction"
        out.append(f"- **{method}** on {ps}: best α by fraction ({seq}); smaller fraction → larger α? {claim1}.")
        col = f"{primary}_expo_minus_full"
        sm = g[(g.fraction <= small) & (g.fraction < g.full_data_fraction)]  # NaN reference: none
        if col not in g or sm.empty:
            continue
        parts = []
        for _, r in sm.iterrows():
            lo, hi = r.get(f"{col}_ci_low", math.nan), r.get(f"{col}_ci_high", math.nan)
            if pd.isna(lo):
                judge = "no CI"
            elif lo > 0:
                judge = "better"
            elif hi < 0:
                judge = "worse"
            else:
                judge = "indistinguishable"
            ci = "" if pd.isna(lo) else f" [{lo:+.3f}, {hi:+.3f}]"
            parts.append(f"{r.fraction:g}: {r[col]:+.3f}{ci} ({judge})")
        out.append(f"  ExPO(fraction) − aligned(full data), {primary}: " + "; ".join(parts) + ".")
    return out


# ------------------------------------------------------------------------------- markdown


def _fmt(m: float, lo: float = math.nan, hi: float = math.nan, digits: int = 3, sign: bool = False) -> str:
    if m is None or pd.isna(m):
        return "n/a"
    s = f"{m:+.{digits}f}" if sign else f"{m:.{digits}f}"
    if lo is None or pd.isna(lo):
        return s
    return f"{s} [{lo:.{digits}f}, {hi:.{digits}f}]" if not sign else f"{s} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def study_markdown(study: pd.DataFrame, evaluation: Mapping[str, Any], reward_models: Mapping[str, Any]) -> str:
    """The table in the paper's shape, one block per eval prompt set, then the pattern verdict."""
    primary = evaluation["primary_reward"]
    dev = evaluation.get("dev_prompt_set")
    lines = ["# Controlled study: ExPO across methods and preference-data fractions", ""]
    if study.empty:
        lines += [
            "No pair in this experiment has an aligned model trained in the workflow on a data "
            "fraction (models with `source: train`, `method: dpo|simpo`, `fraction`), so there is "
            "no study table. See experiments/controlled_study.yaml.",
            "",
        ]
        return "\n".join(lines)
    rms = [rm for rm in reward_models if f"{rm}_aligned" in study.columns]
    rms = sorted(rms, key=lambda rm: rm != primary)  # the primary reward (which chose α) first
    lines += [
        f"- best α: chosen on the **{dev}** prompts by mean **{primary}** reward among α = 0 "
        "(the aligned model) and the swept α (ties → smaller α); all rewards below are on the "
        "eval prompts, means with 95 % bootstrap CIs over prompts.",
        "- gain = ExPO − aligned; vs full = ExPO − the same method's full-data aligned model; "
        "differences with paired bootstrap CIs (same prompts).",
        "- paper (zephyr-7b DPO, UltraFeedback) best α: "
        + ", ".join(f"{int(f * 100)} % → {a:g}" for f, a in PAPER_BEST_ALPHA.items())
        + ".",
        "",
    ]
    for rm in rms:
        lines.append(
            f"- **{rm}**: {reward_models[rm].get('label', rm) if isinstance(reward_models[rm], Mapping) else rm}"
        )
    lines.append("")
    for ps, g in study.groupby("prompt_set", sort=False):
        lines += [f"## {ps}", ""]
        t = pd.DataFrame({"method": g.method, "fraction": [f"{f:g}" for f in g.fraction]})
        for rm in rms:
            t[f"aligned {rm}"] = [
                _fmt(*x) for x in zip(g[f"{rm}_aligned"], g[f"{rm}_aligned_ci_low"], g[f"{rm}_aligned_ci_high"])
            ]
            if rm == primary:
                t["best α (dev)"] = [f"{a:g}" if pd.notna(a) else "n/a" for a in g.best_alpha]
            t[f"ExPO {rm}"] = [_fmt(*x) for x in zip(g[f"{rm}_expo"], g[f"{rm}_expo_ci_low"], g[f"{rm}_expo_ci_high"])]
            t[f"gain {rm}"] = [
                _fmt(*x, sign=True) for x in zip(g[f"{rm}_gain"], g[f"{rm}_gain_ci_low"], g[f"{rm}_gain_ci_high"])
            ]
            t[f"full-data aligned {rm}"] = [
                _fmt(*x)
                for x in zip(g[f"{rm}_full_aligned"], g[f"{rm}_full_aligned_ci_low"], g[f"{rm}_full_aligned_ci_high"])
            ]
            t[f"ExPO − full {rm}"] = [
                _fmt(*x, sign=True)
                for x in zip(
                    g[f"{rm}_expo_minus_full"], g[f"{rm}_expo_minus_full_ci_low"], g[f"{rm}_expo_minus_full_ci_high"]
                )
            ]
        lines += [t.to_markdown(index=False, disable_numparse=True), ""]
        lines += pattern_verdict(g, primary) + [""]
    return "\n".join(lines)


def write_study(
    study: pd.DataFrame,
    evaluation: Mapping[str, Any],
    reward_models: Mapping[str, Any],
    out_csv: str | Path,
    out_md: str | Path,
) -> None:
    """Write ``study.csv`` and ``study.md`` atomically (also when the table is empty)."""
    with atomic_path(out_csv) as tmp:
        study.to_csv(tmp, index=False)
    with atomic_path(out_md) as tmp:
        Path(tmp).write_text(study_markdown(study, evaluation, reward_models), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Controlled-study table from a report's summary.csv.")
    ap.add_argument("summary", help="results/<experiment>/report/summary.csv")
    ap.add_argument(
        "--params", required=True, help="JSON file with the report params (as the `report` rule passes them)"
    )
    ap.add_argument("--scores", help="results/<experiment>/scores folder, for paired CIs of differences")
    ap.add_argument("--out-csv", required=True)
    ap.add_argument("--out-md", required=True)
    ap.add_argument("--log")
    a = ap.parse_args(argv)
    setup_logging(a.log)
    params = read_json(a.params)
    scores = None
    if a.scores:
        scores = {}
        for p in sorted(Path(a.scores).glob("*/*/*/*.json")):
            scores[(p.parts[-4], p.parts[-3], p.parts[-2], p.stem)] = read_json(p)
    study = build_study(
        pd.read_csv(a.summary), params.get("pair_meta", {}), params["evaluation"], list(params["reward_models"]), scores
    )
    write_study(study, params["evaluation"], params["reward_models"], a.out_csv, a.out_md)
    log.info("study: %d rows written to %s", len(study), a.out_csv)


if __name__ == "__main__":
    main()
