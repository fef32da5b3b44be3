"""Length-controlled win rate with alpaca_eval's GLM, from local files only.

Length-controlled win rate: alpaca_eval's GLM (``get_length_controlled_winrate``) needs exactly one
file from the hub, ``df_gamed.csv`` of the *dataset* repo ``tatsu-lab/alpaca_eval`` (it holds the
per-prompt ``instruction_difficulty`` and the "gamed" baseline annotations the GLM is regularised
towards). We never let alpaca_eval download it: we look it up ourselves (explicit path, env var
``EXPO_ALPACA_EVAL_DF_GAMED``, or the local Hugging Face cache via ``try_to_load_from_cache``, which
makes no request) and hand the local path to alpaca_eval. We also pass ``save_weights_dir=None`` so
alpaca_eval does not write fitted weights into its installed package, and ``baseline=None`` so its
second hub file (``instruction_difficulty.csv``, used only to re-predict against a named leaderboard
baseline) is not needed. The GLM also needs each answer's position in the 805-prompt AlpacaEval set
(``instruction_index``): without it LC is reported unavailable, never guessed.

Two sources of preferences: a reward model's hard decisions (:func:`lc_win_rate`) and a judge's
annotations (:func:`judge_lc_win_rate`: the local or API judge's probabilities, the leaderboard's LC).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .statistics import _boot_indices, _finite_floats, align
from .win_rates import _import_alpaca_eval_metrics, preferences

logger = logging.getLogger(__name__)

DF_GAMED_ENV = "EXPO_ALPACA_EVAL_DF_GAMED"
ALPACA_EVAL_HUB_REPO = "tatsu-lab/alpaca_eval"
DF_GAMED_FILENAME = "df_gamed.csv"
ALPACA_EVAL_ID_RE = re.compile(r"^alpaca_eval-(\d+)$")
"""Ids the prompt stage gives AlpacaEval prompts (``alpaca_eval-0042`` = position 42 of 805)."""


def find_df_gamed(df_gamed_path: str | os.PathLike | None = None, cache_dir: str | None = None) -> Path | None:
    """Locate alpaca_eval's ``df_gamed.csv`` locally, never over the network.

    Order: explicit path, ``$EXPO_ALPACA_EVAL_DF_GAMED``, then the Hugging Face cache
    (``try_to_load_from_cache`` only reads the cache folder). An explicit path that does not exist
    is a user error (ValueError); an uncached file just means "unavailable" (returns None).
    """
    explicit = df_gamed_path or os.environ.get(DF_GAMED_ENV)
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise ValueError(f"df_gamed.csv not found at {p} (from argument or ${DF_GAMED_ENV})")
        return p
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(
        repo_id=ALPACA_EVAL_HUB_REPO, filename=DF_GAMED_FILENAME, repo_type="dataset", cache_dir=cache_dir
    )
    return Path(hit) if isinstance(hit, str) and Path(hit).is_file() else None


def _unavailable(reason: str, **extra) -> dict[str, Any]:
    logger.info("LC win rate unavailable: %s", reason)
    return {
        "lc_win_rate": None,
        "lc_win_rate_ci_low": None,
        "lc_win_rate_ci_high": None,
        "available": False,
        "reason": reason,
        **extra,
    }


def lc_win_rate(
    rewards: Sequence[float] | Mapping[str, float],
    baseline_rewards: Sequence[float] | Mapping[str, float],
    *,
    outputs: Sequence[str] | Mapping[str, str],
    baseline_outputs: Sequence[str] | Mapping[str, str],
    instruction_index: Sequence[int] | Mapping[str, int] | None = None,
    tie_eps: float = 0.0,
    glm_name: str = "length_controlled_v1",
    df_gamed_path: str | os.PathLike | None = None,
    cache_dir: str | None = None,
    generator: str = "model",
    baseline_generator: str = "baseline",
    n_boot: int = 0,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Length-controlled win rate (percent) with alpaca_eval's GLM, or an explicit "unavailable".

    Needs: the local ``df_gamed.csv`` (see :func:`find_df_gamed`), scikit-learn + patsy, and each
    prompt's 0-based position in the 805 AlpacaEval prompts (``instruction_index``; derived
    automatically when the inputs are keyed by the prompt stage's ``alpaca_eval-NNNN`` ids). Lengths are
    alpaca_eval's (characters of ``output``). Caveat for the report: alpaca_eval's default GLM
    regularises towards annotations by its GPT-4-turbo judge; with a reward-model judge the LC
    number is a length-debiased *indication*, not the leaderboard's LC. ``n_boot > 0`` adds a
    bootstrap CI by refitting the GLM on resampled prompts (slow: one CV fit per replicate); with
    the default 0 the CI is None and alpaca_eval's ``lc_standard_error`` is reported instead.
    Returns ``{"lc_win_rate": None, "available": False, "reason": ...}`` when anything is missing.
    Long because alpaca_eval's GLM inputs are all keyword arguments: the body after this docstring is
    input checks, one GLM fit and the optional bootstrap.
    """
    named = {
        "rewards": rewards,
        "baseline_rewards": baseline_rewards,
        "outputs": outputs,
        "baseline_outputs": baseline_outputs,
    }
    if instruction_index is not None:
        named["instruction_index"] = instruction_index
    ids, al = align(named)
    r = _finite_floats(al["rewards"], "rewards")
    b = _finite_floats(al["baseline_rewards"], "baseline_rewards")
    prefs = preferences(r, b, tie_eps)
    if instruction_index is None and ids and all(ALPACA_EVAL_ID_RE.match(i) for i in ids):
        al["instruction_index"] = [int(ALPACA_EVAL_ID_RE.match(i).group(1)) for i in ids]
        instruction_index = al["instruction_index"]

    try:
        ae = _import_alpaca_eval_metrics()
        from alpaca_eval.metrics import glm_winrate
    except ImportError as exc:
        return _unavailable(f"alpaca_eval's GLM cannot be imported ({exc}); it needs scikit-learn and patsy")
    if instruction_index is None:
        return _unavailable(
            "instruction_index not given: alpaca_eval's GLM needs each prompt's position in the "
            "805-prompt AlpacaEval set (its per-prompt instruction_difficulty)"
        )
    path = find_df_gamed(df_gamed_path, cache_dir)
    if path is None:
        return _unavailable(_no_df_gamed_reason())
    frame = _glm_frame(path, al, prefs, generator, baseline_generator)
    return _lc_result(ae, glm_winrate, path, frame, glm_name, n_boot, seed, level)


