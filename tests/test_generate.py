"""Generation stage on tiny offline models: decoding presets, penalties, HF backend, output format."""

from __future__ import annotations

import json
import math

import pytest
import torch

from workflow_scripts import generate as G
from workflow_scripts.decoding import (
    PRESETS,
    PresenceFrequencyPenaltyLogitsProcessor,
    hf_generation_kwargs,
    resolve_decoding,
    vllm_sampling_kwargs,
)
from workflow_scripts.generate import generate, render_prompt_ids, write_generations
from workflow_scripts.records import record_field

PROMPTS = [
    {"id": "p0", "instruction": "list three colors", "dataset": "toy", "task": {"kind": "list"}},
    {"id": "p1", "instruction": "repeat the word cat two times please", "dataset": "toy"},
    {"id": "p2", "instruction": "what is the opposite of hot", "dataset": "toy"},
    {"id": "p3", "instruction": "reverse these words one two three four five", "dataset": "toy"},
    {"id": "p4", "instruction": "answer", "dataset": "toy"},
]
GREEDY = {"preset": "greedy", "max_new_tokens": 10}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_tokenizer_dir):
    from conftest import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("gen") / "tiny-sft", tiny_tokenizer_dir, hidden=64, layers=2, seed=1)


# ------------------------------------------------------------------ decoding presets


def test_paper_preset_is_the_official_expo_setting():
    d = resolve_decoding({"preset": "paper"})
    assert d["do_sample"] is True
    assert (d["temperature"], d["top_k"], d["top_p"]) == (0.7, 50, 0.9)
    assert (d["presence_penalty"], d["frequency_penalty"]) == (0.1, 0.1)
    assert (d["seed"], d["max_new_tokens"]) == (42, 2048)
    assert resolve_decoding({}) == d  # paper fidelity unless a config says otherwise
    v = vllm_sampling_kwargs(d)
    assert v == {
        "n": 1,
        "temperature": 0.7,
        "top_k": 50,
        "top_p": 0.9,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.1,
        "repetition_penalty": 1.0,
        "seed": 42,
        "max_tokens": 2048,
        "skip_special_tokens": True,
    }


def test_demo_and_greedy_presets_and_overrides():
    demo = resolve_decoding({"preset": "demo"})
    assert (demo["temperature"], demo["top_k"], demo["top_p"], demo["seed"], demo["max_new_tokens"]) == (
        0.7,
        50,
        0.9,
        42,
        64,
    )
    g = resolve_decoding({"preset": "greedy", "max_new_tokens": 5})
    assert g["do_sample"] is False and g["max_new_tokens"] == 5
    assert hf_generation_kwargs(g)["do_sample"] is False
    assert vllm_sampling_kwargs(g)["temperature"] == 0.0
    assert set(PRESETS) >= {"paper", "demo", "greedy"}
    # resolving twice is harmless (generate() resolves what the CLI already resolved)
    assert resolve_decoding(resolve_decoding({"preset": "demo"})) == demo


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"top-p": 0.9}, r"unknown decoding key\(s\) \['top-p'\]"),
        ({"preset": "fast"}, "unknown decoding preset 'fast'"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"temperature": 0.0}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"do_sample": "yes"}, "do_sample"),
    ],
)
def test_bad_decoding_specs_raise(spec, match):
    with pytest.raises(ValueError, match=match):
        resolve_decoding(spec)


# ------------------------------------------------------------------ presence/frequency penalty


