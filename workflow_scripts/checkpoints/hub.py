"""Hugging Face Hub sources: resolve a revision to a commit, download resumably, fall back to the cache.

The token is read from the environment, passed to the Hub calls, and never logged nor written.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from ..common import atomic_dir
from .folder import _finish_record, describe_folder, validate_folder
from .spec import (
    _COMMIT_RE,
    SOURCE_FILE,
    SUBFOLDER_PATTERNS,
    CheckpointError,
    _drop_unused_pickles,
    _wanted,
    allow_patterns,
    weights_format,
)

log = logging.getLogger(__name__)


def read_token(token_env: str = "HF_TOKEN") -> tuple[str | None, str]:
    """Token from ``$token_env`` (falling back to ``$HF_TOKEN``) and a log-safe description."""
    for name in dict.fromkeys([token_env, "HF_TOKEN"]):
        value = os.environ.get(name, "").strip()
        if value:
            return value, f"set (from ${name})"
    return None, "not set (public repos only, or a cached `hf auth login`)"


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` read now (huggingface_hub reads it once at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _connection_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    errs: list[type[BaseException]] = [ConnectionError, TimeoutError, OfflineModeIsEnabled, LocalEntryNotFoundError]
    for mod, names in (
        ("httpx2", ("ConnectError", "TimeoutException", "NetworkError")),
        ("httpx", ("ConnectError", "TimeoutException", "NetworkError")),
        ("requests", ("ConnectionError", "Timeout")),
    ):
        try:
            m = __import__(mod)
        except ImportError:
            continue
        errs += [getattr(m, n) for n in names if hasattr(m, n)]
    return tuple(errs)


def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


def predownload_command(repo: str, revision: str) -> str:
    """The ``hf download`` line that fills the HF cache with exactly what this stage would fetch."""
    include = " ".join(f'--include "{p}"' for p in allow_patterns())
    return f'hf download {repo} --revision {revision} {include} --exclude "*/*"'


def _offline_message(repo: str, revision: str, reason: str) -> str:
    return (
        f"cannot reach the Hugging Face Hub for {repo}@{revision}: {reason}. "
        f"Pre-download it where there is network, with the same HF_HOME as this run: "
        f"`{predownload_command(repo, revision)}` (`huggingface-cli download` with huggingface_hub < 1.0); "
        "or use source: local with a downloaded folder."
    )


def _translate_hub_error(exc: BaseException, repo: str, revision: str, token: str | None) -> CheckpointError | None:
    """Map huggingface_hub errors to messages that say what to do; ``None`` if not a Hub error."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    reason = _scrub(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", token)
    if isinstance(exc, GatedRepoError):
        return CheckpointError(
            f"{repo} is gated: accept its licence on https://huggingface.co/{repo} with your account, then "
            f"export HF_TOKEN=<a read token of that account> ({reason})"
        )
    if isinstance(exc, RevisionNotFoundError):
        return CheckpointError(f"{repo}: revision {revision!r} does not exist ({reason})")
    if isinstance(exc, RepositoryNotFoundError):
        return CheckpointError(
            f"{repo}: repository not found or not accessible; check the name, and for private or gated repos "
            f"export HF_TOKEN with access to it ({reason})"
        )
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, HfHubHTTPError) and status in (401, 403):
        return CheckpointError(
            f"{repo}: access denied (HTTP {status}); if the repo is gated accept its licence on "
            f"https://huggingface.co/{repo} and export HF_TOKEN with access to it ({reason})"
        )
    if isinstance(exc, _connection_errors()):
        return CheckpointError(_offline_message(repo, revision, reason))
    return None


def resolve_revision(repo: str, revision: str, *, token: str | None = None) -> tuple[str, dict[str, int | None]]:
    """Resolve ``revision`` (branch, tag or sha) to a commit and list the repo's files with sizes.

    The listing lets us refuse pickle-only repos before downloading and check sizes afterwards.
    """
    from huggingface_hub import HfApi

    info = HfApi().model_info(repo, revision=revision, files_metadata=True, token=token)
    files = {s.rfilename: s.size for s in (info.siblings or [])}
    if not info.sha:
        raise CheckpointError(f"{repo}@{revision}: the Hub returned no commit sha")
    return info.sha, files


def _cached_snapshot(repo: str, revision: str, token: str | None, allow_pickle: bool) -> tuple[Path | None, str]:
    """The HF-cache snapshot of ``repo@revision`` if downloaded before, else ``(None, why not)``.

    The same allow/ignore patterns are passed so that huggingface_hub checks the snapshot against
    its cached file listing for exactly the files we need (an interrupted ``hf download`` is
    reported as incomplete, not used).
    """
    import huggingface_hub

    try:
        return Path(
            huggingface_hub.snapshot_download(
                repo,
                revision=revision,
                local_files_only=True,
                token=token,
                allow_patterns=allow_patterns(allow_pickle),
                ignore_patterns=list(SUBFOLDER_PATTERNS),
            )
        ), ""
    except Exception as exc:  # any failure here just means "not usable from the cache"
        first = _scrub(str(exc), token).splitlines()[0] if str(exc) else ""
        if type(exc).__name__ == "IncompleteSnapshotError":
            return None, f"the cached snapshot is incomplete ({first})"
        return None, "it is not in the local Hugging Face cache"


