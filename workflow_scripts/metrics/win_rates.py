"""Win rates (percent, 0–100, as alpaca_eval and the ExPO tables report them)."""

from __future__ import annotations

import importlib.metadata
import sys
import types
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .statistics import _finite_floats, align, bootstrap_ci


def preferences(rewards: np.ndarray, baseline: np.ndarray, tie_eps: float = 0.0) -> np.ndarray:
    """alpaca_eval's preference encoding: 2 = answer wins, 1 = baseline wins, 1.5 = tie (|Δ| ≤ eps)."""
    if tie_eps < 0:
        raise ValueError(f"tie_eps must be >= 0, got {tie_eps}")
    diff = rewards - baseline
    return np.where(diff > tie_eps, 2.0, np.where(diff < -tie_eps, 1.0, 1.5))


# --- alpaca_eval import (compat) -----------------------------------------------------------------
def _import_alpaca_eval_metrics():
    """Import ``alpaca_eval.metrics``; tolerate setuptools ≥ 81, which no longer ships pkg_resources.

    alpaca_eval 0.6.6 imports ``pkg_resources`` at module load only for two helpers
    (``parse_version`` and ``get_distribution(...).version``). When it is missing we expose a
    minimal stand-in *only during the import* and remove it from ``sys.modules`` afterwards, so no
    other library mistakes it for the real thing. Pinning ``setuptools<81`` also fixes this.
    """
    if "alpaca_eval.metrics" in sys.modules:
        return sys.modules["alpaca_eval.metrics"]
    shim = None
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        from packaging.version import parse as _parse

        shim = types.ModuleType("pkg_resources")
        shim.parse_version = _parse  # type: ignore[attr-defined]
        shim.get_distribution = lambda name: types.SimpleNamespace(  # type: ignore[attr-defined]
            version=importlib.metadata.version(name)
        )
        sys.modules["pkg_resources"] = shim
    try:
        import alpaca_eval.metrics as ae_metrics
    finally:
        if shim is not None and sys.modules.get("pkg_resources") is shim:
            del sys.modules["pkg_resources"]
    return ae_metrics


