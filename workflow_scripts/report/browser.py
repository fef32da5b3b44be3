"""The answer browser: one self-contained HTML file (vanilla JS, no network) with, per prompt, the
SFT, aligned and every variant's answer side by side, with rewards and failure-mode flags.

Filters: prompt set, pair, flag (an answer shown has it), variants shown (α, schemes, baselines),
free text; sorting by prompt or by the dev-chosen variant's primary-reward gain over the aligned
model. Researchers judge ExPO by reading answers; this puts them next to the numbers. The data are
embedded as JSON (``<`` escaped, rendered with ``textContent``: a model's output is never markup).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .tidy import ANSWER_FLAGS

KIND_ORDER = {"sft": 0, "aligned": 1, "alpha": 2, "scheme": 3, "reference": 4}


def browser_data(answers: Sequence[Mapping[str, Any]], df: pd.DataFrame, params: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON the page renders: variants (display order), prompts with answers keyed by variant."""
    variants: dict[str, dict[str, Any]] = {}
    prompts: dict[tuple[str, str], dict[str, Any]] = {}
    for a in answers:
        v = variants.setdefault(
            a["variant_id"],
            {"id": a["variant_id"], "label": a["variant"], "kind": a["kind"], "alpha": a["alpha"], "pairs": []},
        )
        if a["pair"] not in v["pairs"]:
            v["pairs"].append(a["pair"])
        p = prompts.setdefault(
            (a["prompt_set"], a["prompt_id"]),
            {"ps": a["prompt_set"], "id": a["prompt_id"], "instruction": a["instruction"], "answers": {}},
        )
        p["answers"][a["variant_id"]] = {
            "o": a["output"],
            "t": a["n_tokens"],
            "fr": a["finish_reason"],
            "r": a["rewards"],
            "x": [f for f in ANSWER_FLAGS if a["flags"].get(f)],
        }
    order = sorted(variants.values(), key=lambda v: (KIND_ORDER.get(v["kind"], 9), _num(v["alpha"]), v["label"]))
    for v in order:
        v["alpha"] = None if pd.isna(v["alpha"]) else float(v["alpha"])
    chosen = df[df.chosen_on_dev].drop_duplicates("pair")
    aligned = df[df.kind == "aligned"].drop_duplicates("pair")
    ev = params["evaluation"]
    return {
        "experiment": params.get("experiment", ""),
        "primary": ev["primary_reward"],
        "dev": ev.get("dev_prompt_set") or "",
        "reward_models": list(params["reward_models"]),
        "flags": list(ANSWER_FLAGS),
        "pairs": list(params["pairs"]),
        "prompt_sets": list(dict.fromkeys(p["ps"] for p in prompts.values())),
        "chosen": dict(zip(chosen.pair, chosen.variant_id)),
        "aligned": dict(zip(aligned.pair, aligned.variant_id)),
        "variants": order,
        "prompts": list(prompts.values()),
    }


def _num(x: Any) -> float:
    return -1e9 if x is None or pd.isna(x) else float(x)


def browser_html(data: Mapping[str, Any], title: str = "ExPO answers") -> str:
    """The page (``answer_browser.html``, a template beside this module) with the data embedded
    (safe inside ``<script>``)."""
    blob = json.dumps(data, ensure_ascii=False, allow_nan=False).replace("<", "\\u003c")
    page = (Path(__file__).with_name("answer_browser.html")).read_text(encoding="utf-8")
    return page.replace("__TITLE__", html.escape(title)).replace("__DATA__", blob)
