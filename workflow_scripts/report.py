"""The report stage: which α helps, and why.

Reads every generation and score file of an experiment and writes
- ``summary.csv`` / ``summary.md``: one row per (pair, prompt set, variant) with the mean reward of
  each reward model (95 % bootstrap CI), win rate against the baseline judged by each reward model,
  length and failure-mode diagnostics, and the α chosen on the dev prompt set;
- ``reward_vs_alpha.png`` and ``diagnostics_vs_alpha.png``;
- ``layer_delta.csv`` / ``.png`` (per-layer ‖Δ‖/‖θ‖ from the extrapolation manifests);
- ``training_curves.png`` for aligned models trained in the workflow;
- ``published_comparison.csv``: the paper's numbers beside ours for published pairs;
- ``study.csv`` / ``study.md``: the controlled-study table (per method and data fraction: aligned
  reward, best α on dev, reward after ExPO, full-data model) for pairs whose aligned model was
  trained in the workflow on a fraction (``params["pair_meta"]``); empty with a note otherwise.

On the α axis the SFT model sits at α = −1 and the aligned model at α = 0, because
θ_aligned + α·(θ_aligned − θ_sft) is exactly those checkpoints there: the baselines are points on
the same curve, not separate things.
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
from .layout import REPORT_FILES, Variant, parse_generation_path, parse_score_path

log = logging.getLogger(__name__)

DIAG_COLUMNS = [
    "mean_tokens",
    "truncation_rate",
    "empty_rate",
    "restating_rate",
    "restating_only_rate",
    "repetitive_rate",
    "distinct_2",
    "repeated_ngram_ratio",
]


# ------------------------------------------------------------------------------- loading


def _parse_generation_path(path: str) -> tuple[str, str, str]:
    """``.../generations/<prompt_set>/<group>/<variant>.json`` → (prompt_set, group, variant)."""
    ps, v = parse_generation_path(path)
    return (ps, *v.as_tuple())


def _parse_score_path(path: str) -> tuple[str, str, str, str]:
    """``.../scores/<prompt_set>/<rm>/<group>/<variant>.json`` → (prompt_set, rm, group, variant)."""
    ps, rm, v = parse_score_path(path)
    return (ps, rm, *v.as_tuple())


def _pair_variants(pair_name: str, pair: Mapping[str, str], variants: Sequence[Sequence[str]]) -> list[tuple[str, str]]:
    out = [Variant.base(pair["sft"]).as_tuple(), Variant.base(pair["aligned"]).as_tuple()]
    out += [(g, v) for g, v in variants if g == pair_name]
    return out + [Variant.reference().as_tuple()]


# ------------------------------------------------------------------------------- the table


def build_summary(
    generations: Mapping[tuple[str, str, str], list[dict]],
    scores: Mapping[tuple[str, str, str, str], list[dict]],
    params: Mapping[str, Any],
) -> pd.DataFrame:
    """One row per (pair, prompt set, variant) with rewards, win rates and diagnostics."""
    from .metrics import bootstrap_ci, diagnostics, lc_win_rate, win_rate

    ev = params["evaluation"]
    n_boot, seed = int(ev.get("bootstrap", 1000)), int(ev.get("seed", 0))
    baseline_side = ev.get("baseline", "aligned")
    rms = list(params["reward_models"])
    rows = []
    diag_cache: dict[tuple[str, str, str], dict] = {}
    for pair_name, pair in params["pairs"].items():
        pvars = _pair_variants(pair_name, pair, params["variants"])
        for ps in params["prompt_sets"]:
            base_key = (
                Variant.reference() if baseline_side == "reference" else Variant.base(pair[baseline_side])
            ).as_tuple()
            wanted = params.get("variants_by_prompt_set", {}).get(ps)
            # without the rule's list every variant is expected, except reference outputs
            wanted = (
                {tuple(x) for x in wanted}
                if wanted is not None
                else {v for v in pvars if Variant(*v).kind != "reference"}
            )
            for group, variant in pvars:
                gkey = (ps, group, variant)
                if (group, variant) not in wanted:
                    continue  # the dev set answers only what choosing α needs; references if configured
                if gkey not in generations:
                    raise ValueError(f"no generations for {gkey}")
                recs = generations[gkey]
                v = Variant(group, variant)
                kind = v.role(pair)
                row: dict[str, Any] = {
                    "pair": pair_name,
                    "prompt_set": ps,
                    "variant": v.label(pair),
                    "kind": kind,
                    "alpha": v.alpha(pair),
                    "scheme": v.scheme,
                    "model": variant if v.kind == "base" else f"{pair_name}/{variant}",
                    "n": len(recs),
                }
                for rm in rms:
                    skey = (ps, rm, group, variant)
                    if skey not in scores:
                        continue  # e.g. the gold reward on a non-world prompt set
                    rewards = [s["reward"] for s in scores[skey]]
                    m, lo, hi = bootstrap_ci(rewards, n_boot=n_boot, seed=seed)
                    row.update({f"{rm}_mean": m, f"{rm}_ci_low": lo, f"{rm}_ci_high": hi})
                    # extra per-answer fields of a scorer (e.g. the gold reward's parts) → means
                    extras = sorted(set(scores[skey][0]) - {"id", "reward"}) if scores[skey] else []
                    for field in extras:
                        row[f"{rm}_{field}"] = float(np.mean([s[field] for s in scores[skey]]))
                    bkey = (ps, rm, *base_key)
                    if bkey in scores:
                        # references may cover only some prompts (MT-Bench: 30 of 80): compare
                        # on the prompts both have
                        mine = {s["id"]: s["reward"] for s in scores[skey]}
                        theirs = {s["id"]: s["reward"] for s in scores[bkey]}
                        common = [i for i in mine if i in theirs]
                        wr = win_rate(
                            {i: mine[i] for i in common}, {i: theirs[i] for i in common}, n_boot=n_boot, seed=seed
                        )
                        row.update(
                            {
                                f"{rm}_win_rate": wr["win_rate"],
                                f"{rm}_win_rate_ci_low": wr["win_rate_ci_low"],
                                f"{rm}_win_rate_ci_high": wr["win_rate_ci_high"],
                            }
                        )
                        if rm == ev["primary_reward"] and params.get("prompt_set_sources", {}).get(ps) == "alpaca_eval":
                            lc = lc_win_rate(
                                scores[skey],
                                scores[bkey],
                                outputs={r["id"]: r["output"] for r in recs},
                                baseline_outputs={r["id"]: r["output"] for r in generations[(ps, *base_key)]},
                            )
                            row["lc_win_rate"] = lc.get("lc_win_rate")
                            row["lc_note"] = "" if lc.get("available") else lc.get("reason", "")
                if gkey not in diag_cache:
                    diag_cache[gkey] = diagnostics(
                        recs, max_new_tokens=params.get("max_new_tokens"), n_boot=n_boot, seed=seed
                    )
                d = diag_cache[gkey]
                for c in DIAG_COLUMNS:
                    row[c] = d.get(c, math.nan)
                    if f"{c}_ci_low" in d:
                        row[f"{c}_ci_low"], row[f"{c}_ci_high"] = d[f"{c}_ci_low"], d[f"{c}_ci_high"]
                rows.append(row)
    df = pd.DataFrame(rows)
    return mark_chosen_alpha(df, ev)


def mark_chosen_alpha(df: pd.DataFrame, ev: Mapping[str, Any]) -> pd.DataFrame:
    """Mark, per pair, the α chosen on the dev prompt set (:mod:`.dev_choice`: the aligned model
    is a candidate) on every prompt set's row of that α."""
    from .dev_choice import CANDIDATE_KINDS, choose_on_dev

    df = df.copy()
    df["chosen_on_dev"] = False
    dev = ev.get("dev_prompt_set")
    metric = f"{ev['primary_reward']}_mean"
    if not dev or metric not in df.columns:
        return df
    for pair, (alpha, _) in choose_on_dev(df[df.prompt_set == dev], metric).items():
        at = (df.pair == pair) & df.kind.isin(CANDIDATE_KINDS) & np.isclose(df.alpha, alpha)
        df.loc[at, "chosen_on_dev"] = True
    return df


