"""Answers and scores of several sampling seeds (``decoding.seeds``), pooled for the report.

With seeds, a variant has one answers file and one score file per seed
(``…/<variant>/seed<s>.json``, :meth:`~workflow_scripts.layout.Layout.generation`). The report's
tables keep their shape: each (prompt set, variant) still has one row, whose numbers are over seeds:

* scores become **seed-averaged per-prompt** records (each prompt's reward and reward parts averaged
  over its seeds), so the mean reward is the mean over seeds, and the win rate, the dev choice of α
  and every paired difference compare per-prompt means over seeds;
* the mean reward's CI resamples prompts and seeds (:func:`~workflow_scripts.metrics.
  bootstrap_ci_over_seeds`), from the prompts × seeds matrix kept in :attr:`Pooled.matrices`;
* answers are pooled seed after seed (:attr:`Pooled.generations`) for the diagnostics, whose CIs
  resample prompts and seeds as well (:attr:`Pooled.n_seeds`);
* the answer table keeps every answer with its own seed's scores (:meth:`Pooled.per_seed`).

Files without a seed (every file of a run without ``decoding.seeds``; reference outputs) pass
through unchanged, so a run without seeds gets exactly the report it always got.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..common import read_json
from ..layout import split_seed
from .summary import GenKey, ScoreKey, generation_key, score_key

Seed = int | None


@dataclass
class Pooled:
    """The report's view of every answers and score file, seeds pooled (see the module docstring)."""

    generations: dict[GenKey, list[dict]] = field(default_factory=dict)
    scores: dict[ScoreKey, list[dict]] = field(default_factory=dict)
    matrices: dict[ScoreKey, np.ndarray] = field(default_factory=dict)
    """Rewards as prompts × seeds (columns in seed order), for variants answered over several seeds."""
    n_seeds: dict[GenKey, int] = field(default_factory=dict)
    """Seeds of each variant answered over several seeds (absent: one file)."""
    by_seed: dict[Seed, tuple[dict[GenKey, list[dict]], dict[ScoreKey, list[dict]]]] = field(default_factory=dict)

    def per_seed(self) -> Iterator[tuple[Seed, dict[GenKey, list[dict]], dict[ScoreKey, list[dict]]]]:
        """(seed, answers, scores) of each seed in order; unseeded files come with the first seed only,
        so each answer occurs once."""
        for seed in sorted(self.by_seed, key=lambda s: -1 if s is None else s):
            yield (seed, *self.by_seed[seed])


def _grouped(paths: Sequence[str], stage: str, key_of) -> dict[Any, dict[Seed, list[dict]]]:
    out: dict[Any, dict[Seed, list[dict]]] = defaultdict(dict)
    for path in paths:
        plain, seed = split_seed(path, stage)
        out[key_of(plain)][seed] = read_json(path)
    return out


def _same_prompts(what: Any, by_seed: Mapping[Seed, list[dict]]) -> list[str]:
    """The prompt ids every seed of one variant answered, in one order (else a ValueError naming it)."""
    ids = None
    for seed, recs in sorted(by_seed.items(), key=lambda kv: -1 if kv[0] is None else kv[0]):
        got = [str(r["id"]) for r in recs]
        if ids is not None and got != ids:
            raise ValueError(f"{what}: seed {seed} answered other prompts (or another order) than the first seed")
        ids = got
    return ids or []


def _averaged(by_seed: Mapping[Seed, list[dict]]) -> list[dict]:
    """Per-prompt records whose reward and numeric parts are means over seeds."""
    columns = [by_seed[s] for s in sorted(by_seed)]
    out = []
    for recs in zip(*columns):
        rec = dict(recs[0])
        for k, v in recs[0].items():
            if k != "id" and isinstance(v, (int, float)) and not isinstance(v, bool):
                rec[k] = float(np.mean([r[k] for r in recs]))
        out.append(rec)
    return out


def pool(generation_paths: Sequence[str], score_paths: Sequence[str]) -> Pooled:
    """Read every answers and score file; pool the seeds of each variant (module docstring)."""
    p = Pooled()
    gens = _grouped(generation_paths, "generations", generation_key)
    scores = _grouped(score_paths, "scores", score_key)
    for gkey, by_seed in gens.items():
        _same_prompts(gkey, by_seed)
        seeds = sorted(by_seed, key=lambda s: -1 if s is None else s)
        if None in by_seed and len(by_seed) > 1:
            raise ValueError(f"{gkey}: answers both without a seed and per seed; remove the stale files")
        p.generations[gkey] = [r for s in seeds for r in by_seed[s]]
        if len(seeds) > 1:
            p.n_seeds[gkey] = len(seeds)
        for s in seeds:
            p.by_seed.setdefault(s, ({}, {}))[0][gkey] = by_seed[s]
    for skey, by_seed in scores.items():
        _same_prompts(skey, by_seed)
        seeds = sorted(by_seed, key=lambda s: -1 if s is None else s)
        gkey = (skey[0], *skey[2:])
        gseeds = p.n_seeds.get(gkey, 1)
        if gkey in p.generations and len(seeds) != gseeds:
            raise ValueError(f"{skey}: scores of {len(seeds)} seed(s) for answers of {gseeds}")
        p.scores[skey] = by_seed[seeds[0]] if len(seeds) == 1 else _averaged(by_seed)
        if len(seeds) > 1:
            p.matrices[skey] = np.array([[r["reward"] for r in by_seed[s]] for s in seeds], dtype=float).T
        for s in seeds:
            p.by_seed.setdefault(s, ({}, {}))[1][skey] = by_seed[s]
    return p
