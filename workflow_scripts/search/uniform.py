"""Adaptive uniform-α search: bracket the best α on a coarse log grid, then refine it.

Why this shape: the dev curve of reward against α is unimodal but noisy, and its peak moves over
two orders of magnitude (the paper's best α runs from 0.3 for a fully trained model to 25 for a
barely trained one), so a fixed linear grid either misses the peak or spends most evaluations far
from it. The search

1. evaluates a coarse log-spaced grid (plus the aligned model, α = 0, which is the reference);
2. while the best α is the largest one tried (and beats its neighbour beyond noise), extends the
   grid by ``factor`` (up to ``max_alpha``);
3. then refines: each round evaluates the log-midpoints between the best α and both neighbours
   (two jobs that run in parallel), which halves the bracket in log-space;
4. stops when the paired dev CI cannot separate the best α from either neighbour (the dev set
   cannot resolve a finer answer), when the bracket is narrower than ``min_ratio``, or when the
   budget of evaluations is used.

The best α is the one with the highest dev objective, ties to the smaller α (the safer claim).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .core import Candidate, Replay, SearchResult, round_sig
from .objective import Evaluation, Scorer


@dataclass(frozen=True)
class UniformConfig:
    """Knobs of the uniform search (config ``extrapolation.search``)."""

    grid: tuple[float, ...] = (0.25, 1.0, 4.0, 16.0)
    factor: float = 4.0
    max_alpha: float = 64.0
    min_ratio: float = 1.2
    min_alpha: float = 0.05
    budget: int = 8
    level: float = 0.95

    def __post_init__(self) -> None:
        if not self.grid or any(not (a > 0 and math.isfinite(a)) for a in self.grid):
            raise ValueError(f"search grid must be a non-empty list of positive α, got {list(self.grid)}")
        if list(self.grid) != sorted(set(self.grid)):
            raise ValueError(f"search grid must be strictly increasing, got {list(self.grid)}")
        if self.factor <= 1 or self.min_ratio <= 1:
            raise ValueError(f"search factor and min_ratio must be > 1, got {self.factor} and {self.min_ratio}")
        if self.max_alpha < self.grid[-1]:
            raise ValueError(f"search max_alpha {self.max_alpha} is below the grid's largest α {self.grid[-1]}")

    @classmethod
    def from_config(cls, spec: Mapping[str, Any]) -> UniformConfig:
        keys = ("grid", "factor", "max_alpha", "min_ratio", "min_alpha", "budget", "level")
        kw = {k: spec[k] for k in keys if k in spec}
        if "grid" in kw:
            kw["grid"] = tuple(float(a) for a in kw["grid"])
        return cls(**kw)


def _best(rp: Replay, tried: Sequence[Candidate]) -> Candidate:
    return max(sorted(tried, key=lambda c: c.alpha), key=lambda c: rp.score(c)[0])  # max keeps the first


def _midpoint(lo: float, hi: float) -> float:
    return round_sig(math.sqrt(lo * hi) if lo > 0 else hi / 2.0)


def _refinements(cfg: UniformConfig, tried: list[float], best: float) -> list[Candidate]:
    """Log-midpoints between ``best`` and its neighbours, skipping brackets below the resolution."""
    below = [a for a in tried if a < best]
    above = [a for a in tried if a > best]
    out = []
    if below:
        lo = below[-1]
        mid = _midpoint(lo, best)
        fine = best / lo >= cfg.min_ratio if lo > 0 else mid >= cfg.min_alpha
        if fine and mid not in tried:
            out.append(mid)
    if above:
        hi = above[0]
        mid = _midpoint(best, hi)
        if (best == 0 or hi / best >= cfg.min_ratio) and mid not in tried:
            out.append(mid)
    return [Candidate.uniform(a) for a in out]


def uniform_search(evals: Mapping[str, Evaluation], scorer: Scorer, cfg: UniformConfig) -> SearchResult:
    """Replay the search over the scores in ``evals`` (keyed by :attr:`Candidate.name`).

    ``evals["alpha0"]`` must be the aligned model (the scorer's reference). Returns the next
    candidates to evaluate (empty when the search is done), the best α so far and the log rows.
    """
    zero = Candidate.uniform(0.0)
    rp = Replay(evals, scorer, cfg.budget, cfg.level, free=frozenset({zero.name}))
    tried: list[Candidate] = []
    best: Candidate | None = None
    rnd, phase, todo = 0, "bracket", [zero, *(Candidate.uniform(a) for a in cfg.grid)]
    while True:
        got = rp.request(todo)
        if got is None:
            break
        tried = sorted({c.name: c for c in [*tried, *got]}.values(), key=lambda c: c.alpha)
        if not tried:
            break
        best = _best(rp, tried)
        for c in got:
            rp.log(rnd, phase, c, "kept" if c == best else "rejected", best)
        if rp.stop_reason:
            break
        alphas = [c.alpha for c in tried]
        i = alphas.index(best.alpha)
        neighbours = [tried[j] for j in (i - 1, i + 1) if 0 <= j < len(tried)]
        if not any(rp.beats(best, n) for n in neighbours):
            rp.stop_reason = "dev CIs cannot separate the best α from its neighbours"
            break
        rnd += 1
        if best.alpha == alphas[-1] and best.alpha * cfg.factor <= cfg.max_alpha:
            phase, todo = "bracket", [Candidate.uniform(round_sig(best.alpha * cfg.factor))]
            continue
        phase, todo = "refine", _refinements(cfg, alphas, best.alpha)
        if not todo:
            rp.stop_reason = f"bracket narrower than min_ratio {cfg.min_ratio}"
            break
    return rp.result(best)