# --- win rates -----------------------------------------------------------------------------------
def win_rate(
    rewards: Sequence[float] | Mapping[str, float],
    baseline_rewards: Sequence[float] | Mapping[str, float],
    *,
    tie_eps: float = 0.0,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Reward-model win rate (percent): a *discrete* win rate, not alpaca_eval's headline number.

    Per prompt the reward model makes a hard decision (preference 2 / 1 / 1.5 for a tie within
    ``tie_eps``, see :func:`preferences`), so the mean of ``preference - 1`` equals alpaca_eval's
    ``discrete_win_rate`` of those decisions. The AlpacaEval leaderboard's headline ``win_rate``
    instead averages a judge's *probabilities* (floats in [1, 2]); that number comes from
    :func:`preference_win_rate` over judge annotations and is not comparable with this one (the two
    differ by -0.4 to +2.3 points on the ExPO authors' leaderboard entries). Both keys returned here
    (``win_rate`` and ``discrete_win_rate``) are therefore equal. The CI bootstraps prompts over the
    per-prompt scores ``(preference - 1) * 100``. Inputs: two equal-length sequences, or two dicts /
    score-record lists keyed by prompt id (aligned by id).
    """
    _, al = align({"rewards": rewards, "baseline_rewards": baseline_rewards})
    r = _finite_floats(al["rewards"], "rewards")
    b = _finite_floats(al["baseline_rewards"], "baseline_rewards")
    prefs = preferences(r, b, tie_eps)
    ae = _import_alpaca_eval_metrics()
    res = ae.get_winrate(pd.DataFrame({"preference": prefs}))
    _, lo, hi = bootstrap_ci((prefs - 1.0) * 100.0, n_boot=n_boot, seed=seed, level=level)
    return {
        "win_rate": float(res["win_rate"]),
        "win_rate_ci_low": lo,
        "win_rate_ci_high": hi,
        "standard_error": float(res["standard_error"]) if len(prefs) > 1 else float("nan"),
        "discrete_win_rate": float(res["discrete_win_rate"]),
        "n_wins": int(res["n_wins"]),
        "n_losses": int(res["n_wins_base"]),
        "n_draws": int(res["n_draws"]),
        "n": int(res["n_total"]),
        "tie_eps": float(tie_eps),
    }


def _preference_array(preferences: Any) -> np.ndarray:
    """Judge preferences as floats (NaN = missing) from a sequence, an id → value map or a frame."""
    if isinstance(preferences, pd.DataFrame):
        if "preference" not in preferences.columns:
            raise ValueError(f"preferences frame has no 'preference' column; has {list(preferences.columns)}")
        preferences = preferences["preference"]
    if isinstance(preferences, Mapping):
        preferences = list(preferences.values())
    values = [np.nan if v is None else v for v in preferences]
    try:
        arr = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"preferences must be numbers in [1, 2] or missing: {exc}") from exc
    valid = np.isnan(arr) | (arr == 0) | ((arr >= 1) & (arr <= 2))
    if not valid.all():
        bad = np.flatnonzero(~valid)
        raise ValueError(
            f"preferences must lie in [1, 2] (1.5 a tie, 0 the legacy tie, NaN missing); "
            f"got {arr[bad[:5]].tolist()} at position(s) {bad[:5].tolist()}"
        )
    return np.where(arr == 0, 1.5, arr)


def preference_win_rate(
    preferences: Sequence[float | None] | Mapping[str, float | None] | pd.DataFrame,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Win rate (percent) from a judge's preferences, exactly as ``alpaca_eval.metrics.get_winrate``.

    ``preferences`` are alpaca_eval annotations: floats in [1, 2] (2 = the model's answer wins,
    1 = the baseline wins, 1.5 a tie; a logprob-weighted judge gives values in between), ``None`` /
    NaN for prompts the judge could not annotate. The numbers come from alpaca_eval itself so they
    mean what the leaderboard's mean:

    * ``win_rate`` — headline: mean of ``preference - 1`` over annotated prompts, × 100;
    * ``discrete_win_rate`` — each preference rounded to a win / loss (exact 1.5 stays a tie, counted
      half), × 100;
    * ``standard_error`` — of the headline (sample SEM, NaN with fewer than two prompts);
    * ``n_wins`` / ``n_losses`` — prompts with preference above / below 1.5; ``n_draws`` — exactly
      1.5; ``n_total`` — annotated prompts; ``n_missing`` — prompts without a preference.

    Added here: 95 % percentile-bootstrap CIs over annotated prompts for both rates
    (``win_rate_ci_low`` …, ``discrete_win_rate_ci_low`` …; scheme in :func:`bootstrap_ci`).
    """
    arr = _preference_array(preferences)
    present = arr[~np.isnan(arr)]
    ae = _import_alpaca_eval_metrics()
    res = ae.get_winrate(pd.DataFrame({"preference": arr}))
    headline = (present - 1.0) * 100.0
    discrete = np.where(present == 1.5, 50.0, (np.round(present) - 1.0) * 100.0)
    out: dict[str, Any] = {
        "win_rate": float(res["win_rate"]),
        "standard_error": float(res["standard_error"]),
        "discrete_win_rate": float(res["discrete_win_rate"]),
        "n_wins": int(res["n_wins"]),
        "n_losses": int(res["n_wins_base"]),
        "n_draws": int(res["n_draws"]),
        "n_total": int(res["n_total"]),
        "n_missing": int(arr.size - present.size),
    }
    for name, values in (("win_rate", headline), ("discrete_win_rate", discrete)):
        _, lo, hi = bootstrap_ci(values, n_boot=n_boot, seed=seed, level=level)
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = lo, hi
    return out
