"""Tests for the training stage (workflow_scripts/train/): subsets, validation, SFT, RM, DPO, SimPO, LoRA.

Models are tiny (hidden 32, 2 layers) and the toy sets small, so every trainer runs in seconds on CPU.
One SFT model (module-scoped) is the base for the preference tests, as in the real workflow.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from workflow_scripts import train as T
from workflow_scripts.common import write_jsonl

TINY = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 128,
}
MAPPING = {
    "list three colors": "red blue green",
    "what is the opposite of hot": "cold",
    "repeat the word cat two times": "cat cat",
    "reverse these words big small": "small big",
}
# Preference pairs: the correct answer is chosen, a wrong-but-plausible one rejected.
WRONG = {
    "list three colors": "cat dog",
    "what is the opposite of hot": "hot hot hot",
    "repeat the word cat two times": "dog",
    "reverse these words big small": "big small big small",
}


def _history(folder: Path) -> list[dict]:
    with open(folder / T.HISTORY_NAME, newline="") as fh:
        return list(csv.DictReader(fh))


def _manifest(folder: Path) -> dict:
    return json.loads((folder / T.MANIFEST_NAME).read_text())


def _first_last_loss(folder: Path, k: int = 3) -> tuple[float, float]:
    """Mean loss over the first and last ``k`` steps (single steps are noisy)."""
    losses = [float(r["loss"]) for r in _history(folder)]
    assert len(losses) >= 2 * k
    return sum(losses[:k]) / k, sum(losses[-k:]) / k


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    d = tmp_path_factory.mktemp("train")
    write_jsonl(d / "sft.jsonl", [{"prompt": p, "completion": c} for p, c in MAPPING.items()] * 16)
    write_jsonl(d / "pref.jsonl", [{"prompt": p, "chosen": MAPPING[p], "rejected": WRONG[p]} for p in MAPPING] * 8)
    return d


@pytest.fixture(scope="module")
def sft_model(toy_dir, tiny_tokenizer_dir) -> Path:
    out = toy_dir / "sft_model"
    T.train_sft(
        TINY,
        tiny_tokenizer_dir,
        toy_dir / "sft.jsonl",
        out,
        epochs=8,
        lr=5e-3,
        batch_size=8,
        max_length=64,
        seed=0,
        threads=1,
        device="cpu",
    )
    return out


# ---------------------------------------------------------------- subsets and validation


def test_select_fraction_nested_and_deterministic():
    n = 1000
    sets = {f: T.select_fraction(n, f, seed=0) for f in (0.05, 0.1, 0.2, 0.4, 1.0)}
    assert [len(sets[f]) for f in sorted(sets)] == [50, 100, 200, 400, 1000]
    fr = sorted(sets)
    for small, big in zip(fr, fr[1:]):
        assert set(sets[small]) <= set(sets[big])
    assert sorted(sets[1.0]) == list(range(n))
    assert T.select_fraction(n, 0.1, seed=0) == sets[0.1]  # deterministic
    assert T.select_fraction(n, 0.1, seed=1) != sets[0.1]  # seed matters
    assert len(T.select_fraction(30, 0.1)) == 3  # no float-noise extra example
    assert len(T.select_fraction(7, 0.05)) == 1  # ceil keeps at least one
    for bad in (0, -0.1, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            T.select_fraction(10, bad)


@pytest.fixture
def no_model_loading(monkeypatch):
    """Fail the test if validation lets a run get as far as loading a model."""

    def boom(*a, **k):
        raise AssertionError("model was loaded before the config was validated")

    for stage in (T.sft, T.reward, T.preference):
        monkeypatch.setattr(stage, "_init_model", boom)
        monkeypatch.setattr(stage, "_load_tokenizer", boom)


def _pref_kwargs(**kw):
    base = dict(method="dpo", fraction=1.0, beta=0.1, lr=1e-3, epochs=1, batch_size=4, max_length=64)
    base.update(kw)
    return base


def test_unknown_method_fails_before_training(no_model_loading, toy_dir, tiny_llama_factory, tmp_path):
    base = tiny_llama_factory("base")
    with pytest.raises(ValueError, match="unknown preference method 'ppo'"):
        T.train_preference(base, toy_dir / "pref.jsonl", tmp_path / "o", **_pref_kwargs(method="ppo"))
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("fraction", [0, 0.0, -0.5, 1.01, 2])
def test_fraction_outside_unit_interval_fails(no_model_loading, toy_dir, tiny_llama_factory, tmp_path, fraction):
    base = tiny_llama_factory("base")
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        T.train_preference(base, toy_dir / "pref.jsonl", tmp_path / "o", **_pref_kwargs(fraction=fraction))


def test_missing_chosen_column_names_column_and_file(no_model_loading, tiny_llama_factory, tmp_path):
    base = tiny_llama_factory("base")
    bad = tmp_path / "bad.jsonl"
    write_jsonl(bad, [{"prompt": "list three colors", "answer": "red", "rejected": "dog"}])
    with pytest.raises(ValueError, match="chosen") as err:
        T.train_preference(base, bad, tmp_path / "o", **_pref_kwargs())
    assert str(bad) in str(err.value)
    assert not (tmp_path / "o").exists()


def test_empty_dataset_fails(no_model_loading, tiny_llama_factory, tmp_path):
    base = tiny_llama_factory("base")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty"):
        T.train_preference(base, empty, tmp_path / "o", **_pref_kwargs())


def test_cli_rejects_unknown_method(no_model_loading, toy_dir, tiny_llama_factory, tmp_path):
    base = tiny_llama_factory("base")
    with pytest.raises(ValueError, match="unknown preference method"):
        T.main(
            [
                "preference",
                "--base",
                str(base),
                "--method",
                "orpo",
                "--data",
                str(toy_dir / "pref.jsonl"),
                "--out",
                str(tmp_path / "o"),
            ]
        )


def test_hub_spec_converts_message_lists(monkeypatch):
    """UltraFeedback-binarized rows (chosen/rejected as [user, assistant]) become plain text pairs."""
    calls = {}

    def fake_load(name, split, **kw):
        calls["args"] = (name, split)
        return [
            {
                "prompt": "say hi",
                "prompt_id": "x",
                "chosen": [{"role": "user", "content": "say hi"}, {"role": "assistant", "content": "hi"}],
                "rejected": [{"role": "user", "content": "say hi"}, {"role": "assistant", "content": "no"}],
                "score_chosen": 8.0,
                "score_rejected": 2.0,
            }
        ]

    monkeypatch.setattr(T.data, "_load_hub_dataset", fake_load)
    spec = {"source": "hub", "name": "HuggingFaceH4/ultrafeedback_binarized", "split": "train_prefs"}
    rows, info = T.prepare_preference_rows(spec, 1.0)
    assert calls["args"] == ("HuggingFaceH4/ultrafeedback_binarized", "train_prefs")
    assert rows[0]["prompt"] == "say hi" and rows[0]["chosen"] == "hi" and rows[0]["rejected"] == "no"
    assert info["n_pairs"] == 1 and "ultrafeedback" in info["data"]


def test_render_pair_completion_ends_with_eos(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    prompt, completion = T.render_pair(tok, "list three colors", "red blue green")
    assert prompt.rstrip().endswith("<|assistant|>") and completion.strip() == "red blue green<|end|>"
    ids = tok(prompt + completion, add_special_tokens=False)["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id


def test_render_pair_single_bos_when_tokenizer_adds_bos(tiny_tokenizer_dir):
    """Llama-style tokenizers add BOS themselves: the rendered text must not carry a second one."""
    from tokenizers import processors
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A", special_tokens=[("<|bos|>", tok.bos_token_id)]
    )
    assert T.tokenizer_adds_bos(tok)
    prompt, completion = T.render_pair(tok, "list three colors", "red")
    ids = tok(prompt + completion)["input_ids"]
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id


# ---------------------------------------------------------------- trainers


def test_sft_learns_mapping_and_emits_eos(sft_model, tiny_tokenizer_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    first, last = _first_last_loss(sft_model)
    assert last < 0.5 * first
    man = _manifest(sft_model)
    assert man["stage"] == "sft" and man["n_examples"] == 64 and man["steps"] == 64
    assert man["length_stats"]["n_over_max_length"] == 0
    tok = AutoTokenizer.from_pretrained(sft_model)
    model = AutoModelForCausalLM.from_pretrained(sft_model)
    assert model.generation_config.eos_token_id == tok.eos_token_id
    correct = 0
    for prompt, answer in MAPPING.items():
        enc = tok.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=12, do_sample=False)
        new = out[0, enc["input_ids"].shape[1] :].tolist()
        assert tok.eos_token_id in new, f"no EOS generated for {prompt!r}: {tok.decode(new)!r}"
        correct += tok.decode(new[: new.index(tok.eos_token_id)]).strip() == answer
    assert correct >= 3


def test_reward_model_ranks_chosen_over_rejected(toy_dir, tiny_tokenizer_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = toy_dir / "rm"
    man = T.train_reward(
        TINY,
        tiny_tokenizer_dir,
        toy_dir / "pref.jsonl",
        out,
        epochs=4,
        lr=3e-3,
        batch_size=8,
        max_length=64,
        seed=0,
        threads=1,
        device="cpu",
    )
    model = AutoModelForSequenceClassification.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert model.config.num_labels == 1 and model.config.pad_token_id == tok.pad_token_id
    rows = [{"prompt": p, "chosen": MAPPING[p], "rejected": WRONG[p]} for p in MAPPING]
    acc = T.pair_accuracy(model, tok, rows)
    assert acc["accuracy"] == 1.0 and acc["margin"] > 0
    assert man["heldout"]["n"] == 4 and man["n_train_pairs"] == 28
    assert man["heldout"]["accuracy"] is not None


@pytest.mark.parametrize("method", ["dpo", "simpo"])
def test_preference_training_lowers_loss_and_saves_loadable_model(method, sft_model, toy_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = toy_dir / f"aligned_{method}"
    man = T.train_preference(
        sft_model,
        toy_dir / "pref.jsonl",
        out,
        method=method,
        fraction=0.5,
        beta=0.1,
        lr=3e-3,
        epochs=4,
        batch_size=4,
        max_length=64,
        seed=0,
        threads=1,
        device="cpu",
    )
    first, last = _first_last_loss(out)
    assert last < first
    assert man["method"] == method and man["fraction"] == 0.5
    assert man["n_pairs"] == 16 and man["n_pairs_total"] == 32 and man["steps"] == 16
    assert man["tail_mean_rewards/accuracies"] > 0.5 and man["tail_mean_rewards/margins"] > 0
    if method == "simpo":
        assert man["hyperparameters"]["simpo_gamma"] == pytest.approx(0.05)
        assert man["hyperparameters"]["cpo_alpha"] == 0.0
    hist = _history(out)
    assert {"step", "loss", "rewards/margins", "rewards/accuracies", "learning_rate"} <= set(hist[0])
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template and model.generation_config.eos_token_id == tok.eos_token_id
    assert not any(p.name.startswith(".tmp-") for p in toy_dir.iterdir())


def test_lora_merged_weights_equal_base_plus_delta(sft_model, toy_dir):
    import torch
    from safetensors.torch import load_file

    out = toy_dir / "aligned_lora"
    lora = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    man = T.train_preference(
        sft_model,
        toy_dir / "pref.jsonl",
        out,
        method="dpo",
        fraction=0.25,
        beta=0.1,
        lr=1e-2,
        epochs=2,
        batch_size=4,
        max_length=64,
        lora=lora,
        threads=1,
        device="cpu",
    )
    assert man["hyperparameters"]["lora"]["r"] == 4
    base = load_file(sft_model / "model.safetensors")
    merged = load_file(out / "model.safetensors")
    adapter = load_file(out / T.ADAPTER_DIR / "adapter_model.safetensors")
    assert set(merged) == set(base)
    scale = 8 / 4
    n_adapted = 0
    for name, w in base.items():
        stem = name[: -len(".weight")]
        a_key = f"base_model.model.{stem}.lora_A.weight"
        if a_key in adapter:
            delta = adapter[f"base_model.model.{stem}.lora_B.weight"] @ adapter[a_key] * scale
            assert delta.abs().max() > 0, f"LoRA on {name} did not train"
            torch.testing.assert_close(merged[name], w + delta, rtol=1e-5, atol=1e-6)
            n_adapted += 1
        else:
            torch.testing.assert_close(merged[name], w, rtol=0, atol=0)
    assert n_adapted == 2 * TINY["num_hidden_layers"]


def test_same_seed_gives_identical_weights(sft_model, toy_dir, tmp_path):
    """Fixed seeds: rerunning a config reproduces the checkpoint bit for bit (CPU)."""
    import torch
    from safetensors.torch import load_file

    kw = dict(
        method="simpo",
        fraction=0.25,
        beta=0.5,
        lr=1e-3,
        epochs=1,
        batch_size=4,
        max_length=64,
        seed=3,
        threads=1,
        device="cpu",
    )
    a = T.train_preference(sft_model, toy_dir / "pref.jsonl", tmp_path / "a", **kw)
    b = T.train_preference(sft_model, toy_dir / "pref.jsonl", tmp_path / "b", **kw)
    assert a["subset_sha256"] == b["subset_sha256"] and a["steps"] == b["steps"] == 2
    wa, wb = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0)


def test_cli_sft_from_config_json(toy_dir, tiny_tokenizer_dir, tmp_path):
    out = tmp_path / "cli_sft"
    T.main(
        [
            "sft",
            "--model-config",
            json.dumps(TINY),
            "--tokenizer",
            str(tiny_tokenizer_dir),
            "--data",
            str(toy_dir / "sft.jsonl"),
            "--out",
            str(out),
            "--epochs",
            "0.25",
            "--batch-size",
            "8",
            "--max-length",
            "64",
            "--threads",
            "1",
            "--device",
            "cpu",
            "--log",
            str(tmp_path / "log.txt"),
        ]
    )
    man = _manifest(out)
    assert man["model_init"] == TINY and man["steps"] == 2
    assert (out / "config.json").exists() and (out / "tokenizer.json").exists()
    assert "saved" in (tmp_path / "log.txt").read_text()
    with pytest.raises(ValueError, match="exactly one of --model-init"):
        T.main(
            [
                "sft",
                "--tokenizer",
                str(tiny_tokenizer_dir),
                "--data",
                str(toy_dir / "sft.jsonl"),
                "--out",
                str(tmp_path / "x"),
            ]
        )


# ---------------------------------------------------------------- curves


def test_plot_curves_and_table(tmp_path):
    from workflow_scripts.training_curves import curves_table, plot_curves, summarize_curves

    good = tmp_path / "good" / T.HISTORY_NAME
    bad = tmp_path / "bad" / T.HISTORY_NAME
    for p in (good, bad):
        p.parent.mkdir()
    steps = range(1, 41)
    T.write_history_csv(
        [
            {
                "step": s,
                "epoch": s / 40,
                "loss": 0.7 - 0.01 * s,
                "rewards/margins": 0.02 * s,
                "rewards/accuracies": min(1.0, 0.5 + 0.02 * s),
                "learning_rate": 1e-3,
            }
            for s in steps
        ],
        good,
    )
    T.write_history_csv(
        [
            {
                "step": s,
                "loss": 0.7 - 0.02 * s if s < 15 else 0.4 + 0.1 * (s - 15),
                "rewards/margins": 0.1,
                "learning_rate": 1e-3,
            }
            for s in steps
        ],
        bad,
    )
    png = plot_curves(good, tmp_path / "good.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot_curves(bad, tmp_path / "bad.png")
    assert summarize_curves(good)["diverging"] is False
    assert summarize_curves(bad)["diverging"] is True
    several = plot_curves([good, bad], tmp_path / "both.png")  # the report's call: a list of runs
    assert several.stat().st_size > 1000
    table = curves_table({"good": good, "bad": bad})
    assert list(table["run"]) == ["good", "bad"] and list(table["diverging"]) == [False, True]
    assert table.loc[0, "loss_end"] < table.loc[0, "loss_start"]
    assert table.loc[0, "margin_end"] > 0.7


def test_plot_curves_on_real_run(sft_model, tmp_path):
    from workflow_scripts.training_curves import plot_curves, summarize_curves

    plot_curves(sft_model / T.HISTORY_NAME, tmp_path / "sft.png")
    assert (tmp_path / "sft.png").stat().st_size > 1000
    s = summarize_curves(sft_model / T.HISTORY_NAME)
    assert s["steps"] == 64 and not s["diverging"] and "mean_token_accuracy" in s