def _fmt_ci(m: float, lo: float, hi: float, digits: int = 3) -> str:
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "n/a"
    if lo is None or (isinstance(lo, float) and math.isnan(lo)):
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def summary_markdown(df: pd.DataFrame, params: Mapping[str, Any]) -> str:
    """A readable Markdown version of the table, with a verdict line per pair and prompt set."""
    ev = params["evaluation"]
    rms = [rm for rm in params["reward_models"] if f"{rm}_mean" in df.columns]
    primary = ev["primary_reward"]
    base = ev.get("baseline", "aligned")
    lines = ["# ExPO report", ""]
    for rm in rms:
        lines.append(f"- **{rm}**: {params['reward_models'][rm]['label']}")
    lines += [
        f"- win rates: each variant's answer vs the **{base}** model's answer to the same "
        "prompt, judged by the reward model (ties count half); 95 % bootstrap CIs over prompts.",
        f"- α axis: SFT = −1, aligned = 0. ✓ = chosen on the dev prompt set by mean {primary} reward, "
        "among the aligned model (α = 0) and the uniform α.",
        "",
    ]
    for (pair, ps), g in df.groupby(["pair", "prompt_set"], sort=False):
        lines += [f"## {pair} — {ps}", ""]
        table = pd.DataFrame({"variant": [v + (" ✓" if c else "") for v, c in zip(g.variant, g.chosen_on_dev)]})
        for rm in rms:
            if f"{rm}_mean" in g:
                table[f"{rm} reward"] = [
                    _fmt_ci(*t) for t in zip(g[f"{rm}_mean"], g[f"{rm}_ci_low"], g[f"{rm}_ci_high"])
                ]
            if f"{rm}_win_rate" in g:
                table[f"{rm} win % vs {base}"] = [
                    _fmt_ci(*t, digits=1)
                    for t in zip(g[f"{rm}_win_rate"], g[f"{rm}_win_rate_ci_low"], g[f"{rm}_win_rate_ci_high"])
                ]
        if "lc_win_rate" in g and g["lc_win_rate"].notna().any():
            table["LC win %"] = [f"{x:.1f}" if pd.notna(x) else "n/a" for x in g["lc_win_rate"]]
        for rm in rms:  # the parts of a programmatic reward, when the scorer reports them
            for field in ("correctness", "rambling"):
                if f"{rm}_{field}" in g and g[f"{rm}_{field}"].notna().any():
                    table[f"{rm} {field}"] = [f"{x:.0%}" for x in g[f"{rm}_{field}"]]
        table["tokens"] = [f"{x:.1f}" for x in g["mean_tokens"]]
        for c, name in (
            ("restating_rate", "restating"),
            ("restating_only_rate", "restating only"),
            ("repetitive_rate", "repetitive"),
            ("empty_rate", "empty"),
            ("truncation_rate", "truncated"),
        ):
            table[name] = [f"{x:.0%}" if pd.notna(x) else "n/a" for x in g[c]]
        lines += [table.to_markdown(index=False), ""]
        lines += verdict(g, rms, primary)
        if "lc_note" in g and g["lc_note"].astype(bool).any():
            lines += [f"LC win rate: unavailable ({g['lc_note'][g['lc_note'].astype(bool)].iloc[0]}).", ""]
    return "\n".join(lines) + "\n"


