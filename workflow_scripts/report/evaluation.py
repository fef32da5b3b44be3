"""Tables of the optional benchmarks per variant: MT-Bench grades, lm-eval capability, judge win rates.

Why a separate report: these stages (``rules/mtbench.smk``, ``rules/capability.smk``,
``rules/judge.smk``) can take hours on a CPU, so their tables are built by their own rule
(``evaluation_report``) and never hold back the reward report. Each table has one row per (pair,
variant[, task or prompt set]) in the summary's variant order (SFT, aligned, α, schemes), with the
variant's role and position on the α axis (SFT −1, aligned 0), so "is little impact true for this
pair?" is read off the capability table's change vs the aligned model, and the authors' published
lm-eval numbers (``resources/expo_published_lmeval.csv``) sit beside ours where the pair names a
published pair.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..common import read_json
from ..layout import Variant
from .summary import pair_variants

HEADLINE_METRIC = {
    "arc_challenge": "acc_norm",
    "hellaswag": "acc_norm",
    "mmlu": "acc",
    "truthfulqa_mc2": "acc",
    "winogrande": "acc",
    "gsm8k": "exact_match[strict-match]",
}
"""The metric the Open LLM Leaderboard (v1) reported per task; other tasks report ``acc``."""
IDENTITY = ["pair", "variant_id", "variant", "kind", "alpha", "scheme"]
_CI = [f"{p}{s}" for p in ("turn_1", "turn_2", "overall") for s in ("", "_ci_low", "_ci_high")]
MTBENCH_COLUMNS = [*IDENTITY, "judge", "status", "reason", *_CI, "n_questions", "n_judgments", "n_unparseable"]
MTBENCH_COLUMNS.append("n_unparseable_replies")
CAPABILITY_COLUMNS = [*IDENTITY, "task", "metric", "value", "stderr", "n", "delta_vs_aligned", "delta_stderr"]
CAPABILITY_COLUMNS += ["delta_z", "published_alpha", "published_value"]
JUDGE_COLUMNS = [*IDENTITY, "prompt_set", "source", "judge", "baseline", "status", "win_rate", "win_rate_ci_low"]
JUDGE_COLUMNS += ["win_rate_ci_high", "discrete_win_rate", "n", "n_missing", "lc_win_rate", "lc_reason"]
"""Each table's columns, in order (also the header of an empty table)."""
NOISE_Z = 2.0
"""A change vs the aligned model within this many standard errors is read as no change."""


def _key(path: str) -> tuple[str, str]:
    v = Variant.parse(path)
    return v.group, v.name


def _identity(pair_name: str, pair: Mapping[str, str], group: str, name: str) -> dict[str, Any]:
    v = Variant(group, name)
    return {
        "pair": pair_name,
        "variant_id": f"{group}/{name}",
        "variant": v.label(pair),
        "kind": v.role(pair),
        "alpha": v.alpha(pair),
        "scheme": v.scheme,
    }


def _rows_in_order(params: Mapping[str, Any], found: Mapping[tuple[str, str], Any]):
    """(pair name, pair, (group, name), record) for every pair's variants that have a record."""
    for pair_name, pair in params["pairs"].items():
        for key in pair_variants(pair_name, pair, params.get("variants", [])):
            if key in found:
                yield pair_name, pair, key, found[key]


def mtbench_table(grade_paths: Sequence[str], params: Mapping[str, Any]) -> pd.DataFrame:
    """Turn-1, turn-2 and overall MT-Bench ratings (1–10) with CIs and unparseable counts per variant."""
    found = {_key(p): read_json(p) for p in grade_paths}
    rows = []
    for pair_name, pair, (group, name), g in _rows_in_order(params, found):
        row = {**_identity(pair_name, pair, group, name), "judge": g.get("judge"), "status": g.get("status")}
        row["reason"] = g.get("reason")
        if g.get("status") != "ok":
            rows.append(row)
            continue
        for part in ("turn_1", "turn_2", "overall"):
            s = g.get(part, {})
            row[part], row[f"{part}_ci_low"], row[f"{part}_ci_high"] = s.get("score"), s.get("ci_low"), s.get("ci_high")
        row["n_questions"] = g.get("overall", {}).get("n_questions")
        row["n_judgments"] = g.get("n_judgments")
        row["n_unparseable"] = g.get("n_unparseable")
        row["n_unparseable_replies"] = g.get("n_unparseable_replies")
        rows.append(row)
    return pd.DataFrame(rows, columns=MTBENCH_COLUMNS)


