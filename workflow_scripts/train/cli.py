"""Command line of the training stage: ``python -m workflow_scripts.train {sft,reward,preference}``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..common import setup_logging
from .data import DataSpec
from .preference import train_preference
from .reward import train_reward
from .sft import train_sft

_DESCRIPTION = "Training stage: SFT, reward model and preference alignment (DPO / SimPO) with TRL."


def _json_arg(text: str | None) -> Any:
    """A JSON literal, or a path to a JSON/YAML file holding one."""
    if text is None:
        return None
    p = Path(text)
    if p.exists():
        if p.suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(p.read_text())
        return json.loads(p.read_text())
    return json.loads(text)


def _model_init_arg(a: argparse.Namespace) -> dict | str:
    if bool(a.model_init) == bool(a.model_config):
        raise ValueError("give exactly one of --model-init (checkpoint folder) or --model-config (JSON)")
    return a.model_init or _json_arg(a.model_config)


def _data_arg(text: str) -> DataSpec:
    if text.startswith("hub:"):
        name, _, split = text[4:].partition(":")
        return {"source": "hub", "name": name, "split": split or "train"}
    return text


def main(argv: list[str] | None = None) -> None:
    """The ``sft``/``preference``/``reward`` subcommands; long because the argparse configuration is
    flat and reads best in one place."""
    ap = argparse.ArgumentParser(description=_DESCRIPTION)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p: argparse.ArgumentParser, lr: float, epochs: float) -> None:
        p.add_argument("--data", required=True, help="JSONL/JSON file (or hub:NAME:SPLIT for preference data)")
        p.add_argument("--out", required=True)
        p.add_argument("--epochs", type=float, default=epochs)
        p.add_argument("--lr", type=float, default=lr)
        p.add_argument("--batch-size", type=int, default=16)
        p.add_argument("--grad-accum", type=int, default=1)
        p.add_argument("--max-length", type=int, default=512)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--threads", type=int)
        p.add_argument("--device", default="auto")
        p.add_argument("--log")

    for name in ("sft", "reward"):
        p = sub.add_parser(name, help=f"train a {'SFT policy' if name == 'sft' else 'reward model'}")
        p.add_argument("--model-init", help="checkpoint folder to fine-tune")
        p.add_argument("--model-config", help="LlamaConfig kwargs as JSON (or a JSON file): train from scratch")
        p.add_argument("--tokenizer", required=True)
        common(p, lr=1e-3, epochs=1.0)
        if name == "reward":
            p.add_argument("--heldout-fraction", type=float, default=0.1)

    p = sub.add_parser("preference", help="DPO/SimPO/DDPO on a fraction of preference pairs")
    p.add_argument("--base", required=True, help="SFT checkpoint folder")
    p.add_argument("--method", required=True, help="dpo or simpo")
    p.add_argument("--fraction", type=float, default=1.0)
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--gamma-beta-ratio", type=float, default=0.5)
    p.add_argument("--lora", help="peft LoraConfig kwargs as JSON (or a JSON/YAML file)")
    p.add_argument("--ddpo", help='method ddpo: JSON {"gamma": 2.0, "average": true}')
    p.add_argument("--subset-seed", type=int, default=0)
    common(p, lr=5e-7, epochs=1.0)

    a = ap.parse_args(argv)
    setup_logging(a.log)
    shared = dict(
        epochs=a.epochs,
        lr=a.lr,
        batch_size=a.batch_size,
        grad_accum=a.grad_accum,
        max_length=a.max_length,
        seed=a.seed,
        threads=a.threads,
        device=a.device,
    )
    if a.cmd == "sft":
        train_sft(_model_init_arg(a), a.tokenizer, a.data, a.out, **shared)
    elif a.cmd == "reward":
        train_reward(_model_init_arg(a), a.tokenizer, a.data, a.out, heldout_fraction=a.heldout_fraction, **shared)
    else:
        train_preference(
            a.base,
            _data_arg(a.data),
            a.out,
            method=a.method,
            fraction=a.fraction,
            beta=a.beta,
            gamma_beta_ratio=a.gamma_beta_ratio,
            lora=_json_arg(a.lora),
            subset_seed=a.subset_seed,
            ddpo=_json_arg(a.ddpo),
            **shared,
        )
