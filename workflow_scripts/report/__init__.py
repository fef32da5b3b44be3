"""The report stage: which α helps, and why.

Reads every generation and score file of an experiment and writes (``layout.REPORT_FILES``)
- ``summary.csv`` / ``summary.md`` / ``summary.html`` (:mod:`.summary`, :mod:`.markdown`,
  :mod:`.pages`): one row per (pair, prompt set, variant) with the mean reward of each reward model
  (95 % bootstrap CI), win rate against the baseline judged by each reward model, length and
  failure-mode diagnostics, and the α chosen on the dev prompt set (:mod:`..dev_choice`);
- ``results_long.csv`` / ``per_prompt.csv`` (:mod:`.tidy`): the same numbers in long form with
  units, and every answer's rewards, length and flags;
- ``answers.html`` (:mod:`.answers`, :mod:`.browser`): the answer browser, every variant's answer
  to each prompt side by side;
- ``overview.rst``: the dev choice in words, included by the report's front page;
- ``reward_vs_alpha.png`` and ``diagnostics_vs_alpha.png`` (:mod:`.plots`);
- ``layer_delta.csv`` / ``.png`` and ``training_curves.png`` (:mod:`.extras`);
- ``published_comparison.csv`` (:mod:`.published`): the paper's numbers beside ours;
- ``study.csv`` / ``study.md`` (:mod:`..study`): the controlled-study table.

On the α axis the SFT model sits at α = −1 and the aligned model at α = 0, because
θ_aligned + α·(θ_aligned − θ_sft) is exactly those checkpoints there: the baselines are points on
the same curve, not separate things.
"""

from __future__ import annotations

from .answers import answer_table
from .browser import browser_data, browser_html
from .build import build_report, main
from .extras import layer_delta, training_plot
from .markdown import summary_markdown, verdict
from .pages import overview_rst, summary_html
from .plots import plot_diagnostics, plot_rewards
from .published import published_comparison
from .summary import DIAG_COLUMNS, build_summary, mark_chosen_alpha
from .tidy import PER_PROMPT_COLUMNS, RESULT_COLUMNS, per_prompt_long, results_long

__all__ = [
    "DIAG_COLUMNS",
    "PER_PROMPT_COLUMNS",
    "RESULT_COLUMNS",
    "answer_table",
    "browser_data",
    "browser_html",
    "build_report",
    "build_summary",
    "layer_delta",
    "main",
    "mark_chosen_alpha",
    "overview_rst",
    "per_prompt_long",
    "plot_diagnostics",
    "plot_rewards",
    "published_comparison",
    "results_long",
    "summary_html",
    "summary_markdown",
    "training_plot",
    "verdict",
]
