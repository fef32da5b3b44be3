"""Evaluation metrics: per-answer failure flags, per-variant diagnostics, bootstrap CIs, win rates,
length-controlled win rates and α selection.

Why this package exists: the seed report blamed ExPO for "restating the instruction" and rambling at
large α without measuring either. Here every such claim becomes a number with a 95 % bootstrap CI,
computed the same way for every variant so rows of the report are comparable.

Units (documented once, used everywhere):

* win rates are **percent** (0–100), exactly as alpaca_eval and the published ExPO tables report them;
* diagnostic rates (``truncation_rate``, ``restating_rate`` …) are **fractions** (0–1);
* every statistic ``x`` with an interval comes with ``x_ci_low`` / ``x_ci_high`` (95 % percentile
  bootstrap over prompts, see :func:`bootstrap_ci`).

Modules: :mod:`.flags` (per-answer detectors and their thresholds), :mod:`.statistics` (bootstrap,
alignment), :mod:`.diagnostics` (per-variant rates), :mod:`.win_rates` (reward-model and judge
preference win rates), :mod:`.length_controlled` (alpaca_eval's GLM from local files),
:mod:`.selection` (α choice), :mod:`.cli` (``python -m workflow_scripts.metrics``).
"""

from .cli import main
from .diagnostics import diagnostics
from .flags import (
    REPETITIVE_MIN_NGRAMS,
    REPETITIVE_RATIO,
    REPETITIVE_TAIL_RATIO,
    REPETITIVE_TAIL_TOKENS,
    RESTATE_ANCHOR_WINDOW,
    RESTATE_HEAD_TOKENS,
    RESTATE_MIN_HEAD,
    RESTATE_MIN_OVERLAP,
    RESTATE_ONLY_MIN_COVERAGE,
    answer_flags,
)
from .length_controlled import (
    ALPACA_EVAL_HUB_REPO,
    ALPACA_EVAL_ID_RE,
    DF_GAMED_ENV,
    DF_GAMED_FILENAME,
    find_df_gamed,
    judge_lc_win_rate,
    lc_win_rate,
)
from .selection import select_alpha
from .statistics import _boot_indices, _finite_floats, align, bootstrap_ci, bootstrap_ci_over_seeds
from .win_rates import _import_alpaca_eval_metrics, preference_win_rate, preferences, win_rate

__all__ = [
    "ALPACA_EVAL_HUB_REPO",
    "ALPACA_EVAL_ID_RE",
    "DF_GAMED_ENV",
    "DF_GAMED_FILENAME",
    "REPETITIVE_MIN_NGRAMS",
    "REPETITIVE_RATIO",
    "REPETITIVE_TAIL_RATIO",
    "REPETITIVE_TAIL_TOKENS",
    "RESTATE_ANCHOR_WINDOW",
    "RESTATE_HEAD_TOKENS",
    "RESTATE_MIN_HEAD",
    "RESTATE_MIN_OVERLAP",
    "RESTATE_ONLY_MIN_COVERAGE",
    "_boot_indices",
    "_finite_floats",
    "_import_alpaca_eval_metrics",
    "align",
    "answer_flags",
    "bootstrap_ci",
    "bootstrap_ci_over_seeds",
    "diagnostics",
    "find_df_gamed",
    "judge_lc_win_rate",
    "lc_win_rate",
    "main",
    "preference_win_rate",
    "preferences",
    "select_alpha",
    "win_rate",
]
