"""The human-oriented summary: display tables (formatted strings) and plain-language verdicts.

:func:`display_table` is shared by ``summary.md`` and ``summary.html``, so both show the same
columns with the same formatting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

FLAG_COLUMNS = (
    ("restating_rate", "restating"),
    ("restating_only_rate", "restating only"),
    ("repetitive_rate", "repetitive"),
    ("empty_rate", "empty"),
    ("truncation_rate", "truncated"),
)
"""Diagnostic rates shown as percentages, with their column titles."""


def fmt_ci(m: float, lo: float, hi: float, digits: int = 3, signed: bool = False) -> str:
    """``m [lo, hi]``; ``n/a`` for a missing mean, the bare mean without a CI; ``signed`` writes
    ``+`` on positive numbers (differences)."""
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "n/a"
    f = f"{{:{'+' if signed else ''}.{digits}f}}".format
    if lo is None or (isinstance(lo, float) and math.isnan(lo)):
        return f(m)
    return f"{f(m)} [{f(lo)}, {f(hi)}]"


def shown_reward_models(df: pd.DataFrame, params: Mapping[str, Any]) -> list[str]:
    """Reward models with a column in ``df`` (the gold reward is absent off the demo world)."""
    return [rm for rm in params["reward_models"] if f"{rm}_mean" in df.columns]


def display_table(g: pd.DataFrame, rms: Sequence[str], baseline: str, chosen_mark: str = " ✓") -> pd.DataFrame:
    """One pair × prompt set of the summary as display strings (rewards with CIs, win %, rates)."""
    table = pd.DataFrame({"variant": [v + (chosen_mark if c else "") for v, c in zip(g.variant, g.chosen_on_dev)]})
    for rm in rms:
        if f"{rm}_mean" in g:
            table[f"{rm} reward"] = [fmt_ci(*t) for t in zip(g[f"{rm}_mean"], g[f"{rm}_ci_low"], g[f"{rm}_ci_high"])]
        if f"{rm}_diff_vs_aligned" in g:
            d = f"{rm}_diff_vs_aligned"
            table[f"{rm} Δ vs aligned (paired)"] = [
                "—" if pd.isna(t[0]) else fmt_ci(*t, signed=True)
                for t in zip(g[d], g[f"{d}_ci_low"], g[f"{d}_ci_high"])
            ]
        if f"{rm}_win_rate" in g:
            table[f"{rm} win % vs {baseline}"] = [
                fmt_ci(*t, digits=1)
                for t in zip(g[f"{rm}_win_rate"], g[f"{rm}_win_rate_ci_low"], g[f"{rm}_win_rate_ci_high"])
            ]
    if "lc_win_rate" in g and g["lc_win_rate"].notna().any():
        table["LC win %"] = [f"{x:.1f}" if pd.notna(x) else "n/a" for x in g["lc_win_rate"]]
    for rm in rms:  # the parts of a programmatic reward, when the scorer reports them
        for field in ("correctness", "rambling"):
            if f"{rm}_{field}" in g and g[f"{rm}_{field}"].notna().any():
                table[f"{rm} {field}"] = [f"{x:.0%}" if pd.notna(x) else "n/a" for x in g[f"{rm}_{field}"]]
    table["tokens"] = [f"{x:.1f}" if pd.notna(x) else "n/a" for x in g["mean_tokens"]]
    for c, name in FLAG_COLUMNS:
        table[name] = [f"{x:.0%}" if pd.notna(x) else "n/a" for x in g[c]]
    return table


def legend_lines(params: Mapping[str, Any]) -> list[str]:
    """What the columns mean: reward models, win-rate baseline, α axis, the dev choice rule."""
    ev = params["evaluation"]
    lines = [f"**{rm}**: {spec['label']}" for rm, spec in params["reward_models"].items()]
    return lines + [
        f"win rates: each variant's answer vs the **{ev.get('baseline', 'aligned')}** model's answer to the "
        "same prompt, judged by the reward model (ties count half); 95 % bootstrap CIs over prompts.",
        "Δ vs aligned (paired): mean over prompts of the variant's reward minus the aligned model's reward "
        "on the same prompt; its 95 % CI resamples the same prompts for both (a CI above 0 = a gain).",
        f"α axis: SFT = −1, aligned = 0. ✓ = chosen on the dev prompt set by mean {ev['primary_reward']} "
        "reward, among the aligned model (α = 0) and the uniform α.",
    ]


def summary_markdown(df: pd.DataFrame, params: Mapping[str, Any]) -> str:
    """A readable Markdown version of the table, with a verdict line per pair and prompt set."""
    ev = params["evaluation"]
    rms = shown_reward_models(df, params)
    lines = ["# ExPO report", "", *[f"- {x}" for x in legend_lines(params)], ""]
    for (pair, ps), g in df.groupby(["pair", "prompt_set"], sort=False):
        lines += [f"## {pair} — {ps}", ""]
        lines += [display_table(g, rms, ev.get("baseline", "aligned")).to_markdown(index=False), ""]
        lines += verdict(g, rms, ev["primary_reward"])
        note = lc_note(g)
        if note:
            lines += [note, ""]
    return "\n".join(lines) + "\n"


def lc_note(g: pd.DataFrame) -> str:
    """Why the length-controlled win rate is missing, when it is."""
    if "lc_note" in g and g["lc_note"].fillna("").astype(bool).any():
        return f"LC win rate: unavailable ({g['lc_note'][g['lc_note'].fillna('').astype(bool)].iloc[0]})."
    return ""


def verdict(g: pd.DataFrame, rms: Sequence[str], primary: str) -> list[str]:
    """Plain-language lines: does alignment help, does extrapolation help, where does it break."""
    out = []
    aligned = g[g.kind == "aligned"]
    sft = g[g.kind == "sft"]
    alphas = g[g.kind == "alpha"].sort_values("alpha")
    for rm in rms:
        col = f"{rm}_mean"
        if col not in g or aligned.empty or alphas.empty or alphas[col].isna().all():
            continue
        a = aligned[col].iloc[0]
        best = alphas.loc[alphas[col].idxmax()]
        worst = alphas.loc[alphas[col].idxmin()]
        chosen = g[g.chosen_on_dev]
        head = f"SFT {sft[col].iloc[0]:.3f} → " if not sft.empty else ""
        line = (
            f"- {rm}: {head}aligned {a:.3f}; "
            f"best α={best.alpha:g} gives {best[col]:.3f} ({best[col] - a:+.3f} vs aligned)"
        )
        if not chosen.empty:
            c = chosen.iloc[0]
            what = "the aligned model (α=0)" if c.kind == "aligned" else f"α={c.alpha:g}"
            line += f"; dev-chosen {what} gives {c[col]:.3f} ({_gain_text(c, rm, c[col] - a)})"
        line += f"; worst α={worst.alpha:g} gives {worst[col]:.3f}."
        out.append(line)
    return out + [""] if out else []


def _gain_text(row: pd.Series, rm: str, diff: float) -> str:
    """``+0.123 [+0.050, +0.190] paired`` when the row has a paired CI, else the plain difference."""
    d = f"{rm}_diff_vs_aligned"
    if d in row and pd.notna(row[d]):
        return fmt_ci(row[d], row[f"{d}_ci_low"], row[f"{d}_ci_high"], signed=True) + " paired"
    return f"{diff:+.3f}"


def headline(df: pd.DataFrame, params: Mapping[str, Any]) -> list[str]:
    """Per pair, which α the dev set chose and why, and what it gives on the other prompt sets."""
    ev = params["evaluation"]
    primary, dev = ev["primary_reward"], ev.get("dev_prompt_set")
    col = f"{primary}_mean"
    out = []
    for pair, g in df.groupby("pair", sort=False):
        d = g[(g.prompt_set == dev) & g.kind.isin(["aligned", "alpha"])].sort_values("alpha")
        chosen = d[d.chosen_on_dev]
        if chosen.empty or col not in g:
            out.append(f"{pair}: no α was chosen (no dev prompt set, or no {primary} reward on it).")
            continue
        c = chosen.iloc[0]
        what = "the aligned model itself (α = 0)" if c.kind == "aligned" else f"α = {c.alpha:g}"
        cands = ", ".join(f"α = {r.alpha:g}: {r[col]:.3f}" for _, r in d.iterrows() if pd.notna(r[col]))
        line = f"{pair}: {what} has the highest mean {primary} reward on the {dev} prompts ({cands})."
        for ps, e in g[g.prompt_set != dev].groupby("prompt_set", sort=False):
            at, al, sft = e[e.chosen_on_dev], e[e.kind == "aligned"], e[e.kind == "sft"]
            if at.empty or al.empty or pd.isna(at[col].iloc[0]):
                continue
            x, a = at[col].iloc[0], al[col].iloc[0]
            sft_txt = f", SFT {sft[col].iloc[0]:.3f}" if not sft.empty else ""
            line += f" On {ps}: {x:.3f} vs aligned {a:.3f} ({_gain_text(at.iloc[0], primary, x - a)}{sft_txt})."
        out.append(line)
    return out
