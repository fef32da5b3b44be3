"""Which α does each selection objective choose on dev, and what gold reward does it get on eval?

Reads a finished experiment's score files (every grid α scored by every reward model on the dev
and the eval set), applies the search's selection rule per objective to the same dev scores
(highest dev objective over the aligned model and the grid, ties to the smaller α; the objective
standardised and bootstrapped as the search does it), and prints the gold reward on eval at the
chosen α beside the gold-optimal α. One grid run serves every objective: no extra jobs.

    python benchmarks/selection_vs_gold.py --experiment demo_search --aligned dpo_0.1 --rms rm rm_b
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workflow_scripts.common import format_alpha, read_json  # noqa: E402
from workflow_scripts.search import Evaluation, Objective, Scorer  # noqa: E402


def evaluations(root: Path, prompt_set: str, pair: str, aligned: str, alphas: list[str], rms: list[str]) -> dict:
    """{α: Evaluation} on one prompt set; α 0 is the aligned model."""
    out = {}
    for a in ["0", *alphas]:
        group, name = ("base", aligned) if a == "0" else (pair, f"alpha{a}")
        scores = {rm: read_json(root / "scores" / prompt_set / rm / group / f"{name}.json") for rm in rms}
        out[float(a)] = Evaluation.from_records(scores)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--experiment", default="demo_search")
    ap.add_argument("--pair", default="dpo")
    ap.add_argument("--aligned", default="dpo_0.1")
    ap.add_argument("--alphas", nargs="+", default=["0.5", "1", "2", "4", "8"])
    ap.add_argument("--rms", nargs="+", default=["rm", "rm_b"], help="learned reward models")
    ap.add_argument("--gold", default="gold")
    args = ap.parse_args()
    root = Path("results") / args.experiment
    rms = [*args.rms, args.gold]
    dev = evaluations(root, "dev", args.pair, args.aligned, args.alphas, rms)
    ev = evaluations(root, "eval", args.pair, args.aligned, args.alphas, rms)
    gold_eval = Scorer(Objective(rms=(args.gold,)), ev[0.0])
    eval_gold = {a: gold_eval.score(e, format_alpha(a)) for a, e in ev.items()}
    best_gold = max(sorted(eval_gold), key=lambda a: eval_gold[a][0])
    objectives = [{"rms": [rm]} for rm in args.rms]
    objectives += [{"kind": k, "rms": list(args.rms)} for k in ("ensemble_mean", "ensemble_min")]
    objectives += [{"kind": k, "rms": rms} for k in ("ensemble_mean", "ensemble_min")]
    objectives.append({"rms": [args.gold]})
    rows = []
    for spec in objectives:
        obj = Objective.from_config(spec)
        scorer = Scorer(obj, dev[0.0])
        curve = {a: scorer.score(e, format_alpha(a))[0] for a, e in dev.items()}
        chosen = max(sorted(curve), key=lambda a: curve[a])
        g, lo, hi = eval_gold[chosen]
        rows.append(
            {
                "objective": obj.label,
                "dev_curve": {format_alpha(a): round(v, 3) for a, v in curve.items()},
                "chosen_alpha": format_alpha(chosen),
                "gold_eval": round(g, 3),
                "gold_eval_ci": [round(lo, 3), round(hi, 3)],
                "gold_optimal_alpha": format_alpha(best_gold),
                "gold_eval_at_optimum": round(eval_gold[best_gold][0], 3),
                "regret": round(eval_gold[best_gold][0] - g, 3),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    head = "| objective (selects α on dev) | α chosen | gold on eval at it [95 % CI] | gold-optimal α (eval) | regret |"
    print("\n" + head)
    print("|---|---:|---|---:|---:|")
    for r in rows:
        ci = f"[{r['gold_eval_ci'][0]:.3f}, {r['gold_eval_ci'][1]:.3f}]"
        print(
            f"| {r['objective']} | {r['chosen_alpha']} | {r['gold_eval']:.3f} {ci} | "
            f"{r['gold_optimal_alpha']} ({r['gold_eval_at_optimum']:.3f}) | {r['regret']:.3f} |"
        )
    print("\ngold on eval per α: " + ", ".join(f"{format_alpha(a)}: {v[0]:.3f}" for a, v in sorted(eval_gold.items())))


if __name__ == "__main__":
    main()
