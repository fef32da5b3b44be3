"""The paper's published numbers for the pairs an experiment names, with ours beside them."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .files import write_csv

log = logging.getLogger(__name__)


def published_comparison(published_csv: str, df: pd.DataFrame, params: Mapping[str, Any], out_csv: str) -> pd.DataFrame:
    """One row per published (pair, α) with our aligned reward, our reward and win rate at the
    published α, and our dev-chosen α (eval prompt sets only)."""
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
        eval_rows = ours[(ours.prompt_set != params["evaluation"].get("dev_prompt_set"))]
        al = eval_rows[eval_rows.kind == "aligned"]
        for _, r in sel.iterrows():
            row = {"pair": pair_name, **r.to_dict()}
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
    write_csv(out, out_csv)
    return out
