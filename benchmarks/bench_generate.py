"""Benchmark: batched vs one-prompt-at-a-time generation and reward scoring, side by side.

Why: the stage runs once per α (dozens of variants × hundreds of prompts), so batching is what
makes a sweep affordable. Both sides run the same library code (``generate`` / ``score`` with
``batch_size=B`` vs ``batch_size=1``) on the same random Llama (hidden 256, 4 layers) and the same
prompts, with greedy decoding so both produce the same tokens; each side loads the model once.

    python benchmarks/bench_generate.py [--prompts 64] [--max-new-tokens 64] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workflow_scripts.common import set_threads  # noqa: E402
from workflow_scripts.generate import generate  # noqa: E402
from workflow_scripts.score import score  # noqa: E402

WORDS = (
    "list three colors red blue green yellow repeat the word cat dog times reverse these "
    "words what is the opposite of hot cold big small answer question please one two three "
    "four five"
).split()


def build(tmp: Path, hidden: int, layers: int) -> tuple[Path, Path]:
    """A tokenizer trained on toy text plus a random causal LM and a random 1-label RM."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    from workflow_scripts.world.tokenizer import train_tokenizer

    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(400)]
    tok = train_tokenizer(texts, vocab_size=300)
    dirs = []
    for name, cls in (("lm", LlamaForCausalLM), ("rm", LlamaForSequenceClassification)):
        cfg = LlamaConfig(
            vocab_size=len(tok),
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            num_labels=1,
        )
        torch.manual_seed(0)
        d = tmp / name
        cls(cfg).save_pretrained(d)
        tok.save_pretrained(d)
        dirs.append(d)
    return dirs[0], dirs[1]


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (shared machines: 1)")
    ap.add_argument("--repeats", type=int, default=2, help="best of N alternating runs per side")
    args = ap.parse_args()
    set_threads(args.threads)
    import logging

    logging.disable(logging.WARNING)  # keep the table readable

    rng = random.Random(1)
    prompts = [
        {
            "id": f"p{i}",
            "dataset": "bench",
            "instruction": " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 30))),
        }
        for i in range(args.prompts)
    ]
    decoding = {"preset": "greedy", "max_new_tokens": args.max_new_tokens}

    with tempfile.TemporaryDirectory() as tmp:
        lm, rm = build(Path(tmp), args.hidden, args.layers)
        generate(lm, prompts[:2], decoding, batch_size=2)  # warm-up (imports, allocator)
        # Alternate the two sides and keep each side's best time: on a shared machine the
        # minimum is the least disturbed measurement, and alternating exposes both to the
        # same background load.
        t_b = t_s = s_b = s_s = float("inf")
        for _ in range(args.repeats):
            batched, t = timed(lambda: generate(lm, prompts, decoding, batch_size=args.batch_size))
            t_b = min(t_b, t)
            single, t = timed(lambda: generate(lm, prompts, decoding, batch_size=1))
            t_s = min(t_s, t)
        same = sum(a["output"] == b["output"] for a, b in zip(batched, single))
        tok_b = sum(r["n_tokens"] for r in batched)
        tok_s = sum(r["n_tokens"] for r in single)

        records = batched + single  # 2 × prompts answers of varied length
        score(rm, records[:2], batch_size=2)  # warm-up
        for _ in range(args.repeats):
            r_b, t = timed(lambda: score(rm, records, batch_size=args.batch_size))
            s_b = min(s_b, t)
            r_s, t = timed(lambda: score(rm, records, batch_size=1))
            s_s = min(s_s, t)
        max_diff = max(abs(x - y) for x, y in zip(r_b, r_s))

    gen_b, gen_s = tok_b / t_b, tok_s / t_s
    sc_b, sc_s = len(records) / s_b, len(records) / s_s
    print(
        f"model: random Llama hidden={args.hidden} layers={args.layers}, threads={args.threads}, "
        f"{args.prompts} prompts, greedy, max_new_tokens={args.max_new_tokens}, "
        f"batch_size={args.batch_size}, best of {args.repeats}"
    )
    print(
        f"identical answers batched vs single: {same}/{len(prompts)}; "
        f"max |reward diff| batched vs single: {max_diff:.2e}"
    )
    print()
    print(f"{'stage':<10} {'unit':<10} {'batched':>10} {'single':>10} {'ratio':>7}")
    print(f"{'generate':<10} {'tokens/s':<10} {gen_b:>10.1f} {gen_s:>10.1f} {gen_b / gen_s:>6.1f}x")
    print(f"{'score':<10} {'answers/s':<10} {sc_b:>10.1f} {sc_s:>10.1f} {sc_b / sc_s:>6.1f}x")
    print(
        f"(wall: generate {t_b:.2f}s vs {t_s:.2f}s for {tok_b} vs {tok_s} tokens; "
        f"score {s_b:.2f}s vs {s_s:.2f}s for {len(records)} answers)"
    )


if __name__ == "__main__":
    main()
