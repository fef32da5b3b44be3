"""The hallucination report of a multimodal experiment: CHAIR with recall and POPE per variant, α
chosen on dev by per-answer F1, hallucination vs α with CIs, frozen vs trainable, per-component ‖Δ‖.

Why α is chosen by per-answer object F1 on the dev set: CHAIR alone is won by saying less (an
empty answer hallucinates nothing), F1 is not (silence scores 0). The headline table puts the
chosen α's CHAIR_i *and* recall beside SFT and aligned, so "less hallucination" can be read at
equal recall or not at all.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .common import atomic_path, read_json
from .layout import Variant

log = logging.getLogger(__name__)

CHAIR_KEYS = ("chair_i", "chair_s", "recall", "object_f1")
POPE_KEYS = ("accuracy", "yes_ratio", "validity")
SELECT_BY = "object_f1"


def _flatten(metrics: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    chair = metrics.get("chair") or {}
    for k in CHAIR_KEYS:
        for suf in ("", "_ci_low", "_ci_high"):
            out[f"{k}{suf}"] = chair.get(f"{k}{suf}", math.nan)
    out["mentions"] = chair.get("mentions_per_answer", math.nan)
    pope = metrics.get("pope") or {}
    for split in ("all", "adversarial"):
        block = pope.get(split) or {}
        pre = "pope" if split == "all" else "pope_adv"
        for k in POPE_KEYS:
            for suf in ("", "_ci_low", "_ci_high"):
                out[f"{pre}_{k}{suf}"] = block.get(f"{k}{suf}", math.nan)
        out[f"{pre}_f1"] = block.get("f1", math.nan)
    return out


def collect(paths: Sequence[str], params: Mapping[str, Any]) -> pd.DataFrame:
    """One row per (prompt set, pair, variant): a baseline appears under every pair it belongs to,
    with its paired difference to the pair's aligned model (:func:`add_paired_differences`)."""
    pairs = params["pairs"]
    rows, answers = [], []
    for path in sorted(paths):
        ps, v = Path(path).parts[-3], Variant.parse(path)
        metrics = read_json(path)
        flat = _flatten(metrics)
        for pair, p in pairs.items():
            if v.group != pair and not (v.kind == "base" and v.name in (p["sft"], p["aligned"])):
                continue
            meta = params.get("pair_meta", {}).get(pair, {})
            rows.append(
                {
                    "prompt_set": ps,
                    "pair": pair,
                    "group": v.group,
                    "variant": v.name,
                    "role": v.role(p),
                    "alpha": v.alpha(p),
                    "label": v.label(p),
                    "method": meta.get("method"),
                    "vision": _vision_state(meta),
                    **flat,
                }
            )
            answers.append(metrics.get("per_answer"))
    n_boot = int(params.get("bootstrap", 1000))
    return add_paired_differences(pd.DataFrame(rows), answers, seed=int(params.get("seed", 0)), n_boot=n_boot)


def add_paired_differences(
    df: pd.DataFrame, answers: Sequence[Mapping | None], *, seed: int = 0, n_boot: int = 1000
) -> pd.DataFrame:
    """``<key>_diff`` (+ CI) = row − the same pair's aligned model on the same prompt set, paired by
    prompt (``answers[i]`` is row i's ``per_answer`` block); NaN where either side lacks it
    (metrics files written before per-answer counts were kept)."""
    from .hallucination import PAIRED_KEYS, paired_difference

    cols = [f"{k}_diff{suf}" for k in PAIRED_KEYS for suf in ("", "_ci_low", "_ci_high")]
    if df.empty:
        return df
    aligned = {(r.prompt_set, r.pair): i for i, r in enumerate(df.itertuples()) if r.role == "aligned"}
    diffs = []
    for i, r in enumerate(df.itertuples()):
        j = aligned.get((r.prompt_set, r.pair))
        ok = j is not None and j != i and answers[i] and answers[j]
        diffs.append(paired_difference(answers[i], answers[j], seed=seed, n_boot=n_boot) if ok else {})
    return pd.concat([df, pd.DataFrame(diffs, columns=cols, index=df.index)], axis=1)


def _vision_state(meta: Mapping[str, Any]) -> str:
    """``frozen`` / ``trainable`` vision tower and projector in the aligned model's training."""
    freeze = meta.get("freeze")
    if freeze is None:
        return "frozen"  # the VLM trainer's default
    return "frozen" if any("vision" in f for f in freeze) else "trainable"


