"""Model cards (Hugging Face ``README.md``) for extrapolated checkpoints.

Why: an extrapolated folder would otherwise carry the aligned model's card and claim to be that
model on the Hub. Its own card says what it is (a merge of the SFT and aligned models, not a
trained model), how it was computed (α or scheme, the formula) and from exactly which inputs
(the manifest's hashes), and, once the report has scored it, its evaluation results as
``model-index`` metadata.

The card is built from ``manifest.json`` alone, so the engine writes it beside the weights and the
``model_card`` rule rebuilds it with results after the report, even when the checkpoint itself was
deleted (``keep_extrapolated: false``). Writing needs only PyYAML; ``huggingface_hub`` is imported
only to turn results into ``model-index`` (its own format code).
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .common import atomic_path, read_json, setup_logging

log = logging.getLogger(__name__)

CARD_NAME = "README.md"
TAGS = ["expo", "model-extrapolation", "merge"]
INHERITED_KEYS = ("license", "license_name", "license_link", "language")
"""Metadata taken over from the aligned (else SFT) model's card: a merge is bound by their licence."""
TRAINING_ARTIFACTS = (
    "README.md",  # the aligned model's card: the output gets its own (workflow_scripts.model_card)
    "source.json",  # the checkpoint stage's record of where the aligned folder came from
    "trainer_state.json",
    "training_args*",
    "optimizer*",
    "scheduler*",
    "scaler*",
    "rng_state*",
    "adapter_config.json",
    "adapter_model*",
    "all_results.json",
    "train_results.json",
    "eval_results.json",
    "training_manifest.json",
    "training_history.csv",
    "events.out.tfevents*",
    "*.log",
)
"""Files of the aligned folder that describe its training, not the model: never copied, so the
output cannot pass for the aligned model. Config, tokenizer, generation config, chat template,
processor files (and custom code) are copied."""


def is_training_artifact(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pat) for pat in TRAINING_ARTIFACTS)


_HUB_CACHE = re.compile(r"/models--([^/]+?)--([^/]+)/snapshots/([0-9a-f]{40})(?:/|$)")


def identify(folder: str | Path) -> dict[str, str | None]:
    """Name, Hub repo and revision of a model folder, as far as they can be known.

    The checkpoint stage's ``source.json`` gives the repo and commit of a hub model; a folder in the
    Hugging Face cache gives them by its path; anything else (a trained or local model) is named by
    its folder.
    """
    folder = Path(folder)
    repo = revision = None
    try:
        rec = json.loads((folder / "source.json").read_text(encoding="utf-8"))
        if rec.get("kind") == "hub":
            repo, revision = rec.get("repo"), rec.get("commit")
        elif rec.get("kind") == "adapter":  # a PEFT adapter merged into its base: named by the adapter
            repo, revision = rec["adapter"].get("repo"), rec["adapter"].get("commit")
            folder = Path(rec["adapter"].get("path") or folder)
        elif rec.get("kind") == "local":
            folder = Path(rec.get("path") or folder)
    except (OSError, ValueError, AttributeError):
        pass
    m = _HUB_CACHE.search(str(folder.resolve()))
    if repo is None and m:
        repo, revision = f"{m.group(1)}/{m.group(2)}", m.group(3)
    return {"name": repo or folder.name, "repo": repo, "revision": revision}


def inherited_metadata(*folders: str | Path) -> dict[str, Any]:
    """Licence and language keys of the first input card that has them."""
    import yaml

    for folder in folders:
        text = _read(Path(folder) / CARD_NAME)
        m = re.match(r"^---\s*\n(.*?)\n---\s*\n", text or "", re.DOTALL)
        if not m:
            continue
        try:
            meta = yaml.safe_load(m.group(1)) or {}
        except yaml.YAMLError:
            continue
        found = {k: meta[k] for k in INHERITED_KEYS if isinstance(meta, dict) and meta.get(k)}
        if found:
            return found
    return {}


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _how(manifest: Mapping[str, Any]) -> str:
    """``α = 0.5`` or the scheme's kind."""
    if manifest.get("alpha_text") is not None:
        return f"α = {manifest['alpha_text']}"
    return f"scheme `{manifest.get('scheme', {}).get('kind', 'layerwise')}`"


