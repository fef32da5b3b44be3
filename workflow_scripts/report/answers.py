"""Every answer with its rewards and flags: the rows of ``per_prompt.csv`` and the answer browser.

:func:`answer_table` joins each generation record with its scores and its failure-mode flags
(:func:`workflow_scripts.metrics.flags.answer_flags`, the same flags the summary's rates count), one
row per (pair, prompt set, variant, prompt).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..layout import Variant
from .seeds import Pooled
from .summary import GenKey, ScoreKey, pair_variants, wanted_variants


def _truncated(rec: Mapping[str, Any], max_new_tokens: int | None) -> bool | None:
    """``finish_reason == "length"``; from the token count only when the record has no reason."""
    if rec.get("finish_reason") is not None:
        return rec["finish_reason"] == "length"
    if max_new_tokens is not None and rec.get("n_tokens") is not None:
        return rec["n_tokens"] >= max_new_tokens
    return None


def _flags(rec: Mapping[str, Any], max_new_tokens: int | None) -> dict[str, bool | None]:
    from ..metrics import answer_flags

    f = answer_flags(rec["instruction"], rec["output"])
    return {
        "truncated": _truncated(rec, max_new_tokens),
        "empty": f["empty"],
        "restating": f["restating"],
        "restating_only": f["restating_only"],
        "repetitive": f["repetitive"],
        "n_words": f["n_words"],
    }


def answer_table(
    generations: Mapping[GenKey, list[dict]],
    scores: Mapping[ScoreKey, list[dict]],
    params: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """One dict per answer: identity (as the summary's columns), prompt, output, rewards, flags."""
    max_new = params.get("max_new_tokens")
    by_id = {k: {s["id"]: s for s in v} for k, v in scores.items()}
    flag_cache: dict[tuple[GenKey, int], dict] = {}
    rows = []
    for pair_name, pair in params["pairs"].items():
        pvars = pair_variants(pair_name, pair, params["variants"])
        for ps in params["prompt_sets"]:
            wanted = wanted_variants(params, ps, pvars)
            for group, name in pvars:
                if (group, name) not in wanted or (ps, group, name) not in generations:
                    continue
                v = Variant(group, name)
                ident = {
                    "pair": pair_name,
                    "prompt_set": ps,
                    "variant_id": f"{group}/{name}",
                    "variant": v.label(pair),
                    "kind": v.role(pair),
                    "alpha": v.alpha(pair),
                    "scheme": v.scheme,
                    "model": name if v.kind == "base" else f"{pair_name}/{name}",
                }
                rms = [rm for rm in params["reward_models"] if (ps, rm, group, name) in by_id]
                for i, rec in enumerate(generations[(ps, group, name)]):
                    key = ((ps, group, name), i)
                    if key not in flag_cache:
                        flag_cache[key] = _flags(rec, max_new)
                    flags = dict(flag_cache[key])
                    scored = {rm: by_id[(ps, rm, group, name)].get(rec["id"]) for rm in rms}
                    rows.append(
                        {
                            **ident,
                            "prompt_id": rec["id"],
                            "instruction": rec["instruction"],
                            "output": rec["output"],
                            "n_tokens": rec.get("n_tokens"),
                            "finish_reason": rec.get("finish_reason"),
                            "n_words": flags.pop("n_words"),
                            "flags": flags,
                            "rewards": {rm: s["reward"] for rm, s in scored.items() if s is not None},
                            "reward_parts": {
                                rm: {k: x for k, x in s.items() if k not in ("id", "reward")}
                                for rm, s in scored.items()
                                if s is not None
                            },
                        }
                    )
    return rows


def seeded_answer_table(pooled: Pooled, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """:func:`answer_table` over every sampling seed (:mod:`.seeds`): each answer with its own
    seed's scores; rows of a seed's answers carry ``seed`` (none without ``decoding.seeds``)."""
    rows = []
    for seed, generations, scores in pooled.per_seed():
        part = answer_table(generations, scores, params)
        rows += part if seed is None else [{**r, "seed": seed} for r in part]
    return rows


def first_seed_answers(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The answers the browser shows: one per (variant, prompt), the first sampling seed's."""
    seeds = [r["seed"] for r in rows if "seed" in r]
    first = min(seeds, default=None)
    return [r for r in rows if r.get("seed", first) == first]