def verdict(g: pd.DataFrame, rms: Sequence[str], primary: str) -> list[str]:
    """Plain-language lines: does alignment help, does extrapolation help, where does it break.

    The LC win rate (alpaca_eval's length-controlled GLM) is only computed for AlpacaEval prompt
    sets: its per-prompt difficulty terms exist for those 805 prompts alone.
    """
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
            line += f"; dev-chosen {what} gives {c[col]:.3f} ({c[col] - a:+.3f})"
        line += f"; worst α={worst.alpha:g} gives {worst[col]:.3f}."
        out.append(line)
    return out + [""] if out else []


# ------------------------------------------------------------------------------- plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _alpha_axis(ax, ticks=None) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter

    ax.set_xscale("symlog", linthresh=1.0)
    ax.axvline(0.0, color="0.8", lw=0.8, zorder=0)
    ax.set_xlabel("α   (SFT = −1, aligned = 0)")
    if ticks is not None and len(ticks):
        ax.xaxis.set_major_locator(FixedLocator(sorted(set(ticks))))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_locator(FixedLocator([]))


def _plot_metric(ax, g: pd.DataFrame, col: str, label: str, color, ci: bool = True) -> None:
    line = g[g.kind.isin(["sft", "aligned", "alpha"])].sort_values("alpha")
    if col not in line or line[col].isna().all():
        return
    y = line[col].to_numpy(dtype=float)
    # CI columns: `<rm>_ci_low` for `<rm>_mean`, `<col>_ci_low` for everything else
    stem = col[: -len("_mean")] if col.endswith("_mean") else col
    if ci and f"{stem}_ci_low" in line:
        lo, hi = line[f"{stem}_ci_low"].to_numpy(float), line[f"{stem}_ci_high"].to_numpy(float)
        ax.fill_between(line.alpha, lo, hi, color=color, alpha=0.15, lw=0)
    ax.plot(line.alpha, y, "o-", color=color, label=label, ms=4)
    for _, r in line[line.kind.isin(["sft", "aligned"])].iterrows():
        ax.annotate(r.kind, (r.alpha, r[col]), textcoords="offset points", xytext=(4, 6), fontsize=7)
    chosen = line[line.chosen_on_dev]
    if not chosen.empty:
        ax.plot(chosen.alpha, chosen[col], "*", color=color, ms=13, mec="k", label=f"{label}: α chosen on dev")
    for _, r in g[g.kind == "reference"].iterrows():
        if pd.notna(r[col]):
            ax.axhline(r[col], color=color, ls=":", lw=1)
            ax.annotate(
                "reference",
                (line.alpha.min() if len(line) else 0, r[col]),
                textcoords="offset points",
                xytext=(2, 3),
                fontsize=7,
            )
    schemes = g[g.kind == "scheme"]
    for _, r in schemes.iterrows():
        x = line.alpha.max() * 1.4 if len(line) else 1.0
        ax.plot([x], [r[col]], "D", color=color, mec="k", ms=6)
        ax.annotate(f"scheme {r.scheme}", (x, r[col]), textcoords="offset points", xytext=(-10, 7), fontsize=7)


