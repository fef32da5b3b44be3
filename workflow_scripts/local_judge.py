"""A local checkpoint as the AlpacaEval judge, through alpaca_eval's own annotator machinery.

Why: the paper's headline win rates need a GPT-4 judge; without an API account there was no win rate
at all. alpaca_eval already knows how to be judged by an open model — its
``weighted_alpaca_eval_vllm_llama3_70b`` config points its ``alpaca_eval_clf_gpt4_turbo`` template and
``logprob_parser`` at a local server. This module does the same offline: the annotator config
(``resources/alpaca_eval_configs/local_weighted/configs.yaml``) uses that template and parser, and its
completion function is :func:`local_logprob_completions`, which returns the judge checkpoint's
next-token log-probabilities in the OpenAI ``logprobs`` format the parser reads. Everything else —
prompt formatting, parsing, position handling, the annotation cache — is alpaca_eval's
``PairwiseAnnotator``. ``huggingface_local_completions`` (alpaca_eval's own text-generation judge) can
be used with a text-parsing template instead; it returns no log-probabilities, so it cannot give the
weighted preference.

What is added here:

* **both presentation orders**: every pair is annotated as (baseline, model) and (model, baseline),
  with alpaca_eval's random order switched off, and the two preferences averaged
  (``(p_ab + 3 - p_ba) / 2``) so the judge's position bias cancels;
* **a cache per (judge, prompt, pair of outputs)**: alpaca_eval's annotation cache (``caching_path``)
  keyed by instruction and both outputs, one file per judge, so judging a new α only sends the new
  answers to the model.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from workflow_scripts.common import read_json, setup_logging, write_json

logger = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "resources" / "alpaca_eval_configs"
LOCAL_WEIGHTED = "local_weighted"
FN_NAME = "expo_local_logprob_completions"
"""The ``fn_completions`` name our annotator configs use; resolved to :func:`local_logprob_completions`."""


@functools.lru_cache(maxsize=2)
def _load(model_name: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_name)
    model = AutoModelForCausalLM.from_pretrained(model_name, dtype=torch.float32).eval()
    tok._expo_score_ids = {}
    return tok, model


def _score_ids(tok, text: str) -> set[int]:
    cache = getattr(tok, "_expo_score_ids", {})
    if text not in cache:
        cache[text] = _single_token_ids(tok, text)
    return cache[text]


def _render(tok, prompt: str) -> list[int]:
    """alpaca_eval's ChatML prompt → the judge's own chat template (generation prompt added)."""
    from alpaca_eval.utils import prompt_to_chatml

    messages = [{"role": m["role"], "content": m["content"]} for m in prompt_to_chatml(prompt)]
    if getattr(tok, "chat_template", None):
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if isinstance(ids, Mapping) else ids)
    return tok("\n\n".join(m["content"] for m in messages))["input_ids"]


def _single_token_ids(tok, text: str) -> set[int]:
    """Vocabulary ids that decode to ``text`` once spacing is stripped ("m", " m", "▁m")."""
    return {i for t, i in tok.get_vocab().items() if tok.convert_tokens_to_string([t]).strip() == text}


def _top_logprobs(tok, logits, k: int, score_tokens: Sequence[str] = ()) -> list[dict[str, float]]:
    """Top-``k`` next tokens plus the answer tokens ``score_tokens`` (always reported, as a large
    judge would rank them first), stripped of spacing and merged ("m" and " m" are one answer)."""
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    ids = set(torch.topk(logp, k).indices.tolist())
    for text in score_tokens:
        ids |= _score_ids(tok, text)
    merged: dict[str, float] = {}
    for i in sorted(ids):
        text, v = tok.decode([i]).strip(), float(logp[i])
        merged[text] = float(np.logaddexp(merged[text], v)) if text in merged else v
    return [{"token": t, "logprob": lp} for t, lp in sorted(merged.items(), key=lambda x: -x[1])]


def local_logprob_completions(
    prompts: Sequence[str],
    model_name: str,
    top_logprobs: int = 20,
    score_tokens: Sequence[str] = (),
    max_prompt_tokens: int = 4096,
    **_: Any,
) -> dict[str, list]:
    """alpaca_eval completion function: one forward pass per prompt, next-token log-probabilities.

    Returns alpaca_eval's completions dict: ``completions`` (the most likely token), ``completions_all``
    (``{"text", "logprobs": {"content": [{"token", "logprob", "top_logprobs"}]}}``, what
    ``logprob_parser`` reads), ``price_per_example`` (NaN: local) and ``time_per_example``. Prompts
    longer than ``max_prompt_tokens`` keep their end (the question to the judge is there).
    ``score_tokens`` (the template's answer identifiers) are always among the reported tokens.
    """
    import torch

    tok, model = _load(str(model_name))
    texts, alls, times = [], [], []
    for prompt in prompts:
        t0 = time.perf_counter()
        ids = _render(tok, prompt)[-max_prompt_tokens:]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1]
        top = _top_logprobs(tok, logits, top_logprobs, score_tokens)
        texts.append(top[0]["token"])
        alls.append({"text": top[0]["token"], "logprobs": {"content": [{**top[0], "top_logprobs": top}]}})
        times.append(time.perf_counter() - t0)
    logger.info("judged %d prompt(s) with %s", len(prompts), model_name)
    return {
        "completions": texts,
        "completions_all": alls,
        "price_per_example": [float("nan")] * len(texts),
        "time_per_example": times,
    }


@contextlib.contextmanager
def _registered() -> Iterator[None]:
    """Make alpaca_eval resolve :data:`FN_NAME` to our completion function while annotating."""
    from workflow_scripts.metrics import _import_alpaca_eval_metrics

    _import_alpaca_eval_metrics()  # pkg_resources compat before alpaca_eval's annotators load
    from alpaca_eval.annotators import base

    original = base.get_fn_completions

    def resolve(name):
        return local_logprob_completions if name == FN_NAME else original(name)

    base.get_fn_completions = resolve
    try:
        yield
    finally:
        base.get_fn_completions = original


def judge_config(judge_dir: str | Path, out: Path, *, template: str = LOCAL_WEIGHTED) -> Path:
    """Write an annotator config for ``judge_dir`` (our template config with its model path filled in)."""
    import yaml

    cfg = yaml.safe_load((CONFIG_DIR / template / "configs.yaml").read_text(encoding="utf-8"))
    (name,) = cfg
    cfg[name]["completions_kwargs"]["model_name"] = str(Path(judge_dir).resolve())
    template_path = Path(cfg[name]["prompt_template"])
    if not template_path.is_absolute():  # alpaca_eval's own templates, named relative to its configs
        from workflow_scripts.alpaca_eval_judge import _alpaca_eval_dir

        cfg[name]["prompt_template"] = str(_alpaca_eval_dir() / "evaluators_configs" / template_path)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "configs.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def judge_pairs(
    pairs: Sequence[Mapping[str, str]],
    judge_dir: str | Path,
    cache: Path,
    *,
    template: str = LOCAL_WEIGHTED,
) -> list[dict[str, Any]]:
    """Preferences for ``pairs`` (``{"instruction", "output_1", "output_2"}``; 2 = output_2 better).

    Each pair is judged in both orders (position bias cancels in the average); alpaca_eval's cache
    at ``cache`` (a JSON file, one per judge) is read first and extended with new annotations.
    Returns one record per pair with ``preference`` (NaN if either order was unparseable),
    ``preference_forward`` and ``preference_swapped`` (the latter in the original orientation).
    """
    from alpaca_eval.annotators import PairwiseAnnotator

    rows = [{"instruction": p["instruction"], "output_1": p["output_1"], "output_2": p["output_2"]} for p in pairs]
    swapped = [{**r, "output_1": r["output_2"], "output_2": r["output_1"]} for r in rows]
    cache = Path(cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    config = judge_config(judge_dir, cache.parent / f"{cache.stem}_config", template=template)
    with _registered():
        annotator = PairwiseAnnotator(
            annotators_config=str(config), caching_path=str(cache), is_randomize_output_order=False
        )
        annotated = annotator.annotate_pairs(rows + swapped)
    out = []
    n = len(rows)
    for i, row in enumerate(rows):
        fwd = _pref(annotated[i].get("preference"))
        rev = _pref(annotated[n + i].get("preference"))
        rev = 3.0 - rev if not np.isnan(rev) else rev
        out.append(
            {
                **row,
                "preference": float((fwd + rev) / 2),
                "preference_forward": fwd,
                "preference_swapped": rev,
            }
        )
    return out


def _pref(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def judge_outputs(
    model_outputs: Sequence[Mapping[str, Any]],
    reference_outputs: Sequence[Mapping[str, Any]],
    judge_dir: str | Path,
    cache: Path,
) -> list[dict[str, Any]]:
    """Judge model answers against reference answers to the same prompts (matched by ``id``, else by
    ``instruction``): alpaca_eval annotations with ``preference`` 2 = the model's answer wins."""
    key = "id" if all("id" in r for r in [*model_outputs, *reference_outputs]) else "instruction"
    refs = {r[key]: r for r in reference_outputs}
    missing = [r[key] for r in model_outputs if r[key] not in refs]
    if missing:
        raise ValueError(f"{len(missing)} model answer(s) have no reference answer (by {key!r}): {missing[:3]}")
    pairs = [
        {"instruction": r["instruction"], "output_1": refs[r[key]]["output"], "output_2": r["output"]}
        for r in model_outputs
    ]
    judged = judge_pairs(pairs, judge_dir, cache)
    for rec, j in zip(model_outputs, judged):
        j[key] = rec[key]
        j["generator_2"] = rec.get("generator", "model")
        j["generator_1"] = refs[rec[key]].get("generator", "reference")
    return judged


def judge_files(
    model_outputs: str | Path,
    reference_outputs: str | Path,
    judge_dir: str | Path,
    cache: str | Path,
    out: str | Path,
    *,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """Judge one generation file against a baseline file; write annotations and the win rate to ``out``."""
    from workflow_scripts.metrics import preference_win_rate

    annotations = judge_outputs(read_json(model_outputs), read_json(reference_outputs), judge_dir, Path(cache))
    result = {
        "judge": str(judge_dir),
        "win_rate": preference_win_rate([a["preference"] for a in annotations], n_boot=n_boot),
        "annotations": annotations,
    }
    write_json(out, result)
    logger.info("wrote %s (win rate %.1f)", out, result["win_rate"]["win_rate"])
    return result


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m workflow_scripts.local_judge``: annotations and win rate of one generation file."""
    ap = argparse.ArgumentParser(prog="python -m workflow_scripts.local_judge", description=__doc__.split("\n\n")[0])
    ap.add_argument("--judge", required=True, type=Path, help="judge checkpoint folder (HF format)")
    ap.add_argument("--model-outputs", required=True, type=Path, help="alpaca_eval-style generations .json")
    ap.add_argument("--reference-outputs", required=True, type=Path, help="baseline generations .json")
    ap.add_argument("--cache", required=True, type=Path, help="alpaca_eval annotation cache of this judge (.json)")
    ap.add_argument("--out", required=True, type=Path, help="output JSON: {win_rate: ..., annotations: [...]}")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--log", default=None)
    args = ap.parse_args(argv)
    setup_logging(args.log)
    judge_files(args.model_outputs, args.reference_outputs, args.judge, args.cache, args.out, n_boot=args.n_boot)


if __name__ == "__main__":
    main()
