"""Generation for vision-language checkpoints: image + chat template through the processor.

Same record format and decoding dict as :mod:`workflow_scripts.generate`; the difference is the
input: each prompt's image (``image`` path relative to the set, or a shapes-world ``scene`` drawn on
load, :func:`workflow_scripts.multimodal.load_image`) goes with the user turn ``[image, text]``
rendered by the checkpoint's chat template, the same text the VLM trainer builds. Records keep the
image reference (``image`` / ``scene``), so metrics can find the gold objects.

Backends, chosen as for text (``decoding.backend``: ``auto`` takes vLLM when it is installed and a
CUDA device is visible): ``hf`` runs the processor and ``generate`` (CPU or GPU); ``vllm`` sends
each prompt's rendered text with its image as ``multi_modal_data`` (vLLM expands the image
placeholder itself) and seeds every request from its prompt id, as the text vLLM path does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .common import pick_device
from .decoding import (
    PresenceFrequencyPenaltyLogitsProcessor,
    hf_generation_kwargs,
    resolve_decoding,
    vllm_sampling_kwargs,
)
from .generate import _check_prompts, _record, choose_backend, eos_token_ids
from .multimodal import image_size, load_image, user_turn
from .prompt_encoding import _prompt_id
from .seeded_sampling import prompt_seed

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
    backend: str = "auto",
) -> list[dict[str, Any]]:
    """Answer every prompt about its image; returns generation records in prompt order."""
    _check_prompts(prompts)
    dec = resolve_decoding(dict(decoding or {}))
    if choose_backend(backend) == "vllm":
        return _generate_vllm(Path(model_dir), prompts, dec, generator=generator, image_dir=image_dir)
    return _generate_hf(model_dir, prompts, dec, generator, batch_size, device, image_dir)


def vllm_prompt_text(processor, instruction: str) -> str:
    """The user turn ``[image, text]`` as the chat template renders it, for a text prompt to vLLM:
    the template's BOS text is dropped when the tokenizer adds BOS itself (it would be doubled)."""
    from .train.data import tokenizer_adds_bos

    text = processor.apply_chat_template(user_turn(instruction), add_generation_prompt=True)
    bos = processor.tokenizer.bos_token
    if bos and text.startswith(bos) and tokenizer_adds_bos(processor.tokenizer):
        text = text[len(bos) :]
    return text


def vllm_requests(processor, prompts: Sequence[Mapping[str, Any]], image_dir: str | Path | None) -> list[dict]:
    """vLLM prompts: each rendered user turn with its image in ``multi_modal_data``. An image file
    asked about many times (POPE: ~18 questions per COCO image) is decoded once and shared."""
    size = image_size(processor)
    cache: dict[str, Any] = {}
    out = []
    for p in prompts:
        ref = p.get("image")
        if not isinstance(ref, str):
            image = load_image(p, image_dir, size)
        elif ref in cache:
            image = cache[ref]
        else:
            image = cache[ref] = load_image(p, image_dir, size)
        out.append({"prompt": vllm_prompt_text(processor, p["instruction"]), "multi_modal_data": {"image": image}})
    return out


def _generate_vllm(
    model_dir: Path,
    prompts: Sequence[Mapping[str, Any]],
    dec: dict[str, Any],
    *,
    generator: str,
    image_dir: str | Path | None,
) -> list[dict[str, Any]]:  # pragma: no cover - needs CUDA and vLLM
    from transformers import AutoProcessor, GenerationConfig
    from vllm import LLM, SamplingParams  # lazy: importing vllm initialises CUDA

    processor = AutoProcessor.from_pretrained(model_dir)
    tok = processor.tokenizer
    try:
        gen_cfg = GenerationConfig.from_pretrained(model_dir)
    except OSError:
        gen_cfg = None
    stop_ids = [i for i in eos_token_ids(tok, None, gen_cfg) if i != tok.eos_token_id]
    base = dict(vllm_sampling_kwargs(dec), stop_token_ids=stop_ids or None)
    seed = dec["seed"]
    params = [
        SamplingParams(**dict(base, seed=prompt_seed(seed, _prompt_id(p, i)) if seed is not None else None))
        for i, p in enumerate(prompts)
    ]
    llm = LLM(
        model=str(model_dir), dtype="auto", seed=seed if seed is not None else 0, limit_mm_per_prompt={"image": 1}
    )
    outputs = llm.generate(vllm_requests(processor, prompts, image_dir), params, use_tqdm=True)
    results = []
    for i, (p, o) in enumerate(zip(prompts, outputs)):
        c = o.outputs[0]
        reason = "length" if c.finish_reason == "length" else "stop"
        results.append(_record(p, i, c.text, generator, len(c.token_ids), reason))
    return results


def _generate_hf(
    model_dir: str | Path,
    prompts: Sequence[Mapping[str, Any]],
    dec: dict[str, Any],
    generator: str,
    batch_size: int,
    device: str,
    image_dir: str | Path | None,
) -> list[dict[str, Any]]:
    """The HF backend: processor + ``generate`` in batches (left padding)."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForImageTextToText, AutoProcessor, GenerationConfig, LogitsProcessorList, set_seed

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
