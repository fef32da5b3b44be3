"""The ``compose`` source: a LLaVA-style model built from a vision encoder and a causal LM checkpoint.

Why: the ExPO reproduction report's model (CLIP ViT-B/16 + open_llama_3b_v2 with a linear projector)
exists on no hub; it is two pretrained checkpoints joined by a fresh projector and then trained
(projector first, as LLaVA does). Building it as an ordinary ``LlavaForConditionalGeneration``
folder lets every later stage (train, extrapolate, generate) treat it like any other VLM.

Spec (the config's model entry plus the two folders the workflow resolved)::

    {"source": "compose", "vision": "clip", "language": "open_llama", "projector_hidden_act": "linear",
     "projector_layers": 1, "vision_feature_layer": -2, "vision_feature_select_strategy": "default",
     "seed": 0, "dtype": "bfloat16", "vision_dir": "results/<exp>/checkpoints/clip", "language_dir": "..."}

What is built, and why so:

* The vision tower is the vision encoder's own model class (a CLIP vision model, or the vision part
  of a full CLIP checkpoint: ``CLIPVisionModel.from_pretrained`` takes the ``vision_model`` tensors
  and ignores the text tower), the language model and head are the causal LM's; both are moved into
  the LLaVA skeleton as modules, so their tensors are the sources' bit for bit. A source missing
  tensors the class needs is an error (transformers would initialise them randomly and only warn).
* The projector is fresh: ``LlavaMultiModalProjector`` built under ``torch.manual_seed(seed)``, i.e.
  PyTorch's default ``nn.Linear`` init, as LLaVA's ``build_vision_projector`` leaves it.
  LLaVA's projector is always two linear layers with the activation between them;
  ``projector_hidden_act: linear`` makes the activation the identity. ``projector_layers: 1`` is the
  report's single linear layer: ``linear_2`` starts as the identity (weight I, bias 0), so the
  projector computes ``linear_1`` alone; freezing ``multi_modal_projector.linear_2`` in training
  keeps it so (the folder still loads with ``from_pretrained``: no custom class).
* The processor: the vision side's image processor (the PIL backend: torchvision is not installed),
  the LM's tokenizer with an ``<image>`` token added (embeddings resized, the new rows seeded) and a
  pad token (the unk token, as LLaVA does for Vicuna, else EOS), and a LLaVA-1.5 chat template with
  image parts. The number of image tokens per image is measured with one forward pass of the tower.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..common import atomic_dir, read_json
from .folder import _finish_record, describe_folder, validate_folder
from .spec import ANNOTATION_KEYS, SOURCE_FILE, CheckpointError

log = logging.getLogger(__name__)

IMAGE_TOKEN = "<image>"
COMPOSE_DEFAULTS: dict[str, Any] = {
    "projector_hidden_act": "gelu",
    "projector_layers": 2,
    "vision_feature_layer": -2,
    "vision_feature_select_strategy": "default",
    "seed": 0,
    "dtype": "auto",
}
_REQUIRED = ("vision", "language", "vision_dir", "language_dir")
_ACTS = ("linear", "gelu", "quick_gelu", "relu", "silu")
_DTYPES = ("auto", "float32", "bfloat16", "float16")

# LLaVA-1.5's conversation format ("USER: <image>\n… ASSISTANT: …</s>") with image parts before the
# text, the assistant turn closed by EOS (the trainers train the answer up to and including it) and
# string contents accepted for text-only turns.
LLAVA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ 'USER: ' }}{% elif message['role'] == 'assistant' %}{{ 'ASSISTANT: ' }}"
    "{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}{{ '<image>\n' }}{% endif %}{% endfor %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}"
    "{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% else %}{{ ' ' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def is_compose_spec(spec: Any) -> bool:
    return isinstance(spec, dict) and spec.get("source") == "compose"


def normalize_compose_spec(spec: dict) -> dict:
    """Validate a compose spec and fill its defaults (unknown keys are errors, like every source)."""
    allowed = set(COMPOSE_DEFAULTS) | set(_REQUIRED) | {"source"} | ANNOTATION_KEYS
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise CheckpointError(
            f"compose source: unknown key(s) {unknown} (allowed: {sorted(allowed - ANNOTATION_KEYS)})"
        )
    missing = [k for k in _REQUIRED if not spec.get(k)]
    if missing:
        raise CheckpointError(f"compose source: {missing} required")
    out = {"source": "compose", **{k: spec[k] for k in _REQUIRED}}
    out.update({k: spec.get(k, v) for k, v in COMPOSE_DEFAULTS.items()})
    if out["projector_hidden_act"] not in _ACTS:
        raise CheckpointError(
            f"compose source: projector_hidden_act must be one of {_ACTS}, got {out['projector_hidden_act']!r}"
        )
    if out["projector_layers"] not in (1, 2):
        raise CheckpointError(f"compose source: projector_layers must be 1 or 2, got {out['projector_layers']!r}")
    if out["projector_layers"] == 1 and out["projector_hidden_act"] != "linear":
        raise CheckpointError(
            "compose source: projector_layers 1 (one linear layer) needs projector_hidden_act: linear"
        )
    if out["vision_feature_select_strategy"] not in ("default", "full"):
        raise CheckpointError("compose source: vision_feature_select_strategy must be 'default' or 'full'")
    if out["dtype"] not in _DTYPES:
        raise CheckpointError(f"compose source: dtype must be one of {_DTYPES}, got {out['dtype']!r}")
    return out


def materialize_compose(spec: dict, out: Path) -> dict:
    """Build the composed LLaVA folder at ``out`` (atomic); return its ``source.json`` record."""
    out, spec = Path(out), normalize_compose_spec(spec)
    if _complete(out, spec):
        log.info("%s is already composed for this spec; nothing to do", out)
        return read_json(out / SOURCE_FILE)
    vdir, ldir = Path(spec["vision_dir"]), Path(spec["language_dir"])
    validate_folder(vdir, where=f"compose vision model {spec['vision']!r} ({vdir})")
    validate_folder(ldir, where=f"compose language model {spec['language']!r} ({ldir})")
    model, processor, meta = compose_llava(spec)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        record = {
            "spec": spec,
            "kind": "compose",
            **meta,
            "weights_format": "safetensors",
            "files": describe_folder(tmp),
        }
        _finish_record(record, tmp)
    log.info("composed %s + %s into %s (%s)", spec["vision"], spec["language"], out, meta)
    return record


def _complete(out: Path, spec: dict) -> bool:
    try:
        rec = read_json(out / SOURCE_FILE)
    except (OSError, ValueError):
        return False
    files_ok = all((out / f["name"]).is_file() and (out / f["name"]).stat().st_size == f["size"] for f in rec["files"])
    return rec.get("spec") == spec and files_ok


def _dtype(spec: dict, lm_config: dict):
    import torch

    name = spec["dtype"]
    if name == "auto":
        name = str(lm_config.get("dtype") or lm_config.get("torch_dtype") or "float32").replace("torch.", "")
    return getattr(torch, name)


def _load_checked(cls, folder: Path, dtype, where: str):
    """``cls.from_pretrained`` that refuses a folder lacking tensors of ``cls`` (they would be random)."""
    model, info = cls.from_pretrained(folder, dtype=dtype, output_loading_info=True)
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise CheckpointError(
            f"{where} ({folder}) lacks {len(missing)} tensor(s) of {cls.__name__}, e.g. {missing[:3]}"
        )
    return model


def load_vision(folder: Path, dtype, where: str):
    """The vision encoder: a vision model folder, or the vision part of a dual-encoder (CLIP) folder."""
    from transformers import AutoConfig, AutoModel

    cfg = AutoConfig.from_pretrained(folder)
    vcfg = getattr(cfg, "vision_config", None) or cfg
    if not hasattr(vcfg, "patch_size"):
        raise CheckpointError(f"{where} ({folder}) is not a vision encoder: {type(vcfg).__name__} has no patch_size")
    try:
        cls = AutoModel._model_mapping[type(vcfg)]
    except KeyError:
        raise CheckpointError(f"{where} ({folder}): no vision model class for config {type(vcfg).__name__}") from None
    return _load_checked(cls, folder, dtype, where)


def _tokenizer(folder: Path):
    """The LM's tokenizer with the image token, a pad token and the LLaVA chat template."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    if IMAGE_TOKEN not in tok.get_vocab():
        tok.add_tokens([IMAGE_TOKEN], special_tokens=True)
    if tok.pad_token is None:
        tok.pad_token = tok.unk_token if tok.unk_token is not None else tok.eos_token
    if tok.eos_token is None:
        raise CheckpointError(f"compose language model {folder}: the tokenizer has no eos_token")
    tok.chat_template = LLAVA_CHAT_TEMPLATE
    return tok


