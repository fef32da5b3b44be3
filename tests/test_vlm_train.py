"""VLM training on a tiny LLaVA and the shapes world: freezing, LLM-only LoRA merged, DPO/DDPO."""

from __future__ import annotations

import json

import pytest

from tests.trl_args import cpu_dpo_config
from workflow_scripts.common import write_jsonl
from workflow_scripts.multimodal import apply_freeze, tiny_llava
from workflow_scripts.train.vlm import check_precision, train_vlm
from workflow_scripts.world import shapes as S

TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, projection_dim=32)
FAST = dict(lr=1e-3, epochs=1, batch_size=8, max_length=64, threads=1, device="cpu")


@pytest.fixture(scope="module")
def vlm_world(tmp_path_factory):
    from workflow_scripts.world.tokenizer import train_tokenizer

    d = tmp_path_factory.mktemp("vlm")
    w = S.build_shapes_world(seed=0, n_sft=8, n_pref=8, n_eval=2, n_dev=2)
    texts = [f"{r['prompt']} {r['completion']}" for r in w["sft"]] + [r["rejected"] for r in w["prefs"]]
    train_tokenizer(texts * 4, vocab_size=120).save_pretrained(d / "tok")
    tiny_llava(d / "tok", d / "base", text=TEXT, vision=VISION, seed=0)
    write_jsonl(d / "sft.jsonl", w["sft"])
    write_jsonl(d / "prefs.jsonl", w["prefs"])
    return d


def _tensors(folder):
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def _split(names):
    frozen = [n for n in names if "vision_tower" in n or "multi_modal_projector" in n]
    return frozen, [n for n in names if n not in frozen]


def test_freeze_entry_matching_nothing_fails(vlm_world, tmp_path):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(vlm_world / "base")
    with pytest.raises(ValueError, match="freeze entry 'vision_encoder' matches no parameter"):
        apply_freeze(model, ["vision_tower", "vision_encoder"])
    with pytest.raises(ValueError, match="freeze entry 'mm_proj'"):
        train_vlm(vlm_world / "base", vlm_world / "sft.jsonl", tmp_path / "o", method="sft", freeze=["mm_proj"], **FAST)
    assert not (tmp_path / "o").exists()


def test_fp16_weights_with_fp16_amp_refused():
    with pytest.raises(ValueError, match="Attempting to unscale FP16 gradients"):
        check_precision("float16", "fp16")
    check_precision("float16", "bf16")
    check_precision("float32", "fp16")


def test_sft_frozen_vision_and_projector_change_by_exactly_zero(vlm_world):
    out = vlm_world / "sft"
    man = train_vlm(vlm_world / "base", vlm_world / "sft.jsonl", out, method="sft", **FAST)
    before, after = _tensors(vlm_world / "base"), _tensors(out)
    assert set(before) == set(after)
    frozen, trained = _split(before)
    assert frozen and all(before[n].equal(after[n]) for n in frozen)
    assert any(not before[n].equal(after[n]) for n in trained)
    assert man["freeze"]["entries"] == {
        "vision_tower": sum("vision_tower" in n for n in before),
        "multi_modal_projector": sum("multi_modal_projector" in n for n in before),
    }
    assert man["freeze"]["frozen_params"] > 0 and man["steps"] >= 1


@pytest.mark.parametrize("method", ["dpo", "ddpo"])
def test_preference_lora_on_the_llm_merged(vlm_world, method):
    from transformers import AutoModelForImageTextToText

    base = vlm_world / "sft"
    if not base.exists():
        train_vlm(vlm_world / "base", vlm_world / "sft.jsonl", base, method="sft", **FAST)
    out = vlm_world / f"{method}_lora"
    ddpo = {"gamma": 2.0, "average": False} if method == "ddpo" else None
    man = train_vlm(
        base,
        vlm_world / "prefs.jsonl",
        out,
        method=method,
        ddpo=ddpo,
        fraction=1.0,
        beta=0.1,
        lora={"r": 4, "lora_alpha": 8},
        **FAST,
    )
    before, after = _tensors(base), _tensors(out)
    assert set(before) == set(after)  # merged: the base's tensor names, no lora_ keys
    frozen, trained = _split(before)
    assert all(before[n].equal(after[n]) for n in frozen)
    changed = [n for n in trained if not before[n].equal(after[n])]
    assert changed and all("language_model" in n and "proj" in n for n in changed)
    assert (out / "lora_adapter").is_dir()
    hp = man["hyperparameters"]
    assert hp["ddpo_gamma"] == 2.0 if method == "ddpo" else hp["loss_type"] == "sigmoid"
    assert "rewards/accuracies" in (out / "training_history.csv").read_text()
    AutoModelForImageTextToText.from_pretrained(out)
    assert json.loads((out / "training_manifest.json").read_text())["modality"] == "image"


