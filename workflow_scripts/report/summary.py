"""The summary table: one row per (pair, prompt set, variant) with rewards, win rates, diagnostics.

Column conventions (the tidy tables in :mod:`.tidy` restate them as units): ``<rm>_mean`` and its
``_ci_low``/``_ci_high`` are on the reward model's own scale; ``<rm>_win_rate`` is a percentage
(0–100, ties count half); ``<rm>_diff_vs_aligned`` (with CI) is the paired difference from the
pair's aligned model on the reward model's scale; diagnostic rates (``restating_rate`` …) are
fractions (0–1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..layout import Variant, parse_generation_path, parse_score_path

DIAG_COLUMNS = [
    "mean_tokens",
    "truncation_rate",
    "empty_rate",
    "restating_rate",
    "restating_only_rate",
    "repetitive_rate",
    "distinct_2",
    "repeated_ngram_ratio",
    "prompts_truncated",
]
"""Per-variant diagnostics copied from :func:`~workflow_scripts.metrics.diagnostics` (with CIs)."""

GenKey = tuple[str, str, str]
"""(prompt set, group, variant name) of a generation file."""
ScoreKey = tuple[str, str, str, str]
"""(prompt set, reward model, group, variant name) of a score file."""


def generation_key(path: str) -> GenKey:
    """``.../generations/<prompt_set>/<group>/<variant>.json`` → (prompt_set, group, variant)."""
    ps, v = parse_generation_path(path)
    return (ps, *v.as_tuple())


def score_key(path: str) -> ScoreKey:
    """``.../scores/<prompt_set>/<rm>/<group>/<variant>.json`` → (prompt_set, rm, group, variant)."""
    ps, rm, v = parse_score_path(path)
    return (ps, rm, *v.as_tuple())


def pair_variants(pair_name: str, pair: Mapping[str, str], variants: Sequence[Sequence[str]]) -> list[tuple[str, str]]:
    """A pair's variants in table order: SFT, aligned, its α and schemes, then reference outputs."""
    out = [Variant.base(pair["sft"]).as_tuple(), Variant.base(pair["aligned"]).as_tuple()]
    out += [(g, v) for g, v in variants if g == pair_name]
    return out + [Variant.reference().as_tuple()]