def judge_lc_win_rate(
    annotations: Sequence[Mapping[str, Any]] | pd.DataFrame,
    *,
    instruction_index: Sequence[int] | None = None,
    glm_name: str = "length_controlled_v1",
    df_gamed_path: str | os.PathLike | None = None,
    cache_dir: str | None = None,
    n_boot: int = 0,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Length-controlled win rate (percent) from a *judge's* alpaca_eval annotations, or "unavailable".

    ``annotations`` are what alpaca_eval's ``PairwiseAnnotator`` returns (and what the local judge
    stage stores): ``preference`` in [1, 2] (2 = ``output_2``, the model, wins; NaN = not
    annotated), ``output_1`` (the baseline's answer), ``output_2`` (the model's answer) and optional
    ``generator_1`` / ``generator_2``. This is the number the AlpacaEval 2.0 leaderboard reports as
    LC when the judge is its GPT-4-turbo judge: the same GLM (``get_length_controlled_winrate``)
    is fitted on the judge's preferences. Each answer's position among the 805 AlpacaEval prompts
    comes from ``instruction_index``, else an ``index`` column, else ``id`` values of the form
    ``alpaca_eval-NNNN``; without one (e.g. prompts that are not AlpacaEval's) the result is
    ``{"available": False, "reason": ...}``, as it is without a local ``df_gamed.csv`` or without
    scikit-learn / patsy. Returns the keys of :func:`lc_win_rate`.
    """
    df = annotations.copy() if isinstance(annotations, pd.DataFrame) else pd.DataFrame(list(annotations))
    missing = [c for c in ("preference", "output_1", "output_2") if c not in df.columns]
    if missing:
        raise ValueError(f"judge annotations lack column(s) {missing}; have {list(df.columns)}")
    index = _annotation_index(df, instruction_index)
    try:
        ae = _import_alpaca_eval_metrics()
        from alpaca_eval.metrics import glm_winrate
    except ImportError as exc:
        return _unavailable(f"alpaca_eval's GLM cannot be imported ({exc}); it needs scikit-learn and patsy")
    if index is None:
        return _unavailable(
            "the judged prompts carry no AlpacaEval positions (no instruction_index, index column or "
            "alpaca_eval-NNNN ids): alpaca_eval's GLM needs each prompt's instruction_difficulty"
        )
    path = find_df_gamed(df_gamed_path, cache_dir)
    if path is None:
        return _unavailable(_no_df_gamed_reason())
    _check_positions(path, index)
    gen_2 = df["generator_2"] if "generator_2" in df else "model"
    gen_1 = df["generator_1"] if "generator_1" in df else "baseline"
    frame = pd.DataFrame(
        {
            "preference": pd.to_numeric(df["preference"], errors="coerce").to_numpy(dtype=float),
            "output_1": df["output_1"].astype(str).to_numpy(),
            "output_2": df["output_2"].astype(str).to_numpy(),
            "generator_1": gen_1 if isinstance(gen_1, str) else gen_1.astype(str).to_numpy(),
            "generator_2": gen_2 if isinstance(gen_2, str) else gen_2.astype(str).to_numpy(),
            "index": index,
            "annotator": "judge",
        }
    )
    return _lc_result(ae, glm_winrate, path, frame, glm_name, n_boot, seed, level)


def _annotation_index(df: pd.DataFrame, instruction_index: Sequence[int] | None) -> list[int] | None:
    """AlpacaEval positions of annotated prompts: explicit, an ``index`` column, or ``alpaca_eval-NNNN`` ids."""
    if instruction_index is not None:
        if len(instruction_index) != len(df):
            raise ValueError(f"instruction_index has {len(instruction_index)} values for {len(df)} annotations")
        return [int(i) for i in instruction_index]
    if "index" in df.columns:
        return [int(i) for i in df["index"]]
    ids = [str(i) for i in df["id"]] if "id" in df.columns else []
    if ids and all(ALPACA_EVAL_ID_RE.match(i) for i in ids):
        return [int(ALPACA_EVAL_ID_RE.match(i).group(1)) for i in ids]
    return None


def _no_df_gamed_reason() -> str:
    return (
        f"{DF_GAMED_FILENAME} of the hub dataset {ALPACA_EVAL_HUB_REPO} is not available locally "
        f"(not in the Hugging Face cache, no ${DF_GAMED_ENV}); fetch it once with `hf download "
        f"{ALPACA_EVAL_HUB_REPO} {DF_GAMED_FILENAME} --repo-type dataset` on a machine with network"
    )


def _lc_result(ae, glm_winrate, path, frame: pd.DataFrame, glm_name: str, n_boot: int, seed: int, level: float):
    """One GLM fit of ``frame`` (and the optional bootstrap) as :func:`lc_win_rate`'s result dict."""
    fit = _glm_fitter(ae, glm_winrate, path, glm_name)
    res = fit(frame)
    out = {
        "lc_win_rate": float(res["length_controlled_winrate"]),
        "lc_win_rate_ci_low": None,
        "lc_win_rate_ci_high": None,
        "lc_standard_error": float(res["lc_standard_error"]),
        "win_rate": float(res["win_rate"]),
        "n": int(res["n_total"]),
        "available": True,
        "reason": None,
        "glm_name": glm_name,
        "df_gamed_path": str(path),
    }
    if n_boot > 0 and len(frame) > 1:
        out["lc_win_rate_ci_low"], out["lc_win_rate_ci_high"] = _bootstrap_ci(fit, frame, n_boot, seed, level)
    return out


def _check_positions(path, idx: Sequence[int]) -> None:
    """Every prompt must be an AlpacaEval position known to ``df_gamed.csv`` (ValueError otherwise)."""
    difficulty = pd.read_csv(path).drop_duplicates("index")["instruction_difficulty"]
    unknown = sorted({i for i in idx if i not in difficulty.index})
    if unknown:
        raise ValueError(
            f"instruction_index values {unknown[:5]} are not AlpacaEval prompt positions known to "
            f"{path} ({len(unknown)} unknown); LC win rate only applies to the AlpacaEval prompts"
        )


def _glm_frame(path, al: Mapping[str, Sequence], prefs, generator: str, baseline_generator: str) -> pd.DataFrame:
    """alpaca_eval's annotation frame (baseline as ``output_1``); every prompt must be an AlpacaEval position."""
    idx = [int(i) for i in al["instruction_index"]]
    _check_positions(path, idx)
    return pd.DataFrame(
        {
            "preference": prefs,
            "output_1": [str(o) for o in al["baseline_outputs"]],
            "output_2": [str(o) for o in al["outputs"]],
            "generator_1": baseline_generator,
            "generator_2": generator,
            "index": idx,
            "annotator": "reward_model",
        }
    )


def _glm_fitter(ae, glm_winrate, path, glm_name: str):
    """One GLM fit of a frame, with the hub download redirected to the local ``df_gamed.csv``."""

    def local_download(*args, filename: str | None = None, **kwargs) -> str:
        if filename == DF_GAMED_FILENAME:
            return str(path)
        raise RuntimeError(f"alpaca_eval asked for hub file {filename!r}; network use is not allowed here")

    def fit(df: pd.DataFrame) -> dict:
        # alpaca_eval 0.6.6 passes scikit-learn options deprecated in 1.8 (FutureWarning per fit;
        # they stop working in scikit-learn 1.10 — pin below that). Silenced here so a bootstrap
        # does not print thousands of identical warnings.
        with _patched(glm_winrate, "hf_hub_download", local_download), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return ae.get_length_controlled_winrate(
                df,
                glm_name=glm_name,
                save_weights_dir=None,
                baseline=None,
                is_add_glm_preference_inplace=False,
            )

    return fit


def _bootstrap_ci(fit, frame: pd.DataFrame, n_boot: int, seed: int, level: float) -> tuple[float, float]:
    """Percentile CI of the LC win rate over GLM refits on resampled prompts."""
    reps = []
    for row in _boot_indices(len(frame), n_boot, seed):
        reps.append(fit(frame.iloc[row].reset_index(drop=True))["length_controlled_winrate"])
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(np.asarray(reps, dtype=float), [tail, 100.0 - tail])
    return float(lo), float(hi)


@contextlib.contextmanager
def _patched(module: Any, name: str, value: Any):
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)