def test_penalty_processor_hand_computed():
    # prompt (2 tokens, ignored) + generated [3, 1, 3, 3]; vocab 5
    input_ids = torch.tensor([[1, 1, 3, 1, 3, 3], [4, 0, 2, 2, 2, 2]])
    scores = torch.zeros(2, 5)
    proc = PresenceFrequencyPenaltyLogitsProcessor(presence_penalty=0.5, frequency_penalty=0.25, prompt_length=2)
    out = proc(input_ids, scores.clone())
    # row 0: counts {1: 1, 3: 3}; row 1: counts {2: 4}; the prompt's 1, 4 and 0 do not count
    expected = torch.tensor(
        [[0.0, -(0.5 + 0.25 * 1), 0.0, -(0.5 + 0.25 * 3), 0.0], [0.0, 0.0, -(0.5 + 0.25 * 4), 0.0, 0.0]]
    )
    assert torch.allclose(out, expected)
    # nothing generated yet -> unchanged; zero penalties -> unchanged
    assert torch.equal(proc(input_ids[:, :2], scores), scores)
    zero = PresenceFrequencyPenaltyLogitsProcessor(0.0, 0.0, 0)
    assert torch.equal(zero(input_ids, scores), scores)


def test_penalty_changes_greedy_answer_only_via_generated_tokens(model_dir):
    """A huge frequency penalty forbids repeating a generated token; greedy output shows it."""
    plain = generate(model_dir, PROMPTS[:2], {"preset": "greedy", "max_new_tokens": 12})
    penal = generate(
        model_dir,
        PROMPTS[:2],
        {"preset": "greedy", "max_new_tokens": 12, "frequency_penalty": 2.0, "presence_penalty": 2.0},
    )
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    for r in penal:
        ids = tok(r["output"], add_special_tokens=False)["input_ids"]
        assert r["n_tokens"] >= 1
        assert len(ids) > 0
    # the random model repeats itself under plain greedy decoding on at least one prompt ...
    plain_ids = [tok(r["output"], add_special_tokens=False)["input_ids"] for r in plain]
    assert any(len(set(i)) < len(i) for i in plain_ids)
    # ... and the penalties change what is generated
    assert [r["output"] for r in plain] != [r["output"] for r in penal]


# ------------------------------------------------------------------ HF backend