def choose_alpha(df: pd.DataFrame, dev: str | None, select_by: Sequence[str] = (SELECT_BY,)) -> dict[str, float]:
    """Per pair, the α (aligned = 0 included) with the highest dev score: the mean of the
    ``select_by`` columns (default per-answer object F1), over the variants that have all of them."""
    if df.empty or not dev:
        return {}
    cols = list(select_by)
    cand = df[(df.prompt_set == dev) & df.role.isin(["aligned", "alpha"])]
    d = cand.dropna(subset=cols)
    if len(cand) and d.empty:
        missing = [c for c in cols if cand[c].isna().all()]
        what = " / ".join(missing)
        raise ValueError(f"evaluation.hallucination_select: the dev set {dev!r} has no {what} to choose α by")
    d = d.assign(_score=d[cols].mean(axis=1))
    return {pair: float(g.loc[g["_score"].idxmax(), "alpha"]) for pair, g in d.groupby("pair")}


def _ci(row: Mapping[str, Any], key: str) -> str:
    m, lo, hi = row.get(key), row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
    if m is None or pd.isna(m):
        return "n/a"
    return f"{m:.3f} [{lo:.3f}, {hi:.3f}]" if pd.notna(lo) else f"{m:.3f}"


def _diff(row: Any, key: str) -> str:
    """A paired difference vs aligned with its CI, signed; "—" on the aligned row itself."""
    if getattr(row, "role", None) == "aligned":
        return "—"
    m, lo, hi = (getattr(row, f"{key}_diff{suf}", math.nan) for suf in ("", "_ci_low", "_ci_high"))
    if m is None or pd.isna(m):
        return "n/a"
    return f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]" if pd.notna(lo) else f"{m:+.3f}"


def variant_display(g: pd.DataFrame, chosen: float | None) -> pd.DataFrame:
    """One pair's variants on one prompt set as display strings, SFT first, then by α."""
    g = g.assign(_o=g.alpha.fillna(1e9)).sort_values(["_o", "label"])
    rows = []
    for _, r in g.iterrows():
        mark = " ★" if chosen is not None and r.role in ("aligned", "alpha") and r.alpha == chosen else ""
        rows.append(
            {
                "variant": f"{r.label}{mark}",
                "CHAIR_i": _ci(r, "chair_i"),
                "Δ CHAIR_i vs aligned": _diff(r, "chair_i"),
                "CHAIR_s": _ci(r, "chair_s"),
                "recall": _ci(r, "recall"),
                "Δ recall vs aligned": _diff(r, "recall"),
                "F1": _ci(r, "object_f1"),
                "POPE acc": _ci(r, "pope_accuracy"),
                "POPE F1": "n/a" if pd.isna(r.pope_f1) else f"{r.pope_f1:.3f}",
                "yes-ratio": _ci(r, "pope_yes_ratio"),
                "POPE adv acc": _ci(r, "pope_adv_accuracy"),
            }
        )
    return pd.DataFrame(rows)


def headline(df: pd.DataFrame, chosen: Mapping[str, float], eval_sets: Sequence[str]) -> pd.DataFrame:
    """SFT → aligned → chosen α per pair on each evaluation set: CHAIR_i and recall with CIs."""
    rows = []
    for (ps, pair), g in df[df.prompt_set.isin(eval_sets)].groupby(["prompt_set", "pair"], sort=False):
        row: dict[str, Any] = {"prompt_set": ps, "pair": pair, "method": g.method.iloc[0], "vision": g.vision.iloc[0]}
        picks = {
            "sft": g[g.role == "sft"],
            "aligned": g[g.role == "aligned"],
            "chosen": g[g.role.isin(["aligned", "alpha"]) & (g.alpha == chosen.get(pair, math.nan))],
        }
        row["chosen_alpha"] = chosen.get(pair, math.nan)
        for name, sel in picks.items():
            r = sel.iloc[0] if len(sel) else {}
            row[f"{name}_chair_i"] = _ci(r, "chair_i") if len(sel) else "n/a"
            row[f"{name}_recall"] = _ci(r, "recall") if len(sel) else "n/a"
        ch = picks["chosen"]
        for key in ("chair_i", "recall"):
            row[f"chosen_vs_aligned_{key}"] = _diff(ch.iloc[0], key) if len(ch) else "n/a"
        rows.append(row)
    return pd.DataFrame(rows)


