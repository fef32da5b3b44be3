"""Decoding-time (logit) extrapolation: generate with ℓ_aligned + α·(ℓ_aligned − ℓ_sft) at every step.

Why beside weight extrapolation: ExPO moves the *weights* past the aligned model; the DeRa / EFT
family moves the *next-token logits* instead, running both models at every step. At α = 0 it is
the aligned model and at α = −1 the SFT model, exactly (the combination is computed as
(1 + α)·ℓ_aligned − α·ℓ_sft, so those two α give the two models' logits bit for bit). Whether the
two kinds of extrapolation agree at the same α, and what each costs (one model per token vs two),
is then one table of the ordinary report.

Logits or log-probabilities give the same answers: log-softmax subtracts one constant per model and
step, which the combination turns into one constant over the vocabulary, and softmax ignores it.

Implementation: Hugging Face ``generate`` on the aligned model with a logits processor that runs
the SFT model on the same tokens with its own KV cache. Custom processors run after ``generate``'s
built-in ones and before temperature / top-k / top-p, so the repetition, presence and frequency
penalties are given to this processor's list after the extrapolation (they act on the combined
logits, as they would on a single model's). Records are those of
:mod:`workflow_scripts.generate`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .common import format_alpha, pick_device, setup_logging
from .decoding import PresenceFrequencyPenaltyLogitsProcessor, hf_generation_kwargs, resolve_decoding
from .generate import (
    _check_prompts,
    _load_tokenizer,
    _record,
    eos_token_ids,
    read_prompts,
    render_prompt_ids,
    write_generations,
)
from .seeded_sampling import per_prompt_seeding, seeded_processors

log = logging.getLogger(__name__)


class LogitExtrapolationProcessor:
    """Replaces the aligned model's next-token logits by (1 + α)·ℓ_aligned − α·ℓ_sft.

    One instance per batch: it owns the SFT model's KV cache for that batch. The first call sees
    the (left-padded) prompts and runs the SFT model over them with ``attention_mask``; every later
    call feeds only the newest token, extending the mask with ones as ``generate`` does for the
    aligned model (finished rows keep receiving pad tokens; their answers are already cut at EOS).
    """

    def __init__(self, sft_model, alpha: float, attention_mask):
        self.sft = sft_model
        self.alpha = float(alpha)
        self.mask = attention_mask
        self.cache = None
        self.seen = 0

    def _sft_logits(self, input_ids):
        import torch

        if self.cache is None:
            ids, mask = input_ids, self.mask
            pos = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
        else:
            new = input_ids.shape[1] - self.seen
            ids = input_ids[:, -new:]
            ones = torch.ones((mask_rows := self.mask.shape[0], new), dtype=self.mask.dtype, device=self.mask.device)
            self.mask = torch.cat([self.mask, ones], dim=1)
            mask = self.mask
            pos = (mask.long().cumsum(-1) - 1)[:, -new:].reshape(mask_rows, new)
        out = self.sft(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=self.cache, use_cache=True)
        self.cache = out.past_key_values
        self.seen = input_ids.shape[1]
        return out.logits[:, -1, :].float()

    def __call__(self, input_ids, scores):
        sft = self._sft_logits(input_ids)
        if sft.shape[-1] != scores.shape[-1]:
            raise ValueError(f"SFT logits have {sft.shape[-1]} entries, aligned logits {scores.shape[-1]}")
        return (1.0 + self.alpha) * scores - self.alpha * sft.to(scores.dtype)


def _check_same_vocab(aligned_tok, sft_tok, aligned_dir: Path, sft_dir: Path) -> None:
    if aligned_tok.get_vocab() != sft_tok.get_vocab():
        raise ValueError(f"tokenizers of {aligned_dir} and {sft_dir} differ: logit extrapolation needs one vocabulary")


def _load(model_dir: Path, dev: str):
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.float32 if dev == "cpu" else "auto"  # as generate.py: fp32 on CPU keeps greedy paths stable
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(dev).eval()


def _processors(decoding: Mapping[str, Any], sft, alpha: float, input_ids, attention_mask, batch, idx, dev: str):
    from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

    procs: list[Any] = [LogitExtrapolationProcessor(sft, alpha, attention_mask)]
    if decoding["repetition_penalty"] != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(decoding["repetition_penalty"]))
    if decoding["presence_penalty"] or decoding["frequency_penalty"]:
        procs.append(
            PresenceFrequencyPenaltyLogitsProcessor(
                decoding["presence_penalty"], decoding["frequency_penalty"], input_ids.shape[1]
            )
        )
    procs += seeded_processors(decoding, [str(p.get("id", i)) for p, i in zip(batch, idx)], dev)
    return LogitsProcessorList(procs)


def _answer(tok, prompt: Mapping[str, Any], index: int, row: list[int], eos: set[int], generator: str) -> dict:
    """One generation record from the new token ids: cut at the first EOS (counted in n_tokens)."""
    stop_at = next((k for k, t in enumerate(row) if t in eos), None)
    if stop_at is None:
        kept, n_tokens, reason = row, len(row), "length"
    else:
        kept, n_tokens, reason = row[:stop_at], stop_at + 1, "stop"
    return _record(prompt, index, tok.decode(kept, skip_special_tokens=True), generator, n_tokens, reason)


def generate_logit_extrapolated(
    aligned_dir: str | Path,
    sft_dir: str | Path,
    alpha: float,
    prompts: list[dict],
    decoding: dict,
    *,
    batch_size: int = 16,
    generator: str | None = None,
    device: str = "auto",
) -> list[dict]:
    """Answer every prompt with logit extrapolation of (``sft_dir`` → ``aligned_dir``) at ``alpha``.

    Same contract as :func:`workflow_scripts.generate.generate` (records in the prompts' order,
    batching by length, answers independent of batching: per-prompt seeds); Hugging Face backend
    only (vLLM has no two-model decoding).

    It stays one function on purpose: loading both models, the batch loop and the records are one
    flat sequence that mirrors ``generate._generate_hf``, and reads best side by side with it.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import GenerationConfig

    aligned_dir, sft_dir = Path(aligned_dir), Path(sft_dir)
    for d in (aligned_dir, sft_dir):
        if not d.is_dir():
            raise ValueError(f"model folder {d} does not exist")
    if not math.isfinite(alpha):
        raise ValueError(f"logit extrapolation α must be finite, got {alpha}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    decoding = resolve_decoding(decoding)
    if not prompts:
        return []
    _check_prompts(prompts)
    generator = generator or f"{aligned_dir.name}+logit{format_alpha(alpha)}"
    dev = pick_device(device)
    tok = _load_tokenizer(aligned_dir)
    _check_same_vocab(tok, _load_tokenizer(sft_dir), aligned_dir, sft_dir)
    aligned, sft = _load(aligned_dir, dev), _load(sft_dir, dev)
    eos_ids = eos_token_ids(tok, aligned.config, getattr(aligned, "generation_config", None))
    base = {"eos_token_id": eos_ids, "pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id}
    aligned.generation_config = GenerationConfig(**base)
    per_row = per_prompt_seeding(decoding)  # per-prompt seeds, as generate.py (sampled by the last processor)
    kwargs = hf_generation_kwargs(dict(decoding, do_sample=False) if per_row else decoding)
    kwargs = {k: v for k, v in kwargs.items() if k != "repetition_penalty"}
    gen_config = GenerationConfig(**base, **kwargs)
    encoded = [render_prompt_ids(tok, p["instruction"], chat_template=decoding["chat_template"]) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    log.info("logit extrapolation α=%s of %s over %s: %d prompts", alpha, aligned_dir, sft_dir, len(prompts))
    results: list[dict[str, Any] | None] = [None] * len(prompts)
    eos_set = set(eos_ids)
    bar = tqdm(total=len(prompts), desc=f"generate {generator}", unit="prompt")
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = tok.pad({"input_ids": [encoded[i] for i in idx]}, padding=True, return_tensors="pt")
        input_ids, mask = batch["input_ids"].to(dev), batch["attention_mask"].to(dev)
        with torch.inference_mode():
            out = aligned.generate(
                input_ids=input_ids,
                attention_mask=mask,
                generation_config=gen_config,
                logits_processor=_processors(
                    decoding, sft, alpha, input_ids, mask, [prompts[i] for i in idx], idx, dev
                ),
            )
        for row, i in zip(out[:, input_ids.shape[1] :].tolist(), idx):
            results[i] = _answer(tok, prompts[i], i, row, eos_set, generator)
        bar.update(len(idx))
    bar.close()
    return results  # type: ignore[return-value]


def run_logit_generation(
    inputs: Mapping[str, str], alpha: float, decoding: Mapping[str, Any], out: str, *, generator: str
) -> None:
    """The ``generate_logit`` rule: ``inputs`` has ``aligned``, ``sft`` and ``prompts`` paths.

    The decoding spec is the one weight-extrapolated variants get (so the two kinds are compared
    under the same decoding); its ``backend`` is ignored (two-model decoding runs on Hugging Face).
    """
    spec = dict(decoding)
    if spec.pop("backend", "auto") not in ("auto", "hf"):
        log.info("logit extrapolation runs on the Hugging Face backend (the configured backend is for one model)")
    batch_size = int(spec.pop("batch_size", 16))
    prompts = read_prompts(inputs["prompts"])
    recs = generate_logit_extrapolated(
        inputs["aligned"], inputs["sft"], alpha, prompts, spec, batch_size=batch_size, generator=generator
    )
    write_generations(recs, out)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--aligned", required=True, help="aligned checkpoint folder")
    ap.add_argument("--sft", required=True, help="SFT checkpoint folder (same tokenizer)")
    ap.add_argument("--alpha", required=True, type=float)
    ap.add_argument("--prompts", required=True, help="prompt set (JSONL or JSON list)")
    ap.add_argument("--out", required=True, help="output model_outputs JSON")
    ap.add_argument("--decoding", default=None, help="JSON object: decoding preset and overrides")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    ap.add_argument("--log", default=None, help="also log to this file")
    args = ap.parse_args(argv)
    setup_logging(args.log)
    spec = json.loads(args.decoding) if args.decoding else {}
    if not isinstance(spec, dict):
        raise ValueError("--decoding must be a JSON object")
    prompts = read_prompts(args.prompts)[: args.limit]
    recs = generate_logit_extrapolated(
        args.aligned, args.sft, args.alpha, prompts, spec, batch_size=args.batch_size, device=args.device
    )
    write_generations(recs, args.out)
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
