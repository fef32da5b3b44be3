"""Tests for the streaming extrapolation engine, its schemes and the Δ report."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from workflow_scripts.extrapolate import extrapolate
from workflow_scripts.extrapolate import main as cli_main
from workflow_scripts.extrapolate.reference import expo_state
from workflow_scripts.schemes import Scheme, layer_index, tensor_kind

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- helpers
def load_dir(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint folder (single file or sharded with index)."""
    idx = path / "model.safetensors.index.json"
    if idx.exists():
        out = {}
        for f in sorted(set(json.loads(idx.read_text())["weight_map"].values())):
            out.update(load_file(path / f))
        return out
    return load_file(path / "model.safetensors")


def expected(a: dict, s: dict, alpha_of) -> dict:
    """Reference result (extrapolate/reference.py: fp64 math), rounded once to the aligned dtype."""
    ref = expo_state(
        {k: v.double().numpy() for k, v in a.items()}, {k: v.double().numpy() for k, v in s.items()}, alpha_of
    )
    return {k: torch.from_numpy(v).to(a[k].dtype) for k, v in ref.items()}


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int16) if t.element_size() == 2 else t.view(torch.int32)


def reshard(src: Path, dst: Path, groups: list[list[str]]) -> Path:
    """Rewrite ``src``'s tensors into shards holding ``groups`` of names (in that order)."""
    sd = load_dir(src)
    dst.mkdir(parents=True)
    wm = {}
    for i, names in enumerate(groups):
        fname = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        save_file({n: sd[n].contiguous() for n in names}, dst / fname, metadata={"format": "pt"})
        wm.update({n: fname for n in names})
    assert set(wm) == set(sd)
    (dst / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wm}))
    for f in src.iterdir():
        if not f.name.endswith((".safetensors", ".index.json")):
            shutil.copy2(f, dst / f.name)
    return dst


def modify(src: Path, dst: Path, fn) -> Path:
    """Copy a single-file checkpoint, applying ``fn(state_dict) -> state_dict`` to its weights."""
    shutil.copytree(src, dst)
    sd = fn(load_file(src / "model.safetensors"))
    save_file({k: v.contiguous() for k, v in sd.items()}, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def assert_no_output(out: Path) -> None:
    assert not out.exists()
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith((f".tmp-{out.name}", f".old-{out.name}"))]
    assert leftovers == []


@pytest.fixture
def pair(tiny_llama_factory):
    def make(**kw):
        return tiny_llama_factory("sft", seed=0, **kw), tiny_llama_factory("aligned", seed=1, **kw)

    return make


# ----------------------------------------------------------------------------- formula & dtypes
def test_formula_fp32_rounding(pair, tmp_path):
    sft, aligned = pair(layers=2)
    m = extrapolate(sft, aligned, tmp_path / "out", 0.7, chunk_elems=1000)  # many chunks per tensor
    a, s, o = load_dir(aligned), load_dir(sft), load_dir(tmp_path / "out")
    assert set(o) == set(a)
    ref = expected(a, s, lambda k: 0.7)
    for k in a:
        assert o[k].dtype == torch.float32 and o[k].shape == a[k].shape
        torch.testing.assert_close(o[k], ref[k], rtol=2e-7, atol=1e-7)
    assert m["alpha"] == 0.7 and m["dtype"] == "float32" and m["n_tensors"] == len(a)