def plot_rewards(df: pd.DataFrame, params: Mapping[str, Any], out: str) -> None:
    """Reward (per reward model) and win rate against α, one column per prompt set."""
    plt = _plt()
    rms = [rm for rm in params["reward_models"] if f"{rm}_mean" in df.columns]
    sets = list(dict.fromkeys(df.prompt_set))
    nrows = len(rms) + 1
    fig, axes = plt.subplots(nrows, len(sets), figsize=(5.5 * len(sets), 3.2 * nrows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    primary = params["evaluation"]["primary_reward"]
    for j, ps in enumerate(sets):
        for k, (pair, g) in enumerate(df[df.prompt_set == ps].groupby("pair", sort=False)):
            c = colors[k % len(colors)]
            for i, rm in enumerate(rms):
                _plot_metric(axes[i][j], g, f"{rm}_mean", pair, c)
                axes[i][j].set_ylabel(f"mean {rm} reward")
                axes[i][j].set_title(f"{ps}: {rm}", fontsize=9)
            _plot_metric(axes[-1][j], g, f"{primary}_win_rate", pair, c)
            axes[-1][j].axhline(50, color="0.6", ls="--", lw=0.8)
            axes[-1][j].set_ylabel(f"win % vs {params['evaluation'].get('baseline', 'aligned')} ({primary})")
        ticks = df[(df.prompt_set == ps) & df.kind.isin(["sft", "aligned", "alpha"])].alpha
        for i in range(nrows):
            _alpha_axis(axes[i][j], ticks)
            axes[i][j].legend(fontsize=7)
    fig.tight_layout()
    _save(fig, out)


def plot_diagnostics(df: pd.DataFrame, out: str) -> None:
    """Length and failure modes against α (eval-style: every prompt set, one line per pair)."""
    plt = _plt()
    panels = [
        ("mean_tokens", "mean answer length (tokens)"),
        ("restating_rate", "restating rate"),
        ("restating_only_rate", "restating-only rate"),
        ("repetitive_rate", "repetitive rate"),
        ("truncation_rate", "truncation rate"),
        ("distinct_2", "distinct-2"),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(15, 7), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, ((pair, ps), g) in enumerate(df.groupby(["pair", "prompt_set"], sort=False)):
        for ax, (col, title) in zip(axes.flat, panels):
            _plot_metric(ax, g, col, f"{pair}/{ps}", colors[k % len(colors)])
            ax.set_title(title, fontsize=9)
    ticks = df[df.kind.isin(["sft", "aligned", "alpha"])].alpha
    for ax in axes.flat:
        _alpha_axis(ax, ticks)
        ax.legend(fontsize=6)
    fig.tight_layout()
    _save(fig, out)


def _save(fig, out: str) -> None:
    plt = _plt()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _placeholder_png(out: str, text: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 1.5))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=10)
    _save(fig, out)


# ------------------------------------------------------------------------------- extras


def layer_delta(manifests: Sequence[str], out_csv: str, out_png: str) -> pd.DataFrame:
    """Per-layer ‖Δ‖/‖θ‖ per pair (Δ does not depend on α: one manifest per pair suffices)."""
    from .delta_report import delta_table

    frames, seen = [], set()
    for m in sorted(manifests):
        pair = Path(m).parent.name
        if pair in seen:
            continue
        seen.add(pair)
        frames.append(delta_table(read_json(m)).assign(pair=pair))
    df = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["pair", "part", "layer", "delta_norm", "aligned_norm", "rel_delta"])
    )
    _write_csv(df, out_csv)
    if df.empty:
        _placeholder_png(out_png, "no extrapolation manifests")
        return df
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for pair, g in df[df.part == "layer"].groupby("pair"):
        ax.plot(g.layer, g.rel_delta, "o-", label=pair)
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("‖θ_aligned − θ_sft‖ / ‖θ_aligned‖")
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, out_png)
    return df