def _greedy_ids(model_dir, tok, instruction: str, max_new_tokens: int) -> list[int]:
    """New token ids from a plain, unbatched HF greedy ``generate`` (the reference)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ids = torch.tensor([render_prompt_ids(tok, instruction)])
    with torch.inference_mode():
        full = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=max_new_tokens,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    return full[0, ids.shape[1] :].tolist()


def test_prompt_rendering_uses_chat_template_once(model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = render_prompt_ids(tok, "list three colors")
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
    # the assistant turn is opened, and the only text is the instruction (template-agnostic)
    assert ids[-1] == tok.convert_tokens_to_ids("<|assistant|>")
    assert tok.decode(ids, skip_special_tokens=True).strip() == "list three colors"
    # the official apply_chat_template(tokenize=True) gives the same ids
    ref = tok.apply_chat_template(
        [{"role": "user", "content": "list three colors"}], tokenize=True, add_generation_prompt=True
    )
    ref = ref["input_ids"] if hasattr(ref, "keys") else ref
    assert ids == list(ref)


def test_output_never_contains_the_prompt(model_dir):
    long = {
        "id": "long",
        "dataset": "toy",
        "instruction": "please repeat the word cat dog times list three colors red blue green "
        "yellow reverse these words what is the opposite of hot cold big small",
    }
    recs = generate(model_dir, [long] + PROMPTS, {"preset": "greedy", "max_new_tokens": 6})
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    for r, p in zip(recs, [long] + PROMPTS):
        assert p["instruction"] not in r["output"]
        for marker in ("<|user|>", "<|assistant|>", "<|bos|>", "<|end|>", "<|pad|>"):
            assert marker not in r["output"]
        assert r["n_tokens"] <= 6
    # independent reference: plain HF generate on the rendered prompt, decode only what follows it
    new = [t for t in _greedy_ids(model_dir, tok, long["instruction"], 6) if t != tok.eos_token_id]
    assert recs[0]["output"] == tok.decode(new, skip_special_tokens=True)
    assert len(long["instruction"]) > 3 * len(recs[0]["output"])


def test_batched_greedy_equals_one_at_a_time(model_dir):
    batched = generate(model_dir, PROMPTS, GREEDY, batch_size=4)  # batches of 4 and 1, mixed lengths
    single = [generate(model_dir, [p], GREEDY, batch_size=1)[0] for p in PROMPTS]
    assert [r["output"] for r in batched] == [r["output"] for r in single]
    assert [r["n_tokens"] for r in batched] == [r["n_tokens"] for r in single]
    assert [r["finish_reason"] for r in batched] == [r["finish_reason"] for r in single]
    # original order and ids restored after sorting by length
    assert [r["id"] for r in batched] == [p["id"] for p in PROMPTS]


def test_finish_reason_length_and_stop(model_dir, tmp_path):
    recs = generate(model_dir, PROMPTS, {"preset": "greedy", "max_new_tokens": 4})
    lengths = [r for r in recs if r["finish_reason"] == "length"]
    assert lengths, "a random tiny model should hit the 4-token limit on some prompt"
    assert all(r["n_tokens"] == 4 for r in lengths)
    assert all(r["finish_reason"] == "stop" and r["n_tokens"] < 4 for r in recs if r not in lengths)

    # Declare the first token the model emits for p1 an EOS id in generation_config.json: the
    # stage must stop there (generation_config's EOS ids count, not only the tokenizer's).
    import shutil

    from transformers import AutoTokenizer, GenerationConfig

    r1 = generate(model_dir, [PROMPTS[1]], {"preset": "greedy", "max_new_tokens": 4})[0]
    assert r1["finish_reason"] == "length"
    tok = AutoTokenizer.from_pretrained(model_dir)
    first = _greedy_ids(model_dir, tok, PROMPTS[1]["instruction"], 4)[0]
    m2 = tmp_path / "with-eot"
    shutil.copytree(model_dir, m2)
    GenerationConfig(eos_token_id=[tok.eos_token_id, first]).save_pretrained(m2)
    r2 = generate(m2, [PROMPTS[1]], {"preset": "greedy", "max_new_tokens": 4})[0]
    assert r2["finish_reason"] == "stop"
    assert r2["n_tokens"] == 1 and r2["output"] == ""


def test_sampling_is_seeded(model_dir):
    spec = {"preset": "paper", "max_new_tokens": 8}
    a = generate(model_dir, PROMPTS[:3], spec, batch_size=3)
    b = generate(model_dir, PROMPTS[:3], spec, batch_size=3)
    c = generate(model_dir, PROMPTS[:3], dict(spec, seed=7), batch_size=3)
    assert [r["output"] for r in a] == [r["output"] for r in b]
    assert [r["output"] for r in a] != [r["output"] for r in c]


def test_sampled_answers_do_not_depend_on_batch_size_order_or_subset(model_dir):
    spec = {"preset": "paper", "max_new_tokens": 12}
    ref = generate(model_dir, PROMPTS, spec, batch_size=32)
    for bs in (1, 2, 3):
        assert generate(model_dir, PROMPTS, spec, batch_size=bs) == ref, bs
    rev = generate(model_dir, PROMPTS[::-1], spec, batch_size=2)
    assert rev[::-1] == ref
    assert generate(model_dir, PROMPTS[2:4], spec, batch_size=1) == ref[2:4]
    assert len({r["output"] for r in ref}) > 1  # really sampled text, not one fixed answer


def test_per_prompt_seed_is_a_hash_of_seed_and_id():
    from workflow_scripts.seeded_sampling import prompt_seed

    assert prompt_seed(42, "p0") == prompt_seed(42, "p0")
    assert len({prompt_seed(42, "p0"), prompt_seed(42, "p1"), prompt_seed(7, "p0")}) == 3
    assert 0 <= prompt_seed(42, "x") < 2**63


def test_per_row_sampler_draws_from_the_warped_distribution():
    """With top-k 1 the sampler must pick the argmax; without filters it follows the softmax."""
    from workflow_scripts.seeded_sampling import PerRowSampler, row_generators, warpers

    scores = torch.tensor([[0.0, 2.0, 1.0, -1.0]] * 2)
    spec = resolve_decoding({"preset": "paper", "top_k": 1})
    warped = scores
    for w in warpers(spec):
        warped = w(None, warped)
    out = PerRowSampler(row_generators(42, ["a", "b"], "cpu"))(None, warped)
    assert out.argmax(-1).tolist() == [1, 1] and torch.isinf(out).sum() == 6
    sampler = PerRowSampler(row_generators(0, ["a"], "cpu"))
    draws = [int(sampler(None, scores[:1]).argmax()) for _ in range(4000)]
    freq = [draws.count(k) / len(draws) for k in range(4)]
    assert max(abs(f - p) for f, p in zip(freq, torch.softmax(scores[0], -1).tolist())) < 0.03


def test_provenance_is_written_beside_the_generations(model_dir, tmp_path):
    from workflow_scripts.generation_provenance import provenance_path, sha256_file

    out = tmp_path / "gens.json"
    G.generate_to_file(model_dir, PROMPTS[:2], {"preset": "demo", "max_new_tokens": 4}, out, batch_size=5)
    prov = json.loads(provenance_path(out).read_text())
    assert provenance_path(out).name == "gens.json.provenance.json"
    assert prov["generations_sha256"] == sha256_file(out)
    assert prov["decoding"] == resolve_decoding({"preset": "demo", "max_new_tokens": 4})
    assert prov["seed"] == 42 and prov["seeding"].startswith("per-prompt")
    assert (prov["batch_size"], prov["backend"], prov["device"]) == (5, "hf", "cpu")
    assert prov["model"]["path"] == str(model_dir.resolve()) and prov["model"]["weight_files"] == ["model.safetensors"]
    assert "config.json" in prov["model"]["other_files_sha256"]
    assert set(prov["libraries"]) >= {"python", "torch", "transformers", "tokenizers"}
    assert prov["prompts"]["n"] == 2 and len(prov["prompts"]["sha256"]) == 64
    # the weights hash follows the bytes (a rewrite in place with the same size changes it)
    before = prov["model"]["weights_sha256"]
    from workflow_scripts.generation_provenance import model_fingerprint

    m = tmp_path / "m"
    import shutil

    shutil.copytree(model_dir, m)
    assert model_fingerprint(m)["weights_sha256"] == before
    w = m / "model.safetensors"
    raw = bytearray(w.read_bytes())
    raw[-1] ^= 1
    w.write_bytes(bytes(raw))
    assert model_fingerprint(m)["weights_sha256"] != before
    (m / "manifest.json").write_text(json.dumps({"formula": "theta = theta_aligned + alpha * (x)"}))
    assert model_fingerprint(m)["weights_hash"].startswith("sha256 of the extrapolation manifest")


def test_records_are_valid_alpaca_eval_model_outputs(model_dir, tmp_path):
    import pandas as pd

    recs = generate(model_dir, PROMPTS, GREEDY, generator="tiny-sft-a0.5")
    out = tmp_path / "gens" / "model_outputs.json"
    write_generations(recs, out)
    assert not list(out.parent.glob(".tmp-*"))
    df = pd.read_json(out)
    assert len(df) == len(PROMPTS)
    # alpaca_eval needs instruction/output; generator names the model, dataset groups prompts
    for col in ("instruction", "output", "generator", "dataset", "id", "n_tokens", "finish_reason"):
        assert col in df.columns
    assert set(df["generator"]) == {"tiny-sft-a0.5"}
    assert set(df["finish_reason"]) <= {"stop", "length"}
    assert df["output"].map(lambda s: isinstance(s, str)).all()
    rows = json.loads(out.read_text())
    # extra prompt keys pass through; nested ones as JSON strings (alpaca_eval hashes its cells)
    assert rows[0]["task"] == '{"kind": "list"}' and record_field(rows[0], "task") == {"kind": "list"}
    assert rows[0]["instruction"] == PROMPTS[0]["instruction"] and rows[0]["id"] == "p0"


def test_default_generator_is_the_folder_name(model_dir):
    assert generate(model_dir, PROMPTS[:1], GREEDY)[0]["generator"] == model_dir.name


def test_no_chat_template_is_an_error_unless_disabled(model_dir, tmp_path):
    import shutil

    from transformers import AutoTokenizer

    m = tmp_path / "base-model"
    shutil.copytree(model_dir, m)
    tok = AutoTokenizer.from_pretrained(m)
    tok.chat_template = None
    for f in m.glob("chat_template*"):
        f.unlink()
    cfg = json.loads((m / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (m / "tokenizer_config.json").write_text(json.dumps(cfg))
    assert not getattr(AutoTokenizer.from_pretrained(m), "chat_template", None)
    with pytest.raises(ValueError, match="has no chat template.*chat_template: false"):
        generate(m, PROMPTS[:1], GREEDY)
    recs = generate(m, PROMPTS[:2], dict(GREEDY, chat_template=False))
    assert len(recs) == 2 and all(isinstance(r["output"], str) for r in recs)


def test_bad_inputs(model_dir, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        generate(tmp_path / "nope", PROMPTS, GREEDY)
    with pytest.raises(ValueError, match="no non-empty 'instruction'"):
        generate(model_dir, [{"id": "x", "instruction": " "}], GREEDY)
    with pytest.raises(ValueError, match="duplicate prompt id 'p0'"):
        generate(model_dir, [PROMPTS[0], PROMPTS[0]], GREEDY)
    with pytest.raises(ValueError, match="unknown generation backend 'tgi'"):
        generate(model_dir, PROMPTS, GREEDY, backend="tgi")
    with pytest.raises(ValueError, match="the prompt set is empty"):
        generate(model_dir, [], GREEDY)


def test_backend_choice_without_cuda(monkeypatch):
    monkeypatch.setattr(G, "cuda_available", lambda: False)
    assert G.choose_backend("auto") == "hf"
    assert G.choose_backend("hf") == "hf"
    with pytest.raises(ValueError, match="needs the vllm package and a visible CUDA device"):
        G.choose_backend("vllm")


def test_cli_writes_generations(model_dir, tmp_path):
    from workflow_scripts.common import read_json, write_jsonl

    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(prompts, PROMPTS)
    out = tmp_path / "out.json"
    log = tmp_path / "logs" / "gen.log"
    G.main(
        [
            "--model",
            str(model_dir),
            "--prompts",
            str(prompts),
            "--out",
            str(out),
            "--preset",
            "greedy",
            "--decoding",
            '{"max_new_tokens": 3}',
            "--limit",
            "2",
            "--batch-size",
            "2",
            "--backend",
            "hf",
            "--log",
            str(log),
        ]
    )
    rows = read_json(out)
    assert [r["id"] for r in rows] == ["p0", "p1"]
    assert all(r["n_tokens"] <= 3 for r in rows)
    assert "generating 2 answers" in log.read_text()


@pytest.mark.gpu
@pytest.mark.skipif(not G.vllm_available(), reason="vLLM needs the vllm package and CUDA")
def test_vllm_greedy_matches_hf(model_dir):  # pragma: no cover - GPU only
    hf = generate(model_dir, PROMPTS, GREEDY, backend="hf", device="cuda")
    vl = generate(model_dir, PROMPTS, GREEDY, backend="vllm")
    agree = sum(a["output"] == b["output"] for a, b in zip(hf, vl))
    assert agree >= len(PROMPTS) - 1  # kernels differ; near-ties may flip one answer
    assert all(set(r) >= {"instruction", "output", "generator", "dataset", "n_tokens", "finish_reason"} for r in vl)
    assert not any(math.isnan(r["n_tokens"]) for r in vl)


def test_readme_command_reproduces_the_workflow_answers_byte_for_byte(model_dir, tmp_path):
    """The `generate` rule's job (stages.generate_job with the default config's params) and the
    README's "Running a step alone" command write the same bytes, provenance included."""
    import subprocess
    import sys
    from pathlib import Path
    from types import SimpleNamespace

    import yaml

    from workflow_scripts import stages
    from workflow_scripts.common import write_jsonl
    from workflow_scripts.config_schema import validate_config
    from workflow_scripts.experiment import Experiment
    from workflow_scripts.generation_provenance import provenance_path

    root = Path(__file__).resolve().parents[1]
    exp = Experiment(validate_config(yaml.safe_load((root / "config.yaml").read_text())), check=False)
    prompts = tmp_path / "prompts" / "eval.jsonl"
    write_jsonl(prompts, PROMPTS * 1 + [dict(p, id=p["id"] + "b") for p in PROMPTS])
    generator = f"{exp.name}/dpo_0.05/alpha1"
    rule_out = tmp_path / "generations" / "eval" / "dpo_0.05" / "alpha1.json"
    smk = SimpleNamespace(
        input=SimpleNamespace(model=str(model_dir), prompts=str(prompts)),
        params=SimpleNamespace(decoding=exp.decoding(), generator=generator),
        output=[str(rule_out)],
    )
    stages.generate_job(smk)
    readme = (root / "README.md").read_text()
    assert "python -m workflow_scripts.generate --model results/demo/extrapolated/dpo_0.05/alpha1 " in readme
    cli_out = tmp_path / "gens.json"
    cmd = [sys.executable, "-m", "workflow_scripts.generate", "--model", str(model_dir), "--prompts", str(prompts)]
    cmd += ["--out", str(cli_out), "--generator", generator]
    r = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert cli_out.read_bytes() == rule_out.read_bytes()
    assert provenance_path(cli_out).read_bytes() == provenance_path(rule_out).read_bytes()
    assert json.loads(provenance_path(cli_out).read_text())["decoding"]["preset"] == exp.decoding()["preset"]


