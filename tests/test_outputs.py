"""Atomic outputs: only our own outputs are replaced, stale temporaries go, signals clean up, umask."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from workflow_scripts.outputs import (
    OUTPUT_MARKER,
    atomic_dir,
    atomic_path,
    check_replaceable,
    remove_stale_temporaries,
)

ROOT = Path(__file__).resolve().parents[1]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_folder_written_twice_is_replaced(tmp_path):
    out = tmp_path / "m"
    for text in ("1", "2"):
        with atomic_dir(out) as tmp:
            (tmp / "w").write_text(text)
    assert (out / "w").read_text() == "2" and (out / OUTPUT_MARKER).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


@pytest.mark.parametrize("kind", ["file", "folder", "symlink"])
def test_unrelated_output_is_never_replaced(tmp_path, kind):
    out = tmp_path / "precious"
    if kind == "file":
        out.write_text("user data")
    elif kind == "folder":
        out.mkdir()
        (out / "thesis.tex").write_text("user data")
    else:
        (tmp_path / "elsewhere").mkdir()
        out.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FileExistsError, match="remove it yourself or choose another output path"):
        with atomic_dir(out) as tmp:
            (tmp / "w").write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        {"precious"} | ({"elsewhere"} if kind == "symlink" else set())
    )
    if kind == "file":
        assert out.read_text() == "user data"
    if kind == "folder":
        assert (out / "thesis.tex").read_text() == "user data"


def test_empty_folder_may_be_filled(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    with atomic_dir(out) as tmp:
        (tmp / "w").write_text("x")
    assert (out / "w").is_file()


def test_file_output_never_replaces_a_folder(tmp_path):
    (tmp_path / "gens.json").mkdir()
    with pytest.raises(FileExistsError, match="not a regular file"):
        check_replaceable(tmp_path / "gens.json", kind="file")
    with pytest.raises(FileExistsError):
        with atomic_path(tmp_path / "gens.json") as tmp:
            tmp.write_text("[]")
    assert (tmp_path / "gens.json").is_dir()


def test_stale_temporaries_of_dead_processes_removed(tmp_path):
    from workflow_scripts.outputs import _host

    out = tmp_path / "alpha1"
    dead = _dead_pid()
    stale_dir = tmp_path / f".tmp-alpha1-{_host()}.{dead}-0123abcd"
    stale_dir.mkdir()
    (stale_dir / "model.safetensors").write_bytes(b"partial")
    legacy = tmp_path / ".tmp-alpha1-deadbeef"
    legacy.mkdir()
    live = tmp_path / f".tmp-alpha1-{_host()}.{os.getppid()}-0123abcd"  # a live process: kept
    live.mkdir()
    other = tmp_path / f".tmp-alpha1-x-{_host()}.{dead}-0123abcd"  # another output's: kept
    other.mkdir()
    with atomic_dir(out) as tmp:
        (tmp / "w").write_text("x")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["alpha1", live.name, other.name])


def test_other_host_temporaries_removed_only_when_old(tmp_path):
    out = tmp_path / "gens.json"
    fresh = tmp_path / ".tmp-gens.json-otherhost.12-0123abcd"
    old = tmp_path / ".tmp-gens.json-otherhost.13-0123abcd"
    fresh.write_text("x")
    old.write_text("x")
    t = time.time() - 4 * 24 * 3600
    os.utime(old, (t, t))
    assert remove_stale_temporaries(out) == [old.name]
    assert fresh.exists()


def test_files_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "a.json") as tmp:
            tmp.write_text("{}")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


def default_sighup() -> None:
    """Child processes start with SIGHUP at its default, as in a terminal: under ``nohup`` the
    parent ignores it and the stage (rightly) leaves an ignored signal ignored."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_clean_up(tmp_path, sig):
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from workflow_scripts.common import atomic_dir, run_cli
        def main(argv):
            with atomic_dir({str(tmp_path / "out")!r}) as tmp:
                (tmp / "part").write_text("x")
                print("ready", flush=True)
                time.sleep(60)
        run_cli(main)
        """
    )
    p = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sighup,
    )
    assert p.stdout.readline().strip() == "ready"
    p.send_signal(sig)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 128 + sig
    assert err.strip().splitlines()[-1] == f"error: interrupted by {signal.Signals(sig).name}"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "name, manifest, ours",
    [
        ("manifest.json", {"formula": "theta = theta_aligned + alpha * (theta_aligned - theta_sft)"}, True),
        ("source.json", {"files": [], "total_bytes": 0}, True),
        ("training_manifest.json", {"steps": 3}, True),
        ("manifest.json", {"name": "my project"}, False),
        ("source.json", "not json", False),
    ],
)
def test_folders_written_before_the_marker_are_recognised_by_their_manifest(tmp_path, name, manifest, ours):
    from workflow_scripts.outputs import atomic_dir, is_workflow_output

    d = tmp_path / "old"
    d.mkdir()
    (d / "model.safetensors").write_bytes(b"x")
    (d / name).write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    assert is_workflow_output(d) is ours
    if ours:
        with atomic_dir(d) as tmp:
            (tmp / "new").write_text("1")
        assert (d / "new").is_file() and not (d / "model.safetensors").exists()
    else:
        with pytest.raises(FileExistsError, match="not written by this workflow"):
            with atomic_dir(d):
                pass
        assert (d / "model.safetensors").read_bytes() == b"x"
