"""Safety of the output folder: what may be replaced, leftovers of killed runs, signals, modes.

Why: ``--out`` is a user-typed path. Replacing it is safe only when it is an earlier output of
this engine (recognised by its manifest); a killed run leaves a hidden temporary folder that the
next run must clear; a scheduler stops jobs with SIGTERM/SIGHUP, which must clean up like an
exception; and teammates on a shared results folder must be able to read what we write.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
OWNER_MARK = ".expo-owner"
"""Written into the temporary folder: ``host pid`` of the run that owns it."""
FORMULA_PREFIX = "theta = theta_aligned + alpha"


def check_out_target(out: Path) -> None:
    """Refuse an existing ``out`` that is neither empty nor a previous output of this engine."""
    if not (out.exists() or out.is_symlink()):
        return
    how = "replace it only with an earlier extrapolation output, or choose another --out"
    if out.is_symlink() or not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder; {how}")
    if not any(out.iterdir()):
        return  # an empty folder holds nothing to lose
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        ours = str(manifest.get("formula", "")).startswith(FORMULA_PREFIX)
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise ValueError(f"--out {out} exists and is not an extrapolation output (no engine {MANIFEST}); {how}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(out: Path) -> None:
    """Delete ``.tmp-<out>-*`` / ``.old-<out>-*`` folders left by killed runs of this output.

    A folder owned by a live process on this host is left alone (a concurrent run); one marked by
    another host is left alone too (it may be running there).
    """
    if not out.parent.is_dir():
        return
    pattern = re.compile(rf"^\.(tmp|old)-{re.escape(out.name)}-[0-9a-f]{{8}}$")
    for p in out.parent.iterdir():
        if not pattern.match(p.name) or p.is_symlink() or not p.is_dir():
            continue
        try:
            host, pid = (p / OWNER_MARK).read_text().split()
            if host != socket.gethostname() or _pid_alive(int(pid)):
                continue
        except (OSError, ValueError):
            pass  # no readable owner mark: a run killed before writing it
        shutil.rmtree(p, ignore_errors=True)
        log.info("removed %s, left by an interrupted run", p)


def mark_temp(tmp: Path) -> None:
    (tmp / OWNER_MARK).write_text(f"{socket.gethostname()} {os.getpid()}\n")


def finish_temp(tmp: Path) -> None:
    """Drop the owner mark and give every file the mode the umask asks for (0644 by default)."""
    (tmp / OWNER_MARK).unlink(missing_ok=True)
    mask = os.umask(0)
    os.umask(mask)
    for f in tmp.iterdir():
        if f.is_file() and not f.is_symlink():
            os.chmod(f, 0o666 & ~mask)


class Terminated(SystemExit):
    """SIGTERM/SIGHUP as an exception, so ``atomic_dir`` removes the partial output."""


@contextlib.contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated` (exit status 128 + signal)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated(128 + signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
