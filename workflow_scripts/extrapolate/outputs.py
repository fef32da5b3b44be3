"""The engine's output folder: written through :mod:`workflow_scripts.outputs`, like every stage's.

What may be replaced (a folder with the workflow's marker or manifest, or an empty one), removing
the temporaries of killed runs, and SIGTERM/SIGHUP cleaning up like an exception all come from
:func:`workflow_scripts.outputs.atomic_dir`. What is left here is engine-specific: the check that
fails before any weights are read, and file modes (the pipeline's ``pwrite`` files are created
0644 & ~umask; a group-writable umask asks for more).
"""

from __future__ import annotations

import os
from pathlib import Path

from workflow_scripts.outputs import OWNER_MARK, check_replaceable

MANIFEST = "manifest.json"


def check_out_target(out: Path) -> None:
    """Refuse at once an existing ``out`` that this workflow did not write (the same rule
    :func:`~workflow_scripts.outputs.atomic_dir` applies before the rename)."""
    check_replaceable(out, kind="dir")


def finish_temp(tmp: Path) -> None:
    """Give every file the mode the umask asks for (0644 by default); drop an owner mark."""
    (tmp / OWNER_MARK).unlink(missing_ok=True)
    mask = os.umask(0)
    os.umask(mask)
    for f in tmp.iterdir():
        if f.is_file() and not f.is_symlink():
            os.chmod(f, 0o666 & ~mask)