def test_generation_file_passes_alpaca_eval_evaluate_with_the_offline_test_annotator(model_dir, tmp_path):
    """alpaca_eval's own `evaluate` on a demo-world generation file (nested `task`, world ids) against
    a reference file, judged by alpaca_eval's `test_completions` (offline, a fixed verdict)."""
    from pathlib import Path

    import yaml

    ae_main = pytest.importorskip("alpaca_eval.main")
    from workflow_scripts.common import write_json
    from workflow_scripts.world.tasks import build_world, correct_answer, gold_reward

    pkg = Path(ae_main.__file__).parent
    world = build_world(0, 0, 0, 12, 0)["eval"]
    prompts = [dict(p) for p in {p["instruction"]: p for p in world}.values()]  # the prompt set's unique rule
    gens = tmp_path / "gens.json"
    G.generate_to_file(model_dir, prompts, {"preset": "demo", "max_new_tokens": 6}, gens, generator="demo/sft")
    import random

    rng = random.Random(0)
    ref = [
        dict(p, task=json.dumps(p["task"]), output=correct_answer(p["task"], rng), generator="oracle") for p in prompts
    ]
    write_json(tmp_path / "ref.json", ref)
    config = {
        "offline_test": {
            "prompt_template": str(pkg / "evaluators_configs/text_davinci_003/basic_prompt.txt"),
            "fn_completions": "test_completions",
            "completions_kwargs": {"model_name": "test", "value": "Output (b)"},
            "completion_parser_kwargs": {
                "outputs_to_match": {1: r"(?:^|\n) ?Output \(a\)", 2: r"(?:^|\n) ?Output \(b\)"}
            },
            "batch_size": 1,
        }
    }
    (tmp_path / "annotator.yaml").write_text(yaml.safe_dump(config))
    board, annotations = ae_main.evaluate(
        model_outputs=str(gens),
        reference_outputs=str(tmp_path / "ref.json"),
        annotators_config=str(tmp_path / "annotator.yaml"),
        output_path=str(tmp_path / "ae"),
        precomputed_leaderboard=None,
        is_return_instead_of_print=True,
        fn_metric="get_winrate",
        sort_by="win_rate",
    )
    assert board.loc["demo/sft", "n_total"] == len(prompts) == len(annotations)  # one pair per prompt
    assert 0 <= board.loc["demo/sft", "win_rate"] <= 100
    rows = json.loads(gens.read_text())
    assert all(isinstance(r["task"], str) for r in rows)
    assert [gold_reward(r) for r in ref] == [1.0] * len(ref)  # the world's gold reward reads the flat field
