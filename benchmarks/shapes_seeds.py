"""The shapes world over seeds: does LLM-only ExPO lower hallucination at equal recall, and does
DDPO differ from DPO beyond noise? Reads finished runs of experiments/shapes_world.yaml and its seed
overlays (each a full replicate: world, initialisation, data order, sampler) and prints, per seed
and averaged over seeds, paired differences on the same eval prompts with 95 % bootstrap CIs.

    base="--cores 2 --resources gpu=1 --configfile experiments/shapes_world.yaml"
    snakemake $base
    snakemake $base experiments/overlays/shapes_world_seed1.yaml
    snakemake $base experiments/overlays/shapes_world_seed2.yaml
    python benchmarks/shapes_seeds.py shapes_world shapes_world_seed1 shapes_world_seed2
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from workflow_scripts.common import read_json  # noqa: E402
from workflow_scripts.hallucination import evaluate_records, paired_difference  # noqa: E402
from workflow_scripts.world.shapes import shapes_vocab  # noqa: E402

PAIRS = {"dpo": "dpo_0.2", "ddpo": "ddpo_0.2", "dpo_trainable": "dpo_0.2_trainable"}


def _metrics(root: Path, group: str, name: str) -> dict:
    """The eval metrics of one answer file, recomputed from its generations (per-answer counts)."""
    return evaluate_records(read_json(root / "generations" / "eval" / group / f"{name}.json"), shapes_vocab())


def _fmt(d: dict, key: str) -> str:
    return f"{d[f'{key}_diff']:+.3f} [{d[f'{key}_diff_ci_low']:+.3f}, {d[f'{key}_diff_ci_high']:+.3f}]"


def seed_rows(root: Path) -> list[dict]:
    """One row per comparison of one run: chosen α vs aligned per pair, and DDPO vs DPO."""
    table = pd.read_csv(root / "report" / "hallucination.csv")
    ev = table[table.prompt_set == "eval"]
    chosen = {r.pair: r for r in ev[ev.chosen].itertuples()}
    runs: dict[str, dict] = {}
    rows = []
    for pair, aligned in PAIRS.items():
        if pair not in chosen:
            continue
        a = _metrics(root, "base", aligned)
        c = chosen[pair]
        best = a if c.role == "aligned" else _metrics(root, pair, c.variant)
        runs[pair] = {"aligned": a, "chosen": best}
        d = paired_difference(best["per_answer"], a["per_answer"])
        rows.append({"comparison": f"{pair}: α {c.alpha:g} − aligned", **d})
        d = paired_difference(a["per_answer"], _metrics(root, "base", "sft")["per_answer"])
        rows.append({"comparison": f"{pair}: aligned − SFT", **d})
        for r in ev[(ev.pair == pair) & (ev.role == "alpha")].sort_values("alpha").itertuples():
            d = paired_difference(_metrics(root, pair, r.variant)["per_answer"], a["per_answer"])
            rows.append({"comparison": f"{pair}: fixed α {r.alpha:g} − aligned", **d})
    for which in ("aligned", "chosen"):
        if "dpo" in runs and "ddpo" in runs:
            d = paired_difference(runs["ddpo"][which]["per_answer"], runs["dpo"][which]["per_answer"])
            rows.append({"comparison": f"DDPO − DPO ({which})", **d})
    sft = ev[ev.role == "sft"].iloc[0]
    for r in rows:
        r["run"], r["sft_chair_i"], r["sft_pope"] = root.name, sft.chair_i, sft.pope_accuracy
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiments", nargs="+", help="experiment names under results/")
    ap.add_argument("--results", default="results")
    a = ap.parse_args(argv)
    rows = [r for e in a.experiments for r in seed_rows(Path(a.results) / e)]
    print("| run | comparison | Δ CHAIR_i | Δ recall | Δ object F1 | Δ POPE acc |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        cells = [_fmt(r, k) for k in ("chair_i", "recall", "object_f1", "pope_accuracy")]
        print(f"| {r['run']} | {r['comparison']} | " + " | ".join(cells) + " |")
    print()
    print(f"Over {len(a.experiments)} seeds: mean of the per-seed differences (min … max); seeds whose CI excludes 0")
    print()
    print("| comparison | Δ CHAIR_i | CI < 0 / > 0 | Δ recall | CI < 0 / > 0 | Δ POPE acc | CI < 0 / > 0 |")
    print("|---|---|---|---|---|---|---|")
    by: dict[str, list[dict]] = {}
    for r in rows:
        comp = r["comparison"]
        by.setdefault(comp.split(": α")[0] + ": chosen α − aligned" if ": α " in comp else comp, []).append(r)
    for comp, rs in by.items():
        cells = []
        for k in ("chair_i", "recall", "pope_accuracy"):
            v = [r[f"{k}_diff"] for r in rs]
            neg = sum(r[f"{k}_diff_ci_high"] < 0 for r in rs)
            pos = sum(r[f"{k}_diff_ci_low"] > 0 for r in rs)
            cells += [f"{statistics.mean(v):+.3f} ({min(v):+.3f} … {max(v):+.3f})", f"{neg} / {pos} of {len(rs)}"]
        print(f"| {comp} | " + " | ".join(cells) + " |")
    sft = [(r["run"], r["sft_chair_i"], r["sft_pope"]) for r in rows if r["comparison"] == "dpo: aligned − SFT"]
    print()
    print("SFT per run (CHAIR_i, POPE accuracy): " + ", ".join(f"{n} {c:.3f} / {p:.3f}" for n, c, p in sft))


if __name__ == "__main__":
    main()
