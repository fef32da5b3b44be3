"""Component-aware extrapolation on tiny LLaVA pairs (vision tower deeper and shallower than the LLM)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from workflow_scripts.extrapolate import extrapolate
from workflow_scripts.extrapolate.reference import expo
from workflow_scripts.scheme_components import ComponentScheme, with_component_defaults
from workflow_scripts.schemes import Scheme, layer_index

ROOT = Path(__file__).resolve().parents[1]
LLM_LAYERS = 3
LLM_ONLY = {"vision_tower": 0, "multi_modal_projector": 0}


def make_llava(path: Path, vision_layers: int, seed: int, *, freeze_vision: Path | None = None) -> Path:
    """A tiny LLaVA saved with save_pretrained; ``freeze_vision`` copies that model's vision tower
    and projector (what DPO with a frozen tower and projector produces)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    torch.manual_seed(seed)
    cfg = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=16, intermediate_size=32, num_hidden_layers=vision_layers, num_attention_heads=2,
            image_size=16, patch_size=8,
        ),
        text_config=LlamaConfig(
            hidden_size=16, intermediate_size=32, num_hidden_layers=LLM_LAYERS, num_attention_heads=2,
            num_key_value_heads=2, vocab_size=64,
        ),
        image_token_index=63,
    )  # fmt: skip
    model = LlavaForConditionalGeneration(cfg)
    if freeze_vision is not None:
        base = LlavaForConditionalGeneration.from_pretrained(freeze_vision)
        model.model.vision_tower.load_state_dict(base.model.vision_tower.state_dict())
        model.model.multi_modal_projector.load_state_dict(base.model.multi_modal_projector.state_dict())
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module", params=[5, 2], ids=["vision-deeper", "vision-shallower"])
def llava_pair(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(f"llava{request.param}")
    sft = make_llava(d / "sft", request.param, seed=0)
    aligned = make_llava(d / "aligned", request.param, seed=1)
    frozen = make_llava(d / "frozen", request.param, seed=2, freeze_vision=sft)
    return sft, aligned, frozen, request.param


def _component(name: str) -> str:
    return name.split(".", 1)[0]


def test_uniform_alpha_on_every_component_equals_the_formula(llava_pair, tmp_path):
    sft, aligned, _, _ = llava_pair
    m = extrapolate(sft, aligned, tmp_path / "out", {"components": {"default": 1.5}})
    a, s, o = (load_file(p / "model.safetensors") for p in (aligned, sft, tmp_path / "out"))
    assert set(o) == set(a)
    for k in a:
        ref = torch.from_numpy(expo(a[k].numpy(), s[k].numpy(), 1.5)).to(a[k].dtype)
        torch.testing.assert_close(o[k], ref, rtol=2e-7, atol=1e-7)
    assert m["alpha"] == 1.5 and set(m["components"]) == {"vision_tower", "multi_modal_projector", "language_model"}


def test_component_scheme_keeps_vision_and_projector_and_counts_llm_layers(llava_pair, tmp_path):
    from transformers import LlavaForConditionalGeneration

    sft, aligned, _, vision_layers = llava_pair
    spec = {"components": {**LLM_ONLY, "language_model": {"preset": "thirds", "alphas": [1, 2, 4]}}}
    m = extrapolate(sft, aligned, tmp_path / "out", spec)
    a, s, o = (load_file(p / "model.safetensors") for p in (aligned, sft, tmp_path / "out"))
    for k in a:
        if _component(k) != "language_model":
            assert torch.equal(o[k], a[k]), k  # bit-identical to aligned
            continue
        i = layer_index(k)
        alpha = {0: 1.0, 1: 2.0, 2: 4.0}[i] if i is not None else (1.0 if "embed" in k else 4.0)
        ref = torch.from_numpy(expo(a[k].numpy(), s[k].numpy(), alpha)).to(a[k].dtype)
        torch.testing.assert_close(o[k], ref, rtol=2e-7, atol=1e-7, msg=k)
    comps = m["components"]
    assert comps["vision_tower"]["num_layers"] == vision_layers
    assert [e["alphas"] for e in comps["language_model"]["layers"]] == [[1.0], [2.0], [4.0]]
    assert [e["layer"] for e in m["layers"]] == list(range(LLM_LAYERS))  # top level: the LLM's
    assert len(comps["vision_tower"]["layers"]) == vision_layers
    assert comps["vision_tower"]["alphas"] == [0.0] and comps["vision_tower"]["delta_norm"] > 0
    LlavaForConditionalGeneration.from_pretrained(tmp_path / "out")  # loads (weights and config)


def test_frozen_components_are_flagged_zero_delta(llava_pair, tmp_path):
    sft, _, frozen, _ = llava_pair
    m = extrapolate(sft, frozen, tmp_path / "out", with_component_defaults(2.0, LLM_ONLY))
    assert sorted(m["zero_delta_components"]) == ["multi_modal_projector", "vision_tower"]
    assert all(e["zero_delta"] for e in m["components"]["vision_tower"]["layers"])
    assert not m["components"]["language_model"]["zero_delta"]


def test_delta_report_has_a_row_per_component_and_layer(llava_pair, tmp_path):
    from workflow_scripts.delta_report import delta_table, plot_delta

    sft, _, frozen, vision_layers = llava_pair
    m = extrapolate(sft, frozen, tmp_path / "out", with_component_defaults(2.0, LLM_ONLY))
    df = delta_table(m)
    layers = df[df.part == "layer"]
    assert layers.groupby("component").size().to_dict() == {"language_model": LLM_LAYERS, "vision_tower": vision_layers}
    assert df.component.iloc[0] == "language_model"  # the language model first, then the others by name
    assert df[df.component == "vision_tower"].zero_delta.all()
    assert not layers[layers.component == "language_model"].zero_delta.any()  # (random norms are all ones: Δ = 0)
    lm = m["components"]["language_model"]["layers"]
    got = layers[layers.component == "language_model"].rel_delta.tolist()
    assert got == pytest.approx([e["rel_delta"] for e in lm])
    assert plot_delta(df, tmp_path / "d.png").stat().st_size > 0


def test_plain_scheme_on_a_vlm_is_refused_with_one_line(llava_pair, tmp_path):
    sft, aligned, _, _ = llava_pair
    r = subprocess.run(
        [sys.executable, "-m", "workflow_scripts.extrapolate", "--sft", str(sft), "--aligned", str(aligned)]
        + ["--alpha", "2", "--out", str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "vision-language" in last and "components" in last
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"components": {**LLM_ONLY, "language_modle": 2}}, "matches no component"),
        ({"components": {**LLM_ONLY, "language_model": 2, "audio_tower": 0}}, "'audio_tower' matches no tensor"),
        (
            {"components": {**LLM_ONLY, "language_model": {"groups": [{"layers": [0, 9], "by": "index", "alpha": 2}],
                                                            "default": 1}}},
            r"components.language_model \(component language_model\): group 1 layers \[0, 9\) is outside a model "
            "with 3 layers",
        ),
        (
            {"components": {**LLM_ONLY, "language_model": {"groups": [{"layers": [0, 1], "alpha": 2,
                                                                        "modules": ["mpl"]}], "default": 1}}},
            "group 'group1' of component language_model .* matches no tensor",
        ),
    ],
)  # fmt: skip
def test_component_scheme_errors(llava_pair, tmp_path, spec, match):
    sft, aligned, _, _ = llava_pair
    with pytest.raises(ValueError, match=match):
        extrapolate(sft, aligned, tmp_path / "out", spec)
    assert not (tmp_path / "out").exists()


