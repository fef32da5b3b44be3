"""Weight vs logit extrapolation at the same α, with what each costs (``logit_vs_weight.csv``).

One row per (prompt set, pair, α, kind): the mean reward of every reward model with a 95 %
bootstrap CI, the answers' mean length, and the cost of the generation job from its Snakemake
benchmark file — wall seconds and CPU seconds per generated token. Weight extrapolation runs one
model per token (plus a one-off extrapolation job, listed as ``extrapolate_s``); logit
extrapolation runs two (the aligned and the SFT model) and needs no extrapolated checkpoint. Job
times include loading libraries and models, the same for both kinds up to the second model's load.
"""

from __future__ import annotations

import argparse
import csv
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .common import atomic_path, read_json, setup_logging
from .layout import Variant

log = logging.getLogger(__name__)

MODELS_PER_TOKEN = {"alpha": 1, "logit": 2}


def read_benchmark(path: str | Path) -> dict[str, float]:
    """The first row of a Snakemake benchmark TSV (``s``, ``cpu_time``, ``max_rss``, ...)."""
    with open(path, newline="") as fh:
        row = next(csv.DictReader(fh, delimiter="\t"))
    out = {}
    for k, v in row.items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            continue
    return out


def _classify(paths: Iterable[str]) -> tuple[dict, dict, dict, dict]:
    gens, scores, bench, extra = {}, {}, {}, {}
    for p in paths:
        parts = Path(p).parts
        if p.endswith(".tsv") and parts[-4:-2] == ("benchmarks", "extrapolate"):
            extra[(parts[-2], Path(p).stem)] = read_benchmark(p)
        elif p.endswith(".tsv"):
            bench[(parts[-3], parts[-2], Path(p).stem)] = read_benchmark(p)
        elif parts[-5] == "scores":
            scores[(parts[-4], parts[-3], parts[-2], Path(p).stem)] = read_json(p)
        elif parts[-4] == "generations":
            gens[(parts[-3], parts[-2], Path(p).stem)] = read_json(p)
    return gens, scores, bench, extra


def logit_rows(paths: Sequence[str], reward_models: Sequence[str]) -> list[dict[str, Any]]:
    """The table's rows from the rule's inputs (generation, score and benchmark files)."""
    from .metrics import bootstrap_ci

    gens, scores, bench, extra = _classify(paths)
    rows = []
    for (ps, pair, name), recs in sorted(gens.items()):
        v = Variant(pair, name)
        tokens = sum(float(r.get("n_tokens", 0)) for r in recs)
        b = bench.get((ps, pair, name), {})
        row: dict[str, Any] = {
            "prompt_set": ps,
            "pair": pair,
            "alpha": float(v.alpha_text),
            "kind": "weight" if v.kind == "alpha" else "logit",
            "models_per_token": MODELS_PER_TOKEN[v.kind],
            "n": len(recs),
            "mean_tokens": tokens / max(len(recs), 1),
            "generate_s": b.get("s"),
            "generate_cpu_s": b.get("cpu_time"),
            "s_per_token": b["s"] / tokens if tokens and "s" in b else None,
            "cpu_s_per_token": b["cpu_time"] / tokens if tokens and "cpu_time" in b else None,
            "extrapolate_s": extra.get((pair, name), {}).get("s") if v.kind == "alpha" else 0.0,
        }
        for rm in reward_models:
            if (ps, rm, pair, name) in scores:
                m, lo, hi = bootstrap_ci([s["reward"] for s in scores[(ps, rm, pair, name)]])
                row.update({f"{rm}_mean": m, f"{rm}_ci_low": lo, f"{rm}_ci_high": hi})
        rows.append(row)
    return sorted(rows, key=lambda r: (r["prompt_set"], r["pair"], r["alpha"], r["kind"] != "weight"))


def logit_vs_weight(paths: Sequence[str], reward_models: Sequence[str], out: str) -> list[dict[str, Any]]:
    rows = logit_rows(paths, reward_models)
    fields = list(dict.fromkeys(k for r in rows for k in r)) or ["prompt_set"]
    with atomic_path(out) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    log.info("logit vs weight: %d rows written to %s", len(rows), out)
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", help="generation, score and benchmark files of both kinds")
    ap.add_argument("--reward-models", nargs="+", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--log", default=None)
    a = ap.parse_args(argv)
    setup_logging(a.log)
    logit_vs_weight(a.files, a.reward_models, a.out)


if __name__ == "__main__":
    main()