def test_bf16_in_bf16_out(pair, tmp_path):
    sft, aligned = pair(dtype=torch.bfloat16)
    extrapolate(sft, aligned, tmp_path / "out", 2.0)
    a, s, o = load_dir(aligned), load_dir(sft), load_dir(tmp_path / "out")
    for k in a:
        assert o[k].dtype == torch.bfloat16
        # fp32 math then one rounding: exactly what fp32 reference arithmetic gives
        ref = (a[k].float() + 2.0 * (a[k].float() - s[k].float())).to(torch.bfloat16)
        assert torch.equal(bits(o[k]), bits(ref)), k
    # and not what naive bf16 arithmetic gives (the official script's bug) on at least one tensor
    naive_differs = any(not torch.equal(o[k], a[k] + 2.0 * (a[k] - s[k])) for k in a)
    assert naive_differs


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.float8_e4m3fn])
def test_every_float_dtype_matches_torch_and_ints_are_copied(tmp_path, dtype):
    """Hand-built checkpoints: each float dtype in → same dtype out, equal to torch's fp32 math."""
    g = torch.Generator().manual_seed(0)
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "num_hidden_layers": 2}
    wide = torch.float64 if dtype == torch.float64 else torch.float32
    alpha = 0.75
    dirs = {}
    base = {f"model.layers.{i}.mlp.up_proj.weight": torch.randn(37, 29, generator=g) for i in range(2)}
    base["model.embed_tokens.weight"] = torch.randn(50, 8, generator=g)
    for role, noise in (("sft", 0.0), ("aligned", 0.1)):
        sd = {k: (v + noise * torch.randn(v.shape, generator=g)).to(dtype) for k, v in base.items()}
        sd["model.layers.0.self_attn.position_ids"] = torch.arange(7, dtype=torch.int64) + (role == "aligned")
        d = tmp_path / role
        d.mkdir()
        save_file(sd, d / "model.safetensors", metadata={"format": "pt"})
        (d / "config.json").write_text(json.dumps(cfg))
        dirs[role] = sd
    m = extrapolate(tmp_path / "sft", tmp_path / "aligned", tmp_path / "out", alpha, chunk_elems=100)
    o = load_dir(tmp_path / "out")
    a, s = dirs["aligned"], dirs["sft"]
    for k in base:
        assert o[k].dtype == dtype
        ref = (a[k].to(wide) + alpha * (a[k].to(wide) - s[k].to(wide))).to(dtype)
        assert torch.equal(o[k].view(torch.uint8), ref.view(torch.uint8)), k
    assert torch.equal(o["model.layers.0.self_attn.position_ids"], a["model.layers.0.self_attn.position_ids"])
    assert m["groups"]["copied"] == 1


def test_alpha_zero_is_aligned_bit_for_bit(pair, tmp_path):
    sft, aligned = pair(dtype=torch.bfloat16)
    # include a negative zero, which naive a + 0*(a-s) would turn into +0
    aligned2 = modify(
        aligned,
        tmp_path / "aligned_negzero",
        lambda sd: {
            **sd,
            "model.norm.weight": torch.cat([torch.tensor([-0.0], dtype=torch.bfloat16), sd["model.norm.weight"][1:]]),
        },
    )
    extrapolate(sft, aligned2, tmp_path / "out", 0)
    a, o = load_dir(aligned2), load_dir(tmp_path / "out")
    for k in a:
        assert torch.equal(bits(o[k]), bits(a[k])), k
    assert (aligned2 / "model.safetensors").read_bytes()[-1000:] == (
        tmp_path / "out" / "model.safetensors"
    ).read_bytes()[-1000:]


def test_uniform_equals_groups_at_same_alpha(pair, tmp_path):
    sft, aligned = pair(layers=4)
    extrapolate(sft, aligned, tmp_path / "u", 1.5)
    scheme = Scheme.from_config(
        {
            "groups": [
                {"layers": [0, 0.5], "alpha": 1.5},
                {"layers": [2, 3], "by": "index", "alpha": 1.5, "modules": ["mlp"]},
                {"layers": [2, 4], "by": "index", "alpha": 1.5},
            ],
            "embed": 1.5,
            "norm": 1.5,
            "lm_head": 1.5,
            "default": 1.5,
        }
    )
    extrapolate(sft, aligned, tmp_path / "g", scheme)
    assert (tmp_path / "u/model.safetensors").read_bytes() == (tmp_path / "g/model.safetensors").read_bytes()
    preset = Scheme.from_config({"preset": "thirds", "alphas": [1.5, 1.5, 1.5]})
    extrapolate(sft, aligned, tmp_path / "p", preset)
    assert (tmp_path / "u/model.safetensors").read_bytes() == (tmp_path / "p/model.safetensors").read_bytes()