SELECT_NAMES = {
    "object_f1": "per-answer object F1",
    "pope_accuracy": "POPE accuracy",
    "pope_adv_accuracy": "adversarial POPE accuracy",
}

INTRO = (
    "α chosen per pair on `{dev}` by {select} (★); 95 % bootstrap CIs over answers.",
    "CHAIR_i = hallucinated / all object mentions (lower is better), recall = mentioned gold / all gold.",
    "Δ … vs aligned: the difference to the pair's aligned model on the same prompts, with a paired",
    "bootstrap CI (one resample of prompts for both models); a CI that excludes 0 is a difference.",
)


HEADLINE_LABELS = {
    "prompt_set": "prompt set",
    "chosen_alpha": "chosen α",
    "sft_chair_i": "SFT CHAIR_i",
    "sft_recall": "SFT recall",
    "aligned_chair_i": "aligned CHAIR_i",
    "aligned_recall": "aligned recall",
    "chosen_chair_i": "chosen α CHAIR_i",
    "chosen_recall": "chosen α recall",
    "chosen_vs_aligned_chair_i": "Δ CHAIR_i chosen vs aligned",
    "chosen_vs_aligned_recall": "Δ recall chosen vs aligned",
}
"""Headers in words for the HTML page; the Markdown keeps the headline's column keys as they are."""


def _show(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def sections(
    df: pd.DataFrame, chosen: Mapping[str, float], params: Mapping[str, Any]
) -> list[tuple[str, pd.DataFrame]]:
    """The report's tables in order, each with its heading: the headline, then one per (set, pair)."""
    dev = params.get("dev_prompt_set")
    eval_sets = [ps for ps in params["prompt_sets"] if ps != dev]
    head = headline(df, chosen, eval_sets)
    head = head.map(_show)
    out = [("SFT → aligned → chosen α", head)]
    for ps in params["prompt_sets"]:
        for pair, g in df[df.prompt_set == ps].groupby("pair", sort=False):
            meta = f"{g.method.iloc[0]}, vision tower + projector {g.vision.iloc[0]}"
            out.append((f"{ps} · {pair} ({meta})", variant_display(g, chosen.get(pair))))
    return out


def _intro(params: Mapping[str, Any]) -> list[str]:
    names = [SELECT_NAMES[k] for k in params.get("select_by") or (SELECT_BY,)]
    select = names[0] if len(names) == 1 else "the mean of " + " and ".join(names)
    return [x.format(dev=params.get("dev_prompt_set"), select=select) for x in INTRO]


def markdown(df: pd.DataFrame, chosen: Mapping[str, float], params: Mapping[str, Any]) -> str:
    from .report.pages import plain_md_table

    out = [
        "# Hallucination",
        "",
        *_intro(params),
    ]
    for title, table in sections(df, chosen, params):
        out += ["", f"## {title}", "", *plain_md_table(table)]
    return "\n".join(out) + "\n"


def html_report(df: pd.DataFrame, chosen: Mapping[str, float], params: Mapping[str, Any], experiment: str) -> str:
    """The same tables as one page for ``snakemake --report`` (CIs on a second line in each cell)."""
    import html

    from .report.pages import html_page, plain_html_table

    title = f"Hallucination — {experiment}".rstrip(" —")
    intro = " ".join(_intro(params)).replace("`", "")
    parts = [f"<h1>{html.escape(title)}</h1>", f'<p class="note">{html.escape(intro)}</p>']
    for heading, table in sections(df, chosen, params):
        parts += [f"<h2>{html.escape(heading)}</h2>", plain_html_table(table.rename(columns=HEADLINE_LABELS))]
    return html_page(title, "\n".join(parts))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: str) -> None:
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    _plt().close(fig)


def plot_alpha(df: pd.DataFrame, params: Mapping[str, Any], out: str) -> None:
    """CHAIR_i, CHAIR_s, recall and POPE accuracy against α (SFT at −1, aligned at 0) with CI bands."""
    plt = _plt()
    panels = (("chair_i", "CHAIR_i"), ("chair_s", "CHAIR_s"), ("recall", "recall"), ("pope_accuracy", "POPE accuracy"))
    fig, axes = plt.subplots(1, len(panels), figsize=(16, 3.6))
    dev = params.get("dev_prompt_set")
    line = df[df.role.isin(["sft", "aligned", "alpha"]) & (df.prompt_set != dev)].sort_values("alpha")
    for ax, (key, name) in zip(axes, panels):
        for (ps, pair), g in line.groupby(["prompt_set", "pair"]):
            if g[key].isna().all():
                continue
            (h,) = ax.plot(g.alpha, g[key], "o-", label=f"{pair} ({ps})", ms=3)
            ax.fill_between(g.alpha, g[f"{key}_ci_low"], g[f"{key}_ci_high"], color=h.get_color(), alpha=0.15)
        ax.set_xlabel("α (SFT = −1, aligned = 0)")
        ax.set_title(name)
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    _save(fig, out)


