"""Plots against α: rewards and win rates, length and failure-mode diagnostics.

On the α axis the SFT model sits at α = −1 and the aligned model at α = 0 (θ(α) is exactly those
checkpoints there). Layer schemes have no single α: they are drawn in a separate slot right of the
largest α, behind a dotted separator and under a "schemes" tick, never at a fake α.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..common import atomic_path

LINE_KINDS = ("sft", "aligned", "alpha")
"""Row kinds that lie on the extrapolation line (drawn as one curve per pair)."""

DIAGNOSTIC_PANELS = (
    ("mean_tokens", "mean answer length (tokens)"),
    ("restating_rate", "restating rate (fraction of answers)"),
    ("restating_only_rate", "restating-only rate (fraction)"),
    ("repetitive_rate", "repetitive rate (fraction)"),
    ("truncation_rate", "truncation rate (fraction)"),
    ("distinct_2", "distinct-2 (mean per answer)"),
)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _symlog(x: float) -> float:
    """The axis transform (symlog, linthresh 1): limits are padded in this space."""
    return float(np.sign(x) * np.log10(1 + abs(x)))


def _inv_symlog(y: float) -> float:
    return float(np.sign(y) * (10 ** abs(y) - 1))


def scheme_x(alphas: Sequence[float]) -> float:
    """Where layer schemes are drawn: one slot right of the largest α (in axis space)."""
    top = max(alphas) if len(alphas) else 1.0
    return _inv_symlog(_symlog(top) + 0.35)


def _alpha_axis(ax, alphas: Sequence[float], has_schemes: bool) -> None:
    """symlog α axis with a tick per α, padded so edge points and their markers are not clipped."""
    from matplotlib.ticker import FixedLocator, FuncFormatter

    ax.set_xscale("symlog", linthresh=1.0)
    ax.axvline(0.0, color="0.8", lw=0.8, zorder=0)
    ax.set_xlabel("α   (SFT = −1, aligned = 0)")
    ticks = sorted(set(alphas))
    if not ticks:
        return
    xs = ticks + ([scheme_x(ticks)] if has_schemes else [])
    lo, hi = _symlog(min(xs)), _symlog(max(xs))
    pad = max(0.06 * (hi - lo), 0.08)
    ax.set_xlim(_inv_symlog(lo - pad), _inv_symlog(hi + pad * (2.5 if has_schemes else 1)))
    labels = {t: f"{t:g}" for t in ticks}
    if has_schemes:
        sx = scheme_x(ticks)
        labels[sx] = "schemes"
        ax.axvline(_inv_symlog((_symlog(max(ticks)) + _symlog(sx)) / 2), color="0.7", ls=":", lw=0.8, zorder=0)
    ax.xaxis.set_major_locator(FixedLocator(sorted(labels)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: labels.get(x, f"{x:g}")))
    ax.xaxis.set_minor_locator(FixedLocator([]))
    ax.margins(y=0.12)


def _plot_metric(ax, g: pd.DataFrame, col: str, label: str, color, slot: float) -> None:
    """One pair's curve over the α line, CI band, dev choice star, references and schemes."""
    line = g[g.kind.isin(LINE_KINDS)].sort_values("alpha")
    if col not in line or line[col].isna().all():
        return
    # CI columns: `<rm>_ci_low` for `<rm>_mean`, `<col>_ci_low` for everything else
    stem = col[: -len("_mean")] if col.endswith("_mean") else col
    if f"{stem}_ci_low" in line:
        lo, hi = line[f"{stem}_ci_low"].to_numpy(float), line[f"{stem}_ci_high"].to_numpy(float)
        ax.fill_between(line.alpha, lo, hi, color=color, alpha=0.15, lw=0)
    ax.plot(line.alpha, line[col].to_numpy(float), "o-", color=color, label=label, ms=4)
    for _, r in line[line.kind.isin(["sft", "aligned"])].iterrows():
        ax.annotate(r.kind, (r.alpha, r[col]), textcoords="offset points", xytext=(4, 6), fontsize=7)
    chosen = line[line.chosen_on_dev]
    if not chosen.empty:
        ax.plot(chosen.alpha, chosen[col], "*", color=color, ms=13, mec="k", label=f"{label}: α chosen on dev")
    for _, r in g[g.kind == "reference"].iterrows():
        if pd.notna(r[col]):
            ax.axhline(r[col], color=color, ls=":", lw=1)
            ax.annotate(
                "reference outputs", (line.alpha.min(), r[col]), textcoords="offset points", xytext=(2, 3), fontsize=7
            )
    for _, r in g[g.kind == "scheme"].iterrows():
        if pd.notna(r[col]):
            ax.plot([slot], [r[col]], "D", color=color, mec="k", ms=6)
            ax.annotate(r.scheme, (slot, r[col]), textcoords="offset points", xytext=(0, 7), fontsize=7, ha="center")