def test_layerwise_scheme_applies_each_alpha(pair, tmp_path):
    sft, aligned = pair(layers=2)
    spec = {
        "groups": [
            {"layers": [0, 1], "by": "index", "alpha": 2.0},
            {"layers": [1, 2], "by": "index", "alpha": 0.5, "modules": ["mlp"]},
        ],
        "embed": 1.0,
        "norm": 3.0,
        "lm_head": 4.0,
        "default": 0.0,
    }
    m = extrapolate(sft, aligned, tmp_path / "out", spec)
    a, s, o = load_dir(aligned), load_dir(sft), load_dir(tmp_path / "out")

    def alpha_of(k):
        if k.startswith("model.layers.0."):
            return 2.0
        if k.startswith("model.layers.1."):
            return 0.5 if ".mlp." in k else 0.0
        return {"model.embed_tokens.weight": 1.0, "model.norm.weight": 3.0, "lm_head.weight": 4.0}[k]

    ref = expected(a, s, alpha_of)
    for k in a:
        torch.testing.assert_close(o[k], ref[k], rtol=2e-7, atol=1e-7)
    assert m["alpha"] is None
    assert m["groups"] == {"group1": 9, "group2": 3, "default": 6, "embed": 1, "norm": 1, "lm_head": 1}
    assert m["layers"][1]["alphas"] == [0.0, 0.5]
    assert m["scheme"]["kind"] == "groups" and m["scheme"]["lm_head"] == 4.0


# ----------------------------------------------------------------------------- tied / vocab / loading
def test_tied_model_stays_tied_and_loads(pair, tmp_path):
    from transformers import AutoModelForCausalLM

    sft, aligned = pair(tie=True)
    assert "lm_head.weight" not in load_dir(aligned)
    m = extrapolate(sft, aligned, tmp_path / "out", {"preset": "thirds", "alphas": [1, 2, 3]})
    o = load_dir(tmp_path / "out")
    assert "lm_head.weight" not in o
    assert m["tied_embeddings"] is True and "lm_head" not in m["groups"]
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert torch.equal(model.model.embed_tokens.weight, o["model.embed_tokens.weight"])


def test_tied_aligned_with_stored_head_writes_no_head(pair, tmp_path):
    sft, aligned = pair(tie=True)
    aligned2 = modify(
        aligned, tmp_path / "a2", lambda sd: {**sd, "lm_head.weight": sd["model.embed_tokens.weight"].clone()}
    )
    extrapolate(sft, aligned2, tmp_path / "out", 1.0)
    assert "lm_head.weight" not in load_dir(tmp_path / "out")


def test_untied_model_loads_with_from_pretrained(pair, tmp_path):
    from transformers import AutoModelForCausalLM

    sft, aligned = pair(tie=False)
    extrapolate(sft, aligned, tmp_path / "out", 0.3)
    o = load_dir(tmp_path / "out")
    assert "lm_head.weight" in o
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    sd = model.state_dict()
    for k, v in o.items():
        assert torch.equal(sd[k], v), k
    for f in (
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "chat_template.jinja",
        "manifest.json",
    ):
        assert (tmp_path / "out" / f).exists(), f
    assert (tmp_path / "out/config.json").read_bytes() == (aligned / "config.json").read_bytes()


def test_added_vocab_rows_keep_aligned_values(pair, tmp_path):
    sft, aligned = pair(tie=False)
    extra = 3

    def grow(sd):
        g = torch.Generator().manual_seed(5)
        for k in ("model.embed_tokens.weight", "lm_head.weight"):
            sd[k] = torch.cat([sd[k], torch.randn(extra, sd[k].shape[1], generator=g)])
        return sd

    aligned2 = modify(aligned, tmp_path / "a2", grow)
    cfg = json.loads((aligned2 / "config.json").read_text())
    cfg["vocab_size"] += extra
    (aligned2 / "config.json").write_text(json.dumps(cfg))
    m = extrapolate(sft, aligned2, tmp_path / "out", 2.0, chunk_elems=777)
    a, s, o = load_dir(aligned2), load_dir(sft), load_dir(tmp_path / "out")
    assert m["added_vocab_rows"] == extra
    for k in ("model.embed_tokens.weight", "lm_head.weight"):
        v = s[k].shape[0]
        assert o[k].shape == a[k].shape
        assert torch.equal(o[k][v:], a[k][v:])
        torch.testing.assert_close(o[k][:v], a[k][:v] + 2.0 * (a[k][:v] - s[k]), rtol=2e-7, atol=1e-6)


