"""Atomic outputs: a job's result appears complete at its final path, or not at all.

Why each rule:

* **Temporary sibling, then rename.** A killed or failed job leaves no ``final`` that looks
  finished (Snakemake, vLLM and ``from_pretrained`` would all accept a half-written folder). The
  temporary path sits next to ``final`` so the rename stays on one filesystem.
* **Only our own outputs are replaced.** ``--out`` pointing at a user's file or folder must never
  delete it: a folder is replaced only when it carries :data:`OUTPUT_MARKER` (written into every
  folder made here) or is empty; a file output never replaces a folder or a non-regular file.
* **Stale temporaries are removed.** A SIGKILL leaves a ``.tmp-<name>-<host>.<pid>-<rand>``
  sibling; the next write of the same output removes those whose process is gone (same host) or
  that are older than :data:`STALE_OTHER_HOST_S` (another host of a shared filesystem).
* **SIGTERM/SIGHUP clean up like an exception.** Schedulers send them before SIGKILL; they are
  turned into :class:`Terminated` so every ``except BaseException`` cleanup runs.
* **The umask decides permissions** (0644 files and 0755 folders by default), so teammates on a
  shared results folder can read them.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

OUTPUT_MARKER = ".expo-output"
"""Hidden file inside every folder written by :func:`atomic_dir`: "this folder is ours to replace"."""
_MARKER_TEXT = "written by the ExPO workflow; the folder may be replaced by a rerun\n"
OWNER_MARK = ".expo-owner"
"""``host pid`` of the process writing a temporary folder (the engine writes one into its own)."""
STALE_OTHER_HOST_S = 3 * 24 * 3600
"""Age after which a temporary of another host is assumed dead (no way to ask that host)."""


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM/SIGHUP, so cleanups run as for any exception."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


def _raise_terminated(signum: int, frame) -> None:  # noqa: ARG001 - signal handler signature
    raise Terminated(signum)


def install_signal_handlers() -> None:
    """Turn SIGTERM/SIGHUP into :class:`Terminated` (main thread only; custom handlers are kept)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _raise_terminated)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()).replace(".", "_") or "host"


def _tmp_name(final: Path) -> str:
    return f".tmp-{final.name}-{_host()}.{os.getpid()}-{secrets.token_hex(4)}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _old(entry: Path) -> bool:
    try:
        return time.time() - entry.lstat().st_mtime > STALE_OTHER_HOST_S
    except FileNotFoundError:
        return False


def _is_stale(host: str, pid: int, entry: Path) -> bool:
    """Dead on this host, or (another host: no way to ask it) older than :data:`STALE_OTHER_HOST_S`."""
    if host == _host():
        return pid != os.getpid() and not _pid_alive(pid)
    return _old(entry)


def _legacy_is_stale(entry: Path) -> bool:
    """A temporary without host and pid in its name: stale unless an owner mark inside it (``host
    pid``, written by the extrapolation engine) names a live process, or a process on another host."""
    try:
        host, pid = (entry / OWNER_MARK).read_text(encoding="utf-8").split()
    except (OSError, ValueError):
        return True
    if host != socket.gethostname():
        return _old(entry)
    return not pid.isdigit() or not _pid_alive(int(pid))


