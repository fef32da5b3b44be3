"""Choose the extrapolation on the dev set automatically (config ``extrapolation.search``).

* :mod:`.objective` — what is maximised (one reward, an RM ensemble, a length penalty) and the
  paired bootstrap that decides whether one candidate beats another beyond the dev noise;
* :mod:`.uniform` — the adaptive uniform-α search (bracket on a log grid, refine, stop on noise);
* :mod:`.layers` — the layer-group coordinate search that starts from the best uniform α;
* :mod:`.core` — candidates, the budgeted replay that makes both resumable, the search log.

Torch-free, so the Snakemake checkpoint that plans the next round runs it at DAG-build time.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..common import atomic_path
from .core import Candidate, SearchResult
from .layers import LayerConfig, layer_search, scheme_spec
from .objective import Evaluation, Objective, Scorer
from .uniform import UniformConfig, uniform_search

__all__ = [
    "Candidate",
    "Evaluation",
    "LayerConfig",
    "Objective",
    "Scorer",
    "SearchResult",
    "UniformConfig",
    "layer_search",
    "log_rows",
    "scheme_spec",
    "search",
    "uniform_search",
    "write_log",
]

LOG_COLUMNS = (
    "stage",
    "round",
    "phase",
    "candidate",
    "variant",
    "partition",
    "alpha",
    "score",
    "ci_low",
    "ci_high",
    "diff_vs_incumbent",
    "diff_ci_low",
    "diff_ci_high",
    "diff_level",
    "status",
)


def search(
    evals: Mapping[str, Evaluation],
    spec: Mapping[str, Any],
    *,
    num_layers: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[SearchResult, SearchResult | None]:
    """The uniform search, then (when ``spec`` has ``layers`` and the uniform one converged) the layer one.

    ``spec`` is the config's ``extrapolation.search`` mapping: the uniform knobs, ``objective`` and
    optionally ``layers``. ``evals`` holds the dev evaluations by variant name, ``alpha0`` being the
    aligned model. Returns both results; the candidates to run next are the unfinished one's
    ``pending``. The layer search starts only from a uniform search that converged: one its budget
    cut has a best α that more budget would move, and refining layers around it would be wasted.
    """
    spec = dict(spec)
    if "alpha0" not in evals:
        raise ValueError("search needs the aligned model's dev scores as evaluation 'alpha0'")
    scorer = Scorer(Objective.from_config(spec.pop("objective", None)), evals["alpha0"], n_boot=n_boot, seed=seed)
    layers_spec = spec.pop("layers", None)
    unknown = sorted(set(spec) - set(UniformConfig.__dataclass_fields__))
    if unknown:
        raise ValueError(f"unknown extrapolation.search key(s) {unknown}")
    uni = uniform_search(evals, scorer, UniformConfig.from_config(spec))
    if layers_spec is None or not uni.converged or uni.best is None:
        return uni, None
    cfg = LayerConfig.from_config(layers_spec)
    lay = layer_search(evals, scorer, cfg, uni.best.alpha, num_layers, evaluated=frozenset(uni.asked))
    return uni, lay


def log_rows(uni: SearchResult, lay: SearchResult | None) -> list[dict[str, Any]]:
    rows = [{"stage": "uniform", **r} for r in uni.rows]
    if lay is not None:
        rows += [{"stage": "layers", **r} for r in lay.rows]
    return rows


def write_log(rows: Iterable[Mapping[str, Any]], path: str | Path) -> None:
    """``alpha_search.csv``: one row per evaluated candidate and round, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=LOG_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
