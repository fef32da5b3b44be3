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
    """Reward-model-judged win rate (percent) of answers over baseline answers to the same prompts.

    Per prompt the reward model acts as the judge (preference 2/1/1.5, see :func:`preferences`);
    the win rate itself comes from alpaca_eval's ``get_winrate`` so it means exactly what
    alpaca_eval's number means (ties count half). The CI bootstraps prompts over the per-prompt
    scores ``(preference - 1) * 100`` whose mean *is* that win rate. Inputs: two equal-length
    sequences, or two dicts / score-record lists keyed by prompt id (aligned by id).
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