def headline_metric(task: str, metrics: Mapping[str, float]) -> str | None:
    """The metric shown for ``task``: the leaderboard's, else ``acc``, else the first non-stderr one."""
    for name in (HEADLINE_METRIC.get(task), "acc"):
        if name and name in metrics:
            return name
    return next((m for m in metrics if "stderr" not in m), None)


def _capability_rows(pair_name, pair, group, name, rec) -> list[dict[str, Any]]:
    rows = []
    for task, metrics in sorted(rec.get("tasks", {}).items()):
        metric = headline_metric(task, metrics)
        if metric is None:
            continue
        stem, _, filt = metric.partition("[")
        stderr = metrics.get(f"{stem}_stderr" + (f"[{filt}" if filt else ""), math.nan)
        rows.append(
            {
                **_identity(pair_name, pair, group, name),
                "task": task,
                "metric": metric,
                "value": float(metrics[metric]),
                "stderr": float(stderr),
                "n": (rec.get("n_samples") or {}).get(task),
            }
        )
    return rows


def capability_table(
    capability_paths: Sequence[str], params: Mapping[str, Any], published_csv: str | None = None
) -> pd.DataFrame:
    """lm-eval accuracy per (pair, variant, task) with stderr, the change vs the pair's aligned model
    (``delta_vs_aligned``, its stderr from both, ``delta_z``) and the authors' published numbers."""
    found = {_key(p): read_json(p) for p in capability_paths}
    rows = [r for pn, pair, (g, n), rec in _rows_in_order(params, found) for r in _capability_rows(pn, pair, g, n, rec)]
    df = pd.DataFrame(rows, columns=CAPABILITY_COLUMNS[: CAPABILITY_COLUMNS.index("n") + 1])
    if df.empty:
        return pd.DataFrame(columns=CAPABILITY_COLUMNS)
    aligned = df[df.kind == "aligned"].set_index(["pair", "task"])[["value", "stderr"]]
    base = [aligned.loc[(p, t)] if (p, t) in aligned.index else None for p, t in zip(df.pair, df.task)]
    df["delta_vs_aligned"] = [r - b["value"] if b is not None else math.nan for r, b in zip(df.value, base)]
    df["delta_stderr"] = [math.hypot(s, b["stderr"]) if b is not None else math.nan for s, b in zip(df.stderr, base)]
    df["delta_z"] = df.delta_vs_aligned / df.delta_stderr.where(df.delta_stderr > 0)
    df.loc[df.kind == "aligned", ["delta_vs_aligned", "delta_stderr", "delta_z"]] = math.nan
    return _with_published(df, params, published_csv)


def _with_published(df: pd.DataFrame, params: Mapping[str, Any], published_csv: str | None) -> pd.DataFrame:
    """``published_alpha`` and ``published_value`` (the authors' aligned model on the aligned row, their
    ExPO model on the row at the published α) for pairs naming a published pair in the CSV."""
    df = df.assign(published_alpha=math.nan, published_value=math.nan)
    if not published_csv or not Path(published_csv).is_file():
        return df
    pub = pd.read_csv(published_csv)
    for pair_name, pair in params["pairs"].items():
        ref = pair.get("published") or {}
        sel = pub[(pub.sft_model == ref.get("sft_model")) & (pub.aligned_model == ref.get("aligned_model"))]
        for _, p in sel.iterrows():
            at = (df.pair == pair_name) & (df.task == p.task) & (df.metric == p.metric)
            df.loc[at, "published_alpha"] = p.alpha
            df.loc[at & (df.kind == "aligned"), "published_value"] = p.before
            df.loc[at & (df.kind == "alpha") & ((df.alpha - p.alpha).abs() < 1e-9), "published_value"] = p.after
    return df


