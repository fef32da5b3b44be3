"""Candidates, the search log and the replay budget shared by the uniform and the layer search.

Why a replay: a search state is never stored. Given the dev scores that exist, the search is run
again from its first round; every round's candidates depend only on earlier rounds' scores, so the
replay reaches the same point and returns the first candidates without scores — the next round's
jobs. Raising the budget therefore resumes the search where it stopped, and a finished candidate is
never proposed again (it is found in the scores and reused).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..common import format_alpha
from .objective import Evaluation, Scorer

UNIFORM = "uniform"
GROUP_PREFIX = "scheme_search_"
"""Variant names of group-α candidates: ``scheme_<name>`` variants built by the scheme rule."""
MAX_NAME = 200
"""Longest group-candidate name: it is a file name, and file systems stop at 255 bytes."""
_RUN = re.compile(r"^(\d+(?:\.\d+)?)(?:x(\d+))?$")


def round_sig(x: float, digits: int = 3) -> float:
    """``x`` to ``digits`` significant digits, so refined α values make short, stable file names."""
    if x == 0 or not math.isfinite(x):
        return x
    return float(f"{x:.{digits}g}")


@dataclass(frozen=True)
class Candidate:
    """One model to evaluate: a uniform α, or one α per group of a named layer partition."""

    alphas: tuple[float, ...]
    partition: str = UNIFORM

    @classmethod
    def uniform(cls, alpha: float) -> Candidate:
        return cls((float(alpha),), UNIFORM)

    @property
    def is_uniform(self) -> bool:
        return self.partition == UNIFORM

    @property
    def alpha(self) -> float:
        if not self.is_uniform:
            raise ValueError(f"candidate {self.name} is a group vector, not a uniform α")
        return self.alphas[0]

    @property
    def name(self) -> str:
        """Variant name: ``alpha<α>`` (the same file as the fixed grid's α), or for a group vector
        ``scheme_search_<partition>_<α runs>`` (``thirds+attn_mlp`` → ``thirds_attn_mlp``; a run
        ``2x3`` is α 2 for three groups in a row), which :meth:`from_name` reads back — so the
        extrapolation job knows its scheme from its file name alone, without the plan files."""
        if self.is_uniform:
            return f"alpha{format_alpha(self.alpha)}"
        runs: list[list[Any]] = []
        for a in self.alphas:
            if not a > 0:
                raise ValueError(f"group candidate {self.label}: α must be > 0 to be named")
            if runs and runs[-1][0] == a:
                runs[-1][1] += 1
            else:
                runs.append([a, 1])
        body = "_".join(format_alpha(a) + (f"x{n}" if n > 1 else "") for a, n in runs)
        name = f"{GROUP_PREFIX}{self.partition.replace('+', '_')}_{body}"
        if len(name) > MAX_NAME:
            raise ValueError(
                f"group candidate {self.label}: its name exceeds {MAX_NAME} characters; use coarser partitions"
            )
        return name

    @classmethod
    def from_name(cls, name: str) -> Candidate:
        """The candidate a variant name stands for (the inverse of :attr:`name`)."""
        if name.startswith("alpha"):
            return cls.uniform(float(name[len("alpha") :]))
        if not name.startswith(GROUP_PREFIX):
            raise ValueError(f"{name!r} is not a search candidate name (alpha<α> or {GROUP_PREFIX}...)")
        tokens = name[len(GROUP_PREFIX) :].split("_")
        words = [t for t in tokens if t[:1].isalpha()]
        runs = tokens[len(words) :]
        partition = "_".join(words).replace("_attn_mlp", "+attn_mlp")
        alphas: list[float] = []
        for run in runs:
            m = _RUN.match(run)
            if not m or not words:
                raise ValueError(f"{name!r} is not a search candidate name (bad part {run!r})")
            alphas += [float(m.group(1))] * int(m.group(2) or 1)
        if not alphas:
            raise ValueError(f"{name!r} is not a search candidate name (no α values)")
        return cls(tuple(alphas), partition)

    @property
    def label(self) -> str:
        if self.is_uniform:
            return format_alpha(self.alpha)
        return f"{self.partition}[" + ", ".join(format_alpha(a) for a in self.alphas) + "]"


@dataclass
class SearchResult:
    """Where a replay stopped: the candidates to run next (empty when done), the best so far, the log."""

    pending: list[Candidate]
    best: Candidate | None
    best_score: tuple[float, float, float] | None
    rows: list[dict[str, Any]]
    stop_reason: str | None
    n_evals: int
    asked: tuple[str, ...] = ()
    budget_cut: bool = False

    @property
    def done(self) -> bool:
        return not self.pending

    @property
    def converged(self) -> bool:
        """Done for a reason of its own (noise, resolution), not because the budget ran out."""
        return self.done and not self.budget_cut


@dataclass
class Replay:
    """Walks the rounds of one search against the scores that exist, under a budget of evaluations.

    ``budget`` counts distinct candidates the search asks for (the reference is free: it is the
    aligned baseline, scored anyway). A round that would exceed the budget is cut to its first
    candidates (rounds list candidates most useful first), so more budget extends the same prefix.
    """

    evals: Mapping[str, Evaluation]
    scorer: Scorer
    budget: int
    level: float = 0.95
    free: frozenset[str] = frozenset()
    rows: list[dict[str, Any]] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)
    pending: list[Candidate] = field(default_factory=list)
    stop_reason: str | None = None
    budget_cut: bool = False
    _scores: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.budget < 0:
            raise ValueError(f"search budget must be >= 0 evaluations, got {self.budget}")
        if not 0 < self.level < 1:
            raise ValueError(f"search level must be in (0, 1), got {self.level}")

    @property
    def n_evals(self) -> int:
        return sum(1 for n in self.asked if n not in self.free)

    def request(self, candidates: Sequence[Candidate]) -> list[Candidate] | None:
        """The round's candidates that may be used, or None when some of them still lack scores
        (they become :attr:`pending`). When the budget cuts the round, :attr:`stop_reason` is set
        and the scored prefix is returned, so the search still counts it before stopping."""
        fresh: list[Candidate] = []
        for c in candidates:
            if c.name not in self.asked and all(c.name != f.name for f in fresh):
                fresh.append(c)
        paid = [c.name for c in fresh if c.name not in self.free]
        room = max(self.budget - self.n_evals, 0)
        over = set(paid[room:])
        allowed = [c for c in fresh if c.name not in over]
        self.asked += [c.name for c in allowed]
        missing = [c for c in allowed if c.name not in self.evals]
        if missing:
            self.pending = missing
            return None
        if over:
            self.stop_reason = f"budget of {self.budget} evaluations used"
            self.budget_cut = True
        out: list[Candidate] = []
        for c in candidates:
            if c.name in self.asked and c.name in self.evals and c not in out:
                out.append(c)
        return out

    def score(self, c: Candidate) -> tuple[float, float, float]:
        if c.name not in self._scores:
            self._scores[c.name] = self.scorer.score(self.evals[c.name], c.name, self.level)
        return self._scores[c.name]

    def diff(self, a: Candidate, b: Candidate, level: float | None = None) -> tuple[float, float, float]:
        return self.scorer.diff(self.evals[a.name], self.evals[b.name], (a.name, b.name), level or self.level)

    def beats(self, a: Candidate, b: Candidate, level: float | None = None) -> bool:
        """Whether ``a`` is better than ``b`` beyond noise: the paired-difference CI lies above 0."""
        return self.diff(a, b, level)[1] > 0

    def log(
        self,
        rnd: int,
        phase: str,
        c: Candidate,
        status: str,
        versus: Candidate | None,
        level: float | None = None,
    ) -> None:
        """One row of the search path; the difference CI is at ``level`` (the one the decision used)."""
        est, lo, hi = self.score(c)
        d = (math.nan,) * 3 if versus is None or versus == c else self.diff(c, versus, level)
        self.rows.append(
            {
                "round": rnd,
                "phase": phase,
                "candidate": c.label,
                "variant": c.name,
                "partition": c.partition,
                "alpha": c.alpha if c.is_uniform else math.nan,
                "score": est,
                "ci_low": lo,
                "ci_high": hi,
                "diff_vs_incumbent": d[0],
                "diff_ci_low": d[1],
                "diff_ci_high": d[2],
                "diff_level": level or self.level,
                "status": status,
            }
        )

    def result(self, best: Candidate | None) -> SearchResult:
        scored = best is not None and best.name in self.evals
        return SearchResult(
            pending=list(self.pending),
            best=best,
            best_score=self.score(best) if scored else None,
            rows=self.rows,
            stop_reason=None if self.pending else self.stop_reason,
            n_evals=self.n_evals,
            asked=tuple(self.asked),
            budget_cut=self.budget_cut and not self.pending,
        )
