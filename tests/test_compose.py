"""The `compose` model source (a CLIP vision encoder + a causal LM + a fresh projector = a LLaVA folder)
and projector-first SFT on it, on tiny models built on the fly."""

from __future__ import annotations

import json

import pytest
from conftest import make_tiny_llama

from workflow_scripts.checkpoints import CheckpointError, materialize
from workflow_scripts.checkpoints.compose import LLAVA_CHAT_TEMPLATE, normalize_compose_spec

VISION = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=32, patch_size=8
)


def _clip(out, *, full: bool):
    """A tiny CLIP checkpoint: the full dual encoder (``full``) or a CLIP vision model, with its processor."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModel
    from transformers.models.clip import CLIPImageProcessorPil

    torch.manual_seed(1)
    if full:
        text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4)
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=VISION, projection_dim=16))
    else:
        model = CLIPVisionModel(CLIPVisionConfig(**VISION))
    model.save_pretrained(out)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(out)
    return out


def _sentencepiece_tokenizer(out):
    """A tokenizer shipped as a sentencepiece ``tokenizer.model`` only, with an unk and no pad token
    (what open_llama ships)."""
    import io

    import sentencepiece as spm
    from conftest import _tiny_texts

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_tiny_texts()),
        model_writer=buf,
        vocab_size=60,
        model_type="bpe",
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    out.mkdir()
    (out / "tokenizer.model").write_bytes(buf.getvalue())
    cfg = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    (out / "tokenizer_config.json").write_text(json.dumps(cfg))
    return out


@pytest.fixture(scope="module")
def parts(tmp_path_factory, tiny_tokenizer_dir):
    d = tmp_path_factory.mktemp("compose")
    return {
        "clip": _clip(d / "clip", full=True),
        "clip_vision": _clip(d / "clip_vision", full=False),
        "lm": make_tiny_llama(d / "lm", _sentencepiece_tokenizer(d / "sp"), layers=2),
        "lm_bpe": make_tiny_llama(d / "lm_bpe", tiny_tokenizer_dir, layers=2),
        "root": d,
    }


def _spec(parts, vision="clip", language="lm", **kw):
    return {
        "source": "compose",
        "vision": vision,
        "language": language,
        "vision_dir": str(parts[vision]),
        "language_dir": str(parts[language]),
        **kw,
    }


def _state(folder, cls):
    return {k: v for k, v in cls.from_pretrained(folder).state_dict().items()}


@pytest.fixture(scope="module")
def composed(parts):
    out = parts["root"] / "llava"
    rec = materialize(_spec(parts, projector_hidden_act="linear", projector_layers=1, seed=3), out)
    return out, rec


def test_tower_and_lm_tensors_are_the_sources_bit_for_bit(parts, composed):
    import torch
    from transformers import CLIPVisionModel, LlamaForCausalLM, LlavaForConditionalGeneration

    out, rec = composed
    llava = LlavaForConditionalGeneration.from_pretrained(out)
    vision = CLIPVisionModel.from_pretrained(parts["clip"]).state_dict()  # the vision part of a CLIPModel
    tower = llava.model.vision_tower.state_dict()
    assert set(tower) == set(vision) and all(torch.equal(tower[k], vision[k]) for k in vision)
    lm = LlamaForCausalLM.from_pretrained(parts["lm"])
    ours = llava.model.language_model.state_dict()
    for k, v in lm.model.state_dict().items():
        if k == "embed_tokens.weight":  # grown by the <image> row; the old rows unchanged
            assert ours[k].shape[0] == v.shape[0] + 1 and torch.equal(ours[k][: v.shape[0]], v)
        else:
            assert torch.equal(ours[k], v), k
    head, base_head = llava.lm_head.weight, lm.lm_head.weight
    assert torch.equal(head[: base_head.shape[0]], base_head)
    assert rec["kind"] == "compose" and rec["vocab_added"] == 1 and rec["image_tokens"] == 16
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["projector_hidden_act"] == "linear" and cfg["vision_feature_layer"] == -2
    assert cfg["text_config"]["vocab_size"] == base_head.shape[0] + 1
    tok = json.loads((out / "tokenizer_config.json").read_text())
    assert tok["pad_token"] == "<unk>"  # the LM had none: LLaVA pads with unk


def test_projector_is_seeded_and_one_linear_layer(parts, composed):
    import torch
    from transformers import LlavaForConditionalGeneration

    out, _ = composed
    proj = LlavaForConditionalGeneration.from_pretrained(out).model.multi_modal_projector
    assert torch.equal(proj.linear_2.weight, torch.eye(32)) and not proj.linear_2.bias.any()
    x = torch.randn(5, 32)
    assert torch.allclose(proj(x), proj.linear_1(x))  # identity activation, identity second layer
    torch.manual_seed(3)
    fresh = torch.nn.Linear(32, 32)  # PyTorch's default init under the spec's seed
    assert torch.equal(proj.linear_1.weight, fresh.weight)
    other = parts["root"] / "llava_seed4"
    materialize(_spec(parts, projector_hidden_act="linear", projector_layers=1, seed=4), other)
    proj4 = LlavaForConditionalGeneration.from_pretrained(other).model.multi_modal_projector
    assert not torch.equal(proj4.linear_1.weight, proj.linear_1.weight)


def test_reload_gives_identical_logits_and_generate_runs_with_an_image(parts, composed, tmp_path):
    import torch
    from PIL import Image
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from workflow_scripts.checkpoints.compose import compose_llava, normalize_compose_spec
    from workflow_scripts.multimodal import user_turn
    from workflow_scripts.vlm_generate import generate_vlm

    out, _ = composed
    built, _, _ = compose_llava(
        normalize_compose_spec(_spec(parts, projector_hidden_act="linear", projector_layers=1, seed=3))
    )
    loaded = LlavaForConditionalGeneration.from_pretrained(out).eval()
    proc = AutoProcessor.from_pretrained(out)
    img = Image.new("RGB", (40, 40), (200, 30, 30))
    text = proc.apply_chat_template(user_turn("what is this?"), add_generation_prompt=True)
    assert text.startswith(proc.tokenizer.bos_token + "USER: <image>\n") and text.endswith("what is this? ASSISTANT:")
    enc = proc(images=[img], text=[text], return_tensors="pt", add_special_tokens=False)
    assert int((enc["input_ids"] == loaded.config.image_token_id).sum()) == 16
    with torch.inference_mode():
        assert torch.equal(built(**enc).logits, loaded(**enc).logits)
    img.save(tmp_path / "red.png")
    recs = generate_vlm(
        out,
        [{"id": "p0", "instruction": "what is this?", "image": "red.png"}],
        {"preset": "greedy", "max_new_tokens": 4},
        generator="composed",
        device="cpu",
        image_dir=tmp_path,
    )
    assert recs[0]["id"] == "p0" and recs[0]["n_tokens"] >= 1


def test_clip_vision_model_source_gelu_two_layer_projector(parts):
    import torch
    from transformers import CLIPVisionModel, LlavaForConditionalGeneration

    out = parts["root"] / "llava_gelu"
    spec = _spec(parts, vision="clip_vision", language="lm_bpe", vision_feature_select_strategy="full")
    rec = materialize(spec, out)
    llava = LlavaForConditionalGeneration.from_pretrained(out)
    src = CLIPVisionModel.from_pretrained(parts["clip_vision"]).state_dict()
    assert all(torch.equal(llava.model.vision_tower.state_dict()[k], v) for k, v in src.items())
    assert llava.config.projector_hidden_act == "gelu" and rec["image_tokens"] == 17  # CLS kept
    assert not torch.equal(llava.model.multi_modal_projector.linear_2.weight, torch.eye(32))
    assert materialize(spec, out) == rec  # finished for this spec: not rebuilt


def test_bad_specs_fail_with_one_line(parts, tmp_path):
    with pytest.raises(CheckpointError, match="unknown key"):
        normalize_compose_spec({**_spec(parts), "projector": "mlp"})
    with pytest.raises(CheckpointError, match="needs projector_hidden_act: linear"):
        normalize_compose_spec(_spec(parts, projector_layers=1))
    with pytest.raises(CheckpointError, match="is not a vision encoder: LlamaConfig"):
        materialize({**_spec(parts), "vision_dir": str(parts["lm"])}, tmp_path / "x")
    with pytest.raises(CheckpointError, match="'lm' .* is not a causal LM"):
        materialize({**_spec(parts), "language_dir": str(parts["clip"])}, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    assert "ASSISTANT:" in LLAVA_CHAT_TEMPLATE


def test_projector_first_sft_then_instruction_sft(parts, composed, tmp_path):
    """LLaVA's stage 1 (only the projector trains; one linear layer stays one), stage 2 from it, and
    the LLM-only extrapolation of the stage-2 pair."""
    import torch
    from safetensors.torch import load_file

    from workflow_scripts.common import write_jsonl
    from workflow_scripts.train.vlm import train_vlm
    from workflow_scripts.world import shapes as S

    out, _ = composed
    write_jsonl(tmp_path / "sft.jsonl", S.build_shapes_world(seed=0, n_sft=8, n_pref=2, n_eval=1, n_dev=1)["sft"])
    fast = dict(method="sft", lr=1e-2, epochs=1, batch_size=8, max_length=128, threads=1, device="cpu")
    stage1 = [
        "vision_tower",
        "language_model",
        "lm_head",
        "multi_modal_projector.linear_2",
    ]
    man = train_vlm(
        out, tmp_path / "sft.jsonl", tmp_path / "s1", freeze=stage1, weight_decay=0.01, warmup_ratio=0.03, **fast
    )
    before, after = load_file(out / "model.safetensors"), load_file(tmp_path / "s1" / "model.safetensors")
    changed = sorted(n for n in before if not torch.equal(before[n], after[n]))
    assert changed and all("multi_modal_projector.linear_1" in n for n in changed)
    assert man["hyperparameters"]["weight_decay"] == 0.01 and man["hyperparameters"]["warmup_ratio"] == 0.03
    train_vlm(
        tmp_path / "s1",
        tmp_path / "sft.jsonl",
        tmp_path / "s2",
        freeze=["vision_tower", "multi_modal_projector.linear_2"],
        **fast,
    )
    s2 = load_file(tmp_path / "s2" / "model.safetensors")
    moved = {n for n in after if not torch.equal(after[n], s2[n])}
    assert any("language_model" in n for n in moved) and any("linear_1" in n for n in moved)
    assert not any("vision_tower" in n or "linear_2" in n for n in moved)
    # the stage-2 pair extrapolates LLM-only: the frozen tower has Δ ≡ 0, the folder loads as LLaVA
    from transformers import LlavaForConditionalGeneration

    from workflow_scripts.extrapolate import extrapolate
    from workflow_scripts.scheme_components import with_component_defaults

    llm_only = with_component_defaults(2.0, {"vision_tower": 0, "multi_modal_projector": 0})
    m = extrapolate(tmp_path / "s1", tmp_path / "s2", tmp_path / "x", llm_only)
    assert m["zero_delta_components"] == ["vision_tower"]
    x = load_file(tmp_path / "x" / "model.safetensors")
    assert all(torch.equal(x[n], s2[n]) for n in s2 if "language_model" not in n and "lm_head" not in n)
    LlavaForConditionalGeneration.from_pretrained(tmp_path / "x")