def test_generation_through_the_processor_keeps_the_image_reference(vlm_world):
    from workflow_scripts.hallucination import evaluate_records
    from workflow_scripts.records import record_field
    from workflow_scripts.vlm_generate import generate_vlm

    w = S.build_shapes_world(seed=0, n_sft=8, n_pref=8, n_eval=2, n_dev=2)
    dec = dict(preset="greedy", max_new_tokens=6)
    recs = generate_vlm(vlm_world / "base", w["eval"], dec, generator="base", device="cpu", batch_size=4)
    assert [r["id"] for r in recs] == [p["id"] for p in w["eval"]]
    assert all(record_field(r, "scene") == p["scene"] for r, p in zip(recs, w["eval"]))
    assert all(r["finish_reason"] in ("stop", "length") for r in recs)
    again = generate_vlm(vlm_world / "base", w["eval"], dec, generator="base", device="cpu", batch_size=3)
    assert [r["output"] for r in again] == [r["output"] for r in recs]  # batching does not change greedy answers
    assert "chair" in evaluate_records(recs, S.shapes_vocab())
    with pytest.raises(ValueError, match="neither an 'image' path nor a 'scene'"):
        generate_vlm(vlm_world / "base", [{"id": "x", "instruction": "describe the image."}], dec, generator="b")


def test_ddpo_segments_map_through_the_vision_collator(vlm_world, tmp_path):
    """Explicit segments on image rows: TRL's vision rendering is reproduced token for token, and
    spans that mark the corrected word give the diff's weights."""
    from datasets import Dataset
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from workflow_scripts.train.ddpo import make_ddpo_trainer_class, segment_weights
    from workflow_scripts.train.ddpo_segments import FLAGS_KEY
    from workflow_scripts.train.vlm import _image_rows

    w = S.build_shapes_world(seed=0, n_sft=8, n_pref=8, n_eval=2, n_dev=2)
    row = dict(next(r for r in w["prefs"] if r["style"] == "color"))
    # one corrected colour with >= 3 matching tokens on each side, so the token diff marks that word only
    row["chosen"] = "a blue circle and a green ring and a red cross."
    row["rejected"] = "a blue circle and a yellow ring and a red cross."
    # the one word that differs, located by its first differing character
    k = next(i for i, (a, b) in enumerate(zip(row["chosen"], row["rejected"])) if a != b)
    wc, wr = row["chosen"][k:].split()[0].rstrip("."), row["rejected"][k:].split()[0].rstrip(".")
    row["segments"] = {"chosen": [[k, k + len(wc)]], "rejected": [[k, k + len(wr)]]}
    processor = AutoProcessor.from_pretrained(vlm_world / "base")
    ds = Dataset.from_list(_image_rows([row], processor, None, ("chosen", "rejected"), segments=True))
    args = cpu_dpo_config(tmp_path / "scratch")
    model = AutoModelForImageTextToText.from_pretrained(vlm_world / "base")
    trainer = make_ddpo_trainer_class()(
        model=model, args=args, train_dataset=ds, processing_class=processor, gamma=2.0, average=False
    )
    batch = next(iter(trainer.get_train_dataloader()))
    ids, mask = batch["input_ids"], batch["completion_mask"]
    weights = segment_weights(ids, mask, 2.0, explicit=batch[FLAGS_KEY])
    assert weights.equal(segment_weights(ids, mask, 2.0))
    heavy = [processor.tokenizer.decode(ids[r][weights[r] == 2.0].tolist()).strip() for r in (0, 1)]
    assert heavy == [wc, wr]


