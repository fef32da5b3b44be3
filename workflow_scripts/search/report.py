"""The α search in the report: its path, its result beside the fixed grid's, the searched variant.

* ``alpha_search.csv`` — every pair's search path (round, candidate, dev objective with CI, the
  paired difference against the incumbent, kept/rejected), as the search library logs it;
* ``search_vs_grid.csv`` — per pair, the search's best dev objective and number of evaluations
  beside the best of the fixed grid (same objective, same paired bootstrap, same dev prompts);
* ``alpha_search.png`` — the search path drawn over the grid's dev curve;
* :func:`with_searched` / :func:`mark_searched` — hooks of the summary: the chosen α (and the layer
  search's best group vector, when it kept a step) becomes an ordinary row of every prompt set,
  labelled ``(searched)``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..common import atomic_path, format_alpha, read_json

log = logging.getLogger(__name__)

SEARCHED_SUFFIX = " (searched)"


# ------------------------------------------------------------------ summary hooks


def _results(paths: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """``{pair: result.json}`` from ``.../search/<pair>/result.json`` paths."""
    return {Path(p).parent.name: read_json(p) for p in paths or []}


def searched_variants(pair: str, result: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(group, name) of a searched pair's chosen variants: its best uniform α and, when the layer
    search kept a step, its best group vector (a ``scheme_search_…`` variant)."""
    out = [(pair, f"alpha{format_alpha(result['best_uniform_alpha'])}")]
    best = (result.get("best") or {}).get("variant", "")
    if result.get("stage") == "layers" and best.startswith("scheme_search_"):
        out.append((pair, best))
    return out


def with_searched(params: Mapping[str, Any], result_paths: Sequence[str] | None) -> dict[str, Any]:
    """Report params with each searched pair's chosen variants added to the variants of every prompt set."""
    out = dict(params)
    results = _results(result_paths)
    if not results:
        return out
    added = [v for pair, r in results.items() for v in searched_variants(pair, r)]
    out["variants"] = _extend(params.get("variants", []), added)
    by_ps = params.get("variants_by_prompt_set")
    if by_ps is not None:
        out["variants_by_prompt_set"] = {ps: _extend(vs, added) for ps, vs in by_ps.items()}
    return out


def _extend(variants: Sequence[Sequence[str]], added: Sequence[tuple[str, str]]) -> list[list[str]]:
    out = [list(v) for v in variants]
    return out + [list(a) for a in added if list(a) not in out]


def mark_searched(df, result_paths: Sequence[str] | None):
    """Column ``searched`` (the chosen variants of searched pairs) and ``(searched)`` in their label;
    a searched group vector is labelled by its α per group (``thirds[1, 2, 2]``), not its file name."""
    from .core import Candidate

    df = df.copy()
    df["searched"] = False
    for pair, r in _results(result_paths).items():
        for group, name in searched_variants(pair, r):
            hit = df.variant_id == f"{group}/{name}"
            df.loc[hit, "searched"] = True
            if name.startswith("scheme_search_"):
                df.loc[hit, "variant"] = Candidate.from_name(name).label
            df.loc[hit, "variant"] = df.loc[hit, "variant"] + SEARCHED_SUFFIX
    return df


# ------------------------------------------------------------------ the search's own report


def grid_curve(paths: Sequence[str], aligned: str, objective: Mapping[str, Any]) -> list[dict[str, float]]:
    """The fixed grid's dev objective (with CI) per α, aligned model at α = 0, scored like the search."""
    from . import Objective, Scorer
    from .plan import inputs_from_paths, load_evaluations

    evals = load_evaluations(inputs_from_paths(paths, aligned))
    scorer = Scorer(Objective.from_config(objective), evals["alpha0"])
    rows = []
    for name, ev in evals.items():
        est, lo, hi = scorer.score(ev, name)
        rows.append({"alpha": float(name[len("alpha") :]), "score": est, "ci_low": lo, "ci_high": hi})
    return sorted(rows, key=lambda r: r["alpha"])


def search_vs_grid(pair: str, result: Mapping[str, Any], grid: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """One row: the search's best α and best candidate (a group vector when the layer search kept a
    step; the dev objective and evaluations are that candidate's and the whole search's) beside the
    fixed grid's."""
    best = max(sorted(grid, key=lambda r: r["alpha"]), key=lambda r: r["score"]) if grid else None
    score = result.get("best_score") or [math.nan] * 3
    return {
        "pair": pair,
        "search_alpha": result.get("best_uniform_alpha"),
        "search_best": (result.get("best") or {}).get("label"),
        "search_dev": score[0],
        "search_ci_low": score[1],
        "search_ci_high": score[2],
        "search_evals": result.get("n_evals"),
        "grid_alpha": None if best is None else best["alpha"],
        "grid_dev": math.nan if best is None else best["score"],
        "grid_evals": sum(1 for r in grid if r["alpha"] != 0),
        "stop_reason": result.get("stop_reason"),
    }


def plot_search(paths_by_pair: Mapping[str, tuple[Any, list[dict[str, float]]]], out: str) -> None:
    """One panel per pair: the grid's dev curve with CI band, the search's candidates by round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(paths_by_pair), 1)
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 4), squeeze=False)
    for ax, (pair, (path_df, grid)) in zip(axes[0], paths_by_pair.items()):
        if grid:
            xs = [r["alpha"] for r in grid]
            ax.plot(xs, [r["score"] for r in grid], "-", color="0.5", label="fixed grid")
            ax.fill_between(xs, [r["ci_low"] for r in grid], [r["ci_high"] for r in grid], color="0.85")
        uni = path_df[path_df.stage == "uniform"]
        sc = ax.scatter(uni.alpha, uni.score, c=uni["round"], cmap="viridis", zorder=3, label="search (colour = round)")
        for _, r in uni.iterrows():
            ax.annotate(str(int(r["round"])), (r.alpha, r.score), textcoords="offset points", xytext=(3, 4), fontsize=7)
        kept = uni[uni.status == "kept"]
        if not kept.empty:
            last = kept.iloc[-1]
            ax.scatter([last.alpha], [last.score], marker="*", s=180, color="red", zorder=4, label="chosen")
        ax.set_xscale("symlog", linthresh=0.25)
        ax.set_xlabel("α")
        ax.set_ylabel("dev objective")
        ax.set_title(pair)
        ax.legend(fontsize=7)
        fig.colorbar(sc, ax=ax, label="round")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def build_search_report(
    pairs: Mapping[str, Mapping[str, Any]], objective: Mapping[str, Any], outputs: Mapping[str, str]
) -> None:
    """``pairs[pair] = {"aligned", "result", "log", "grid": [dev files]}`` → the three report files."""
    import pandas as pd

    paths, rows, frames = {}, [], []
    for pair, spec in pairs.items():
        result = read_json(spec["result"])
        path_df = pd.read_csv(spec["log"])
        path_df.insert(0, "pair", pair)
        frames.append(path_df)
        grid = grid_curve(spec["grid"], spec["aligned"], objective)
        rows.append(search_vs_grid(pair, result, grid))
        paths[pair] = (path_df, grid)
    for key, df in (("search_csv", pd.concat(frames, ignore_index=True)), ("search_vs_grid", pd.DataFrame(rows))):
        with atomic_path(outputs[key]) as tmp:
            df.to_csv(tmp, index=False)
    plot_search(paths, outputs["search_plot"])
    log.info("search report: %d pair(s): %s", len(rows), rows)
