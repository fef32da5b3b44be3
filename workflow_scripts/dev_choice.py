"""The one definition of "α chosen on dev", used by the summary, its plots, the published comparison
and the controlled-study table.

The rule: per pair, the candidate with the highest mean primary reward on the dev prompt set, where
the candidates are **the aligned model (α = 0) and every uniform α** (layer schemes are not: they
have no single α). The aligned model is a candidate because "do not extrapolate" is a legitimate
outcome of the choice: when it wins on dev the tables say α = 0 rather than claim the least bad
extrapolation. Ties go to the smaller |α| (``metrics.select_alpha``): the smaller extrapolation is
the safer claim.
"""

from __future__ import annotations

import math

import pandas as pd

CANDIDATE_KINDS = ("aligned", "alpha")
"""Row kinds (``Variant.role``) that compete on the dev set."""


def choose_on_dev(dev_rows: pd.DataFrame, metric: str, group_col: str = "pair") -> dict[str, tuple[float, float]]:
    """{pair: (chosen α, its dev ``metric``)} over the candidate rows of a dev prompt set."""
    from .metrics import select_alpha

    cand = dev_rows[dev_rows.kind.isin(CANDIDATE_KINDS)]
    if cand.empty or metric not in cand or cand[metric].isna().all():
        return {}
    cand = cand[cand[metric].notna()]
    best = select_alpha(cand, metric=metric, group_col=group_col, alpha_col="alpha")
    return {b[group_col]: (float(b["alpha"]), float(b[metric])) for _, b in best.iterrows()}


def chosen_for(dev_rows: pd.DataFrame, metric: str) -> tuple[float, float]:
    """(α, dev metric) of one pair's dev rows; NaNs when nothing can be chosen."""
    rows = dev_rows.assign(_g=0)
    return choose_on_dev(rows, metric, group_col="_g").get(0, (math.nan, math.nan))
