"""A catalogue of bad inputs a user can give the stage command lines, one case each.

Every case runs a stage's ``main`` through :func:`workflow_scripts.common.run_cli` (what ``python -m
workflow_scripts.<stage>`` does) and asserts: exit status 1, the last line of stderr is
``error: <one clear line>`` matching the case's message, no traceback, nothing finished-looking at
the output path, no temporary left beside it, and every user file the case set up unchanged.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import re
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import make_tiny_llama

from workflow_scripts import checkpoints, generate, prompts, score, train
from workflow_scripts.common import StageParser, run_cli
from workflow_scripts.extrapolate import main as extrapolate_main

# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_tokenizer_dir) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    return {
        "lm": make_tiny_llama(d / "lm", tiny_tokenizer_dir),
        "rm": make_tiny_llama(d / "rm", tiny_tokenizer_dir, reward=True),
    }


@dataclass
class Env:
    tmp: Path
    models: dict[str, Path]
    monkeypatch: pytest.MonkeyPatch
    protected: list[Path] = field(default_factory=list)

    def file(self, name: str, text: str) -> Path:
        p = self.tmp / "user" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
        self.protected.append(p)
        return p

    def model_copy(self, which: str, name: str, *, drop: tuple[str, ...] = ()) -> Path:
        dst = self.tmp / "user" / name
        shutil.copytree(self.models[which], dst, ignore=shutil.ignore_patterns(*drop) if drop else None)
        self.protected.append(dst)
        return dst


def _jsonl(*rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


P1 = {"id": "a", "instruction": "list three colors"}


def _st_bytes(entries: dict, data_len: int) -> bytes:
    head = json.dumps(entries).encode()
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + b"\0" * data_len


def _bad_weights(env: Env, entries: dict, data_len: int) -> Path:
    """A model folder (config + tokenizer of the tiny LM) whose model.safetensors is ``entries``."""
    d = env.model_copy("lm", "bad_weights")
    (d / "model.safetensors").write_bytes(_st_bytes(entries, data_len))
    return d


def _ckpt_local(env: Env, folder: Path) -> tuple[Callable, list[str], Path]:
    out = env.tmp / "out" / "ckpt"
    return checkpoints.main, ["--spec", json.dumps({"source": "local", "path": str(folder)}), "--out", str(out)], out


def _gen(env: Env, model: Path, prompts_path: Path, *extra: str) -> tuple[Callable, list[str], Path]:
    out = env.tmp / "out" / "gens.json"
    argv = ["--model", str(model), "--prompts", str(prompts_path), "--out", str(out), "--preset", "greedy"]
    return generate.main, [*argv, *extra], out


def _score(env: Env, rm: Path, gens: Path | None = None) -> tuple[Callable, list[str], Path]:
    out = env.tmp / "out" / "scores.json"
    gens = gens or env.file("gens.json", json.dumps([{"id": "a", "instruction": "hi", "output": "red"}]))
    return score.main, ["--rm", str(rm), "--generations", str(gens), "--out", str(out)], out


def _prompts(env: Env, path: Path, *extra: str) -> tuple[Callable, list[str], Path]:
    out = env.tmp / "out" / "prompts.jsonl"
    return prompts.main, ["--source", "file", "--path", str(path), "--out", str(out), *extra], out


# ------------------------------------------------------------------------------ the catalogue


def _enospc(env: Env):
    import workflow_scripts.common as common

    real_open = open

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.fh.close()

        def write(self, _):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fake_open(path, mode="r", *a, **k):
        fh = real_open(path, mode, *a, **k)
        return Full(fh) if "w" in mode else fh

    env.monkeypatch.setattr(common, "open", fake_open, raising=False)
    return _prompts(env, env.file("p.jsonl", _jsonl(P1)))


def _erofs(env: Env):
    import workflow_scripts.outputs as outputs

    def ro(path, *a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    env.monkeypatch.setattr(outputs.os, "open", ro)
    return _prompts(env, env.file("p.jsonl", _jsonl(P1)))


def _out_is_user_file(env: Env):
    main, argv, _ = _ckpt_local(env, env.models["lm"])
    target = env.file("notes.txt", "my thesis")
    argv[argv.index("--out") + 1] = str(target)
    return main, argv, target


def _out_is_user_folder(env: Env):
    main, argv, _ = _ckpt_local(env, env.models["lm"])
    target = env.tmp / "user" / "papers"
    env.file("papers/draft.tex", "my paper")
    argv[argv.index("--out") + 1] = str(target)
    return main, argv, target


def _out_is_folder_for_a_file(env: Env):
    main, argv, _ = _prompts(env, env.file("p.jsonl", _jsonl(P1)))
    target = env.tmp / "user" / "results"
    env.file("results/keep.csv", "a,b")
    argv[argv.index("--out") + 1] = str(target)
    return main, argv, target


def _symlink_loop_file(env: Env):
    d = env.model_copy("lm", "looped", drop=("model.safetensors",))
    (d / "model.safetensors").symlink_to(d / "model.safetensors")
    return _ckpt_local(env, d)


def _symlink_loop_source(env: Env):
    link = env.tmp / "user" / "loop"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(link)
    return _ckpt_local(env, link)


def _truncated(env: Env):
    d = env.model_copy("lm", "trunc")
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-100])
    return _ckpt_local(env, d)


def _mismatched_index(env: Env):
    d = env.model_copy("lm", "indexed")
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"nope.weight": "model.safetensors"}}))
    return _ckpt_local(env, d)


def _pickle_payload(env: Env):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(env.tmp / "pwned"),))

    d = env.model_copy("rm", "evil_rm", drop=("model.safetensors",))
    (d / "pytorch_model.bin").write_bytes(pickle.dumps(Evil()))
    return _score(env, d)


def _long_decoding_json(env: Env):
    return _gen(env, env.models["lm"], env.file("p.jsonl", _jsonl(P1)), "--decoding", "{max_new_tokens: 3}")


def _pref_missing_chosen(env: Env):
    data = env.file("prefs.jsonl", _jsonl({"prompt": "hi", "rejected": "no"}))
    out = env.tmp / "out" / "dpo"
    argv = ["preference", "--base", str(env.models["lm"]), "--method", "dpo", "--data", str(data), "--out", str(out)]
    return train.main, argv, out


def _dpo_on_reward_model(env: Env):
    data = env.file("prefs.jsonl", _jsonl({"prompt": "hi", "chosen": "yes", "rejected": "no"}))
    out = env.tmp / "out" / "dpo"
    argv = ["preference", "--base", str(env.models["rm"]), "--method", "dpo", "--data", str(data), "--out", str(out)]
    return train.main, argv, out


def _extrapolate(env: Env, *extra: str, sft: Path | None = None) -> tuple[Callable, list[str], Path]:
    out = env.tmp / "out" / "alpha"
    sft = sft or env.models["lm"]
    argv = ["--sft", str(sft), "--aligned", str(env.models["lm"]), "--out", str(out), *extra]
    return extrapolate_main, argv, out


def _extrapolate_pickle(env: Env):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(env.tmp / "pwned"),))

    d = env.model_copy("lm", "evil_sft", drop=("model.safetensors",))
    (d / "pytorch_model.bin").write_bytes(pickle.dumps(Evil()))
    return _extrapolate(env, "--alpha", "1", "--allow-pickle", sft=d)


def _extrapolate_into_user_folder(env: Env):
    main, argv, out = _extrapolate(env, "--alpha", "1")
    out.mkdir(parents=True)
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    env.protected.append(out)
    return main, argv, out


F32 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
CASES: dict[str, tuple[Callable[[Env], tuple], str]] = {
    # prompt files
    "malformed_jsonl": (
        lambda e: _prompts(e, e.file("p.jsonl", _jsonl(P1, '{"id": "b", "instruction": '))),
        r"p\.jsonl:2: not valid JSON",
    ),
    "missing_instruction": (
        lambda e: _prompts(e, e.file("p.jsonl", _jsonl({"id": "a"}))),
        r"entry #0: no non-empty 'instruction' or 'prompt' field",
    ),
    "blank_instruction": (
        lambda e: _prompts(e, e.file("p.jsonl", _jsonl({"id": "a", "instruction": "  \t"}))),
        r"entry #0: no non-empty 'instruction'",
    ),
    "duplicate_ids": (
        lambda e: _prompts(e, e.file("p.jsonl", _jsonl(P1, P1))),
        r"duplicate prompt id 'a'",
    ),
    "empty_prompt_file": (lambda e: _prompts(e, e.file("p.jsonl", "")), r"p\.jsonl is empty"),
    "whitespace_prompt_file": (lambda e: _prompts(e, e.file("p.jsonl", " \n\n\t \n")), r"p\.jsonl is empty"),
    "empty_json_list": (lambda e: _prompts(e, e.file("p.json", "[]")), r"p\.json holds no records"),
    "not_objects": (lambda e: _prompts(e, e.file("p.json", "[1, 2]")), r"entry #0 is not a JSON object"),
    "missing_prompt_file": (lambda e: _prompts(e, e.tmp / "user" / "nope.jsonl"), r"nope\.jsonl does not exist"),
    "zero_limit": (lambda e: _prompts(e, e.file("p.jsonl", _jsonl(P1)), "--limit", "0"), r"positive integer"),
    "generate_malformed_jsonl": (
        lambda e: _gen(e, e.models["lm"], e.file("p.jsonl", _jsonl(P1, "{"))),
        r"p\.jsonl:2: not valid JSON",
    ),
    "generate_empty_prompts": (
        lambda e: _gen(e, e.models["lm"], e.file("p.jsonl", "\n \n")),
        r"p\.jsonl is empty",
    ),
    "generate_decoding_not_json": (_long_decoding_json, r"--decoding is not valid JSON"),
    # outputs
    "disk_full": (_enospc, r"No space left on device.*the filesystem is full"),
    "read_only_output": (_erofs, r"Read-only file system.*choose a writable output path"),
    "out_is_a_user_file": (_out_is_user_file, r"notes\.txt already exists and is a file, not a folder"),
    "out_is_an_unrelated_folder": (_out_is_user_folder, r"papers exists and was not written by this workflow"),
    "file_out_is_a_folder": (_out_is_folder_for_a_file, r"results already exists and is not a regular file"),
    # checkpoints and weights
    "truncated_safetensors": (
        _truncated,
        r"model\.safetensors: header describes \d+ data bytes but the file holds \d+ \(truncated download\?\)",
    ),
    "negative_data_offsets": (
        lambda e: _ckpt_local(e, _bad_weights(e, {"w": {**F32, "data_offsets": [-8, 0]}}, 8)),
        r"tensor 'w' has invalid data_offsets \[-8, 0\]",
    ),
    "overlapping_tensors": (
        lambda e: _ckpt_local(e, _bad_weights(e, {"a": F32, "b": F32}, 8)),
        r"tensor '[ab]' data offsets \[0, 8\] overlaps the previous tensor",
    ),
    "negative_dimension": (
        lambda e: _ckpt_local(e, _bad_weights(e, {"w": {**F32, "shape": [-2, -1]}}, 8)),
        r"invalid shape \[-2, -1\] \(dimensions must be ints >= 0\)",
    ),
    "dtype_size_mismatch": (
        lambda e: _ckpt_local(e, _bad_weights(e, {"w": {**F32, "shape": [3]}}, 8)),
        r"data offsets \[0, 8\] do not match its shape \[3\] and dtype F32",
    ),
    "mismatched_shard_index": (_mismatched_index, r"tensor 'nope\.weight' is not in model\.safetensors"),
    "symlink_loop_in_model": (_symlink_loop_file, r"model\.safetensors is a symlink loop"),
    "symlink_loop_source": (_symlink_loop_source, r"is a broken symlink or a symlink loop"),
    "spec_not_json": (
        lambda e: (checkpoints.main, ["--spec", "{source: local}", "--out", str(e.tmp / "out" / "c")], e.tmp / "out"),
        r"--spec is not valid JSON",
    ),
    # model kinds
    "causal_lm_as_reward_model": (
        lambda e: _score(e, e.models["lm"]),
        r"is a LlamaForCausalLM, not a sequence classifier",
    ),
    "reward_model_without_head": (
        lambda e: _score(e, _retag(e.model_copy("lm", "headless_rm"), "LlamaForSequenceClassification")),
        r"lacks the head weights \['score\.weight'\] that a reward model needs",
    ),
    "reward_model_to_generate": (
        lambda e: _gen(e, e.models["rm"], e.file("p.jsonl", _jsonl(P1))),
        r"is a LlamaForSequenceClassification without a language-model head",
    ),
    "causal_lm_without_lm_head": (
        lambda e: _gen(e, _strip(e.model_copy("lm", "no_head"), "lm_head.weight"), e.file("p.jsonl", _jsonl(P1))),
        r"lacks the head weights \['lm_head\.weight'\]",
    ),
    "missing_tokenizer": (
        lambda e: _gen(
            e,
            e.model_copy("lm", "no_tok", drop=("tokenizer*", "special_tokens_map.json", "chat_template*")),
            e.file("p.jsonl", _jsonl(P1)),
        ),
        r"no_tok has no tokenizer",
    ),
    "malicious_pickle": (_pickle_payload, r"pickle|unpickl|Weights only load failed"),
    "generations_not_json": (lambda e: _score(e, e.models["rm"], e.file("g.json", "[{")), r"g\.json: not valid JSON"),
    # the extrapolation engine's command line
    "extrapolate_alpha_nan": (lambda e: _extrapolate(e, "--alpha", "nan"), r"α must be finite, got nan"),
    "extrapolate_alpha_inf": (lambda e: _extrapolate(e, "--alpha", "-inf"), r"α must be finite, got -inf"),
    "extrapolate_malicious_pickle_allowed": (_extrapolate_pickle, r"refused to unpickle a weights file"),
    "extrapolate_out_is_a_user_folder": (
        _extrapolate_into_user_folder,
        r"alpha exists and was not written by this workflow",
    ),
    # training data
    "preference_data_missing_chosen": (_pref_missing_chosen, r"chosen"),
    "dpo_base_is_a_reward_model": (_dpo_on_reward_model, r"without a language-model head"),
}


def _retag(folder: Path, arch: str) -> Path:
    cfg = json.loads((folder / "config.json").read_text())
    cfg["architectures"] = [arch]
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def _strip(folder: Path, tensor: str) -> Path:
    from safetensors.torch import load_file, save_file

    sd = load_file(folder / "model.safetensors")
    del sd[tensor]
    save_file(sd, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def _fingerprint(paths: list[Path]) -> dict[str, str]:
    out = {}
    for root in paths:
        files = [root] if not root.is_dir() or root.is_symlink() else sorted(root.rglob("*"))
        for f in files:
            if f.is_symlink():
                out[str(f)] = "link:" + os.readlink(f)
            elif f.is_file():
                out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_one_line_and_writes_nothing(case, tmp_path, models, monkeypatch, capsys):
    build, message = CASES[case]
    env = Env(tmp_path, models, monkeypatch)
    main, argv, out = build(env)
    before = _fingerprint(env.protected)
    existed = out.exists() or out.is_symlink()
    with pytest.raises(SystemExit) as exit_:
        run_cli(main, argv)
    monkeypatch.undo()
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert exit_.value.code == 1, err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    assert lines[-1].startswith("error: "), lines[-3:]
    assert re.search(message, lines[-1]), lines[-1]
    assert _fingerprint(env.protected) == before  # no user data touched
    if not existed:
        assert not out.exists(), f"{out} was written"
    parent = out.parent if out.parent.exists() else None
    if parent is not None:
        assert not [p.name for p in parent.iterdir() if p.name.startswith((".tmp-", ".old-"))]
    assert not (tmp_path / "pwned").exists()


# ------------------------------------------------------------------------------ documented behaviour


def test_debug_brings_the_traceback_back(tmp_path, capsys, monkeypatch):
    p = tmp_path / "p.jsonl"
    p.write_text("{\n")
    with pytest.raises(SystemExit):
        run_cli(prompts.main, ["--source", "file", "--path", str(p), "--out", str(tmp_path / "o.jsonl"), "--debug"])
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: ")
    monkeypatch.setenv("EXPO_DEBUG", "1")
    with pytest.raises(SystemExit):
        run_cli(prompts.main, ["--source", "file", "--path", str(p), "--out", str(tmp_path / "o.jsonl")])
    assert "Traceback" in capsys.readouterr().err


def test_bugs_keep_their_traceback():
    def main(argv):
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        run_cli(main, [])


def test_engine_takes_a_negative_exponent_alpha(models, tmp_path):
    """``--alpha -1e-3`` is a value (a tiny step back towards the SFT model), not an unknown option."""
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        run_cli(extrapolate_main, ["--sft", str(models["lm"]), "--aligned", str(models["lm"]), "--alpha", "-1e-3"]
                + ["--out", str(out)])  # fmt: skip
    assert exit_.value.code == 0
    assert json.loads((out / "manifest.json").read_text())["alpha"] == -0.001


@pytest.mark.parametrize("text,value", [("-1e-3", -0.001), ("-0.5", -0.5), ("-2", -2.0), ("-1E+2", -100.0)])
def test_negative_numbers_are_values_not_options(text, value):
    ap = StageParser()
    ap.add_argument("--alpha", type=float)
    assert ap.parse_args(["--alpha", text]).alpha == value


def test_over_long_prompt_is_cut_and_recorded(models, tmp_path, caplog):
    """The documented choice: a prompt longer than the model's positions (256 here, minus room for
    the answer) has its instruction cut on the right; the record says by how many tokens."""
    long = {"id": "long", "instruction": " ".join(["red blue green"] * 150)}
    recs = generate.generate(models["lm"], [P1, long], {"preset": "greedy", "max_new_tokens": 4})
    assert "prompt_truncated_tokens" not in recs[0]
    assert recs[1]["prompt_truncated_tokens"] > 200 and recs[1]["instruction"] == long["instruction"]
    assert "1 of 2 prompts were longer than 252 tokens" in caplog.text
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(models["lm"])
    ids, cut = generate.fit_prompt_ids(tok, long["instruction"], 252)
    assert len(ids) <= 252 and cut == recs[1]["prompt_truncated_tokens"]
    assert ids[-2:] == generate.render_prompt_ids(tok, "x")[-2:]  # the assistant header is kept


def test_snakemake_job_log_ends_with_the_error_line(tmp_path):
    """Through Snakemake, the same one line is the last line of the job's log (no traceback)."""
    import yaml
    from test_workflow import SMALL, make_workdir, snakemake

    cfg = yaml.safe_load(SMALL.read_text())
    cfg["prompt_sets"]["blank"] = {"source": "file", "path": "blank.jsonl"}
    wd = make_workdir(tmp_path, cfg)
    (wd / "blank.jsonl").write_text("\n  \n")
    proc = snakemake(wd, "-p", "results/small/prompts/blank.jsonl", check=False)  # -p ends --resources
    assert proc.returncode != 0
    assert "Error in rule prompt_set" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]
    log = (wd / "results" / "small" / "logs" / "prompts" / "blank.log").read_text()
    assert "Traceback" not in log
    assert (
        log.strip().splitlines()[-1]
        == "error: prompt file blank.jsonl is empty (or only whitespace); it needs at least one record"
    )
    assert not (wd / "results" / "small" / "prompts" / "blank.jsonl").exists()