def test_text_only_model_under_a_component_scheme_is_one_component(tiny_llama_factory, tmp_path):
    sft, aligned = tiny_llama_factory("sft", seed=0), tiny_llama_factory("aligned", seed=1)
    plain = extrapolate(sft, aligned, tmp_path / "plain", 2.0)
    comp = extrapolate(sft, aligned, tmp_path / "comp", {"components": {"language_model": 2.0}})
    assert (tmp_path / "plain/model.safetensors").read_bytes() == (tmp_path / "comp/model.safetensors").read_bytes()
    assert "components" not in plain
    assert [{k: v for k, v in e.items() if k != "zero_delta"} for e in comp["layers"]] == plain["layers"]
    with pytest.raises(ValueError, match="'vision_tower' matches no tensor"):
        extrapolate(sft, aligned, tmp_path / "x", {"components": {"language_model": 2.0, "vision_tower": 0}})


def test_component_scheme_parsing_is_torch_free_and_merges_pair_defaults():
    code = (
        "import sys\nfrom workflow_scripts.schemes import Scheme\n"
        "s = Scheme.from_config({'components': {'vision_tower': 0, 'default': {'preset': 'thirds_5_10_15'}}})\n"
        "print(type(s).__name__, 'torch' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["ComponentScheme", "False"]
    merged = with_component_defaults(2, LLM_ONLY)
    assert merged == {"components": {**LLM_ONLY, "default": 2}}
    assert with_component_defaults(2, None) == 2  # text pairs: params unchanged
    over = with_component_defaults({"components": {"vision_tower": 1, "language_model": 3}}, LLM_ONLY)
    assert over == {"components": {"vision_tower": 1, "multi_modal_projector": 0, "language_model": 3}}
    s = Scheme.from_config(merged)
    assert isinstance(s, ComponentScheme) and s.uniform is None
    assert s.component_of("model.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight") == "vision_tower"
    assert s.component_of("lm_head.weight") == "default"
    with pytest.raises(ValueError, match=r"components.vision_tower: scheme must be a number"):
        Scheme.from_config({"components": {"vision_tower": "zero"}})
    with pytest.raises(ValueError, match="cannot be nested"):
        Scheme.from_config({"components": {"language_model": {"components": {"x": 1}}}})
    json.dumps(s.describe())


def test_config_schema_accepts_component_schemes_and_pair_defaults():
    import jsonschema
    import yaml

    schema = yaml.safe_load((ROOT / "schemas/config.schema.yaml").read_text())
    defs = schema["$defs"]
    scheme = {"$ref": "#/$defs/scheme", "$defs": defs}
    jsonschema.validate(
        {"components": {**LLM_ONLY, "language_model": {"preset": "thirds", "alphas": [1, 2, 4]}}}, scheme
    )
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"components": {"vision_tower": "zero"}}, scheme)
    pair = {**schema["properties"]["pairs"]["additionalProperties"], "$defs": defs}
    jsonschema.validate({"sft": "s", "aligned": "a", "components": LLM_ONLY}, pair)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"sft": "s", "aligned": "a", "components": {"default": 0}}, pair)


