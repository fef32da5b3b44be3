"""A small BPE tokenizer with a chat template, trained with the `tokenizers` library.

Why our own: the demo world must run with no model hub, and a tokenizer trained on the world's own
text keeps sequences short, which is what makes CPU training take minutes. Words are pre-tokenized
SentencePiece-style (every word carries a leading "▁", punctuation split off), so a word is the same
token in the instruction and in the answer; with a byte-level tokenizer "peach" and " peach" differ,
and a tiny model spends most of its budget learning to map one to the other.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable
from pathlib import Path

from ..common import atomic_dir, read_jsonl, setup_logging

log = logging.getLogger(__name__)

BOS, EOS, PAD, UNK = "<|bos|>", "<|end|>", "<|pad|>", "<|unk|>"
USER, ASSISTANT, SYSTEM = "<|user|>", "<|assistant|>", "<|system|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK, USER, ASSISTANT, SYSTEM]

# Zephyr-like template without newlines (the role tokens already delimit turns, and every segment
# between special tokens is pre-tokenized the same way). The assistant turn ends with EOS, so a model
# that learned the template stops by itself; `add_generation_prompt` opens the assistant turn.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '<|user|>' + message['content'] + '<|end|>' }}"
    "{% elif message['role'] == 'system' %}{{ '<|system|>' + message['content'] + '<|end|>' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{% generation %}{{ '<|assistant|>' + message['content'] + '<|end|>' }}{% endgeneration %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512):
    """Train a BPE and wrap it as a `PreTrainedTokenizerFast` with the chat template.

    Characters never seen in training map to ``<|unk|>`` (the world's text is ASCII)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
            pre_tokenizers.Punctuation(),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=[USER, ASSISTANT, SYSTEM],
    )
    fast.chat_template = CHAT_TEMPLATE
    # Left padding is what batched generation needs; trainers that need right padding set it.
    fast.padding_side = "left"
    fast.model_max_length = 512
    return fast


def corpus_from_jsonl(paths: Iterable[str | Path]) -> list[str]:
    """All text fields of the world's data files: prompts, answers, chosen/rejected."""
    texts: list[str] = []
    for p in paths:
        for row in read_jsonl(p):
            for key in ("instruction", "prompt", "completion", "chosen", "rejected", "output"):
                if isinstance(row.get(key), str):
                    texts.append(row[key])
    return texts


def build(paths: list[str], out: str | Path, vocab_size: int) -> None:
    texts = corpus_from_jsonl(paths)
    if not texts:
        raise ValueError(f"no text found in {paths}")
    tok = train_tokenizer(texts, vocab_size=vocab_size)
    with atomic_dir(out) as tmp:
        tok.save_pretrained(tmp)
    log.info("tokenizer with %d tokens written to %s", len(tok), out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("data", nargs="+", help="JSONL files whose text trains the tokenizer")
    ap.add_argument("--out", required=True)
    ap.add_argument("--vocab-size", type=int, default=512)
    ap.add_argument("--log")
    a = ap.parse_args(argv)
    setup_logging(a.log)
    build(a.data, a.out, a.vocab_size)


if __name__ == "__main__":
    main()
