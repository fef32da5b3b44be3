"""α selection on dev prompts."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pandas as pd

logger = logging.getLogger(__name__)


def select_alpha(
    dev_table: pd.DataFrame,
    *,
    metric: str = "reward_mean",
    group_col: str | Sequence[str] = "pair",
    alpha_col: str = "alpha",
    atol: float = 0.0,
) -> pd.DataFrame:
    """Best α per group by ``metric`` on the dev prompts, as the paper chose α (max mean reward).

    Ties (within ``atol``) go to the smaller |α| — the smaller extrapolation is the safer claim —
    and then to the smaller α. Rows with NaN metric are dropped with a warning; a group with no
    usable row is an error. Returns one row per group: the group columns, ``alpha_col``, ``metric``,
    ``n_alphas`` and ``tied_alphas`` (all α within ``atol`` of the best, for the report).
    """
    groups = [group_col] if isinstance(group_col, str) else list(group_col)
    missing = [c for c in [*groups, alpha_col, metric] if c not in dev_table.columns]
    if missing:
        raise ValueError(f"select_alpha: dev_table has no column(s) {missing}; has {list(dev_table.columns)}")
    df = dev_table[[*groups, alpha_col, metric]].copy()
    alphas = pd.to_numeric(df[alpha_col], errors="coerce")
    if alphas.isna().any():
        bad = df.loc[alphas.isna(), alpha_col].tolist()[:5]
        raise ValueError(f"select_alpha: non-numeric {alpha_col!r} values {bad}")
    df[alpha_col] = alphas
    df[metric] = pd.to_numeric(df[metric], errors="coerce")
    nan_rows = df[metric].isna()
    if nan_rows.any():
        logger.warning("select_alpha: dropping %d row(s) with NaN %s", int(nan_rows.sum()), metric)
    rows = []
    for key, g in df.groupby(groups, sort=True, dropna=False):
        n_alphas = len(g)
        g = g[g[metric].notna()]
        if g.empty:
            raise ValueError(f"select_alpha: group {key!r} has no row with a finite {metric!r}")
        best = g[metric].max()
        tied = g[g[metric] >= best - atol]
        tied = tied.assign(_abs=tied[alpha_col].abs()).sort_values(["_abs", alpha_col])
        pick = tied.iloc[0]
        row = {c: pick[c] for c in groups}
        row.update(
            {
                alpha_col: float(pick[alpha_col]),
                metric: float(pick[metric]),
                "n_alphas": n_alphas,
                "tied_alphas": sorted(tied[alpha_col].tolist()),
            }
        )
        rows.append(row)
    return pd.DataFrame(rows)
