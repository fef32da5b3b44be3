"""The ``evaluation_report`` rule's files: MT-Bench, capability and judge tables as Markdown, HTML,
CSV, the long-form table and the capability-vs-α plot (tables from :mod:`.evaluation`).

``python -m workflow_scripts.report.evaluation_pages RESULTS --params P.json`` rebuilds them from a
finished experiment folder.
"""

from __future__ import annotations

import argparse
import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..common import read_json, setup_logging
from ..layout import EVALUATION_FILES
from .evaluation import capability_table, capability_verdicts, judge_table, mtbench_table
from .files import write_csv, write_text
from .pages import html_page, plain_html_table, plain_md_table
from .tidy import RESULT_COLUMNS


def _num(x: Any, fmt: str = "{:.2f}") -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def _ci(row: Mapping[str, Any], col: str, fmt: str = "{:.2f}") -> str:
    lo, hi = row.get(f"{col}_ci_low"), row.get(f"{col}_ci_high")
    ci = "" if lo is None or hi is None or pd.isna(lo) or pd.isna(hi) else f" [{fmt.format(lo)}, {fmt.format(hi)}]"
    return _num(row.get(col), fmt) + ci


def mtbench_display(mt: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in mt.iterrows():
        if r.get("status") != "ok":
            rows.append({"pair": r.pair, "variant": r.variant, "turn 1": f"{r.status}: {r.get('reason')}"})
            continue
        rows.append(
            {
                "pair": r.pair,
                "variant": r.variant,
                "turn 1": _ci(r, "turn_1"),
                "turn 2": _ci(r, "turn_2"),
                "overall": _ci(r, "overall"),
                "questions": _num(r.n_questions, "{:.0f}"),
                "unparseable": f"{_num(r.n_unparseable, '{:.0f}')} of {_num(r.n_judgments, '{:.0f}')}",
            }
        )
    return pd.DataFrame(rows)


def capability_display(cap: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in cap.iterrows():
        rows.append(
            {
                "pair": r.pair,
                "variant": r.variant,
                "task": f"{r.task} ({r.metric})",
                "ours": f"{r.value:.3f} ± {_num(r.stderr, '{:.3f}')}",
                "Δ vs aligned": ""
                if pd.isna(r.delta_vs_aligned)
                else f"{r.delta_vs_aligned:+.3f} ± {r.delta_stderr:.3f}",
                "published (authors)": "" if pd.isna(r.published_value) else f"{r.published_value:.3f}",
            }
        )
    return pd.DataFrame(rows)


def judge_display(jt: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in jt.iterrows():
        lc = f"unavailable ({r.lc_reason})" if pd.isna(r.lc_win_rate) else f"{r.lc_win_rate:.1f}"
        rows.append(
            {
                "pair": r.pair,
                "prompt set": r.prompt_set,
                "variant": r.variant,
                "judge": f"{r.source}: {Path(str(r.judge)).name}",
                "vs": r.baseline,
                "win rate %": _ci(r, "win_rate", "{:.1f}"),
                "discrete %": _num(r.discrete_win_rate, "{:.1f}"),
                "LC win rate %": lc,
                "n": _num(r.n, "{:.0f}"),
            }
        )
    return pd.DataFrame(rows)


SECTIONS = (
    ("MT-Bench (two turns, single-answer grading 1–10, 95 % bootstrap CIs over questions)", "mtbench"),
    ("Capability (lm-evaluation-harness; ± standard error; Δ vs the pair's aligned model)", "capability"),
    ("Judge win rates vs the baseline (percent; LC = alpaca_eval's length-controlled GLM)", "judge"),
)


def evaluation_markdown(tables: Mapping[str, pd.DataFrame], experiment: str) -> str:
    lines = [f"# Benchmarks beyond reward models — {experiment}", ""]
    shown = {"mtbench": mtbench_display, "capability": capability_display, "judge": judge_display}
    for title, key in SECTIONS:
        lines += [f"## {title}", "", *plain_md_table(shown[key](tables[key])), ""]
        if key == "capability":
            lines += [f"- {x}" for x in capability_verdicts(tables[key])] + [""]
    return "\n".join(lines)


def evaluation_html(tables: Mapping[str, pd.DataFrame], experiment: str) -> str:
    title = f"Benchmarks beyond reward models — {experiment}"
    parts = [f"<h1>{html.escape(title)}</h1>"]
    shown = {"mtbench": mtbench_display, "capability": capability_display, "judge": judge_display}
    for heading, key in SECTIONS:
        parts += [f"<h2>{html.escape(heading)}</h2>", plain_html_table(shown[key](tables[key]))]
        if key == "capability":
            verdicts = capability_verdicts(tables[key])
            if verdicts:
                parts += ["<ul>", *[f"<li>{html.escape(x)}</li>" for x in verdicts], "</ul>"]
    return html_page(title, "\n".join(parts))


def _long_row(r: Mapping[str, Any], **m: Any) -> dict[str, Any]:
    """One ``results_long.csv`` row: the variant's identity from ``r``, the measurement from ``m``
    (``prompt_set``, ``metric``, ``reward_model``, ``unit``, ``n``, ``value`` and optional
    ``baseline`` / ``ci_low`` / ``ci_high``)."""
    name = r["variant_id"].split("/", 1)[1]
    return {
        **{k: r[k] for k in ("pair", "variant_id", "variant", "kind", "alpha", "scheme")},
        "model": name if r["kind"] in ("sft", "aligned") else f"{r['pair']}/{name}",
        "chosen_on_dev": False,
        "baseline": "",
        "ci_low": None,
        "ci_high": None,
        **m,
    }


def _mtbench_long(mt: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for _, r in mt[mt.status == "ok"].iterrows():
        at = {"prompt_set": "mt_bench", "reward_model": r.judge}
        for part in ("turn_1", "turn_2", "overall"):
            ci = {"ci_low": r[f"{part}_ci_low"], "ci_high": r[f"{part}_ci_high"]}
            rows.append(
                _long_row(r, **at, metric=f"mtbench_{part}", value=r[part], **ci, unit="rating", n=r.n_questions)
            )
        n = r.n_judgments
        rows.append(_long_row(r, **at, metric="mtbench_unparseable", value=r.n_unparseable, unit="judgments", n=n))
    return rows


def _capability_long(cap: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for _, r in cap.iterrows():
        at = {"prompt_set": r.task, "reward_model": "lm_eval", "unit": "fraction", "n": r.n}
        half = 1.96 * r.stderr
        rows.append(_long_row(r, **at, metric=r.metric, value=r.value, ci_low=r.value - half, ci_high=r.value + half))
        if not pd.isna(r.delta_vs_aligned):
            d, dh = r.delta_vs_aligned, 1.96 * r.delta_stderr
            ci = {"ci_low": d - dh, "ci_high": d + dh}
            rows.append(_long_row(r, **at, metric=f"{r.metric}_delta", baseline="aligned", value=d, **ci))
    return rows


def _judge_long(jt: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for _, r in jt.dropna(subset=["win_rate"]).iterrows():
        at = {"prompt_set": r.prompt_set, "reward_model": f"{r.source}:{Path(str(r.judge)).name}"}
        at.update(baseline=r.baseline, unit="percent", n=r.n)
        ci = {"ci_low": r.win_rate_ci_low, "ci_high": r.win_rate_ci_high}
        rows.append(_long_row(r, **at, metric="judge_win_rate", value=r.win_rate, **ci))
        if not pd.isna(r.lc_win_rate):
            rows.append(_long_row(r, **at, metric="judge_lc_win_rate", value=r.lc_win_rate))
    return rows


def evaluation_long(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The tables in ``results_long.csv``'s columns: MT-Bench ratings (unit ``rating``, 1–10) with the
    judge as ``reward_model``; capability values (``fraction``, CI = ±1.96 s.e.) with ``lm_eval``;
    judge win rates (``percent``)."""
    rows = _mtbench_long(tables["mtbench"]) + _capability_long(tables["capability"]) + _judge_long(tables["judge"])
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def plot_capability(cap: pd.DataFrame, out_png: str) -> None:
    """Capability vs α, one panel per task: SFT at −1, aligned at 0, ±1.96 s.e. bars; the authors'
    published aligned / ExPO numbers as stars where the pair names a published pair."""
    from .plots import _plt, placeholder_png, save

    line = cap[cap.kind.isin(["sft", "aligned", "alpha"])] if not cap.empty else cap
    if line.empty:
        placeholder_png(out_png, "no capability results")
        return
    plt = _plt()
    tasks = list(dict.fromkeys(line.task))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for pair, g in line[line.task == task].groupby("pair", sort=False):
            g = g.sort_values("alpha")
            ax.errorbar(g.alpha, g.value, yerr=1.96 * g.stderr.fillna(0), fmt="o-", capsize=3, label=pair)
            pub = g.dropna(subset=["published_value"])
            if not pub.empty:
                ax.plot(pub.alpha, pub.published_value, "*", ms=11, label=f"{pair} (published)")
        ax.set_title(f"{task} ({line[line.task == task].metric.iloc[0]})", fontsize=9)
        ax.set_xlabel("α (SFT −1, aligned 0)")
        ax.margins(x=0.08, y=0.15)
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    save(fig, out_png)


def _as_list(x: Any) -> list[str]:
    return [x] if isinstance(x, str) else list(x or [])


def build_evaluation_report(
    inputs: Mapping[str, Any], outputs: Mapping[str, str], params: Mapping[str, Any]
) -> dict[str, pd.DataFrame]:
    """Everything the ``evaluation_report`` rule writes (``layout.EVALUATION_FILES``)."""
    tables = {
        "mtbench": mtbench_table(_as_list(inputs.get("mtbench")), params),
        "capability": capability_table(_as_list(inputs.get("capability")), params, inputs.get("published_lmeval")),
        "judge": judge_table(_as_list(inputs.get("local_judge")), _as_list(inputs.get("alpaca_eval")), params),
    }
    experiment = params.get("experiment") or Path(outputs["evaluation_md"]).parent.parent.name
    write_text(evaluation_markdown(tables, experiment), outputs["evaluation_md"])
    write_text(evaluation_html(tables, experiment), outputs["evaluation_html"])
    write_csv(tables["mtbench"], outputs["mtbench_csv"])
    write_csv(tables["capability"], outputs["capability_csv"])
    write_csv(tables["judge"], outputs["judge_csv"])
    write_csv(evaluation_long(tables), outputs["evaluation_long"])
    plot_capability(tables["capability"], outputs["capability_plot"])
    return tables


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description="Rebuild the MT-Bench / capability / judge tables of a finished experiment."
    )
    ap.add_argument("results", help="results/<experiment> folder")
    ap.add_argument("--params", required=True, help="JSON with the evaluation_report rule's params")
    ap.add_argument("--out", help="output folder (default <results>/report)")
    ap.add_argument("--published-lmeval", default="resources/expo_published_lmeval.csv")
    ap.add_argument("--log")
    a = ap.parse_args(argv)
    setup_logging(a.log)
    res = Path(a.results)
    out = Path(a.out or res / "report")
    inputs = {
        "mtbench": [str(p) for p in sorted(res.glob("mtbench/grade/*/*.json"))],
        "capability": [str(p) for p in sorted(res.glob("capability/*/*.json"))],
        "local_judge": [
            str(p) for p in sorted(res.glob("local_judge/*/*/*.json")) if not p.name.endswith(".cache.json")
        ],
        "alpaca_eval": [str(p.parent) for p in sorted(res.glob("alpaca_eval/*/*/*/result.json"))],
        "published_lmeval": a.published_lmeval,
    }
    params = {"experiment": res.name, **read_json(a.params)}
    build_evaluation_report(inputs, {k: str(out / v) for k, v in EVALUATION_FILES.items()}, params)


if __name__ == "__main__":
    main()