def training_plot(trained_dirs: Sequence[str], out_png: str) -> None:
    """Training curves of the aligned models trained in this workflow (a placeholder otherwise)."""
    histories = [Path(d) / "training_history.csv" for d in trained_dirs]
    histories = [h for h in histories if h.exists()]
    if not histories:
        _placeholder_png(out_png, "no aligned model was trained in this experiment")
        return
    from .training_curves import plot_curves

    plot_curves([str(h) for h in histories], out_png)


def published_comparison(published_csv: str, df: pd.DataFrame, params: Mapping[str, Any], out_csv: str) -> pd.DataFrame:
    """The paper's numbers for the pairs this experiment names, with our best-α numbers beside."""
    pub = pd.read_csv(published_csv)
    rows = []
    primary = params["evaluation"]["primary_reward"]
    for pair_name, pair in params["pairs"].items():
        ref = pair.get("published")
        if not ref:
            continue
        sel = pub[(pub.sft_model == ref["sft_model"]) & (pub.aligned_model == ref["aligned_model"])]
        if sel.empty:
            log.warning("pair %s names a published pair %s that is not in %s", pair_name, ref, published_csv)
        ours = df[(df.pair == pair_name)]
        chosen = ours[ours.chosen_on_dev]
        for _, r in sel.iterrows():
            row = {"pair": pair_name, **r.to_dict()}
            eval_rows = ours[(ours.prompt_set != params["evaluation"].get("dev_prompt_set"))]
            al = eval_rows[eval_rows.kind == "aligned"]
            row["ours_prompt_set"] = ", ".join(dict.fromkeys(eval_rows.prompt_set))
            if f"{primary}_mean" in ours and not al.empty:
                row["ours_aligned_reward"] = al[f"{primary}_mean"].iloc[0]
                match = eval_rows[(eval_rows.kind == "alpha") & np.isclose(eval_rows.alpha, r["alpha"])]
                row["ours_reward_at_published_alpha"] = (
                    match[f"{primary}_mean"].iloc[0] if not match.empty else math.nan
                )
                row["ours_win_rate_at_published_alpha"] = (
                    match[f"{primary}_win_rate"].iloc[0]
                    if not match.empty and f"{primary}_win_rate" in match
                    else math.nan
                )
            row["ours_dev_chosen_alpha"] = chosen.alpha.iloc[0] if not chosen.empty else math.nan
            rows.append(row)
    out = pd.DataFrame(rows, columns=None if rows else ["pair", *pub.columns])
    _write_csv(out, out_csv)
    return out


