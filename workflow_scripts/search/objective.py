"""What the search maximises, and how sure the dev set is about it.

Why a module of its own: a search that trusts one learned reward model over-extrapolates (on the
demo world the RM keeps rising to α = 4–8 while the gold reward falls). The objective is therefore
configurable — one reward, an ensemble of reward models standardised on the aligned model's dev
scores (their mean, or the worst of them), optionally minus a length penalty — and every comparison
the search makes is a *paired* bootstrap over the same dev prompts, so "better" always means
"better beyond the dev set's noise".

Everything here is numpy only (no torch, no pandas), so Snakemake can run it at DAG-build time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

KINDS = ("reward", "ensemble_mean", "ensemble_min")


@dataclass(frozen=True)
class Evaluation:
    """Dev results of one candidate: per reward model, per prompt id, a reward; optional lengths.

    ``rewards[rm][prompt_id]``; ``n_tokens[prompt_id]`` (needed only with a length penalty).
    """

    rewards: Mapping[str, Mapping[str, float]]
    n_tokens: Mapping[str, float] | None = None

    @classmethod
    def from_records(
        cls, scores: Mapping[str, Sequence[Mapping[str, Any]]], generations: Sequence[Mapping[str, Any]] | None = None
    ) -> Evaluation:
        """From score files (``[{"id", "reward"}, ...]`` per RM) and optionally the generation file."""
        rewards = {rm: {str(r["id"]): float(r["reward"]) for r in recs} for rm, recs in scores.items()}
        n_tok = None if generations is None else {str(g["id"]): float(g["n_tokens"]) for g in generations}
        return cls(rewards=rewards, n_tokens=n_tok)


@dataclass(frozen=True)
class Objective:
    """``kind``: ``reward`` (one RM), ``ensemble_mean`` / ``ensemble_min`` (several RMs, each
    standardised by the reference candidate's dev mean and standard deviation, then averaged per
    prompt, or the worst RM's mean taken). ``length_penalty`` λ subtracts λ × (answer length / the
    reference's mean answer length), so λ is in objective units per one reference-length answer."""

    kind: str = "reward"
    rms: tuple[str, ...] = ("gold",)
    length_penalty: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"objective kind {self.kind!r} unknown; choose one of {KINDS}")
        if not self.rms:
            raise ValueError("objective needs at least one reward model in 'rms'")
        if self.kind == "reward" and len(self.rms) != 1:
            raise ValueError(f"objective kind 'reward' takes exactly one reward model, got {list(self.rms)}")
        if not math.isfinite(self.length_penalty) or self.length_penalty < 0:
            raise ValueError(f"objective length_penalty must be a finite number >= 0, got {self.length_penalty}")

    @classmethod
    def from_config(cls, spec: Mapping[str, Any] | None) -> Objective:
        spec = dict(spec or {})
        unknown = sorted(set(spec) - {"kind", "rms", "length_penalty"})
        if unknown:
            raise ValueError(f"unknown objective key(s) {unknown}; allowed: kind, rms, length_penalty")
        rms = spec.get("rms", ["gold"])
        if isinstance(rms, str):
            rms = [rms]
        return cls(kind=spec.get("kind", "reward"), rms=tuple(rms), length_penalty=float(spec.get("length_penalty", 0)))

    @property
    def label(self) -> str:
        base = self.rms[0] if self.kind == "reward" else f"{self.kind}({','.join(self.rms)})"
        return base if not self.length_penalty else f"{base}-{self.length_penalty:g}*len"