def capability_verdicts(cap: pd.DataFrame) -> list[str]:
    """One line per (pair, extrapolated variant): does extrapolation change capability beyond noise?"""
    lines = []
    if cap.empty:
        return lines
    for (pair, label), g in cap[cap.kind.isin(["alpha", "scheme"])].groupby(["pair", "variant"], sort=False):
        g = g.dropna(subset=["delta_vs_aligned"])
        if g.empty:
            continue
        worst = g.loc[g.delta_vs_aligned.idxmin()]
        beyond = g[g.delta_z.abs() > NOISE_Z]
        verdict = (
            "no task changes beyond noise (|Δ| ≤ 2 s.e.): little impact holds"
            if beyond.empty
            else "changed beyond noise on "
            + ", ".join(f"{t} ({d:+.3f})" for t, d in zip(beyond.task, beyond.delta_vs_aligned))
        )
        lines.append(
            f"{pair} {label}: largest drop vs aligned {worst.delta_vs_aligned:+.3f} on {worst.task}; {verdict}"
        )
    return lines


def judge_table(
    local_paths: Sequence[str], api_paths: Sequence[str], params: Mapping[str, Any], *, df_gamed: str | None = None
) -> pd.DataFrame:
    """Judge win rates per (pair, prompt set, variant): headline and discrete win rate (percent) with CI,
    and the length-controlled win rate from the judge's annotations or ``unavailable (reason)``."""
    from ..metrics import judge_lc_win_rate

    rows = []
    for path, source in [*((p, "local") for p in local_paths), *((p, "api") for p in api_paths)]:
        p = Path(path)
        rec = read_json(p / "result.json" if p.is_dir() else p)
        ps = (p if p.is_dir() else p.with_suffix("")).parent.parent.name
        found = {_key(str(p)): rec}
        for pair_name, pair, (group, name), r in _rows_in_order(params, found):
            row = {**_identity(pair_name, pair, group, name), "prompt_set": ps, "source": source}
            row.update(_local_judge_row(r, judge_lc_win_rate, df_gamed) if source == "local" else _api_row(r))
            rows.append(row)
    return pd.DataFrame(rows, columns=JUDGE_COLUMNS)


def _local_judge_row(rec: Mapping[str, Any], lc_fn, df_gamed: str | None) -> dict[str, Any]:
    wr = rec["win_rate"]
    lc = lc_fn(rec.get("annotations") or [], df_gamed_path=df_gamed) if rec.get("annotations") else None
    return {
        "judge": rec.get("judge"),
        "baseline": "aligned",
        "status": "ok",
        "win_rate": wr["win_rate"],
        "win_rate_ci_low": wr.get("win_rate_ci_low"),
        "win_rate_ci_high": wr.get("win_rate_ci_high"),
        "discrete_win_rate": wr.get("discrete_win_rate"),
        "n": wr.get("n_total"),
        "n_missing": wr.get("n_missing"),
        "lc_win_rate": lc["lc_win_rate"] if lc else None,
        "lc_reason": (lc["reason"] if lc else "no annotations stored"),
    }


def _api_row(rec: Mapping[str, Any]) -> dict[str, Any]:
    m = rec.get("metrics") or {}
    lc = m.get("length_controlled_winrate")
    return {
        "judge": rec.get("annotator"),
        "baseline": "reference outputs",
        "status": rec.get("status"),
        "win_rate": m.get("win_rate"),
        "win_rate_ci_low": None,
        "win_rate_ci_high": None,
        "discrete_win_rate": m.get("discrete_win_rate"),
        "n": m.get("n_total"),
        "n_missing": None,
        "lc_win_rate": lc,
        "lc_reason": None if lc is not None else (rec.get("reason") or "alpaca_eval reported no LC win rate"),
    }