def test_vllm_requests_pass_each_image_as_multi_modal_data(vlm_world, tmp_path):
    """The vLLM path's requests, built without vLLM: the chat-template text the HF path feeds,
    one image placeholder, the image itself; a file asked about twice is decoded once."""
    from PIL import Image
    from transformers import AutoProcessor

    from workflow_scripts.multimodal import IMAGE_TOKEN, user_turn
    from workflow_scripts.vlm_generate import vllm_requests

    processor = AutoProcessor.from_pretrained(vlm_world / "base")
    Image.new("RGB", (40, 30), "red").save(tmp_path / "a.png")
    w = S.build_shapes_world(seed=0, n_sft=8, n_pref=8, n_eval=2, n_dev=2)
    prompts = [
        {"id": "q1", "instruction": "is there a dog in the image?", "image": "a.png"},
        {"id": "q2", "instruction": "is there a cat in the image?", "image": "a.png"},
        w["eval"][0],
    ]
    reqs = vllm_requests(processor, prompts, tmp_path)
    for p, r in zip(prompts, reqs):
        assert r["prompt"] == processor.apply_chat_template(user_turn(p["instruction"]), add_generation_prompt=True)
        assert r["prompt"].count(IMAGE_TOKEN) == 1 and p["instruction"] in r["prompt"]
        assert isinstance(r["multi_modal_data"]["image"], Image.Image)
    assert reqs[0]["multi_modal_data"]["image"] is reqs[1]["multi_modal_data"]["image"]
    assert reqs[0]["multi_modal_data"]["image"].size == (40, 30)  # vLLM's processor resizes, not us
    assert reqs[2]["multi_modal_data"]["image"].size == (processor.image_processor.crop_size["height"],) * 2


def test_vllm_backend_without_cuda_or_vllm_is_refused_in_one_line(vlm_world, monkeypatch):
    """backend vllm on a machine without it fails before any model loads; auto falls back to hf."""
    from workflow_scripts import generate as G
    from workflow_scripts.vlm_generate import generate_vlm

    monkeypatch.setattr(G, "vllm_available", lambda: False)
    w = S.build_shapes_world(seed=0, n_sft=8, n_pref=8, n_eval=2, n_dev=2)
    with pytest.raises(ValueError, match="backend 'vllm' needs the vllm package and a visible CUDA device") as err:
        generate_vlm(vlm_world / "missing", w["eval"][:1], {"preset": "greedy"}, generator="x", backend="vllm")
    assert "\n" not in str(err.value)
    recs = generate_vlm(
        vlm_world / "base", w["eval"][:1], {"preset": "greedy", "max_new_tokens": 2}, generator="x", device="cpu"
    )
    assert len(recs) == 1


def test_rlhf_v_hub_rows_become_preference_rows(monkeypatch):
    """RLHF-V's rows (a JSON `text` with question/chosen/rejected, a decoded image) load as
    prompt/chosen/rejected with the image kept; the image token in the question is dropped."""
    from PIL import Image

    from workflow_scripts.multimodal import load_image
    from workflow_scripts.train import data as D
    from workflow_scripts.train.base import _sha256_rows

    img = Image.new("RGB", (8, 8), "blue")
    text = json.dumps({"question": "<image>\nWhat is shown?", "chosen": "A cup.", "rejected": "A cup and a fork."})
    monkeypatch.setattr(D, "_load_hub_dataset", lambda name, split, **kw: [{"image": img, "text": text, "idx": 3}])
    rows = D.load_rows({"source": "hub", "name": "openbmb/RLHF-V-Dataset", "split": "train"})
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in rows] == [
        ("What is shown?", "A cup.", "A cup and a fork.")
    ]
    assert load_image(rows[0], None, 32) is not None and len(_sha256_rows(rows)) == 64
    monkeypatch.setattr(D, "_load_hub_dataset", lambda name, split, **kw: [{"image": img, "text": "{bad", "idx": 3}])
    with pytest.raises(ValueError, match="RLHF-V row 3"):
        D.load_rows({"source": "hub", "name": "openbmb/RLHF-V-Dataset", "split": "train"})
