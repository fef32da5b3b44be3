"""Checkpoint source specs: validation, defaults and which files a checkpoint keeps.

No heavy imports here: Snakemake and the other modules of this package read specs cheaply.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Iterable
from typing import Any

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
