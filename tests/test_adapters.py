"""PEFT adapters as checkpoints: merged into their base by the checkpoint stage, wrong bases refused."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from workflow_scripts.checkpoints import CheckpointError, materialize


def make_adapter(base: Path, out: Path, *, targets=("q_proj", "v_proj"), seed: int = 0, cls=None) -> Path:
    """A LoRA adapter over ``base`` with non-zero B (a trained adapter, not peft's identity init)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = (cls or AutoModelForCausalLM).from_pretrained(base)
    targets = targets if isinstance(targets, str) else list(targets)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False)
    get_peft_model(model, cfg).save_pretrained(out)
    return out


def spec_of(adapter: Path, base: Path) -> dict:
    return {"source": "local", "path": str(adapter), "adapter_of": "sft", "base_dir": str(base)}


@pytest.fixture
def sft(tiny_llama_factory):
    return tiny_llama_factory("sft", seed=0, layers=2)


def test_adapter_is_merged_into_its_base(sft, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter = make_adapter(sft, tmp_path / "lora")
    out = tmp_path / "ckpt" / "dpo"
    rec = materialize(spec_of(adapter, sft), out)
    assert rec["kind"] == "adapter" and rec["adapted_modules"] == 4  # q, v in 2 layers
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    assert {"tokenizer.json", "config.json", "source.json"} <= {p.name for p in out.iterdir()}

    merged = AutoModelForCausalLM.from_pretrained(out)
    ref = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(sft), adapter).merge_and_unload()
    ids = torch.tensor([[1, 5, 9, 3]])
    with torch.no_grad():
        assert torch.equal(merged(ids).logits, ref(ids).logits)
    a, b = load_file(sft / "model.safetensors"), load_file(out / "model.safetensors")
    assert a.keys() == b.keys()
    changed = {k for k in a if not torch.equal(a[k], b[k])}
    assert changed == {f"model.layers.{i}.self_attn.{m}_proj.weight" for i in range(2) for m in ("q", "v")}
    # done once: a second call finds the folder complete
    assert materialize(spec_of(adapter, sft), out)["created"] == rec["created"]


def test_merged_adapter_extrapolates_along_its_delta(sft, tmp_path):
    from workflow_scripts.extrapolate import extrapolate

    out = tmp_path / "dpo"
    materialize(spec_of(make_adapter(sft, tmp_path / "lora"), sft), out)
    extrapolate(sft, out, tmp_path / "x", 1.0)
    s, a, x = (load_file(p / "model.safetensors") for p in (sft, out, tmp_path / "x"))
    k = "model.layers.1.self_attn.q_proj.weight"
    assert torch.allclose(x[k].float(), (2 * a[k].float() - s[k].float()), atol=1e-6)
    assert torch.equal(x["model.embed_tokens.weight"], s["model.embed_tokens.weight"])


