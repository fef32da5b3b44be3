"""The stages' command-line behaviour: one clear error line for mistakes a user made, no traceback.

A user who points ``--prompts`` at a malformed file needs the file, the line and the fix, not forty
lines of chained tracebacks from inside a library. :func:`run_cli` (every stage's
``if __name__ == "__main__"``) and :func:`install_error_handling` (the Snakemake adapters, so the
line is the last one of the job's log) print ``error: <message>`` for :data:`user errors
<is_user_error>` and exit with status 1; ``--debug`` or ``EXPO_DEBUG=1`` shows the traceback as
well. Bugs (``TypeError``, ``KeyError``, ...) always keep their traceback.

:class:`StageParser` is the stages' ``ArgumentParser``: it adds ``--debug`` and reads negative
numbers in exponent notation (``--alpha -1e-3``) as values, not as unknown options.
"""

from __future__ import annotations

import argparse
import errno
import os
import pickle
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from .outputs import Terminated, disk_error_hint, install_signal_handlers

DEBUG_ENV = "EXPO_DEBUG"
_USER_OS_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EROFS,
        errno.EACCES,
        errno.EPERM,
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ELOOP,
        errno.EEXIST,
    }
)
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)


class StageParser(argparse.ArgumentParser):
    """``ArgumentParser`` with ``--debug`` and negative numbers such as ``-1e-3`` accepted as values."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE_NUMBER
        if kwargs.get("add_help", True) and not any(a.dest == "debug" for a in self._actions):
            self.add_argument(
                "--debug",
                action="store_true",
                default=argparse.SUPPRESS,
                help=f"show the full traceback on errors (or set {DEBUG_ENV}=1)",
            )


def debug_enabled(argv: Sequence[str] | None = None) -> bool:
    """``--debug`` on the command line or ``EXPO_DEBUG`` set to a true value."""
    if os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    return "--debug" in (sys.argv[1:] if argv is None else argv)


def is_user_error(exc: BaseException) -> bool:
    """Errors a user causes and can fix: bad values/files (``ValueError``, refused pickles), full or
    read-only disks, missing paths, permissions, symlink loops, and SIGTERM/SIGHUP."""
    if isinstance(exc, (ValueError, pickle.UnpicklingError, Terminated, FileExistsError)):
        return True
    return isinstance(exc, OSError) and exc.errno in _USER_OS_ERRNOS


def one_line(exc: BaseException) -> str:
    """The exception as one line: its message with newlines folded, plus a hint for OS errors."""
    if isinstance(exc, OSError) and exc.errno is not None and exc.strerror:
        where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f)
        text = f"{exc.strerror}: {where}" if where else exc.strerror
        hint = disk_error_hint(exc)
        if isinstance(exc, FileExistsError) and len(exc.args) == 1:
            text, hint = str(exc), None
        return f"{text} ({hint})" if hint else text
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, pickle.UnpicklingError):
        first = text.split(". ")[0].rstrip(".")
        text = (
            f"refused to unpickle a weights file ({first}): it holds more than tensors and could run code; "
            "use safetensors weights from a source you trust"
        )
    return text


def report_error(exc: BaseException, *, debug: bool, stream=None) -> None:
    """Print the traceback when ``debug``, then ``error: <one line>`` as the last line."""
    stream = stream or sys.stderr
    if debug:
        traceback.print_exception(exc, file=stream)
    print(f"error: {one_line(exc)}", file=stream, flush=True)


def exit_status(exc: BaseException) -> int:
    return 128 + exc.signum if isinstance(exc, Terminated) else 1


def run_cli(main: Callable[[list[str] | None], Any], argv: list[str] | None = None) -> NoReturn:
    """Run a stage's ``main``; a user error ends with one line on stderr and a non-zero status."""
    install_signal_handlers()
    try:
        main(argv)
    except BaseException as exc:
        if not is_user_error(exc):
            raise
        report_error(exc, debug=debug_enabled(argv))
        sys.exit(exit_status(exc))
    sys.exit(0)


def _excepthook(exc_type, exc, tb) -> None:
    if not is_user_error(exc):
        sys.__excepthook__(exc_type, exc, tb)
        return
    report_error(exc, debug=debug_enabled([]))


def install_error_handling() -> None:
    """For scripts without a ``main`` (Snakemake adapters): one-line user errors, SIGTERM cleanup."""
    install_signal_handlers()
    sys.excepthook = _excepthook