def wanted_variants(params: Mapping[str, Any], ps: str, pvars: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """The variants that answer prompt set ``ps`` (the dev set answers only what choosing α needs).

    Without the rule's list every variant is expected, except reference outputs.
    """
    wanted = params.get("variants_by_prompt_set", {}).get(ps)
    if wanted is not None:
        return {tuple(x) for x in wanted}
    return {v for v in pvars if Variant(*v).kind != "reference"}


def baseline_variant(params: Mapping[str, Any], pair: Mapping[str, str]) -> tuple[str, str]:
    """The variant win rates compare against (``evaluation.baseline``: aligned, sft or reference)."""
    side = params["evaluation"].get("baseline", "aligned")
    return (Variant.reference() if side == "reference" else Variant.base(pair[side])).as_tuple()


def _reward_columns(rm: str, mine: list[dict], base: list[dict] | None, boot: Mapping[str, int]) -> dict[str, float]:
    """Mean reward with CI, the scorer's extra per-answer fields as means, win rate vs ``base``."""
    from ..metrics import bootstrap_ci, win_rate

    m, lo, hi = bootstrap_ci([s["reward"] for s in mine], **boot)
    out = {f"{rm}_mean": m, f"{rm}_ci_low": lo, f"{rm}_ci_high": hi}
    extras = sorted(set(mine[0]) - {"id", "reward"}) if mine else []  # e.g. the gold reward's parts
    for field in extras:
        out[f"{rm}_{field}"] = float(np.mean([s[field] for s in mine]))
    if base is not None:
        # references may cover only some prompts (MT-Bench: 30 of 80): compare on the common ones
        a = {s["id"]: s["reward"] for s in mine}
        b = {s["id"]: s["reward"] for s in base}
        common = [i for i in a if i in b]
        wr = win_rate({i: a[i] for i in common}, {i: b[i] for i in common}, **boot)
        out.update({f"{rm}_{k}": wr[k] for k in ("win_rate", "win_rate_ci_low", "win_rate_ci_high")})
    return out


def paired_difference(
    mine: Sequence[Mapping[str, Any]], base: Sequence[Mapping[str, Any]], boot: Mapping[str, int]
) -> tuple[float, float, float, int]:
    """(mean, CI low, CI high, n) of ``reward − base reward`` per prompt, over the prompts both answered.

    Why paired: the two models answer the same prompts, so prompt difficulty cancels in the
    per-prompt difference; bootstrapping those differences resamples the same prompts for both
    models. Two unpaired CIs that overlap can hide a difference that is consistent on every prompt.
    """
    from ..metrics import bootstrap_ci

    b = {s["id"]: s["reward"] for s in base}
    diffs = [s["reward"] - b[s["id"]] for s in mine if s["id"] in b]
    return (*bootstrap_ci(diffs, **boot), len(diffs))


def _paired_columns(rm: str, mine: list[dict], aligned: list[dict] | None, boot: Mapping[str, int]) -> dict[str, float]:
    """``<rm>_diff_vs_aligned`` with its paired CI; none without the aligned model's scores (and
    none for the aligned model itself: the caller passes ``aligned=None``)."""
    if aligned is None:
        return {}
    m, lo, hi, _ = paired_difference(mine, aligned, boot)
    stem = f"{rm}_diff_vs_aligned"
    return {stem: m, f"{stem}_ci_low": lo, f"{stem}_ci_high": hi}


def _diagnostic_columns(d: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for c in DIAG_COLUMNS:
        out[c] = d.get(c, math.nan)
        if f"{c}_ci_low" in d:
            out[f"{c}_ci_low"], out[f"{c}_ci_high"] = d[f"{c}_ci_low"], d[f"{c}_ci_high"]
    return out


def _identity(pair_name: str, pair: Mapping[str, str], ps: str, group: str, name: str, n: int) -> dict[str, Any]:
    v = Variant(group, name)
    return {
        "pair": pair_name,
        "prompt_set": ps,
        "variant": v.label(pair),
        "variant_id": f"{group}/{name}",
        "kind": v.role(pair),
        "alpha": v.alpha(pair),
        "scheme": v.scheme,
        "model": name if v.kind == "base" else f"{pair_name}/{name}",
        "n": n,
    }


def build_summary(
    generations: Mapping[GenKey, list[dict]],
    scores: Mapping[ScoreKey, list[dict]],
    params: Mapping[str, Any],
) -> pd.DataFrame:
    """One row per (pair, prompt set, variant) with rewards, win rates and diagnostics."""
    from ..metrics import diagnostics

    ev = params["evaluation"]
    boot = {"n_boot": int(ev.get("bootstrap", 1000)), "seed": int(ev.get("seed", 0))}
    rows = []
    diag_cache: dict[GenKey, dict] = {}
    for pair_name, pair in params["pairs"].items():
        pvars = pair_variants(pair_name, pair, params["variants"])
        base_key = baseline_variant(params, pair)
        aligned_key = Variant.base(pair["aligned"]).as_tuple()
        for ps in params["prompt_sets"]:
            wanted = wanted_variants(params, ps, pvars)
            for group, name in pvars:
                gkey = (ps, group, name)
                if (group, name) not in wanted:
                    continue
                if gkey not in generations:
                    raise ValueError(f"no generations for {gkey}")
                recs = generations[gkey]
                row = _identity(pair_name, pair, ps, group, name, len(recs))
                for rm in params["reward_models"]:
                    if (ps, rm, group, name) not in scores:
                        continue  # e.g. the gold reward on a non-world prompt set
                    mine = scores[(ps, rm, group, name)]
                    row.update(_reward_columns(rm, mine, scores.get((ps, rm, *base_key)), boot))
                    aligned = None if (group, name) == aligned_key else scores.get((ps, rm, *aligned_key))
                    row.update(_paired_columns(rm, mine, aligned, boot))
                row.update(_lc_columns(params, ps, recs, generations, scores, (ps, group, name), base_key))
                if gkey not in diag_cache:
                    diag_cache[gkey] = diagnostics(recs, max_new_tokens=params.get("max_new_tokens"), **boot)
                row.update(_diagnostic_columns(diag_cache[gkey]))
                rows.append(row)
    return mark_chosen_alpha(pd.DataFrame(rows), ev)


def _lc_columns(params, ps, recs, generations, scores, gkey, base_key) -> dict[str, Any]:
    """alpaca_eval's length-controlled win rate (primary reward), for AlpacaEval prompt sets only:
    its per-prompt difficulty terms exist for those 805 prompts alone."""
    from ..metrics import lc_win_rate

    rm = params["evaluation"]["primary_reward"]
    skey, bkey = (ps, rm, *gkey[1:]), (ps, rm, *base_key)
    if params.get("prompt_set_sources", {}).get(ps) != "alpaca_eval" or skey not in scores or bkey not in scores:
        return {}
    lc = lc_win_rate(
        scores[skey],
        scores[bkey],
        outputs={r["id"]: r["output"] for r in recs},
        baseline_outputs={r["id"]: r["output"] for r in generations[(ps, *base_key)]},
    )
    return {"lc_win_rate": lc.get("lc_win_rate"), "lc_note": "" if lc.get("available") else lc.get("reason", "")}


def mark_chosen_alpha(df: pd.DataFrame, ev: Mapping[str, Any]) -> pd.DataFrame:
    """Mark, per pair, the α chosen on the dev prompt set (:mod:`..dev_choice`: the aligned model
    is a candidate) on every prompt set's row of that α."""
    from ..dev_choice import CANDIDATE_KINDS, choose_on_dev

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
