"""``python -m workflow_scripts.metrics``: diagnostics and win rate of one generation file."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .diagnostics import diagnostics
from .statistics import _finite_floats, bootstrap_ci
from .win_rates import win_rate

logger = logging.getLogger("workflow_scripts.metrics")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m workflow_scripts.metrics``: diagnostics of a generation file, optionally win rate
    of its scores against a baseline's scores; writes one JSON."""
    from workflow_scripts.common import read_json, setup_logging, write_json

    ap = argparse.ArgumentParser(prog="python -m workflow_scripts.metrics", description=__doc__)
    ap.add_argument("--generations", required=True, type=Path, help="alpaca_eval-style generations .json")
    ap.add_argument("--scores", type=Path, help="scores .json ([{id, reward}]) for --generations")
    ap.add_argument("--baseline-scores", type=Path, help="baseline scores .json to compute a win rate")
    ap.add_argument("--max-new-tokens", type=int, default=None)
    ap.add_argument("--tie-eps", type=float, default=0.0)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, type=Path, help="output JSON")
    ap.add_argument("--log", default=None, help="log file")
    args = ap.parse_args(argv)
    setup_logging(args.log)

    records = read_json(args.generations)
    result: dict[str, Any] = {"generations": str(args.generations)}
    result["diagnostics"] = diagnostics(records, max_new_tokens=args.max_new_tokens, n_boot=args.n_boot, seed=args.seed)
    if args.scores is not None:
        scores = read_json(args.scores)
        r = _finite_floats([s["reward"] for s in scores], str(args.scores))
        result["reward"] = dict(
            zip(
                ("reward_mean", "reward_mean_ci_low", "reward_mean_ci_high"),
                bootstrap_ci(r, n_boot=args.n_boot, seed=args.seed),
            )
        )
        if args.baseline_scores is not None:
            result["win_rate"] = win_rate(
                scores, read_json(args.baseline_scores), tie_eps=args.tie_eps, n_boot=args.n_boot, seed=args.seed
            )
    elif args.baseline_scores is not None:
        raise ValueError("--baseline-scores needs --scores")
    write_json(args.out, result)
    logger.info("wrote %s", args.out)