def component_delta(manifests: Sequence[str], out_csv: str, out_png: str) -> pd.DataFrame:
    """‖Δ‖ per (pair, component, layer) from the engine's manifests (one per pair: Δ is α-free)."""
    rows, seen = [], set()
    for m in sorted(manifests):
        pair = Path(m).parent.name
        man = read_json(m)
        if pair in seen or "components" not in man:
            continue
        seen.add(pair)
        for comp, e in man["components"].items():
            rows.append(
                {
                    "pair": pair,
                    "component": comp,
                    "layer": "all",
                    "delta_norm": e.get("delta_norm"),
                    "rel_delta": e.get("rel_delta"),
                    "zero_delta": e.get("zero_delta"),
                }
            )
            for le in e.get("layers", []):
                rows.append(
                    {
                        "pair": pair,
                        "component": comp,
                        "layer": le["layer"],
                        "delta_norm": le.get("delta_norm"),
                        "rel_delta": le.get("rel_delta"),
                        "zero_delta": le.get("zero_delta"),
                    }
                )
    df = pd.DataFrame(rows, columns=["pair", "component", "layer", "delta_norm", "rel_delta", "zero_delta"])
    with atomic_path(out_csv) as tmp:
        df.to_csv(tmp, index=False)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    tot = df[df.layer == "all"]
    if tot.empty:
        ax.text(0.5, 0.5, "no component manifests", ha="center", va="center")
    else:
        piv = tot.pivot(index="pair", columns="component", values="rel_delta").fillna(0.0)
        piv.plot.bar(ax=ax)
        ax.set_ylabel("‖θ_aligned − θ_sft‖ / ‖θ_aligned‖")
        ax.tick_params(axis="x", rotation=0)
    fig.tight_layout()
    _save(fig, out_png)
    return df


def training_plot(trained_dirs: Sequence[str], out_png: str) -> None:
    """Loss, reward accuracy and margins of every VLM trained here (the Align-Anything signals)."""
    histories = [str(Path(d) / "training_history.csv") for d in trained_dirs]
    histories = [h for h in histories if Path(h).exists()]
    if not histories:
        plt = _plt()
        fig, ax = plt.subplots(figsize=(4, 2))
        ax.text(0.5, 0.5, "no VLM was trained here", ha="center", va="center")
        _save(fig, out_png)
        return
    from .training_curves import plot_curves

    plot_curves(histories, out_png)


def build_hallucination_report(
    inputs: Mapping[str, Any], outputs: Mapping[str, str], params: Mapping[str, Any]
) -> pd.DataFrame:
    """Every output of the ``hallucination_report`` rule."""

    def as_list(x):
        return [x] if isinstance(x, str) else list(x or [])

    df = collect(as_list(inputs.get("metrics")), params)
    if df.empty:
        raise ValueError("hallucination report: no metrics files to report")
    chosen = choose_alpha(df, params.get("dev_prompt_set"), params.get("select_by") or (SELECT_BY,))
    df["chosen"] = [r.role in ("aligned", "alpha") and r.alpha == chosen.get(r.pair) for r in df.itertuples()]
    with atomic_path(outputs["table_csv"]) as tmp:
        df.to_csv(tmp, index=False)
    with atomic_path(outputs["table_md"]) as tmp:
        tmp.write_text(markdown(df, chosen, params), encoding="utf-8")
    if outputs.get("table_html"):
        with atomic_path(outputs["table_html"]) as tmp:
            experiment = Path(outputs["table_html"]).parents[1].name  # <results>/<experiment>/report/…
            tmp.write_text(html_report(df, chosen, params, experiment), encoding="utf-8")
    plot_alpha(df, params, outputs["alpha_plot"])
    component_delta(as_list(inputs.get("manifests")), outputs["component_csv"], outputs["component_plot"])
    training_plot(as_list(inputs.get("training")), outputs["training_plot"])
    log.info("hallucination report: %d rows, chosen α %s", len(df), chosen)
    return df