def card_metadata(manifest: Mapping[str, Any], *, index: list[dict] | None = None) -> dict:
    """The card's YAML metadata (``base_model`` = [SFT, aligned], ``base_model_relation: merge``),
    with ``index`` (:func:`model_index`) as ``model-index``."""
    inputs = manifest.get("inputs", {})
    bases = list(dict.fromkeys(inputs[r].get("name") for r in ("sft", "aligned") if inputs.get(r, {}).get("name")))
    meta: dict[str, Any] = dict(manifest.get("card_metadata") or {})
    meta.update(
        {
            "base_model": bases,
            "base_model_relation": "merge",
            "library_name": "transformers",
            "pipeline_tag": "image-text-to-text" if manifest.get("components") else "text-generation",
            "tags": list(TAGS),
            "expo": {
                "alpha": manifest.get("alpha"),
                "scheme": manifest.get("scheme"),
                "formula": manifest.get("formula"),
                "inputs": {role: _input_hashes(inputs.get(role, {})) for role in ("sft", "aligned")},
            },
        }
    )
    if index:
        meta["model-index"] = index
    return meta


def _input_hashes(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One input's identity and the sha256 of each file the manifest hashed."""
    return {
        "name": entry.get("name"),
        "repo": entry.get("repo"),
        "revision": entry.get("revision"),
        "sha256": {f["name"]: f["sha256"] for f in entry.get("files", []) if f.get("sha256")},
    }


def model_index(model_name: str, results: list[dict]) -> list[dict]:
    """``model-index`` metadata for results ``{prompt_set, metric, value[, ci_low, ci_high]}``."""
    from huggingface_hub import EvalResult
    from huggingface_hub.repocard_data import eval_results_to_model_index

    evals = [
        EvalResult(
            task_type="text-generation",
            dataset_type=r["prompt_set"],
            dataset_name=r["prompt_set"],
            metric_type=r["metric"],
            metric_name=r["metric"],
            metric_value=r["value"],
        )
        for r in results
    ]
    return eval_results_to_model_index(model_name, evals)


def card_text(
    manifest: Mapping[str, Any], *, model_name: str, results: list[dict] | None = None, index: list[dict] | None = None
) -> str:
    """The whole README.md: YAML front matter, what the model is, its inputs and ``results`` (a
    table; ``index`` is their ``model-index``, built by the caller so that the engine, which writes
    cards without results, never needs huggingface_hub)."""
    import yaml

    meta = card_metadata(manifest, index=index)
    inputs = manifest.get("inputs", {})
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        "",
        f"# {model_name}",
        "",
        "A model made by **model extrapolation** (ExPO, [arXiv 2404.16792](https://arxiv.org/abs/2404.16792)) "
        f"from an SFT and an aligned model with {_how(manifest)}; it was not trained:",
        "",
        f"    {manifest.get('formula', '')}",
        "",
        "| role | model | revision |",
        "|---|---|---|",
        *[
            f"| {role} | {inputs.get(role, {}).get('name')} | {inputs.get(role, {}).get('revision') or '-'} |"
            for role in ("sft", "aligned")
        ],
        "",
        "## Scheme",
        "",
        "```json",
        json.dumps(manifest.get("scheme"), indent=2, ensure_ascii=False),
        "```",
    ]
    if manifest.get("zero_delta_components"):
        frozen = ", ".join(manifest["zero_delta_components"])
        lines += ["", f"Components the alignment left unchanged (Δ ≡ 0): {frozen}."]
    lines += ["", "## Inputs (sha256)", "", "| role | file | sha256 |", "|---|---|---|"]
    for role in ("sft", "aligned"):
        for name, digest in _input_hashes(inputs.get(role, {}))["sha256"].items():
            lines.append(f"| {role} | {name} | `{digest}` |")
    if results:
        lines += ["", "## Evaluation", "", "| prompt set | metric | value | 95% CI |", "|---|---|---|---|"]
        for r in results:
            ci = f"[{r['ci_low']:.4g}, {r['ci_high']:.4g}]" if _finite(r.get("ci_low"), r.get("ci_high")) else "-"
            lines.append(f"| {r['prompt_set']} | {r['metric']} | {r['value']:.4g} | {ci} |")
    return "\n".join(lines) + "\n"