# ----------------------------------------------------------------------------- sharding
def test_differently_sharded_inputs_match_unsharded(pair, tmp_path):
    sft, aligned = pair(layers=3, dtype=torch.bfloat16)
    extrapolate(sft, aligned, tmp_path / "ref", 1.25)
    names = list(load_dir(aligned))
    # sft: 3 shards in reversed name order; aligned: 2 shards split elsewhere, head first
    rev = names[::-1]
    sft_sh = reshard(sft, tmp_path / "sft_sh", [rev[:5], rev[5:17], rev[17:]])
    al_order = ["lm_head.weight"] + [n for n in names if n != "lm_head.weight"]
    al_sh = reshard(aligned, tmp_path / "al_sh", [al_order[:11], al_order[11:]])
    m = extrapolate(sft_sh, al_sh, tmp_path / "out", 1.25, max_shard_bytes=20_000, threads=3, chunk_elems=500)
    ref, o = load_dir(tmp_path / "ref"), load_dir(tmp_path / "out")
    assert set(ref) == set(o)
    for k in ref:
        assert torch.equal(bits(ref[k]), bits(o[k])), k
    # output is sharded with a correct index, in the aligned model's on-disk order
    idx = json.loads((tmp_path / "out/model.safetensors.index.json").read_text())
    assert len(m["output"]["files"]) > 1 and set(idx["weight_map"]) == set(ref)
    assert idx["metadata"]["total_size"] == sum(v.numel() * v.element_size() for v in ref.values())
    assert idx["weight_map"]["lm_head.weight"] == m["output"]["files"][0]
    assert not (tmp_path / "out/model.safetensors").exists()
    assert m["inputs"]["sft"]["files"] and all("bytes" in f for f in m["inputs"]["sft"]["files"])


def test_sharded_output_loads_with_from_pretrained(pair, tmp_path):
    from transformers import AutoModelForCausalLM

    sft, aligned = pair()
    extrapolate(sft, aligned, tmp_path / "out", 0.5, max_shard_bytes=30_000)
    assert (tmp_path / "out/model.safetensors.index.json").exists()
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    o = load_dir(tmp_path / "out")
    sd = model.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in o.items())


# ----------------------------------------------------------------------------- errors
def _expect_error(sft, aligned, out, match, scheme=1.0, **kw):
    with pytest.raises(ValueError, match=match):
        extrapolate(sft, aligned, out, scheme, **kw)
    assert_no_output(out)


def test_error_missing_and_extra_key(pair, tmp_path):
    sft, aligned = pair()
    drop = modify(
        sft,
        tmp_path / "s_missing",
        lambda sd: {k: v for k, v in sd.items() if k != "model.layers.1.mlp.up_proj.weight"},
    )
    _expect_error(
        drop, aligned, tmp_path / "out", r"'model\.layers\.1\.mlp\.up_proj\.weight' is in aligned .* not in sft"
    )
    more = modify(sft, tmp_path / "s_extra", lambda sd: {**sd, "model.layers.0.extra.weight": torch.zeros(3)})
    _expect_error(more, aligned, tmp_path / "out", r"'model\.layers\.0\.extra\.weight' is in sft .* not in aligned")


def test_error_shape_mismatch(pair, tmp_path):
    sft, aligned = pair()
    bad = modify(
        sft,
        tmp_path / "s_shape",
        lambda sd: {
            **sd,
            "model.layers.0.self_attn.q_proj.weight": sd["model.layers.0.self_attn.q_proj.weight"][:, :-1],
        },
    )
    _expect_error(bad, aligned, tmp_path / "out", r"'model\.layers\.0\.self_attn\.q_proj\.weight' has shape")


def test_error_architecture_mismatch(tiny_llama_factory, tmp_path):
    sft = tiny_llama_factory("sft", layers=2)
    aligned = tiny_llama_factory("aligned", layers=3, seed=1)
    _expect_error(sft, aligned, tmp_path / "out", r"architectures differ: config.json num_hidden_layers")
    reward = tiny_llama_factory("rm", reward=True)
    _expect_error(sft, reward, tmp_path / "out2", r"architectures differ: config.json architectures")


@pytest.mark.parametrize("which,val", [("sft", float("nan")), ("aligned", float("inf"))])
def test_error_nan_inf_inputs(pair, tmp_path, which, val):
    sft, aligned = pair()

    def poison(sd):
        t = sd["model.layers.1.self_attn.v_proj.weight"].clone()
        t[3, 4] = val
        return {**sd, "model.layers.1.self_attn.v_proj.weight": t}

    src = sft if which == "sft" else aligned
    bad = modify(src, tmp_path / f"{which}_bad", poison)
    args = (bad, aligned) if which == "sft" else (sft, bad)
    _expect_error(
        *args, tmp_path / "out", rf"'model\.layers\.1\.self_attn\.v_proj\.weight' contains NaN/Inf in the {which}"
    )


