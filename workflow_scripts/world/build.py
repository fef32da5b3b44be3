"""Write the demo world's data files (SFT, preference pairs, eval and dev prompt sets)."""

from __future__ import annotations

import argparse
import collections
import json
import logging

from ..common import setup_logging, write_jsonl
from .tasks import build_world

log = logging.getLogger(__name__)

WORLD_KEYS = ("seed", "n_sft", "n_pref", "n_eval", "n_dev", "mix")


def write_world(settings: dict, outputs: dict[str, str]) -> None:
    """Generate the world from ``settings`` (the config's `world:` block) into ``outputs`` paths.

    ``outputs`` maps ``sft``, ``prefs``, ``eval``, ``dev`` to JSONL paths. Deterministic: the same
    settings always give byte-identical files.
    """
    kwargs = {k: settings[k] for k in WORLD_KEYS if k in settings}
    data = build_world(**kwargs)
    for name, path in outputs.items():
        write_jsonl(path, data[name])
    styles = collections.Counter(r["style"] for r in data["sft"])
    log.info("world: %s", {k: len(v) for k, v in data.items()})
    log.info("SFT answer styles: %s", dict(styles))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--settings", default="{}", help='JSON, e.g. {"seed": 0, "n_sft": 3000}')
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--log")
    a = ap.parse_args(argv)
    setup_logging(a.log)
    settings = {"seed": 0, **json.loads(a.settings)}
    write_world(settings, {n: f"{a.out_dir}/{n}.jsonl" for n in ("sft", "prefs", "eval", "dev")})


if __name__ == "__main__":
    main()