def _line_alphas(df: pd.DataFrame) -> list[float]:
    return sorted(set(df[df.kind.isin(LINE_KINDS)].alpha.dropna()))


def plot_rewards(df: pd.DataFrame, params: Mapping[str, Any], out: str) -> None:
    """Rows: mean reward per reward model, then win rate; columns: prompt sets; one curve per pair."""
    plt = _plt()
    rms = [rm for rm in params["reward_models"] if f"{rm}_mean" in df.columns]
    sets = list(dict.fromkeys(df.prompt_set))
    nrows = len(rms) + 1
    fig, axes = plt.subplots(nrows, len(sets), figsize=(5.5 * len(sets), 3.2 * nrows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    primary = params["evaluation"]["primary_reward"]
    baseline = params["evaluation"].get("baseline", "aligned")
    for j, ps in enumerate(sets):
        sub = df[df.prompt_set == ps]
        alphas, has_schemes = _line_alphas(sub), bool((sub.kind == "scheme").any())
        slot = scheme_x(alphas)
        for k, (pair, g) in enumerate(sub.groupby("pair", sort=False)):
            c = colors[k % len(colors)]
            for i, rm in enumerate(rms):
                _plot_metric(axes[i][j], g, f"{rm}_mean", pair, c, slot)
                axes[i][j].set_ylabel(f"mean {rm} reward")
                axes[i][j].set_title(f"{ps}: {rm}", fontsize=9)
            _plot_metric(axes[-1][j], g, f"{primary}_win_rate", pair, c, slot)
        axes[-1][j].axhline(50, color="0.6", ls="--", lw=0.8)
        axes[-1][j].set_ylabel(f"win % vs {baseline} ({primary})")
        axes[-1][j].set_title(f"{ps}: win rate vs {baseline}", fontsize=9)
        for i in range(nrows):
            _alpha_axis(axes[i][j], alphas, has_schemes)
            axes[i][j].legend(fontsize=7)
    fig.tight_layout()
    save(fig, out)


def plot_diagnostics(df: pd.DataFrame, out: str) -> None:
    """Length and failure modes against α: one curve per (pair, prompt set)."""
    plt = _plt()
    fig, axes = plt.subplots(2, 3, figsize=(15, 7), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    alphas, has_schemes = _line_alphas(df), bool((df.kind == "scheme").any())
    slot = scheme_x(alphas)
    for k, ((pair, ps), g) in enumerate(df.groupby(["pair", "prompt_set"], sort=False)):
        for ax, (col, _) in zip(axes.flat, DIAGNOSTIC_PANELS):
            _plot_metric(ax, g, col, f"{pair}/{ps}", colors[k % len(colors)], slot)
    for ax, (_, title) in zip(axes.flat, DIAGNOSTIC_PANELS):
        ax.set_title(title, fontsize=9)
        _alpha_axis(ax, alphas, has_schemes)
        ax.legend(fontsize=6)
    fig.tight_layout()
    save(fig, out)


def save(fig, out: str) -> None:
    """Write a figure atomically as PNG and free it."""
    plt = _plt()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def placeholder_png(out: str, text: str) -> None:
    """A small image saying why a plot is empty (the rule's output must exist)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 1.5))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=10)
    save(fig, out)