def test_error_output_overflow(pair, tmp_path):
    sft, aligned = pair(dtype=torch.float16)
    _expect_error(sft, aligned, tmp_path / "out", r"overflow F16", scheme=1e6)


def test_error_pickle_refused_unless_allowed(pair, tmp_path):
    sft, aligned = pair()
    pk = tmp_path / "aligned_pickle"
    shutil.copytree(aligned, pk)
    torch.save(load_file(pk / "model.safetensors"), pk / "pytorch_model.bin")
    (pk / "model.safetensors").unlink()
    _expect_error(sft, pk, tmp_path / "out", r"pickle.*--allow-pickle")
    extrapolate(sft, pk, tmp_path / "out", 0.5, allow_pickle=True)
    extrapolate(sft, aligned, tmp_path / "ref", 0.5)
    assert (tmp_path / "out/model.safetensors").read_bytes() == (tmp_path / "ref/model.safetensors").read_bytes()
    assert not any(p.name.endswith(".bin") for p in (tmp_path / "out").iterdir())


def test_error_scheme_outside_model_and_out_is_input(pair, tmp_path):
    sft, aligned = pair(layers=2)
    spec = {
        "groups": [{"layers": [0, 1], "by": "index", "alpha": 1}, {"layers": [1, 5], "by": "index", "alpha": 2}],
        "default": 1,
    }
    _expect_error(sft, aligned, tmp_path / "out", r"group 2 layers \[1, 5\) is outside a model with 2 layers", spec)
    with pytest.raises(ValueError, match="would overwrite the aligned checkpoint"):
        extrapolate(sft, aligned, aligned, 1.0)
    assert (aligned / "model.safetensors").exists()