def _write_csv(df: pd.DataFrame, path: str) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


# ------------------------------------------------------------------------------- entry points


def build_report(inputs: Mapping[str, Any], outputs: Mapping[str, str], params: Mapping[str, Any]) -> pd.DataFrame:
    """Everything the `report` rule writes (see module docstring)."""

    def as_list(x):
        return [x] if isinstance(x, str) else list(x or [])

    generations = {_parse_generation_path(p): read_json(p) for p in as_list(inputs.get("generations"))}
    scores = {_parse_score_path(p): read_json(p) for p in as_list(inputs.get("scores"))}
    df = build_summary(generations, scores, params)
    _write_csv(df, outputs["summary_csv"])
    with atomic_path(outputs["summary_md"]) as tmp:
        tmp.write_text(summary_markdown(df, params), encoding="utf-8")
    plot_rewards(df, params, outputs["reward_plot"])
    plot_diagnostics(df, outputs["diagnostics_plot"])
    layer_delta(as_list(inputs.get("manifests")), outputs["delta_csv"], outputs["delta_plot"])
    training_plot(as_list(inputs.get("training")), outputs["training_plot"])
    published_comparison(inputs["published"], df, params, outputs["published_csv"])
    if "study_csv" in outputs:
        from .study import build_study, write_study

        study = build_study(
            df, params.get("pair_meta") or {}, params["evaluation"], list(params["reward_models"]), scores
        )
        write_study(study, params["evaluation"], params["reward_models"], outputs["study_csv"], outputs["study_md"])
        log.info("report: study table with %d rows written to %s", len(study), outputs["study_csv"])
    log.info("report: %d rows written to %s", len(df), outputs["summary_csv"])
    return df


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Rebuild the report of a finished experiment folder.")
    ap.add_argument("results", help="results/<experiment> folder")
    ap.add_argument(
        "--params", required=True, help="JSON file with the report params (as the `report` rule passes them)"
    )
    ap.add_argument("--out", help="output folder (default <results>/report)")
    ap.add_argument("--published", default="resources/expo_published_results.csv")
    ap.add_argument("--log")
    a = ap.parse_args(argv)
    setup_logging(a.log)
    res = Path(a.results)
    out = Path(a.out or res / "report")
    inputs = {
        "generations": [str(p) for p in sorted(res.glob("generations/*/*/*.json"))],
        "scores": [str(p) for p in sorted(res.glob("scores/*/*/*/*.json"))],
        "manifests": [str(p) for p in sorted(res.glob("manifests/*/*.json"))],
        "training": [str(p) for p in sorted(res.glob("trained/*")) if (p / "training_history.csv").exists()],
        "published": a.published,
    }
    build_report(inputs, {k: str(out / v) for k, v in REPORT_FILES.items()}, read_json(a.params))


if __name__ == "__main__":
    main()