def _image_tokens(vision, image_processor, strategy: str) -> tuple[int, int, int]:
    """(side, patch size, extra tokens beyond the patches), from one forward pass of the tower."""
    import torch
    from PIL import Image

    crop = getattr(image_processor, "crop_size", None) or {}
    side = int(crop.get("height") or image_processor.size["shortest_edge"])
    pixels = image_processor(images=[Image.new("RGB", (side, side))], return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        hidden = vision(pixels.to(vision.dtype), output_hidden_states=True).hidden_states[-1]
    patch = int(vision.config.patch_size)
    extra = hidden.shape[1] - (side // patch) ** 2
    if strategy == "default" and extra < 1:
        raise CheckpointError(
            "compose source: vision_feature_select_strategy 'default' drops a CLS token the tower lacks"
        )
    return side, patch, extra


def _load_parts(spec: dict):
    """The vision tower, the causal LM, the image processor, the tokenizer and the dtype of ``spec``."""
    from transformers import AutoImageProcessor, AutoModelForCausalLM

    vdir, ldir = Path(spec["vision_dir"]), Path(spec["language_dir"])
    dtype = _dtype(spec, read_json(ldir / "config.json"))
    vision = load_vision(vdir, dtype, f"compose vision model {spec['vision']!r}")
    try:
        lm = _load_checked(AutoModelForCausalLM, ldir, dtype, f"compose language model {spec['language']!r}")
    except ValueError as exc:
        if isinstance(exc, CheckpointError):
            raise
        first = str(exc).splitlines()[0]
        raise CheckpointError(
            f"compose language model {spec['language']!r} ({ldir}) is not a causal LM: {first}"
        ) from None
    try:
        image_processor = AutoImageProcessor.from_pretrained(vdir, backend="pil")
    except OSError as exc:
        raise CheckpointError(f"compose vision model {spec['vision']!r} ({vdir}): no image processor ({exc})") from None
    return vision, lm, image_processor, _tokenizer(ldir), dtype


def _projector(cfg, spec: dict, dtype):
    """A fresh projector, PyTorch's default init under the spec's seed; ``projector_layers: 1``
    makes ``linear_2`` the identity so the projector is ``linear_1`` alone."""
    import torch
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

    torch.manual_seed(int(spec["seed"]))
    projector = LlavaMultiModalProjector(cfg)
    if spec["projector_layers"] == 1:
        with torch.no_grad():
            projector.linear_2.weight.copy_(torch.eye(projector.linear_2.weight.shape[0]))
            projector.linear_2.bias.zero_()
    return projector.to(dtype)


def compose_llava(spec: dict):
    """The composed model, its processor, and what the record says about them (``spec`` normalised)."""
    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    vision, lm, image_processor, tok, dtype = _load_parts(spec)
    strategy = spec["vision_feature_select_strategy"]
    side, patch, extra = _image_tokens(vision, image_processor, strategy)
    n_image = (side // patch) ** 2 + extra - (1 if strategy == "default" else 0)
    cfg = LlavaConfig(
        vision_config=vision.config,
        text_config=lm.config,
        image_token_id=tok.convert_tokens_to_ids(IMAGE_TOKEN),
        projector_hidden_act=spec["projector_hidden_act"],
        vision_feature_layer=spec["vision_feature_layer"],
        vision_feature_select_strategy=strategy,
        image_seq_length=n_image,
    )
    with torch.device("meta"):  # the skeleton's own tensors are all replaced below
        model = LlavaForConditionalGeneration(cfg)
    model.model.vision_tower = vision
    model.model.language_model = getattr(lm, lm.base_model_prefix)
    model.lm_head = lm.get_output_embeddings()
    model.model.multi_modal_projector = projector = _projector(cfg, spec, dtype)
    n_vocab = lm.config.vocab_size
    model.resize_token_embeddings(len(tok))  # the new rows are drawn after the projector's, same seed
    model.config.tie_word_embeddings = lm.config.tie_word_embeddings
    model.generation_config = lm.generation_config
    special = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.generation_config.update(**special)
    model.config.pad_token_id = tok.pad_token_id
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=patch,
        vision_feature_select_strategy=strategy,
        chat_template=LLAVA_CHAT_TEMPLATE,
        num_additional_image_tokens=extra,
    )
    meta = {
        "vision_class": type(vision).__name__,
        "language_class": type(lm).__name__,
        "dtype": str(dtype).replace("torch.", ""),
        "image_tokens": n_image,
        "vocab_added": len(tok) - n_vocab,
        "projector_params": sum(p.numel() for p in projector.parameters()),
    }
    return model.eval(), processor, meta
