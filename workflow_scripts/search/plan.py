"""One planning step of the search, as files: read the dev scores so far, write the next round.

This is what the workflow's search checkpoint runs: ``plan.json`` lists the candidates still to be
evaluated (each with the engine scheme that builds it), whether the search is done, its best
candidate and why it stopped; ``alpha_search.csv`` is the search path so far. Run it again once the
pending candidates have dev scores, and it plans the round after.

``python -m workflow_scripts.search.plan --inputs inputs.json --spec spec.json --out plan.json``
where ``inputs.json`` maps each evaluated variant (``alpha0`` = the aligned model) to
``{"scores": {rm: path}, "generations": path}``.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..common import read_json, setup_logging, write_json
from . import LayerConfig, log_rows, scheme_spec, search, write_log
from .core import Candidate, SearchResult
from .objective import Evaluation

log = logging.getLogger(__name__)


def load_evaluations(inputs: Mapping[str, Mapping[str, Any]]) -> dict[str, Evaluation]:
    """Evaluations by variant from score files (and generation files, for answer lengths)."""
    out = {}
    for variant, spec in inputs.items():
        scores = {rm: read_json(p) for rm, p in spec["scores"].items()}
        gens = read_json(spec["generations"]) if spec.get("generations") else None
        out[variant] = Evaluation.from_records(scores, gens)
    return out


def _candidate_json(c: Candidate, num_layers: int | None, layer_cfg: LayerConfig) -> dict[str, Any]:
    return {"variant": c.name, "label": c.label, "scheme": scheme_spec(c, num_layers, layer_cfg)}


def plan(
    evals: Mapping[str, Evaluation], spec: Mapping[str, Any], *, num_layers: int | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(plan as JSON-able dict, search-log rows) for the evaluations that exist.

    ``spec`` may carry ``num_layers`` (the workflow puts the pair's depth there); an explicit
    ``num_layers`` argument wins."""
    spec = dict(spec)
    depth = spec.pop("num_layers", None)
    num_layers = num_layers if num_layers is not None else depth
    uni, lay = search(evals, spec, num_layers=num_layers)
    layer_cfg = LayerConfig.from_config(spec.get("layers") or {})
    active: SearchResult = lay if lay is not None else uni
    best = active.best
    stop = active.stop_reason
    if spec.get("layers") is not None and lay is None and uni.budget_cut:
        stop = f"{stop}; no layer search (it starts once the uniform search converges)"
    out = {
        "done": active.done,
        "stage": "layers" if lay is not None else "uniform",
        "pending": [_candidate_json(c, num_layers, layer_cfg) for c in active.pending],
        "best": None if best is None else _candidate_json(best, num_layers, layer_cfg),
        "best_uniform_alpha": None if uni.best is None else uni.best.alpha,
        "best_score": None if active.best_score is None else list(active.best_score),
        "stop_reason": stop,
        "n_evals": uni.n_evals + (lay.n_evals if lay is not None else 0),
    }
    return out, log_rows(uni, lay)


def write_plan(
    inputs: Mapping[str, Mapping[str, Any]],
    spec: Mapping[str, Any],
    out_json: str | Path,
    out_csv: str | Path | None = None,
    *,
    num_layers: int | None = None,
) -> dict[str, Any]:
    result, rows = plan(load_evaluations(inputs), spec, num_layers=num_layers)
    write_json(out_json, result)
    if out_csv is not None:
        write_log(rows, out_csv)
    log.info(
        "search: %s, %d evaluations, %d pending, best %s",
        "done" if result["done"] else "running",
        result["n_evals"],
        len(result["pending"]),
        result["best"]["label"] if result["best"] else "-",
    )
    return result


def inputs_from_paths(paths: Sequence[str], aligned: str) -> dict[str, dict[str, Any]]:
    """The ``inputs`` mapping of :func:`write_plan` from a rule's dev score and generation files.

    Paths follow :mod:`workflow_scripts.layout`; the aligned checkpoint (``base/<aligned>``) is the
    search's ``alpha0``. Other files (an earlier round's plan) are ignored.
    """
    from ..layout import BASE_GROUP, parse_generation_path, parse_score_path

    def name_of(v) -> str:
        return "alpha0" if (v.group, v.name) == (BASE_GROUP, aligned) else v.name

    out: dict[str, dict[str, Any]] = {}
    for p in map(str, paths):
        parts = Path(p).parts
        if len(parts) >= 5 and parts[-5] == "scores":
            _, rm, v = parse_score_path(p)
            out.setdefault(name_of(v), {"scores": {}})["scores"][rm] = p
        elif len(parts) >= 4 and parts[-4] == "generations":
            _, v = parse_generation_path(p)
            out.setdefault(name_of(v), {"scores": {}})["generations"] = p
    return out


def plan_round(paths: Sequence[str], aligned: str, spec: Mapping[str, Any], out_json: str) -> dict[str, Any]:
    """The search checkpoint's job: one round's plan from the dev score files so far."""
    return write_plan(inputs_from_paths(paths, aligned), spec, out_json)


def search_result(
    paths: Sequence[str], aligned: str, spec: Mapping[str, Any], out_json: str, out_csv: str
) -> dict[str, Any]:
    """The search result under the real budget, and its path (``alpha_search.csv``).

    Its inputs are exactly the candidates the rounds asked for within the budget, so the replay
    must finish; a pending candidate means the inputs and the plans disagree.
    """
    result = write_plan(inputs_from_paths(paths, aligned), spec, out_json, out_csv)
    if not result["done"]:
        missing = [c["variant"] for c in result["pending"]]
        raise ValueError(f"search result: candidates {missing} have no dev scores among the inputs")
    return result


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", required=True, help="JSON: variant -> {scores: {rm: path}, generations: path}")
    ap.add_argument("--spec", required=True, help="JSON: the extrapolation.search config")
    ap.add_argument("--out", required=True, help="plan.json to write")
    ap.add_argument("--log-csv", default=None, help="alpha_search.csv to write")
    ap.add_argument("--num-layers", type=int, default=None, help="decoder depth (per-layer partition)")
    ap.add_argument("--log", default=None, help="also log to this file")
    args = ap.parse_args(argv)
    setup_logging(args.log)
    inputs = json.loads(Path(args.inputs).read_text())
    spec = json.loads(Path(args.spec).read_text())
    write_plan(inputs, spec, args.out, args.log_csv, num_layers=args.num_layers)


if __name__ == "__main__":
    main()
