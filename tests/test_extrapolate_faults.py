"""The engine against bad headers, unsafe --out targets, killed runs and signals."""

from __future__ import annotations

import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_outputs import default_sighup  # children get SIGHUP at its default, even under nohup

from workflow_scripts.extrapolate import extrapolate, validate_safetensors

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def pair(tiny_llama_factory):
    return tiny_llama_factory("sft", seed=0), tiny_llama_factory("aligned", seed=1)


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith((f".tmp-{out.name}", f".old-{out.name}")))


# ----------------------------------------------------------------------------- headers
def _rewrite_header(src: Path, dst: Path, edit) -> Path:
    """Copy a model folder with its safetensors header edited by ``edit(header) -> header``."""
    import shutil

    shutil.copytree(src, dst)
    raw = (src / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = edit(json.loads(raw[8 : 8 + n]))
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    (dst / "model.safetensors").write_bytes(struct.pack("<Q", len(head)) + head + raw[8 + n :])
    return dst


def _first(header: dict) -> str:
    return min((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])


def _negative_offsets(h):
    k = _first(h)
    b0, b1 = h[k]["data_offsets"]
    h[k]["data_offsets"] = [b0 - 8, b1 - 8]
    return h


def _shared_range(h):
    ks = sorted((k for k in h if k != "__metadata__"), key=lambda k: h[k]["data_offsets"][0])
    same = [k for k in ks if h[k]["shape"] == h[ks[0]]["shape"] and h[k]["dtype"] == h[ks[0]]["dtype"]]
    h[same[1]]["data_offsets"] = list(h[same[0]]["data_offsets"])
    return h


def _negative_dim(h):
    k = next(k for k in h if k != "__metadata__" and len(h[k]["shape"]) == 2)
    h[k]["shape"] = [-h[k]["shape"][0], -h[k]["shape"][1]]
    return h


@pytest.mark.parametrize(
    "edit, match",
    [
        (_negative_offsets, r"invalid data_offsets"),
        (_shared_range, r"overlaps the previous tensor"),
        (_negative_dim, r"invalid shape"),
        (lambda h: {**h, "__metadata__": {"format": 1}}, "__metadata__ must map strings to strings"),
    ],
    ids=["negative-offsets", "shared-byte-range", "negative-dimension", "bad-metadata"],
)
def test_headers_safetensors_refuses_are_refused(pair, tmp_path, edit, match):
    from safetensors import safe_open

    sft, aligned = pair
    bad = _rewrite_header(aligned, tmp_path / "bad", edit)
    with pytest.raises(Exception):  # the library itself refuses these  # noqa: B017
        with safe_open(bad / "model.safetensors", "np") as f:
            [f.get_tensor(k) for k in f.keys()]
    with pytest.raises(ValueError, match=match):
        validate_safetensors(bad / "model.safetensors")
    with pytest.raises(ValueError, match=match):
        extrapolate(sft, bad, tmp_path / "out", 1.0)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path / "out") == []


def test_truncated_file_is_refused(pair, tmp_path):
    import shutil

    sft, aligned = pair
    shutil.copytree(aligned, tmp_path / "cut")
    f = tmp_path / "cut/model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated download"):
        validate_safetensors(f)
    assert len(validate_safetensors(aligned / "model.safetensors")) > 0


# ----------------------------------------------------------------------------- --out
def test_out_replaces_only_an_earlier_output(pair, tmp_path):
    sft, aligned = pair
    user_file = tmp_path / "notes.txt"
    user_file.write_text("mine")
    user_dir = tmp_path / "thesis"
    user_dir.mkdir()
    (user_dir / "chapter1.tex").write_text("mine")
    for target in (user_file, user_dir):
        with pytest.raises(FileExistsError, match="not a folder written by this workflow|not written by this workflow"):
            extrapolate(sft, aligned, target, 1.0)
    assert user_file.read_text() == "mine" and (user_dir / "chapter1.tex").read_text() == "mine"
    extrapolate(sft, aligned, tmp_path / "out", 1.0)
    extrapolate(sft, aligned, tmp_path / "out", 2.0)  # an earlier output is replaced
    assert json.loads((tmp_path / "out/manifest.json").read_text())["alpha"] == 2.0
    (tmp_path / "out/.expo-output").unlink()  # a folder written before outputs carried the marker
    extrapolate(sft, aligned, tmp_path / "out", 3.0)  # is recognised by its engine manifest
    assert json.loads((tmp_path / "out/manifest.json").read_text())["alpha"] == 3.0