def _resolve_online(repo: str, revision: str, token) -> tuple[str | None, dict[str, int | None] | None, str | None]:
    """The commit and file listing of ``revision``, or why the hub cannot be reached (then both None).

    Hub errors other than a lost connection become one :class:`CheckpointError` line.
    """
    commit: str | None = None
    listing: dict[str, int | None] | None = None
    offline_reason = "HF_HUB_OFFLINE is set" if hub_offline() else None
    if offline_reason is None:
        try:
            commit, listing = resolve_revision(repo, revision, token=token)
        except CheckpointError:
            raise
        except Exception as exc:
            err = _translate_hub_error(exc, repo, revision, token)
            if err is None:
                raise
            if not isinstance(exc, _connection_errors()):
                raise err from None
            offline_reason = _scrub(f"{type(exc).__name__}: {exc}", token).splitlines()[0]
    return commit, listing, offline_reason


def _download(repo: str, revision: str, commit: str | None, staging: Path, token, get_pickle: bool) -> Path:
    """Download the wanted files of ``commit`` into ``staging`` (resumable); hub errors as one line."""
    import huggingface_hub

    staging.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s@%s into %s (resumable)", repo, commit, staging)
    try:
        return Path(
            huggingface_hub.snapshot_download(
                repo,
                revision=commit,
                local_dir=staging,
                token=token,
                allow_patterns=allow_patterns(get_pickle),
                ignore_patterns=list(SUBFOLDER_PATTERNS),
            )
        )
    except Exception as exc:
        err = _translate_hub_error(exc, repo, revision, token)
        if err is None:
            raise
        raise err from None


def _checked_names(src: Path, listing: dict[str, int | None] | None, get_pickle: bool, where: str) -> list[str]:
    """The wanted files of ``src``; with the hub's listing, each must be there with its listed size."""
    names = [p.name for p in src.iterdir() if p.is_file() and _wanted(p.name, get_pickle)]
    if listing is not None:
        expected = {n: s for n, s in listing.items() if _wanted(n, get_pickle)}
        for name, size in sorted(expected.items()):
            p = src / name
            if not p.is_file():
                raise CheckpointError(f"{where}: download incomplete, {name} is missing")
            if size is not None and p.stat().st_size != size:
                raise CheckpointError(
                    f"{where}: download incomplete, {name} has {p.stat().st_size} bytes, expected {size}"
                )
        names = sorted(expected)
    return names


def _materialize_hub(spec: dict, out: Path, token_env: str) -> dict:
    repo, revision, allow_pickle = spec["repo"], spec["revision"], spec["allow_pickle"]
    token, token_desc = read_token(token_env)
    if not _COMMIT_RE.match(revision):
        log.warning(
            "%s: revision %r is not a commit sha; pin a sha for reproducible runs "
            "(the resolved commit is recorded in %s)",
            repo,
            revision,
            SOURCE_FILE,
        )
    log.info("hub source %s@%s (token: %s, allow_pickle: %s)", repo, revision, token_desc, allow_pickle)

    commit, listing, offline_reason = _resolve_online(repo, revision, token)
    get_pickle = allow_pickle  # offline we cannot know yet; unused pickles are dropped below
    if listing is not None:
        fmt = weights_format(listing, allow_pickle=allow_pickle, where=f"{repo}@{revision}")
        log.info("%s@%s -> commit %s, %s weights", repo, revision, commit, fmt)
        get_pickle = fmt == "pickle"  # never fetch *.bin when safetensors exist
    if get_pickle:
        log.warning("%s: allow_pickle is on; *.bin pickle weights will be used and may run code when loaded", repo)

    staging = out.parent / f".partial-{out.name}"
    from_cache = False
    if offline_reason is not None:
        cached, why = _cached_snapshot(repo, revision, token, get_pickle)
        if cached is None:
            raise CheckpointError(_offline_message(repo, revision, f"{offline_reason}, and {why}"))
        log.info("offline (%s): using the cached snapshot %s", offline_reason, cached)
        src, from_cache = cached, True
        commit = cached.name if _COMMIT_RE.match(cached.name) else None
    else:
        src = _download(repo, revision, commit, staging, token, get_pickle)

    names = _checked_names(src, listing, get_pickle, f"{repo}@{commit}")
    fmt = validate_folder(src, allow_pickle=allow_pickle, where=f"{repo}@{revision}")
    names = _drop_unused_pickles(names, fmt)

    with atomic_dir(out) as tmp:
        for name in names:
            if from_cache:  # link to the cache's blob: no second copy of many GB
                os.symlink((src / name).resolve(), tmp / name)
            else:
                os.replace(src / name, tmp / name)
        record = {
            "spec": spec,
            "kind": "hub",
            "repo": repo,
            "revision": revision,
            "commit": commit,
            "weights_format": fmt,
            "from_cache": from_cache,
            "files": describe_folder(tmp),
        }
        _finish_record(record, tmp)
    if not from_cache:
        shutil.rmtree(staging, ignore_errors=True)
    return record
