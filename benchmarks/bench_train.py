"""Benchmark the training stage at demo-world scale on CPU: where the time goes, and what helps.

Run: ``python benchmarks/bench_train.py [--threads 2] [--sft-n 3000] [--pairs 400]``.
Prints, measured side by side in one run (so machine load affects all alike):
* the one-off import cost of TRL (every Snakemake training job pays it once),
* per trainer: setup (tokenisation, model init, trainer build), training, per-step time, save,
* DPO with vs without ``precompute_ref_log_probs`` (ratio), and SimPO vs DPO per step (ratio).
The model is the demo world's default size (hidden 96, 6 layers, vocab ~600, sequences ≤ 64).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = (
    "red blue green yellow black white cat dog bird fish one two three four five six seven eight "
    "nine ten big small hot cold up down left right fast slow happy sad old new"
).split()
TEMPLATES = [
    ("repeat the word {w} {n} times", lambda w, n, ws: " ".join([w] * n)),
    ("reverse these words: {ws}", lambda w, n, ws: " ".join(reversed(ws.split()))),
    ("sort these words: {ws}", lambda w, n, ws: " ".join(sorted(ws.split()))),
    ("count the words: {ws}", lambda w, n, ws: str(len(ws.split()))),
]
MODEL = {
    "hidden_size": 96,
    "intermediate_size": 256,
    "num_hidden_layers": 6,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "tie_word_embeddings": False,
}


def make_data(n_sft: int, n_pairs: int, seed: int = 0):
    rng = random.Random(seed)

    def one():
        t, f = rng.choice(TEMPLATES)
        w, k = rng.choice(WORDS), rng.randint(1, 5)
        ws = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))
        return t.format(w=w, n=k, ws=ws), f(w, k, ws), ws

    sft = []
    for _ in range(n_sft):
        p, c, _ = one()
        sft.append({"prompt": p, "completion": c})
    pairs = []
    for _ in range(n_pairs):
        p, c, ws = one()
        pairs.append(
            {
                "prompt": p,
                "chosen": c,
                "rejected": " ".join(rng.sample(ws.split(), len(ws.split()))) + " " + rng.choice(WORDS),
            }
        )
    return sft, pairs


def raw_step_s(batch_size: int, seq_len: int, threads: int, steps: int = 5) -> float:
    """Median time of a plain PyTorch AdamW step on the same model/batch shape (no trainer)."""
    import statistics

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=600, **MODEL))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, 600, (batch_size, seq_len))
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
        if i:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sft-n", type=int, default=3000)
    ap.add_argument("--pairs", type=int, default=400)
    ap.add_argument("--sft-epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3, help="interleaved repeats of the preference runs")
    a = ap.parse_args()

    t = time.perf_counter()
    import trl  # noqa: F401
    from trl import DPOTrainer, RewardTrainer, SFTTrainer  # noqa: F401
    from trl.experimental.cpo import CPOTrainer  # noqa: F401

    import_s = time.perf_counter() - t

    from workflow_scripts import train as T
    from workflow_scripts.common import setup_logging
    from workflow_scripts.world.tokenizer import train_tokenizer

    setup_logging(level=logging.WARNING)
    sft, pairs = make_data(a.sft_n, a.pairs)
    res: dict = {"import_trl_s": round(import_s, 2), "threads": a.threads}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        texts = [r["prompt"] + " " + r["completion"] for r in sft] + [r["rejected"] for r in pairs]
        train_tokenizer(texts, vocab_size=600).save_pretrained(d / "tok")

        def run(name, fn):
            t0 = time.perf_counter()
            man = fn()
            total = time.perf_counter() - t0
            tm = man["timing"]
            res[name] = {
                "total_s": round(total, 2),
                **tm,
                "steps": man["steps"],
                "save_s": round(total - tm["setup_s"] - tm["train_s"], 2),
                "final_loss": round(man.get("tail_mean_loss", float("nan")), 4),
            }
            print(name, json.dumps(res[name]), flush=True)

        seq = 40  # about the demo world's mean SFT sequence length in tokens
        res["raw_step_before_s"] = round(raw_step_s(a.batch_size, seq, a.threads), 4)
        run(
            "sft",
            lambda: T.train_sft(
                MODEL,
                d / "tok",
                sft,
                d / "sft",
                epochs=a.sft_epochs,
                lr=3e-3,
                batch_size=a.batch_size,
                max_length=64,
                threads=a.threads,
                device="cpu",
            ),
        )
        res["raw_step_after_s"] = round(raw_step_s(a.batch_size, seq, a.threads), 4)
        run(
            "reward",
            lambda: T.train_reward(
                MODEL,
                d / "tok",
                pairs,
                d / "rm",
                epochs=1,
                lr=1e-3,
                batch_size=a.batch_size,
                max_length=64,
                threads=a.threads,
                device="cpu",
            ),
        )
        pref = dict(
            fraction=1.0, beta=0.1, lr=5e-4, epochs=1, batch_size=16, max_length=64, threads=a.threads, device="cpu"
        )
        # Alternate the preference variants a.repeat times and keep medians: the shared CPU's load
        # changes by 10x within a minute, so only interleaved repeats give usable ratios.
        import statistics

        reps: dict[str, list[dict]] = {}
        for _ in range(a.repeat):
            for name, extra in (
                ("dpo_precompute", dict(method="dpo")),
                ("dpo_no_precompute", dict(method="dpo", precompute_ref_log_probs=False)),
                ("simpo", dict(method="simpo")),
            ):
                run(name, lambda n=name, x=extra: T.train_preference(d / "sft", pairs, d / n, **x, **pref))
                reps.setdefault(name, []).append(res[name])
        for name, rs in reps.items():
            res[name] = {
                k: statistics.median(x[k] for x in rs) for k in rs[0] if all(isinstance(x[k], (int, float)) for x in rs)
            }
    r = res
    raw = (r["raw_step_before_s"] + r["raw_step_after_s"]) / 2
    print("ratio sft mean_step_s / raw PyTorch step (same shape):", round(r["sft"]["mean_step_s"] / raw, 2))
    print(
        "ratio dpo train_s precompute/no_precompute:",
        round(r["dpo_precompute"]["train_s"] / r["dpo_no_precompute"]["train_s"], 2),
    )
    print(
        "ratio dpo total_s precompute/no_precompute:",
        round(r["dpo_precompute"]["total_s"] / r["dpo_no_precompute"]["total_s"], 2),
    )
    print(
        "ratio mean_step_s simpo/dpo(precompute):",
        round(r["simpo"]["mean_step_s"] / r["dpo_precompute"]["mean_step_s"], 2),
    )
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
