"""Vision-language pieces shared by training and generation: images of records, chat messages with
image parts, the demo's tiny LLaVA, freezing by parameter-name substring, LLM-only LoRA targets.

Why these live together: the train and generate stages must render the same image for a record and
the same chat-template text around it, or a model is evaluated on inputs it was not trained on.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

IMAGE_TOKEN = "<image>"
# Align-Anything's working DPO setting: vision tower and projector frozen, the LLM trained.
DEFAULT_FREEZE = ("vision_tower", "multi_modal_projector")
LLM_LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"

# The demo template with image parts: a content list renders its text parts first, then each image
# part as the image token that the processor expands to one token per image feature. Text before
# image because a causal LM can only compare the cells with the question when the cells come after
# it (image-first cost the tiny SFT model recall: 0.43 → 0.58 sampled on 40 scenes, one seed).
VLM_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
    "{% endif %}"
    "{{ '<|end|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)
# The frozen random vision tower sees a white background as zero input (mean 1, std 0.5), so an
# empty cell gives the same feature in every image and a shape's cell differs from it by the shape
# alone (with CLIP's mean/std the background dominated every cell's feature).
IMAGE_MEAN, IMAGE_STD = [1.0, 1.0, 1.0], [0.5, 0.5, 0.5]


def image_size(processor) -> int:
    """Side of the square image the processor feeds the vision tower."""
    crop = getattr(processor.image_processor, "crop_size", None) or {}
    return int(crop.get("height") or processor.image_processor.size.get("shortest_edge"))


def load_image(record: Mapping[str, Any], base_dir: str | Path | None, size: int):
    """The record's image: ``image`` = a path relative to its set's folder (or an image already
    decoded, as hub datasets give it), or ``scene`` = a shapes-world scene rendered on load."""
    from PIL import Image

    if isinstance(record.get("image"), Image.Image):
        return record["image"].convert("RGB")
    if "image" in record:
        path = Path(base_dir or ".") / record["image"]
        if not path.is_file():
            raise ValueError(f"record {record.get('id', '?')}: image {path} does not exist")
        return Image.open(path).convert("RGB")
    if "scene" in record:
        from .records import record_field
        from .world.shapes import render_scene

        return render_scene(record_field(record, "scene"), size)
    raise ValueError(f"record {record.get('id', '?')} has neither an 'image' path nor a 'scene'")


def user_turn(text: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]


def assistant_turn(text: str) -> list[dict]:
    return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]


def apply_freeze(model, patterns: Sequence[str]) -> dict[str, int]:
    """Turn ``requires_grad`` off on every parameter whose name contains one of ``patterns``
    (Align-Anything's semantics); every entry must match at least one parameter."""
    counts = {}
    names = [n for n, _ in model.named_parameters()]
    for pat in patterns:
        hit = [n for n in names if pat in n]
        if not hit:
            raise ValueError(
                f"freeze entry {pat!r} matches no parameter (names look like {names[0]!r} … {names[-1]!r})"
            )
        counts[pat] = len(hit)
    n_frozen = n_total = 0
    for n, p in model.named_parameters():
        if any(pat in n for pat in patterns):
            p.requires_grad_(False)
            n_frozen += p.numel()
        n_total += p.numel()
    return {"entries": counts, "frozen_params": n_frozen, "trainable_params": n_total - n_frozen}


def lora_targets(lora: Mapping[str, Any]) -> Any:
    """``target_modules`` for a VLM: the LLM's projections unless the config names its own (then
    it may also adapt the vision tower and the projector, which is logged)."""
    if "target_modules" not in lora:
        return LLM_LORA_TARGETS
    log.warning("lora target_modules %r may also adapt the vision tower and the projector", lora["target_modules"])
    return lora["target_modules"]


def tiny_llava(tokenizer_dir: str | Path, out: str | Path, *, text: dict, vision: dict, seed: int = 0) -> Path:
    """Save a seeded tiny LLaVA (CLIP vision tower + Llama) with its processor into ``out``.

    ``CLIPImageProcessorPil`` because the torchvision-backed processor is not installed; the
    image token is added to the world tokenizer.
    """
    import torch
    from transformers import (
        AutoTokenizer,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )
    from transformers.models.clip import CLIPImageProcessorPil

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tok.add_tokens([IMAGE_TOKEN], special_tokens=True)
    tok.chat_template = VLM_CHAT_TEMPLATE
    size, patch = int(vision.get("image_size", 32)), int(vision.get("patch_size", 8))
    ip = CLIPImageProcessorPil(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_mean=IMAGE_MEAN,
        image_std=IMAGE_STD,
    )
    proc = LlavaProcessor(
        image_processor=ip,
        tokenizer=tok,
        patch_size=patch,
        vision_feature_select_strategy="default",
        chat_template=VLM_CHAT_TEMPLATE,
        num_additional_image_tokens=1,
    )
    special = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    cfg = LlavaConfig(
        vision_config=CLIPVisionConfig(**{"image_size": size, "patch_size": patch, **vision}),
        text_config=LlamaConfig(vocab_size=len(tok), **special, **text),
        image_token_id=tok.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(cfg)
    model.generation_config.update(**special)
    out = Path(out)
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return out


def is_vlm_folder(path: str | Path) -> bool:
    """Whether a checkpoint folder holds a model with a vision config (LLaVA-style)."""
    import json

    cfg = json.loads((Path(path) / "config.json").read_text())
    return "vision_config" in cfg


def strip_image_token(text: str) -> str:
    return re.sub(re.escape(IMAGE_TOKEN), "", text)