def remove_stale_temporaries(final: str | os.PathLike) -> list[str]:
    """Remove leftovers of earlier killed writes of ``final``; return their names.

    Matches exactly the names this module makes for ``final`` (``.tmp-<name>-<host>.<pid>-<hex>``,
    plus ``.old-<name>-<hex>`` from a kill between the two renames of a replacement, and the
    ``.tmp-<name>-<8 chars>`` names of earlier versions), never another output's temporaries.
    """
    final = Path(final)
    if not final.parent.is_dir():
        return []
    name = re.escape(final.name)
    ours = re.compile(rf"\.tmp-{name}-(?P<host>[A-Za-z0-9_]+)\.(?P<pid>\d+)-[0-9a-f]{{8}}")
    legacy = re.compile(rf"\.(tmp|old)-{name}-[A-Za-z0-9_]{{8}}")
    removed = []
    for entry in final.parent.iterdir():
        m = ours.fullmatch(entry.name)
        if m:
            stale = _is_stale(m["host"], int(m["pid"]), entry)
        elif legacy.fullmatch(entry.name):
            stale = _legacy_is_stale(entry)
        else:
            continue
        if stale:
            _remove(entry)
            removed.append(entry.name)
    if removed:
        log.info("removed %d stale temporary file(s) of %s from killed runs: %s", len(removed), final, removed)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _json_object(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


LEGACY_MANIFESTS: dict[str, Callable[[dict], bool]] = {
    # the extrapolation engine's manifest.json
    "manifest.json": lambda m: str(m.get("formula", "")).startswith("theta = theta_aligned + alpha"),
    # the checkpoints stage's record of what it materialised
    "source.json": lambda m: isinstance(m.get("files"), list) and "total_bytes" in m,
    # a trained model's manifest
    "training_manifest.json": lambda m: isinstance(m.get("steps"), int),
}
"""Manifests that identify a folder this workflow wrote before folders carried :data:`OUTPUT_MARKER`."""


def is_workflow_output(path: str | os.PathLike) -> bool:
    """True for a folder written by :func:`atomic_dir` (it has the marker), an empty folder, or a
    folder that holds one of this workflow's manifests (:data:`LEGACY_MANIFESTS`: written before
    the marker existed; results of earlier versions can still be replaced by a rerun)."""
    path = Path(path)
    if not path.is_dir() or path.is_symlink():
        return False
    if (path / OUTPUT_MARKER).is_file() or not any(path.iterdir()):
        return True
    return any(ours(_json_object(path / name)) for name, ours in LEGACY_MANIFESTS.items() if (path / name).is_file())


def check_replaceable(final: str | os.PathLike, *, kind: str = "dir") -> None:
    """Refuse an output path that holds something this workflow did not write.

    Called by :func:`atomic_dir` / :func:`atomic_path` before anything is written, and public so a
    stage can fail at once, before hours of work, when its ``--out`` is wrong.
    """
    final = Path(final)
    if not (final.exists() or final.is_symlink()):
        return
    if kind == "dir":
        if final.is_symlink() or not final.is_dir():
            what = "a symlink" if final.is_symlink() else "a file"
            raise FileExistsError(
                f"output {final} already exists and is {what}, not a folder written by this workflow; "
                "remove it yourself or choose another output path"
            )
        if not is_workflow_output(final):
            raise FileExistsError(
                f"output folder {final} exists and was not written by this workflow (no {OUTPUT_MARKER} "
                "marker or workflow manifest); it is never replaced: remove it yourself or choose another output path"
            )
    elif final.is_dir() or not final.is_file():
        raise FileExistsError(
            f"output {final} already exists and is not a regular file; remove it yourself or choose another output path"
        )


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling folder that becomes ``final`` only if the block succeeds.

    ``final`` may already exist only as a previous output of this workflow (see
    :func:`check_replaceable`); it is then replaced in two renames, so readers never see a mix.
    """
    final = Path(final)
    check_replaceable(final, kind="dir")
    if not overwrite and final.exists():
        raise FileExistsError(f"{final} already exists")
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final)
    install_signal_handlers()
    tmp = final.parent / _tmp_name(final)
    tmp.mkdir()
    try:
        yield tmp
        (tmp / OUTPUT_MARKER).write_text(_MARKER_TEXT, encoding="utf-8")
        _commit_dir(tmp, final)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _name_output(exc, tmp, final)
        raise


def _commit_dir(tmp: Path, final: Path) -> None:
    check_replaceable(final, kind="dir")  # again: the block may have run for hours
    if not (final.exists() or final.is_symlink()):
        os.replace(tmp, final)
        return
    old = final.parent / f".old-{final.name}-{secrets.token_hex(4)}"
    os.replace(final, old)
    os.replace(tmp, final)
    _remove(old)


def _name_output(exc: BaseException, tmp: Path, final: Path) -> None:
    """Make a disk error name the output the user asked for, not our temporary (or nothing)."""
    if not isinstance(exc, OSError) or exc.errno is None or not exc.strerror:
        return  # OSError("text") prints its filename only in errno form: leave such errors alone
    if exc.filename is None or str(exc.filename).startswith(str(tmp)):
        exc.filename = str(final)


def _create_file(path: Path) -> None:
    """Create an empty file with mode 0666 & ~umask (``mkstemp`` would force 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    os.close(fd)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path in ``final``'s folder; rename it to ``final`` on success."""
    final = Path(final)
    check_replaceable(final, kind="file")
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final)
    install_signal_handlers()
    tmp = final.parent / _tmp_name(final)
    try:
        _create_file(tmp)
        yield tmp
        check_replaceable(final, kind="file")
        os.replace(tmp, final)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        _name_output(exc, tmp, final)
        raise


def disk_error_hint(exc: OSError) -> str | None:
    """A how-to-fix sentence for the OS errors a user causes (full disk, read-only, permissions)."""
    return {
        errno.ENOSPC: "the filesystem is full: free space or write the output elsewhere",
        errno.EDQUOT: "the disk quota is exceeded: free space or write the output elsewhere",
        errno.EROFS: "the filesystem is read-only: choose a writable output path",
        errno.EACCES: "permission denied: check the folder's permissions or choose another path",
        errno.EPERM: "operation not permitted: check the folder's permissions or choose another path",
        errno.ENOENT: "no such file or folder: check the path",
        errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
        errno.EISDIR: "the path is a folder where a file was expected: check the path",
        errno.ELOOP: "the path is a symlink loop: fix or remove the symlink",
        errno.EEXIST: "remove it yourself or choose another path",
    }.get(exc.errno)