@dataclass
class Scorer:
    """Scores candidates under one objective with paired bootstrap CIs over the reference's prompts.

    The reference (the aligned model, α = 0) fixes the prompt ids every candidate must cover and
    the standardisation of each reward model, so a candidate's score never changes when other
    candidates are added: the search replays identically from the same files.
    """

    objective: Objective
    reference: Evaluation
    n_boot: int = 1000
    seed: int = 0
    _idx: np.ndarray = field(init=False, repr=False)
    _ids: list[str] = field(init=False, repr=False)
    _center: np.ndarray = field(init=False, repr=False)
    _scale: np.ndarray = field(init=False, repr=False)
    _ref_len: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.n_boot < 1:
            raise ValueError(f"n_boot must be >= 1, got {self.n_boot}")
        obj = self.objective
        first = self._rm(self.reference, obj.rms[0], "reference")
        self._ids = sorted(first)
        if len(self._ids) < 2:
            raise ValueError(f"the reference has {len(self._ids)} dev prompt(s); a CI needs at least 2")
        raw = self._raw(self.reference, "reference")
        if obj.kind == "reward":
            self._center, self._scale = np.zeros(1), np.ones(1)
        else:
            self._center = raw.mean(axis=0)
            sd = raw.std(axis=0, ddof=1)
            flat = [rm for rm, s in zip(obj.rms, sd) if not s > 0]
            if flat:
                raise ValueError(f"reward model(s) {flat} give every reference answer one score: cannot standardise")
            self._scale = sd
        self._ref_len = 1.0
        if obj.length_penalty:
            self._ref_len = float(self._lengths(self.reference, "reference").mean()) or 1.0
        rng = np.random.default_rng(self.seed)
        n = len(self._ids)
        self._idx = np.stack([rng.integers(0, n, size=n) for _ in range(self.n_boot)])

    # ------------------------------------------------------------------ per-prompt matrices
    @staticmethod
    def _rm(ev: Evaluation, rm: str, name: str) -> Mapping[str, float]:
        if rm not in ev.rewards:
            raise ValueError(f"candidate {name!r} has no scores of reward model {rm!r} (has {sorted(ev.rewards)})")
        return ev.rewards[rm]

    def _column(self, values: Mapping[str, float], what: str, name: str) -> np.ndarray:
        missing = [i for i in self._ids if i not in values]
        if missing:
            raise ValueError(f"candidate {name!r}: {what} lacks {len(missing)} dev prompt id(s), e.g. {missing[:3]}")
        col = np.array([float(values[i]) for i in self._ids])
        if not np.isfinite(col).all():
            raise ValueError(f"candidate {name!r}: {what} has non-finite values")
        return col

    def _raw(self, ev: Evaluation, name: str) -> np.ndarray:
        cols = [self._column(self._rm(ev, rm, name), f"reward model {rm!r}", name) for rm in self.objective.rms]
        return np.stack(cols, axis=1)

    def _lengths(self, ev: Evaluation, name: str) -> np.ndarray:
        if ev.n_tokens is None:
            raise ValueError(f"candidate {name!r} has no answer lengths, needed by the length penalty")
        return self._column(ev.n_tokens, "n_tokens", name)

    def matrix(self, ev: Evaluation, name: str = "?") -> tuple[np.ndarray, np.ndarray]:
        """(standardised rewards, shape (prompts, RMs); per-prompt length penalty, shape (prompts,))."""
        z = (self._raw(ev, name) - self._center) / self._scale
        pen = np.zeros(len(self._ids))
        if self.objective.length_penalty:
            pen = self.objective.length_penalty * self._lengths(ev, name) / self._ref_len
        return z, pen

    # ------------------------------------------------------------------ statistics
    def _stat(self, z: np.ndarray, pen: np.ndarray) -> np.ndarray:
        """Objective over the last-but-one axis (prompts), vectorised over leading bootstrap axes."""
        means = z.mean(axis=-2)
        agg = means.min(axis=-1) if self.objective.kind == "ensemble_min" else means.mean(axis=-1)
        return agg - pen.mean(axis=-1)

    def _ci(self, boots: np.ndarray, level: float) -> tuple[float, float]:
        tail = (1.0 - level) / 2.0 * 100.0
        lo, hi = np.percentile(boots, [tail, 100.0 - tail])
        return float(lo), float(hi)

    def score(self, ev: Evaluation, name: str = "?", level: float = 0.95) -> tuple[float, float, float]:
        """(objective, CI low, CI high) of one candidate."""
        z, pen = self.matrix(ev, name)
        boots = self._stat(z[self._idx], pen[self._idx])
        return (float(self._stat(z, pen)), *self._ci(boots, level))

    def diff(
        self, a: Evaluation, b: Evaluation, names: tuple[str, str] = ("a", "b"), level: float = 0.95
    ) -> tuple[float, float, float]:
        """Objective of ``a`` minus that of ``b`` with a paired bootstrap CI (same resampled prompts)."""
        za, pa = self.matrix(a, names[0])
        zb, pb = self.matrix(b, names[1])
        point = float(self._stat(za, pa) - self._stat(zb, pb))
        boots = self._stat(za[self._idx], pa[self._idx]) - self._stat(zb[self._idx], pb[self._idx])
        return (point, *self._ci(boots, level))
