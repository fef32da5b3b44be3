"""The ``report`` rule's job and the command line that rebuilds a finished experiment's report."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ..common import read_json, setup_logging
from ..layout import REPORT_FILES
from .answers import first_seed_answers, seeded_answer_table
from .browser import browser_data, browser_html
from .extras import layer_delta, training_plot
from .files import write_csv, write_text
from .markdown import summary_markdown
from .pages import overview_rst, summary_html
from .plots import plot_diagnostics, plot_rewards
from .published import published_comparison
from .seeds import pool
from .summary import build_summary
from .tidy import per_prompt_long, results_long

log = logging.getLogger(__name__)


def _as_list(x: Any) -> list[str]:
    return [x] if isinstance(x, str) else list(x or [])


def build_report(inputs: Mapping[str, Any], outputs: Mapping[str, str], params: Mapping[str, Any]) -> pd.DataFrame:
    """Everything the `report` rule writes (``layout.REPORT_FILES``); returns the summary table."""
    from ..search.report import mark_searched, with_searched

    search = _as_list(inputs.get("search"))
    params = with_searched(params, search)
    searched = _as_list(inputs.get("searched"))  # the searched α's answers and scores on every prompt set
    gen_paths = _as_list(inputs.get("generations")) + [p for p in searched if "/generations/" in p]
    score_paths = _as_list(inputs.get("scores")) + [p for p in searched if "/scores/" in p]
    pooled = pool(gen_paths, score_paths)  # several sampling seeds per variant: .seeds
    generations, scores = pooled.generations, pooled.scores
    if "experiment" not in params:  # the title only: results/<experiment>/report/summary.csv
        params = {**params, "experiment": Path(outputs["summary_csv"]).parent.parent.name}
    summary = build_summary(generations, scores, params, matrices=pooled.matrices, n_seeds=pooled.n_seeds)
    df = mark_searched(summary, search)
    write_csv(df, outputs["summary_csv"])
    write_text(summary_markdown(df, params), outputs["summary_md"])
    answers = seeded_answer_table(pooled, params)
    if "results_long" in outputs:
        write_csv(results_long(df, params), outputs["results_long"])
        write_csv(per_prompt_long(answers), outputs["per_prompt"])
        write_text(summary_html(df, params), outputs["summary_html"])
        write_text(overview_rst(df, params), outputs["overview_rst"])
        title = f"ExPO answers — {params['experiment']}"
        shown = first_seed_answers(answers)
        write_text(browser_html(browser_data(shown, df, params), title), outputs["answers_html"])
    plot_rewards(df, params, outputs["reward_plot"])
    plot_diagnostics(df, outputs["diagnostics_plot"])
    layer_delta(_as_list(inputs.get("manifests")), outputs["delta_csv"], outputs["delta_plot"])
    training_plot(_as_list(inputs.get("training")), outputs["training_plot"])
    published_comparison(inputs["published"], df, params, outputs["published_csv"])
    if "study_csv" in outputs:
        from ..study import build_study, write_study

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
        "generations": [str(p) for p in sorted(res.glob("generations/*/*/*.json"))]
        + [str(p) for p in sorted(res.glob("generations/*/*/*/seed*.json"))],
        "scores": [str(p) for p in sorted(res.glob("scores/*/*/*/*.json"))]
        + [str(p) for p in sorted(res.glob("scores/*/*/*/*/seed*.json"))],
        "manifests": [str(p) for p in sorted(res.glob("manifests/*/*.json"))],
        "training": [str(p) for p in sorted(res.glob("trained/*")) if (p / "training_history.csv").exists()],
        "published": a.published,
    }
    params = {"experiment": res.name, **read_json(a.params)}
    build_report(inputs, {k: str(out / v) for k, v in REPORT_FILES.items()}, params)