def _finite(*xs: Any) -> bool:
    return all(isinstance(x, (int, float)) and math.isfinite(x) for x in xs)


def write_card(path: str | Path, manifest: Mapping[str, Any], *, model_name: str, **results: Any) -> Path:
    """Write the card atomically to ``path`` (a file, or a folder that gets ``README.md``);
    ``results`` / ``index`` as for :func:`card_text`."""
    path = Path(path)
    if path.is_dir():
        path = path / CARD_NAME
    with atomic_path(path) as tmp:
        Path(tmp).write_text(card_text(manifest, model_name=model_name, **results), encoding="utf-8")
    return path


# ------------------------------------------------------------------ results from the report


def results_for(table: str | Path, model: str) -> list[dict]:
    """The report's numbers of one model (``<pair>/<variant>``) as ``{prompt_set, metric, value, ci_*}``.

    Reads the report's ``results_long.csv`` (columns ``metric``, ``value``, optional
    ``reward_model``, the model in ``variant_id``) or the wide ``summary.csv`` (``<name>_mean`` /
    ``<name>_win_rate`` with ``_ci_low`` / ``_ci_high``). Non-numeric or missing values are left out.
    """
    with open(table, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return []
    id_col = next((c for c in ("variant_id", "model") if c in rows[0]), None)
    if id_col is None:
        raise ValueError(f"results table {table} has no 'variant_id' or 'model' column")
    mine = [r for r in rows if r[id_col] == model]
    out = _long_results(mine) if "metric" in rows[0] and "value" in rows[0] else _wide_results(mine)
    return [r for r in out if _finite(r["value"])]


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _long_results(rows: Iterable[dict]) -> list[dict]:
    """Rows of ``results_long.csv``: a metric of a reward model is named ``<reward model>/<metric>``."""
    return [
        {
            "prompt_set": r.get("prompt_set", ""),
            "metric": f"{r['reward_model']}/{r['metric']}" if r.get("reward_model") else r["metric"],
            "value": _num(r["value"]),
            "ci_low": _num(r.get("ci_low")),
            "ci_high": _num(r.get("ci_high")),
        }
        for r in rows
    ]


def _wide_results(rows: Iterable[dict]) -> list[dict]:
    out = []
    for r in rows:
        for col in r:
            if col.endswith("_mean") or col.endswith("_win_rate"):
                metric = col[: -len("_mean")] if col.endswith("_mean") else col
                stem = metric if col.endswith("_mean") else col
                out.append(
                    {
                        "prompt_set": r.get("prompt_set", ""),
                        "metric": metric,
                        "value": _num(r[col]),
                        "ci_low": _num(r.get(f"{stem}_ci_low")),
                        "ci_high": _num(r.get(f"{stem}_ci_high")),
                    }
                )
    return out


def card_from_report(manifest: str | Path, table: str | Path, out: str | Path, *, pair: str, variant: str) -> Path:
    """The card of ``<pair>/<variant>`` with the report's results (the ``model_card`` rule)."""
    model, name = f"{pair}/{variant}", f"expo-{pair}-{variant}"
    results = results_for(table, model)
    if not results:
        log.warning("no results for %s in %s; the card has no evaluation section", model, table)
        return write_card(out, read_json(manifest), model_name=name)
    return write_card(out, read_json(manifest), model_name=name, results=results, index=model_index(name, results))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="model card (README.md) of an extrapolated checkpoint")
    ap.add_argument("--manifest", required=True, type=Path, help="the extrapolation's manifest.json")
    ap.add_argument("--results", type=Path, default=None, help="the report's results_long.csv (or summary.csv)")
    ap.add_argument("--pair", required=True)
    ap.add_argument("--variant", required=True, help="e.g. alpha0.5 or scheme_thirds")
    ap.add_argument("--out", required=True, type=Path, help="README.md to write (or a folder)")
    ap.add_argument("--log", default=None)
    args = ap.parse_args(argv)
    setup_logging(args.log)
    if args.results is None:
        write_card(args.out, read_json(args.manifest), model_name=f"expo-{args.pair}-{args.variant}")
    else:
        card_from_report(args.manifest, args.results, args.out, pair=args.pair, variant=args.variant)


if __name__ == "__main__":
    main()
