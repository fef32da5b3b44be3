"""Generation for vision-language checkpoints (HF backend): image + chat template through the processor.

Same record format and decoding dict as :mod:`workflow_scripts.generate`; the difference is the
input: each prompt's image (``image`` path relative to the set, or a shapes-world ``scene`` drawn on
load, :func:`workflow_scripts.multimodal.load_image`) goes through the checkpoint's processor with
the user turn ``[image, text]`` rendered by its chat template, the same text the VLM trainer builds.
Records keep the image reference (``image`` / ``scene``), so metrics can find the gold objects.
vLLM's multimodal path is not wired here; this backend runs on CPU and GPU.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .common import pick_device
from .decoding import PresenceFrequencyPenaltyLogitsProcessor, hf_generation_kwargs, resolve_decoding
from .generate import _check_prompts, _record, eos_token_ids
from .multimodal import image_size, load_image, user_turn

log = logging.getLogger(__name__)


def generate_vlm(
    model_dir: str | Path,
    prompts: Sequence[Mapping[str, Any]],
    decoding: Mapping[str, Any] | None = None,
    *,
    generator: str,
    batch_size: int = 32,
    device: str = "auto",
    image_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Answer every prompt about its image; returns generation records in prompt order."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForImageTextToText, AutoProcessor, GenerationConfig, LogitsProcessorList, set_seed

    _check_prompts(prompts)
    dec = resolve_decoding(dict(decoding or {}))
    dev = pick_device(device)
    processor = AutoProcessor.from_pretrained(model_dir)
    tok = processor.tokenizer
    tok.padding_side = "left"
    dtype = torch.float32 if dev == "cpu" else "auto"
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=dtype).to(dev).eval()
    eos_ids = eos_token_ids(tok, model.config, getattr(model, "generation_config", None))
    gen_config = GenerationConfig(
        eos_token_id=eos_ids, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, **hf_generation_kwargs(dec)
    )
    if dec["seed"] is not None:
        set_seed(dec["seed"])
    size = image_size(processor)
    eos_set = set(eos_ids)
    results: list[dict[str, Any]] = []
    for start in tqdm(range(0, len(prompts), batch_size), desc=f"generate {generator}", unit="batch"):
        batch = prompts[start : start + batch_size]
        texts = [processor.apply_chat_template(user_turn(p["instruction"]), add_generation_prompt=True) for p in batch]
        images = [load_image(p, image_dir, size) for p in batch]
        enc = processor(images=images, text=texts, padding=True, return_tensors="pt", add_special_tokens=False).to(dev)
        procs = []
        if dec["presence_penalty"] or dec["frequency_penalty"]:
            procs.append(
                PresenceFrequencyPenaltyLogitsProcessor(
                    dec["presence_penalty"], dec["frequency_penalty"], enc["input_ids"].shape[1]
                )
            )
        with torch.inference_mode():
            out = model.generate(**enc, generation_config=gen_config, logits_processor=LogitsProcessorList(procs))
        for k, row in enumerate(out[:, enc["input_ids"].shape[1] :].tolist()):
            stop = next((j for j, t in enumerate(row) if t in eos_set), None)
            kept, n, reason = (row, len(row), "length") if stop is None else (row[:stop], stop + 1, "stop")
            results.append(
                _record(batch[k], start + k, tok.decode(kept, skip_special_tokens=True), generator, n, reason)
            )
    return results
