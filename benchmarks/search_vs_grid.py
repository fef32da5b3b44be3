"""Measure the adaptive α search against the fixed grid on a real experiment's dev set.

Drives the search as an outer loop around Snakemake (each pending α is requested as ordinary dev
score targets, so every job is cached and shared with the grid), then prints the search's best dev
objective and evaluation count beside the fixed grid's, for several objectives.

    python benchmarks/search_vs_grid.py --experiment demo --pair dpo --aligned dpo_0.1 \
        --grid 0.5 1 2 4 8 --rms gold rm --budget 6 [--configfile experiments/x.yaml]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workflow_scripts.common import format_alpha  # noqa: E402
from workflow_scripts.search import Candidate, Objective, Scorer, UniformConfig, uniform_search  # noqa: E402
from workflow_scripts.search.plan import load_evaluations  # noqa: E402


def paths(args, variant: str) -> dict:
    r = Path("results") / args.experiment
    group, name = ("base", args.aligned) if variant == "alpha0" else (args.pair, variant)
    return {
        "scores": {rm: str(r / "scores" / args.prompt_set / rm / group / f"{name}.json") for rm in args.rms},
        "generations": str(r / "generations" / args.prompt_set / group / f"{name}.json"),
    }


def ensure(args, variants: list[str]) -> None:
    targets = [p for v in variants for p in paths(args, v)["scores"].values() if not Path(p).exists()]
    if targets:
        cmd = ["snakemake", "--cores", "1", *args.snakemake, "--", *targets]  # "--": --configfile takes many values
        subprocess.run(cmd, check=True)


def run(args, objective: Objective) -> tuple:
    cfg = UniformConfig(budget=args.budget)
    inputs = {"alpha0": paths(args, "alpha0")}
    ensure(args, ["alpha0"])
    while True:
        evals = load_evaluations(inputs)
        scorer = Scorer(objective, evals["alpha0"])
        res = uniform_search(evals, scorer, cfg)
        if res.done:
            break
        ensure(args, [c.name for c in res.pending])
        inputs.update({c.name: paths(args, c.name) for c in res.pending})
    grid = [Candidate.uniform(float(a)) for a in args.grid]
    ensure(args, [c.name for c in grid])
    inputs.update({c.name: paths(args, c.name) for c in grid})
    evals = load_evaluations(inputs)
    scorer = Scorer(objective, evals["alpha0"])
    grid_scores = {c.alpha: scorer.score(evals[c.name])[0] for c in [Candidate.uniform(0), *grid]}
    grid_best = max(sorted(grid_scores), key=lambda a: grid_scores[a])
    return res, grid_best, grid_scores[grid_best], evals, scorer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--experiment", default="demo")
    ap.add_argument("--pair", default="dpo")
    ap.add_argument("--aligned", default="dpo_0.1")
    ap.add_argument("--prompt-set", default="dev")
    ap.add_argument("--rms", nargs="+", default=["gold", "rm"])
    ap.add_argument("--grid", nargs="+", default=["0.5", "1", "2", "4", "8"])
    ap.add_argument("--budget", type=int, default=6)
    ap.add_argument("--objectives", default='[{"rms": ["gold"]}]', help="JSON list of objective specs")
    ap.add_argument("--snakemake", nargs=argparse.REMAINDER, default=[], help="extra snakemake arguments")
    args = ap.parse_args()
    rows = []
    for spec in json.loads(args.objectives):
        obj = Objective.from_config(spec)
        res, grid_best, grid_score, evals, scorer = run(args, obj)
        gold = Scorer(Objective(rms=("gold",)), evals["alpha0"]) if "gold" in args.rms else None

        def gold_at(a: float, gold=gold, evals=evals) -> float:
            return gold.score(evals[Candidate.uniform(a).name])[0]

        rows.append(
            {
                "objective": obj.label,
                "search_alpha": format_alpha(res.best.alpha),
                "search_dev": round(res.best_score[0], 4),
                "search_evals": res.n_evals,
                "grid_alpha": format_alpha(grid_best),
                "grid_dev": round(grid_score, 4),
                "grid_evals": len(args.grid),
                "gold_at_search_alpha": round(gold_at(res.best.alpha), 4) if gold else None,
                "gold_at_grid_alpha": round(gold_at(grid_best), 4) if gold else None,
                "stop": res.stop_reason,
                "path": " ".join(f"{r['candidate']}({r['score']:.3f})" for r in res.rows),
            }
        )
        print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