def test_kill_mid_write_leaves_no_finished_folder(pair, tmp_path):
    sft, aligned = pair()
    out = tmp_path / "out"
    code = (
        "import sys, time\n"
        "import workflow_scripts.extrapolate.pipeline as e\n"
        "from workflow_scripts.extrapolate import extrapolate\n"
        "orig = e.pwrite_all\n"
        "def slow(*a):\n"
        "    orig(*a); time.sleep(0.05)\n"
        "e.pwrite_all = slow\n"
        f"extrapolate({str(sft)!r}, {str(aligned)!r}, {str(out)!r}, 1.0, chunk_elems=256)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            partial = [p for p in tmp_path.glob(".tmp-out-*/model.safetensors") if p.stat().st_size > 1000]
            if partial:
                break
            assert proc.poll() is None, "extrapolation finished before it could be killed"
            time.sleep(0.02)
        else:
            pytest.fail("no partial output appeared")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists()
    assert not any(
        (p / "manifest.json").exists() or (p / "config.json").exists()
        for p in tmp_path.iterdir()
        if p.name.startswith(".tmp-out")
    )
    # a rerun after the crash succeeds
    extrapolate(sft, aligned, out, 1.0)
    assert (out / "manifest.json").exists()


def test_failure_mid_stream_cleans_temp(pair, tmp_path, monkeypatch):
    import workflow_scripts.extrapolate.pipeline as e

    sft, aligned = pair()
    calls = {"n": 0}
    orig = e.pwrite_all

    def flaky(*a):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("disk full")
        orig(*a)

    monkeypatch.setattr(e, "pwrite_all", flaky)
    with pytest.raises(OSError, match="disk full"):
        extrapolate(sft, aligned, tmp_path / "out", 1.0, chunk_elems=256)
    assert_no_output(tmp_path / "out")


# ----------------------------------------------------------------------------- manifest & CLI
def test_manifest_contents(pair, tmp_path):
    sft, aligned = pair(layers=3)
    m = extrapolate(sft, aligned, tmp_path / "out", 1.0)
    assert json.loads((tmp_path / "out/manifest.json").read_text()) == m
    for key in (
        "scheme",
        "alpha",
        "inputs",
        "groups",
        "layers",
        "special",
        "added_vocab_rows",
        "dtype",
        "n_tensors",
        "elapsed_s",
    ):
        assert key in m, key
    assert [e["layer"] for e in m["layers"]] == [0, 1, 2]
    a, s = load_dir(aligned), load_dir(sft)
    names = [k for k in a if k.startswith("model.layers.1.")]
    dn = math.sqrt(sum(float(((a[k].double() - s[k].double()) ** 2).sum()) for k in names))
    an = math.sqrt(sum(float((a[k].double() ** 2).sum()) for k in names))
    assert m["layers"][1]["delta_norm"] == pytest.approx(dn, rel=1e-5)
    assert m["layers"][1]["aligned_norm"] == pytest.approx(an, rel=1e-5)
    assert m["layers"][1]["rel_delta"] == pytest.approx(dn / an, rel=1e-5)
    assert set(m["special"]) == {"embed", "norm", "lm_head"}
    cfg = next(f for f in m["inputs"]["aligned"]["files"] if f["name"] == "config.json")
    assert len(cfg["sha256"]) == 64
    assert m["inputs"]["aligned"]["path"] == str(aligned.resolve())
    assert sum(m["groups"].values()) == m["n_tensors"] == len(a)


def test_cli_alpha_and_scheme_file(pair, tmp_path):
    sft, aligned = pair()
    log = tmp_path / "logs/x.log"
    cli_main(
        [
            "--sft",
            str(sft),
            "--aligned",
            str(aligned),
            "--alpha",
            "0.5",
            "--out",
            str(tmp_path / "a"),
            "--log",
            str(log),
        ]
    )
    assert (tmp_path / "a/manifest.json").exists() and log.read_text()
    yml = tmp_path / "scheme.yaml"
    yml.write_text("preset: thirds_5_10_15\n")
    cli_main(["--sft", str(sft), "--aligned", str(aligned), "--scheme", str(yml), "--out", str(tmp_path / "b")])
    m = json.loads((tmp_path / "b/manifest.json").read_text())
    assert m["scheme"]["preset"] == "thirds_5_10_15"
    cli_main(["--sft", str(sft), "--aligned", str(aligned), "--scheme", '{"alpha": 0.5}', "--out", str(tmp_path / "c")])
    assert (tmp_path / "a/model.safetensors").read_bytes() == (tmp_path / "c/model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="unknown scheme preset 'halves'"):
        cli_main(
            [
                "--sft",
                str(sft),
                "--aligned",
                str(aligned),
                "--scheme",
                '{"preset": "halves"}',
                "--out",
                str(tmp_path / "d"),
            ]
        )
    assert_no_output(tmp_path / "d")


def test_cli_runs_as_module_without_torch(pair, tmp_path):
    sft, aligned = pair()
    code = (
        "import sys, runpy; sys.argv = ['x'] + sys.argv[1:]\n"
        "try:\n    runpy.run_module('workflow_scripts.extrapolate', run_name='__main__')\n"
        "finally:\n    print('TORCH' if 'torch' in sys.modules else 'NO_TORCH')\n"
    )
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "--sft",
            str(sft),
            "--aligned",
            str(aligned),
            "--alpha",
            "1",
            "--out",
            str(tmp_path / "o"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o/model.safetensors").exists()
    # torch costs seconds of import and ~200 MB of RSS; the safetensors path does not need it
    assert r.stdout.strip() == "NO_TORCH"


# ----------------------------------------------------------------------------- schemes
def test_scheme_presets_and_fraction_mapping():
    s = Scheme.from_config({"preset": "thirds_5_10_15"})
    assert [s.alpha_for(f"model.layers.{i}.mlp.up_proj.weight", 6)[0] for i in range(6)] == [5, 5, 10, 10, 15, 15]
    assert [s.alpha_for(f"model.layers.{i}.mlp.up_proj.weight", 4)[0] for i in range(4)] == [5, 10, 10, 15]
    assert s.alpha_for("model.embed_tokens.weight", 6) == (5.0, "embed")
    assert s.alpha_for("model.norm.weight", 6) == (15.0, "norm")
    assert s.alpha_for("lm_head.weight", 6) == (15.0, "lm_head")
    t = Scheme.from_config({"preset": "thirds", "alphas": [1, 2, 3], "embed": 0})
    assert t.embed == 0 and t.layer_alphas(3) == [1, 2, 3]
    json.dumps(s.describe())
    u = Scheme.from_config(2)
    assert u.describe()["alpha"] == 2.0 and u.describe()["kind"] == "uniform"
    assert Scheme.from_config({"alpha": 2}) == u


@pytest.mark.parametrize(
    "spec,match",
    [
        ({"preset": "halves"}, "unknown scheme preset 'halves'"),
        ({"preset": "thirds"}, "needs 'alphas"),
        ({"preset": "thirds_5_10_15", "alphas": [1, 2, 3]}, "fixed α"),
        ({"groups": [{"layers": [0, 1], "alpha": 1}]}, "explicit 'default'"),
        ({"groups": [{"layers": [0, 1.5], "alpha": 1}], "default": 0}, r"group 1: fraction range"),
        ({"groups": [{"layers": [0, 1]}], "default": 0}, "group 1: missing 'alpha'"),
        ({"groups": [{"layers": [0, 1], "alpha": "x"}], "default": 0}, "α must be a number"),
        ({"groups": [{"layers": [0, 1], "alpha": 1, "by": "depth"}], "default": 0}, "'by' must be"),
        ({"groups": [{"layers": [0.5, 2], "alpha": 1, "by": "index"}], "default": 0}, "must be integers"),
        ({"groups": [{"layers": [0, 1], "alpha": 1, "modules": "mlp", "extra": 1}], "default": 0}, "unknown key"),
        ({"groups": [], "default": 0}, "non-empty list"),
        (
            {"groups": [{"layers": [0, 1], "alpha": 1}], "default": 0, "embeds": 1},
            r"unknown scheme key\(s\) \['embeds'\]",
        ),
        ({"foo": 1}, "needs one of"),
        (True, "number or a mapping"),
        (float("nan"), "finite"),
        ("abc", "number or a mapping"),
    ],
)
def test_scheme_validation_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        Scheme.from_config(spec)


def test_scheme_validate_for_and_modules():
    s = Scheme.from_config(
        {
            "groups": [
                {"layers": [0, 4], "by": "index", "alpha": 1},
                {"layers": [4, 12], "by": "index", "alpha": 2, "modules": ["mlp"]},
            ],
            "default": 0.5,
        }
    )
    with pytest.raises(ValueError, match=r"group 2 layers \[4, 12\) is outside a model with 6 layers"):
        s.validate_for(6)
    s.validate_for(12)
    assert s.alpha_for("model.layers.5.mlp.down_proj.weight", 12) == (2.0, "group2")
    assert s.alpha_for("model.layers.5.self_attn.q_proj.weight", 12) == (0.5, "default")
    assert s.alpha_for("score.weight", 12) == (0.5, "default")
    assert s.embed == s.norm == s.lm_head == 0.5


def test_tensor_name_conventions():
    assert layer_index("model.layers.7.mlp.up_proj.weight") == 7
    assert tensor_kind("transformer.h.3.attn.c_attn.weight") == ("layer", 3)
    assert tensor_kind("gpt_neox.layers.11.attention.dense.weight") == ("layer", 11)
    assert tensor_kind("transformer.wte.weight") == ("embed", None)
    assert tensor_kind("gpt_neox.embed_in.weight") == ("embed", None)
    assert tensor_kind("embed_out.weight") == ("lm_head", None)
    assert tensor_kind("transformer.ln_f.weight") == ("norm", None)
    assert tensor_kind("gpt_neox.final_layer_norm.bias") == ("norm", None)
    assert tensor_kind("model.layers.0.input_layernorm.weight") == ("layer", 0)
    assert tensor_kind("score.weight") == ("other", None)


# ----------------------------------------------------------------------------- delta report
def test_delta_report_table_and_plot(pair, tmp_path):
    from workflow_scripts.delta_report import delta_table, plot_delta
    from workflow_scripts.delta_report import main as report_main

    sft, aligned = pair(layers=3)
    m = extrapolate(sft, aligned, tmp_path / "out", 1.0)
    df = delta_table(m)
    assert list(df["part"]) == ["layer", "layer", "layer", "embed", "norm", "lm_head"]
    assert df.loc[1, "rel_delta"] == pytest.approx(m["layers"][1]["rel_delta"])
    png = plot_delta(df, tmp_path / "plots/delta.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report_main(["--manifest", str(tmp_path / "out"), "--out-csv", str(tmp_path / "d.csv")])
    assert (tmp_path / "d.csv").read_text().startswith("component,part,layer,delta_norm")
    assert set(df["component"]) == {"language_model"}
    with pytest.raises(ValueError, match="not an extrapolation manifest"):
        delta_table({"alpha": 1})


# ----------------------------------------------------------------------------- fused bf16 kernel
@pytest.fixture
def fresh_kernels(monkeypatch, tmp_path):
    """A private kernel cache and no memoised kernel, before and after the test."""
    from workflow_scripts import kernels

    monkeypatch.setenv("EXPO_KERNEL_CACHE", str(tmp_path / "kcache"))
    kernels._cached.clear()
    yield kernels
    kernels._cached.clear()


def _manifest_norms(m: dict) -> dict:
    norms = {f"layer {e['layer']}": (e["delta_norm"], e["aligned_norm"]) for e in m["layers"]}
    norms.update({k: (v["delta_norm"], v["aligned_norm"]) for k, v in m["special"].items()})
    return norms


@pytest.mark.parametrize("alpha", [2.5, -0.3, 0.0])
def test_fused_kernel_gives_the_numpy_paths_bits(pair, tmp_path, fresh_kernels, monkeypatch, alpha):
    if fresh_kernels.bf16_kernel() is None:
        pytest.skip("no C compiler: the fused kernel cannot be built here")
    sft, aligned = pair(dtype=torch.bfloat16, layers=2)
    # 1001: chunks that are not a multiple of the kernel's 16 lanes or 4096-element blocks
    m_fast = extrapolate(sft, aligned, tmp_path / "fast", alpha, chunk_elems=1001)
    monkeypatch.setenv("EXPO_KERNELS", "numpy")
    fresh_kernels._cached.clear()
    assert fresh_kernels.bf16_kernel() is None
    m_np = extrapolate(sft, aligned, tmp_path / "numpy", alpha, chunk_elems=1001)
    assert (tmp_path / "fast" / "model.safetensors").read_bytes() == (
        tmp_path / "numpy" / "model.safetensors"
    ).read_bytes()
    fast, ref = _manifest_norms(m_fast), _manifest_norms(m_np)
    assert fast.keys() == ref.keys()
    for k in ref:  # same sums, accumulated in a different order
        assert fast[k] == pytest.approx(ref[k], rel=1e-5), k


def test_no_compiler_falls_back_to_numpy(pair, tmp_path, fresh_kernels, monkeypatch, caplog):
    sft, aligned = pair(dtype=torch.bfloat16)
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with caplog.at_level("INFO", logger="workflow_scripts.kernels"):
        extrapolate(sft, aligned, tmp_path / "out", 2.0)
    assert "no C compiler" in caplog.text
    a, s, o = load_dir(aligned), load_dir(sft), load_dir(tmp_path / "out")
    for k in a:
        ref = (a[k].float() + 2.0 * (a[k].float() - s[k].float())).to(torch.bfloat16)
        assert torch.equal(bits(o[k]), bits(ref)), k
    assert not (tmp_path / "kcache").exists()


def test_kernel_is_built_once_into_the_cache(fresh_kernels, tmp_path):
    if fresh_kernels._compiler() is None:
        pytest.skip("no C compiler")
    assert fresh_kernels.bf16_kernel() is not None
    built = sorted((tmp_path / "kcache").iterdir())
    assert len(built) == 1 and built[0].suffix == ".so"  # no temporary files left beside it
    stamp = built[0].stat().st_mtime_ns
    fresh_kernels._cached.clear()
    assert fresh_kernels.bf16_kernel() is not None
    assert sorted((tmp_path / "kcache").iterdir()) == built and built[0].stat().st_mtime_ns == stamp


def test_miscompiled_kernel_is_refused(fresh_kernels, monkeypatch, caplog):
    """A kernel whose bits differ from the reference (here: one that writes nothing) is not used."""

    class FakeLib:
        def __init__(self, path):
            self.expo_bf16 = lambda *args: None

    monkeypatch.setattr(fresh_kernels, "_compiler", lambda: "cc")
    monkeypatch.setattr(fresh_kernels, "_build", lambda cc: Path("/fake.so"))
    monkeypatch.setattr(fresh_kernels.ctypes, "CDLL", FakeLib)
    with caplog.at_level("WARNING", logger="workflow_scripts.kernels"):
        assert fresh_kernels.bf16_kernel() is None
    assert "self-test mismatch" in caplog.text


def test_progress_is_logged_when_stderr_is_not_a_terminal(pair, tmp_path, caplog):
    """In a Snakemake log file progress arrives as log lines (no tqdm carriage returns)."""
    sft, aligned = pair(dtype=torch.bfloat16)
    with caplog.at_level("INFO", logger="workflow_scripts.extrapolate"):
        extrapolate(sft, aligned, tmp_path / "out", 1.0, chunk_elems=500)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("extrapolate: ")]
    assert lines and "100%" in lines[-1] and "B/s" in lines[-1]
    assert len(lines) <= 11  # every 10 %, not every chunk