def test_adapter_over_another_base_is_refused(sft, tiny_llama_factory, tmp_path):
    wide = tiny_llama_factory("wide", hidden=64)
    adapter = make_adapter(wide, tmp_path / "lora_wide")
    with pytest.raises(CheckpointError, match=r"q_proj.*\(out, in\) = \(64, 64\).*a different base"):
        materialize(spec_of(adapter, sft), tmp_path / "o")
    deep = tiny_llama_factory("deep", layers=3)
    with pytest.raises(CheckpointError, match=r"adapts 'model.layers.2.self_attn.q_proj'.*does not have"):
        materialize(spec_of(make_adapter(deep, tmp_path / "lora_deep"), sft), tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_adapter_naming_another_hub_base_is_refused(sft, tmp_path):
    adapter = make_adapter(sft, tmp_path / "lora")
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path": "org/other-7b"}))
    (sft / "source.json").write_text(json.dumps({"kind": "hub", "repo": "org/the-sft", "commit": "a" * 40}))
    with pytest.raises(CheckpointError, match="trained on 'org/other-7b', but its base here is 'org/the-sft'"):
        materialize(spec_of(adapter, sft), tmp_path / "o")
    (adapter / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path": "ORG/The-SFT"}))
    assert materialize(spec_of(adapter, sft), tmp_path / "o")["base"]["repo"] == "org/the-sft"


def test_not_an_adapter_and_bad_specs(sft, tmp_path):
    with pytest.raises(CheckpointError, match="not a PEFT adapter"):
        materialize(spec_of(sft, sft), tmp_path / "o")
    with pytest.raises(CheckpointError, match=r"\['base_dir'\] required"):
        materialize({"source": "local", "path": str(sft), "adapter_of": "sft"}, tmp_path / "o")
    with pytest.raises(CheckpointError, match="must be hub or local"):
        materialize({"source": "gguf", "path": "x.gguf", "adapter_of": "sft", "base_dir": str(sft)}, tmp_path / "o")


def test_vlm_adapter_on_the_language_model(tmp_path):
    from transformers import LlavaForConditionalGeneration

    from tests.test_extrapolate_vlm import make_llava

    base = make_llava(tmp_path / "llava", vision_layers=2, seed=0)
    adapter = make_adapter(
        base, tmp_path / "lora", targets=r".*language_model.*\.(q_proj|v_proj)", cls=LlavaForConditionalGeneration
    )
    rec = materialize(spec_of(adapter, base), tmp_path / "o")
    assert rec["architecture"] == "LlavaForConditionalGeneration" and rec["adapted_modules"] == 6
    LlavaForConditionalGeneration.from_pretrained(tmp_path / "o")
    a, b = load_file(base / "model.safetensors"), load_file(tmp_path / "o" / "model.safetensors")
    changed = {k for k in a if not torch.equal(a[k], b[k])}
    assert changed and all("language_model" in k for k in changed)


# ------------------------------------------------------------------ the config side


def _config(tmp_path: Path) -> dict:
    import yaml

    from workflow_scripts.config_schema import validate_config

    cfg = yaml.safe_load((Path(__file__).parents[1] / "tests" / "data" / "small_world.yaml").read_text())
    cfg["models"]["lora"] = {"source": "local", "path": str(tmp_path), "adapter_of": "sft"}
    cfg["pairs"]["lora"] = {"sft": "sft", "aligned": "lora"}
    return validate_config(cfg)


def test_experiment_wires_the_adapter_to_its_base(tmp_path):
    from workflow_scripts.experiment import ConfigError, Experiment

    cfg = _config(tmp_path)
    exp = Experiment(cfg)
    assert exp.checkpoint_spec("lora")["base_dir"] == exp.model_dir("sft")
    assert exp.checkpoint_inputs("lora") == {"base": exp.model_dir("sft")}
    assert exp.checkpoint_inputs("dpo") == {} and exp.checkpoint_spec("dpo") is cfg["models"]["dpo"]
    assert exp.model_num_layers("lora") == exp.model_num_layers("sft")
    bad = copy.deepcopy(cfg)
    bad["pairs"]["lora"]["sft"] = "dpo"
    with pytest.raises(ConfigError, match="aligned model 'lora' is an adapter over 'sft', not over the pair's SFT"):
        Experiment(bad)
    bad = copy.deepcopy(cfg)
    bad["models"]["lora"]["adapter_of"] = "nope"
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        Experiment(bad)


def test_dry_run_merges_the_adapter_after_its_base_is_trained(tmp_path):
    import yaml

    from tests.test_workflow import make_workdir, snakemake

    cfg = _config(tmp_path / "adapter")
    (tmp_path / "wd").mkdir()
    wd = make_workdir(tmp_path / "wd", yaml.safe_load(yaml.safe_dump(cfg)))
    out = snakemake(wd, "-n", "-p", "results/small/extrapolated/lora/alpha1").stdout
    job = out.split("rule checkpoint_model:", 1)[1].split("\n\n", 1)[0]
    assert "input: results/small/trained/sft" in job and "output: results/small/checkpoints/lora" in job


def test_hub_adapter_offline_and_not_cached_says_how_to_predownload(sft, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    spec = {"source": "hub", "repo": "org/dpo-lora", "revision": "main", "adapter_of": "sft", "base_dir": str(sft)}
    with pytest.raises(CheckpointError, match=r"org/dpo-lora@main: HF_HUB_OFFLINE is set.*hf download org/dpo-lora"):
        materialize(spec, tmp_path / "o")
