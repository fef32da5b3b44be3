"""Write the shapes world's files (SFT rows, correction pairs, eval and dev prompt sets) and its tokenizer.

Defaults live here, not in the config schema: a schema default would enter the rule params of
every experiment. Records store scenes, never pixels; the train and generate stages draw them.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
from collections.abc import Mapping
from pathlib import Path

from ..common import atomic_dir, read_jsonl, setup_logging, write_jsonl
from .shapes import build_shapes_world

log = logging.getLogger(__name__)

DEFAULTS = {"seed": 0, "n_sft": 400, "n_pref": 200, "n_eval": 100, "n_dev": 50}
DEFAULT_VOCAB = 120
SHAPES_KEYS = ("seed", "n_sft", "n_pref", "n_eval", "n_dev", "mix")


def write_shapes_world(settings: Mapping, outputs: Mapping[str, str]) -> None:
    """Build the world from ``settings`` (the config's ``shapes_world:`` block) into the ``sft``,
    ``prefs``, ``eval``, ``dev`` JSONL paths of ``outputs``; the same settings give the same bytes."""
    unknown = set(settings) - set(SHAPES_KEYS)
    if unknown:
        raise ValueError(f"shapes_world: unknown settings {sorted(unknown)}; known: {list(SHAPES_KEYS)}")
    data = build_shapes_world(**{**DEFAULTS, **settings})
    for name, path in outputs.items():
        write_jsonl(path, data[name])
    log.info("shapes world: %s", {k: len(v) for k, v in data.items()})
    log.info("SFT answer styles: %s", dict(collections.Counter(r["style"] for r in data["sft"])))


def build_shapes_tokenizer(sft: str, prefs: str, out: str, vocab_size: int | None = None) -> None:
    """A byte-level BPE trained on the world's text (every word of the world is one token)."""
    from .tokenizer import train_tokenizer

    texts = [f"{r['prompt']} {r['completion']}" for r in read_jsonl(sft)]
    texts += [f"{r['prompt']} {r['chosen']} {r['rejected']}" for r in read_jsonl(prefs)]
    tok = train_tokenizer(texts, vocab_size=int(vocab_size or DEFAULT_VOCAB))
    with atomic_dir(out) as tmp:
        tok.save_pretrained(tmp)


def write_shapes_prompts(split_file: str, out: str, spec: Mapping) -> None:
    """A shapes-world split as a prompt set (the ``file`` loader's checks and ``limit``): each record
    keeps its ``scene`` (drawn on load by the generate stage) and its gold ``task``."""
    from ..prompts import load_prompt_set

    records = load_prompt_set({"source": "file", "path": split_file}, limit=spec.get("limit"))
    write_jsonl(out, records)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--settings", default="{}", help='JSON, e.g. {"seed": 0, "n_sft": 800}')
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--vocab-size", type=int, default=None)
    ap.add_argument("--log")
    a = ap.parse_args(argv)
    setup_logging(a.log)
    d = Path(a.out_dir)
    write_shapes_world(json.loads(a.settings), {n: str(d / f"{n}.jsonl") for n in ("sft", "prefs", "eval", "dev")})
    build_shapes_tokenizer(str(d / "sft.jsonl"), str(d / "prefs.jsonl"), str(d / "tokenizer"), a.vocab_size)


if __name__ == "__main__":
    main()