def test_vlm_pair_without_components_is_refused_when_the_dag_is_built(llava_pair):
    import copy

    from workflow_scripts.config_schema import validate_config
    from workflow_scripts.experiment import ConfigError, Experiment

    sft = llava_pair[0]
    cfg = yaml_config()
    cfg["models"] = {
        "sft": {"source": "local", "path": str(sft)},
        "dpo": {"source": "train", "method": "dpo", "base": "sft", "data": "world_prefs"},
        "lora": {"source": "local", "path": str(sft.parent / "no-such-adapter"), "adapter_of": "sft"},
        "world_rm": cfg["models"]["world_rm"],
    }
    cfg["pairs"] = {"dpo": {"sft": "sft", "aligned": "dpo"}, "lora": {"sft": "sft", "aligned": "lora"}}
    bad = validate_config(copy.deepcopy(cfg))
    msg = (
        r"pair 'dpo': SFT model 'sft' is a vision-language model, and its α sweep and schemes \['thirds'\] "
        r"would treat vision-tower layers as decoder layers; set the pair's"
    )
    with pytest.raises(ConfigError, match=msg):
        Experiment(bad)
    for p in cfg["pairs"].values():
        p["components"] = dict(LLM_ONLY)
    exp = Experiment(validate_config(cfg))
    assert exp.model_is_multimodal("dpo") and exp.model_is_multimodal("lora")
    assert exp.alpha_spec("dpo", "2") == {"components": {**LLM_ONLY, "default": 2.0}}


def test_text_models_are_not_taken_for_vlms(tiny_llama_factory):
    from workflow_scripts.config_schema import validate_config
    from workflow_scripts.experiment import Experiment

    cfg = yaml_config()
    cfg["models"]["sft"] = {"source": "local", "path": str(tiny_llama_factory("sft"))}
    cfg["models"]["hub"] = {"source": "hub", "repo": "org/x"}
    exp = Experiment(validate_config(cfg))
    assert exp.model_is_multimodal("sft") is False and exp.model_is_multimodal("dpo") is False
    assert exp.model_is_multimodal("hub") is None


def yaml_config() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "tests" / "data" / "small_world.yaml").read_text())
