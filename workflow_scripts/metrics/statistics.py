"""Bootstrap confidence intervals and strict per-prompt alignment shared by every metric.

Units: every statistic ``x`` with an interval comes with ``x_ci_low`` / ``x_ci_high`` (95 %
percentile bootstrap over prompts, see :func:`bootstrap_ci`; over prompts and sampling seeds when a
variant is answered once per seed, see :func:`bootstrap_ci_over_seeds`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np


# --- bootstrap -----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _boot_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """The resampling scheme, shared by every statistic so CIs are reproducible from (n, seed).

    ``rng = np.random.default_rng(seed)``; replicate b uses ``rng.integers(0, n, size=n)`` drawn in
    order b = 0..n_boot-1. Cached (read-only) because a report bootstraps ~15 statistics per variant
    over the same prompts.
    """
    rng = np.random.default_rng(seed)
    idx = np.stack([rng.integers(0, n, size=n) for _ in range(n_boot)])
    idx.setflags(write=False)
    return idx


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    stat: Callable[..., float] = np.mean,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """``(estimate, low, high)``: ``stat`` on the data and its percentile-bootstrap interval.

    Resamples observations (prompts) with replacement — the unit the paper's claims generalise
    over. Deterministic given ``seed`` (scheme in :func:`_boot_indices`). Edge cases are explicit
    rather than silently degenerate: empty input → ``(nan, nan, nan)``; a single observation →
    ``(stat(x), nan, nan)`` because one value says nothing about spread. NaN values are rejected
    (a NaN reward means an upstream bug, not a missing value to skip).
    """
    arr = np.asarray(values, dtype=float).ravel()
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if np.isnan(arr).any():
        raise ValueError(f"bootstrap_ci: {int(np.isnan(arr).sum())} NaN value(s) in input")
    if arr.size == 0:
        return (float("nan"), float("nan"), float("nan"))
    est = float(stat(arr))
    if arr.size == 1:
        return (est, float("nan"), float("nan"))
    samples = arr[_boot_indices(arr.size, n_boot, seed)]
    return (est, *_percentile_interval(stat, samples, level))


def _percentile_interval(stat: Callable, samples: np.ndarray, level: float) -> tuple[float, float]:
    """The percentile interval of ``stat`` over bootstrap ``samples`` (one replicate per row),
    vectorised when ``stat`` takes ``axis``."""
    try:
        boots = np.asarray(stat(samples, axis=1), dtype=float)
    except TypeError:  # a stat without an ``axis`` argument
        boots = np.array([stat(row) for row in samples], dtype=float)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(boots, [tail, 100.0 - tail])
    return (float(low), float(high))


@functools.lru_cache(maxsize=4)
def _seed_indices(n: int, k: int, n_boot: int, seed: int) -> np.ndarray:
    """Second-stage draws of :func:`bootstrap_ci_over_seeds`: ``(n_boot, n, k)`` seed columns.

    From a stream of their own (``default_rng([seed, 1])``), so the prompt-level draws stay exactly
    those of :func:`_boot_indices` and the two bootstraps agree when the seeds do.
    """
    rng = np.random.default_rng([seed, 1])
    idx = rng.integers(0, k, size=(n_boot, n, k), dtype=np.int32)
    idx.setflags(write=False)
    return idx


def bootstrap_ci_over_seeds(
    matrix: Sequence[Sequence[float]] | np.ndarray,
    *,
    stat: Callable[..., float] = np.mean,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """``(estimate, low, high)`` of a statistic over a prompts × sampling-seeds matrix.

    The two-stage (hierarchical) bootstrap of Davison & Hinkley (1997, §3.8): each replicate
    resamples the prompts with replacement, then, within each drawn prompt, its seeds with
    replacement, and applies ``stat`` to the n·k resampled values. Why this scheme and not the
    two-way (crossed) one: a seed is not a factor shared by prompts here — each answer's random
    stream is ``prompt_seed(seed, id)``, a hash of both, so seed 1 of prompt A and seed 1 of prompt
    B are unrelated draws and seeds are *nested* in prompts. Resampling both stages adds the
    within-prompt seed variance once more than resampling prompts alone over their seed means
    (≈ σ²_seed / (n·k) of extra variance): with the few seeds a run affords, that errs on the wide
    side. One seed column is :func:`bootstrap_ci`; when every seed of a prompt agrees the interval
    is :func:`bootstrap_ci`'s over prompts (same prompt draws), so seeds only ever widen it.
    """
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2:
        raise ValueError(f"bootstrap_ci_over_seeds: expected a prompts x seeds matrix, got shape {m.shape}")
    n, k = m.shape
    if k == 1:
        return bootstrap_ci(m[:, 0], stat=stat, n_boot=n_boot, seed=seed, level=level)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if np.isnan(m).any():
        raise ValueError(f"bootstrap_ci_over_seeds: {int(np.isnan(m).sum())} NaN value(s) in input")
    if n == 0:
        return (float("nan"), float("nan"), float("nan"))
    est = float(stat(m.ravel()))
    if n == 1:
        return (est, float("nan"), float("nan"))
    rows = _boot_indices(n, n_boot, seed)
    samples = m[rows[:, :, None], _seed_indices(n, k, n_boot, seed)].reshape(n_boot, n * k)
    return (est, *_percentile_interval(stat, samples, level))


def _with_ci(out: dict, name: str, values, *, n_seeds: int = 1, **boot) -> None:
    """``out[name]`` and its CI; with ``n_seeds`` > 1, ``values`` are seed-major blocks of one
    prompt order (every seed's answers, one seed after another) and the CI is over prompts and seeds."""
    if n_seeds > 1:
        arr = np.asarray(values, dtype=float)
        if arr.size % n_seeds:
            raise ValueError(f"{name}: {arr.size} values are not {n_seeds} equal seed blocks")
        est, lo, hi = bootstrap_ci_over_seeds(arr.reshape(n_seeds, -1).T, **boot)
    else:
        est, lo, hi = bootstrap_ci(values, **boot)
    out[name], out[f"{name}_ci_low"], out[f"{name}_ci_high"] = est, lo, hi


# --- alignment ---------------------------------------------------------------------------------
def _as_id_map(x: Any, what: str) -> dict[str, Any] | None:
    """Dicts and lists of ``{"id", "reward"}`` records (the scores format) become id → value maps."""
    if isinstance(x, Mapping):
        return {str(k): v for k, v in x.items()}
    if isinstance(x, (list, tuple)) and x and all(isinstance(r, Mapping) for r in x):
        out: dict[str, Any] = {}
        for i, r in enumerate(x):
            if "id" not in r or "reward" not in r:
                raise ValueError(f"{what}: record {i} needs 'id' and 'reward' keys, got {sorted(r)}")
            if str(r["id"]) in out:
                raise ValueError(f"{what}: duplicate id {r['id']!r}")
            out[str(r["id"])] = r["reward"]
        return out
    return None


def align(named: Mapping[str, Any]) -> tuple[list[str] | None, dict[str, list[Any]]]:
    """Align several per-prompt inputs: all sequences of one length, or all keyed by prompt id.

    Why strict: pairing an answer with the baseline answer to a *different* prompt silently
    produces a plausible-looking but meaningless win rate.
    Returns ``(ids or None, {name: values in a common order})``.
    """
    maps = {k: _as_id_map(v, k) for k, v in named.items()}
    keyed = [k for k, m in maps.items() if m is not None]
    if keyed and len(keyed) != len(maps):
        plain = [k for k in maps if maps[k] is None]
        raise ValueError(f"cannot align {keyed} (keyed by id) with {plain} (plain sequences)")
    if keyed:
        first = keyed[0]
        ids = list(maps[first])
        for k in keyed[1:]:
            missing, extra = set(ids) - set(maps[k]), set(maps[k]) - set(ids)
            if missing or extra:
                raise ValueError(
                    f"ids of {k!r} do not match {first!r}: missing {sorted(missing)[:5]}, "
                    f"extra {sorted(extra)[:5]} ({len(missing)} missing, {len(extra)} extra)"
                )
        return ids, {k: [maps[k][i] for i in ids] for k in maps}
    lists = {k: list(v) for k, v in named.items()}
    lengths = {k: len(v) for k, v in lists.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"inputs must have the same length, got {lengths}")
    return None, lists


def _finite_floats(values: list[Any], what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        raise ValueError(f"{what}: no values")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{what}: non-finite value at position(s) {bad[:5].tolist()}")
    return arr