def test_stale_temp_folders_are_removed_and_modes_follow_the_umask(pair, tmp_path):
    sft, aligned = pair
    out = tmp_path / "out"
    (tmp_path / ".tmp-out-0123abcd").mkdir()
    dead = tmp_path / ".tmp-out-89abcdef"
    dead.mkdir()
    (dead / ".expo-owner").write_text(f"{os.uname().nodename} 999999999\n")
    alive = tmp_path / ".tmp-out-deadbeef"
    alive.mkdir()
    (alive / ".expo-owner").write_text(f"{os.uname().nodename} {os.getpid()}\n")
    (tmp_path / ".tmp-other-0123abcd").mkdir()
    old = os.umask(0o022)
    try:
        extrapolate(sft, aligned, out, 1.0)
    finally:
        os.umask(old)
    assert leftovers(out) == [".tmp-out-deadbeef"]  # a live run's folder is left alone
    assert (tmp_path / ".tmp-other-0123abcd").exists()
    modes = {f.name: f.stat().st_mode & 0o777 for f in out.iterdir()}
    assert set(modes.values()) == {0o644}, modes
    assert not (out / ".expo-owner").exists()


# ----------------------------------------------------------------------------- kills and signals
SLOW_RUN = (
    "import sys, time\n"
    "import workflow_scripts.extrapolate.pipeline as p\n"
    "orig = p.pwrite_all\n"
    "def slow(*a):\n"
    "    orig(*a); time.sleep(0.01)\n"
    "p.pwrite_all = slow\n"
    "from workflow_scripts.cli import run_cli\n"
    "from workflow_scripts.extrapolate import main\n"
    "run_cli(main, sys.argv[1:])\n"
)


def _start(sft: Path, aligned: Path, out: Path) -> subprocess.Popen:
    args = ["--sft", str(sft), "--aligned", str(aligned), "--alpha", "1.5", "--out", str(out), "--threads", "1"]
    return subprocess.Popen(
        [sys.executable, "-c", SLOW_RUN, *args], cwd=ROOT, stderr=subprocess.DEVNULL, preexec_fn=default_sighup
    )


def _wait_for_partial(tmp_path: Path, proc: subprocess.Popen) -> None:
    deadline = time.time() + 60
    while not list(tmp_path.glob(".tmp-out-*/model.safetensors")):
        assert proc.poll() is None and time.time() < deadline, "no partial output appeared"
        time.sleep(0.01)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_clean_up_like_an_exception(pair, tmp_path, sig):
    sft, aligned = pair
    proc = _start(sft, aligned, tmp_path / "out")
    _wait_for_partial(tmp_path, proc)
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == 128 + sig
    assert not (tmp_path / "out").exists() and leftovers(tmp_path / "out") == []


def test_random_kills_then_rerun_give_identical_results(pair, tmp_path):
    """A dozen SIGKILL/SIGTERM at random moments (start-up, planning, streaming, finishing), each
    followed by a rerun: never a finished-looking corrupt folder, no leftovers, the same bytes."""
    sft, aligned = pair
    ref = tmp_path / "ref"
    extrapolate(sft, aligned, ref, 1.5, threads=1)
    t0 = time.time()
    subprocess.run([sys.executable, "-c", SLOW_RUN, "--sft", str(sft), "--aligned", str(aligned), "--alpha", "1.5",
                    "--out", str(tmp_path / "timing"), "--threads", "1"], cwd=ROOT, check=True,
                   stderr=subprocess.DEVNULL)  # fmt: skip
    duration = time.time() - t0
    rng = random.Random(13)
    out = tmp_path / "out"
    for k in range(12):
        proc = _start(sft, aligned, out)
        time.sleep(rng.uniform(0.0, duration))
        proc.send_signal(signal.SIGKILL if k % 2 == 0 else signal.SIGTERM)
        proc.wait(timeout=30)
        if out.exists():  # only ever a complete output (from this or an earlier run)
            assert (out / "manifest.json").exists()
            assert (out / "model.safetensors").read_bytes() == (ref / "model.safetensors").read_bytes()
        extrapolate(sft, aligned, out, 1.5, threads=1)
        assert leftovers(out) == []
        assert (out / "model.safetensors").read_bytes() == (ref / "model.safetensors").read_bytes()
